"""Training scripts (gs4_ros/train) on the CPU with tiny settings: the losses go down on a
fixed batch, a two-step chunk writes finite weights that load back into the pipeline plus
its JSON and model card, --resume continues the counters, and the ablation command prints
its table. No timing is asserted."""
import json
import logging
import math
import time

import numpy as np
import pytest
import torch

from gs4_ros.cli.main import build_parser, main
from gs4_ros.core.config import MappingConfig
from gs4_ros.core.nets import GaussianPredictor, GaussianRefiner, load_networks
from gs4_ros.core.render import make_rasterizer
from gs4_ros.train import data as train_data
from gs4_ros.train.ablation import mean_rows, table
from gs4_ros.train.data import RoomFeed, Sampler, covisible_mask, device_memory, synthetic_sequences
from gs4_ros.eval.image_metrics import ConfusionMatrix
from gs4_ros.train.fit import (VAL_FRAMES, VAL_STEP, CacheFeeder, FitOptions, HeadAverage, SemanticCache,
                               augmented_frames, fit, predictor_step, refiner_clip, semantic_batch)
from gs4_ros.train.losses import LossWeights, token_ce, token_kl
from gs4_ros.train.semantic_backbone import backbone_semantic_losses, frozen_teacher

TINY = dict(device="cpu", width=64, height=48, seeds=2, frames=3, step=3, batch=1, clip_lengths=[2])


def test_covisible_mask_of_a_view_with_itself_is_its_valid_depth():
    seqs = synthetic_sequences([1000], 2, 3, 64, 48, torch.device("cpu"))
    s = seqs[0]
    m = covisible_mask(s.depth[0], s.poses[0], s.depth_tgt[0], s.poses[0], s.K)
    seen = s.depth[0] > 0                # the sensor model leaves holes
    assert not m[~seen].any() and m[seen].float().mean() > 0.95
    far = s.poses[0].clone()
    far[:3, 3] += 100 * far[:3, 2]      # 100 m along the optical axis: nothing is seen
    assert not covisible_mask(s.depth[0], far, s.depth_tgt[0], s.poses[0], s.K).any()


def test_token_ce_class_power_sets_how_much_rare_classes_weigh():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 40, 5, generator=g)
    labels = torch.tensor([[0] * 30 + [1] * 8 + [2] * 2])
    valid = torch.ones(1, 40, dtype=torch.bool)
    valid[0, 0] = False
    labels[0, 1] = 255                       # unknown: left out
    ok = valid[0] & (labels[0] < 5)
    per = torch.nn.functional.cross_entropy(logits[0][ok], labels[0][ok].clamp(max=4), reduction="none")
    assert torch.allclose(token_ce(logits, labels, valid, 5, power=0.0), per.mean())
    for p in (0.5, 1.0):
        cnt = torch.bincount(labels[0][ok], minlength=5).float()
        w = torch.where(cnt > 0, cnt.clamp(min=1) ** -p, torch.zeros(5))[labels[0][ok]]
        assert torch.allclose(token_ce(logits, labels, valid, 5, power=p), (w * per).sum() / w.sum())
    # At power 1 every present class weighs the same: the loss is the mean of class means.
    cls = labels[0][ok]
    means = torch.stack([per[cls == c].mean() for c in cls.unique()])
    assert torch.allclose(token_ce(logits, labels, valid, 5, power=1.0), means.mean())
    assert token_ce(logits, torch.full_like(labels, 255), valid, 5) is None


def test_worker_processes_render_the_same_rooms_as_the_training_process():
    cpu = torch.device("cpu")
    a = synthetic_sequences([1000, 1002], 2, 2, 64, 48, cpu)
    b = synthetic_sequences([1002, 1000], 2, 2, 64, 48, cpu, workers=2)
    assert [q.name for q in b] == ["synthetic:1000", "synthetic:1002"]
    for qa, qb in zip(a, b):
        for f in ("rgb", "depth", "rgb_tgt", "depth_tgt", "labels", "poses", "K"):
            assert torch.equal(getattr(qa, f), getattr(qb, f)), f


def test_the_data_deadline_stops_the_worker_processes():
    """A chunk's data phase ends at its deadline with rooms still rendering and more queued:
    what is made comes back and the workers are stopped, not left to render the rest (left
    to the interpreter's exit they once kept a training chunk from exiting after it had
    written its weights). Rooms of a second or more each, so the old behaviour shows."""
    import multiprocessing as mp

    seqs = synthetic_sequences(list(range(1000, 1040)), 4, 5, 320, 240, torch.device("cpu"),
                               deadline=time.time(), min_sequences=1, workers=2, fill_holes=True)
    assert 1 <= len(seqs) < 40
    end = time.time() + 5.0        # reaping a stopped worker takes a moment, rendering one room longer
    while mp.active_children() and time.time() < end:
        time.sleep(0.1)
    assert not mp.active_children()


def _no_workers_left(wait: float = 5.0) -> bool:
    import multiprocessing as mp

    end = time.time() + wait        # reaping a stopped worker takes a moment
    while mp.active_children() and time.time() < end:
        time.sleep(0.1)
    return not mp.active_children()


def test_streamed_rooms_join_the_sampler_while_it_draws_and_stop_at_the_deadline():
    """--stream-data: training starts with the first rooms; later ones join the list the
    Sampler draws from at top_up(), and the first top-up past the deadline stops the
    workers with rooms still queued."""
    seeds = list(range(1000, 1040))
    feed = RoomFeed(seeds, 4, 5, 320, 240, torch.device("cpu"), workers=2, deadline=time.time() + 600,
                    fill_holes=True, min_rooms=1, every=0.0)
    try:
        sampler = Sampler(feed.rooms, [], 0.0, 1)
        start = len(feed.rooms)
        assert 1 <= start < 40 and sampler.syn is feed.rooms
        end = time.time() + 60
        while len(feed.rooms) == start and time.time() < end:
            new = feed.top_up()
            assert all(q in feed.rooms for q in new)
            time.sleep(0.05)
        assert len(sampler.syn) > start                   # joined while "training"
        names = [q.name for q in feed.rooms]
        assert len(set(names)) == len(names) and all(int(n.split(":")[1]) in seeds for n in names)
        feed.deadline = time.time()
        feed.top_up()
        assert not feed.open and feed.top_up() == [] and len(feed.rooms) < 40
    finally:
        feed.close()
    assert _no_workers_left()


def test_streamed_rooms_stop_when_the_device_runs_low_on_memory(caplog, tmp_path, monkeypatch):
    """Rooms live on the training device: once its free memory falls under the floor
    (10% of the total here) the feed stops as at its deadline, keeps the rooms it has and
    says so; a device whose memory cannot be read never stops it. The device's memory is
    scripted: filling a real GPU is not possible here."""
    free = [50 << 30]
    seeds = list(range(1000, 1030))
    feed = RoomFeed(seeds, 2, 5, 160, 120, torch.device("cpu"), workers=2, deadline=time.time() + 600,
                    min_rooms=1, every=0.0, memory=lambda: (free[0], 100 << 30))
    try:
        end = time.time() + 60
        while len(feed.rooms) < 2 and time.time() < end:
            feed.top_up()
            time.sleep(0.05)
        assert feed.open and not feed.stopped_for_memory and len(feed.rooms) >= 2
        free[0] = 9 << 30                                  # under 10 GiB
        with caplog.at_level(logging.WARNING, logger="gs4_ros.train.data"):
            feed.top_up()
        kept = len(feed.rooms)
        assert feed.stopped_for_memory and not feed.open and kept < 30
        assert "no more rooms this chunk" in caplog.text
        time.sleep(0.5)
        assert feed.top_up() == [] and len(feed.rooms) == kept
    finally:
        feed.close()
    unread = RoomFeed(seeds[:3], 2, 5, 160, 120, torch.device("cpu"), workers=2, deadline=time.time() + 600,
                      min_rooms=1, every=0.0, memory=lambda: None)
    try:
        unread.top_up()
        assert unread.open and not unread.stopped_for_memory
    finally:
        unread.close()
    mem = device_memory(torch.device("cpu"))
    assert mem is None or 0 < mem[0] <= mem[1]
    # A floor of the whole memory: rooms made first stop at min_sequences, in one process or
    # in workers, and a chunk's record, streamed or not, says its rooms stopped for memory.
    monkeypatch.setattr(train_data, "MEMORY_FLOOR", (1.0, 0))
    made = [len(synthetic_sequences(seeds[:6], 1, 2, 64, 48, torch.device("cpu"), workers=w)) for w in (0, 2)]
    assert made[0] == 2 and 2 <= made[1] < 6              # workers hand over what finished together
    s = fit(FitOptions(out=str(tmp_path / "m.pt"), ckpt=str(tmp_path / "m_ck.pt"), stream_data=True, workers=2,
                       data_minutes=3, steps=2, refine_steps=1, **dict(TINY, seeds=8)))   # memory stops it first
    last = s["chunks"][-1]
    assert last["rooms_stopped_for_memory"] and last["predictor_steps"] == 2 and last["synthetic_sequences"] < 8
    made_first = fit(FitOptions(out=str(tmp_path / "f.pt"), ckpt=str(tmp_path / "f_ck.pt"), steps=1, refine_steps=1,
                                data_minutes=3, **dict(TINY, seeds=4)))["chunks"][-1]
    assert made_first["rooms_stopped_for_memory"] and made_first["synthetic_sequences"] == 2
    monkeypatch.setattr(train_data, "MEMORY_FLOOR", (0.0, 0))
    plenty = fit(FitOptions(out=str(tmp_path / "g.pt"), ckpt=str(tmp_path / "g_ck.pt"), steps=1, refine_steps=1,
                            data_minutes=3, **dict(TINY, seeds=3)))["chunks"][-1]
    assert "rooms_stopped_for_memory" not in plenty and plenty["synthetic_sequences"] == 3
    assert _no_workers_left()


