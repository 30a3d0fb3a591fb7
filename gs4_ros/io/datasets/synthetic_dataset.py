"""The synthetic generator behind the Dataset interface: `synthetic:seed=3,frames=300,loop=0`."""
from __future__ import annotations

from typing import Dict

from .base import Dataset, DatasetError

_KEYS = {"seed": int, "frames": int, "n": int, "loop": None, "room": str, "noise": None,
         "exposure": float}
_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n", ""}


def parse_spec(spec: str) -> Dict:
    """'3' or 'seed=3,frames=300,loop=1,room=kitchen,noise=0' -> options dict."""
    out: Dict = {}
    s = (spec or "").strip()
    if not s:
        return out
    for item in s.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            if "seed" in out:
                raise DatasetError(f"synthetic spec '{spec}': '{item}' needs a key (e.g. frames={item})")
            key, val = "seed", item
        else:
            key, val = (x.strip() for x in item.split("=", 1))
        key = key.lower()
        if key not in _KEYS:
            raise DatasetError(f"synthetic spec '{spec}': unknown option '{key}'; known: "
                               + ", ".join(k for k in _KEYS if k != "n"))
        conv = _KEYS[key]
        if conv is None:
            v = val.lower()
            if v not in _TRUE | _FALSE:
                raise DatasetError(f"synthetic spec '{spec}': {key} must be 0 or 1, got '{val}'")
            out[key] = v in _TRUE
        else:
            try:
                out[key] = conv(val)
            except ValueError:
                raise DatasetError(f"synthetic spec '{spec}': {key}='{val}' is not a valid "
                                   f"{conv.__name__}") from None
    if "n" in out:
        out.setdefault("frames", out.pop("n"))
    return out


class SyntheticDataset(Dataset):
    """Frames rendered on access from a SyntheticSequence (native size = requested size,
    so no resampling: the intrinsics are scaled instead)."""

    def __init__(self, spec: str = "", frames=None, width=None, height=None, device="cpu",
                 seed=None, n_frames=None, loop=None, room=None, sensor=None, **unused):
        from gs4_ros.io.synthetic import SensorModel, SyntheticSequence
        from gs4_ros.io.synthetic.classes import SCANNET20_CLASSES

        opts = parse_spec(spec)
        seed = opts.get("seed", 0) if seed is None else seed
        n = opts.get("frames", 300) if n_frames is None else n_frames
        loop = opts.get("loop", False) if loop is None else loop
        room = opts.get("room") if room is None else room
        if n < 2:
            raise DatasetError(f"synthetic: frames must be at least 2, got {n}")
        if sensor is None:
            sensor = SensorModel() if opts.get("noise", True) else SensorModel.clean()
            if "exposure" in opts:
                sensor.exposure_amplitude = opts["exposure"]
        w, h = width, height
        if w is None and h is None:
            w, h = 640, 480
        elif w is None:
            w = round(int(h) * 4 / 3)
        elif h is None:
            h = round(int(w) * 3 / 4)
        try:
            self.seq = SyntheticSequence(seed=seed, n_frames=n, width=int(w), height=int(h), loop=loop,
                                         device=device, sensor=sensor, room_type=room)
        except ValueError as e:
            raise DatasetError(f"synthetic: {e}") from None
        self.name = f"synthetic:seed={seed},frames={n},loop={int(bool(loop))}" + (f",room={room}" if room else "")
        self.class_names = list(SCANNET20_CLASSES)
        self._setup(self.seq.intrinsics, self.seq.timestamps, list(self.seq.poses), frames, None, None)

    def _read(self, k):
        return self.seq.frame(k)
