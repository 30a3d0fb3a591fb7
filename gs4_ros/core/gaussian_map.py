"""The Gaussian map: a structure of arrays on the pipeline's device.

Raw (unactivated) parameters are stored so optimisers work in an unconstrained space:
log-scales, unnormalised quaternions (w, x, y, z) and opacity logits, as in 3DGS.
Colours are linear RGB in [0, 1] (`colors`, what the map renders; `track_colors`, what
tracking renders: the colours mapping gave, and the joint step's fit only with
backend.joint_colors_to_tracking, since with colour-only steps that fit in the
photometric term cost 7-Scenes 0.2 cm of ATE, docs/results.md);
semantics are class logits; `features` is the latent
vector the refinement network reads. Book-keeping per Gaussian: how often it was
updated (frozen after a limit), the frame that created it and the keyframe it is
anchored to (so a back-end correction of that keyframe moves it rigidly), and how many
views its semantics average, and its entry in the open-vocabulary bank.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch

from . import se3

# Fields with one row per Gaussian, in storage order.
FLOAT_FIELDS = ("means", "log_scales", "quats", "opacity_logits", "colors", "sem_logits", "features",
                "obs_weight", "track_colors")
INT_FIELDS = ("update_count", "birth_frame", "keyframe_id", "sem_count", "inferred", "bank_id")
# Value of each int field for a new row; birth_frame and keyframe_id come from insert(),
# sem_count (views averaged into sem_logits, core/semantic_fusion) is 0 without semantics,
# inferred is 1 for rows placed on a plane across a depth hole (core/depth_fill), not on
# measured depth: tracking and co-visibility ignore them, measured depth replaces them.
# bank_id is the row's entry in the open-vocabulary bank (`vocab`, core/open_vocab), -1
# until a keyframe with semantics sees it.
INT_DEFAULTS = {"update_count": 0, "birth_frame": 0, "keyframe_id": -1, "sem_count": 1, "inferred": 0,
                "bank_id": -1}


@dataclass
class GaussianParams:
    """Activated parameters, the form every renderer backend takes."""

    means: torch.Tensor      # [N, 3]
    quats: torch.Tensor      # [N, 4] unit, (w, x, y, z)
    scales: torch.Tensor     # [N, 3]
    opacities: torch.Tensor  # [N]
    colors: torch.Tensor     # [N, 3]
    sem_probs: Optional[torch.Tensor] = None  # [N, K]

    def __len__(self):
        return self.means.shape[0]


class GaussianMap:
    def __init__(self, num_classes: int = 20, feature_dim: int = 0, device="cpu",
                 dtype=torch.float32):
        self.num_classes = int(num_classes)
        self.feature_dim = int(feature_dim)
        self.device = torch.device(device)
        self.dtype = dtype
        # The open-vocabulary bank that bank_id indexes (core/open_vocab.VocabBank, on the
        # host), or None; it belongs to the map so that saving and loading keep them together.
        self.vocab = None
        # What sem_logits' columns mean, where known (a map read from a PLY that recorded
        # them); None leaves it to the caller's configuration.
        self.class_names = None
        self.clear()

    # -- storage -------------------------------------------------------------------
    def _shapes(self) -> Dict[str, tuple]:
        return {"means": (3,), "log_scales": (3,), "quats": (4,), "opacity_logits": (),
                "colors": (3,), "sem_logits": (self.num_classes,), "features": (self.feature_dim,),
                "obs_weight": (), "track_colors": (3,)}

    def clear(self):
        for name, shp in self._shapes().items():
            setattr(self, name, torch.zeros((0,) + shp, device=self.device, dtype=self.dtype))
        for name in INT_FIELDS:
            setattr(self, name, torch.zeros(0, device=self.device, dtype=torch.int32))
        self.frozen = torch.zeros(0, device=self.device, dtype=torch.bool)

    def __len__(self) -> int:
        return int(self.means.shape[0])

    def state(self) -> Dict[str, torch.Tensor]:
        out = {k: getattr(self, k) for k in FLOAT_FIELDS + INT_FIELDS}
        out["frozen"] = self.frozen
        return out

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.state().values())

    def insert(self, means, log_scales, quats, opacity_logits, colors, sem_logits=None,
               features=None, birth_frame: int = 0, keyframe_id: int = -1,
               obs_weight=None, inferred=None) -> torch.Tensor:
        """Append Gaussians; returns their indices. Missing semantics/features are zeros.

        obs_weight is the depth-fusion confidence of each row's position (default 1);
        inferred marks rows placed on filled rather than measured depth (default none).
        """
        n = means.shape[0]
        dev, dt = self.device, self.dtype
        sem_count = INT_DEFAULTS["sem_count"] if sem_logits is not None else 0
        if sem_logits is None:
            sem_logits = torch.zeros(n, self.num_classes, device=dev, dtype=dt)
        if features is None:
            features = torch.zeros(n, self.feature_dim, device=dev, dtype=dt)
        if obs_weight is None:
            obs_weight = torch.ones(n, device=dev, dtype=dt)
        new = {"obs_weight": obs_weight.reshape(n), "means": means, "log_scales": log_scales, "quats": quats,
               "opacity_logits": opacity_logits.reshape(n), "colors": colors, "track_colors": colors,
               "sem_logits": sem_logits, "features": features}
        # Check every field before appending any, so a bad call leaves the map consistent.
        for name, shp in self._shapes().items():
            if tuple(new[name].shape) != (n,) + shp:
                raise ValueError(f"insert: {name} has shape {tuple(new[name].shape)}, expected {(n,) + shp}")
        for name in self._shapes():
            t = new[name].to(device=dev, dtype=dt).detach()
            setattr(self, name, torch.cat([getattr(self, name), t], 0))
        start = len(self) - n
        vals = dict(INT_DEFAULTS, birth_frame=birth_frame, keyframe_id=keyframe_id, sem_count=sem_count)
        for name, val in vals.items():
            setattr(self, name, torch.cat([getattr(self, name),
                                           torch.full((n,), val, device=dev, dtype=torch.int32)]))
        if inferred is not None:
            self.inferred[start:] = inferred.reshape(n).to(device=dev, dtype=torch.int32)
        self.frozen = torch.cat([self.frozen, torch.zeros(n, device=dev, dtype=torch.bool)])
        return torch.arange(start, start + n, device=dev)

    def keep(self, mask: torch.Tensor):
        """Keep only rows where mask is True (used by pruning)."""
        for name in FLOAT_FIELDS + INT_FIELDS + ("frozen",):
            setattr(self, name, getattr(self, name)[mask])

    def prune(self, min_opacity: float = 0.005) -> int:
        """Drop Gaussians below min_opacity; returns how many went."""
        if len(self) == 0:
            return 0
        keep = torch.sigmoid(self.opacity_logits) >= min_opacity
        removed = int((~keep).sum())
        if removed:
            self.keep(keep)
        return removed

    def mark_updated(self, idx: torch.Tensor, freeze_after: int = 8):
        """Count an update of rows idx and freeze those that reached freeze_after."""
        if idx.numel() == 0:
            return
        self.update_count[idx] += 1
        self.frozen[idx] |= self.update_count[idx] >= freeze_after

    # -- views ---------------------------------------------------------------------
    def params(self, idx: Optional[torch.Tensor] = None, with_semantics: bool = False,
               measured_only: bool = False, scale: float = 1.0) -> GaussianParams:
        """measured_only: the tracking reference. Inferred rows get opacity 0 (tracking and
        co-visibility must not align to or be satisfied by a guess), and colours are
        track_colors (see the module docstring). scale multiplies every Gaussian's extent
        (the tracker's reference: tracking.reference_scale)."""
        sel = (lambda t: t) if idx is None else (lambda t: t[idx])
        q = sel(self.quats)
        op = torch.sigmoid(sel(self.opacity_logits))
        if measured_only:
            op = op * (sel(self.inferred) == 0)
        scales = torch.exp(sel(self.log_scales))
        if scale != 1.0:
            scales = scales * scale
        return GaussianParams(
            means=sel(self.means),
            quats=q / q.norm(dim=-1, keepdim=True).clamp(min=1e-12),
            scales=scales,
            opacities=op,
            colors=sel(self.track_colors if measured_only else self.colors).clamp(0, 1),
            sem_probs=torch.softmax(sel(self.sem_logits), -1) if with_semantics and self.num_classes else None,
        )

    def labelled(self) -> torch.Tensor:
        """[N] bool: rows whose logits carry class evidence. Blocks a label image left
        unknown get all-equal logits, whose argmax (class 0) means nothing."""
        if self.num_classes == 0:
            return torch.zeros(len(self), dtype=torch.bool, device=self.device)
        return (self.sem_logits.max(-1).values - self.sem_logits.min(-1).values) > 1e-6

    def labels(self) -> torch.Tensor:
        if self.num_classes == 0 or len(self) == 0:
            return torch.zeros(len(self), dtype=torch.long, device=self.device)
        return self.sem_logits.argmax(-1)

    # -- rigid corrections -----------------------------------------------------------
    def transform_rows(self, idx: torch.Tensor, T: torch.Tensor):
        """Move rows idx rigidly by world transform T (4x4): means and orientations."""
        if idx.numel() == 0:
            return
        T = T.to(self.means)
        self.means[idx] = se3.transform_points(T, self.means[idx])
        qT = se3.rotmat_to_quat(T[:3, :3])
        self.quats[idx] = se3.quat_multiply(qT.expand(idx.numel(), 4), self.quats[idx])

    def apply_keyframe_corrections(self, corrections: Dict[int, torch.Tensor],
                                   default: Optional[torch.Tensor] = None) -> int:
        """Move every Gaussian rigidly by its keyframe's world delta (T_new @ T_old^-1).

        corrections: keyframe id -> 4x4 delta. `default` moves Gaussians of keyframes not
        in the dict whose id is above every key (keyframes newer than the optimised graph);
        others stay. Returns how many rows moved.
        """
        if len(self) == 0 or (not corrections and default is None):
            return 0
        kid_max = int(self.keyframe_id.max()) if len(self) else -1
        top = max(kid_max, max(corrections, default=-1))
        table = torch.eye(4, device=self.device, dtype=self.dtype).repeat(top + 1, 1, 1)
        moved = torch.zeros(top + 1, dtype=torch.bool, device=self.device)
        if default is not None and corrections:
            newest = max(corrections)
            if top > newest:
                table[newest + 1:] = default.to(table)
                moved[newest + 1:] = True
        for k, T in corrections.items():
            if 0 <= int(k) <= top:
                table[int(k)] = T.to(table)
                moved[int(k)] = True
        return self.apply_correction_table(table, moved)

    def apply_correction_table(self, table: torch.Tensor, moved: torch.Tensor) -> int:
        """The batched form: table [K, 4, 4] holds keyframe k's world delta, moved [K] which
        rows of it apply. One gather and one batched transform over all Gaussians, whatever
        the number of keyframes; rows anchored to no keyframe (-1) or to one >= K stay."""
        if len(self) == 0 or table.shape[0] == 0:
            return 0
        kid = self.keyframe_id.long()
        K = table.shape[0]
        ok = (kid >= 0) & (kid < K)
        ok[ok.clone()] = moved.to(self.device)[kid[ok]]
        sel = torch.nonzero(ok).flatten()
        if sel.numel() == 0:
            return 0
        T = table.to(self.means)[kid[sel]]                    # [M, 4, 4]
        self.means[sel] = (T[:, :3, :3] @ self.means[sel, :, None])[..., 0] + T[:, :3, 3]
        self.quats[sel] = se3.quat_multiply(se3.rotmat_to_quat(T[:, :3, :3]), self.quats[sel])
        return int(sel.numel())

    def to(self, device) -> "GaussianMap":
        self.device = torch.device(device)
        for name in FLOAT_FIELDS + INT_FIELDS + ("frozen",):
            setattr(self, name, getattr(self, name).to(self.device))
        return self
