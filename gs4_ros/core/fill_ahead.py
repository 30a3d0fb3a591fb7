"""A keyframe's depth-hole fill, started on the host while the GPU tracks the frame.

The fill (depth_fill.mapping_depth) needs the frame's depth and intrinsics, not its pose,
and takes 5-30 ms of host time per 640x480 keyframe. Done after tracking it sits on the
keyframe's critical path: the live node on an H200 at 640x480 and 30 Hz dropped 2.2% of
its frames with it and none without (benchmarks/node_latency.py). When the motion predicts
that a frame will become a keyframe, a worker thread fills while the frame is tracked (the
GPU works, the host mostly waits); the keyframe then takes the result, which is the same
arrays it would have computed itself, and a frame that does not become one drops it.
One fill at a time: if the previous one is still running nothing new starts, so a slow
host never builds a queue.
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Optional, Tuple

import numpy as np

from .depth_fill import mapping_depth

MODES = ("gpu", "always", "never")


class FillAhead:
    """start() a frame's fill, take() it (or compute it) when the frame is a keyframe. A fill
    belongs to the depth array it was started with (the object, not a frame index, which a
    replayed or re-stamped stream may repeat)."""

    def __init__(self):
        self._pool: Optional[ThreadPoolExecutor] = None
        self._job: Optional[Tuple[np.ndarray, Future]] = None
        self.started = 0       # fills started ahead
        self.used = 0          # ... that a keyframe took
        self.computed_at_keyframe = 0   # keyframes with no fill started ahead (computed then)

    def start(self, depth: np.ndarray, K: np.ndarray, cfg) -> bool:
        """Begin the fill of this depth image in the worker thread; False when the worker is busy."""
        if self._job is not None and not self._job[1].done():
            return False
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gs4_fill")
        self._job = (depth, self._pool.submit(mapping_depth, depth, K, cfg))
        self.started += 1
        return True

    def take(self, depth: np.ndarray, K: np.ndarray, cfg) -> Tuple[np.ndarray, np.ndarray, float]:
        """(filled depth, filled mask, host ms this call took) for a keyframe's depth: the fill
        started ahead for it, else computed now. A fill of an earlier frame is dropped."""
        t = time.perf_counter()
        job, self._job = self._job, None
        if job is not None and job[0] is depth:
            filled, mask = job[1].result()   # re-raises what the fill raised, as computing it here would
            self.used += 1
        else:
            filled, mask = mapping_depth(depth, K, cfg)
            self.computed_at_keyframe += 1
        return filled, mask, 1000 * (time.perf_counter() - t)

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._job = None