def test_a_streamed_chunk_trains_and_records_every_room_it_saw(tmp_path):
    out = tmp_path / "w" / "gs4_nets.pt"
    with pytest.raises(ValueError, match="workers >= 2"):
        fit(FitOptions(out=str(out), ckpt=str(tmp_path / "ck.pt"), stream_data=True, workers=1, **TINY))
    s = fit(FitOptions(out=str(out), ckpt=str(tmp_path / "ck.pt"), stream_data=True, workers=2, data_minutes=0.2,
                       steps=2, refine_steps=1, **dict(TINY, seeds=4)))
    last = s["chunks"][-1]
    assert last["predictor_steps"] == 2 and last["refiner_clips"] == 1 and math.isfinite(last["predictor_final"]["loss"])
    assert 2 <= last["synthetic_sequences"] <= 4
    assert len(s["training_sequences"]) == last["synthetic_sequences"]
    assert all(1000 <= int(x.split(":")[1]) < 1004 for x in s["training_sequences"])
    assert _no_workers_left()
    # A semantic-only chunk caches the rooms that join while it runs too (each frame twice
    # with --sem-cache-copies 2), within its share of the time; a room it had no time for
    # is counted, not lost track of.
    h = fit(FitOptions(out=str(tmp_path / "h.pt"), ckpt=str(tmp_path / "ckh.pt"), init_weights=str(out),
                       semantic_only=True, sem_cache=True, sem_cache_copies=2, sem_batch=2, strides=[8],
                       stream_data=True, workers=2, minutes=0.3, data_minutes=0.3, **dict(TINY, seeds=12)))
    last = h["chunks"][-1]
    assert last["semantic_steps"] > 0
    assert last["sem_cache_frames"] + 2 * TINY["frames"] * last["sem_cache_rooms_left"] == \
        2 * TINY["frames"] * last["synthetic_sequences"]
    assert last["sem_cache_frames"] > 0
    assert _no_workers_left()
    with pytest.raises(ValueError, match="sem-cache-share"):
        fit(FitOptions(out=str(tmp_path / "h2.pt"), init_weights=str(out), semantic_only=True, sem_cache=True,
                       sem_cache_share=0.0, **TINY))


def test_cache_feeder_caches_streamed_rooms_within_its_share_of_the_time():
    """One room at a time while caching has used at most `share` of the time since the
    feeder started (a scripted clock stands in for time); share 1 takes every waiting room
    at once."""
    seqs = synthetic_sequences([1003, 1004, 1005, 1006], 2, 2, 64, 48, torch.device("cpu"), targets=False)
    pred, mcfg = GaussianPredictor(width=16).eval(), MappingConfig()

    def clock_of(times):
        it = iter(times)
        return lambda: next(it)

    cache = SemanticCache(pred, seqs[:1], mcfg, [8])
    # t0 = 0; feed at 0 (0 <= 0.5 x 0): one room, 0 -> 10 s; at 12 s 10 > 6: none; at 20 s
    # 10 <= 10: the next, 20 -> 25 s; at 26 s 15 > 13: none.
    f = CacheFeeder(cache, 0.5, clock_of([0, 0, 0, 10, 12, 20, 20, 25, 26]))
    f.add(seqs[1:])
    assert [f.feed() for _ in range(4)] == [1, 0, 1, 0]
    assert cache.n == 3 * 2 and f.rooms == 2 and f.spent == 15 and f.backlog == seqs[3:]
    whole = SemanticCache(pred, seqs[:3], mcfg, [8])
    assert torch.allclose(cache.data[(8, "feats")][:cache.n].float(), whole.data[(8, "feats")][:whole.n].float(),
                          atol=1e-3)
    cache = SemanticCache(pred, seqs[:1], mcfg, [8])
    f = CacheFeeder(cache, 1.0)
    f.add(seqs[1:3])
    f.add(seqs[3:])
    assert f.feed() == 3 and f.feed() == 0 and cache.n == 4 * 2 and not f.backlog


def test_semantic_cache_extended_room_by_room_equals_the_cache_of_all_rooms():
    """A --stream-data semantic chunk adds rooms to its cache as they arrive: the grown
    storage holds what one cache of all the rooms holds, frame for frame."""
    seqs = synthetic_sequences([1003, 1004, 1005], 2, 2, 64, 48, torch.device("cpu"), targets=False)
    torch.manual_seed(0)
    pred, mcfg = GaussianPredictor(width=16).eval(), MappingConfig()
    whole = SemanticCache(pred, seqs, mcfg, [8, 16])
    grown = SemanticCache(pred, seqs[:1], mcfg, [8, 16])
    grown.extend(seqs[1:2])
    grown.extend([])
    grown.extend(seqs[2:])
    assert grown.n == whole.n == 6
    for k, v in whole.data.items():
        assert torch.allclose(grown.data[k][:grown.n].float(), v[:whole.n].float(), atol=1e-3), k
    idx = torch.tensor([5, 0, 3])
    with torch.no_grad():
        a, b = whole.logits_and_targets(pred, idx, 8), grown.logits_and_targets(pred, idx, 8)
    assert all(torch.allclose(x.float(), y.float(), atol=1e-3) for x, y in zip(a, b))
    assert abs(whole.score(pred, 8) - grown.score(pred, 8)) < 1e-6


def test_semantic_batch_mirrors_frames_with_their_labels():
    seqs = synthetic_sequences([1003], 1, 2, 64, 48, torch.device("cpu"))
    pred, mcfg = GaussianPredictor(width=16), MappingConfig()
    q = seqs[0]
    plain = pred(q.rgb[0].float() / 255.0, q.depth[0], q.K, mcfg, labels=q.labels[0])
    hb, wb = plain.grid_shape
    lab = plain.labels[0].reshape(hb, wb)
    tok = semantic_batch(pred, Sampler(seqs, [], 0.0, 1, seed=5), mcfg, 12, 8)
    got = tok.labels.reshape(12, hb, wb)
    mirrored = [bool(torch.equal(g, lab.flip(1))) for g in got]
    same = [bool(torch.equal(g, lab)) for g in got]
    assert not torch.equal(lab, lab.flip(1))              # the room is not symmetric
    assert all(m or s for m, s in zip(mirrored, same)) and any(mirrored) and any(same)
    # The extra frames feed a loss term that reaches the semantic head.
    opts = FitOptions(batch=1, sem_batch=2, strides=[8])
    parts = predictor_step(pred, make_rasterizer("torch", "cpu"), Sampler(seqs, [], 0.0, 1, seed=6), mcfg, opts,
                           LossWeights())
    assert "token_ce_aug" in parts
    parts["token_ce_aug"].backward()
    assert pred.sem_head[-1].weight.grad.abs().sum() > 0


