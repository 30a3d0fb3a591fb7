"""The keyframe segmenter of the final semantic pass (core/nets/segmenter), its training
chunk (train/segmenter, `gs4 train segmenter`) and the pipeline's choice of model, on the CPU."""
import logging

import pytest
import torch

from gs4_ros.core.config import SCANNET20_CLASSES, MappingConfig, PipelineConfig
from gs4_ros.core.initializer import block_gaussians
from gs4_ros.core.nets import save_networks
from gs4_ros.core.nets.segmenter import KeyframeSegmenter, load_segmenter, save_segmenter, segmenter_inputs
from gs4_ros.core.nets.semantic_tta import augmented_log_probs, rescaled
from gs4_ros.eval.token_miou import TokenScorer
from gs4_ros.train.segmenter import SegmenterOptions, train_segmenter


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return KeyframeSegmenter(len(SCANNET20_CLASSES), widths=(8, 16, 16, 24, 32), decoder=16).eval()


def _tensors(f):
    return torch.from_numpy(f.rgb).float()[None] / 255, torch.from_numpy(f.depth)[None], f.intrinsics.K()[None]


def test_token_probabilities_are_the_mean_of_their_cells(small, frame):
    """A token's distribution is the mean of its 2x2 stride-4 cells' (fails if pooling
    mixes neighbouring tokens or averages logits), normalised, with the v0 blocks'
    validity and depth; strides that are not multiples of 4 are refused."""
    cfg = MappingConfig()
    rgb, depth, K = _tensors(frame)
    out = small.semantic_log_probs(rgb, depth, K, cfg, 8)
    hb, wb = 96 // 8, 128 // 8
    assert out["log_probs"].shape == (1, len(SCANNET20_CLASSES), hb, wb)
    p = small.cell_logits(rgb, depth, K).softmax(1)
    want = p[0, :, 2:4, 6:8].mean((1, 2))          # token (1, 3)
    torch.testing.assert_close(out["log_probs"][0, :, 1, 3].exp(), want, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out["log_probs"].exp().sum(1), torch.ones(1, hb, wb), atol=1e-4, rtol=0)
    bg = block_gaussians(depth[0], rgb[0], K[0], cfg, None, stride=8)
    assert torch.equal(out["valid"][0], bg.valid) and torch.equal(out["depth"][0], bg.depth)
    with pytest.raises(ValueError, match="multiples of 4"):
        small.semantic_log_probs(rgb, depth, K, cfg, 6)
    # The final pass's test-time passes take it in place of the predictor.
    a = augmented_log_probs(small, rgb[0], depth[0], K[0], cfg)
    assert a["log_probs"].shape == (hb * wb, len(SCANNET20_CLASSES)) and a["grid_shape"] == (hb, wb)


def test_inputs_carry_normals_and_validity(frame):
    rgb, depth, K = _tensors(frame)
    depth[0, :10] = 0
    x = segmenter_inputs(rgb, depth, K)
    assert x.shape == (1, 8, 96, 128)
    assert torch.equal(x[0, 7], (depth[0] > 0).float())
    norm = x[0, 4:7].norm(dim=0)
    unit = (norm - 1).abs() < 1e-3
    assert torch.all(unit | (norm == 0))                 # a unit normal or none
    assert unit[depth[0] > 0].float().mean() > 0.8       # most measured pixels have one
    assert not unit[depth[0] == 0].any()                 # none where depth is missing


def test_save_load_round_trip_in_half_precision(small, frame, tmp_path):
    cfg = MappingConfig()
    rgb, depth, K = _tensors(frame)
    path = tmp_path / "seg.pt"
    save_segmenter(path, small, SCANNET20_CLASSES, {"chunks": [{"steps": 3}]})
    loaded, info = load_segmenter(path)
    assert info["class_names"] == list(SCANNET20_CLASSES) and info["meta"]["chunks"][0]["steps"] == 3
    assert all(v.dtype == torch.float16 for v in torch.load(path, weights_only=True)["state"].values()
               if v.is_floating_point())
    a = small.semantic_log_probs(rgb, depth, K, cfg)["log_probs"]
    b = loaded.semantic_log_probs(rgb, depth, K, cfg)["log_probs"]
    assert (a - b).abs().max() < 1e-2
    from gs4_ros.core.nets import GaussianPredictor, GaussianRefiner

    other = tmp_path / "nets.pt"
    save_networks(other, GaussianPredictor(width=16), GaussianRefiner(), SCANNET20_CLASSES)
    with pytest.raises(ValueError, match="not a gs4 segmenter file"):
        load_segmenter(other)


