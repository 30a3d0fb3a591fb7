"""The keyframe hole fill started ahead of tracking (core/fill_ahead): a keyframe gets the
same depth it would have filled itself, fills are matched to their frame, a busy worker
starts nothing, and a failing fill fails the keyframe as it would without the thread."""
import threading

import numpy as np
import pytest

from gs4_ros.core import fill_ahead as fa
from gs4_ros.core.config import MappingConfig, PipelineConfig
from gs4_ros.core.depth_fill import mapping_depth
from gs4_ros.core.pipeline import SLAMPipeline
from gs4_ros.io.synthetic import SyntheticSequence


def _wall_with_hole():
    K = np.array([[100.0, 0, 64], [0, 100.0, 48], [0, 0, 1]])
    d = np.full((96, 128), 2.0, np.float32)
    d[30:60, 40:80] = 0.0
    return d, K


def test_a_started_fill_is_what_the_keyframe_would_compute():
    d, K = _wall_with_hole()
    cfg = MappingConfig()
    f = fa.FillAhead()
    try:
        assert f.start(d, K, cfg)
        filled, mask, _ = f.take(d, K, cfg)
        ref, ref_mask = mapping_depth(d, K, cfg)
        assert mask.sum() == 30 * 40
        assert np.array_equal(filled, ref) and np.array_equal(mask, ref_mask)
        assert (f.started, f.used, f.computed_at_keyframe) == (1, 1, 0)
        # Another frame's fill is not handed to this one, even with equal pixels.
        other = d.copy()
        assert f.start(d, K, cfg)
        filled2, _, _ = f.take(other, K, cfg)
        assert np.array_equal(filled2, ref)
        assert (f.used, f.computed_at_keyframe) == (1, 1)
    finally:
        f.close()


def test_a_busy_worker_starts_nothing(monkeypatch):
    gate = threading.Event()
    calls = []

    def slow(depth, K, cfg):
        calls.append(depth)
        gate.wait(10)
        return depth, np.zeros(depth.shape, bool)

    monkeypatch.setattr(fa, "mapping_depth", slow)
    d, K = _wall_with_hole()
    f = fa.FillAhead()
    try:
        assert f.start(d, K, MappingConfig())
        assert not f.start(d.copy(), K, MappingConfig())
        gate.set()
        f.take(d, K, MappingConfig())
        assert len(calls) == 1 and f.started == 1
    finally:
        gate.set()
        f.close()


def test_a_failing_fill_raises_in_the_keyframe(monkeypatch):
    def broken(depth, K, cfg):
        raise RuntimeError("fill failed")

    monkeypatch.setattr(fa, "mapping_depth", broken)
    d, K = _wall_with_hole()
    f = fa.FillAhead()
    try:
        f.start(d, K, MappingConfig())
        with pytest.raises(RuntimeError, match="fill failed"):
            f.take(d, K, MappingConfig())
    finally:
        f.close()


def test_pipeline_with_the_fill_ahead_maps_exactly_as_without():
    """Room 902 (far corner past the sensor's range: the fill matters) with the fill
    started ahead on every likely keyframe against the fill done at the keyframe."""
    seq = SyntheticSequence(seed=902, n_frames=12, width=160, height=120)
    frames = [seq.frame(i) for i in range(len(seq))]
    runs = {}
    for mode in ("never", "always"):
        cfg = PipelineConfig()
        cfg.mapping.fill_holes_ahead = mode
        cfg.mapping.keyframe_max_interval = 3
        pipe = SLAMPipeline(cfg, device="cpu")
        kfs = [pipe.process(f).keyframe for f in frames]
        runs[mode] = (pipe, kfs)
        pipe.close()
    (p0, k0), (p1, k1) = runs["never"], runs["always"]
    assert k0 == k1 and sum(k1) >= 4
    assert p1.fill_ahead.used >= 2, (p1.fill_ahead.started, p1.fill_ahead.used, p1.fill_ahead.computed_at_keyframe)
    assert p0.fill_ahead.started == 0 and p0.fill_ahead.computed_at_keyframe == sum(k0)
    assert len(p0.map) == len(p1.map) > 0
    assert np.array_equal(p0.map.means.cpu().numpy(), p1.map.means.cpu().numpy())
    assert int(p0.map.inferred.sum()) == int(p1.map.inferred.sum()) > 0
    for (_, _, a), (_, _, b) in zip(p0.trajectory, p1.trajectory):
        assert np.array_equal(a, b)
    p1.reset()                    # a new run counts its own fills
    assert (p1.fill_ahead.started, p1.fill_ahead.used, p1.fill_ahead.computed_at_keyframe) == (0, 0, 0)


def test_unknown_fill_ahead_mode_is_refused():
    cfg = PipelineConfig()
    cfg.mapping.fill_holes_ahead = "sometimes"
    with pytest.raises(ValueError, match="fill_holes_ahead"):
        SLAMPipeline(cfg, device="cpu")
