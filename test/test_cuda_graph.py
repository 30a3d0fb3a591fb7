"""CUDA graph capture (core/cuda_graph): a graphed call gives the eager result and replays
with new inputs; a dead graph that Python's cyclic collector would free in the middle of
another capture no longer breaks that capture. GPU only (the CPU suite skips it)."""
import contextlib
import gc
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gs4_ros.core import cuda_graph
from gs4_ros.core.cuda_graph import GraphedCall

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")


def test_graphed_call_matches_eager_and_replays_new_inputs():
    call = GraphedCall(lambda a, b: (a * b + 1).sum(0), "product")
    for seed in range(3):
        g = torch.Generator(device="cuda").manual_seed(seed)
        a = torch.rand(16, 4, device="cuda", generator=g)
        b = torch.rand(16, 4, device="cuda", generator=g)
        torch.testing.assert_close(call(a, b).clone(), (a * b + 1).sum(0))
    assert not call.failed and len(call._entries) == 1


def dead_graph_scenario(paused: bool) -> bool:
    """Whether a new graphed call failed to capture while a dead one, left in a reference
    cycle (a dropped pipeline), became garbage during that capture and allocations there
    ran the cyclic collector. paused=False removes the collector's pause (the control)."""
    if not paused:
        cuda_graph._cyclic_gc_paused = contextlib.nullcontext
    x = torch.ones(8, device="cuda")
    keep = []
    thresholds = gc.get_threshold()

    def fn(t):
        if torch.cuda.is_current_stream_capturing() and keep:
            keep.clear()                   # the old call is now only a cycle
            gc.set_threshold(1, 1, 1)      # collect at nearly every allocation ...
            junk = [[i] for i in range(2000)]   # ... and allocate
            del junk
        return t + 1

    class Holder:
        pass

    gc.collect()
    h = Holder()
    h.me = h
    h.call = GraphedCall(lambda t: t * 2, "old")
    h.call(x)
    assert not h.call.failed
    keep.append(h)
    del h
    try:
        new = GraphedCall(fn, "new")
        out = new(x).clone()
    finally:
        gc.set_threshold(*thresholds)
    torch.testing.assert_close(out, torch.full_like(x, 2.0))
    return new.failed


@pytest.mark.parametrize("paused", [True, False])
def test_a_dead_graph_collected_during_another_capture(paused):
    """With the collector paused the capture succeeds; without the pause the dead graph is
    destroyed mid-capture, which CUDA forbids, and the new call falls back to eager
    launches for good, as the tracker did in a 20-room sweep. Each case runs in its own
    process: a failed capture leaves torch's CUDA generator unusable in the process it
    happened in ("Offset increment outside graph capture"), which would fail later tests."""
    code = ("import sys; sys.path.insert(0, 'test'); from test_cuda_graph import dead_graph_scenario; "
            f"print('failed' if dead_graph_scenario({paused}) else 'captured')")
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-1] == ("captured" if paused else "failed"), r.stdout + r.stderr[-2000:]