def test_rescaled_batch_keeps_labels_and_rays(frame):
    rgb, depth, K = _tensors(frame)
    labels = torch.from_numpy(frame.labels)[None]
    c, d, K2, lab = rescaled(rgb, depth, K, 0.75, 32, labels)
    assert c.shape == (1, 64, 96, 3) and d.shape == lab.shape == (1, 64, 96)
    assert set(lab.unique().tolist()) <= set(labels.unique().tolist())     # nearest: no invented class
    assert set(d.unique().tolist()) <= set(depth.unique().tolist())
    # A pixel centre of the small image looks along the ray of the same point of the large one.
    u2, v2 = 40.0, 30.0
    sx, sy = 128 / 96, 96 / 64          # sizes round to multiples of 32 on each axis
    u, v = (u2 + 0.5) * sx - 0.5, (v2 + 0.5) * sy - 0.5
    ray = lambda kk, x, y: torch.tensor([(x - kk[0, 2]) / kk[0, 0], (y - kk[1, 2]) / kk[1, 1]])  # noqa: E731
    torch.testing.assert_close(ray(K2[0], u2, v2), ray(K[0], u, v), atol=1e-5, rtol=0)
    assert rescaled(rgb, depth, K, 1.0, 32, labels)[0] is rgb


def _opts(tmp_path, **kw):
    base = dict(out=str(tmp_path / "seg.pt"), device="cpu", seeds=2, min_rooms=2, first_seed=1000, frames=2,
                step=3, width=96, height=64, batch=2, workers=2, widths=[8, 16, 16, 24, 32], decoder=16,
                val_seeds=[960], val_every=20, lr=3e-3)
    base.update(kw)
    return SegmenterOptions(**base)


def test_training_learns_and_keeps_the_best_network(tmp_path):
    """A short CPU chunk on two rooms: the loss falls, the validation room's token mIoU is
    recorded, the file holds the best-scoring step's network and a second chunk from it
    adds to the history."""
    meta = train_segmenter(_opts(tmp_path, steps=60))
    c = meta["chunks"][-1]
    assert c["steps"] == 60 and c["rooms"] == 2 and c["frames"] == 4
    assert c["loss_final"] < 0.9 * c["loss_first"]
    steps = [s for s, _ in c["validation"]]
    assert steps == [20, 40, 60]
    best_step, best = max(c["validation"], key=lambda sm: sm[1])
    assert c["kept_step"] == best_step
    import json

    assert json.loads((tmp_path / "seg.json").read_text()) == json.loads(json.dumps(meta))
    model, info = load_segmenter(tmp_path / "seg.pt")
    vseq = __import__("gs4_ros.train.data", fromlist=["x"]).synthetic_sequences(
        [960], 4, 10, 96, 64, torch.device("cpu"), fill_holes=True, targets=False)
    for q in vseq:
        q.depth = q.depth.half()
    assert abs(TokenScorer.from_sequences(vseq, MappingConfig(), len(SCANNET20_CLASSES)).score(model) - best) < 0.02
    meta2 = train_segmenter(_opts(tmp_path, steps=3, init_weights=str(tmp_path / "seg.pt"),
                                  out=str(tmp_path / "seg2.pt"), val_seeds=[]))
    assert len(meta2["chunks"]) == 2 and meta2["chunks"][0]["steps"] == 60


def test_training_refuses_evaluation_rooms(tmp_path):
    with pytest.raises(ValueError, match="training rooms start at 1000"):
        train_segmenter(_opts(tmp_path, first_seed=900))
    with pytest.raises(ValueError, match="val-seeds"):
        train_segmenter(_opts(tmp_path, val_seeds=[1500]))


