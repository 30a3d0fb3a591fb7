"""Replay a fixed-shape GPU computation from a CUDA graph instead of launching its kernels.

The per-frame steps here (pyramids, the Gaussian predictor) are hundreds of small kernels
at a fixed image size; from Python their launches, not their arithmetic, take the time.
Captured once per input signature and replayed, they cost one launch. Outputs live in the
graph's static buffers and are overwritten by the next call: use them before calling again.
"""
from __future__ import annotations

import logging
from typing import Callable, Dict

import torch

log = logging.getLogger(__name__)


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
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self.fn(*inputs, **static)   # warm-up outside capture (cuDNN selection, allocator)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outs = self.fn(*inputs, **static)
        return graph, inputs, outs
