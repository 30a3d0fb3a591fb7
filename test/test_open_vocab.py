"""Open-vocabulary queries: the bank keeps stable ids while it merges regions, text becomes
classes through the lexicon, a mapped room answers queries as its labels say, and the
bank survives a PLY round trip and the `gs4 query` command."""
import dataclasses
import json
import logging

import numpy as np
import pytest
import torch

from gs4_ros.cli.main import main as gs4_main
from gs4_ros.core.config import SCANNET20_CLASSES, PipelineConfig
from gs4_ros.core.gaussian_map import GaussianMap
from gs4_ros.core.open_vocab import (ClassSpaceEncoder, QueryResult, UnknownQuery, VocabBank, load_encoder, query_map,
                                     split_instances)
from gs4_ros.core.open_vocab.colours import COLOURS, name_colour
from gs4_ros.core.pipeline import SLAMPipeline
from gs4_ros.io.ply import load_ply, save_ply
from gs4_ros.io.synthetic import SyntheticSequence

NAMES = list(SCANNET20_CLASSES)


# -- bank ----------------------------------------------------------------------------------
def test_bank_merges_close_regions_and_never_moves_an_id():
    b = VocabBank(2, merge_threshold=0.9)
    assert list(b.add(np.array([[1.0, 0.0], [0.0, 1.0]]))) == [0, 1]
    first = b.emb.copy()
    ids = b.add(np.array([[0.98, 0.1], [0.6, 0.6], [0.0, 2.0]]), weights=np.array([1.0, 1.0, 3.0]))
    assert list(ids) == [0, 2, 1]                      # close to 0, new, close to 1 (cosine, not length)
    np.testing.assert_allclose(b.emb[0], (first[0] + [0.98, 0.1]) / 2, rtol=1e-6)
    np.testing.assert_allclose(b.emb[1], (first[1] + 3 * np.array([0.0, 2.0])) / 4, rtol=1e-6)
    assert list(b.count) == [2.0, 4.0, 1.0]
    # two similar regions of one keyframe open one entry between them, not two
    assert list(b.add(np.array([[-1.0, 0.05], [-1.0, 0.0]]))) == [3, 3]


def test_a_full_bank_sends_new_regions_to_their_nearest_entry(caplog):
    b = VocabBank(2, merge_threshold=0.99, max_entries=2)
    b.add(np.array([[1.0, 0.0], [0.0, 1.0]]))
    with caplog.at_level(logging.WARNING):
        assert list(b.add(np.array([[0.7, 0.3], [0.2, 0.8]]))) == [0, 1]
    assert len(b) == 2 and "full" in caplog.text


def test_the_bank_refuses_what_it_cannot_hold():
    b = VocabBank(3)
    with pytest.raises(ValueError, match="finite"):
        b.add(np.array([[np.nan, 0, 1]]))
    with pytest.raises(ValueError):
        VocabBank(0)
    assert len(b) == 0


# -- objects -------------------------------------------------------------------------------
def test_matches_split_into_objects_where_their_voxels_do_not_touch():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 0.3, (40, 3))                       # a 30 cm object
    b = rng.uniform(0, 0.3, (25, 3)) + [1.0, 0, 0]         # another, 70 cm away
    speck = np.array([[5.0, 5.0, 5.0]])                    # one stray Gaussian
    diag = np.array([[0.35, 0.35, 0.35]])                  # corner-touching voxel joins a
    pts = np.concatenate([a, b, speck, diag])
    rel = np.linspace(0.5, 1.0, len(pts))
    rows = np.arange(len(pts)) + 100
    objs = split_instances(pts, rel, rows, voxel=0.1, min_count=5)
    assert [o.count for o in objs] == [41, 25]
    np.testing.assert_allclose(objs[1].centroid, b.mean(0))
    assert (objs[0].bbox_max >= 0.35).all() and sorted(objs[1].rows.tolist()) == list(range(140, 165))
    assert split_instances(pts, rel, rows, voxel=2.0, min_count=5)[0].count == len(pts) - 1
    assert split_instances(np.zeros((0, 3)), np.zeros(0), np.zeros(0, int)) == []
    with pytest.raises(ValueError):
        split_instances(pts, rel, rows, voxel=0.0)


