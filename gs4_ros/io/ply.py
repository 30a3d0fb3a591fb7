"""Gaussian maps as PLY files in the standard 3DGS layout, plus gs4_ros's own fields.

The vertex element starts with exactly the layout of the INRIA 3DGS code (x y z,
nx ny nz, f_dc_0..2, f_rest_0..44, opacity, scale_0..2, rot_0..3, all float32), so
SuperSplat, antimatter15/splat, nerfstudio and gsplat-based tools read our maps. Our
extra fields follow as further vertex properties: label (uchar, argmax class; 255 when
the map has no classes), sem_0..K-1 (class logits), feat_0..F-1 (latent features),
GaussianMap's int32 book-keeping columns (update_count, birth_frame, keyframe_id, ...,
bank_id) and frozen (uchar). Viewers look fields up by name, so the extras are ignored
by them. The open-vocabulary bank that bank_id indexes follows as a second element,
`vocab_entry` (count, emb_0..D-1), with the encoder's name in a header comment.

The INRIA SIBR viewer is the exception: it reads the header line by line assuming the
third line is `element vertex N` and then reads a fixed 62-float struct per vertex, so
any extra property or header comment breaks it. `save_ply(..., extras=False)` writes
that bare layout for it (no comments, no extras).

Colours are stored as degree-0 SH coefficients, f_dc = (c - 0.5) / C0; opacity as a
logit, scales as logs and rotations as (w, x, y, z), i.e. exactly GaussianMap's raw
storage, so a round trip is bit-exact except for colours (one float32 rounding through
the SH conversion).
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
from plyfile import PlyData, PlyElement, PlyParseError

from ..core import gaussian_map as _gm
from ..core.gaussian_map import GaussianMap
from ..core.open_vocab import VocabBank

C0 = 0.28209479177387814
N_SH_REST = 45  # SH degree 3: 15 coefficients x 3 channels beyond DC

REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1",
            "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")
# Book-keeping columns follow GaussianMap's own list, so a field added there round-trips
# without touching this file; files without a column get the map's default for new rows.
INT_FIELDS = tuple(_gm.INT_FIELDS)
_INT_DEFAULTS = dict({"update_count": 0, "birth_frame": 0, "keyframe_id": -1},
                     **getattr(_gm, "INT_DEFAULTS", {}))
CLASS_NAMES_TAG = "gs4_ros class_names "
VOCAB_ENCODER_TAG = "gs4_ros vocab_encoder "
VOCAB_ELEMENT = "vocab_entry"      # the open-vocabulary bank, one row per entry (after the vertices)


def _np(t: torch.Tensor, dtype) -> np.ndarray:
    return t.detach().to("cpu").numpy().astype(dtype, copy=False)


def save_ply(path, gmap: GaussianMap, class_names: Optional[Sequence[str]] = None,
             sh_rest: bool = True, extras: bool = True) -> Path:
    """Write `gmap` to `path` (parent folders are created; the file is replaced atomically
    so a viewer or a ROS save service never sees a half-written map).

    sh_rest: also write f_rest_0..44 as zeros, which most viewers expect (SH degree 3).
    extras: write gs4_ros's fields and the class-name comment; False gives the bare
    3DGS layout that the INRIA SIBR viewer needs.
    """
    path = Path(path)
    if class_names is None:
        class_names = gmap.class_names
    if class_names is not None and extras and gmap.num_classes and len(class_names) != gmap.num_classes:
        raise ValueError(f"{len(class_names)} class names given for a map with {gmap.num_classes} classes")
    n = len(gmap)
    cols: List[tuple] = []  # (name, dtype, values)

    def add(name, dtype, values):
        cols.append((name, dtype, values))

    means = _np(gmap.means, np.float32)
    for i, a in enumerate("xyz"):
        add(a, "f4", means[:, i])
    for a in ("nx", "ny", "nz"):
        add(a, "f4", np.zeros(n, np.float32))
    dc = (_np(gmap.colors, np.float64) - 0.5) / C0
    for i in range(3):
        add(f"f_dc_{i}", "f4", dc[:, i].astype(np.float32))
    if sh_rest:
        zero = np.zeros(n, np.float32)
        for i in range(N_SH_REST):
            add(f"f_rest_{i}", "f4", zero)
    add("opacity", "f4", _np(gmap.opacity_logits, np.float32).reshape(n))
    ls = _np(gmap.log_scales, np.float32)
    for i in range(3):
        add(f"scale_{i}", "f4", ls[:, i])
    q = _np(gmap.quats, np.float32)
    for i in range(4):
        add(f"rot_{i}", "f4", q[:, i])

    comments: List[str] = []
    if extras:
        if gmap.num_classes:
            label = _np(gmap.labels(), np.int64).clip(0, 254).astype(np.uint8)
        else:
            label = np.full(n, 255, np.uint8)
        add("label", "u1", label)
        sem = _np(gmap.sem_logits, np.float32)
        for i in range(gmap.num_classes):
            add(f"sem_{i}", "f4", sem[:, i])
        feat = _np(gmap.features, np.float32)
        for i in range(gmap.feature_dim):
            add(f"feat_{i}", "f4", feat[:, i])
        tc = _np(gmap.track_colors, np.float32)    # tracking's colours (differ after joint steps)
        for i in range(3):
            add(f"track_color_{i}", "f4", tc[:, i])
        add("obs_weight", "f4", _np(gmap.obs_weight, np.float32).reshape(n))   # depth-fusion confidence
        for name in INT_FIELDS:
            add(name, "i4", _np(getattr(gmap, name), np.int32))
        add("frozen", "u1", _np(gmap.frozen, np.uint8))
        comments.append("generated by gs4_ros (3DGS layout + gs4_ros fields)")
        if class_names is not None:
            names = [str(c) for c in class_names]
            comments.append(CLASS_NAMES_TAG + json.dumps(names, ensure_ascii=True))

    arr = np.empty(n, dtype=[(name, dt) for name, dt, _ in cols])
    for name, _, vals in cols:
        arr[name] = vals
    elements = [PlyElement.describe(arr, "vertex")]
    bank = getattr(gmap, "vocab", None)
    if extras and bank is not None and len(bank):
        # A second element, as meshes add faces: 3DGS viewers read the vertex element by
        # name and skip the rest.
        ent = np.empty(len(bank), dtype=[("count", "f4")] + [(f"emb_{i}", "f4") for i in range(bank.dim)])
        ent["count"] = bank.count
        for i in range(bank.dim):
            ent[f"emb_{i}"] = bank.emb[:, i]
        elements.append(PlyElement.describe(ent, VOCAB_ELEMENT))
        comments.append(VOCAB_ENCODER_TAG + (bank.encoder or "classes"))
    ply = PlyData(elements, text=False, byte_order="<", comments=comments)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            ply.write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _read_vertex(path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no PLY file at {path}")
    try:
        ply = PlyData.read(str(path))
    except (PlyParseError, ValueError, UnicodeDecodeError, EOFError) as e:
        raise ValueError(f"{path} is not a readable PLY file: {e}") from e
    names = [el.name for el in ply.elements]
    if "vertex" not in names:
        raise ValueError(f"{path} has no 'vertex' element (elements: {names}); not a Gaussian PLY")
    return ply, ply["vertex"].data


def _indexed(fields, prefix: str, path) -> int:
    """Count prefix0..prefixK-1 fields and check the indices are contiguous."""
    idx = sorted(int(m.group(1)) for f in fields if (m := re.fullmatch(re.escape(prefix) + r"(\d+)", f)))
    if idx != list(range(len(idx))):
        raise ValueError(f"{path}: fields {prefix}* are not numbered 0..K-1 (found {idx})")
    return len(idx)


def _tag(ply, tag: str) -> Optional[str]:
    for c in list(ply.comments) + list(ply.obj_info):
        if c.startswith(tag):
            return c[len(tag):]
    return None


def _class_names(ply) -> Optional[List[str]]:
    names = _tag(ply, CLASS_NAMES_TAG)
    return None if names is None else list(json.loads(names))


def read_class_names(path) -> Optional[List[str]]:
    """Class names recorded by save_ply's header comment, or None."""
    return _class_names(_read_vertex(path)[0])


