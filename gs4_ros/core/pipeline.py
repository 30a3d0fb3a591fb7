"""The per-frame SLAM pipeline that the ROS node, the bag replay and the dataset runner drive.

Feed it RGBDFrames in time order with `process`; it tracks each frame against the map
rendered at the predicted pose, decides keyframes by motion, and on keyframes inserts
Gaussians where the map does not yet explain the observation (co-visibility), from the
v0 geometric initialiser or, with `initializer: network`, the learned networks (core/nets).

With `backend.enabled` every keyframe also goes to the back-end (core/backend): loop
closure and pose-graph optimisation on a background thread, whose corrections are applied
here at frame boundaries (keyframe poses, the Gaussians anchored to them, the motion
prediction), and the few-iteration joint optimisation when poses change significantly.
Every frame's pose is kept relative to its keyframe, so `final_trajectory()` follows
later corrections.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from . import se3
from .config import BackendConfig, PipelineConfig
from .frame import FrameError, Intrinsics, RGBDFrame
from .covisibility import block_confidence, block_fraction, blocks_to_insert, replaced_inferred
from .cuda_graph import GraphedCall
from .fill_ahead import MODES as FILL_AHEAD_MODES, FillAhead
from .fusion import fuse_depth
from .semantic_fusion import fuse_semantics, refuse_semantics
from .gaussian_map import GaussianMap
from .map_compaction import compact
from .host_threads import limit_host_blas
from .initializer import block_gaussians, labels_to_logits, to_world
from .render import blend_surface_colour, make_rasterizer, render_views
from .tracker import RGBDTracker, TrackResult, weakest_constraint
from .backend import Backend, JointOptimizer, JointResult, JointView
from .open_vocab import QueryResult, VocabBank, assign_bank_ids, load_encoder, query_map

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


class StageClock:
    """Stage durations (ms) that do not make the host wait for the GPU in mid-frame (which
    would stop it queueing the next stage meanwhile): on CUDA, events at the stage
    boundaries, read after the frame's final synchronisation; on the CPU, wall time."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self._spans: List[tuple] = []

    def now(self):
        if not self.cuda:
            return time.perf_counter()
        e = torch.cuda.Event(enable_timing=True)
        e.record()
        return e

    def span(self, name: str, start):
        self._spans.append((name, start, self.now()))

    def read(self) -> Dict[str, float]:
        """Call after synchronising with the device."""
        out = {name: (a.elapsed_time(b) if self.cuda else 1000 * (b - a)) for name, a, b in self._spans}
        self._spans.clear()
        return out


