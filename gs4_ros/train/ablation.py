"""Ablation table in the style of GS4's: geometric initialiser / prediction only /
+ refinement / + 1-iteration optimisation / + pruning (/ + the final semantic pass), on held-out synthetic seeds (below 1000, never used for training) and
optionally the 7-Scenes frames after those used for training. Each variant runs the whole
pipeline through eval/runner.run_frames and eval/runner.evaluate: every 5th frame is
evaluated, and every 10th frame is tracked but never mapped (held-out views)."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, List, Optional

from ..core.config import MappingConfig, NetworkConfig, PipelineConfig
from ..core.pipeline import SLAMPipeline, resolve_device
from ..eval.runner import evaluate, run_frames
from .fit import TRAIN_SEED_BASE

log = logging.getLogger(__name__)

COLUMNS = [("psnr", "PSNR", "{:.2f}"), ("ssim", "SSIM", "{:.3f}"), ("depth_l1_cm", "L1 cm", "{:.2f}"),
           ("heldout_psnr", "ho PSNR", "{:.2f}"), ("heldout_ssim", "ho SSIM", "{:.3f}"),
           ("heldout_depth_l1_cm", "ho L1 cm", "{:.2f}"), ("miou", "mIoU %", "{:.1f}"),
           ("num_gaussians", "#G", "{:d}"), ("fps", "FPS", "{:.1f}"), ("ate_rmse_cm", "ATE cm", "{:.2f}")]


def variants(weights: str) -> Dict[str, dict]:
    """GS4's ablation steps, each adding one stage to the previous. Pruning comes last, so
    the rows before it keep every Gaussian (prune_opacity 0); the optimisation row runs
    one joint Adam iteration on the newest keyframe after each keyframe is mapped
    (back-end on, loop closure off, so only that stage is added). The last row is a peer,
    not a step: the geometric initialiser with the same optimisation and pruning, so the
    table shows how much of the full path's gain the networks bring and how much the
    optimisation would bring without them. The end-of-run semantic pass (not a GS4 stage)
    is off in GS4's rows and added on top of the last as rows of its own: by GS4's
    semantic head ("+final semantics"), then by the keyframe segmenter alone ("+segmenter"),
    then by the segmenter with the head's evidence mixed in ("+segmenter+head", the
    pipeline's default); the last two are the head's pass where no segmenter file exists."""
    net = {"initializer": "network", "network.weights": weights, "mapping.prune_opacity": 0.0,
           "network.final_semantics": False}
    opt = dict(net, **{"network.refine": True, "backend.enabled": True, "backend.synchronous": True,
                       "backend.loop_closure": False, "backend.joint_on_keyframe": True,
                       "backend.joint_iterations": 1, "backend.joint_top_k": 1})
    return {"geometric": {"initializer": "geometric"},
            "prediction": dict(net, **{"network.refine": False}),
            "+refinement": dict(net, **{"network.refine": True}),
            "+optimisation": opt,
            "+pruning": dict(opt, **{"mapping.prune_opacity": MappingConfig().prune_opacity}),
            "+final semantics": dict(opt, **{"mapping.prune_opacity": MappingConfig().prune_opacity,
                                             "network.final_semantics": True,
                                             "network.final_semantics_model": "head"}),
            "+segmenter": dict(opt, **{"mapping.prune_opacity": MappingConfig().prune_opacity,
                                       "network.final_semantics": True,
                                       "network.final_semantics_model": "segmenter",
                                       "network.final_semantics_head_weight": 0.0}),
            "+segmenter+head": dict(opt, **{"mapping.prune_opacity": MappingConfig().prune_opacity,
                                            "network.final_semantics": True,
                                            "network.final_semantics_model": "segmenter",
                                            "network.final_semantics_head_weight":
                                                NetworkConfig().final_semantics_head_weight}),
            "geometric+opt": dict({k: v for k, v in opt.items() if not k.startswith("network.")},
                                  **{"initializer": "geometric",
                                     "mapping.prune_opacity": MappingConfig().prune_opacity})}


def run_source(name: str, frames: list, weights: str, device: str, only: Optional[List[str]] = None,
               overrides: Optional[dict] = None) -> List[dict]:
    rows = []
    for var, over in variants(weights).items():
        if only and var not in only:
            continue
        cfg = PipelineConfig()
        cfg.override(dict(overrides or {}))
        cfg.override(dict(over))
        cfg.device = device
        pipe = SLAMPipeline(cfg, device=device)
        if not var.startswith("geometric") and pipe.nets is None:
            raise FileNotFoundError(f"no network weights at {weights}")
        rec = run_frames(pipe, frames, eval_every=5, holdout_every=10)
        m = evaluate(pipe, rec)
        if "miou" in m and var.startswith("geometric"):
            m["note"] = "labels from the frames' label images"
        if pipe.backend is not None:
            m["joint_optimizations"] = pipe.backend.stats.joint_optimizations
        m.update(source=name, variant=var)
        rows.append(m)
        print("measured: " + table([m]).splitlines()[-1], flush=True)   # each row as soon as it is measured
    return rows


def table(rows: List[dict]) -> str:
    head = "| source | variant | " + " | ".join(c[1] for c in COLUMNS) + " |"
    out = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for r in rows:
        cells = []
        for key, _, fmt in COLUMNS:
            v = r.get(key)
            if v is None or (isinstance(v, float) and v != v):
                cells.append("n/a")
            else:
                if key == "miou":
                    v = 100 * v
                cells.append(fmt.format(int(v)) if fmt == "{:d}" else fmt.format(float(v)))
        out.append(f"| {r['source']} | {r['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def mean_rows(rows: List[dict]) -> List[dict]:
    """Per variant, the mean of the table's columns over the synthetic seeds: one room
    holds a handful of classes, so a single seed's mIoU swings with its room type."""
    out = []
    syn = [r for r in rows if r["source"].startswith("synthetic:")]
    for var in dict.fromkeys(r["variant"] for r in syn):
        rs = [r for r in syn if r["variant"] == var]
        m = {"source": f"synthetic:mean({len(rs)} seeds)", "variant": var}
        for key, _, _ in COLUMNS:
            vals = [float(r[key]) for r in rs if r.get(key) is not None and r[key] == r[key]]
            if len(vals) == len(rs):
                m[key] = sum(vals) / len(vals)
        out.append(m)
    return out


