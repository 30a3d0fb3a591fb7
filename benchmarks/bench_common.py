"""Pieces the benchmark scripts share (imported from the scripts' own folder, which
Python puts first on sys.path when a script runs as `python benchmarks/NAME.py`)."""
from __future__ import annotations

import time
from typing import Callable, List, Optional


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


class StackSampler:
    """Poor man's profiler for one thread: samples its Python stack every `period` s.

    cProfile sees only the thread that enables it and hides time spent waiting for the
    GIL; sampling another thread's frames from outside shows where its wall time goes,
    including the lines where it sits blocked. Use as a context manager around the work,
    then `top()` for the (function, file:line) that were innermost most often.
    """

    def __init__(self, thread_id: int, period: float = 0.002, depth: int = 3):
        import collections
        import threading

        self.tid, self.period, self.depth = thread_id, period, depth
        self.counts = collections.Counter()       # innermost `depth` frames
        self.inclusive = collections.Counter()    # every function on the stack
        self.samples = 0
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._run, daemon=True, name="stack_sampler")

    def _run(self):
        import sys

        while not self._stop.wait(self.period):
            f = sys._current_frames().get(self.tid)
            if f is None:
                continue
            parts, funcs = [], set()
            while f is not None:
                c = f.f_code
                if len(parts) < self.depth:
                    parts.append(f"{c.co_name} ({c.co_filename.rsplit('/', 2)[-1]}:{f.f_lineno})")
                funcs.add(f"{c.co_name} ({c.co_filename.rsplit('/', 2)[-1]})")
                f = f.f_back
            self.counts[" < ".join(parts)] += 1
            self.inclusive.update(funcs)
            self.samples += 1

    def __enter__(self):
        self._th.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._th.join()

    def top(self, n: int = 12, inclusive: bool = False) -> List[str]:
        tot = max(1, self.samples)
        counts = self.inclusive if inclusive else self.counts
        return [f"{100 * c / tot:5.1f}%  {k}" for k, c in counts.most_common(n)]


def thread_cpu_seconds(pid: int) -> dict:
    """{tid: (name, user+system CPU seconds)} of every thread of a process, from /proc.

    Covers native threads too (DDS, CUDA, OpenMP), which a Python profiler cannot see.
    Empty where /proc is not available.
    """
    import os

    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    base = f"/proc/{pid}/task"
    try:
        tids = os.listdir(base)
    except OSError:
        return out
    for t in tids:
        try:
            with open(f"{base}/{t}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(t)] = (name, (int(fields[11]) + int(fields[12])) / tick)   # utime, stime
    return out


def busiest_threads(before: dict, after: dict, seconds: float, n: int = 10,
                    names: Optional[dict] = None) -> List[str]:
    """Lines for the n threads that used most CPU between two thread_cpu_seconds() calls,
    as a share of one core over `seconds`; `names` maps tids to better labels."""
    rows = []
    for tid, (name, cpu) in after.items():
        used = cpu - before.get(tid, (name, 0.0))[1]
        rows.append((used, tid, (names or {}).get(tid, name)))
    rows.sort(reverse=True)
    return [f"{100 * u / max(seconds, 1e-9):6.1f}% of a core  tid {tid:<8d} {label}"
            for u, tid, label in rows[:n]]


def transform_error(T) -> tuple:
    """(cm, deg): translation and rotation angle of a 4x4 relative transform."""
    import numpy as np

    T = np.asarray(T)
    return (float(np.linalg.norm(T[:3, 3]) * 100),
            float(np.degrees(np.arccos(np.clip((np.trace(T[:3, :3]) - 1) / 2, -1, 1)))))
