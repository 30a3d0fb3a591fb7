"""Drive the pipeline over a frame source and evaluate the result.

The dataset runner and the bag replay share this loop; the ROS node drives the same
pipeline from callbacks. Unusable frames are logged and skipped, never fatal.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional

import numpy as np
import torch

from ..core.frame import FrameError, RGBDFrame
from ..core.pipeline import FrameResult, SLAMPipeline
from .image_metrics import ConfusionMatrix, depth_l1_cm, psnr, ssim
from .trajectory_metrics import trajectory_errors

log = logging.getLogger(__name__)


@dataclass
class RunRecord:
    results: List[FrameResult] = field(default_factory=list)
    skipped: List[tuple] = field(default_factory=list)  # (index, reason)
    eval_frames: Dict[int, RGBDFrame] = field(default_factory=dict)
    heldout: List[int] = field(default_factory=list)
    gt: Dict[int, np.ndarray] = field(default_factory=dict)
    stamps: Dict[int, float] = field(default_factory=dict)
    wall_s: float = 0.0


def prefetch(frames: Iterable[RGBDFrame], depth: int = 4) -> Iterator[RGBDFrame]:
    """Decode frames in a background thread so file reading overlaps GPU work (bounded)."""
    q: "queue.Queue" = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for f in frames:
                if stop.is_set():
                    return
                q.put(f)
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            q.put(e)
        q.put(done)

    t = threading.Thread(target=work, daemon=True, name="gs4-prefetch")
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def run_frames(pipe: SLAMPipeline, frames: Iterable[RGBDFrame], eval_every: int = 5,
               holdout_every: int = 0, progress: Optional[Callable[[FrameResult], None]] = None,
               keep_eval_frames: bool = True) -> RunRecord:
    """Process frames in order. Every `eval_every`-th frame is kept for rendering metrics;
    with holdout_every=N, frames with index % N == N // 2 are tracked but never mapped
    (the novel-view protocol)."""
    rec = RunRecord()
    t0 = time.perf_counter()
    first = True
    for k, frame in enumerate(prefetch(frames)):
        held = holdout_every > 0 and k % holdout_every == holdout_every // 2 and not first
        if first and frame.gt_pose is not None and "initial_pose" not in frame.meta:
            # Start in the ground-truth frame so maps and trajectories overlay directly.
            frame.meta["initial_pose"] = frame.gt_pose
        try:
            res = pipe.process(frame, allow_mapping=not held)
        except FrameError as e:
            log.warning("frame %d skipped: %s", frame.index, e)
            rec.skipped.append((frame.index, str(e)))
            continue
        first = False
        rec.results.append(res)
        rec.stamps[frame.index] = frame.timestamp
        if frame.gt_pose is not None:
            rec.gt[frame.index] = frame.gt_pose
        if keep_eval_frames and (held or (eval_every and k % eval_every == 0)):
            rec.eval_frames[frame.index] = frame
            if held:
                rec.heldout.append(frame.index)
        if progress:
            progress(res)
    # Wait for the back-end's queued loop queries and apply its last correction, so the
    # final trajectory and map include every loop closure (counted in the wall time).
    pipe.finish()
    rec.wall_s = time.perf_counter() - t0
    return rec


def final_poses(pipe: SLAMPipeline, rec: RunRecord) -> Dict[int, np.ndarray]:
    """Frame index -> pose after every back-end correction (the online pose otherwise)."""
    out = {r.index: r.pose for r in rec.results}
    out.update({idx: pose for _, idx, pose in pipe.final_trajectory()})
    return out


def evaluate(pipe: SLAMPipeline, rec: RunRecord) -> Dict[str, object]:
    """metrics.json content: trajectory errors, rendering metrics, map size, speed."""
    m: Dict[str, object] = {}
    res = rec.results
    n = len(res)
    m["frames_processed"] = n
    m["frames_skipped"] = len(rec.skipped)
    m["frames_lost"] = int(sum(not r.ok for r in res))
    m["keyframes"] = int(sum(r.keyframe for r in res))
    m["num_gaussians"] = len(pipe.map)
    m["num_gaussians_inferred"] = int((pipe.map.inferred != 0).sum())   # placed across depth holes
    m["vocab_entries"] = len(pipe.map.vocab) if pipe.map.vocab is not None else 0   # open-vocabulary bank
    fa = pipe.fill_ahead   # keyframe hole fills started while tracking (core/fill_ahead)
    m["fill_ahead"] = {"started": fa.started, "used": fa.used, "computed_at_keyframe": fa.computed_at_keyframe}
    m["map_mb"] = pipe.map.nbytes() / 2 ** 20
    m["device"] = str(pipe.device)
    if pipe.device.type == "cuda":
        m["gpu_name"] = torch.cuda.get_device_name(pipe.device)
        m["peak_gpu_mem_mb"] = torch.cuda.max_memory_allocated(pipe.device) / 2 ** 20
    m["renderer"] = pipe.rasterizer.name
    m["wall_s"] = rec.wall_s
    m["fps"] = n / rec.wall_s if rec.wall_s > 0 else float("nan")
    stages = sorted({k for r in res for k in r.timings_ms})
    m["stage_ms"] = {}
    for s in stages:
        v = np.array([r.timings_ms[s] for r in res if s in r.timings_ms])
        m["stage_ms"][s] = {"mean": float(v.mean()), "median": float(np.median(v)),
                            "p95": float(np.percentile(v, 95)), "count": int(v.size)}
    # Trajectory.
    est = final_poses(pipe, rec)
    idx = [r.index for r in res if r.index in rec.gt]
    if len(idx) >= 3:
        m.update(trajectory_errors([rec.stamps[i] for i in idx], [est[i] for i in idx],
                                   [rec.stamps[i] for i in idx], [rec.gt[i] for i in idx]))
    m["backend"] = pipe.backend_summary()
    m["final_semantics"] = pipe.final_semantics_stats   # None when the pass did not run
    # Rendering metrics on the final map at the final pose estimates.
    buckets = {"mapped": [], "heldout": []}
    cm = ConfusionMatrix(pipe.cfg.num_classes)
    has_labels = False
    for i, f in sorted(rec.eval_frames.items()):
        out = pipe.render(est[i], f.intrinsics, semantics=f.labels is not None)
        row = {"psnr": psnr(out["color"], f.rgb), "ssim": ssim(out["color"], f.rgb),
               "depth_l1_cm": depth_l1_cm(out["depth"], f.depth),
               # Where the sensor gave no depth (glass, out of range) an RGB-D map has
               # nothing to render: this PSNR tells map quality from coverage.
               "psnr_depth_valid": psnr(out["color"], f.rgb, mask=f.depth > 0)}
        buckets["heldout" if i in rec.heldout else "mapped"].append(row)
        if f.labels is not None:
            has_labels = True
            cm.add(out["labels"], f.labels)
    for name, rows in buckets.items():
        if not rows:
            continue
        pre = "" if name == "mapped" else "heldout_"
        for key in ("psnr", "ssim", "depth_l1_cm", "psnr_depth_valid"):
            m[pre + key] = float(np.nanmean([r[key] for r in rows]))
        m[pre + "eval_frames"] = len(rows)
    if has_labels:
        s = cm.miou()
        m["miou"] = s["miou"]
        m["pixel_accuracy"] = s["pixel_accuracy"]
        names = pipe.cfg.class_names
        m["per_class_iou"] = {names[k]: v for k, v in s["per_class_iou"].items()}
        m["confusions"] = {names[g]: [[names[k], f] for k, f in row] for g, row in cm.confusions().items()}
        # The raw counts, so a benchmark over many sequences can pool them (dataset-level
        # mIoU, as ScanNet's benchmark scores) next to the mean of per-sequence mIoUs.
        m["confusion_counts"] = {"classes": list(names), "matrix": cm.m.tolist(), "missed": cm.missed.tolist()}
    return m


def write_outputs(pipe: SLAMPipeline, rec: RunRecord, metrics: Dict[str, object], out_dir,
                  save_map: bool = True, report: bool = True) -> Dict[str, Path]:
    from ..io.ply import save_ply
    from ..io.trajectory import write_tum
    from .report import make_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"trajectory": out / "trajectory.txt", "metrics": out / "metrics.json"}
    est = final_poses(pipe, rec)
    write_tum(paths["trajectory"], [r.timestamp for r in rec.results], [est[r.index] for r in rec.results])
    if rec.gt:
        idx = sorted(rec.gt)
        write_tum(out / "groundtruth.txt", [rec.stamps[i] for i in idx], [rec.gt[i] for i in idx])
        paths["groundtruth"] = out / "groundtruth.txt"
    if save_map:
        paths["map"] = out / "map.ply"
        save_ply(paths["map"], pipe.map, class_names=pipe.cfg.class_names)
    with open(paths["metrics"], "w") as f:
        json.dump(metrics, f, indent=2, sort_keys=True)
    if report:
        paths["report"] = out / "report.png"
        make_report(pipe, rec, metrics, paths["report"])
    return paths
