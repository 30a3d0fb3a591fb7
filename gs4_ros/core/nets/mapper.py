"""The learned mapping step the pipeline runs on keyframes (`initializer: network`).

predict (one Gaussian per token) -> co-visibility selection exactly as v0 (only blocks the
map does not explain yet are inserted) -> insert -> refine the visible map Gaussians
together with the new ones -> count the update of each refined Gaussian (a Gaussian is
frozen after `freeze_after` updates and then only serves as context). Pruning of
low-opacity Gaussians follows in the pipeline, as for v0.
"""
from __future__ import annotations

import logging
import time
from typing import Dict, List, Tuple

import torch

from ..covisibility import block_confidence, blocks_to_insert, project_rows
from ..cuda_graph import GraphedCall
from ..initializer import labels_to_logits
from ..semantic_fusion import fuse_semantics
from .refiner import FIELDS, GaussianRefiner, apply_residuals
from .semantic_tta import augmented_log_probs

log = logging.getLogger(__name__)


@torch.no_grad()
def visible_rows(gmap, pose: torch.Tensor, K: torch.Tensor, depth: torch.Tensor, margin: float = 0.05) -> torch.Tensor:
    """Rows of map Gaussians on the surface the frame observes: inside the image and within
    margin (metres, + 5% of depth) of the observed depth at their pixel (occluded ones are not)."""
    if len(gmap) == 0:
        return torch.zeros(0, dtype=torch.long, device=gmap.device)
    H, W = depth.shape
    u, v, z, ok = project_rows(gmap, slice(None), pose, K, H, W)
    d = depth[v, u]
    ok &= (d > 0) & ((z - d).abs() < margin + 0.05 * d)
    return torch.nonzero(ok).flatten()


def refine_set(refiner: GaussianRefiner, gmap, rows: torch.Tensor, new_rows: torch.Tensor,
               new_features: torch.Tensor = None, colour: bool = True):
    """Refined raw fields of map rows (differentiable in the refiner's weights) and the mask
    of rows that may change (not frozen). rows must end with new_rows (select_rows does
    that); new_features, when given, replaces their stored features (training passes the
    predictor's features with their graph, so the latent is trained for the refiner)."""
    g = {f: getattr(gmap, f)[rows] for f in FIELDS}
    if new_features is not None and new_rows.numel():
        g["features"] = torch.cat([g["features"][: rows.numel() - new_rows.numel()], new_features], 0)
    is_new = _member(rows, new_rows, len(gmap))
    res = refiner(g, is_new)
    upd = ~gmap.frozen[rows]
    # Scale changes only at a Gaussian's first refinement; colour, rotation and opacity keep
    # settling until it freezes. Trained one frame at a time, the scale residual learns
    # "grow where coverage is thin"; re-applied on every overlapping keyframe it compounded
    # into blurred, thickened surfaces that the tracker then lost. Shipped weights, seed 900,
    # 40 frames at 640x480 (`gs4 train eval --device cpu --seeds 900 --frames 40 --variants
    # +refinement`): PSNR 16.88 -> 17.93 dB, depth L1 4.09 -> 1.91 cm, ATE 2.09 -> 0.28 cm;
    # the zero-residual control (no scale change at all) gave 17.77 dB, 1.89 cm.
    keep = torch.ones_like(res)
    keep[:, 3:6] = (gmap.update_count[rows] == 0).to(res.dtype)[:, None]
    if not colour:      # network.refine_colour: the predicted colours stay (see NetworkConfig)
        keep[:, 0:3] = 0
    res = res * keep * upd[:, None].to(res.dtype)
    return apply_residuals(g, res), upd


@torch.no_grad()
def commit(gmap, rows: torch.Tensor, refined: Dict[str, torch.Tensor], upd: torch.Tensor, freeze_after: int):
    """Write refined fields into the map (non-frozen rows only) and count the update."""
    r = rows[upd]
    for f in ("colors", "log_scales", "quats", "opacity_logits"):
        getattr(gmap, f)[r] = refined[f][upd].to(gmap.dtype)
    gmap.track_colors[r] = gmap.colors[r]          # a mapping update: tracking reads it too
    gmap.mark_updated(r, freeze_after)


