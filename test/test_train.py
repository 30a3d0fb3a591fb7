"""Training scripts (gs4_ros/train) on the CPU with tiny settings: the losses go down on a
fixed batch, a two-step chunk writes finite weights that load back into the pipeline plus
its JSON and model card, --resume continues the counters, and the ablation command prints
its table. No timing is asserted."""
import json
import math

import numpy as np
import torch

from gs4_ros.cli.main import build_parser, main
from gs4_ros.core.config import MappingConfig
from gs4_ros.core.nets import GaussianPredictor, GaussianRefiner, load_networks
from gs4_ros.core.render import make_rasterizer
from gs4_ros.train.ablation import table
from gs4_ros.train.data import Sampler, covisible_mask, synthetic_sequences
from gs4_ros.train.fit import FitOptions, fit, predictor_step, refiner_clip
from gs4_ros.train.losses import LossWeights

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
    assert "1000" not in " ".join(x for x in s2["training_sequences"] if x.endswith(":1100"))
    assert "synthetic:1100" in s2["training_sequences"]     # a resumed chunk makes new rooms


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
                                                           "+optimisation", "+pruning"]
    rows = json.loads(js.read_text())
    assert all(r["num_gaussians"] > 0 and np.isfinite(r["psnr"]) for r in rows)
    # The optimisation rows ran one joint step per keyframe; the rows before had no back-end.
    assert [r.get("joint_optimizations", 0) > 0 for r in rows] == [False, False, False, True, True]
    assert "| synthetic:900 | +refinement |" in card.read_text()
    assert table(rows).count("\n") == 6
    # Training seeds are refused for evaluation.
    assert main(["train", "eval", "--weights", str(out), "--seeds", "1000", "--device", "cpu"]) == 2


def test_train_subcommand_is_registered():
    p = build_parser()
    a = p.parse_args(["train", "fit", "--minutes", "7", "--resume", "--clip-lengths", "2,4"])
    assert a.minutes == 7 and a.resume and a.func.__name__ == "cmd_fit"
    assert p.parse_args(["train", "eval"]).func.__name__ == "cmd_eval"
