"""benchmarks/pin_steps.py: a recipe copy whose network stages run the step counts a
finished run recorded, so a rerun trains exactly as much as the shipped file did."""
import json
import shlex
from pathlib import Path

import pytest
import yaml

from gs4_ros.cli.main import build_parser
from gs4_ros.train.recipe import DEFAULT_RECIPE, load_recipe, stage_argv
from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
pin_steps = load_script("benchmarks/pin_steps.py")


def _record(stages, counts):
    """A weights record as `gs4 train fit` writes it: one chunk per fit stage, its command
    with the machine's own paths (which must not matter)."""
    chunks = []
    for i, (st, (p, s, r)) in enumerate(zip([s for s in stages if s.args[0] == "fit"], counts)):
        argv = stage_argv(st, Path(f"/elsewhere/{i}"), "cuda", "/tmp/7s")
        chunks.append({"chunk": i, "command": "gs4 " + shlex.join(argv), "predictor_steps": p,
                       "semantic_steps": s, "refiner_clips": r})
    return {"chunks": chunks}


def test_stages_get_the_recorded_counts(tmp_path):
    stages = load_recipe(DEFAULT_RECIPE)
    counts = [(100 + i, 0, 50 + i) for i in range(4)] + [(0, 777, 0), (0, 0, 33)]
    rec = tmp_path / "rec.json"
    rec.write_text(json.dumps(_record(stages, counts)))
    out = tmp_path / "pinned.yaml"
    pin_steps.main([str(DEFAULT_RECIPE), str(rec), str(out)])
    pinned = {s.name: s for s in load_recipe(out)}
    parser = build_parser()
    got = []
    for st in load_recipe(DEFAULT_RECIPE):
        args = parser.parse_args(stage_argv(pinned[st.name], "RUN", "cuda", "/r"))
        if st.args[0] == "fit":
            got.append((args.steps, args.refine_steps))
        else:   # the segmenter stage keeps its own arguments
            assert pinned[st.name].args == st.args
    assert got == [(100, 50), (101, 51), (102, 52), (103, 53), (777, 0), (0, 33)]


def test_a_record_of_other_options_is_refused(tmp_path):
    stages = load_recipe(DEFAULT_RECIPE)
    rec = _record(stages, [(1, 0, 1)] * 6)
    rec["chunks"][2]["command"] = rec["chunks"][2]["command"].replace("--step 5", "--step 7")
    with pytest.raises(ValueError, match="blend.*--step"):
        pin_steps.pin(load_recipe(DEFAULT_RECIPE), rec)
    with pytest.raises(ValueError, match="6 fit stages but 5 chunks"):
        pin_steps.pin(load_recipe(DEFAULT_RECIPE), {"chunks": rec["chunks"][:5]})


def test_committed_pinned_recipe_is_what_the_script_writes(tmp_path):
    """pinned41.yaml (t41a.sh's recipe) is the shipped record's counts on today's recipe:
    a change to either shows here, not as a run folder that refuses to continue."""
    out = tmp_path / "p.yaml"
    pin_steps.main([str(DEFAULT_RECIPE), str(ROOT / "gs4_ros/weights/gs4_nets.json"), str(out)])
    committed = yaml.safe_load((ROOT / "benchmarks/device_calls/pinned41.yaml").read_text())
    assert yaml.safe_load(out.read_text()) == committed