def _read_bank(ply, path) -> Optional[VocabBank]:
    if VOCAB_ELEMENT not in [el.name for el in ply.elements]:
        return None
    e = ply[VOCAB_ELEMENT].data
    fields = e.dtype.names or ()
    d = _indexed(fields, "emb_", path)
    if not d or "count" not in fields:
        raise ValueError(f"{path}: element {VOCAB_ELEMENT} needs count and emb_0..emb_D-1")
    bank = VocabBank.from_arrays(np.stack([np.asarray(e[f"emb_{i}"], np.float32) for i in range(d)], -1),
                                 np.asarray(e["count"], np.float32))
    bank.encoder = _tag(ply, VOCAB_ENCODER_TAG) or ""
    return bank


def load_ply(path, device="cpu", num_classes: Optional[int] = None,
             class_names: Optional[Sequence[str]] = None) -> GaussianMap:
    """Read a PLY written by save_ply or by any 3DGS tool into a GaussianMap.

    The class count and feature size come from the sem_* / feat_* fields. A plain 3DGS
    file has neither: its map gets `num_classes` (default 0) all-zero logits, no
    features, zero update counts, birth frame 0 and keyframe id -1. If `num_classes` is
    given and the file has a different number of sem_* fields, that is an error rather
    than a silent reshape; likewise if `class_names` is given and the file records other
    names (same count, another list or order: every logit would mean another class).
    SH coefficients beyond DC are ignored (the map stores colour).
    """
    ply, v = _read_vertex(path)
    fields = v.dtype.names or ()
    recorded = _class_names(ply)
    if class_names is not None and recorded is not None and recorded != list(class_names):
        raise ValueError(f"{path} was saved with classes {recorded} but {list(class_names)} "
                         "were asked for: its semantics would be read as the wrong classes")
    missing = [f for f in REQUIRED if f not in fields]
    if missing:
        raise ValueError(f"{path} is not a 3DGS Gaussian PLY: missing vertex fields {missing} "
                         f"(has {list(fields)[:20]}{'...' if len(fields) > 20 else ''})")
    k = _indexed(fields, "sem_", path)
    f_dim = _indexed(fields, "feat_", path)
    if num_classes is not None and k and k != num_classes:
        raise ValueError(f"{path} has {k} semantic classes but num_classes={num_classes} was asked for")
    if not k and num_classes:
        k = int(num_classes)
    n = len(v)

    def col(name, dtype=np.float32):
        return np.array(v[name], dtype=dtype)  # copy: plyfile columns are strided views

    def stack(names):
        if not names:
            return torch.zeros(n, 0)
        return torch.from_numpy(np.stack([col(c) for c in names], -1))

    gm = GaussianMap(num_classes=k, feature_dim=f_dim, device=device)
    dc = np.stack([col(f"f_dc_{i}", np.float64) for i in range(3)], -1)
    colors = torch.from_numpy((dc * C0 + 0.5).astype(np.float32))
    sem = stack([f"sem_{i}" for i in range(k)]) if "sem_0" in fields else torch.zeros(n, k)
    gm.insert(
        means=stack(["x", "y", "z"]),
        log_scales=stack([f"scale_{i}" for i in range(3)]),
        quats=stack([f"rot_{i}" for i in range(4)]),
        opacity_logits=torch.from_numpy(col("opacity")),
        colors=colors,
        sem_logits=sem,
        features=stack([f"feat_{i}" for i in range(f_dim)]),
    )
    for name in INT_FIELDS:
        vals = col(name, np.int32) if name in fields else np.full(n, _INT_DEFAULTS.get(name, 0), np.int32)
        setattr(gm, name, torch.from_numpy(vals).to(gm.device))
    if "frozen" in fields:
        gm.frozen = torch.from_numpy(col("frozen", np.uint8) != 0).to(gm.device)
    if "obs_weight" in fields:
        gm.obs_weight = torch.from_numpy(col("obs_weight")).to(gm.device)
    if "track_color_0" in fields:         # else (other tools' files) insert's copy of the colours
        gm.track_colors = stack([f"track_color_{i}" for i in range(3)]).to(gm.device)
    gm.class_names = recorded if recorded is not None else (list(class_names) if class_names is not None else None)
    gm.vocab = _read_bank(ply, path)
    if gm.vocab is None:
        gm.bank_id.fill_(-1)                 # ids without their bank mean nothing
    return gm
