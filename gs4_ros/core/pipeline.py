"""The per-frame SLAM pipeline that the ROS node, the bag replay and the dataset runner drive.

Feed it RGBDFrames in time order with `process`; it tracks each frame against the map
rendered at the predicted pose, decides keyframes by motion, and on keyframes inserts
Gaussians where the map does not yet explain the observation (co-visibility), from the
v0 geometric initialiser or, with `initializer: network`, the learned networks (core/nets).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import torch

from . import se3
from .config import PipelineConfig
from .frame import FrameError, Intrinsics, RGBDFrame
from .covisibility import block_confidence, unmapped_blocks
from .fusion import fuse_depth
from .gaussian_map import GaussianMap
from .initializer import block_gaussians, labels_to_logits, to_world
from .render import make_rasterizer, render_views
from .tracker import RGBDTracker, TrackResult

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' asked for but torch sees no CUDA GPU; use --device cpu")
    return dev


@dataclass
class FrameResult:
    index: int
    timestamp: float
    pose: np.ndarray                 # 4x4 camera-to-world (float64)
    ok: bool                         # tracking healthy
    keyframe: bool
    num_gaussians: int
    added: int = 0
    pruned: int = 0
    timings_ms: Dict[str, float] = field(default_factory=dict)
    health: Dict[str, float] = field(default_factory=dict)


@dataclass
class Keyframe:
    id: int
    frame_index: int
    timestamp: float
    pose: torch.Tensor               # [4, 4] camera-to-world (current estimate)


class SLAMPipeline:
    def __init__(self, config: Optional[PipelineConfig] = None, device: Optional[str] = None):
        self.cfg = config or PipelineConfig()
        self.device = resolve_device(device or self.cfg.device)
        self.rasterizer = make_rasterizer(self.cfg.renderer, self.device)
        self.tracker = RGBDTracker(self.cfg.tracking)
        self.nets = None
        if self.cfg.initializer == "network":
            from .nets.mapper import load_mapper

            self.nets, _ = load_mapper(self.cfg, self.device)
        elif self.cfg.initializer != "geometric":
            raise ValueError(f"unknown initializer {self.cfg.initializer!r}; use geometric or network")
        self.reset()

    # -- state ------------------------------------------------------------------------
    def reset(self):
        fdim = self.nets.predictor.feature_dim if self.nets is not None else 0
        self.map = GaussianMap(num_classes=self.cfg.num_classes, feature_dim=fdim, device=self.device)
        self.trajectory: List[tuple] = []      # (timestamp, frame index, 4x4 numpy c2w)
        self.keyframes: List[Keyframe] = []
        self._poses: List[torch.Tensor] = []
        self.intrinsics: Optional[Intrinsics] = None
        self.frames_processed = 0
        self.frames_lost = 0
        self.last_result: Optional[FrameResult] = None

    @property
    def num_gaussians(self) -> int:
        return len(self.map)

    # -- main entry -------------------------------------------------------------------
    def process(self, frame: RGBDFrame, allow_mapping: bool = True) -> FrameResult:
        """Track and map one frame. Raises FrameError (state untouched) for unusable frames.

        allow_mapping=False tracks only (held-out evaluation frames, paused mapping).
        """
        t0 = time.perf_counter()
        frame = frame.sanitized().validate()
        if self.intrinsics is not None and (frame.intrinsics.width, frame.intrinsics.height) != (
                self.intrinsics.width, self.intrinsics.height):
            raise FrameError(f"frame is {frame.intrinsics.width}x{frame.intrinsics.height} but the "
                             f"map was started at {self.intrinsics.width}x{self.intrinsics.height}; "
                             "reset the pipeline to change resolution")
        self.intrinsics = frame.intrinsics
        dev = self.device
        K = frame.intrinsics.K(dev)
        depth = torch.from_numpy(frame.depth).to(dev)
        rgb = torch.from_numpy(frame.rgb).to(dev).float() / 255.0
        labels = None if frame.labels is None else torch.from_numpy(frame.labels.astype(np.int64)).to(dev)
        timings: Dict[str, float] = {}

        if not self._poses:
            pose = (se3.orthonormalize(torch.as_tensor(np.asarray(frame.meta["initial_pose"]), dtype=torch.float64)).float().to(dev)
                    if "initial_pose" in frame.meta else torch.eye(4, device=dev))
            track = None
            timings["track"] = 0.0
            is_kf = True
        else:
            ts = time.perf_counter()
            self._stage_ms = {}
            pose, track = self._track(depth, rgb, K, frame.intrinsics)
            timings["track"] = 1000 * (time.perf_counter() - ts)
            timings.update(self._stage_ms)
            is_kf = allow_mapping and track.ok and self._is_keyframe(pose, frame.index)
        if track is not None and not track.ok:
            self.frames_lost += 1

        added = pruned = 0
        m = self.cfg.mapping
        if track is not None and track.ok and allow_mapping and m.fuse_max_weight > 0:
            ts = time.perf_counter()
            fuse_depth(self.map, depth, K, pose, m.fuse_gate, m.fuse_max_weight, m.min_depth, m.max_depth)
            self._sync()
            timings["fuse"] = 1000 * (time.perf_counter() - ts)
        if is_kf:
            ts = time.perf_counter()
            kf = Keyframe(len(self.keyframes), frame.index, frame.timestamp, pose.clone())
            self.keyframes.append(kf)
            if self.nets is not None:
                added = self.nets.map_frame(self.map, self.rasterizer, depth, rgb, K, frame.intrinsics, pose,
                                            labels, kf.id, frame.index)
                timings.update(self.nets.timings_ms)
            else:
                added = self._map(depth, rgb, K, frame.intrinsics, pose, labels, kf, frame.index)
            pruned = self.map.prune(self.cfg.mapping.prune_opacity)
            self._sync()
            timings["map"] = 1000 * (time.perf_counter() - ts)
        self._poses.append(pose)
        pose_np = pose.detach().double().cpu().numpy()
        self.trajectory.append((frame.timestamp, frame.index, pose_np))
        self.frames_processed += 1
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        timings["total"] = 1000 * (time.perf_counter() - t0)
        health = {}
        if track is not None:
            health = {"inlier_fraction": track.inlier_fraction, "rms_depth_m": track.rms_depth,
                      "rms_photo": track.rms_photo, "iterations": track.iterations,
                      "step_m": track.delta_from_prediction[0],
                      "step_rad": track.delta_from_prediction[1]}
        res = FrameResult(frame.index, frame.timestamp, pose_np, track is None or track.ok, is_kf,
                          len(self.map), added, pruned, timings, health)
        self.last_result = res
        return res

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # -- tracking ---------------------------------------------------------------------
    def _predict(self) -> torch.Tensor:
        last = self._poses[-1]
        if self.cfg.tracking.motion_model == "constant_velocity" and len(self._poses) >= 2:
            vel = se3.inv(self._poses[-2]) @ last
            # Re-project onto SE(3): composing float32 poses (inv = transpose) otherwise
            # amplifies any non-orthogonality geometrically from frame to frame.
            return se3.orthonormalize(last @ vel)
        return last.clone()

    def _track(self, depth, rgb, K, intr: Intrinsics):
        pred = self._predict()
        W, H = intr.width, intr.height
        tc = self.cfg.tracking
        with torch.no_grad():
            t0 = time.perf_counter()
            ref = render_views(self.rasterizer, self.map.params(), pred, K, W, H, geometry=True)
            ref_levels = self.tracker.reference_levels(ref.points[0], ref.normals[0], ref.color[0],
                                                       ref.alpha[0], K)
            cur_levels = self.tracker.levels_for(depth, rgb, K)
            self._sync()
            self._stage_ms["render_ref"] = 1000 * (time.perf_counter() - t0)
            res = self.tracker.track(cur_levels, ref_levels, pred)
        if not res.ok:
            log.warning("tracking weak (inliers %.2f); keeping the prediction", res.inlier_fraction)
            return pred, res
        return se3.orthonormalize(res.pose), res

    def _is_keyframe(self, pose: torch.Tensor, index: int) -> bool:
        m = self.cfg.mapping
        kf = self.keyframes[-1]
        dt, dr = se3.pose_distance(kf.pose, pose)
        return (float(dt) > m.keyframe_translation or math.degrees(float(dr)) > m.keyframe_rotation_deg
                or index - kf.frame_index >= m.keyframe_max_interval)

    # -- mapping ----------------------------------------------------------------------
    @torch.no_grad()
    def _map(self, depth, rgb, K, intr: Intrinsics, pose, labels, kf: Keyframe, frame_index: int) -> int:
        m = self.cfg.mapping
        bg = block_gaussians(depth, rgb, K, m, labels)
        conf = block_confidence(bg, K, m.stride, intr.width, intr.height)
        select = bg.valid & unmapped_blocks(self.rasterizer, self.map, pose, K, intr.width, intr.height,
                                            m.stride, bg.depth, m.silhouette_threshold, m.front_margin)
        n = int(select.sum())
        if n == 0:
            return 0
        means, log_scales, quats, colors, lab = to_world(bg, pose, select)
        sem = labels_to_logits(lab, self.cfg.num_classes) if lab is not None else None
        op = torch.full((n,), m.init_opacity, device=self.device)
        self.map.insert(means, log_scales, quats, torch.logit(op), colors, sem_logits=sem,
                        birth_frame=frame_index, keyframe_id=kf.id, obs_weight=conf[select])
        return n

    # -- outputs ----------------------------------------------------------------------
    @torch.no_grad()
    def render(self, pose_c2w, intrinsics: Optional[Intrinsics] = None, semantics: bool = False,
               background=None) -> Dict[str, np.ndarray]:
        """Render the map at a pose: numpy color uint8, depth float32 m, alpha, labels uint8."""
        intr = intrinsics or self.intrinsics
        if intr is None:
            raise RuntimeError("no intrinsics yet: process a frame first or pass intrinsics")
        pose = torch.as_tensor(np.asarray(pose_c2w), dtype=torch.float32, device=self.device)
        bgt = None if background is None else torch.as_tensor(background, dtype=torch.float32, device=self.device)
        r = render_views(self.rasterizer, self.map.params(with_semantics=semantics), pose,
                         intr.K(self.device), intr.width, intr.height, semantics=semantics, background=bgt)
        out = {
            "color": (r.color[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy(),
            "depth": r.depth[0].float().cpu().numpy(),
            "alpha": r.alpha[0].float().cpu().numpy(),
        }
        if semantics:
            lab = r.semantics[0].argmax(-1).to(torch.uint8)
            lab[r.alpha[0] < 0.5] = 255
            out["labels"] = lab.cpu().numpy()
        return out
