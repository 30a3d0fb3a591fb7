"""Replay a fixed-shape GPU computation from a CUDA graph instead of launching its kernels.

The per-frame steps here (pyramids, the Gaussian predictor) are hundreds of small kernels
at a fixed image size; from Python their launches, not their arithmetic, take the time.
Captured once per input signature and replayed, they cost one launch. Outputs live in the
graph's static buffers and are overwritten by the next call: use them before calling again.
"""
from __future__ import annotations

import contextlib
import gc
import logging
from typing import Callable, Dict, Optional, Tuple

import torch

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _cyclic_gc_paused():
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def capture(body: Callable[[], object], warmup: Optional[Callable[[], object]] = None,
            warmup_runs: int = 1) -> Tuple["torch.cuda.CUDAGraph", object]:
    """(graph, body's outputs): warmup (default: body) run warmup_runs times on a side
    stream, as CUDA graphs require, then body captured into a new graph.

    Python's cyclic garbage collector is paused during the capture. torch no longer
    collects before capturing (it was slow), so a dead pipeline's graph left in a
    reference cycle (a second pipeline in one process: the ablation, a sweep, a node
    reset) could be destroyed mid-capture, which CUDA forbids; the capture then fails
    and the caller falls back to eager launches for good (seen on an H100 in
    benchmarks/sweep.py: the tracker solved on the host from the 16th room on)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup_runs):
            (warmup or body)()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with _cyclic_gc_paused(), torch.cuda.graph(graph):
        out = body()
    return graph, out


class GraphedCall:
    """fn(*tensors, **static) on CUDA through graphs, one per input shapes/dtypes and
    static (hashable, non-tensor) arguments; eager otherwise.

    If a capture fails (an operation this torch build refuses inside a graph, such as a
    host synchronisation), it logs once and runs fn eagerly from then on.
    """

    def __init__(self, fn: Callable, name: str, enabled: bool = True):
        self.fn = fn
        self.name = name
        self.enabled = enabled
        self.failed = False
        self._entries: Dict[tuple, tuple] = {}

    def __call__(self, *args: torch.Tensor, **static):
        if not self.enabled or self.failed or not args[0].is_cuda:
            return self.fn(*args, **static)
        key = (tuple((tuple(a.shape), a.dtype, a.device) for a in args), tuple(sorted(static.items())))
        entry = self._entries.get(key)
        if entry is None:
            try:
                entry = self._capture(args, static)
            except RuntimeError as e:
                log.warning("%s: CUDA graph capture failed (%s); running eagerly", self.name, e)
                self.failed = True
                self._entries.clear()
                return self.fn(*args, **static)
            self._entries[key] = entry
        graph, inputs, outs = entry
        for dst, src in zip(inputs, args):
            dst.copy_(src)
        graph.replay()
        return outs

    def _capture(self, args, static):
        inputs = [a.detach().clone() for a in args]
        graph, outs = capture(lambda: self.fn(*inputs, **static))
        return graph, inputs, outs