def test_semantic_cache_gives_the_head_what_the_whole_model_gives_it():
    """The cached path (frozen outputs kept in half precision, the head run on them) yields
    the logits, labels and validity of running the whole model on the same augmented
    frames, at every stride it keeps; without targets a room keeps no clean copies."""
    seqs = synthetic_sequences([1003, 1004], 3, 2, 64, 48, torch.device("cpu"), targets=False)
    assert seqs[0].rgb_tgt is seqs[0].rgb and seqs[0].depth_tgt is seqs[0].depth
    torch.manual_seed(0)
    pred, mcfg = GaussianPredictor(width=16, sem_geometry=True, sem_attention=True).eval(), MappingConfig()
    for m in (pred.sem_geometry.out, pred.sem_attention.out):
        torch.nn.init.normal_(m.weight, std=0.1)       # the branches' outputs count
    cache = SemanticCache(pred, seqs, mcfg, [8, 16], rng=Sampler(seqs, [], 0.0, 1, seed=3).rng, batch=64)
    assert cache.n == 6
    frames = [(q, i) for q in seqs for i in range(len(q))]
    rgb, depth, labels, Ks = augmented_frames(Sampler(seqs, [], 0.0, 1, seed=3).rng, [q for q, _ in frames],
                                              [i for _, i in frames])
    assert any(not torch.equal(labels[j], q.labels[i]) for j, (q, i) in enumerate(frames))   # some mirrored
    idx = torch.tensor([4, 0, 5])
    with torch.no_grad():
        for stride in (8, 16):
            whole = pred(rgb[idx], depth[idx], Ks[idx], mcfg, labels=labels[idx], stride=stride)
            logits, lab, valid = cache.logits_and_targets(pred, idx, stride)
            assert torch.equal(lab, whole.labels) and torch.equal(valid, whole.valid)
            assert torch.allclose(logits, whole.sem_logits, atol=2e-2), float((logits - whole.sem_logits).abs().max())
    with pytest.raises(ValueError, match="semantic-only"):
        fit(FitOptions(sem_cache=True, **TINY))
    with pytest.raises(ValueError, match="needs --sem-cache"):
        fit(FitOptions(sem_cache_copies=2, **TINY))
    with pytest.raises(ValueError, match=">= 1"):
        fit(FitOptions(sem_cache_copies=0, **TINY))
    # copies: every frame kept that many times in a row, each copy drawn on its own (the
    # same rng stream as one copy each of the frames listed that many times).
    two = SemanticCache(pred, seqs, mcfg, [8], rng=Sampler(seqs, [], 0.0, 1, seed=3).rng, batch=64, copies=2)
    assert two.n == 12
    rep = [f for f in frames for _ in range(2)]
    rgb2, depth2, labels2, Ks2 = augmented_frames(Sampler(seqs, [], 0.0, 1, seed=3).rng, [q for q, _ in rep],
                                                  [i for _, i in rep])
    with torch.no_grad():
        whole = pred(rgb2, depth2, Ks2, mcfg, labels=labels2, stride=8)
        logits, lab, _ = two.logits_and_targets(pred, torch.arange(12), 8)
    assert torch.equal(lab, whole.labels) and torch.allclose(logits, whole.sem_logits, atol=2e-2)
    assert any(not torch.equal(rgb2[2 * j], rgb2[2 * j + 1]) for j in range(6))    # copies differ
    assert SemanticCache(pred, seqs, mcfg, [8], copies=3).n == 6                     # validation: once each
    # Without an rng the frames are kept as they are, and score() is the token mIoU of the
    # whole model's argmax on them.
    plain = SemanticCache(pred, seqs, mcfg, [8])
    cm = ConfusionMatrix(pred.num_classes)
    with torch.no_grad():
        for q in seqs:
            tok = pred(q.rgb.float() / 255.0, q.depth, q.K, mcfg, labels=q.labels, stride=8)
            ok = tok.valid.reshape(-1)
            cm.add(tok.sem_logits.argmax(-1).reshape(-1)[ok].numpy(), tok.labels.reshape(-1)[ok].numpy())
    assert abs(plain.score(pred, 8, batch=4) - cm.miou()["miou"]) < 0.02


def test_validation_rooms_pick_the_head_a_semantic_chunk_keeps(tmp_path):
    """A semantic-only chunk with --val-seeds scores the head as it trains and ends with the
    best-scoring one: the weights it writes score that best, and the next chunk starts from
    it rather than from the last step's head."""
    ck = tmp_path / "ck.pt"
    opts = dict(TINY, width=128, height=96)           # a few more tokens than TINY, so scores move
    fit(FitOptions(out=str(tmp_path / "a.pt"), ckpt=str(ck), steps=1, refine_steps=1, **opts))
    with pytest.raises(ValueError, match="below"):
        fit(FitOptions(out=str(tmp_path / "x.pt"), ckpt=str(ck), resume=True, semantic_only=True,
                       val_seeds=[1500], **opts))
    with pytest.raises(ValueError, match="semantic-only"):
        fit(FitOptions(out=str(tmp_path / "x.pt"), ckpt=str(ck), resume=True, val_seeds=[960], **opts))
    sem = dict(resume=True, semantic_only=True, sem_cache=True, val_seeds=[960, 961], val_every=2, sem_batch=4,
               strides=[8], **opts)
    v = fit(FitOptions(out=str(tmp_path / "b.pt"), ckpt=str(ck), steps=20, lr=0.02, **sem))["chunks"][-1]["validation"]
    assert v["seeds"] == [960, 961] and v["frames"] == 2 * VAL_FRAMES
    assert [st for st, _ in v["scores"]] == list(range(0, 21, 2))
    best = max(m for _, m in v["scores"])
    assert v["kept_step"] == [st for st, m in v["scores"] if m == best][0]
    pb, _, _ = load_networks(tmp_path / "b.pt")
    vseq = synthetic_sequences([960, 961], VAL_FRAMES, VAL_STEP, opts["width"], opts["height"], torch.device("cpu"),
                               targets=False)
    mcfg = MappingConfig()
    assert SemanticCache(pb, vseq, mcfg, [mcfg.stride]).score(pb, mcfg.stride) == pytest.approx(best, abs=1e-4)
    v2 = fit(FitOptions(out=str(tmp_path / "c.pt"), ckpt=str(ck), steps=2, lr=0.02, **sem))["chunks"][-1]["validation"]
    assert v2["scores"][0][1] == pytest.approx(best, abs=1e-4)
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert "Validation, chunk 1: token mIoU on rooms 960-961 (8 frames" in card and "Validation, chunk 2:" in card

def test_head_average_follows_the_weights_with_its_decay_and_swaps_in_only_for_a_block():
    p = torch.nn.Parameter(torch.zeros(3))
    avg = HeadAverage([p], decay=0.5)
    expect = torch.zeros(3)
    for n, v in enumerate([4.0, 8.0, 2.0, 6.0], start=1):
        with torch.no_grad():
            p.fill_(v)
        avg.update()
        d = min(0.5, (1 + n) / (10 + n))          # ramps up from 0.18 to the decay
        expect = d * expect + (1 - d) * v
    assert avg.updates == 4 and torch.allclose(avg.avg[0], expect)
    with avg.swapped():
        assert torch.allclose(p.detach(), expect)
    assert torch.all(p.detach() == 6.0)              # the trained weights are back after the block
    with pytest.raises(RuntimeError, match="inside"):
        with avg.swapped():
            raise RuntimeError("inside")
    assert torch.all(p.detach() == 6.0)              # ... also when the block raises
    avg.copy_to_params()
    assert torch.allclose(p.detach(), expect)


def _head_chunk_start(tmp_path, refused) -> dict:
    """The options of a small semantic chunk, after writing the one-step weights it starts
    from (tmp_path/a.pt) and checking that each (options, message) of `refused` is refused."""
    opts = dict(TINY, width=128, height=96)
    fit(FitOptions(out=str(tmp_path / "a.pt"), ckpt=str(tmp_path / "ck.pt"), steps=1, refine_steps=1, **opts))
    for bad, msg in refused:
        with pytest.raises(ValueError, match=msg):
            fit(FitOptions(out=str(tmp_path / "x.pt"), init_weights=str(tmp_path / "a.pt"), **dict(opts, **bad)))
    return opts


