"""`gs4 train recipe` (train/recipe): a chain of training chunks that continues across
calls, on the CPU with a tiny recipe; the shipped recipe's stages parse as commands."""
import json
import shlex
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from gs4_ros.cli.main import build_parser, main
from gs4_ros.core.nets import load_networks
from gs4_ros.core.nets.segmenter import load_segmenter
from gs4_ros.io.synthetic.seeds import seed_list
from gs4_ros.train.recipe import DEFAULT_RECIPE, MARGIN_MIN, STATE, Stage, load_recipe, run_recipe, stage_argv

TINY_FIT = ["--device", "{device}", "--refine-steps", "1", "--width", "64", "--height", "48", "--seeds", "2",
            "--frames", "3", "--step", "3", "--batch", "1", "--clip-lengths", "2", "--workers", "0",
            "--data-minutes", "1"]


def _tiny_recipe(path, first_steps=1):
    """Two fit stages (the second from the first's weights) and a segmenter stage, each a
    step or two on 64x48 / 96x64 rooms."""
    stages = [
        {"name": "first", "args": ["fit", "--steps", str(first_steps), "--minutes", "2"] + TINY_FIT
         + ["--real", "{real}", "--ckpt", "{dir}/first/ck.pt", "--out", "{dir}/first/n.pt"]},
        {"name": "second", "args": ["fit", "--steps", "1", "--minutes", "3", "--init-weights", "{dir}/first/n.pt"]
         + TINY_FIT
         + ["--ckpt", "{dir}/second/ck.pt", "--out", "{dir}/second/n.pt"]},
        {"name": "cal", "minutes": 1, "args": ["calibrate", "--weights", "{dir}/second/n.pt", "--out", "{dir}/cal/n.pt",
                                               "--device", "{device}", "--seeds", "960", "--factors", "1,0.5",
                                               "--frames", "11", "--width", "64", "--height", "48",
                                               "--workdir", "{dir}/cal/work"]},
        {"name": "seg", "args": ["segmenter", "--device", "{device}", "--steps", "2", "--minutes", "2", "--seeds", "2",
                                 "--min-rooms", "2", "--first-seed", "1000", "--frames", "2", "--step", "3",
                                 "--width", "96", "--height", "64", "--batch", "2", "--workers", "0",
                                 "--widths", "8,16,16,24,32", "--decoder", "16", "--out", "{dir}/seg/s.pt"]},
    ]
    path.write_text(yaml.safe_dump({"stages": stages}))
    return path


def test_shipped_recipe_stages_are_valid_commands():
    """Every stage of gs4_ros/train/recipe.yaml parses as a `gs4 train` command, and each
    fit stage after the first starts from the stage before it."""
    stages = load_recipe(DEFAULT_RECIPE)
    parser = build_parser()
    outs = []
    for st in stages:
        argv = stage_argv(st, "RUN", "cuda", "/data/7s")
        args = parser.parse_args(argv)
        assert args.device == "cuda" and st.minutes() > 0
        if st.args[0] == "fit":
            if outs:
                assert args.init_weights == outs[-1]
            outs.append(args.out)
        if st.args[0] == "calibrate":   # the last network stage's file, on validation rooms only
            assert args.weights == outs[-1] and all(960 <= s < 1000 for s in seed_list(args.seeds))
    assert len(outs) >= 2 and stages[-1].args[0] == "segmenter"
    assert [st.args[0] for st in stages][-2:] == ["calibrate", "segmenter"]
    # All the chunks of the chain fit in under an hour of one GPU (what issue 3 asks).
    assert sum(st.minutes() for st in stages) < 55
    # Each stage fits a 10-minute device call with its margin (the segmenter's 8.9 minutes
    # ran as a 555 s call); the network stages train while their rooms are made, and the
    # whole chain with its margins takes at most two sessions' device time (2 x 30
    # minutes, less each session's machine start, about 5, and evaluation, about 2): the
    # run folder carries it.
    assert all(st.minutes() + MARGIN_MIN <= 9.5 for st in stages)
    nets = [st for st in stages if st.args[0] == "fit"]
    assert all("--stream-data" in st.args for st in nets)
    assert sum(st.minutes() + MARGIN_MIN for st in stages) <= 46


def test_stage_arguments_fill_placeholders_and_scale_time():
    st = Stage("a", ["fit", "--minutes", "8", "--data-minutes", "2", "--real", "{real}", "--out", "{dir}/a.pt"])
    assert stage_argv(st, "R", "cpu", "") == ["train", "fit", "--minutes", "8", "--data-minutes", "2", "--out", "R/a.pt"]
    assert stage_argv(st, "R", "cpu", "/7s", time_scale=0.25)[2:7] == ["--minutes", "2", "--data-minutes", "0.5",
                                                                         "--real"]
    with pytest.raises(ValueError, match="unknown placeholder"):
        stage_argv(Stage("b", ["fit", "--out", "{where}/x.pt"]), "R", "cpu", "")


