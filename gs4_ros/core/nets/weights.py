"""Save and load the two networks as one file: architecture, class list and state dicts.

The file holds only tensors, numbers, strings and lists, so it loads with
`torch.load(weights_only=True)` (no pickled code runs when a weights file is opened).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import torch

from .predictor import GaussianPredictor
from .refiner import GaussianRefiner

FORMAT = "gs4_nets/1"
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "gs4_nets.pt"


def save_networks(path, predictor: GaussianPredictor, refiner: GaussianRefiner, class_names: List[str],
                  meta: Optional[dict] = None):
    blob = {"format": FORMAT, "class_names": list(class_names), "predictor_arch": predictor.arch(),
            "refiner_arch": refiner.arch(),
            "predictor": {k: v.detach().cpu() for k, v in predictor.state_dict().items()},
            "refiner": {k: v.detach().cpu() for k, v in refiner.state_dict().items()},
            "meta": dict(meta or {})}
    save_atomically(blob, path)


def save_atomically(blob: dict, path):
    """torch.save to a temporary file renamed into place: a run killed mid-write (a GPU
    call's time limit) leaves the previous file, not a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)


def load_blob(path) -> dict:
    """The file's raw dict (state dicts, architecture, meta), for tools that edit a networks
    file without building the networks (train/calibrate, benchmarks/refiner_swap)."""
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path} is not a gs4 networks file (format {FORMAT})")
    return blob


def load_networks(path, device="cpu") -> Tuple[GaussianPredictor, GaussianRefiner, dict]:
    """(predictor, refiner, info) in eval mode on device; info has class_names and meta."""
    blob = load_blob(path)
    pred = GaussianPredictor(**blob["predictor_arch"])
    pred.load_state_dict(blob["predictor"])
    ref = GaussianRefiner(**blob["refiner_arch"])
    ref.load_state_dict(blob["refiner"])
    info = {"class_names": list(blob["class_names"]), "meta": blob.get("meta", {}), "path": str(path)}
    return pred.to(device).eval(), ref.to(device).eval(), info