def test_a_semantic_chunk_with_sem_ema_scores_and_keeps_the_averaged_head(tmp_path):
    """--sem-ema: validation scores the average of the head's weights and the chunk keeps
    the best average; without validation rooms it ends with the last average. Each chunk
    records its decay and how many steps were averaged."""
    opts = _head_chunk_start(tmp_path, ((dict(semantic_only=True, sem_ema=1.0), "decay"),
                                        (dict(sem_ema=0.9), "semantic-only")))
    sem = dict(init_weights=str(tmp_path / "a.pt"), semantic_only=True, sem_cache=True, sem_batch=4, strides=[8],
               steps=12, lr=0.05, **opts)
    c = fit(FitOptions(out=str(tmp_path / "b.pt"), ckpt=str(tmp_path / "b.ck"), sem_ema=0.8, val_seeds=[960, 961],
                       val_every=3, **sem))["chunks"][-1]
    assert c["head_average"] == {"decay": 0.8, "updates": 12}
    v = c["validation"]
    assert len({m for _, m in v["scores"]}) > 1            # the average moves with training
    p = fit(FitOptions(out=str(tmp_path / "p.pt"), ckpt=str(tmp_path / "pv.ck"), val_seeds=[960, 961], val_every=3,
                       **sem))["chunks"][-1]
    assert "head_average" not in p and p["validation"]["scores"][0] == v["scores"][0]
    assert p["validation"]["scores"][1:] != v["scores"][1:]   # the same steps, scored as an average
    best = max(m for _, m in v["scores"])
    pb, _, _ = load_networks(tmp_path / "b.pt")
    vseq = synthetic_sequences([960, 961], VAL_FRAMES, VAL_STEP, opts["width"], opts["height"], torch.device("cpu"),
                               targets=False)
    mcfg = MappingConfig()
    assert SemanticCache(pb, vseq, mcfg, [mcfg.stride]).score(pb, mcfg.stride) == pytest.approx(best, abs=1e-4)
    # Without validation: the average after the last step, not the last step's weights.
    fit(FitOptions(out=str(tmp_path / "plain.pt"), ckpt=str(tmp_path / "p.ck"), **sem))
    fit(FitOptions(out=str(tmp_path / "ema.pt"), ckpt=str(tmp_path / "e.ck"), sem_ema=0.8, **sem))
    plain, ema = (load_networks(tmp_path / f)[0].state_dict() for f in ("plain.pt", "ema.pt"))
    head = [k for k in plain if k.split(".")[0] in ("sem_head", "sem_members")]
    assert head and all(torch.equal(plain[k], ema[k]) for k in plain if k.split(".")[0] == "backbone")
    assert any(not torch.allclose(plain[k], ema[k]) for k in head)


def test_sem_dropout_drops_the_heads_inputs_while_it_trains_and_never_when_it_scores(tmp_path):
    """--sem-dropout: training steps see the head's inputs thinned (a fresh draw each step,
    cached frames too), while validation and inference read them whole, so a chunk's first
    validation score is the same with or without it and its training loss is not."""
    torch.manual_seed(0)
    pred = GaussianPredictor(20, 8, 16, sem_context=True)
    feats, coarse = torch.randn(2, 16, 6, 8), torch.randn(2, 16, 2, 2)
    pred.eval()
    plain = pred.semantic_logits(feats, coarse, stride=8)
    pred.sem_dropout = 0.5
    assert torch.equal(pred.semantic_logits(feats, coarse, stride=8), plain)     # not when scoring
    pred.train()
    a, b = pred.semantic_logits(feats, coarse, stride=8), pred.semantic_logits(feats, coarse, stride=8)
    assert not torch.allclose(a, plain) and not torch.allclose(a, b)             # a new draw per call
    assert "sem_dropout" not in pred.arch()

    opts = _head_chunk_start(tmp_path, ((dict(semantic_only=True, sem_dropout=1.0), "probability"),
                                        (dict(sem_dropout=0.3), "semantic-only")))
    sem = dict(init_weights=str(tmp_path / "a.pt"), semantic_only=True, sem_cache=True, sem_batch=4, strides=[8],
               steps=6, lr=0.05, val_seeds=[960], val_every=3, **opts)
    c0, c9 = (fit(FitOptions(out=str(tmp_path / f"{n}.pt"), ckpt=str(tmp_path / f"{n}.ck"), sem_dropout=p,
                             **sem))["chunks"][-1] for n, p in (("d0", 0.0), ("d9", 0.9)))
    assert c0["validation"]["scores"][0] == c9["validation"]["scores"][0]
    assert c9["predictor_first"]["token_ce_aug"] != pytest.approx(c0["predictor_first"]["token_ce_aug"], rel=1e-3)
    assert json.loads((tmp_path / "d9.json").read_text())["options"]["sem_dropout"] == 0.9


def test_a_semantic_stage_that_raises_leaves_the_network_trainable_and_without_dropout(monkeypatch):
    """The head stage freezes all but the head and turns its input dropout on; a step that
    raises (out of memory, say) must not leave the network that way for the caller."""
    import gs4_ros.train.fit as fit_mod

    torch.manual_seed(0)
    pred = GaussianPredictor(20, 8, 16, sem_context=True)
    seen = []

    def failing_step(p, *a, **k):
        seen.append((p.sem_dropout, sum(q.requires_grad for q in p.parameters())))
        raise RuntimeError("out of memory")
    monkeypatch.setattr(fit_mod, "semantic_step", failing_step)
    opts = FitOptions(semantic_only=True, sem_dropout=0.3, steps=3)
    opt_s = torch.optim.AdamW(fit_mod.semantic_parameters(pred), lr=1e-3)
    with pytest.raises(RuntimeError, match="out of memory"):
        fit_mod._semantic_stage(pred, opt_s, None, MappingConfig(), opts, {}, {}, time.time(), time.time() + 60,
                                lambda: None)
    n_all = sum(1 for _ in pred.parameters())
    assert seen and seen[0][0] == 0.3 and 0 < seen[0][1] < n_all       # the stage had set both
    assert pred.sem_dropout == 0.0 and all(q.requires_grad for q in pred.parameters())


def test_token_kl_is_zero_for_the_teachers_own_distribution_and_skips_invalid_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 4)
    valid = torch.tensor([[True, True, False, True, True], [False, True, True, True, False]])
    assert token_kl(logits, logits.log_softmax(-1), valid).abs() < 1e-6
    other = torch.randn(2, 5, 4).log_softmax(-1)
    kl = token_kl(logits, other, valid)
    assert kl > 0
    garbage = other.clone()
    garbage[~valid] = torch.log_softmax(torch.tensor([9.0, -9.0, -9.0, -9.0]), -1)   # invalid tokens do not count
    assert token_kl(logits, garbage, valid) == pytest.approx(float(kl), abs=1e-6)
    assert token_kl(logits, other, torch.zeros(2, 5, dtype=torch.bool)) is None


def test_a_semantic_chunk_with_a_teacher_learns_its_token_probabilities(tmp_path):
    """--sem-teacher: the head also learns a segmenter's token probabilities on the same
    frames (cached or drawn each step); the chunk records the KL, which falls with the
    teacher's weight and stays higher without it. A teacher of other classes or a chunk
    that trains more than the head is refused."""
    from gs4_ros.core.config import SCANNET20_CLASSES
    from gs4_ros.core.nets.segmenter import KeyframeSegmenter, save_segmenter
    opts = _head_chunk_start(tmp_path, ())    # (its refusals need the segmenter files below)
    torch.manual_seed(3)    # a random segmenter: a teacher far from the labels, so following it shows
    seg = KeyframeSegmenter(len(SCANNET20_CLASSES), widths=(8, 16, 16, 24, 32), decoder=16).eval()
    save_segmenter(tmp_path / "t.pt", seg, SCANNET20_CLASSES)
    save_segmenter(tmp_path / "few.pt", KeyframeSegmenter(3, widths=(8, 16, 16, 24, 32), decoder=16),
                   ["wall", "floor", "chair"])
    sem = dict(init_weights=str(tmp_path / "a.pt"), semantic_only=True, sem_batch=4, strides=[8], steps=15,
               lr=0.05, **opts)
    for bad, msg in ((dict(sem_teacher=str(tmp_path / "few.pt")), "classes"),
                     (dict(sem_teacher=str(tmp_path / "none.pt")), "no segmenter"),
                     (dict(sem_teacher=str(tmp_path / "t.pt"), semantic_only=False), "semantic-only")):
        with pytest.raises(ValueError, match=msg):
            fit(FitOptions(out=str(tmp_path / "x.pt"), ckpt=str(tmp_path / "x.ck"), **dict(sem, **bad)))

    def kl_of(name, **kw):
        c = fit(FitOptions(out=str(tmp_path / f"{name}.pt"), ckpt=str(tmp_path / f"{name}.ck"),
                           sem_teacher=str(tmp_path / "t.pt"), **dict(sem, **kw)))["chunks"][-1]
        return c["predictor_first"]["teacher_kl"], c["predictor_final"]["teacher_kl"]

    first, last = kl_of("cached", sem_cache=True, sem_teacher_weight=20.0)
    assert last < 0.7 * first
    first0, last0 = kl_of("ignored", sem_cache=True, sem_teacher_weight=0.0)   # recorded, not learnt
    assert last0 > 2 * last
    first_u, last_u = kl_of("drawn", sem_teacher_weight=20.0)                  # without the cache
    assert last_u < 0.7 * first_u