class SLAMPipeline:
    def __init__(self, config: Optional[PipelineConfig] = None, device: Optional[str] = None):
        self.cfg = config or PipelineConfig()
        self.device = resolve_device(device or self.cfg.device)
        limit_host_blas(self.cfg.host_blas_threads)
        self.rasterizer = make_rasterizer(self.cfg.renderer, self.device)
        self.tracker = RGBDTracker(self.cfg.tracking)
        # v0's block Gaussians of a keyframe, replayed from a CUDA graph per frame size (a
        # hundred small kernels: ~1 ms replayed, ~5 ms launched one by one).
        self._block_gaussians = GraphedCall(
            lambda d, c, k, *lab: block_gaussians(d, c, k, self.cfg.mapping, lab[0] if lab else None),
            "block Gaussians")
        self.backend: Optional[Backend] = None
        self.nets = None
        if self.cfg.initializer == "network":
            from .nets.mapper import load_mapper

            self.nets, _ = load_mapper(self.cfg, self.device)
        elif self.cfg.initializer != "geometric":
            raise ValueError(f"unknown initializer {self.cfg.initializer!r}; use geometric or network")
        ahead = self.cfg.mapping.fill_holes_ahead
        if ahead not in FILL_AHEAD_MODES:
            raise ValueError(f"mapping.fill_holes_ahead must be one of {', '.join(FILL_AHEAD_MODES)}, got {ahead!r}")
        self._fill_ahead_on = self.cfg.mapping.fill_holes_min_area > 0 and (
            ahead == "always" or (ahead == "gpu" and self.device.type == "cuda"))
        ov = self.cfg.open_vocab
        self.vocab_encoder = (load_encoder(ov.encoder, self.cfg.class_names, ov.lexicon)
                              if ov.enabled and self.cfg.num_classes else None)
        self._vocab_failed = False
        self.reset()

    # -- state ------------------------------------------------------------------------
    def reset(self):
        fdim = self.nets.predictor.feature_dim if self.nets is not None else 0
        self.map = GaussianMap(num_classes=self.cfg.num_classes, feature_dim=fdim, device=self.device)
        self._vocab_bank()
        self.trajectory: List[tuple] = []      # (timestamp, frame index, 4x4 numpy c2w)
        self.keyframes: List[Keyframe] = []
        self._poses: List[torch.Tensor] = []
        self.intrinsics: Optional[Intrinsics] = None
        self._K_cache: Optional[tuple] = None   # (intrinsics, K on the device)
        self._odom_pose: Optional[np.ndarray] = None   # newest frame's odom_camera_pose, validated
        self._odom_cov: Optional[np.ndarray] = None    # and its odom_camera_covariance, if valid
        self.frames_processed = 0
        self.frames_lost = 0
        self._good_run = self._lost_run = 0     # frames tracked / lost in a row, ending now
        self._velocity_trusted = False          # the last two frames tracked: the velocity is real
        self._lost_from = 0                     # index of the first frame of the current lost run
        # The back-end's relocalisation for the next prediction: (pose, the odometry of the
        # frame it was found for, or None).
        self._reloc: Optional[tuple] = None
        self._reloc_queries: Dict[int, Optional[np.ndarray]] = {}   # the last queries sent: frame -> odometry
        self.last_result: Optional[FrameResult] = None
        self.close()
        self.fill_ahead = FillAhead()   # its counts, like the others here, start over
        self._kf_pose_np: Optional[np.ndarray] = None   # last keyframe's pose as tracked (host)
        b = self.cfg.backend
        self.backend = Backend(b, self.cfg.tracking) if b.enabled else None
        self.joint = (JointOptimizer(b, blend=self.cfg.surface_blend() if b.joint_blend else None)
                      if b.enabled and b.joint_enabled else None)
        if self.joint is not None and self.device.type == "cuda":
            self.joint.warm_up(self.rasterizer, self.device)
        self._anchors: List[tuple] = []        # per frame: (keyframe id, 4x4 pose in that keyframe)
        self._anchor_inv = (None, None)         # ((keyframe id, correction count), inverse pose)
        # Bumped whenever the back-end or the joint optimiser moves past poses (and the
        # Gaussians with them), so drivers know to re-publish the path and the map.
        self.correction_count = 0
        self._rms_hist: deque = deque(maxlen=30)
        self._last_joint_frame = -10 ** 9
        self._joint_deferred = ""              # reason of a step left for run_deferred()
        self._frame_index = 0
        self._kf_images: "OrderedDict[int, tuple]" = OrderedDict()   # final_semantics' keyframes
        self._kf_images_dropped = 0
        self.final_semantics_stats: Optional[Dict[str, float]] = None

    def close(self):
        """Stop the back-end thread (the pipeline stays usable; reset() starts a new one)."""
        if getattr(self, "backend", None) is not None:
            self.backend.close()
        if getattr(self, "fill_ahead", None) is not None:
            self.fill_ahead.close()

    @property
    def num_gaussians(self) -> int:
        return len(self.map)

    # -- main entry -------------------------------------------------------------------
    def process(self, frame: RGBDFrame, allow_mapping: bool = True,
                on_pose: Optional[Callable[[np.ndarray, bool], Any]] = None,
                frame_waiting: Optional[Callable[[], bool]] = None) -> FrameResult:
        """Track and map one frame. Raises FrameError (state untouched) for unusable frames.

        allow_mapping=False tracks only (held-out evaluation frames, paused mapping).
        on_pose(pose 4x4, ok) is called as soon as the frame is tracked, before fusion and
        mapping, so a live driver can publish the pose without waiting for the map (the
        pose is final: mapping does not change it). Its exceptions are logged, not raised.
        frame_waiting() -> True when a live driver already holds a newer frame: a joint step
        that only polishes the map (after a keyframe, backend.joint_on_keyframe, or any
        step with joint_lr_pose 0) is then left for run_deferred() instead of delaying that
        frame. Steps that may correct poses (tracking's triggers with poses free, the
        back-end's corrections) still run at once.
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
        K = self._K(frame.intrinsics)
        depth = torch.from_numpy(frame.depth).to(dev)
        rgb = torch.from_numpy(frame.rgb).to(dev).float() / 255.0
        labels = None if frame.labels is None else torch.from_numpy(frame.labels.astype(np.int64)).to(dev)
        timings: Dict[str, float] = {}
        clock = StageClock(dev)
        self._frame_index = frame.index
        if self.backend is not None and self._poses:
            self._backend_boundary(timings)
            self._take_relocalization()

        motion = self._motion_prior(frame)
        if allow_mapping and self._fill_ahead_on and self._keyframe_likely(frame.index):
            self.fill_ahead.start(frame.depth, frame.intrinsics.K_numpy(), self.cfg.mapping)
        if not self._poses:
            pose = (se3.orthonormalize(torch.as_tensor(np.asarray(frame.meta["initial_pose"]), dtype=torch.float64)).float().to(dev)
                    if "initial_pose" in frame.meta else torch.eye(4, device=dev))
            track = ref = None
            timings["track"] = 0.0
            is_kf = True
        else:
            ts = time.perf_counter()
            pose, track, ref = self._track(depth, rgb, K, frame.intrinsics, clock, motion)
            timings["track"] = 1000 * (time.perf_counter() - ts)
        if track is not None and not track.ok:
            self.frames_lost += 1
            if self._lost_run == 0:
                self._lost_from = frame.index
            self._lost_run, self._good_run = self._lost_run + 1, 0
        else:
            self._lost_run, self._good_run = 0, self._good_run + 1
            self._velocity_trusted = self._good_run >= 2
        # The pose and its distance to the last keyframe in one read-back.
        kf_dist = (se3.pose_distance(self.keyframes[-1].pose, pose) if track is not None
                   else (pose.new_zeros(()), pose.new_zeros(())))
        host = torch.cat([pose.detach().reshape(-1), torch.stack(kf_dist)]).double().cpu().numpy()
        pose_np = host[:16].reshape(4, 4)
        if track is not None:
            is_kf = allow_mapping and track.ok and self._is_keyframe(host[16], host[17], frame.index)
        if on_pose is not None:
            try:
                on_pose(pose_np, track is None or track.ok)
            except Exception:  # noqa: BLE001 - a driver's publishing must not break the map
                log.exception("on_pose callback failed")

        added = pruned = 0
        m = self.cfg.mapping
        if track is not None and track.ok and allow_mapping and m.fuse_max_weight > 0:
            ts = clock.now()
            fuse_depth(self.map, depth, K, pose, m.fuse_gate, m.fuse_max_weight, m.min_depth, m.max_depth)
            clock.span("fuse", ts)
        if is_kf:
            ts = time.perf_counter()
            kf = Keyframe(len(self.keyframes), frame.index, frame.timestamp, pose.clone())
            self.keyframes.append(kf)
            depth_map, inferred, depth_host = self._depth_for_mapping(frame, depth, timings)
            self._keep_keyframe_images(kf.id, frame, depth_host)
            self._kf_pose_np = pose_np
            drop = replaced_inferred(self.map, pose, K, torch.where(depth < m.max_depth, depth, 0.0))
            if bool(drop.any()):
                self.map.keep(~drop)
            covis = ref if self._reference_still_valid(track) else None
            if self.nets is not None:
                added = self.nets.map_frame(self.map, self.rasterizer, depth_map, rgb, K, frame.intrinsics, pose,
                                            labels, kf.id, frame.index, covis_render=covis,
                                            inferred_blocks=inferred)
                timings.update(self.nets.timings_ms)
            else:
                added = self._map(depth_map, rgb, K, frame.intrinsics, pose, labels, kf, frame.index, covis,
                                  inferred)
            pruned = self.map.prune(self.cfg.mapping.prune_opacity)
            if self.vocab_encoder is not None:
                self._update_vocab(pose, K, depth_map, rgb, frame.index, timings)
            self._sync()
            timings["map"] = 1000 * (time.perf_counter() - ts)
        self._poses.append(pose)
        self.trajectory.append((frame.timestamp, frame.index, pose_np))
        if self.backend is not None and self.keyframes:  # only corrections need anchors
            akf = self.keyframes[-1]
            self._anchors.append((akf.id, self._anchor_inverse(akf) @ pose_np))
        if self.backend is not None:
            ts = time.perf_counter()
            if is_kf:
                self.backend.add_keyframe(kf.id, frame.index, frame.timestamp, pose_np, frame.rgb, frame.depth,
                                          frame.intrinsics.K_numpy(), None if track is None else track.information,
                                          odom_pose=self._odom_pose,   # this frame's, from _motion_prior
                                          odom_covariance=self._odom_cov)
            ra = self.cfg.backend.relocalize_after
            if ra > 0 and self._lost_run >= ra:     # dropped while an earlier query is pending
                sent = self.backend.request_relocalization(frame.index, frame.rgb, frame.depth,
                                                           frame.intrinsics.K_numpy())
                if sent:        # one pending at a time, but its answer may be read after the next is sent
                    self._reloc_queries[frame.index] = self._odom_pose
                    for k in sorted(self._reloc_queries)[:-4]:
                        del self._reloc_queries[k]
            if self.cfg.backend.synchronous:
                self._backend_boundary(timings)
            reason = self._tracking_trigger(track, frame.index)
            if not reason and is_kf and self.joint is not None and self.cfg.backend.joint_on_keyframe:
                reason = "keyframe"
            # A step that only polishes the map (after a keyframe, or with the poses frozen)
            # waits while a live driver holds a newer frame: a step on every keyframe made
            # the node drop frames, the motion between processed frames grew and nearly
            # every one became a keyframe (8.4 Hz on an H100 with map_quality.yaml).
            if (reason and (reason == "keyframe" or self.cfg.backend.joint_lr_pose <= 0)
                    and frame_waiting is not None and frame_waiting()):
                self._joint_deferred = reason
                self.backend.stats.joint_deferred += 1
            elif reason:
                self._joint(self._recent_keyframes(), reason, timings)
            timings["backend"] = 1000 * (time.perf_counter() - ts)
        self.frames_processed += 1
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        timings.update(clock.read())
        timings["total"] = 1000 * (time.perf_counter() - t0)
        health = {}
        if track is not None:
            health = {"inlier_fraction": track.inlier_fraction, "rms_depth_m": track.rms_depth,
                      "rms_photo": track.rms_photo, "iterations": track.iterations,
                      "step_m": track.delta_from_prediction[0],
                      "step_rad": track.delta_from_prediction[1],
                      "weakest_constraint": weakest_constraint(track.information)}
        if self.backend is not None:
            health["loop_closures"] = self.backend.stats.loop_closures
        res = FrameResult(frame.index, frame.timestamp, pose_np, track is None or track.ok, is_kf,
                          len(self.map), added, pruned, timings, health)
        self.last_result = res
        return res

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # -- tracking ---------------------------------------------------------------------
    def _motion_prior(self, frame: RGBDFrame) -> Optional[np.ndarray]:
        """The camera's motion since the previous frame by the external odometry the two
        frames carry (meta "odom_camera_pose": camera-to-odom, 4x4), or None."""
        prev, self._odom_pose, self._odom_cov = self._odom_pose, None, None
        cur = frame.meta.get("odom_camera_pose")
        if cur is None:
            return None
        cur = np.asarray(cur, dtype=np.float64)
        if cur.shape != (4, 4) or not np.isfinite(cur).all():
            log.warning("frame %d: odom_camera_pose is not a finite 4x4 matrix; ignored", frame.index)
            return None
        self._odom_pose = cur
        cov = frame.meta.get("odom_camera_covariance")
        if cov is not None:
            cov = np.asarray(cov, dtype=np.float64)
            if cov.shape == (6, 6) and np.isfinite(cov).all() and (np.diag(cov) >= 0).all():
                self._odom_cov = cov
            else:
                log.warning("frame %d: odom_camera_covariance is not a finite 6x6 covariance; "
                            "its edge keeps the configured sigmas", frame.index)
        if prev is None or not self.cfg.tracking.use_motion_prior:
            return None
        return np.linalg.inv(prev) @ cur

    def _predict(self, motion: Optional[np.ndarray] = None) -> torch.Tensor:
        if self._reloc is not None:              # once: a lost frame's relocalisation
            (pred, then), self._reloc = self._reloc, None
            if then is not None and self._odom_pose is not None and self.cfg.tracking.use_motion_prior:
                # The answer is for an earlier frame (the query ran while frames went on):
                # the odometry carries it over the motion since.
                step = torch.as_tensor(np.linalg.inv(then) @ self._odom_pose, dtype=pred.dtype, device=pred.device)
                pred = se3.reorthonormalize(pred @ step)
            return pred
        last = self._poses[-1]
        if motion is not None:
            return se3.reorthonormalize(last @ torch.as_tensor(motion, dtype=last.dtype, device=last.device))
        t = self.cfg.tracking
        if (t.motion_model == "constant_velocity" and len(self._poses) >= 2 and self._velocity_trusted
                and self._lost_run < t.max_extrapolated_frames):
            vel = se3.inv(self._poses[-2]) @ last
            # Re-project onto SE(3): composing float32 poses (inv = transpose) otherwise
            # amplifies any non-orthogonality geometrically from frame to frame.
            return se3.reorthonormalize(last @ vel)
        return last.clone()

    def _K(self, intr: Intrinsics) -> torch.Tensor:
        """The intrinsics on the device, uploaded once rather than every frame."""
        if self._K_cache is None or self._K_cache[0] != intr:
            self._K_cache = (intr, intr.K(self.device))
        return self._K_cache[1]

    def _track(self, depth, rgb, K, intr: Intrinsics, clock: "StageClock",
               motion: Optional[np.ndarray] = None):
        pred = self._predict(motion)
        W, H = intr.width, intr.height
        with torch.no_grad():
            t0 = clock.now()
            ref = self.render_reference(pred, K, W, H)
            cur_levels, ref_levels = self.tracker.prepare(depth, rgb, K, ref.points[0], ref.normals[0],
                                                          ref.color[0], ref.alpha[0])
            clock.span("render_ref", t0)
            res = self.tracker.track(cur_levels, ref_levels, pred)
        if not res.ok:
            log.warning("tracking weak (inliers %.2f); keeping the prediction", res.inlier_fraction)
            return pred, res, ref
        return se3.reorthonormalize(res.pose), res, ref

    def render_reference(self, pose, K, width: int, height: int):
        """The map as the tracker aligns to it, rendered at `pose`: measured rows only, with
        centres and normals (tracking.reference_scale applied). Also used by
        benchmarks/track_bias.py, so it measures the reference tracking really uses."""
        params = self.map.params(measured_only=True, scale=self.cfg.tracking.reference_scale)
        out = render_views(self.rasterizer, params, pose, K, width, height, geometry=True)
        if self.cfg.tracking.surface_blend:
            out = self._blend_colour(params, out, pose, K, width, height)
        return out

    def _blend_colour(self, params, out, pose, K, width: int, height: int, background=None):
        """`out` with its colour blended over each surface under this configuration's
        render_blend_* settings (render.blend_surface_colour)."""
        return blend_surface_colour(self.rasterizer, params, out, pose, K, width, height, background=background,
                                    **self.cfg.surface_blend())

    def _reference_still_valid(self, track: Optional[TrackResult]) -> bool:
        """May a keyframe take co-visibility from the tracker's render of the map? Only
        when tracking moved little from the prediction that render was made at, and the
        render drew the Gaussians at their true extent."""
        m = self.cfg.mapping
        return (track is not None and track.ok and m.covis_reuse_max_step > 0
                and self.cfg.tracking.reference_scale == 1.0
                and track.delta_from_prediction[0] <= m.covis_reuse_max_step
                and track.delta_from_prediction[1] <= math.radians(m.covis_reuse_max_deg))

    def _keyframe_likely(self, index: int) -> bool:
        """Whether frame `index` will probably be a keyframe, before it is tracked: the last
        frame's motion continued (as the tracker predicts it) against the keyframe rule with
        a margin, since a missed guess costs the fill on the critical path and a wrong one
        only host time in the fill thread. 0.9: on 7-Scenes 0-299 (`gs4 run ... --frames 0:300
        --width 320 --height 240 --set mapping.fill_holes_ahead=always`) 39 of 41 keyframes
        predicted with 25 fills unused; 0.8 predicted 40 with 46 unused, and an unused fill
        can keep the worker from the next keyframe's."""
        if self._kf_pose_np is None or len(self.trajectory) < 2:
            return False
        a, b = self.trajectory[-2][2], self.trajectory[-1][2]
        dt, dr = se3.pose_distance(torch.from_numpy(self._kf_pose_np), torch.from_numpy(b @ np.linalg.inv(a) @ b))
        return self._is_keyframe(float(dt), float(dr), index, margin=0.9)

    def _is_keyframe(self, dt: float, dr: float, index: int, margin: float = 1.0) -> bool:
        """dt (m), dr (rad): the frame's distance to the last keyframe; margin scales the
        distance thresholds (not the frame interval)."""
        m = self.cfg.mapping
        return (dt > margin * m.keyframe_translation or math.degrees(dr) > margin * m.keyframe_rotation_deg
                or index - self.keyframes[-1].frame_index >= m.keyframe_max_interval)

    # -- back-end ---------------------------------------------------------------------
    def _backend_boundary(self, timings: Dict[str, float]):
        """Apply the newest pose-graph result (if any) and joint-optimise when it moved
        keyframes by more than the thresholds. Called between frames only."""
        ts = time.perf_counter()
        moved = self._apply_graph_update()
        if moved is None:
            return
        timings["correction"] = 1000 * (time.perf_counter() - ts)
        b = self.cfg.backend
        big = {k: m for k, m in moved.items()
               if m[0] > b.joint_trigger_translation or math.degrees(m[1]) > b.joint_trigger_rotation_deg}
        if big:
            top = sorted(big, key=lambda k: -(big[k][0] + big[k][1]))[: b.joint_top_k]
            self._joint(top, "correction", timings)

    def _take_relocalization(self):
        """The back-end's newest relocalisation becomes the next frame's prediction while
        tracking is still lost; one for a frame before this lost run, or arriving after
        tracking came back, is stale and dropped. The velocity restarts after the jump."""
        r = self.backend.poll_relocalization()
        if r is None:
            return
        if self._lost_run == 0 or r.frame_index < self._lost_from:
            log.debug("relocalisation of frame %d dropped: tracking is no longer lost there", r.frame_index)
            return
        last = self._poses[-1]
        self._reloc = (se3.orthonormalize(torch.as_tensor(r.pose, dtype=torch.float64)).to(last),
                       self._reloc_queries.get(r.frame_index))
        self._velocity_trusted = False
        self.backend.stats.reloc_applied += 1
        shift = float(np.linalg.norm(r.pose[:3, 3] - self.trajectory[-1][2][:3, 3]))
        log.info("relocalised: frame %d against keyframe %d, %.3f m from the held pose (%s)", r.frame_index,
                 r.keyframe, shift, ", ".join(f"{k} {v:.3g}" for k, v in r.stats.items()))

    def _apply_graph_update(self):
        """Corrections C = T_new T_current^-1 per keyframe, applied to the keyframes, the
        graph, every Gaussian anchored to them and the motion model; keyframes newer than
        the optimised graph move with its newest keyframe. Batched: one device transfer
        each way and one pass over the map, whatever the number of keyframes."""
        upd = self.backend.poll()
        if upd is None or not self.keyframes:
            return None
        dev = self.device
        ids = [kf.id for kf in self.keyframes]          # == 0..n-1
        in_upd = torch.tensor([k in upd.poses for k in ids])
        if not bool(in_upd.any()):
            return None
        cur = torch.stack([kf.pose.detach() for kf in self.keyframes]).double().cpu()
        new = cur.clone()
        new[in_upd] = torch.as_tensor(np.stack([upd.poses[k] for k in ids if k in upd.poses]), dtype=torch.float64)
        C = new @ se3.inv(cur)
        newest = max(k for k in ids if k in upd.poses)
        c_new = C[newest].clone()
        later = (~in_upd) & (torch.arange(len(ids)) > newest)
        C[later] = c_new
        new[later] = se3.orthonormalize(c_new @ cur[later])
        C[~(in_upd | later)] = torch.eye(4, dtype=torch.float64)
        moved_mask = in_upd | later
        new_dev = new.float().to(dev)
        for i in torch.nonzero(moved_mask).flatten().tolist():
            self.keyframes[i].pose = new_dev[i]
        self.map.apply_correction_table(C.float().to(dev), moved_mask.to(dev))
        self._move_motion_model(c_new.to(dev).float())
        dt, dr = se3.pose_distance(torch.eye(4, dtype=torch.float64), C[moved_mask])
        idx = torch.nonzero(moved_mask).flatten().tolist()
        moved = {ids[i]: (float(dt[n]), float(dr[n])) for n, i in enumerate(idx)}
        new_np = new.numpy()
        for i in idx:
            self.backend.set_pose(ids[i], new_np[i])
        self.correction_count += 1
        st = self.backend.stats
        st.corrections_applied += 1
        st.max_correction_m = max(st.max_correction_m, float(dt.max()) if dt.numel() else 0.0)
        self._sync()
        return moved

    def _tracking_trigger(self, track: Optional[TrackResult], index: int) -> str:
        """'motion' or 'residual' when tracking says the poses moved a lot, else ''."""
        b = self.cfg.backend
        if self.joint is None or track is None or not track.ok:
            return ""
        rms = track.rms_depth
        med = float(np.median(self._rms_hist)) if len(self._rms_hist) >= 5 else float("nan")
        if np.isfinite(rms):
            self._rms_hist.append(rms)
        if index - self._last_joint_frame < b.joint_min_interval:
            return ""
        if track.delta_from_prediction[0] > b.joint_trigger_step:
            return "motion"
        if np.isfinite(med) and np.isfinite(rms) and rms > b.joint_trigger_residual_ratio * med:
            return "residual"
        return ""

    def _move_motion_model(self, C: torch.Tensor):
        """Apply a world-frame correction to the last two poses, which the constant-velocity
        prediction of the next frame extrapolates from."""
        for i in (-1, -2):
            if len(self._poses) >= -i:
                self._poses[i] = se3.orthonormalize(C @ self._poses[i])

    def _recent_keyframes(self) -> List[int]:
        return [kf.id for kf in self.keyframes[-self.cfg.backend.joint_top_k:]]

    def joint_views(self, kf_ids: List[int]) -> List[JointView]:
        """The images the back-end kept for these keyframes (those that kept none are left
        out), at the keyframes' current poses."""
        dev = self.device
        views = []
        for k in kf_ids:
            node = self.backend.graph.nodes.get(k) if self.backend is not None else None
            if node is None or node.rgb is None:
                continue
            views.append(JointView(k, self.keyframes[k].pose, torch.from_numpy(node.rgb).to(dev).float() / 255.0,
                                   torch.from_numpy(node.depth).to(dev), torch.as_tensor(node.K, dtype=torch.float32)))
        return views

    def run_deferred(self) -> Optional[JointResult]:
        """The map-only joint step process() left for later (frame_waiting), on the newest
        keyframes now; None when none is pending. For a live driver's idle time, on the
        thread that calls process."""
        if not self._joint_deferred:
            return None
        reason, self._joint_deferred = self._joint_deferred, ""
        return self._joint(self._recent_keyframes(), f"{reason} (deferred)", {})   # run() syncs on CUDA

    def _joint(self, kf_ids: List[int], reason: str, timings: Dict[str, float]):
        """Few Adam steps on the visible Gaussians and these keyframes' poses; the new
        poses go back to the keyframes, the graph and (for the newest) the motion model."""
        if self.joint is None:
            return None
        views = self.joint_views(kf_ids)
        if not views:
            return None
        res = self.joint.run(self.map, self.rasterizer, views)
        if res is None:
            return None
        self._joint_deferred = ""              # this step covers the newest keyframes too
        self._last_joint_frame = self._frame_index
        newest = self.keyframes[-1].id
        for k, P in res.poses.items():
            old = self.keyframes[k].pose
            if torch.equal(P, old):          # a frozen pose: not even a rounding step through P inv(old)
                continue
            self.keyframes[k].pose = P
            self.backend.set_pose(k, P.double().cpu().numpy())
            if k == newest:
                self._move_motion_model(P @ se3.inv(old))
        self.correction_count += 1
        st = self.backend.stats
        st.joint_optimizations += 1
        st.joint_ms.append(res.ms)
        st.joint_reasons[reason] = st.joint_reasons.get(reason, 0) + 1
        timings["joint"] = timings.get("joint", 0.0) + res.ms
        return res

    def finish(self, timeout: Optional[float] = None):
        """End of a sequence: wait for the back-end's queued work and apply its result, then
        refine the map when backend.final_refine_rounds asks for it, then re-predict the
        keyframes' classes (final_semantics) on the map as it ends."""
        if self.backend is not None and self._poses:
            self.backend.wait_idle(timeout)
            self._backend_boundary({})
            if self.cfg.backend.final_refine_rounds > 0:
                self.refine_map()
        try:
            self.final_semantics()
        except Exception:  # noqa: BLE001 - the run's map and trajectory must still be written
            log.exception("final semantic pass failed; the map keeps the classes fused online")

    def refine_map(self, rounds: Optional[int] = None) -> Optional[Dict[str, float]]:
        """Adam on every field of the Gaussians the kept keyframes see, the poses fixed:
        `rounds` passes (default backend.final_refine_rounds) over all keyframes that kept
        their images, joint_top_k at a time, joint_iterations steps each, at the joint
        step's default rates, fitted to the blended view. Then colours go to tracking too
        and the Gaussians the steps made transparent are pruned. None when there is nothing
        to refine (back-end off, no images kept, rounds 0).

        Why: the online steps may not move the geometry without moving the trajectory, and
        colour alone converges within a few passes (room 902: held-out 24.27 -> 24.38 dB
        after six); with tracking over, every field may move (24.27 -> 28.05 after twelve)."""
        b = self.cfg.backend
        n = int(b.final_refine_rounds if rounds is None else rounds)
        if n <= 0 or self.backend is None or len(self.map) == 0:
            return None
        views = self.joint_views([kf.id for kf in self.keyframes])
        if not views:
            return None
        d = BackendConfig()
        rc = dataclasses.replace(b, joint_lr_pose=0.0, joint_lr_means=d.joint_lr_means,
                                 joint_lr_scales=d.joint_lr_scales, joint_lr_quats=d.joint_lr_quats,
                                 joint_lr_opacity=d.joint_lr_opacity, joint_lr_colors=d.joint_lr_colors,
                                 joint_colors_to_tracking=True)
        # Always fitted to the view as rendered and published (blended over each surface):
        # the online step may skip the blend to save time, a final pass need not, and fitted
        # to the plain composite the steps worked against the published view.
        opt = JointOptimizer(rc, blend=self.cfg.surface_blend())
        t0 = time.perf_counter()
        k = max(1, int(b.joint_top_k))
        start, end = [], []                      # the groups' losses, first and last pass
        compacted = 0
        for r in range(n):
            if r == n // 2 and b.final_compact_pixels > 0:
                compacted = compact(self.rasterizer, self.map, [kf.pose for kf in self.keyframes],
                                    self.intrinsics, b.final_compact_pixels)
            for i in range(0, len(views), k):
                res = opt.run(self.map, self.rasterizer, views[i:i + k])
                if res is not None and res.losses:
                    if r == 0:
                        start.append(res.losses[0])
                    if r == n - 1:
                        end.append(res.losses[-1])
        first = float(np.mean(start)) if start else float("nan")
        last = float(np.mean(end)) if end else float("nan")
        pruned = self.map.prune(self.cfg.mapping.prune_opacity)
        self._sync()
        ms = 1000 * (time.perf_counter() - t0)
        self.backend.stats.refine_ms.append(ms)
        self.backend.stats.refine_passes += n
        self.backend.stats.refine_compacted += compacted
        log.info("map refined: %d passes over %d keyframes in %.0f ms (mean view loss %.4f -> %.4f, "
                 "%d Gaussians pruned, %d compacted away)", n, len(views), ms, first, last, pruned, compacted)
        return {"rounds": n, "views": len(views), "ms": ms, "loss_first": first, "loss_last": last,
                "pruned": pruned, "compacted": compacted}

    def _anchor_inverse(self, kf: Keyframe) -> np.ndarray:
        """Inverse pose of the anchor keyframe, recomputed only when it or a correction
        changes (not once per frame: it is a device-to-host copy on the tracking path)."""
        key = (kf.id, self.correction_count)
        if self._anchor_inv[0] != key:
            self._anchor_inv = (key, np.linalg.inv(kf.pose.detach().double().cpu().numpy()))
        return self._anchor_inv[1]

    def final_trajectory(self) -> List[tuple]:
        """(timestamp, frame index, 4x4 c2w) per processed frame with every back-end
        correction so far: each frame rides on the keyframe it was tracked after."""
        if self.correction_count == 0:
            return list(self.trajectory)
        kp = {kf.id: kf.pose.detach().double().cpu().numpy() for kf in self.keyframes}
        return [(ts, idx, kp[a[0]] @ a[1]) for (ts, idx, _), a in zip(self.trajectory, self._anchors)]

    def backend_summary(self) -> Dict[str, object]:
        if self.backend is None:
            return {"enabled": False}
        return dict(enabled=True, synchronous=self.cfg.backend.synchronous, **self.backend.stats.summary())

    # -- mapping ----------------------------------------------------------------------
    def _depth_for_mapping(self, frame: RGBDFrame, depth: torch.Tensor, timings: Dict[str, float]):
        """(depth, inferred blocks, the same depth on the host): the keyframe's depth with
        holes filled by planes (mapping only; see depth_fill), and which stride blocks are
        mostly filled, not measured (None when nothing was filled). Measured depth beyond
        mapping.max_depth is dropped first, since mapping accepts filled depth up to
        fill_holes_max_depth."""
        m = self.cfg.mapping
        if m.fill_holes_min_area <= 0:
            return depth, None, frame.depth
        filled, mask, timings["fill"] = self.fill_ahead.take(frame.depth, frame.intrinsics.K_numpy(), m)
        out = torch.from_numpy(filled).to(depth.device, depth.dtype)
        if not mask.any():
            return out, None, filled
        return out, block_fraction(torch.from_numpy(mask).to(depth.device), m.stride) > 0.5, filled

    def _final_semantics_on(self) -> bool:
        return (self.nets is not None and self.cfg.network.final_semantics and self.nets.has_semantics()
                and self.cfg.network.final_semantics_max_keyframes > 0)

    def _keep_keyframe_images(self, kf_id: int, frame: RGBDFrame, depth_host: np.ndarray):
        """Hold a keyframe's colour (the frame's array, no copy) and mapping depth (in half
        precision: 2 mm steps at 4 m, nothing the head or the fusion gate can tell) on the
        host for the final semantic pass. Past the cap every second kept keyframe goes, the
        first and the newest staying, so those kept still span the whole run (dropping the
        oldest would leave a long mission's start with its online classes only)."""
        if not self._final_semantics_on():
            return
        self._kf_images[kf_id] = (frame.rgb, depth_host.astype(np.float16), frame.intrinsics.K_numpy())
        cap = int(self.cfg.network.final_semantics_max_keyframes)
        if len(self._kf_images) <= cap:
            return
        ids = list(self._kf_images)
        gone = ids[1:-1:2] if len(ids) > 2 else ids[:-1]
        for k in gone:
            del self._kf_images[k]
        if self._kf_images_dropped == 0:
            log.warning("final semantics: more than %d keyframes; every second kept keyframe's images are dropped "
                        "(those kept span the run; the others' classes stay as fused online; "
                        "network.final_semantics_max_keyframes)", cap)
        self._kf_images_dropped += len(gone)

    def forget_keyframe_images(self):
        """Drop what final_semantics keeps: a map put in this one's place (a loaded PLY) is
        not what the kept keyframes saw at their poses."""
        self._kf_images.clear()

    @torch.no_grad()
    def final_semantics(self) -> Optional[Dict[str, float]]:
        """Predict every kept keyframe's classes again with test-time augmentation
        (nets/semantic_tta) at its current pose and fuse them into the map anew, replacing
        the online evidence of the Gaussians they see (semantic_fusion.refuse_semantics).
        The open-vocabulary bank is then rebuilt from the new classes. None when off or
        when nothing is kept."""
        if not self._final_semantics_on() or not self._kf_images or len(self.map) == 0:
            return None
        t0 = time.perf_counter()
        views, kept = [], []
        for kf_id, (rgb, depth, K) in self._kf_images.items():
            kf = self.keyframes[kf_id]          # ids are positions in the list (reset clears both)
            c = torch.from_numpy(rgb).to(self.device).float() / 255.0
            d = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32)).to(self.device)
            k = torch.as_tensor(K, dtype=torch.float32, device=self.device)
            ev = self.nets.augmented_evidence(c, d, k)
            views.append((kf.pose, k, ev["grid_shape"], ev["depth"], ev["valid"], ev["log_probs"]))
            kept.append((kf.pose, k, d, c, kf.frame_index))
        rows = refuse_semantics(self.map, views, self.cfg.mapping)
        if self.vocab_encoder is not None and self.map.vocab is not None:
            # The bank's entries describe the classes the Gaussians had; start it again.
            self.map.vocab = None
            self.map.bank_id.fill_(-1)
            for pose, k, d, c, frame_index in kept:
                self._update_vocab(pose, k, d, c, frame_index, {})
        self._sync()
        ms = 1000 * (time.perf_counter() - t0)
        model = self.nets.final_semantics_name()
        self.final_semantics_stats = {"keyframes": len(views), "rows": rows, "ms": ms,
                                      "dropped_keyframes": self._kf_images_dropped, "model": model,
                                      "mirror": bool(self.cfg.network.final_semantics_mirror),
                                      "scales": self.nets.final_semantics_scales(),
                                      "head_weight": self.nets.head_weight()}
        log.info("final semantics: %d keyframes re-predicted by the %s with test-time augmentation, %d Gaussians "
                 "re-labelled in %.0f ms", len(views), model, rows, ms)
        return self.final_semantics_stats

    @torch.no_grad()
    def _map(self, depth, rgb, K, intr: Intrinsics, pose, labels, kf: Keyframe, frame_index: int,
             covis_render=None, inferred_blocks=None) -> int:
        m = self.cfg.mapping
        bg = self._block_gaussians(depth, rgb, K, *(() if labels is None else (labels,)))
        conf = block_confidence(bg, K, m.stride, intr.width, intr.height)
        select = blocks_to_insert(self.rasterizer, self.map, pose, K, intr.width, intr.height, m.stride, bg.depth,
                                  bg.valid, m.silhouette_threshold, m.front_margin, covis_render, inferred_blocks)
        if bg.labels is not None:
            fuse_semantics(self.map, pose, K, m, bg.grid_shape, bg.depth, bg.valid, bg.labels, len(self.map))
        n = int(select.sum())
        if n == 0:
            return 0
        means, log_scales, quats, colors, lab = to_world(bg, pose, select)
        sem = labels_to_logits(lab, self.cfg.num_classes) if lab is not None else None
        op = torch.full((n,), m.init_opacity, device=self.device)
        self.map.insert(means, log_scales, quats, torch.logit(op), colors, sem_logits=sem,
                        birth_frame=frame_index, keyframe_id=kf.id, obs_weight=conf[select],
                        inferred=None if inferred_blocks is None else inferred_blocks[select])
        return n

    # -- open vocabulary ----------------------------------------------------------------
    def _vocab_bank(self) -> Optional[VocabBank]:
        """The map's bank, made when missing (a new map, or one loaded from a file without
        it); a bank another encoder made (other name or size: its embeddings mean something
        else) is replaced and the map's ids cleared."""
        enc = self.vocab_encoder
        if enc is None:
            return None
        bank = self.map.vocab
        if bank is not None and (bank.dim != enc.dim or (bank.encoder and bank.encoder != enc.name)):
            log.warning("the map's vocabulary bank was made by encoder %r (%d-d), this pipeline's is %r "
                        "(%d-d): starting a new bank", bank.encoder, bank.dim, enc.name, enc.dim)
            bank = None
            self.map.bank_id.fill_(-1)
        ov = self.cfg.open_vocab
        if bank is None:
            bank = self.map.vocab = VocabBank(enc.dim, ov.merge_threshold, ov.max_entries)
        bank.merge_threshold, bank.max_entries = ov.merge_threshold, ov.max_entries
        bank.encoder = enc.name
        return bank

    def _update_vocab(self, pose, K, depth, rgb, frame_index: int, timings: Dict[str, float]):
        ts = time.perf_counter()
        try:
            assign_bank_ids(self.map, self._vocab_bank(), self.vocab_encoder, pose, K, depth, rgb,
                            self.cfg.mapping.stride, self.cfg.mapping.semantic_fusion_gate,
                            fresh=self.map.birth_frame == frame_index)
        except Exception:  # noqa: BLE001 - a plug-in encoder's failure must not stop SLAM
            if not self._vocab_failed:
                log.exception("open-vocabulary bank update failed; queries may miss this keyframe's regions")
                self._vocab_failed = True
        timings["vocab"] = 1000 * (time.perf_counter() - ts)

    def query(self, text: str, threshold: Optional[float] = None) -> QueryResult:
        """Relevance of every Gaussian to `text` (open_vocab.UnknownQuery when the encoder
        cannot read it)."""
        if self.vocab_encoder is None:
            raise RuntimeError("open-vocabulary queries are off (open_vocab.enabled, or no classes configured)")
        if threshold is None and self.cfg.open_vocab.threshold >= 0:
            threshold = self.cfg.open_vocab.threshold
        ov = self.cfg.open_vocab
        return query_map(self.map, self._vocab_bank(), self.vocab_encoder, text, threshold,
                         ov.instance_voxel, ov.instance_min_gaussians)

    def render_relevance(self, result: QueryResult, pose_c2w, intrinsics: Optional[Intrinsics] = None,
                         min_alpha: float = 0.5) -> np.ndarray:
        """A query's relevance seen from a pose: float32 HxW in [0, 1], NaN where the map
        shows nothing (silhouette below min_alpha). See render(query=...)."""
        return self.render(pose_c2w, intrinsics, query=result, min_alpha=min_alpha)["relevance"]

    # -- outputs ----------------------------------------------------------------------
    @torch.no_grad()
    def render(self, pose_c2w, intrinsics: Optional[Intrinsics] = None, semantics: bool = False,
               background=None, query: Optional[QueryResult] = None,
               min_alpha: float = 0.5) -> Dict[str, np.ndarray]:
        """Render the map at a pose: numpy color uint8, depth float32 m, alpha, labels uint8
        (semantics; 255 where the silhouette is below min_alpha) and, for a query,
        relevance float32 in [0, 1] (NaN there). The query rides along as one more channel
        of the same rasterisation: SegSplat renders one-hot bank ids and decodes them
        through the bank, and since decoding is linear, rendering each Gaussian's decoded
        score gives the same image in one channel instead of one per entry."""
        intr = intrinsics or self.intrinsics
        if intr is None:
            raise RuntimeError("no intrinsics yet: process a frame first or pass intrinsics")
        if query is not None and query.scores.shape[0] != len(self.map):
            raise ValueError("the query result is for another state of the map; query again")
        pose = torch.as_tensor(np.asarray(pose_c2w), dtype=torch.float32, device=self.device)
        bgt = None if background is None else torch.as_tensor(background, dtype=torch.float32, device=self.device)
        params = self.map.params(with_semantics=semantics)
        if query is not None:
            rel = query.scores.to(params.colors)[:, None]
            params.sem_probs = rel if params.sem_probs is None else torch.cat([params.sem_probs, rel], -1)
        extra = semantics or query is not None
        K = intr.K(self.device)
        r = render_views(self.rasterizer, params, pose, K, intr.width, intr.height, semantics=extra, background=bgt)
        r = self._blend_colour(params, r, pose, K, intr.width, intr.height, bgt)
        a = r.alpha[0]
        out = {
            "color": (r.color[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy(),
            "depth": r.depth[0].float().cpu().numpy(),
            "alpha": a.float().cpu().numpy(),
        }
        if semantics:
            lab = r.semantics[0][..., :self.map.num_classes].argmax(-1).to(torch.uint8)
            lab[a < min_alpha] = 255
            out["labels"] = lab.cpu().numpy()
        if query is not None:
            rel = (r.semantics[0][..., -1] / a.clamp(min=1e-6)).clamp(0, 1)
            out["relevance"] = torch.where(a >= min_alpha, rel, torch.full_like(rel, float("nan"))).float().cpu().numpy()
        return out
