"""Write a copy of a training recipe whose network stages run the step counts a finished
run recorded, instead of filling their time boxes.

Why: the recipe's stages stop on the clock, so how much a stage trains depends on the
machine (gsplat compiling inside the first stage, data made more slowly): the shipped run's
first stage made 1066 predictor steps and the fresh run's 1860 in the same 7.3 minutes.
Pinning the counts to the shipped file's record (its gs4_nets.json "chunks") makes a rerun
train exactly as much as the shipped file did, so what is left between them is the
run-to-run noise the issue asks about.

Usage: pin_steps.py RECIPE_IN WEIGHTS_JSON RECIPE_OUT
The i-th `fit` stage is paired with the i-th chunk of the record; their options, paths
aside, must agree, or nothing is written.
"""
import json
import shlex
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gs4_ros.train.recipe import load_recipe, stage_argv  # noqa: E402

PATH_FLAGS = ("--init-weights", "--ckpt", "--out", "--real", "--device")


def _options(tokens):
    """flag -> value (None for a switch), paths dropped, numbers compared as numbers."""
    out, i = {}, 0
    while i < len(tokens):
        t = tokens[i]
        val = tokens[i + 1] if i + 1 < len(tokens) and not tokens[i + 1].startswith("--") else None
        i += 2 if val is not None else 1
        if t in PATH_FLAGS:
            continue
        try:
            val = float(val) if val is not None else None
        except ValueError:
            pass
        out[t] = val
    return out


def pin(stages, record):
    """The stages with --steps / --refine-steps from the record's chunks (fit stages only)."""
    fits = [s for s in stages if s.args[0] == "fit"]
    chunks = record["chunks"]
    if len(fits) != len(chunks):
        raise ValueError(f"{len(fits)} fit stages but {len(chunks)} chunks in the record")
    for stage, chunk in zip(fits, chunks):
        if "--steps" in stage.args or "--refine-steps" in stage.args:
            raise ValueError(f"stage {stage.name} already sets its steps")
        mine = _options(stage_argv(stage, Path("/run"), "cuda", "/real")[2:])
        ran = _options(shlex.split(chunk["command"])[3:])
        if mine != ran:
            diff = sorted(k for k in set(mine) | set(ran) if mine.get(k, "-") != ran.get(k, "-"))
            raise ValueError(f"stage {stage.name} does not match chunk {chunk['chunk']}: {diff}")
        steps = chunk["semantic_steps"] if "--semantic-only" in stage.args else chunk["predictor_steps"]
        if steps:
            stage.args += ["--steps", str(steps)]
        if chunk["refiner_clips"]:
            stage.args += ["--refine-steps", str(chunk["refiner_clips"])]
    return stages


def main(argv):
    if len(argv) != 3:
        raise SystemExit(__doc__)
    src, rec, dst = argv
    stages = pin(load_recipe(src), json.loads(Path(rec).read_text()))
    head = (f"# {Path(src).name} with each network stage pinned to the steps recorded in {rec}\n"
            f"# (benchmarks/pin_steps.py); written, not edited by hand.\n")
    body = yaml.safe_dump({"stages": [dict({"name": s.name}, **({"minutes": s.plan} if s.plan else {}), args=s.args)
                                      for s in stages]},
                          sort_keys=False, width=120, default_flow_style=None)
    Path(dst).write_text(head + body)
    for s in stages:
        pinned = [f"{k} {v}" for k, v in zip(s.args, s.args[1:]) if k in ("--steps", "--refine-steps")]
        print(f"{s.name}: {' '.join(pinned) or 'not pinned'}")


if __name__ == "__main__":
    main(sys.argv[1:])
