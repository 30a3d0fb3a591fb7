"""The back-end service the pipeline talks to: keyframes in, pose corrections out.

The pipeline (tracking thread) calls `add_keyframe` and, at frame boundaries, `poll`.
Everything slow - ORB features, loop candidates, PnP and dense verification, the gtsam
optimisation - runs on one background thread (or inline with `synchronous`, for
deterministic tests and replays), so tracking of the next frame never waits for it.
A result carries absolute optimised keyframe poses; the pipeline turns them into
corrections against its *current* poses when it applies them, so a result that arrives
late, or two that arrive together, never double-correct.

Relocalisation (`request_relocalization`, `poll_relocalization`) runs on the same thread:
a lost frame is matched against every indexed keyframe and verified like a loop; at most
one request waits at a time, so a long loss never piles work up behind tracking.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Union

import cv2
import numpy as np

from ..config import BackendConfig, TrackingConfig
from .keyframe_graph import (Edge, KeyframeGraph, KeyframeNode, normalize_information, odometry_step_information,
                             relative)
from .loop_detector import LoopDetector, extract_features
from .pose_graph import GraphProcess, optimize

log = logging.getLogger(__name__)

IDLE_EXIT_S = 30.0


@dataclass
class GraphUpdate:
    """Optimised keyframe poses after a loop closure (absolute, camera-to-world)."""

    poses: Dict[int, np.ndarray]
    loop: Edge
    ms: float


@dataclass
class Relocalization:
    """A lost frame's pose found against a keyframe (camera-to-world, in the graph's frame
    as it stood when the query ran)."""

    frame_index: int
    pose: np.ndarray
    keyframe: int
    stats: Dict[str, float]
    ms: float


@dataclass
class BackendStats:
    keyframes: int = 0
    odom_prior_edges: int = 0               # external-odometry edges (backend.odom_prior_edges)
    odom_prior_covariance_edges: int = 0    # of them, weighed by the odometry's covariance
    loop_queries: int = 0
    loop_candidates_verified: int = 0
    loop_closures: int = 0                  # accepted and still in the graph
    loop_outliers: int = 0                  # accepted by verification, dropped by the graph
    loop_rejections: Dict[str, int] = field(default_factory=dict)
    loop_detect_ms: List[float] = field(default_factory=list)   # per query, features to verdict
    graph_opt_ms: List[float] = field(default_factory=list)
    corrections_applied: int = 0
    max_correction_m: float = 0.0
    joint_optimizations: int = 0
    joint_ms: List[float] = field(default_factory=list)
    joint_reasons: Dict[str, int] = field(default_factory=dict)
    joint_deferred: int = 0                 # map-only steps a waiting frame put off (live driver)
    refine_ms: List[float] = field(default_factory=list)   # per final map refinement
    refine_passes: int = 0
    refine_compacted: int = 0               # Gaussians map_compaction dropped
    reloc_requests: int = 0                 # queued (not counting those dropped while one waited)
    reloc_dropped: int = 0                  # requests made while one was still pending
    reloc_candidates_verified: int = 0
    reloc_successes: int = 0
    reloc_applied: int = 0                  # taken by the pipeline as a prediction (still lost)
    reloc_ms: List[float] = field(default_factory=list)    # per query, features to verdict

    def summary(self) -> Dict[str, object]:
        def stat(v):
            return {"count": len(v), "mean_ms": float(np.mean(v)) if v else 0.0,
                    "median_ms": float(np.median(v)) if v else 0.0, "first_ms": float(v[0]) if v else 0.0,
                    "max_ms": float(np.max(v)) if v else 0.0, "total_ms": float(np.sum(v)) if v else 0.0}
        return {"keyframes": self.keyframes, "odom_prior_edges": self.odom_prior_edges,
                "odom_prior_covariance_edges": self.odom_prior_covariance_edges,
                "loop_queries": self.loop_queries,
                "loop_candidates_verified": self.loop_candidates_verified,
                "loop_closures": self.loop_closures, "loop_outliers": self.loop_outliers,
                "loop_rejections": dict(self.loop_rejections),
                "loop_detection": stat(self.loop_detect_ms), "graph_optimization": stat(self.graph_opt_ms),
                "corrections_applied": self.corrections_applied, "max_correction_m": self.max_correction_m,
                "joint_optimizations": self.joint_optimizations, "joint_optimization": stat(self.joint_ms),
                "joint_reasons": dict(self.joint_reasons), "joint_deferred": self.joint_deferred,
                "final_refine": stat(self.refine_ms), "final_refine_passes": self.refine_passes,
                "final_refine_compacted": self.refine_compacted,
                "reloc_requests": self.reloc_requests, "reloc_dropped": self.reloc_dropped,
                "reloc_candidates_verified": self.reloc_candidates_verified,
                "reloc_successes": self.reloc_successes,
                "reloc_applied": self.reloc_applied, "relocalization": stat(self.reloc_ms)}


@dataclass
class _Job:
    kf_id: int
    gray: np.ndarray
    depth: np.ndarray
    K: np.ndarray


@dataclass
class _RelocJob:
    node: KeyframeNode      # the query: stored-size images and intrinsics, like a keyframe
    gray: np.ndarray        # full size, for the features
    depth: np.ndarray
    K: np.ndarray


def _newest(q: "queue.Queue"):
    """Drain q; its last item, or None."""
    last = None
    while True:
        try:
            last = q.get_nowait()
        except queue.Empty:
            return last


def _full_size_inputs(rgb: np.ndarray, depth: np.ndarray, K: np.ndarray):
    """What feature extraction reads: full-size gray, float32 depth, float64 K."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), np.asarray(depth, np.float32), np.asarray(K, np.float64)


