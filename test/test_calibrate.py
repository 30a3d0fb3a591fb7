"""`gs4 train calibrate` (train/calibrate): one factor on every predicted scale, chosen by
mapping validation rooms and folded into the Gaussian head's bias."""
import json
import math

import pytest
import torch

from gs4_ros.core.config import MappingConfig
from gs4_ros.core.nets import load_networks
from gs4_ros.core.nets.predictor import LOG_SCALE_MAX, LOG_SCALE_MIN
from gs4_ros.core.nets.weights import DEFAULT_WEIGHTS
from gs4_ros.train.calibrate import calibrate, choose, write_scaled
from gs4_ros.train.data import synthetic_sequences


def _predict(path, seq):
    pred, _, _ = load_networks(path)
    with torch.no_grad():
        return pred(seq.rgb[:1].float() / 255, seq.depth[:1], seq.K, MappingConfig())


def test_the_factor_is_exact_in_the_weights(tmp_path):
    """Every predicted scale of the written file is the factor times the source file's
    (short of the clamp); nothing else the predictor outputs moves."""
    seq = synthetic_sequences([961], 1, 5, 128, 96, "cpu", workers=0, targets=False)[0]
    out = write_scaled(DEFAULT_WEIGHTS, tmp_path / "s.pt", 0.8, {"factor": 0.8})
    a, b = _predict(DEFAULT_WEIGHTS, seq), _predict(out, seq)
    inside = (a.log_scales + math.log(0.8) > LOG_SCALE_MIN + 1e-4) & (a.log_scales < LOG_SCALE_MAX)
    assert inside.float().mean() > 0.9
    torch.testing.assert_close(b.log_scales[inside], a.log_scales[inside] + math.log(0.8), atol=1e-5, rtol=0)
    assert not torch.allclose(a.log_scales, b.log_scales)
    for f in ("means", "quats", "opacity_logits", "colors", "features", "sem_logits"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    # The record travels in the file and beside it; the training history stays.
    _, _, info = load_networks(out)
    summary = json.loads(info["meta"]["summary"])
    assert summary["scale_calibration"]["factor"] == 0.8 and summary["chunks"]
    assert json.loads(out.with_suffix(".json").read_text()) == summary


def test_choose_takes_the_best_psnr_and_then_the_lower_depth():
    s = lambda psnr, depth: {"heldout_psnr": psnr, "heldout_depth_l1_cm": depth}   # noqa: E731
    # The rooms of the forty-first session: 0.94 has the best PSNR; 0.82 the least depth error.
    grid = {1.0: s(27.447, 2.723), 0.94: s(27.536, 2.548), 0.88: s(27.511, 2.395), 0.82: s(27.465, 2.259)}
    assert choose(grid) == 0.94
    assert choose({1.0: s(25.0, 3.0), 0.9: s(25.003, 2.5)}) == 0.9   # a PSNR tie: the lower depth
    assert choose({1.0: s(25.0, 3.0), 0.9: s(24.9, 2.0)}) == 1.0
    with pytest.raises(ValueError, match="1.0"):
        choose({0.9: s(25.0, 2.0)})
    with pytest.raises(ValueError, match="held-out"):   # too few frames to hold any out
        choose({1.0: s(float("nan"), float("nan")), 0.9: s(float("nan"), float("nan"))})


def test_calibrate_scores_the_grid_on_validation_rooms_only(tmp_path):
    with pytest.raises(ValueError, match="not validation rooms"):
        calibrate(DEFAULT_WEIGHTS, tmp_path / "c.pt", [900], [0.9], frames=3, device="cpu")
    work = tmp_path / "work"
    rec = calibrate(DEFAULT_WEIGHTS, tmp_path / "c.pt", [960], [0.5], frames=12, device="cpu", workdir=work,
                    width=96, height=72, command="test")
    assert set(rec["grid"]) == {"1", "0.5"} and rec["factor"] in (1.0, 0.5)
    assert all(g["rooms"] == 1 and math.isfinite(g["heldout_psnr"]) for g in rec["grid"].values())
    # Halving every Gaussian changes what the map renders.
    assert rec["grid"]["1"]["heldout_depth_l1_cm"] != rec["grid"]["0.5"]["heldout_depth_l1_cm"]
    _, _, info = load_networks(tmp_path / "c.pt")
    assert json.loads(info["meta"]["summary"])["scale_calibration"]["factor"] == rec["factor"]
    # A second call reuses each factor's rows instead of mapping the rooms again.
    stamps = {p.name: p.stat().st_mtime_ns for p in work.glob("rows_*.json")}
    assert len(stamps) == 2
    rec2 = calibrate(DEFAULT_WEIGHTS, tmp_path / "c2.pt", [960], [0.5], frames=12, device="cpu", workdir=work,
                     width=96, height=72)
    assert {p.name: p.stat().st_mtime_ns for p in work.glob("rows_*.json")} == stamps
    assert rec2["grid"] == rec["grid"]


def test_cli_writes_one_given_factor(tmp_path):
    from gs4_ros.cli.main import main

    out = tmp_path / "x.pt"
    assert main(["train", "calibrate", "--factor", "0.9", "--out", str(out)]) == 0
    rec = json.loads(out.with_suffix(".json").read_text())["scale_calibration"]
    assert rec["factor"] == 0.9 and "--factor 0.9" in rec["command"]
    # As `fit` does, the command leaves a model card beside the file it writes.
    assert "every predicted Gaussian scale x0.9 " in (tmp_path / "MODEL_CARD.md").read_text()
    a, b = (torch.load(p, weights_only=True)["predictor"]["gauss_head.2.bias"] for p in (DEFAULT_WEIGHTS, out))
    torch.testing.assert_close(b[6:9] - a[6:9], torch.full((3,), math.log(0.9)))
    assert torch.equal(a[:6], b[:6]) and torch.equal(a[9:], b[9:])


def test_the_model_card_says_how_the_file_was_calibrated(tmp_path):
    from gs4_ros.train.card import write_card

    out = tmp_path / "c.pt"
    grid = {"1": {"heldout_psnr": 25.0, "heldout_depth_l1_cm": 3.0, "miou": 0.7, "num_gaussians": 5000,
                  "ate_rmse_cm": 0.2},
            "0.9": {"heldout_psnr": 25.1, "heldout_depth_l1_cm": 2.8, "miou": 0.7, "num_gaussians": 5100,
                    "ate_rmse_cm": 0.2}}
    write_scaled(DEFAULT_WEIGHTS, out, 0.9, {"factor": 0.9, "command": "gs4 train calibrate --seeds 960-961",
                                              "rule": "lowest depth", "variant": "+pruning", "seeds": [960, 961],
                                              "frames": 40, "device": "cpu", "grid": grid})
    card = tmp_path / "MODEL_CARD.md"
    write_card(card, json.loads(out.with_suffix(".json").read_text()), out)
    txt = card.read_text()
    assert "every predicted Gaussian scale x0.9" in txt and "`gs4 train calibrate --seeds 960-961`" in txt
    assert "validation rooms 960-961" in txt and "x0.9: held-out PSNR 25.100 dB, depth L1 2.800 cm" in txt
    # The training history is still there: the card lists the shipped file's chunks.
    assert "| 5 | 120 | 0 | 0 | 199 |" in txt


def test_undo_gives_back_the_parent(tmp_path):
    """A calibrated file without its factor is its parent again (to float precision),
    with the parent's record: a later calibration starts from it, not from a second
    copy of the networks kept in the tree."""
    from gs4_ros.cli.main import main

    from gs4_ros.core.nets import GaussianPredictor, GaussianRefiner, save_networks

    base, a, b, c = tmp_path / "base.pt", tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt"
    torch.manual_seed(0)
    save_networks(base, GaussianPredictor(width=32, feature_dim=8), GaussianRefiner(feature_dim=8, hidden=32),
                  [f"c{i}" for i in range(20)], meta={"summary": json.dumps({"chunks": []})})
    write_scaled(base, a, 0.9, {"factor": 0.9})
    write_scaled(a, b, 0.8, {"factor": 0.8})
    assert main(["train", "calibrate", "--undo", "--weights", str(b), "--out", str(c)]) == 0
    pa, pc = (torch.load(p, weights_only=True) for p in (a, c))
    for k, v in pa["predictor"].items():
        torch.testing.assert_close(pc["predictor"][k], v, atol=1e-6, rtol=0)
    assert json.loads(c.with_suffix(".json").read_text())["scale_calibration"] == {"factor": 0.9}
    assert main(["train", "calibrate", "--undo", "--weights", str(c), "--out", str(tmp_path / "d.pt")]) == 0
    assert json.loads((tmp_path / "d.json").read_text()) == {"chunks": []}
    assert main(["train", "calibrate", "--undo", "--weights", str(tmp_path / "d.pt"), "--out", str(a)]) == 2


def test_rows_of_a_replaced_file_are_not_reused(tmp_path):
    """The cache is keyed by the file's bytes: another file at the same path maps again."""
    w, work = tmp_path / "w.pt", tmp_path / "work"
    write_scaled(DEFAULT_WEIGHTS, w, 1.0)
    calibrate(w, tmp_path / "c.pt", [960], [1.0], frames=11, device="cpu", workdir=work, width=64, height=48,
              score_only=True)
    before = (work / "rows_1.0000.json").stat().st_mtime_ns
    write_scaled(DEFAULT_WEIGHTS, w, 0.7)
    calibrate(w, tmp_path / "c.pt", [960], [1.0], frames=11, device="cpu", workdir=work, width=64, height=48,
              score_only=True)
    assert (work / "rows_1.0000.json").stat().st_mtime_ns != before


def test_the_grid_goes_on_past_its_edge_while_the_best_sits_there():
    from gs4_ros.train.calibrate import extend_grid

    def s(f):   # held-out PSNR peaks at x0.7, depth falls with the width
        return {"heldout_psnr": 27.0 - 10 * (f - 0.7) ** 2, "heldout_depth_l1_cm": 2.0 * f}

    asked = []

    def score(f):
        asked.append(f)
        return s(f)

    scores = {f: s(f) for f in (1.0, 0.94, 0.88, 0.82)}
    assert extend_grid(scores, score, extend=3) == 0.712 and asked == [0.7641, 0.712, 0.6635]
    asked.clear()
    scores = {f: s(f) for f in (1.0, 0.94, 0.88, 0.82)}
    assert extend_grid(scores, score, extend=1) == 0.7641 and asked == [0.7641]   # capped
    asked.clear()
    inner = {f: {"heldout_psnr": -abs(f - 0.94), "heldout_depth_l1_cm": f} for f in (1.0, 0.94, 0.88)}
    assert extend_grid(inner, score) == 0.94 and asked == []                        # best inside: no more