def test_sem_backbone_trains_the_backbone_and_holds_the_gaussian_heads_outputs(tmp_path):
    """--sem-backbone: the backbone learns from the token loss while the frozen Gaussian and
    latent-feature heads are held to their outputs on the starting backbone; at the start
    the hold costs nothing and the token loss is the whole model's, and a heavy hold keeps
    the predicted Gaussians closer than none does."""
    ck = tmp_path / "ck.pt"
    opts = dict(TINY, width=128, height=96)
    fit(FitOptions(out=str(tmp_path / "a.pt"), ckpt=str(ck), steps=1, refine_steps=1, **opts))
    for bad in (dict(semantic_only=False), dict(semantic_only=True, sem_cache=True)):
        with pytest.raises(ValueError, match="--sem-backbone"):
            fit(FitOptions(out=str(tmp_path / "x.pt"), ckpt=str(ck), resume=True, sem_backbone=True, **bad, **opts))
    pa, ra, _ = load_networks(tmp_path / "a.pt")
    q = synthetic_sequences([1005], 2, 2, 128, 96, torch.device("cpu"))[0]
    mcfg = MappingConfig()
    rgb, depth, labels, Ks = augmented_frames(None, [q, q], [0, 1])
    parts = backbone_semantic_losses(pa, frozen_teacher(pa), rgb, depth, labels, Ks, mcfg, 8, 0.5)
    with torch.no_grad():
        whole = pa(rgb, depth, Ks, mcfg, labels=labels, stride=8)
    assert float(parts["distill"].detach()) == 0.0
    plain = token_ce(whole.sem_logits, whole.labels, whole.valid, pa.num_classes, 0.5)
    assert float(parts["token_ce"].detach()) == pytest.approx(float(plain), rel=1e-5)
    moved = {}
    for w in (0.0, 1e4):
        out = tmp_path / f"w{w:g}.pt"
        s = fit(FitOptions(out=str(out), ckpt=str(tmp_path / f"ck{w:g}.pt"), init_weights=str(tmp_path / "a.pt"),
                           semantic_only=True, sem_backbone=True, distill_weight=w, steps=4, lr=0.02, sem_batch=2,
                           strides=[8], **opts))
        assert s["chunks"][-1]["semantic_steps"] == 4
        pb, rb, _ = load_networks(out)
        assert not torch.equal(pa.backbone.enc8[0][0].weight, pb.backbone.enc8[0][0].weight)
        for head in ("gauss_head", "feat_head"):
            assert all(torch.equal(u, v) for u, v in zip(getattr(pa, head).state_dict().values(),
                                                          getattr(pb, head).state_dict().values())), head
        assert all(torch.equal(u, v) for u, v in zip(ra.state_dict().values(), rb.state_dict().values()))
        with torch.no_grad():
            tb = pb(rgb, depth, Ks, mcfg, stride=8)
        moved[w] = float((tb.colors - whole.colors)[whole.valid].abs().mean())
    assert 0.0 < moved[1e4] < moved[0.0]
    assert "`--sem-backbone`, distill weight 10000" in (tmp_path / "MODEL_CARD.md").read_text()
    # Validation scores the backbone as it trains (no kept outputs): the weights written
    # score the best the chunk saw.
    s = fit(FitOptions(out=str(tmp_path / "v.pt"), ckpt=str(tmp_path / "ckv.pt"), init_weights=str(tmp_path / "a.pt"),
                       semantic_only=True, sem_backbone=True, steps=4, lr=0.02, sem_batch=2, strides=[8],
                       val_seeds=[960], val_every=2, **opts))
    v = s["chunks"][-1]["validation"]
    assert v["frames"] == VAL_FRAMES and [st for st, _ in v["scores"]] == [0, 2, 4]
    pv, _, _ = load_networks(tmp_path / "v.pt")
    vseq = synthetic_sequences([960], VAL_FRAMES, VAL_STEP, 128, 96, torch.device("cpu"), targets=False)
    best = max(m for _, m in v["scores"])
    assert SemanticCache(pv, vseq, mcfg, [mcfg.stride]).score(pv, mcfg.stride) == pytest.approx(best, abs=1e-4)


def test_predictor_and_refiner_losses_decrease_on_a_fixed_batch():
    torch.manual_seed(0)
    seqs = synthetic_sequences([1001], 3, 3, 64, 48, torch.device("cpu"))
    mcfg, rast, w = MappingConfig(), make_rasterizer("torch", "cpu"), LossWeights()
    pred = GaussianPredictor(width=32)
    opt = torch.optim.Adam(pred.parameters(), lr=2e-3)
    opts = FitOptions(batch=1)
    losses = []
    for _ in range(6):
        parts = predictor_step(pred, rast, Sampler(seqs, [], 0.0, 1, seed=3), mcfg, opts, w)
        assert {"color_mse", "ssim", "depth_l1", "token_ce"} <= set(parts)
        losses.append(float(parts["loss"].detach()))
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    ref = GaussianRefiner()
    ropt = torch.optim.Adam(ref.parameters(), lr=2e-3)
    rl = [refiner_clip(pred, ref, rast, Sampler(seqs, [], 0.0, 1, seed=4), mcfg, 2, w, ropt, 1.0)[0]["loss"]
          for _ in range(5)]
    assert rl[-1] < rl[0]
    # The latent feature is trained through the refiner (the feature head gets gradients).
    assert pred.feat_head[-1].weight.grad is not None and pred.feat_head[-1].weight.grad.abs().sum() > 0


def test_blend_option_trains_the_colour_of_the_blended_view():
    """--blend: the colour losses see the view the pipeline publishes (colour blended over
    each surface); geometry losses are those of the plain render, and gradients reach the
    network through the blended colour."""
    seqs = synthetic_sequences([1002], 3, 3, 64, 48, torch.device("cpu"))
    mcfg, rast, w = MappingConfig(), make_rasterizer("torch", "cpu"), LossWeights()
    torch.manual_seed(0)
    pred = GaussianPredictor(width=32)
    plain = predictor_step(pred, rast, Sampler(seqs, [], 0.0, 1, seed=5), mcfg, FitOptions(batch=1), w)
    opts = FitOptions(batch=1, blend=True)
    blended = predictor_step(pred, rast, Sampler(seqs, [], 0.0, 1, seed=5), mcfg, opts, w)
    assert float(blended["depth_l1"].detach()) == pytest.approx(float(plain["depth_l1"].detach()))
    assert abs(float(blended["color_mse"].detach()) - float(plain["color_mse"].detach())) > 1e-6
    blended["color_mse"].backward()
    g = pred.gauss_head[-1].weight.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    ref = GaussianRefiner()
    rl = refiner_clip(pred, ref, rast, Sampler(seqs, [], 0.0, 1, seed=4), mcfg, 2, w,
                      torch.optim.Adam(ref.parameters(), lr=2e-3), 1.0, blend=True)[0]
    assert math.isfinite(rl["loss"])