# -- colours ------------------------------------------------------------------------------
def test_an_object_is_named_by_the_median_of_its_colours():
    for name, rgb in COLOURS.items():
        assert name_colour(np.array([rgb]) / 255.0) == name
    rng = np.random.default_rng(1)
    wood = np.clip(np.array([0.45, 0.29, 0.18]) + rng.normal(0, 0.06, (200, 3)), 0, 1)   # textured brown
    wood[:30] = [0.95, 0.95, 0.95]                                                      # highlights
    assert name_colour(wood) == "brown"
    assert name_colour(np.array([[0.86, 0.72, 0.55]])) == "beige"                      # a light wood floor


def _two_chairs(colours):
    """A map of two 20-Gaussian chairs 1 m apart, both in one bank entry (class chair)."""
    gm = GaussianMap(num_classes=len(NAMES))
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.uniform(0, 0.3, (20, 3)), rng.uniform(0, 0.3, (20, 3)) + [1.0, 0, 0]])
    cols = np.concatenate([np.tile(np.array(colours[0]) / 255.0, (20, 1)), np.tile(np.array(colours[1]) / 255.0, (20, 1))])
    z = torch.zeros(40, 3)
    sem = torch.zeros(40, len(NAMES))
    sem[:, NAMES.index("chair")] = 5.0
    gm.insert(torch.tensor(pts, dtype=torch.float32), z, torch.tensor([[1.0, 0, 0, 0]] * 40), torch.zeros(40),
              torch.tensor(cols, dtype=torch.float32), sem_logits=sem)
    gm.vocab = VocabBank(len(NAMES))
    gm.vocab.add(torch.softmax(sem[:1], -1).numpy())
    gm.bank_id[:] = 0
    return gm


def test_a_colour_word_keeps_the_objects_of_that_colour():
    gm = _two_chairs([COLOURS["red"], COLOURS["blue"]])
    enc = ClassSpaceEncoder(NAMES)
    assert query_map(gm, gm.vocab, enc, "chair").count == 40
    red = query_map(gm, gm.vocab, enc, "the red chair")
    assert red.count == 20 and bool(red.mask[:20].all()) and red.query.colour == "red"
    objs = red.instances(gm, 0.1, 5)
    assert len(objs) == 1 and objs[0].colour == "red"
    # The objects the colour filter kept are what a fresh split of its matches gives.
    kept, fresh = red.instances(gm), QueryResult(red.query, red.entry_scores, red.scores, red.threshold).instances(gm)
    assert [sorted(o.rows.tolist()) for o in kept] == [sorted(o.rows.tolist()) for o in fresh] == [list(range(20))]
    assert query_map(gm, gm.vocab, enc, "blue chairs").mask[20:].all()
    assert query_map(gm, gm.vocab, enc, "green chair").count == 0
    assert query_map(gm, gm.vocab, enc, "gray chair").query.colour == "grey"
    with pytest.raises(UnknownQuery, match="no thing"):
        enc.encode_text("something red")


# -- text --------------------------------------------------------------------------------
def test_words_become_classes_through_synonyms_plurals_and_groups():
    enc = ClassSpaceEncoder(NAMES)
    q = enc.encode_text("Where are the couches?")
    assert np.flatnonzero(q.embedding).tolist() == [NAMES.index("sofa")] and not q.ignored
    q = enc.encode_text("something to sit on")
    assert sorted(np.flatnonzero(q.embedding)) == sorted([NAMES.index("chair"), NAMES.index("sofa")])
    q = enc.encode_text("the big shower curtain")             # two-word class before "curtain"
    assert np.flatnonzero(q.embedding).tolist() == [NAMES.index("shower curtain")] and q.ignored == ["big"]
    with pytest.raises(UnknownQuery, match="mug"):
        enc.encode_text("a mug")
    # a synonym of a class the configuration does not have means nothing
    small = ClassSpaceEncoder(["wall", "floor", "chair"])
    with pytest.raises(UnknownQuery):
        small.encode_text("couch")
    assert np.flatnonzero(small.encode_text("furniture").embedding).tolist() == [2]