class Backend:
    def __init__(self, cfg: BackendConfig, tracking: TrackingConfig):
        self.cfg = cfg
        self.tracking = tracking
        self.graph = KeyframeGraph(cfg.max_keyframe_images)
        self.detector = LoopDetector(cfg, tracking)
        self.stats = BackendStats()
        self._jobs: "queue.Queue[Optional[Union[_Job, _RelocJob]]]" = queue.Queue()
        self._results: "queue.Queue[GraphUpdate]" = queue.Queue()
        self._reloc_results: "queue.Queue[Relocalization]" = queue.Queue()
        self._reloc_pending = threading.Event()
        self._indexed: set = set()      # keyframe ids in the detector's index (worker thread only)
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._last_id: Optional[int] = None
        self._error: Optional[BaseException] = None
        self._lock = threading.Lock()
        self._graph_proc: Optional[GraphProcess] = None
        bad = {k: getattr(cfg, k) for k in ("odom_prior_sigma", "odom_prior_sigma_deg") if not getattr(cfg, k) > 0}
        if bad:
            raise ValueError(f"backend odometry-prior sigmas must be > 0: {bad}")
        # (rho, phi): the external odometry's step uncertainty, metres and radians.
        self._odom_prior_info = np.diag([cfg.odom_prior_sigma ** -2] * 3
                                        + [np.radians(cfg.odom_prior_sigma_deg) ** -2] * 3)

    # -- tracking-thread side ------------------------------------------------------------
    def _stored_view(self, rgb: np.ndarray, depth: np.ndarray, K: np.ndarray):
        """(rgb, depth, K) at keyframe_image_width, the size keyframes are kept and
        verified at (no copy kept of the caller's arrays)."""
        h, w = depth.shape
        sw = min(int(self.cfg.keyframe_image_width), w)
        sh = int(round(h * sw / w))
        s_rgb = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA) if sw != w else rgb.copy()
        s_depth = cv2.resize(depth, (sw, sh), interpolation=cv2.INTER_NEAREST) if sw != w else depth.copy()
        sx, sy = sw / w, sh / h
        Ks = np.array([[K[0, 0] * sx, 0, (K[0, 2] + 0.5) * sx - 0.5],
                       [0, K[1, 1] * sy, (K[1, 2] + 0.5) * sy - 0.5], [0, 0, 1.0]])
        return s_rgb, s_depth.astype(np.float32), Ks

    def add_keyframe(self, kf_id: int, frame_index: int, timestamp: float, pose: np.ndarray,
                     rgb: np.ndarray, depth: np.ndarray, K: np.ndarray,
                     information: Optional[np.ndarray], odom_pose: Optional[np.ndarray] = None,
                     odom_covariance: Optional[np.ndarray] = None):
        """Register a keyframe (full-size uint8 rgb and float32 depth, numpy) with the
        odometry edge from the previous keyframe; its loop query is queued.

        odom_pose (4x4 camera-to-odom of an external odometry at this keyframe, or None):
        when the previous keyframe has one too, their relative motion becomes a second
        edge between them ("odom_prior"). Only that motion is used, so the odometry's own
        frame and its drift before the previous keyframe do not matter. odom_covariance
        (6x6 over the camera's position and rotation about the odom frame's axes, or None)
        weighs that edge when backend.odom_prior_use_covariance is on."""
        c = self.cfg
        s_rgb, s_depth, Ks = self._stored_view(rgb, depth, K)
        pose = np.asarray(pose, dtype=np.float64)
        node = KeyframeNode(kf_id, frame_index, timestamp, pose.copy(), s_rgb, s_depth, Ks,
                            odom_pose=None if odom_pose is None else np.array(odom_pose, dtype=np.float64),
                            odom_covariance=None if odom_covariance is None
                            else np.array(odom_covariance, dtype=np.float64))
        with self.graph.lock:
            prev = self.graph.nodes.get(self._last_id) if self._last_id is not None else None
            self.graph.add_keyframe(node)
            if prev is not None:
                self.graph.add_edge(Edge(prev.id, kf_id, relative(prev.pose, pose),
                                         normalize_information(information, c.odom_sigma), "odom"))
                if c.odom_prior_edges and prev.odom_pose is not None and node.odom_pose is not None:
                    self.graph.add_edge(Edge(prev.id, kf_id, relative(prev.odom_pose, node.odom_pose),
                                             self._odom_prior_information(prev, node), "odom_prior"))
                    self.stats.odom_prior_edges += 1
        self._last_id = kf_id
        self.stats.keyframes += 1
        if not c.loop_closure:
            return
        self._submit(_Job(kf_id, *_full_size_inputs(rgb, depth, K)))

    def _odom_prior_information(self, prev: KeyframeNode, node: KeyframeNode) -> np.ndarray:
        """The odometry edge's information: the configured sigmas, or with
        odom_prior_use_covariance what the odometry's covariance gained over the step
        between the two keyframes, per direction where it gained (see
        odometry_step_information)."""
        if not (self.cfg.odom_prior_use_covariance and prev.odom_covariance is not None
                and node.odom_covariance is not None):
            return self._odom_prior_info.copy()
        info, used = odometry_step_information(prev.odom_covariance, node.odom_covariance, prev.odom_pose,
                                               node.odom_pose, self._odom_prior_info)
        self.stats.odom_prior_covariance_edges += int(used)
        return info

    def request_relocalization(self, frame_index: int, rgb: np.ndarray, depth: np.ndarray,
                               K: np.ndarray) -> bool:
        """Queue a relocalisation query for a lost frame (full-size uint8 rgb, float32
        depth); its answer comes from poll_relocalization(). False (dropped) while an
        earlier query is still pending: one at a time keeps the worker's queue short."""
        if self._reloc_pending.is_set():
            self.stats.reloc_dropped += 1
            return False
        self._reloc_pending.set()
        self.stats.reloc_requests += 1
        s_rgb, s_depth, Ks = self._stored_view(rgb, depth, K)
        node = KeyframeNode(-1, frame_index, 0.0, np.eye(4), s_rgb, s_depth, Ks)
        self._submit(_RelocJob(node, *_full_size_inputs(rgb, depth, K)))
        return True

    def poll_relocalization(self) -> Optional[Relocalization]:
        """The newest relocalisation found since the last call, if any."""
        return _newest(self._reloc_results)

    def _submit(self, job):
        if self.cfg.synchronous:
            self._do(job)
        else:
            self._jobs.put(job)          # before _ensure_thread: an idle thread about to exit
            self._ensure_thread()        # re-checks the queue under the lock

    def poll(self) -> Optional[GraphUpdate]:
        """The newest finished graph update, if any (older ones are superseded: poses are
        absolute and every optimisation uses every loop found so far)."""
        if self._error is not None:
            err, self._error = self._error, None
            log.error("back-end thread failed: %s", err)
        return _newest(self._results)

    def wait_idle(self, timeout: Optional[float] = None) -> bool:
        """Block until every queued keyframe is processed (end of a sequence)."""
        if self._thread is None:
            return True
        t0 = time.perf_counter()
        while self._jobs.unfinished_tasks:
            if timeout is not None and time.perf_counter() - t0 > timeout:
                return False
            time.sleep(0.005)
        return True

    def set_pose(self, kf_id: int, pose: np.ndarray):
        """Feed a pose changed outside the graph (joint optimisation) back to its node."""
        if kf_id in self.graph.nodes:
            self.graph.set_pose(kf_id, pose)

    def correct(self, corrections: Dict[int, np.ndarray]):
        self.graph.correct(corrections)

    def close(self):
        t = self._thread
        if t is not None:
            self._stop.set()
            self._jobs.put(None)
            t.join(timeout=10)
            self._thread = None
        if self._graph_proc is not None:
            self._graph_proc.close()
            self._graph_proc = None
        while True:                      # drop what is left (and the stop marker)
            try:
                self._jobs.get_nowait()
                self._jobs.task_done()
            except queue.Empty:
                break
        self._reloc_pending.clear()

    # -- worker side ---------------------------------------------------------------------
    def _optimize(self, poses, edges):
        c = self.cfg
        args = (poses, edges, c.loop_robust, c.loop_robust_k, c.optimize_iterations, c.loop_max_chi2)
        if c.synchronous or not c.optimize_in_subprocess:
            return optimize(*args)
        if self._graph_proc is None:
            self._graph_proc = GraphProcess()
        try:
            return self._graph_proc.optimize(*args)
        except Exception as e:  # noqa: BLE001 - a broken child must not lose the loop
            log.warning("pose-graph child process failed (%s); optimising in this process", e)
            return optimize(*args)

    def _ensure_thread(self):
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, daemon=True, name="gs4-backend")
            self._thread.start()

    def _run(self):
        # The thread ends after a while without work (a pipeline dropped without close()
        # leaves nothing running); add_keyframe starts a new one on demand.
        while not self._stop.is_set():
            try:
                job = self._jobs.get(timeout=IDLE_EXIT_S)
            except queue.Empty:
                with self._lock:
                    if self._jobs.empty():
                        self._thread = None
                        return
                continue
            try:
                if job is None:
                    return
                self._do(job)
            except Exception as e:  # noqa: BLE001 - reported through poll(), never kills tracking
                self._error = e
                log.exception("back-end job for keyframe %s failed", getattr(job, "kf_id", "(relocalisation)"))
            finally:
                self._jobs.task_done()

    def _do(self, job):
        if isinstance(job, _RelocJob):
            try:
                self._relocalize(job)
            finally:
                self._reloc_pending.clear()
        else:
            self._process(job)

    def _index(self, kf_id: int, feats):
        self.detector.add_to_index(kf_id, feats)
        self._indexed.add(kf_id)

    def _drop_gone(self, nodes: Dict[int, KeyframeNode]):
        """Evicted keyframes (images and features dropped) leave the index."""
        gone = [k for k, n in nodes.items() if k in self._indexed and n.features is None and n.rgb is None]
        if gone:
            self.detector.drop_from_index(gone)
            self._indexed.difference_update(gone)

    def _relocalize(self, job: _RelocJob):
        """Rank every indexed keyframe by appearance votes, verify the best few with PnP
        and dense alignment, and post the first accepted pose."""
        c = self.cfg
        t0 = time.perf_counter()
        with self.graph.lock:
            nodes = dict(self.graph.nodes)
        if not c.loop_closure:
            # No loop queries feed the index: features of the keyframes that still hold
            # images, from those (stored-size) images, once each.
            for k, n in nodes.items():
                rgb, depth = n.rgb, n.depth       # local references: eviction may clear them
                if k not in self._indexed and rgb is not None and depth is not None:
                    feats = extract_features(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), depth, n.K, c.orb_features, n.K)
                    n.features = feats
                    self._index(k, feats)
        self._drop_gone(nodes)
        query = job.node
        query.features = extract_features(job.gray, job.depth, job.K, c.orb_features, query.K)
        found = None
        for cand_id, _ in self.detector.relocalization_candidates(query.features, c.max_candidates):
            cand = nodes.get(cand_id)
            if cand is None:
                continue
            self.stats.reloc_candidates_verified += 1
            v = self.detector.verify(cand, query)
            if v.accepted:
                found = (cand, v)
                break
            log.debug("relocalisation of frame %d against keyframe %d rejected: %s", query.frame_index,
                      cand_id, v.reason)
        ms = 1000 * (time.perf_counter() - t0)
        self.stats.reloc_ms.append(ms)
        if found is None:
            return
        cand, v = found
        self.stats.reloc_successes += 1
        self._reloc_results.put(Relocalization(query.frame_index, cand.pose @ v.T_ij, cand.id, v.stats, ms))

    def _process(self, job: _Job):
        c = self.cfg
        t0 = time.perf_counter()
        node = self.graph.nodes.get(job.kf_id)
        if node is None or node.rgb is None:
            return
        feats = extract_features(job.gray, job.depth, job.K, c.orb_features, node.K)
        node.features = feats
        with self.graph.lock:
            nodes = dict(self.graph.nodes)
        self.stats.loop_queries += 1
        accepted = None
        for cand_id, score in self.detector.candidates(node, nodes):
            self.stats.loop_candidates_verified += 1
            v = self.detector.verify(nodes[cand_id], node)
            if v.accepted:
                accepted = Edge(cand_id, node.id, v.T_ij, v.information, "loop", v.stats)
                break
            self.stats.loop_rejections[v.reason] = self.stats.loop_rejections.get(v.reason, 0) + 1
            log.debug("loop candidate %d -> %d rejected: %s (%s)", cand_id, node.id, v.reason,
                      ", ".join(f"{k} {x:.3g}" for k, x in v.stats.items()))
        self._index(node.id, feats)
        self._drop_gone(nodes)
        self.stats.loop_detect_ms.append(1000 * (time.perf_counter() - t0))
        if accepted is None:
            return
        self.graph.add_edge(accepted)
        self.stats.loop_closures += 1
        log.info("loop closure: keyframe %d -> %d (%s)", accepted.i, accepted.j,
                 ", ".join(f"{k} {v:.3g}" for k, v in accepted.stats.items()))
        t1 = time.perf_counter()
        poses, edges = self.graph.snapshot()
        res = self._optimize(poses, edges)
        ms = 1000 * (time.perf_counter() - t1)
        if res.outliers:
            bad = {(edges[n].i, edges[n].j) for n in res.outliers}
            with self.graph.lock:
                for e in self.graph.edges:
                    if e.kind == "loop" and (e.i, e.j) in bad:
                        e.kind = "rejected"
            self.stats.loop_closures -= sum(1 for n in res.outliers)
            self.stats.loop_outliers += len(res.outliers)
            log.warning("pose graph dropped %d inconsistent loop edge(s): %s", len(res.outliers), sorted(bad))
        self.stats.graph_opt_ms.append(ms)
        self._results.put(GraphUpdate(res.poses, accepted, ms))