def test_fit_chunk_writes_loadable_weights_and_resumes(tmp_path):
    out, ck = tmp_path / "w" / "gs4_nets.pt", tmp_path / "ck.pt"
    s = fit(FitOptions(out=str(out), ckpt=str(ck), steps=2, refine_steps=1, **TINY))
    assert s["total_predictor_steps"] == 2 and s["total_refiner_clips"] == 1
    last = s["chunks"][-1]
    assert math.isfinite(last["predictor_final"]["loss"]) and math.isfinite(last["refiner_final"]["loss"])
    pred, ref, info = load_networks(out)
    assert all(torch.isfinite(p).all() for p in list(pred.parameters()) + list(ref.parameters()))
    assert len(info["class_names"]) == 20
    # The trained residual head is no longer zero: the weights really moved.
    assert pred.gauss_head[-1].weight.abs().sum() > 0
    js = json.loads(out.with_suffix(".json").read_text())
    assert js["chunks"][0]["predictor_steps"] == 2
    card = (out.parent / "MODEL_CARD.md").read_text()
    assert "predictor steps" in card and f"{last['predictor_final']['loss']:.4f}" in card
    assert all(int(x.split(":")[1]) >= 1000 for x in js["training_sequences"])
    s2 = fit(FitOptions(out=str(out), ckpt=str(ck), resume=True, steps=1, refine_steps=1, **TINY))
    assert s2["total_predictor_steps"] == 3 and s2["total_refiner_clips"] == 2 and len(s2["chunks"]) == 2
    # A resumed chunk makes new rooms, after every seed the first chunk asked for.
    assert set(s2["training_sequences"]) == set(js["training_sequences"]) | {"synthetic:1002", "synthetic:1003"}


def test_a_chunk_continues_from_a_weights_file_without_its_checkpoint(tmp_path):
    """--init-weights: the weights and the history of a weights file go on, the optimiser
    moments start afresh, and new rooms come after every seed the history names."""
    a = tmp_path / "a" / "gs4_nets.pt"
    fit(FitOptions(out=str(a), ckpt=str(tmp_path / "lost.pt"), steps=2, refine_steps=1, sem_geometry=True, **TINY))
    pa, _, _ = load_networks(a)
    b = tmp_path / "b" / "gs4_nets.pt"
    ck = tmp_path / "new.pt"
    s = fit(FitOptions(out=str(b), ckpt=str(ck), init_weights=str(a), semantic_only=True, **dict(TINY, sem_batch=1),
                       steps=1))
    assert [c["chunk"] for c in s["chunks"]] == [0, 1] and s["total_predictor_steps"] == 2
    assert s["chunks"][1]["semantic_steps"] == 1
    assert set(s["training_sequences"]) - set(json.loads(a.with_suffix(".json").read_text())["training_sequences"]) \
        == {"synthetic:1002", "synthetic:1003"}
    pb, _, _ = load_networks(b)
    assert pb.sem_geometry is not None       # the branch the weights have is kept
    assert all(torch.equal(u, v) for u, v in zip(pa.backbone.state_dict().values(), pb.backbone.state_dict().values()))
    assert not torch.equal(pa.sem_head[-1].weight, pb.sem_head[-1].weight)
    st = torch.load(ck, weights_only=False)
    assert max(int(v["step"]) for v in st["opt_semantic"]["state"].values()) == 1   # fresh moments
    with pytest.raises(FileNotFoundError, match="training summary"):
        a.with_suffix(".json").unlink()
        fit(FitOptions(out=str(tmp_path / "c.pt"), ckpt=str(tmp_path / "c_ck.pt"), init_weights=str(a), **TINY))


def test_resume_with_new_refiner_keeps_the_predictor_and_restarts_the_refiner(tmp_path):
    ck = tmp_path / "ck.pt"
    fit(FitOptions(out=str(tmp_path / "a.pt"), ckpt=str(ck), steps=2, refine_steps=2, **TINY))
    pa, _, _ = load_networks(tmp_path / "a.pt")
    ref_only = dict(TINY, refine_fraction=1.0, refine_steps=1)    # no predictor step, one refiner clip

    def refiner_adam_steps():
        st = torch.load(ck, weights_only=False)["opt_refiner"]["state"]
        return max(int(v["step"]) for v in st.values())   # one Adam step per frame of a clip

    fit(FitOptions(out=str(tmp_path / "b.pt"), ckpt=str(ck), resume=True, **ref_only))
    assert refiner_adam_steps() == 6                                # resumed: 3 clips of 2 frames
    fit(FitOptions(out=str(tmp_path / "c.pt"), ckpt=str(ck), resume=True, new_refiner=True, **ref_only))
    assert refiner_adam_steps() == 2                                # started over: 1 clip
    pc, _, _ = load_networks(tmp_path / "c.pt")
    assert all(torch.equal(u, v) for u, v in zip(pa.backbone.state_dict().values(), pc.backbone.state_dict().values()))


def test_semantic_only_chunk_adds_the_context_branch_and_leaves_the_gaussians_alone(tmp_path):
    ck = tmp_path / "ck.pt"
    fit(FitOptions(out=str(tmp_path / "a.pt"), ckpt=str(ck), steps=2, refine_steps=1, **TINY))
    pa, ra, _ = load_networks(tmp_path / "a.pt")
    assert pa.sem_context is None                       # a file without the branch still loads
    s = fit(FitOptions(out=str(tmp_path / "b.pt"), ckpt=str(ck), resume=True, sem_context=True, semantic_only=True,
                       steps=3, sem_batch=2, strides=[8], **TINY))
    last = s["chunks"][-1]
    assert last["semantic_steps"] == 3 and last["predictor_steps"] == 0 and last["refiner_clips"] == 0
    assert s["total_predictor_steps"] == 2 and s["total_semantic_steps"] == 3
    pb, rb, _ = load_networks(tmp_path / "b.pt")
    assert pb.sem_context is not None and pb.sem_context.out.weight.abs().sum() > 0
    q = synthetic_sequences([1005], 1, 2, 64, 48, torch.device("cpu"))[0]
    mcfg = MappingConfig()
    with torch.no_grad():
        ta = pa(q.rgb[0].float() / 255.0, q.depth[0], q.K, mcfg)
        tb = pb(q.rgb[0].float() / 255.0, q.depth[0], q.K, mcfg)
    for f in ("means", "log_scales", "quats", "opacity_logits", "colors", "features"):
        assert torch.equal(getattr(ta, f), getattr(tb, f)), f
    assert not torch.allclose(ta.sem_logits, tb.sem_logits)
    assert all(torch.equal(u, v) for u, v in zip(ra.state_dict().values(), rb.state_dict().values()))
    # A second semantic chunk resumes the branch and its optimiser.
    s2 = fit(FitOptions(out=str(tmp_path / "c.pt"), ckpt=str(ck), resume=True, semantic_only=True, steps=1,
                        sem_batch=2, strides=[8], **TINY))
    assert s2["total_semantic_steps"] == 4
    assert "semantic steps" in (tmp_path / "MODEL_CARD.md").read_text()
    # A third adds the geometry branch beside the context one: still no Gaussian moves.
    fit(FitOptions(out=str(tmp_path / "d.pt"), ckpt=str(ck), resume=True, semantic_only=True, sem_geometry=True,
                   steps=2, sem_batch=2, strides=[8], **TINY))
    pc, _, _ = load_networks(tmp_path / "c.pt")
    pd, _, _ = load_networks(tmp_path / "d.pt")
    assert pc.sem_geometry is None and pd.sem_geometry is not None and pd.sem_context is not None
    assert pd.sem_geometry.out.weight.abs().sum() > 0
    with torch.no_grad():
        tc = pc(q.rgb[0].float() / 255.0, q.depth[0], q.K, mcfg)
        td = pd(q.rgb[0].float() / 255.0, q.depth[0], q.K, mcfg)
    for f in ("means", "log_scales", "quats", "opacity_logits", "colors", "features"):
        assert torch.equal(getattr(tc, f), getattr(td, f)), f
    assert torch.isfinite(td.sem_logits).all() and not torch.allclose(tc.sem_logits, td.sem_logits)
    # A fourth adds the attention branch, trained from the frozen part's kept outputs: still
    # no Gaussian moves.
    fit(FitOptions(out=str(tmp_path / "e.pt"), ckpt=str(ck), resume=True, semantic_only=True, sem_attention=True,
                   sem_cache=True, steps=2, sem_batch=2, strides=[8, 16], **TINY))
    assert torch.load(ck, weights_only=False)["state"]["history"][-1]["sem_cache_frames"] == 2 * 3  # seeds x frames
    assert "`--sem-cache`" in (tmp_path / "MODEL_CARD.md").read_text()
    pe, _, _ = load_networks(tmp_path / "e.pt")
    assert pd.sem_attention is None and pe.sem_attention is not None and pe.sem_geometry is not None
    assert pe.sem_attention.out.weight.abs().sum() > 0
    with torch.no_grad():
        te = pe(q.rgb[0].float() / 255.0, q.depth[0], q.K, mcfg)
    for f in ("means", "log_scales", "quats", "opacity_logits", "colors", "features"):
        assert torch.equal(getattr(td, f), getattr(te, f)), f
    assert torch.isfinite(te.sem_logits).all() and not torch.allclose(td.sem_logits, te.sem_logits)