def test_relevance_is_whether_the_classes_asked_for_win_against_every_other():
    enc = ClassSpaceEncoder(["wall", "floor", "chair", "sofa"])
    bank = np.array([[0.3, 0.3, 0.0, 0.4],      # a soft sofa: no class above it
                     [0.6, 0.0, 0.2, 0.2],      # a wall with some seating mixed in
                     [0.0, 0.0, 0.0, 0.0]])     # nothing (an all-zero row must not divide by 0)
    s = enc.score(enc.encode_text("couch"), bank)
    assert s[0] > 0.5 > s[1] and s[2] == 0
    s = enc.score(enc.encode_text("seating"), bank)          # chair + sofa together
    assert s[0] > 0.5 and abs(s[1] - 0.4 / 1.0) < 1e-6
    assert enc.score(enc.encode_text("floor"), bank)[0] < 0.5   # tied with wall, behind sofa


def test_a_lexicon_file_adds_words_and_refuses_unknown_classes(tmp_path):
    good = tmp_path / "words.yaml"
    good.write_text("recliner: [chair, sofa]\nottoman: sofa\n")
    enc = ClassSpaceEncoder(NAMES, str(good))
    assert np.flatnonzero(enc.encode_text("recliner").embedding).tolist() == [NAMES.index("chair"), NAMES.index("sofa")]
    assert np.flatnonzero(enc.encode_text("ottomans").embedding).tolist() == [NAMES.index("sofa")]
    bad = tmp_path / "bad.yaml"
    bad.write_text("hammock: [bed, swing]\n")
    with pytest.raises(ValueError, match="swing"):
        ClassSpaceEncoder(NAMES, str(bad))
    with pytest.raises(ValueError, match="cannot read"):
        ClassSpaceEncoder(NAMES, str(tmp_path / "missing.yaml"))


def test_encoders_load_by_name_or_by_dotted_path():
    assert isinstance(load_encoder("classes", NAMES), ClassSpaceEncoder)
    enc = load_encoder("gs4_ros.core.open_vocab.encoders:ClassSpaceEncoder", NAMES)
    assert enc.dim == len(NAMES)
    for spec in ("clip", "no_such_module:make", "gs4_ros.core.open_vocab.encoders:nothing",
                 "gs4_ros.core.open_vocab.bank:VocabBank"):       # the last builds, but is no encoder
        with pytest.raises((ValueError, TypeError)):
            load_encoder(spec, NAMES)


# -- a mapped room -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def room():
    seq = SyntheticSequence(seed=7, n_frames=12, width=320, height=240)
    frames = [seq.frame(i) for i in range(len(seq))]
    pipe = SLAMPipeline(PipelineConfig(), device="cpu")
    for f in frames:
        pipe.process(f)
    return pipe, frames


def test_every_gaussian_with_semantics_gets_an_entry_of_a_small_bank(room):
    pipe, _ = room
    gm = pipe.map
    has_sem = gm.labelled()
    assert bool(has_sem.any())
    assert float((gm.bank_id[has_sem] >= 0).float().mean()) > 0.98
    assert bool((gm.bank_id[~has_sem] == -1).all())          # no evidence, no entry
    present = len(torch.unique(gm.labels()[has_sem]))
    assert present >= 3 and len(gm.vocab) <= 3 * present      # regions merged, not one entry each
    assert int(gm.bank_id.max()) < len(gm.vocab)


def test_a_query_finds_what_the_map_labels_as_that_class(room):
    pipe, _ = room
    gm = pipe.map
    has_sem = gm.labelled()
    labels = torch.where(has_sem, gm.labels(), -1)
    for c in torch.unique(labels[has_sem]).tolist():
        res = pipe.query(NAMES[c])
        agree = float((res.mask == (labels == c)).float().mean())
        assert agree > 0.98, (NAMES[c], agree)
        assert res.count > 0
    assert pipe.query("toilet").count == 0                    # nothing of it in this room


