"""Rendering metrics: PSNR, SSIM (pytorch-msssim), depth L1 and semantic mIoU; and how well a
colour image lines up with its depth image."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from pytorch_msssim import ssim as _ssim


def psnr(pred: np.ndarray, gt: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    """uint8 or [0,1] float images; mask selects pixels (all by default)."""
    p = pred.astype(np.float64) / (255.0 if pred.dtype == np.uint8 else 1.0)
    g = gt.astype(np.float64) / (255.0 if gt.dtype == np.uint8 else 1.0)
    d = (p - g) ** 2
    if mask is not None:
        d = d[mask]
    mse = float(d.mean()) if d.size else float("nan")
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))


def ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    p = torch.from_numpy(pred).float().permute(2, 0, 1)[None] / (255.0 if pred.dtype == np.uint8 else 1.0)
    g = torch.from_numpy(gt).float().permute(2, 0, 1)[None] / (255.0 if gt.dtype == np.uint8 else 1.0)
    return float(_ssim(p, g, data_range=1.0, size_average=True))


def depth_l1_cm(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean |pred - gt| in cm over pixels where the sensor has depth (GS4 protocol)."""
    m = gt > 0
    if not m.any():
        return float("nan")
    return float(100 * np.abs(pred[m] - gt[m]).mean())


class ConfusionMatrix:
    """Accumulates a K x K confusion matrix over frames; 255 in gt is ignored."""

    def __init__(self, num_classes: int):
        self.K = num_classes
        self.m = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.missed = np.zeros(num_classes, dtype=np.int64)  # gt pixels the map left unlabelled

    def add(self, pred: np.ndarray, gt: np.ndarray):
        ok = gt < self.K
        p = pred[ok].astype(np.int64)
        g = gt[ok].astype(np.int64)
        hit = p < self.K
        np.add.at(self.m, (g[hit], p[hit]), 1)
        np.add.at(self.missed, g[~hit], 1)

    def confusions(self, top: int = 3) -> Dict[int, List[Tuple[int, float]]]:
        """For each class present in the ground truth, the classes its pixels were given
        (its own included), largest share first: what a low IoU was taken for."""
        tot = self.m.sum(1) + self.missed
        out = {}
        for g in np.nonzero(tot > 0)[0]:
            row = self.m[g]
            order = [int(k) for k in np.argsort(-row, kind="stable")[:top] if row[k] > 0]
            out[int(g)] = [(k, float(row[k] / tot[g])) for k in order]
        return out

    def miou(self) -> Dict[str, object]:
        tp = np.diag(self.m).astype(np.float64)
        gt_count = self.m.sum(1) + self.missed
        pred_count = self.m.sum(0)
        present = gt_count > 0
        iou = tp / np.maximum(gt_count + pred_count - tp, 1)
        return {"miou": float(iou[present].mean()) if present.any() else float("nan"),
                "per_class_iou": {int(k): float(iou[k]) for k in np.nonzero(present)[0]},
                "pixel_accuracy": float(tp.sum() / max(self.m.sum() + self.missed.sum(), 1))}


def pooled_miou(rows) -> Optional[Dict[str, object]]:
    """miou() of the confusion counts (runner's "confusion_counts") summed over several
    sequences' metrics: each class's IoU over all its pixels, as ScanNet's benchmark
    scores, where a mean of per-sequence mIoUs lets a class that fills a few hundred
    pixels of one room weigh as much as its walls; with the class names. None when no row
    has counts."""
    counts = [m["confusion_counts"] for m in rows if m.get("confusion_counts")]
    if not counts:
        return None
    cm = ConfusionMatrix(len(counts[0]["missed"]))
    for c in counts:
        cm.m += np.asarray(c["matrix"], dtype=np.int64)
        cm.missed += np.asarray(c["missed"], dtype=np.int64)
    return {**cm.miou(), "class_names": list(counts[0]["classes"])}


def classes_lowest_first(pooled: Dict[str, object]) -> List[Tuple[str, float]]:
    """A pooled_miou result's per-class IoUs by name, lowest first: what it loses on."""
    names = pooled["class_names"]
    return [(names[k], v) for k, v in sorted(pooled["per_class_iou"].items(), key=lambda kv: kv[1])]


def edge_alignment(rgb: np.ndarray, depth: np.ndarray, jump: float = 0.05) -> float:
    """Mean colour-gradient magnitude on depth discontinuities (> jump metres between
    neighbours, dilated by one pixel) over its mean on all pixels with depth.

    Colour edges that sit on the depth edges raise it, a shifted or scaled colour image
    lowers it: a check of colour-to-depth registration that needs no ground truth."""
    import cv2

    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    grad = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    valid = depth > 0
    dx = np.abs(np.diff(depth, axis=1, prepend=depth[:, :1]))
    dy = np.abs(np.diff(depth, axis=0, prepend=depth[:1]))
    edges = (np.maximum(dx, dy) > jump) & valid
    edges = cv2.dilate(edges.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    return float(grad[edges].mean() / max(grad[valid].mean(), 1e-6))
