"""Pieces the benchmark scripts share (imported from the scripts' own folder, which
Python puts first on sys.path when a script runs as `python benchmarks/NAME.py`)."""
from __future__ import annotations

import time
from typing import Callable, List


def add_sequence_args(ap, repeat: bool = False) -> None:
    """--dataset KIND:PATH (repeatable with `repeat`), --frames, --device, --width,
    --height, --config: a sequence and the pipeline settings, as `gs4 run` takes them."""
    if repeat:
        ap.add_argument("--dataset", action="append", required=True, help="may repeat")
    else:
        ap.add_argument("--dataset", required=True)
    ap.add_argument("--frames", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--height", type=int, default=None)
    ap.add_argument("--config", default=None)


def timed_ms(fn: Callable[[], object], dev, reps: int) -> List[float]:
    """Milliseconds of each of `reps` calls of fn; on CUDA synchronised before and after,
    so queued kernels count towards the call that launched them."""
    import torch

    out = []
    for _ in range(reps):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t = time.perf_counter()
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        out.append(1000 * (time.perf_counter() - t))
    return out
