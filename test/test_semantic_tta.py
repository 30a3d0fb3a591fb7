"""The end-of-sequence semantic pass: test-time augmentation of the semantic head
(core/nets/semantic_tta), re-fusion of the map's class evidence (semantic_fusion) and the
pipeline's final_semantics, on the CPU."""
import logging

import numpy as np
import pytest
import torch

from gs4_ros.core.config import MappingConfig, PipelineConfig
from gs4_ros.core.gaussian_map import GaussianMap
from gs4_ros.core.nets import GaussianPredictor
from gs4_ros.core.nets.semantic_tta import augmented_log_probs, rescaled
from gs4_ros.core.pipeline import SLAMPipeline
from gs4_ros.core.semantic_fusion import refuse_semantics


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    return GaussianPredictor(width=32, sem_context=True, sem_geometry=True).eval()


def _tensors(f):
    return torch.from_numpy(f.rgb).float() / 255, torch.from_numpy(f.depth), f.intrinsics.K()


def _mirror(rgb, depth, K):
    Km = K.clone()
    Km[0, 2] = depth.shape[1] - 1 - K[0, 2]
    return rgb.flip(1), depth.flip(1), Km


def test_mirror_averaging_is_mirror_equivariant(predictor, frame):
    """Plain + mirrored passes of a frame, and of the frame's mirror image flipped back, are
    the same evidence: fails if a pass is flipped back on the wrong axis or the principal
    point is not mirrored with the image."""
    cfg = MappingConfig()
    rgb, depth, K = _tensors(frame)
    a = augmented_log_probs(predictor, rgb, depth, K, cfg, scales=(), mirror=True)
    b = augmented_log_probs(predictor, *_mirror(rgb, depth, K), cfg, scales=(), mirror=True)
    hb, wb = a["grid_shape"]
    flip_back = b["log_probs"].T.reshape(-1, hb, wb).flip(2).reshape(-1, hb * wb).T
    ok = a["valid"] & b["valid"].reshape(hb, wb).flip(1).reshape(-1)
    assert ok.sum() > 0.5 * ok.numel()
    torch.testing.assert_close(a["log_probs"][ok], flip_back[ok], atol=2e-4, rtol=1e-4)
    # ... and the mirrored pass matters: the plain pass alone differs.
    plain = augmented_log_probs(predictor, rgb, depth, K, cfg, scales=(), mirror=False)
    assert (plain["log_probs"] - a["log_probs"])[ok].abs().max() > 1e-3
    # Normalised distributions over the configured classes, one per block.
    assert a["log_probs"].shape == (hb * wb, predictor.num_classes)
    torch.testing.assert_close(a["log_probs"].exp().sum(-1), torch.ones(hb * wb), atol=1e-4, rtol=0)