def ablation(weights: str, seeds: List[int], frames: int = 100, width: int = 640, height: int = 480,
             device: str = "auto", real: str = "", real_frames: str = "250:500", json_out: str = "",
             only: Optional[List[str]] = None, overrides: Optional[dict] = None) -> List[dict]:
    from ..io.datasets import open_dataset

    bad = [s for s in seeds if s >= TRAIN_SEED_BASE]
    if bad:
        raise ValueError(f"seeds {bad} are training seeds (>= {TRAIN_SEED_BASE}); pick held-out seeds below it")
    dev = str(resolve_device(device))
    rows = []

    def save():   # after every source, so a run cut short keeps what it measured
        if json_out:
            Path(json_out).parent.mkdir(parents=True, exist_ok=True)
            with open(json_out, "w") as f:
                json.dump(rows, f, indent=2, default=str)

    for s in seeds:
        ds = open_dataset(f"synthetic:seed={s},frames={frames}", width=width, height=height, device=dev)
        fr = [ds[i] for i in range(len(ds))]   # rendered once, shared by the variants
        rows += run_source(f"synthetic:{s}", fr, weights, dev, only, overrides)
        save()
    if len(seeds) > 1:
        rows += mean_rows(rows)
        save()
    if real:
        ds = open_dataset(f"7scenes:{real}", frames=real_frames, width=width, height=height)
        fr = [ds[i] for i in range(len(ds))]
        rows += run_source(f"7scenes:{real_frames}", fr, weights, dev, only, overrides)
        save()
    return rows