def test_the_rendered_relevance_covers_the_class_in_the_image(room):
    pipe, frames = room
    f = frames[10]
    pose = pipe.trajectory[10][2]
    for word, cls in (("walls", "wall"), ("couch", "sofa")):
        rel = pipe.render_relevance(pipe.query(word), pose)
        gt = f.labels == NAMES.index(cls)
        hit = np.nan_to_num(rel) >= 0.5
        iou = (gt & hit).sum() / max((gt | hit).sum(), 1)
        assert gt.sum() > 100 and iou > 0.7, (word, iou)
    # one rasterisation for views and relevance: the same labels and relevance as apart
    both = pipe.render(pose, semantics=True, query=pipe.query("walls"))
    np.testing.assert_array_equal(both["labels"], pipe.render(pose, semantics=True)["labels"])
    np.testing.assert_allclose(both["relevance"], pipe.render_relevance(pipe.query("walls"), pose), atol=1e-6)
    away = pose.copy()
    away[:3, :3] = away[:3, :3] @ np.diag([-1.0, 1.0, -1.0])  # turned round: facing what was behind
    assert np.isnan(pipe.render_relevance(pipe.query("walls"), away)).mean() > 0.5


def test_a_result_of_an_older_map_is_refused(room):
    pipe, frames = room
    res = pipe.query("wall")
    res.scores = res.scores[:-1]
    with pytest.raises(ValueError, match="another state"):
        pipe.render_relevance(res, pipe.trajectory[0][2])