def test_rescaled_pass_keeps_pixels_on_their_rays(frame):
    """A point projects at the same place of the picture at any scale (pixel centres at
    integers), and the averaged evidence comes back on the plain frame's grid."""
    rgb, depth, K = _tensors(frame)
    for s in (0.75, 1.25):
        c, d, K2 = (x[0] for x in rescaled(rgb[None], depth[None], K[None], s, 8)[:3])
        assert d.shape[0] % 8 == 0 and d.shape[1] % 8 == 0 and c.shape[:2] == d.shape
        p = torch.tensor([0.3, -0.2, 2.0])
        u1, u2 = K @ p / p[2], K2 @ p / p[2]
        sx, sy = d.shape[1] / depth.shape[1], d.shape[0] / depth.shape[0]
        assert torch.allclose(u2[:2], torch.stack([(u1[0] + 0.5) * sx - 0.5, (u1[1] + 0.5) * sy - 0.5]), atol=1e-4)
        assert set(d.unique().tolist()) <= set(depth.unique().tolist())   # nearest: no invented depths
    pred = GaussianPredictor(width=32).eval()
    out = augmented_log_probs(pred, rgb, depth, K, MappingConfig(), scales=(0.75, 1.25), mirror=False)
    assert out["grid_shape"] == (96 // 8, 128 // 8) and torch.isfinite(out["log_probs"]).all()
    with pytest.raises(ValueError):
        augmented_log_probs(pred, rgb, depth, K, MappingConfig(), scales=(0.0,), mirror=False)


def test_refuse_replaces_seen_rows_and_keeps_the_rest():
    cfg = MappingConfig()
    g = GaussianMap(num_classes=3)
    # Four Gaussians 2 m in front of the camera at the world origin, one behind it.
    means = torch.tensor([[0.0, 0.0, 2.0], [0.2, 0.0, 2.0], [-0.2, 0.1, 2.0], [0.0, 0.0, 3.0], [0.0, 0.0, -2.0]])
    n = len(means)
    g.insert(means, torch.full((n, 3), -4.0), torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), torch.zeros(n),
             torch.rand(n, 3), sem_logits=torch.tensor([[5.0, 0, 0]]).repeat(n, 1))
    before_logits, before_count = g.sem_logits.clone(), g.sem_count.clone()
    K = torch.tensor([[100.0, 0, 63.5], [0, 100.0, 47.5], [0, 0, 1]])
    grid = (96 // cfg.stride, 128 // cfg.stride)
    T = grid[0] * grid[1]
    depth = torch.full((T,), 2.0)
    valid = torch.ones(T, dtype=torch.bool)
    ev1, ev2 = torch.zeros(T, 3), torch.zeros(T, 3)
    ev1[:, 1], ev2[:, 2] = 2.0, 1.0
    pose = torch.eye(4)
    rows = refuse_semantics(g, [(pose, K, grid, depth, valid, ev1), (pose, K, grid, depth, valid, ev2)], cfg)
    # Rows 0-2 sit on the blocks' surface: both views replace their evidence; row 3 lies
    # 1 m behind the observed surface and row 4 behind the camera: untouched.
    assert rows == 3
    want = (torch.log_softmax(ev1[0], -1) + torch.log_softmax(ev2[0], -1)) / 2
    torch.testing.assert_close(g.sem_logits[:3], want.expand(3, 3))
    assert g.sem_count[:3].tolist() == [2, 2, 2]
    assert torch.equal(g.sem_logits[3:], before_logits[3:]) and torch.equal(g.sem_count[3:], before_count[3:])
    assert refuse_semantics(g, [], cfg) == 0


def test_pipeline_final_semantics_relabels_the_map_from_its_keyframes(frames160, run_network):
    """The shipped networks: finish() re-predicts each keyframe with test-time augmentation
    and replaces the online evidence of what they see; the bank follows the new classes."""
    pipe = run_network(frames160)
    nkf = len(pipe.keyframes)
    assert nkf >= 2 and len(pipe._kf_images) == nkf
    before = pipe.map.sem_logits.clone()
    pipe.finish()
    st = pipe.final_semantics_stats
    assert st["keyframes"] == nkf and 0 < st["rows"] <= len(pipe.map) and st["dropped_keyframes"] == 0
    changed = (pipe.map.sem_logits - before).abs().max(-1).values > 1e-5
    assert int(changed.sum()) > 0.5 * st["rows"]
    assert pipe.map.vocab is not None and (pipe.map.bank_id >= 0).any()
    # A query still finds something the map holds (the bank was rebuilt, not emptied).
    assert pipe.query("wall").scores.max() > 0


def test_pipeline_final_semantics_cap_and_switches(frames160, caplog, run_network):
    with caplog.at_level(logging.WARNING):
        pipe = run_network(frames160, **{"network.final_semantics_max_keyframes": 2})
    nkf = len(pipe.keyframes)
    # Thinned, not cut: the first keyframe and the newest stay, so the run's start keeps one.
    assert nkf > 2 and list(pipe._kf_images) == [pipe.keyframes[0].id, pipe.keyframes[-1].id]
    assert caplog.text.count("every second kept keyframe's images are dropped") == 1
    assert all(d.dtype == np.float16 for _, d, _ in pipe._kf_images.values())
    st = pipe.final_semantics()
    assert st["keyframes"] == 2 and st["dropped_keyframes"] == nkf - 2
    pipe.forget_keyframe_images()               # a map loaded in its place: nothing left to re-predict
    assert pipe.final_semantics() is None
    # A pass that fails on its last keyframe (out of memory, say) leaves the map as it was
    # and finish() returns: the run's outputs are still written.
    p = run_network(frames160[:4])
    before, calls = p.map.sem_logits.clone(), []
    real = p.nets.augmented_evidence

    def fail_last(*a):
        calls.append(1)
        if len(calls) == len(p._kf_images):
            raise RuntimeError("out of memory")
        return real(*a)
    p.nets.augmented_evidence = fail_last
    with caplog.at_level(logging.ERROR):
        p.finish()
    assert "final semantic pass failed" in caplog.text and torch.equal(p.map.sem_logits, before)
    # Off, with label images as the classes, or with the geometric initialiser: nothing kept,
    # the map's classes are left as fused online.
    for sets in ({"network.final_semantics": False}, {"network.semantics": "frame"}):
        p = run_network(frames160[:4], **sets)
        before = p.map.sem_logits.clone()
        p.finish()
        assert not p._kf_images and p.final_semantics_stats is None and torch.equal(p.map.sem_logits, before)
    geo = SLAMPipeline(PipelineConfig.from_dict({"tracking": {"min_inlier_fraction": 0.05}}), device="cpu")
    frames160[0].meta["initial_pose"] = frames160[0].gt_pose
    for f in frames160[:3]:
        geo.process(f)
    assert not geo._kf_images and geo.final_semantics() is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_augmented_log_probs_on_cuda_match_the_cpu(predictor, frame):
    cfg = MappingConfig()
    rgb, depth, K = _tensors(frame)
    a = augmented_log_probs(predictor, rgb, depth, K, cfg)
    gpu = predictor.to("cuda")
    try:
        b = augmented_log_probs(gpu, rgb.cuda(), depth.cuda(), K.cuda(), cfg)
    finally:
        predictor.to("cpu")
    assert torch.equal(a["valid"], b["valid"].cpu())
    ok = a["valid"]
    torch.testing.assert_close(a["log_probs"][ok], b["log_probs"].cpu()[ok], atol=5e-3, rtol=1e-3)


def test_gs4_run_reports_the_final_semantic_pass(tmp_path, capsys):
    """The CLI on the networks prints the pass and keeps its figures in metrics.json."""
    import json

    from gs4_ros.cli.main import main

    rc = main(["run", "--dataset", "synthetic:seed=2,frames=12", "--width", "160", "--height", "120",
               "--device", "cpu", "--out", str(tmp_path), "--set", "initializer=network",
               "--set", "tracking.min_inlier_fraction=0.05"])
    assert rc == 0
    out = capsys.readouterr().out
    fs = json.loads((tmp_path / "metrics.json").read_text())["final_semantics"]
    assert fs["keyframes"] >= 1 and fs["rows"] > 0
    assert f"final semantics   {fs['keyframes']} keyframes re-predicted by the segmenter (as seen, mirrored)" in out
    assert fs["model"] == "segmenter" and fs["mirror"] is True and fs["scales"] == []