def _member(rows: torch.Tensor, of: torch.Tensor, n: int) -> torch.Tensor:
    """rows in `of` (both row indices below n), by a mask: torch.isin sorts both sets."""
    mask = torch.zeros(n, dtype=torch.bool, device=rows.device)
    mask[of] = True
    return mask[rows]


def select_rows(vis: torch.Tensor, new_rows: torch.Tensor, cap: int, n_rows: int) -> torch.Tensor:
    """Visible rows plus the new ones, at most cap (new ones first, visible ones evenly
    thinned). n_rows: the map's size (given, so nothing is read back from the GPU)."""
    old = vis[~_member(vis, new_rows, n_rows)]
    room = max(cap - new_rows.numel(), 0)
    if old.numel() > room:
        old = old[torch.linspace(0, old.numel() - 1, room, device=old.device).long()] if room else old[:0]
    return torch.cat([old, new_rows])


class NetworkMapper:
    def __init__(self, predictor, refiner, cfg, class_map=None):
        self.predictor = predictor
        self.refiner = refiner
        self.cfg = cfg
        self.class_map = class_map  # [K_cfg] index into the network's classes (-1: absent)
        if cfg.network.final_semantics_model not in ("segmenter", "head"):
            raise ValueError(f"network.final_semantics_model must be 'segmenter' or 'head', "
                             f"got {cfg.network.final_semantics_model!r}")
        if not 0.0 <= float(cfg.network.final_semantics_head_weight) <= 1.0:
            raise ValueError(f"network.final_semantics_head_weight must be in [0, 1], "
                             f"got {cfg.network.final_semantics_head_weight}")
        self._segmenter = None      # (segmenter, class map) once loaded; False: no file
        self.timings_ms: Dict[str, float] = {}
        # The predictor at inference, replayed from a CUDA graph per frame size and stride
        # (~1 ms of kernels that take ~4 ms to launch one by one from Python).
        self._predict_graphed = GraphedCall(
            lambda rgb, depth, K, *lab, stride: self.predictor(rgb, depth, K, cfg.mapping, lab[0] if lab else None,
                                                               stride=stride), "Gaussian predictor")

    def _predict(self, rgb, depth, K, labels, stride: int):
        return self._predict_graphed(rgb, depth, K, *(() if labels is None else (labels,)), stride=stride)

    def _sync(self, dev):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    @staticmethod
    def _semantics(logits: torch.Tensor, class_map) -> torch.Tensor:
        """Logits in a network's class list -> in the configured one (absent: -10); the
        map is that network's (_class_map; None when the lists are the same)."""
        if class_map is None:
            return logits
        out = torch.full((logits.shape[0], class_map.numel()), -10.0, device=logits.device, dtype=logits.dtype)
        ok = class_map >= 0
        out[:, ok] = logits[:, class_map[ok]]
        return out

    def final_semantics_model(self):
        """(model, class map) the final semantic pass runs: the keyframe segmenter, loaded
        on first use (a run that never reaches the pass never reads it), or the semantic
        head when network.final_semantics_model is "head" or no segmenter file exists."""
        nc = self.cfg.network
        if nc.final_semantics_model == "head":
            return self.predictor, self.class_map
        if self._segmenter is None:
            from pathlib import Path

            from .segmenter import DEFAULT_SEGMENTER, load_segmenter

            path = Path(nc.segmenter_weights) if nc.segmenter_weights else DEFAULT_SEGMENTER
            if not path.is_file():
                log.warning("final semantics: no segmenter at %s; the semantic head runs the pass", path)
                self._segmenter = False
            else:
                dev = next(self.predictor.parameters()).device
                model, info = load_segmenter(path, dev)
                self._segmenter = (model, _class_map(info["class_names"], self.cfg, dev, "segmenter"))
                log.info("final semantics: segmenter %s", path)
        return self._segmenter if self._segmenter else (self.predictor, self.class_map)

    def final_semantics_name(self) -> str:
        """"segmenter" or "head": what final_semantics_model() gives."""
        return "segmenter" if self.final_semantics_model()[0] is not self.predictor else "head"

    def final_semantics_scales(self) -> List[float]:
        """The rescaled passes of the model final_semantics_model() gives (each its own)."""
        nc = self.cfg.network
        return list(nc.final_semantics_head_scales if self.final_semantics_name() == "head"
                    else nc.final_semantics_scales)

    def has_semantics(self) -> bool:
        """Whether this mapper's classes come from the semantic head (not label images)."""
        return self.cfg.network.semantics == "network" and self.cfg.num_classes > 0

    @torch.no_grad()
    def augmented_evidence(self, rgb, depth, K) -> dict:
        """semantic_tta.augmented_log_probs of one keyframe under cfg.network's settings (with
        final_semantics_model() and that model's scales), the log-probabilities in the
        configured class list (what fusion takes)."""
        nc = self.cfg.network
        model, cmap = self.final_semantics_model()
        out = augmented_log_probs(model, rgb, depth, K, self.cfg.mapping, self.final_semantics_scales(),
                                  nc.final_semantics_mirror)

        def head():
            lp = augmented_log_probs(self.predictor, rgb, depth, K, self.cfg.mapping, nc.final_semantics_head_scales,
                                     nc.final_semantics_mirror)["log_probs"]
            return self._semantics(lp, self.class_map)
        out["log_probs"] = self._with_head(self._semantics(out["log_probs"], cmap), head)
        return out

    def _online_evidence(self, rgb, depth, K, head_logits: torch.Tensor) -> torch.Tensor:
        """A keyframe's token evidence from the final pass's model (one plain pass), the
        head's share mixed in as the final pass mixes it; the head's own logits when the
        head is that model (or no segmenter file exists)."""
        model, cmap = self.final_semantics_model()
        if model is self.predictor:
            return head_logits
        t0 = time.perf_counter()
        m = self.cfg.mapping
        lp = model.semantic_log_probs(rgb[None], depth[None], K[None], m, m.stride)["log_probs"]
        out = self._with_head(self._semantics(lp[0].flatten(1).T, cmap).to(head_logits.dtype),
                              lambda: head_logits.log_softmax(-1))
        self._sync(depth.device)
        self.timings_ms["segment"] = 1000 * (time.perf_counter() - t0)
        return out

    def _with_head(self, evidence: torch.Tensor, head_log_probs) -> torch.Tensor:
        """(1 - w) of the pass's model's evidence plus w of the head's log-probabilities
        (head_log_probs(), called only when w > 0: the head's passes cost as much again on a
        CPU). The two models mistake different objects for their neighbours; a fifth of the
        head's vote raised map mIoU on the three groups of held-out rooms measured
        (docs/results.md, twenty-sixth session)."""
        w = self.head_weight()
        return evidence if w <= 0 else (1 - w) * evidence + w * head_log_probs()

    def head_weight(self) -> float:
        """The head's share of the final pass's evidence: network.final_semantics_head_weight
        when the segmenter runs the pass, else 0 (the head alone)."""
        w = float(self.cfg.network.final_semantics_head_weight)
        return w if self.final_semantics_name() == "segmenter" else 0.0

    @torch.no_grad()
    def map_frame(self, gmap, rasterizer, depth, rgb, K, intr, pose, labels, kf_id: int, frame_index: int,
                  covis_render=None, inferred_blocks=None) -> int:
        """Predict the keyframe's Gaussians, insert those the map does not explain yet, refine
        them with their visible neighbours. inferred_blocks: [hb*wb] bool, tokens whose depth
        was filled across a hole rather than measured (their rows are marked inferred)."""
        m, nc = self.cfg.mapping, self.cfg.network
        dev = depth.device
        t0 = time.perf_counter()
        use_frame_labels = nc.semantics == "frame" and labels is not None
        tok = self._predict(rgb, depth, K, labels if use_frame_labels else None, m.stride)
        self._sync(dev)
        t1 = time.perf_counter()
        self.timings_ms = {"predict": 1000 * (t1 - t0)}
        conf = block_confidence(tok.priors.frame(0), K, m.stride, intr.width, intr.height)
        select = blocks_to_insert(rasterizer, gmap, pose, K, intr.width, intr.height, m.stride, tok.depth[0],
                                  tok.valid[0], m.silhouette_threshold, m.front_margin, covis_render, inferred_blocks)
        if use_frame_labels:
            evidence = tok.labels[0]
        else:
            evidence = self._semantics(tok.sem_logits[0], self.class_map)
            if nc.online_segmenter:
                evidence = self._online_evidence(rgb, depth, K, evidence)
        fuse_semantics(gmap, pose, K, m, tok.grid_shape, tok.depth[0], tok.valid[0], evidence, len(gmap))
        n = int(select.sum())
        if n == 0:
            return 0
        means, log_scales, quats = tok.world(0, pose, select)
        if use_frame_labels:
            sem = labels_to_logits(evidence[select], self.cfg.num_classes)
        else:
            sem = evidence[select]
        # A map loaded from elsewhere (a v0 PLY) may lack the latent features: map into it,
        # but the refiner, which reads them, is skipped.
        fits = gmap.feature_dim == self.predictor.feature_dim
        if not fits and not getattr(self, "_warned", False):
            log.warning("map has %d feature channels, the networks %d: refinement skipped for this map",
                        gmap.feature_dim, self.predictor.feature_dim)
            self._warned = True
        new_rows = gmap.insert(means, log_scales, quats, tok.opacity_logits[0][select], tok.colors[0][select],
                               sem_logits=sem, features=tok.features[0][select] if fits else None,
                               birth_frame=frame_index, keyframe_id=kf_id, obs_weight=conf[select],
                               inferred=None if inferred_blocks is None else inferred_blocks[select])
        if nc.refine and self.refiner is not None and fits:
            t2 = time.perf_counter()
            rows = select_rows(visible_rows(gmap, pose, K, depth, nc.visible_margin), new_rows, nc.max_refine,
                               len(gmap))
            refined, upd = refine_set(self.refiner, gmap, rows, new_rows, colour=nc.refine_colour)
            commit(gmap, rows, refined, upd, m.freeze_after)
            self._sync(dev)
            self.timings_ms["refine"] = 1000 * (time.perf_counter() - t2)
        return n