def test_the_bank_and_ids_survive_a_ply_round_trip_and_answer_gs4_query(room, tmp_path, capsys):
    pipe, _ = room
    path = save_ply(tmp_path / "map.ply", pipe.map, class_names=NAMES)
    gm = load_ply(path)
    assert torch.equal(gm.bank_id, pipe.map.bank_id)
    np.testing.assert_array_equal(gm.vocab.emb, pipe.map.vocab.emb)
    assert gm.vocab.encoder == "classes"
    expect = pipe.query("sofa").count
    assert gs4_main(["query", str(path), "couch", "--json", "--out", str(tmp_path / "sofa.ply")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["matches"] == expect > 0 and out["meaning"].startswith("sofa")
    assert out["objects"] and sum(o["gaussians"] for o in out["objects"]) <= expect
    assert out["objects"][0]["gaussians"] >= 0.5 * expect          # one sofa, not fragments
    assert len(load_ply(tmp_path / "sofa.ply")) == expect
    assert gs4_main(["query", str(path), "a mug"]) == 2
    # a file without the bank: its ids mean nothing and are dropped
    bare = pipe.map
    vocab, bare.vocab = bare.vocab, None
    try:
        save_ply(tmp_path / "bare.ply", bare, class_names=NAMES)
    finally:
        bare.vocab = vocab
    assert bool((load_ply(tmp_path / "bare.ply").bank_id == -1).all())
    assert gs4_main(["query", str(tmp_path / "bare.ply"), "wall"]) == 2


def test_a_bank_of_another_size_is_replaced_and_its_ids_cleared(room, caplog, tmp_path):
    pipe, _ = room
    p2 = SLAMPipeline(PipelineConfig(), device="cpu")
    gm = load_ply(save_ply(tmp_path / "m.ply", pipe.map, class_names=NAMES))
    gm.vocab = VocabBank(3)
    p2.map = gm
    with caplog.at_level(logging.WARNING):
        res = p2.query("wall")
    assert "new bank" in caplog.text and res.count == 0 and bool((gm.bank_id == -1).all())
    # same size, another encoder's embeddings: replaced too
    gm2 = load_ply(tmp_path / "m.ply")
    gm2.vocab.encoder = "my_clip:make"
    p2.map = gm2
    assert p2.query("wall").count == 0 and bool((gm2.bank_id == -1).all())
    # the encoder that made it: kept
    p2.map = load_ply(tmp_path / "m.ply")
    assert p2.query("wall").count == pipe.query("wall").count > 0


class _BrokenEncoder(ClassSpaceEncoder):
    """A plug-in whose region encoding fails (a model that ran out of memory, say)."""

    def encode_regions(self, rgb, regions):
        raise RuntimeError("encoder died")


def test_a_failing_encoder_is_logged_once_and_slam_goes_on(room, caplog):
    _, frames = room
    pipe = SLAMPipeline(PipelineConfig(), device="cpu")
    pipe.vocab_encoder = _BrokenEncoder(NAMES)
    with caplog.at_level(logging.ERROR):
        for f in frames[:8]:
            pipe.process(f)
    assert len(pipe.map) > 0 and len(pipe.trajectory) == 8
    assert caplog.text.count("open-vocabulary bank update failed") == 1
    assert bool((pipe.map.bank_id == -1).all())


def test_without_semantics_the_bank_stays_empty_and_queries_match_nothing(room):
    _, frames = room
    pipe = SLAMPipeline(PipelineConfig(), device="cpu")
    for f in frames[:6]:
        pipe.process(dataclasses.replace(f, labels=None))
    assert len(pipe.map) > 0 and len(pipe.map.vocab) == 0
    assert pipe.query("wall").count == 0
    off = PipelineConfig()
    off.open_vocab.enabled = False
    with pytest.raises(RuntimeError, match="off"):
        SLAMPipeline(off, device="cpu").query("wall")


def test_the_run_report_shows_an_example_query_when_the_map_can_answer(tmp_path):
    """report.png gets a seventh column, the relevance of "furniture", when the map has a
    vocabulary and something matches; without the vocabulary it keeps its six."""
    import matplotlib.image as mpimg

    from gs4_ros.eval.report import make_report
    from gs4_ros.eval.runner import run_frames

    seq = SyntheticSequence(seed=7, n_frames=8, width=160, height=120)
    frames = [seq.frame(i) for i in range(len(seq))]
    widths = {}
    for enabled in (True, False):
        cfg = PipelineConfig()
        cfg.open_vocab.enabled = enabled
        pipe = SLAMPipeline(cfg, device="cpu")
        rec = run_frames(pipe, [dataclasses.replace(f, meta=dict(f.meta)) for f in frames], eval_every=4)
        if enabled:
            assert pipe.query("furniture").count > 0
        path = make_report(pipe, rec, {"ate_rmse_cm": 0.0}, tmp_path / f"report_{enabled}.png")
        widths[enabled] = mpimg.imread(str(path)).shape[1]
    assert widths[True] == round(widths[False] * 7 / 6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA path needs a GPU")
def test_the_bank_and_queries_on_the_gpu():
    """The same room mapped on CUDA (gsplat): keyframe regions, bank and queries run on
    device tensors and answer as on the CPU."""
    seq = SyntheticSequence(seed=7, n_frames=12, width=320, height=240)
    pipe = SLAMPipeline(PipelineConfig(), device="cuda")
    frames = [seq.frame(i) for i in range(len(seq))]
    for f in frames:
        pipe.process(f)
    gm = pipe.map
    assert gm.bank_id.device.type == "cuda" and len(gm.vocab) >= 3
    has_sem = gm.labelled()
    labels = torch.where(has_sem, gm.labels(), -1)
    res = pipe.query("walls")
    assert res.scores.device.type == "cuda"
    assert float((res.mask == (labels == NAMES.index("wall"))).float().mean()) > 0.98
    out = pipe.render(pipe.trajectory[10][2], semantics=True, query=res)
    gt = frames[10].labels == NAMES.index("wall")
    hit = np.nan_to_num(out["relevance"]) >= 0.5
    assert (gt & hit).sum() / max((gt | hit).sum(), 1) > 0.7
    assert res.instances(gm) and pipe.query("red couch").query.colour == "red"