def test_cli_eval_prints_the_ablation_table(tmp_path, capsys, caplog):
    out = tmp_path / "gs4_nets.pt"
    fit(FitOptions(out=str(out), ckpt=str(tmp_path / "ck.pt"), steps=1, refine_steps=1, **TINY))
    js = tmp_path / "rows.json"
    card = out.parent / "MODEL_CARD.md"
    rc = main(["train", "eval", "--weights", str(out), "--seeds", "900", "--frames", "4", "--width", "96",
               "--height", "72", "--device", "cpu", "--json", str(js), "--card", str(card)])
    assert rc == 0
    txt = capsys.readouterr().out
    lines = [ln for ln in txt.splitlines() if ln.startswith("| synthetic:900")]
    assert [ln.split("|")[2].strip() for ln in lines] == ["geometric", "prediction", "+refinement",
                                                           "+optimisation", "+pruning", "+final semantics",
                                                           "+segmenter", "+segmenter+head", "geometric+opt"]
    rows = json.loads(js.read_text())
    assert all(r["num_gaussians"] > 0 and np.isfinite(r["psnr"]) for r in rows)
    # The optimisation rows (and the geometric peer with them) ran one joint step per
    # keyframe; the rows before had no back-end.
    assert [r.get("joint_optimizations", 0) > 0 for r in rows] == [False] * 3 + [True] * 6
    assert "note" in rows[8] and "note" not in rows[4]   # the peer's labels are the frames', as geometric's
    # Only the last three network rows re-predict the keyframes' classes at the end: by the
    # head, by the segmenter (the shipped one) alone, and with the head's evidence mixed in.
    assert [bool(r["final_semantics"]) for r in rows] == [False] * 5 + [True, True, True, False]
    assert rows[5]["final_semantics"]["keyframes"] >= 1
    assert [(rows[i]["final_semantics"]["model"], rows[i]["final_semantics"]["head_weight"]) for i in (5, 6, 7)] \
        == [("head", 0.0), ("segmenter", 0.0), ("segmenter", 0.2)]
    assert "| synthetic:900 | +refinement |" in card.read_text()
    assert table(rows).count("\n") == 10
    # Training seeds are refused for evaluation.
    assert main(["train", "eval", "--weights", str(out), "--seeds", "1000", "--device", "cpu"]) == 2


def test_mean_rows_average_each_variant_over_the_synthetic_seeds():
    rows = [dict(source="synthetic:900", variant="geometric", psnr=20.0, miou=0.5, num_gaussians=100),
            dict(source="synthetic:901", variant="geometric", psnr=24.0, miou=0.9, num_gaussians=300),
            dict(source="synthetic:900", variant="prediction", psnr=18.0, miou=float("nan")),
            dict(source="synthetic:901", variant="prediction", psnr=22.0, miou=0.3),
            dict(source="7scenes:250:500", variant="geometric", psnr=10.0)]
    m = mean_rows(rows)
    assert [r["variant"] for r in m] == ["geometric", "prediction"]
    assert m[0]["psnr"] == 22.0 and abs(m[0]["miou"] - 0.7) < 1e-12 and m[0]["num_gaussians"] == 200
    assert m[1]["psnr"] == 20.0 and "miou" not in m[1]     # a seed without the figure: no mean
    assert "| synthetic:mean(2 seeds) | prediction | 20.00 |" in table(m)


def test_train_subcommand_is_registered():
    p = build_parser()
    a = p.parse_args(["train", "fit", "--minutes", "7", "--resume", "--clip-lengths", "2,4"])
    assert a.minutes == 7 and a.resume and a.func.__name__ == "cmd_fit"
    assert p.parse_args(["train", "eval"]).func.__name__ == "cmd_eval"


def test_a_branch_added_before_an_existing_one_keeps_each_parameters_adam_state(tmp_path):
    """The context branch sits before the geometry branch among the predictor's parameters:
    added to weights that already have the geometry branch, every old parameter must get
    its own saved Adam moments back (a shifted mapping fails on the first step)."""
    ck = tmp_path / "ck.pt"
    fit(FitOptions(out=str(tmp_path / "a.pt"), ckpt=str(ck), steps=1, refine_steps=1, sem_geometry=True, **TINY))
    before = torch.load(ck, weights_only=False)
    names = [n for n, _ in GaussianPredictor(20, sem_geometry=True).named_parameters()]
    geo_w = names.index("sem_geometry.out.weight")
    fit(FitOptions(out=str(tmp_path / "b.pt"), ckpt=str(ck), resume=True, steps=1, refine_steps=1,
                   sem_context=True, **TINY))
    after = torch.load(ck, weights_only=False)
    names2 = [n for n, _ in GaussianPredictor(20, sem_context=True, sem_geometry=True).named_parameters()]
    st0, st1 = before["opt_predictor"]["state"], after["opt_predictor"]["state"]
    assert int(st1[names2.index("sem_geometry.out.weight")]["step"]) == int(st0[geo_w]["step"]) + 1
    assert int(st1[names2.index("sem_context.out.weight")]["step"]) == 1


def test_fill_holes_feeds_the_networks_the_mapping_depth():
    """--fill-holes: the input depth of a training room is what the pipeline maps with
    (holes filled, measured depth kept), so window and far-wall tokens get labels."""
    from gs4_ros.core.config import MappingConfig
    from gs4_ros.core.depth_fill import mapping_depth
    from gs4_ros.io.synthetic import SyntheticSequence
    from gs4_ros.train.data import _seed_tensors

    raw = _seed_tensors(900, 2, 1, 160, 120, "cpu")["depth"][0].numpy()
    filled = _seed_tensors(900, 2, 1, 160, 120, "cpu", fill_holes=True)["depth"][0].numpy()
    assert (filled > 0).mean() > (raw > 0).mean() + 0.1          # seed 900 faces a window
    kept = raw > 0
    np.testing.assert_array_equal(filled[kept], raw[kept])
    f = SyntheticSequence(seed=900, n_frames=2, width=160, height=120).frame(0)
    np.testing.assert_array_equal(filled, mapping_depth(f.depth, f.intrinsics.K_numpy(), MappingConfig())[0])


def test_append_eval_replaces_the_table_and_keeps_the_sections_after_it(tmp_path):
    from gs4_ros.train.card import EVAL_MARK, append_eval

    card = tmp_path / "MODEL_CARD.md"
    card.write_text(f"# card\n\n## Training\n\nsteps\n\n{EVAL_MARK}\n\nCommand: `old`\n\n| old table |\n\n"
                    "## Chunk notes\n\nwritten by hand\n")
    append_eval(card, "| new table |", "gs4 train eval --new", note="a note")
    txt = card.read_text()
    assert "| new table |" in txt and "| old table |" not in txt and "`old`" not in txt
    assert txt.index("## Training") < txt.index(EVAL_MARK) < txt.index("| new table |") < txt.index("## Chunk notes")
    assert txt.rstrip().endswith("written by hand")
    append_eval(tmp_path / "fresh.md", "| t |", "cmd")           # no card yet: one is started
    assert EVAL_MARK in (tmp_path / "fresh.md").read_text()


