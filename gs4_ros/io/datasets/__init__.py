"""Dataset readers behind one interface, opened by a `KIND:PATH` string.

    ds = open_dataset("tum:/data/rgbd_dataset_freiburg1_desk", frames="0:300")
    ds = open_dataset("7scenes:../shared/data/7scenes_redkitchen_dev")
    ds = open_dataset("replica:/data/Replica/room0")
    ds = open_dataset("synthetic:seed=3,frames=300,loop=0", width=320, height=240)
    frame = ds[0]  # RGBDFrame; len(ds), ds.intrinsics, ds.gt_poses(), ds.timestamps()

Bad input raises DatasetError (a ValueError) whose message is meant for the user.
"""
from __future__ import annotations

from typing import Optional

from .base import Dataset, DatasetError, parse_frame_range, select_frames

KINDS = {
    "tum": "tum",
    "7scenes": "7scenes",
    "sevenscenes": "7scenes",
    "7-scenes": "7scenes",
    "replica": "replica",
    "synthetic": "synthetic",
    "syn": "synthetic",
}


def _reader(kind: str):
    if kind == "tum":
        from .tum import TUMDataset
        return TUMDataset
    if kind == "7scenes":
        from .sevenscenes import SevenScenesDataset
        return SevenScenesDataset
    if kind == "replica":
        from .replica import ReplicaDataset
        return ReplicaDataset
    from .synthetic_dataset import SyntheticDataset
    return SyntheticDataset


def open_dataset(spec: str, frames=None, width: Optional[int] = None, height: Optional[int] = None,
                 device="cpu", **kwargs) -> Dataset:
    """Open `KIND:PATH` (KIND: tum, 7scenes, replica, synthetic).

    frames: 'A:B' or 'A:B:S' (Python slice over the sequence). width/height: resize on
    read (intrinsics scaled). device: only the synthetic generator renders on it. Other
    keyword arguments go to the reader (intrinsics=, depth_scale=, seq= for 7-Scenes).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise DatasetError("dataset must be given as KIND:PATH, e.g. tum:/data/rgbd_dataset_freiburg1_desk "
                           f"(KIND is one of {', '.join(sorted(set(KINDS.values())))})")
    kind, sep, path = spec.strip().partition(":")
    key = kind.strip().lower()
    if key not in KINDS:
        if not sep:
            raise DatasetError(f"dataset '{spec}' is missing its kind; write KIND:PATH with KIND one of "
                               f"{', '.join(sorted(set(KINDS.values())))}")
        raise DatasetError(f"unknown dataset kind '{kind}'; valid kinds are "
                           f"{', '.join(sorted(set(KINDS.values())))}")
    kind = KINDS[key]
    if kind != "synthetic" and not path.strip():
        raise DatasetError(f"dataset '{spec}' has no path after '{kind}:'")
    cls = _reader(kind)
    if kind == "synthetic":
        return cls(path, frames=frames, width=width, height=height, device=device, **kwargs)
    return cls(path.strip(), frames=frames, width=width, height=height, **kwargs)


__all__ = ["open_dataset", "Dataset", "DatasetError", "parse_frame_range", "select_frames", "KINDS"]