def _class_map(names, cfg, device, what: str):
    """[K_cfg] index of each configured class in a network's class list (-1: absent), or
    None when the lists are the same."""
    if list(names) == list(cfg.class_names):
        return None
    idx = {n: i for i, n in enumerate(names)}
    class_map = torch.tensor([idx.get(n, -1) for n in cfg.class_names], device=device)
    log.warning("%s classes differ from the configured ones; %d of %d configured classes are known to it",
                what, int((class_map >= 0).sum()), len(cfg.class_names))
    return class_map


def load_mapper(cfg, device) -> Tuple["NetworkMapper", dict] | Tuple[None, None]:
    """The mapper for cfg.network.weights (default: the shipped file), or (None, None) with a
    warning when no weights file exists, so the pipeline falls back to v0."""
    from .weights import DEFAULT_WEIGHTS, load_networks
    from pathlib import Path

    path = Path(cfg.network.weights) if cfg.network.weights else DEFAULT_WEIGHTS
    if not path.is_file():
        log.warning("initializer 'network': no weights at %s; falling back to the geometric initialiser", path)
        return None, None
    pred, ref, info = load_networks(path, device)
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True   # fixed frame size: let cuDNN pick its fastest convolutions
    class_map = _class_map(info["class_names"], cfg, device, "network")
    log.info("initializer 'network': weights %s (refine %s)", path, "on" if cfg.network.refine else "off")
    return NetworkMapper(pred, ref, cfg, class_map), info