def test_a_new_card_keeps_the_notes_written_after_the_evaluation(tmp_path):
    """Training writes the card afresh (new weights make the table stale) but the notes
    written by hand since, on earlier chunks, are history and stay."""
    from gs4_ros.train.card import EVAL_MARK, write_card

    card = tmp_path / "MODEL_CARD.md"
    card.write_text(f"# card\n\n## Training\n\nold steps\n\n{EVAL_MARK}\n\n| old table |\n\n"
                    "## Chunk notes\n\nwritten by hand\n")
    chunk = {"chunk": 0, "seconds": 3.0, "predictor_steps": 5, "refiner_clips": 2,
             "predictor_first": {"loss": 1.0}, "predictor_final": {"loss": 0.5}}
    write_card(card, {"chunks": [chunk], "total_predictor_steps": 5, "total_refiner_clips": 2})
    txt = card.read_text()
    assert "old steps" not in txt and "| old table |" not in txt
    assert "1.0000 -> 0.5000" in txt
    assert txt.index(EVAL_MARK) < txt.index("## Chunk notes") and txt.rstrip().endswith("written by hand")
    write_card(tmp_path / "fresh.md", {"chunks": [chunk]})           # no card before: no notes
    assert "## Chunk notes" not in (tmp_path / "fresh.md").read_text()


def test_an_ensemble_averages_heads_of_one_backbone_and_keeps_its_gaussians(tmp_path, capsys):
    """`gs4 train ensemble` puts the semantic heads of two semantic-only chunks from the
    same weights into one file: its logits are their mean log-probability, its Gaussians
    the first file's; files that do not share the backbone are refused; an ensemble joins
    with all its heads; the result loads, trains on and says on its card what it is made
    of."""
    ck = tmp_path / "ck.pt"
    fit(FitOptions(out=str(tmp_path / "a" / "w.pt"), ckpt=str(ck), steps=1, refine_steps=1, **TINY))
    for name, seed in (("b", 1), ("c", 2)):
        fit(FitOptions(out=str(tmp_path / name / "w.pt"), ckpt=str(tmp_path / f"{name}.ck"), seed=seed,
                       init_weights=str(tmp_path / "a" / "w.pt"), semantic_only=True, sem_attention=True,
                       steps=2, sem_batch=2, strides=[8], **TINY))
    fit(FitOptions(out=str(tmp_path / "d" / "w.pt"), ckpt=str(tmp_path / "d.ck"), seed=3, steps=1, refine_steps=1,
                   sem_attention=True, **TINY))                      # another backbone
    b, c, d = (str(tmp_path / n / "w.pt") for n in "bcd")
    out = tmp_path / "e" / "w.pt"
    assert main(["train", "ensemble", b, c, "--out", str(out)]) == 0
    pe, re_, _ = load_networks(out)
    pb, rb, _ = load_networks(b)
    pc, _, _ = load_networks(c)
    assert pe.arch()["sem_members"] == 1 and pb.arch()["sem_members"] == 0
    q = synthetic_sequences([1005], 1, 2, 64, 48, torch.device("cpu"))[0]
    mcfg = MappingConfig()
    with torch.no_grad():
        te, tb, tc = (p(q.rgb[0].float() / 255.0, q.depth[0], q.K, mcfg) for p in (pe, pb, pc))
    for f in ("means", "log_scales", "quats", "opacity_logits", "colors", "features"):
        assert torch.equal(getattr(te, f), getattr(tb, f)), f
    assert not torch.allclose(tb.sem_logits, tc.sem_logits)
    mean = (tb.sem_logits.log_softmax(-1) + tc.sem_logits.log_softmax(-1)) / 2
    assert torch.allclose(te.sem_logits, mean, atol=1e-5)
    assert all(torch.equal(u, v) for u, v in zip(re_.state_dict().values(), rb.state_dict().values()))
    card = (out.parent / "MODEL_CARD.md").read_text()
    assert "mean log-probability of 2 heads" in card and f"`{c}`" in card
    capsys.readouterr()
    assert main(["train", "ensemble", b, d, "--out", str(tmp_path / "x" / "w.pt")]) == 2
    assert "outside the semantic head" in capsys.readouterr().err
    assert not (tmp_path / "x" / "w.pt").exists()
    # An ensemble as an input gives all its heads: three heads, the mean of three.
    three = tmp_path / "g" / "w.pt"
    assert main(["train", "ensemble", str(out), c, "--out", str(three)]) == 0
    assert "3 semantic heads" in capsys.readouterr().out
    pg, _, _ = load_networks(three)
    assert pg.arch()["sem_members"] == 2
    with torch.no_grad():
        tg = pg(q.rgb[0].float() / 255.0, q.depth[0], q.K, mcfg)
    mean3 = (2 * tb.sem_logits.log_softmax(-1) + 2 * tc.sem_logits.log_softmax(-1)
             - tb.sem_logits.log_softmax(-1)) / 3      # heads b, c, c
    assert torch.allclose(tg.sem_logits, mean3, atol=1e-5) and torch.equal(tg.means, tb.means)
    card3 = (three.parent / "MODEL_CARD.md").read_text()
    assert "mean log-probability of 3 heads" in card3 and f"`{out}`" in card3 and "an ensemble of:" in card3
    # A semantic-only chunk from the ensemble trains every head and keeps the card's account.
    s = fit(FitOptions(out=str(tmp_path / "f" / "w.pt"), ckpt=str(tmp_path / "f.ck"), init_weights=str(out),
                       semantic_only=True, steps=1, sem_batch=2, strides=[8], **TINY))
    pf, _, _ = load_networks(tmp_path / "f" / "w.pt")
    assert pf.arch()["sem_members"] == 1 and s["ensemble"]["members"][1]["file"] == c
    assert not torch.equal(pf.sem_members[0].sem_head[0].weight, pe.sem_members[0].sem_head[0].weight)
    assert "mean log-probability of 2 heads" in (tmp_path / "f" / "MODEL_CARD.md").read_text()


def test_sem_fresh_trains_a_new_head_on_the_files_backbone(tmp_path):
    """--sem-fresh keeps the file's backbone and drops its semantic head (its branches and
    an ensemble's other heads too): the new head is the stage's own, not the file's."""
    fit(FitOptions(out=str(tmp_path / "a.pt"), ckpt=str(tmp_path / "ck.pt"), steps=1, refine_steps=1, **TINY))
    fit(FitOptions(out=str(tmp_path / "b.pt"), ckpt=str(tmp_path / "ck.pt"), resume=True, semantic_only=True,
                   sem_context=True, steps=2, sem_batch=2, strides=[8], **TINY))
    pb, _, _ = load_networks(tmp_path / "b.pt")
    fit(FitOptions(out=str(tmp_path / "c.pt"), ckpt=str(tmp_path / "ck2.pt"), init_weights=str(tmp_path / "b.pt"),
                   semantic_only=True, sem_fresh=True, sem_geometry=True, steps=1, sem_batch=2, strides=[8], **TINY))
    pc, _, _ = load_networks(tmp_path / "c.pt")
    assert pc.sem_context is None and pc.sem_geometry is not None      # only the branches this stage names
    assert all(torch.equal(u, v) for u, v in zip(pb.backbone.state_dict().values(), pc.backbone.state_dict().values()))
    # A new head, not the file's moved by one step (an AdamW step moves a weight by about lr = 1e-3).
    assert (pc.sem_head[0].weight - pb.sem_head[0].weight).abs().max() > 0.02
    with pytest.raises(ValueError, match="--sem-fresh"):
        fit(FitOptions(out=str(tmp_path / "d.pt"), ckpt=str(tmp_path / "ck3.pt"), init_weights=str(tmp_path / "b.pt"),
                       sem_fresh=True, steps=1, **TINY))
    # From an ensemble (two heads): one new head, and the card no longer tells of the ensemble.
    fit(FitOptions(out=str(tmp_path / "b2.pt"), ckpt=str(tmp_path / "ck.pt"), resume=True, semantic_only=True,
                   steps=1, sem_batch=2, strides=[8], **TINY))
    ens = tmp_path / "e" / "w.pt"
    assert main(["train", "ensemble", str(tmp_path / "b.pt"), str(tmp_path / "b2.pt"), "--out", str(ens)]) == 0
    assert load_networks(ens)[0].arch()["sem_members"] == 1
    s = fit(FitOptions(out=str(tmp_path / "f" / "w.pt"), ckpt=str(tmp_path / "ck4.pt"), init_weights=str(ens),
                       semantic_only=True, sem_fresh=True, steps=1, sem_batch=2, strides=[8], **TINY))
    pf, _, _ = load_networks(tmp_path / "f" / "w.pt")
    assert pf.sem_members is None and pf.sem_geometry is None and "ensemble" not in s
    assert "heads on one backbone" not in (tmp_path / "f" / "MODEL_CARD.md").read_text()