def test_recipe_refuses_bad_files(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("stages: []\n")
    with pytest.raises(ValueError, match="no stages"):
        load_recipe(p)
    p.write_text("stages:\n  - {name: a, args: [fit]}\n  - {name: a, args: [fit]}\n")
    with pytest.raises(ValueError, match="repeat"):
        load_recipe(p)
    p.write_text("stages:\n  - {name: a, args: [run, --out, x]}\n")
    with pytest.raises(ValueError, match="must start with"):
        load_recipe(p)


def test_recipe_runs_in_calls_and_chains_the_weights(tmp_path, capsys):
    """A budget that fits the first stage's time box (2 + 0.5 min) but not also the
    second's (3 + 0.5) runs one stage and says which is next; the next call goes
    on from there (the second fit starts from the first's weights: its history has both
    chunks), the last call finishes with the segmenter; a recipe whose done stage changed
    is refused rather than mixed into the run folder."""
    recipe = _tiny_recipe(tmp_path / "recipe.yaml")
    run = tmp_path / "run"
    stages = load_recipe(recipe)
    calls = []

    def runner(argv):
        calls.append(argv[1])
        return main(argv)
    s1 = run_recipe(run, stages, "cpu", budget_minutes=3.0, runner=runner)
    assert [d["name"] for d in s1["stages"]] == ["first"] and s1["next"] == "second"
    assert "--real" not in s1["stages"][0]["argv"]          # no real folder given: the pair is dropped
    rc = main(["train", "recipe", "--dir", str(run), "--recipe", str(recipe), "--device", "cpu"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "recipe: 4 of 4 stages done" in out and "finished" in out
    assert "segmenter: 2 steps on 4 frames of 2 rooms" in out and " -> " in out
    state = json.loads((run / STATE).read_text())
    assert [d["name"] for d in state["stages"]] == ["first", "second", "cal", "seg"]
    # The calibration stage wrote the second stage's networks with its factor on the scales.
    cal = json.loads((run / "cal" / "n.json").read_text())["scale_calibration"]
    assert cal["factor"] in (1.0, 0.5) and set(cal["grid"]) == {"1", "0.5"} and len(cal["seeds"]) == 1
    hist = json.loads((run / "second" / "n.json").read_text())
    assert len(hist["chunks"]) == 2
    # Each chunk records the stage command that ran it (not the recipe call), so the card
    # describes each chunk by its own options.
    assert [c["command"] for c in hist["chunks"]] == ["gs4 " + shlex.join(d["argv"]) for d in state["stages"][:2]]
    card = (run / "second" / "MODEL_CARD.md").read_text()
    assert "`gs4 train fit --steps 1 --minutes 2 " in card and "gs4 train recipe" not in card
    predictor, refiner, _ = load_networks(run / "second" / "n.pt", "cpu")
    assert isinstance(predictor, torch.nn.Module) and isinstance(refiner, torch.nn.Module)
    model, _ = load_segmenter(run / "seg" / "s.pt")
    assert isinstance(model, torch.nn.Module)
    # Nothing left: a further call runs nothing.
    before = len(calls)
    assert run_recipe(run, stages, "cpu", runner=runner)["next"] is None and len(calls) == before
    _tiny_recipe(recipe, first_steps=2)
    with pytest.raises(ValueError, match="stage first ran as"):
        run_recipe(run, load_recipe(recipe), "cpu", runner=runner)
    # --list shows the stages as done, and who ran a stage put into the folder by hand
    # (a device script that ran the stage's arguments itself records "ran_by").
    state["stages"][3]["ran_by"] = "a device script"
    (run / STATE).write_text(json.dumps(state))
    assert main(["train", "recipe", "--dir", str(run), "--recipe", str(recipe), "--list"]) == 0
    listing = capsys.readouterr().out
    assert listing.count("done in") == 3 and listing.startswith("first        ran otherwise")
    assert listing.count("ran by") == 1 and "ran by a device script: gs4 train segmenter" in listing


def test_a_failing_stage_stops_the_recipe(tmp_path):
    recipe = _tiny_recipe(tmp_path / "recipe.yaml")
    with pytest.raises(RuntimeError, match="recipe stage first failed"):
        run_recipe(tmp_path / "run", load_recipe(recipe), "cpu", runner=lambda argv: 1)
    state = json.loads((tmp_path / "run" / STATE).read_text())
    assert state["stages"] == [] and state["failed"] == "first"


def _committed_run_folders():
    return sorted(p.parent for p in (Path(__file__).resolve().parents[1] / "benchmarks" / "device_calls")
                  .glob("*/" + STATE))


@pytest.mark.parametrize("folder", _committed_run_folders(), ids=lambda p: p.name)
def test_committed_run_folder_continues_under_the_shipped_recipe(folder, tmp_path):
    """A run folder kept in the tree for the next session (benchmarks/device_calls/fresh39)
    is only useful while recipe.yaml still gives its done stages the arguments they ran
    with, and while its newest stage's weights load: an edit to either stage would make
    `gs4 train recipe` refuse the folder on the GPU machine, after the machine started."""
    run = tmp_path / folder.name
    shutil.copytree(folder, run)
    ran = []
    stages = load_recipe()
    state = run_recipe(run, stages, device="cpu", budget_minutes=0.01, runner=lambda argv: ran.append(argv) or 0)
    assert ran == []                      # nothing started: the next stage needs more than the budget
    done = [d["name"] for d in state["stages"]]
    names = [s.name for s in stages]
    assert done == names[:len(done)] and state["next"] == names[len(done)]
    load_networks(run / done[-1] / "gs4_nets.pt", device="cpu")
