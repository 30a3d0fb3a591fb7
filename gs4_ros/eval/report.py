"""One-page PNG report: trajectory from above against ground truth, and rendered views
against the input for a few frames."""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np

from ..core.palette import SCANNET20_PALETTE, colorize_labels as _colorize


def colorize_labels(labels: np.ndarray) -> np.ndarray:
    """Class ids -> RGB (core/palette; 255 / unknown -> black)."""
    return _colorize(labels, len(SCANNET20_PALETTE), unknown=(0, 0, 0))


def colorize_depth(depth: np.ndarray, vmax: float | None = None) -> np.ndarray:
    import matplotlib

    v = depth[depth > 0]
    vmax = vmax or (float(np.percentile(v, 98)) if v.size else 1.0)
    rgba = matplotlib.colormaps["turbo"](np.clip(depth / max(vmax, 1e-6), 0, 1))
    rgb = (rgba[..., :3] * 255).astype(np.uint8)
    rgb[depth <= 0] = 0
    return rgb


REPORT_QUERY = "furniture"


def _report_query(pipe):
    """The report's example query, or None (no vocabulary, or nothing it matches)."""
    try:
        res = pipe.query(REPORT_QUERY)
    except (RuntimeError, ValueError):
        return None
    return res if res.count else None


def _relevance_overlay(rgb: np.ndarray, rel: np.ndarray, threshold: float) -> np.ndarray:
    """The rendered colour greyed out, with what matches the query in yellow over it."""
    grey = rgb.astype(np.float32).mean(-1, keepdims=True).repeat(3, -1) * 0.6
    hit = np.nan_to_num(rel) >= threshold
    out = grey.copy()
    out[hit] = 0.45 * grey[hit] + 0.55 * np.array([255.0, 220.0, 0.0])
    return out.clip(0, 255).astype(np.uint8)


def make_report(pipe, rec, metrics: Dict[str, object], path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .trajectory_metrics import aligned_positions

    res = rec.results
    frames = sorted(rec.eval_frames.items())
    pick = [frames[i] for i in np.linspace(0, len(frames) - 1, min(3, len(frames))).astype(int)] if frames else []
    has_sem = any(f.labels is not None for _, f in pick)
    # An open-vocabulary query's relevance beside the semantics, when the map can answer one.
    query = _report_query(pipe) if has_sem else None
    ncol = 4 + (2 if has_sem else 0) + (1 if query is not None else 0)
    fig = plt.figure(figsize=(3.2 * ncol, 3.0 * (len(pick) + 1.3)))
    gs = fig.add_gridspec(len(pick) + 1, ncol, height_ratios=[1.3] + [1] * len(pick))
    ax = fig.add_subplot(gs[0, :2])
    idx = [r.index for r in res if r.index in rec.gt]
    est_xyz = np.array([r.pose[:3, 3] for r in res])
    if len(idx) >= 3:
        pose_of = {r.index: r.pose for r in res}
        e, g = aligned_positions([rec.stamps[i] for i in idx], [pose_of[i] for i in idx],
                                 [rec.stamps[i] for i in idx], [rec.gt[i] for i in idx])
        ax.plot(g[:, 0], g[:, 1], "k-", lw=1.5, label="ground truth")
        ax.plot(e[:, 0], e[:, 1], "r-", lw=1.0, label="estimate (SE(3)-aligned)")
    elif len(est_xyz):
        ax.plot(est_xyz[:, 0], est_xyz[:, 1], "r-", lw=1.0, label="estimate")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title("trajectory, top view (x-y)")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.legend(fontsize=8)
    axt = fig.add_subplot(gs[0, 2:])
    axt.axis("off")
    keys = ["ate_rmse_cm", "rpe_trans_rmse_cm", "psnr", "ssim", "depth_l1_cm", "heldout_psnr",
            "miou", "num_gaussians", "fps", "frames_processed", "frames_skipped", "frames_lost", "device"]
    lines = [f"{k}: {metrics[k]:.3f}" if isinstance(metrics.get(k), float) else f"{k}: {metrics[k]}"
             for k in keys if k in metrics]
    axt.text(0.0, 1.0, "\n".join(lines), va="top", family="monospace", fontsize=9)
    pose_of = {r.index: r.pose for r in res}
    for row, (i, f) in enumerate(pick, start=1):
        out = pipe.render(pose_of[i], f.intrinsics, semantics=f.labels is not None, query=query)
        vmax = float(np.percentile(f.depth[f.depth > 0], 98)) if (f.depth > 0).any() else 1.0
        panels = [(f.rgb, f"input {i}"), (out["color"], "rendered"),
                  (colorize_depth(f.depth, vmax), "input depth"), (colorize_depth(out["depth"], vmax), "rendered depth")]
        if has_sem and f.labels is not None:
            panels += [(colorize_labels(f.labels), "labels"), (colorize_labels(out["labels"]), "rendered semantics")]
        if query is not None:
            panels.append((_relevance_overlay(out["color"], out["relevance"], query.threshold),
                           f"query '{query.query.text}'"))
        for col, (img, title) in enumerate(panels):
            a = fig.add_subplot(gs[row, col])
            a.imshow(img)
            a.set_title(title, fontsize=9)
            a.axis("off")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