def test_pipeline_final_pass_runs_the_configured_model(frames160, small, tmp_path, caplog, run_network):
    """The pass runs the segmenter file it is given (its classes reach the map), the head
    with final_semantics_model=head, and falls back to the head, with a warning, when the
    file is missing; an unknown model name is refused."""
    path = tmp_path / "seg.pt"
    save_segmenter(path, small, SCANNET20_CLASSES)
    runs = {}
    for name, sets in (("segmenter", {"network.segmenter_weights": str(path)}),
                       ("head", {"network.segmenter_weights": str(path), "network.final_semantics_model": "head"}),
                       ("missing", {"network.segmenter_weights": str(tmp_path / "none.pt")})):
        with caplog.at_level(logging.WARNING):
            pipe = run_network(frames160, **sets)
            pipe.finish()
        runs[name] = (pipe.final_semantics_stats["model"], pipe.map.sem_logits.clone())
    assert runs["segmenter"][0] == "segmenter" and runs["head"][0] == "head" and runs["missing"][0] == "head"
    assert "no segmenter at" in caplog.text
    # The segmenter's evidence is what the map now holds: different from the head's.
    assert (runs["segmenter"][1] - runs["head"][1]).abs().max() > 1e-3
    torch.testing.assert_close(runs["missing"][1], runs["head"][1])
    with pytest.raises(ValueError, match="final_semantics_model"):
        run_network(frames160[:1], **{"network.final_semantics_model": "clip"})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_segmenter_on_cuda_matches_the_cpu(small, frame):
    cfg = MappingConfig()
    rgb, depth, K = _tensors(frame)
    a = augmented_log_probs(small, rgb[0], depth[0], K[0], cfg)
    gpu = small.to("cuda")
    try:
        b = augmented_log_probs(gpu, rgb[0].cuda(), depth[0].cuda(), K[0].cuda(), cfg)
    finally:
        small.to("cpu")
    assert torch.equal(a["valid"], b["valid"].cpu())
    ok = a["valid"]
    torch.testing.assert_close(a["log_probs"][ok], b["log_probs"].cpu()[ok], atol=5e-3, rtol=1e-3)


def test_each_model_runs_its_own_rescaled_passes(frames160, small, tmp_path, monkeypatch, run_network):
    """final_semantics_scales are the segmenter's passes, final_semantics_head_scales the
    head's (each model's best on the validation rooms differs)."""
    import gs4_ros.core.nets.mapper as mapper

    path = tmp_path / "seg.pt"
    save_segmenter(path, small, SCANNET20_CLASSES)
    seen = []
    real = mapper.augmented_log_probs

    def spy(model, rgb, depth, K, cfg, scales, mirror):
        seen.append((type(model).__name__, tuple(scales), mirror))
        return real(model, rgb, depth, K, cfg, scales, mirror)
    monkeypatch.setattr(mapper, "augmented_log_probs", spy)
    sets = {"network.segmenter_weights": str(path), "network.final_semantics_scales": [1.25],
            "network.final_semantics_head_scales": [0.5]}
    run_network(frames160[:3], **sets).finish()
    run_network(frames160[:3], **sets, **{"network.final_semantics_model": "head"}).finish()
    assert {s for s in seen if s[0] == "KeyframeSegmenter"} == {("KeyframeSegmenter", (1.25,), True)}
    assert {s for s in seen if s[0] != "KeyframeSegmenter"} == {("GaussianPredictor", (0.5,), True)}
    # The defaults: the segmenter mirrored only, the head mirrored and at 0.75x and 1.25x.
    d = PipelineConfig().network
    assert d.final_semantics_scales == [] and d.final_semantics_head_scales == [0.75, 1.25]


def test_segmenter_classes_are_mapped_to_the_configured_list(small, frame, tmp_path, caplog):
    """A segmenter whose class list is in another order gives the same evidence, re-ordered
    by its own class map (not the predictor's)."""
    from gs4_ros.core.nets.mapper import load_mapper

    names = list(SCANNET20_CLASSES)
    save_segmenter(tmp_path / "same.pt", small, names)
    save_segmenter(tmp_path / "reversed.pt", small, names[::-1])
    rgb, depth, K = _tensors(frame)
    ev = {}
    for name in ("same", "reversed"):
        cfg = PipelineConfig()
        cfg.override({"initializer": "network", "network.segmenter_weights": str(tmp_path / f"{name}.pt"),
                      "network.final_semantics_head_weight": 0.0})
        nets, _ = load_mapper(cfg, "cpu")
        with caplog.at_level(logging.WARNING):
            ev[name] = nets.augmented_evidence(rgb[0], depth[0], K[0])["log_probs"]
        assert nets.final_semantics_name() == "segmenter" and nets.class_map is None
    assert "segmenter classes differ from the configured ones; 20 of 20" in caplog.text
    torch.testing.assert_close(ev["reversed"], ev["same"].flip(-1))


