"""Replay a training recipe: the `gs4 train` chunks that make a set of weights, run in
order, with a state file in the run folder so a recipe longer than one GPU session (or
one 10-minute device call) continues where the last call stopped.

Stages hand over through weights files (`--init-weights` of the previous stage's
output), not optimiser checkpoints: a weights file is a few MB (3-12 here) and travels between
machines, a checkpoint with its Adam moments is several times that.
"""
from __future__ import annotations

import json
import logging
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

log = logging.getLogger(__name__)

DEFAULT_RECIPE = Path(__file__).resolve().parent / "recipe.yaml"
STATE = "recipe_state.json"
MARGIN_MIN = 0.5        # a stage's wall time past its --minutes (loading, the final save, validation)


@dataclass
class Stage:
    name: str
    args: List[str]     # `gs4 train` arguments with {dir}, {device}, {real} placeholders
    plan: float = 0.0   # the recipe's `minutes:` for a stage without a time box (calibrate)

    def minutes(self) -> float:
        """The stage's time box (its --minutes), else the recipe's planning figure (0 for
        an ensemble)."""
        return float(self.args[self.args.index("--minutes") + 1]) if "--minutes" in self.args else self.plan


def load_recipe(path=DEFAULT_RECIPE) -> List[Stage]:
    import yaml

    doc = yaml.safe_load(Path(path).read_text())
    stages = [Stage(str(s["name"]), [str(a) for a in s["args"]], float(s.get("minutes", 0.0)))
              for s in (doc or {}).get("stages", [])]
    if not stages:
        raise ValueError(f"{path}: no stages")
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: stage names repeat: {names}")
    for s in stages:
        if not s.args or s.args[0] not in ("fit", "segmenter", "ensemble", "calibrate"):
            raise ValueError(f"{path}: stage {s.name} must start with fit, segmenter, ensemble or calibrate, "
                             f"got {s.args[:1]}")
    return stages


def stage_argv(stage: Stage, run_dir: Path, device: str, real: str, time_scale: float = 1.0) -> List[str]:
    """The stage's `gs4 train` argv with the placeholders filled in; time_scale shrinks
    the time boxes (--minutes, --data-minutes) for a quick trial of the whole chain. A
    --real pair is dropped when no real folder is given."""
    subs = {"dir": str(run_dir), "device": device, "real": real}
    out, args = [], list(stage.args)
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--real" and i + 1 < len(args) and args[i + 1] == "{real}" and not real:
            i += 2
            continue
        try:
            a = a.format(**subs)
        except KeyError as e:
            raise ValueError(f"stage {stage.name}: unknown placeholder {e} in {a!r}") from None
        if out and out[-1] in ("--minutes", "--data-minutes") and time_scale != 1.0:
            a = f"{float(a) * time_scale:g}"
        out.append(a)
        i += 1
    return ["train"] + out


def read_state(run_dir) -> dict:
    """The run folder's recipe_state.json ({"stages": []} before the first stage)."""
    p = Path(run_dir) / STATE
    return json.loads(p.read_text()) if p.is_file() else {"stages": []}


def _write_state(run_dir: Path, state: dict):
    tmp = run_dir / (STATE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(run_dir / STATE)


def run_recipe(run_dir, stages: List[Stage], device: str = "cuda", real: str = "", budget_minutes: float = 0.0,
               time_scale: float = 1.0, runner: Optional[Callable[[List[str]], int]] = None) -> Dict:
    """Run the stages not yet done, in order, while the next one fits in budget_minutes
    (0: no limit). Returns the state ({"stages": [...done...], "next": name or None}); a
    stage that fails is named in the state file ("failed") and raises.
    A stage done under other arguments than the recipe now gives is refused: the run
    folder would mix two recipes."""
    if runner is None:
        from ..cli.main import main as runner
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = read_state(run_dir)
    done = {d["name"]: d for d in state["stages"]}
    t0 = time.perf_counter()
    state["next"] = None
    state.pop("failed", None)
    for stage in stages:
        argv = stage_argv(stage, run_dir, device, real, time_scale)
        if stage.name in done:
            if done[stage.name]["recipe_args"] != stage.args:
                raise ValueError(f"{run_dir}: stage {stage.name} ran as {done[stage.name]['recipe_args']}, the recipe "
                                 f"now says {stage.args}; use a new run folder")
            continue
        need = stage.minutes() * time_scale + MARGIN_MIN
        used = (time.perf_counter() - t0) / 60
        if budget_minutes > 0 and used + need > budget_minutes:
            state["next"] = stage.name
            log.info("recipe: stage %s needs ~%.1f min, %.1f of %.1f left; run again to continue",
                     stage.name, need, budget_minutes - used, budget_minutes)
            break
        log.info("recipe: stage %s: gs4 %s", stage.name, shlex.join(argv))
        s0 = time.perf_counter()
        rc = runner(argv)
        if rc != 0:
            state["failed"] = stage.name
            _write_state(run_dir, state)
            raise RuntimeError(f"recipe stage {stage.name} failed (exit {rc}): gs4 {shlex.join(argv)}")
        state["stages"].append({"name": stage.name, "recipe_args": stage.args, "argv": argv,
                                "seconds": round(time.perf_counter() - s0, 1), "device": device,
                                "time_scale": time_scale})
        _write_state(run_dir, state)
    _write_state(run_dir, state)
    return state