def test_head_evidence_is_mixed_in_by_its_weight(small, frame, tmp_path, run_network, frames160):
    """final_semantics_head_weight w gives (1-w) of the segmenter's evidence plus w of the
    head's (each with its own passes); the head alone when it runs the pass; the weight is
    reported and one outside [0, 1] refused before any frame."""
    from gs4_ros.core.nets.mapper import load_mapper

    path = tmp_path / "seg.pt"
    save_segmenter(path, small, SCANNET20_CLASSES)
    rgb, depth, K = _tensors(frame)

    def evidence(**sets):
        cfg = PipelineConfig()
        cfg.override({"initializer": "network", "network.segmenter_weights": str(path), **sets})
        nets, _ = load_mapper(cfg, "cpu")
        return nets, nets.augmented_evidence(rgb[0], depth[0], K[0])
    _, seg = evidence(**{"network.final_semantics_head_weight": 0.0})
    head_nets, head = evidence(**{"network.final_semantics_model": "head", "network.final_semantics_head_weight": 0.3})
    nets, mixed = evidence(**{"network.final_semantics_head_weight": 0.3})
    assert head_nets.head_weight() == 0.0 and nets.head_weight() == 0.3
    assert (seg["log_probs"] - head["log_probs"]).abs().max() > 1e-2      # the two models differ
    torch.testing.assert_close(mixed["log_probs"], 0.7 * seg["log_probs"] + 0.3 * head["log_probs"])
    assert torch.equal(mixed["valid"], seg["valid"])
    pipe = run_network(frames160[:3], **{"network.segmenter_weights": str(path)})
    pipe.finish()
    assert pipe.final_semantics_stats["head_weight"] == PipelineConfig().network.final_semantics_head_weight == 0.2
    with pytest.raises(ValueError, match="final_semantics_head_weight"):
        run_network(frames160[:1], **{"network.final_semantics_head_weight": 1.5})


def test_online_segmenter_gives_each_keyframe_the_final_pass_evidence(frames160, small, tmp_path, monkeypatch,
                                                                       run_network):
    """With network.online_segmenter each mapped keyframe's token evidence is the segmenter's
    plain pass ((1-w) of it plus w of the head's log-probabilities); off, or with the head
    as the pass's model, it is the head's logits as before."""
    import gs4_ros.core.nets.mapper as mapper

    path = tmp_path / "seg.pt"
    save_segmenter(path, small, SCANNET20_CLASSES)
    seen = []
    real = mapper.fuse_semantics

    def spy(gmap, pose, K, m, grid, depth, valid, evidence, n):
        seen.append(evidence.clone())
        return real(gmap, pose, K, m, grid, depth, valid, evidence, n)
    monkeypatch.setattr(mapper, "fuse_semantics", spy)
    inputs = []
    map_frame = mapper.NetworkMapper.map_frame

    def map_spy(self, gmap, rasterizer, depth, rgb, K, *args, **kw):
        inputs.append((rgb, depth, K))
        return map_frame(self, gmap, rasterizer, depth, rgb, K, *args, **kw)
    monkeypatch.setattr(mapper.NetworkMapper, "map_frame", map_spy)
    frames = frames160[:1]
    runs = {}
    for name, sets in (("off", {}),
                       ("alone", {"network.online_segmenter": True, "network.final_semantics_head_weight": 0.0}),
                       ("mixed", {"network.online_segmenter": True, "network.final_semantics_head_weight": 0.3}),
                       ("head", {"network.online_segmenter": True, "network.final_semantics_model": "head"})):
        seen.clear()
        pipe = run_network(frames, **{"network.segmenter_weights": str(path), "network.final_semantics": False, **sets})
        runs[name] = seen[0]
        if name == "alone":
            assert "segment" in pipe.nets.timings_ms
            rgb, depth, K = inputs[-1]       # the keyframe as mapped (holes filled)
            seg = small.semantic_log_probs(rgb[None], depth[None], K[None], pipe.cfg.mapping, 8)["log_probs"]
            torch.testing.assert_close(runs[name], seg[0].flatten(1).T, atol=1e-4, rtol=1e-4)
    head = runs["off"]
    assert (runs["alone"] - head).abs().max() > 1e-2
    torch.testing.assert_close(runs["mixed"], 0.7 * runs["alone"] + 0.3 * head.log_softmax(-1), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(runs["head"], head)
