"""gs4_node: the rclpy node that drives SLAMPipeline from synchronised RGB-D topics.

Threads: one single-threaded executor runs subscriptions, services and the diagnostics
timer (see make_executor for why not rclpy's multi-threaded one); one worker thread owns
the pipeline. Sensor callbacks only synchronise messages and put the newest
set into a single slot (an unprocessed set is overwritten and counted as dropped), so no
GPU work ever runs in a callback and memory does not grow with the input rate. Decoding
happens on the worker, so frames that end up dropped are never decoded. Services hand
their work to the worker (FrameWorker.post, awaited by a coroutine so the executor keeps
going), so nothing touches the pipeline concurrently. Map clouds and rendered views are
produced by the worker between frames at their configured rates.
"""
from __future__ import annotations

import collections
import gc
import logging
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Pose, PoseArray, PoseStamped
from nav_msgs.msg import Odometry, Path
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rcl_interfaces.msg import SetParametersResult
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import String
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from ..core.config import PipelineConfig
from ..core.frame import FrameError, RGBDFrame
from ..core.open_vocab import UnknownQuery
from ..core.pipeline import SLAMPipeline
from . import conversions as conv
from .markers import keyframe_graph_markers, query_object_markers
from .params import (NODE_PARAM_NAMES, PARAMS_BY_NAME, PIPELINE_PREFIX, check_node_params, coerce,
                     declare_all, expand_path, read_node_params, read_pipeline_config)
from .qos import image_out_qos, input_qos, latched_qos, stream_qos
from .sync import ApproxTimeSync, SyncMonitor
from .tf import TfOutput, inv, link_from_optical, map_transform, odom_camera_covariance, odom_camera_pose
from .worker import FrameWorker, OutputThread, name_os_thread, output_due

DEFAULT_OPTICAL_FRAME = "camera_color_optical_frame"
BAD_COVARIANCE = 9999.0  # rtabmap's marker for a pose that should not be trusted
REFINE_ROUNDS = 12       # ~/refine_map's passes when pipeline.backend.final_refine_rounds is 0


@dataclass
class SyncedSet:
    """What a callback hands to the worker: raw messages, decoded later on the worker."""

    color: Any
    depth: Any
    labels: Any
    info: Any
    stamp_ns: int
    received: float          # time.monotonic() when the set was complete
    odom_prior: Optional[dict] = None


@dataclass
class Stats:
    received: List[int] = field(default_factory=lambda: [0, 0, 0])
    synced: int = 0
    paused_skipped: int = 0
    rejected: Dict[str, int] = field(default_factory=lambda: collections.defaultdict(int))
    processed: int = 0
    tracking_lost: int = 0
    keyframes: int = 0
    sync_arrivals: Deque[float] = field(default_factory=lambda: collections.deque(maxlen=120))
    done_times: Deque[float] = field(default_factory=lambda: collections.deque(maxlen=120))
    latency_ms: Deque[float] = field(default_factory=lambda: collections.deque(maxlen=200))
    timings: Deque[Dict[str, float]] = field(default_factory=lambda: collections.deque(maxlen=30))
    last_error: str = ""


def _rate(times) -> float:
    """Events per second over the deque of monotonic times (last 10 s)."""
    if len(times) < 2:
        return 0.0
    now = time.monotonic()
    recent = [t for t in times if now - t <= 10.0]
    if len(recent) < 2 or recent[-1] <= recent[0]:
        return 0.0
    return (len(recent) - 1) / (recent[-1] - recent[0])


class GS4Node(Node):
    _NO_INFO = ("no CameraInfo received yet on color/camera_info or depth/camera_info "
                "(remap camera_info to your driver's topic)")

    def __init__(self, **kwargs):
        super().__init__("gs4_node", **kwargs)
        declare_all(self)
        self.p = read_node_params(self)
        self._log_bridge = _RosLogBridge(self.get_logger())
        pkg_log = logging.getLogger("gs4_ros")
        pkg_log.addHandler(self._log_bridge)
        pkg_log.setLevel(logging.INFO)
        pkg_log.propagate = False
        conv.USE_CV_BRIDGE = bool(self.p["use_cv_bridge"])
        self.cfg: PipelineConfig = read_pipeline_config(self)
        self._cfg_changed = False
        self.pipe = SLAMPipeline(self.cfg)
        self.stats = Stats()
        self._warned: Dict[str, float] = {}
        self._traced: set = set()          # worker errors already logged with their traceback
        self._paused = bool(self.p["start_paused"])
        self._info: List[Optional[CameraInfo]] = [None, None]     # colour, depth
        self._pending: Optional[SyncedSet] = None                 # set waiting for a CameraInfo
        self._static_tf: Dict[tuple, np.ndarray] = {}
        self._odom_hist: Deque[tuple] = collections.deque(maxlen=200)
        # worker-thread state
        self._index = 0
        self._last_stamp_ns: Optional[int] = None
        self._last_pose: Optional[np.ndarray] = None
        self._last_pose_stamp_ns = 0
        self._last_intr = None
        self._optical_frame = self.p["camera_frame"] or DEFAULT_OPTICAL_FRAME
        self._path: List[PoseStamped] = []
        self._seen_corrections = 0
        self._map_version = 0
        self._published_map_version = -1
        self._rendered = (None, -1)
        self._next_path = self._next_map = self._next_render = self._next_graph = 0.0
        self._graph_published = None             # _graph_state() of the last ~/keyframe_graph
        self._path_dirty = False
        # Open-vocabulary query: the text stands until replaced (an empty one clears it) and
        # its outputs follow the map as it grows. Written by the callback, read by the worker.
        self._query_text = ""
        self._query_version = 0
        self._query_done = (-1, -1)        # (query version, map version) last published
        self._query_cache = None           # (query version, map version, len(map), result)

        # Groups matter if the node is composed into a multi-threaded executor, and for the
        # services that wait on the worker (g_work): they are coroutines, and their group
        # stays taken until one finishes, so they get their own and pause, resume and
        # ~/query (g_srv) still answer meanwhile.
        g_sensor = MutuallyExclusiveCallbackGroup()
        g_srv = MutuallyExclusiveCallbackGroup()
        g_work = MutuallyExclusiveCallbackGroup()
        g_timer = MutuallyExclusiveCallbackGroup()

        # outputs
        self.pub_pose = self.create_publisher(PoseStamped, "~/pose", stream_qos())
        self.pub_odom = self.create_publisher(Odometry, "~/odom", stream_qos())
        self.pub_path = self.create_publisher(Path, "~/path", latched_qos())
        self.pub_map = self.create_publisher(PointCloud2, "~/map_cloud", latched_qos())
        self.pub_sem = self.create_publisher(PointCloud2, "~/semantic_cloud", latched_qos())
        self.pub_rcolor = self.create_publisher(Image, "~/render/color", image_out_qos())
        self.pub_rdepth = self.create_publisher(Image, "~/render/depth", image_out_qos())
        self.pub_rsem = self.create_publisher(Image, "~/render/semantic", image_out_qos())
        self.pub_qcloud = self.create_publisher(PointCloud2, "~/query/cloud", latched_qos())
        self.pub_qrel = self.create_publisher(Image, "~/query/relevance", image_out_qos())
        self.pub_qmarkers = self.create_publisher(MarkerArray, "~/query/markers", latched_qos())
        self.pub_qposes = self.create_publisher(PoseArray, "~/query/poses", latched_qos())
        self.pub_graph = self.create_publisher(MarkerArray, "~/keyframe_graph", latched_qos())
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", stream_qos())
        need_lookup = bool(self.p["base_frame"]) or self.p["tf_mode"] == "map_to_odom"
        self.tf = TfOutput(self, need_lookup)
        if self.p["publish_tf"] and self.tf.backend == "off":
            self.get_logger().warn("TF broadcasting is off: tf2_ros/tf2_msgs are not installed. "
                                   "Poses are still published on ~/pose and ~/odom.")

        # inputs
        qos = input_qos(self.p["input_qos"], int(self.p["input_queue_depth"]))
        topics = ["color/image_raw", "depth/image_raw"]
        if self.p["subscribe_labels"]:
            topics.append("labels/image_raw")
        self._n_inputs = len(topics)
        self._monitor = SyncMonitor(self._n_inputs, 3 * int(self.p["sync_queue_size"]),
                                    int(self.p["sync_queue_size"]))
        slop = float(self.p["approx_sync_max_interval"]) if self.p["approx_sync"] else 0.0
        self._mf_subs = None
        self._sync = None
        self.sync_backend = "builtin"
        try:
            import message_filters as mf
            self._mf_subs = [mf.Subscriber(self, Image, t, qos_profile=qos, callback_group=g_sensor)
                             for t in topics]
            if self.p["approx_sync"]:
                self._mf_sync = mf.ApproximateTimeSynchronizer(
                    self._mf_subs, int(self.p["sync_queue_size"]), slop)
            else:
                self._mf_sync = mf.TimeSynchronizer(self._mf_subs, int(self.p["sync_queue_size"]))
            self._mf_sync.registerCallback(self._guard(self._on_synced))
            for i, s in enumerate(self._mf_subs):
                s.registerCallback(self._guard(lambda m, i=i: self._note_input(i, m), "note_input"))
            self.sync_backend = "message_filters"
        except ImportError:
            self._sync = ApproxTimeSync(self._n_inputs, int(self.p["sync_queue_size"]), slop,
                                        self._on_synced, on_no_match=self._warn_skew)
            self._img_subs = [
                self.create_subscription(Image, t, self._guard(lambda m, i=i: self._on_image(i, m), "on_image"), qos,
                                         callback_group=g_sensor)
                for i, t in enumerate(topics)]
        self._info_subs = [
            self.create_subscription(CameraInfo, t, self._guard(lambda m, i=i: self._on_info(i, m), "on_info"), qos,
                                     callback_group=g_sensor)
            for i, t in enumerate(("color/camera_info", "depth/camera_info"))]
        if self.p["subscribe_odom_prior"]:
            self._odom_sub = self.create_subscription(Odometry, "odom_prior", self._guard(self._on_odom_prior),
                                                      qos, callback_group=g_sensor)

        self.create_subscription(String, "~/query", self._guard(self._on_query), stream_qos(), callback_group=g_srv)

        # services
        # Wakes the executor when the worker has run a service's request (a trigger is
        # the thread-safe way in; the awaiting coroutine is resumed on the next loop).
        # Its own group: the executor leaves out of its wait set whatever belongs to a
        # taken group, and g_work is taken while the service waits.
        self._worker_done = self.create_guard_condition(lambda: None, callback_group=ReentrantCallbackGroup())
        self.create_service(Trigger, "~/save_map", self._srv_save, callback_group=g_work)
        self.create_service(Trigger, "~/load_map", self._srv_load, callback_group=g_work)
        self.create_service(Trigger, "~/reset", self._srv_reset, callback_group=g_work)
        self.create_service(Trigger, "~/refine_map", self._srv_refine, callback_group=g_work)
        self.create_service(Trigger, "~/pause", self._srv_pause, callback_group=g_srv)
        self.create_service(Trigger, "~/resume", self._srv_resume, callback_group=g_srv)

        self.add_on_set_parameters_callback(self._validate_params)
        self.add_post_set_parameters_callback(self._apply_params)

        self.worker = FrameWorker(self._process, idle=self._idle, on_error=self._worker_error)
        self.outputs = OutputThread(on_error=self._worker_error).start()
        self._diag_timer = self.create_timer(1.0 / max(1e-3, float(self.p["diagnostics_rate_hz"]))
                                             if self.p["diagnostics_rate_hz"] > 0 else 1e6,
                                             self._guard(self._publish_diagnostics, counts_as_rejected=False),
                                             callback_group=g_timer)
        if self.p["load_map_on_start"]:
            ok, msg = self._load_map()
            self._log_result(ok, msg)
        # Everything built so far (torch, rclpy, the pipeline) lives as long as the node:
        # out of the collector's reach, a full collection scans only newer objects instead
        # of pausing the worker for tens of milliseconds.
        gc.collect()
        gc.freeze()
        self.worker.start()
        self.get_logger().info(
            f"gs4_node ready: device {self.pipe.device}, renderer {type(self.pipe.rasterizer).__name__}, "
            f"sync {self.sync_backend} (slop {slop * 1000:.0f} ms, queue {self.p['sync_queue_size']}), "
            f"image decoder {conv.decoder_name()}, input QoS {self.p['input_qos']}, TF {self.tf.backend}"
            f"{' (paused)' if self._paused else ''}")

    # ------------------------------------------------------------------ logging helpers
    def _warn_every(self, key: str, msg: str, period: float = 5.0, error: bool = False):
        """Log at most once per `period` seconds per key (a bad stream must not flood)."""
        now = time.monotonic()
        if now - self._warned.get(key, -1e9) >= period:
            self._warned[key] = now
            if error:
                self.get_logger().error(msg)
            else:
                self.get_logger().warn(msg)

    def _log_result(self, ok: bool, msg: str):
        # Separate call sites: rclpy refuses one call site logging at two severities.
        if ok:
            self.get_logger().info(msg)
        else:
            self.get_logger().error(msg)

    def _reject(self, key: str, msg: str):
        self.stats.rejected[key] += 1
        self.stats.last_error = msg
        # Throttle per reason (the text without its numbers), so distinct problems all get
        # logged while a repeating one (every frame of a bad stream) does not flood.
        self._warn_every(f"reject:{key}:{_kind(msg)}", f"skipping frame: {msg} "
                         f"({self.stats.rejected[key]} skipped for this reason so far)")

    def _guard(self, fn, name: str = "", counts_as_rejected: bool = True):
        """A callback that cannot stop the node: an exception escaping a callback ends
        rclpy's spin, and with it SLAM. It is logged (rate-limited) and, for a message,
        counted as rejected, and the message skipped."""
        name = name or getattr(fn, "__name__", "callback").lstrip("_")

        def guarded(*args):
            try:
                return fn(*args)
            except Exception as e:  # noqa: BLE001 - one bad message must not end the node
                if counts_as_rejected:
                    self.stats.rejected["callback_error"] += 1
                self.stats.last_error = f"{name}: {type(e).__name__}: {e}"
                self._warn_every(f"callback:{name}", f"{name} failed on a message, skipped: "
                                 f"{type(e).__name__}: {e}", error=True)
        return guarded

    def _worker_error(self, e: BaseException):
        if not self.context.ok():
            # rclpy's SIGINT handler shut the context down while a frame's outputs were being
            # published (RCLError: publisher's context is invalid): the node is stopping and
            # main() stops these threads next; not an error to report.
            return
        self.stats.rejected["internal_error"] += 1
        self.stats.last_error = f"{type(e).__name__}: {e}"
        where = ""
        key = (type(e).__name__, _kind(str(e)))
        if key not in self._traced:
            # The first of each kind with its traceback: "IndexError: index 0 ..." alone
            # does not say where, and a robot's log is often all there is.
            self._traced.add(key)
            import traceback

            where = "\n" + "".join(traceback.format_exception(type(e), e, e.__traceback__)).rstrip()
        self._warn_every("worker_error", f"worker error (node keeps running): "
                         f"{type(e).__name__}: {e}{where}", error=True)

    def _warn_skew(self, skew: float):
        names = "colour/depth" + ("/labels" if self._n_inputs > 2 else "")
        self._warn_every("skew", f"no synchronised {names} set in the last "
                         f"{self._monitor.patience} messages: the closest stamps are "
                         f"{skew * 1000:.1f} ms apart, approx_sync_max_interval is "
                         f"{self.p['approx_sync_max_interval'] * 1000:.1f} ms"
                         f"{'' if self.p['approx_sync'] else ' (approx_sync is off: stamps must be equal)'}")

    # ------------------------------------------------------------------ callbacks (cheap)
    def _note_input(self, i: int, msg):
        self.stats.received[i] += 1
        self._monitor.note_input(i, conv.stamp_to_ns(msg.header.stamp))
        if self._mf_subs is not None:
            sk = self._monitor.check()
            if sk is not None:
                self._warn_skew(sk)

    def _on_image(self, i: int, msg: Image):
        self.stats.received[i] += 1
        self._sync.add(i, conv.stamp_to_ns(msg.header.stamp), msg)

    def _on_info(self, i: int, msg: CameraInfo):
        self._info[i] = msg
        # A set that arrived just before the first CameraInfo (the executor does not keep
        # the publishers' order across topics) is not lost: hand it over now if recent.
        pending, self._pending = self._pending, None
        if pending is not None:
            if time.monotonic() - pending.received <= 0.5:
                pending.info = msg
                self.worker.submit(pending)
            else:
                self._reject("no_camera_info", self._NO_INFO)

    def _on_odom_prior(self, msg: Odometry):
        # Handled here rather than left to the callback guard: a broken odometry message is
        # bad data with its own warning, not a rejected frame.
        try:
            T = conv.pose_to_matrix(msg.pose.pose)
        except conv.ConversionError as e:
            self._warn_every("odom_prior_bad", f"odometry prior skipped: {e}")
            return
        if not np.isfinite(T).all():
            self._warn_every("odom_prior_bad", "odometry prior skipped: its position is not finite")
            return
        cov = np.asarray(msg.pose.covariance, dtype=np.float64).reshape(6, 6)
        self._odom_hist.append((conv.stamp_to_ns(msg.header.stamp), T, msg.header.frame_id, msg.child_frame_id,
                                cov if np.isfinite(cov).all() else None))

    def _nearest_odom(self, stamp_ns: int) -> Optional[dict]:
        if not self._odom_hist:
            return None
        best = min(list(self._odom_hist), key=lambda o: abs(o[0] - stamp_ns))
        if abs(best[0] - stamp_ns) > float(self.p["odom_prior_max_age"]) * 1e9:
            return None
        return {"stamp": best[0] * 1e-9, "pose": best[1], "frame_id": best[2],
                "child_frame_id": best[3], "covariance": best[4]}

    def _on_synced(self, color: Image, depth: Image, labels: Optional[Image] = None):
        """Runs in the executor: bookkeeping and a single-slot hand-off, nothing else."""
        self._monitor.note_match()
        self.stats.synced += 1
        now = time.monotonic()
        self.stats.sync_arrivals.append(now)
        if self._paused:
            self.stats.paused_skipped += 1
            return
        info = self._info[0] or self._info[1]
        item = SyncedSet(color, depth, labels, info, conv.stamp_to_ns(color.header.stamp), now,
                         self._nearest_odom(conv.stamp_to_ns(color.header.stamp))
                         if self.p["subscribe_odom_prior"] else None)
        if info is None:
            # Keep one set for the first CameraInfo; an older waiting set is skipped.
            if self._pending is not None:
                self._reject("no_camera_info", self._NO_INFO)
            self._pending = item
            return
        self.worker.submit(item)

    # ------------------------------------------------------------------ worker: frames
    def _decode(self, s: SyncedSet) -> RGBDFrame:
        rgb = conv.color_to_rgb(s.color)
        depth = conv.depth_to_metres(s.depth, float(self.p["depth_scale"]))
        if rgb.shape[:2] != depth.shape:
            raise FrameError(f"colour is {rgb.shape[1]}x{rgb.shape[0]} but depth is "
                             f"{depth.shape[1]}x{depth.shape[0]}; the node needs depth "
                             "registered to colour (e.g. aligned_depth_to_color)")
        labels = None
        if s.labels is not None:
            labels = conv.labels_to_numpy(s.labels)
            if labels.shape != depth.shape:
                raise FrameError(f"label image is {labels.shape[1]}x{labels.shape[0]} but depth is "
                                 f"{depth.shape[1]}x{depth.shape[0]}")
        if not (depth > 0).any():
            raw = s.depth.encoding in ("32FC1", "64FC1") and not np.isfinite(conv.image_to_numpy(s.depth)).any()
            raise FrameError("depth image has no valid pixel ("
                             + ("NaN or inf everywhere" if raw else "all zero or negative") + ")")
        intr = conv.intrinsics_for_image(conv.camera_info_to_intrinsics(s.info),
                                         depth.shape[1], depth.shape[0])
        meta: Dict[str, Any] = {"stamp_ns": s.stamp_ns}
        if self.p["map_alignment"] == "camera_link":
            meta["initial_pose"] = link_from_optical()
        if s.odom_prior is not None:
            meta["odom_prior"] = s.odom_prior
            child = s.odom_prior["child_frame_id"] or self._optical_frame
            T_opt_child = self._optical_from(child, "odometry prior")
            if T_opt_child is not None:   # the tracker's starting guess (use_motion_prior)
                meta["odom_camera_pose"] = odom_camera_pose(s.odom_prior["pose"], T_opt_child)
                cov = s.odom_prior.get("covariance")
                if cov is not None:     # weighs its edge (backend.odom_prior_use_covariance)
                    meta["odom_camera_covariance"] = odom_camera_covariance(cov, s.odom_prior["pose"], T_opt_child)
        frame = RGBDFrame(self._index, s.stamp_ns * 1e-9, rgb, depth, intr, labels=labels, meta=meta)
        w, h = int(self.p["process_width"]), int(self.p["process_height"])
        if w or h:
            w = w or round(intr.width * h / intr.height)
            h = h or round(intr.height * w / intr.width)
            frame = frame.resized(w, h)
        return frame

    def _check_slow(self, what: str, seconds: float, parts: Dict[str, float]):
        limit = float(self.p["slow_frame_warn_ms"])
        if limit > 0 and 1000 * seconds > limit:
            detail = ", ".join(f"{k} {v:.0f}" for k, v in parts.items())
            self._warn_every(f"slow_{what}", f"slow {what}: {1000 * seconds:.0f} ms on the worker "
                             f"(slow_frame_warn_ms {limit:g}; ms: {detail})")

    def _process(self, s: SyncedSet):
        t_start = time.perf_counter()
        if not self.p["camera_frame"]:
            self._optical_frame = (s.info.header.frame_id or s.color.header.frame_id
                                   or DEFAULT_OPTICAL_FRAME)
        if self._last_stamp_ns is not None and s.stamp_ns <= self._last_stamp_ns:
            back = (self._last_stamp_ns - s.stamp_ns) * 1e-9
            if self.p["time_jump_policy"] == "reset":
                self.get_logger().warn(f"stamp jumped back by {back:.3f} s (bag loop?): "
                                       "resetting the map (time_jump_policy=reset)")
                self._reset()
            else:
                self._reject("time_jump", f"stamp {s.stamp_ns * 1e-9:.3f} is {back:.3f} s at or "
                             "before the previous frame (bag loop or clock reset); set "
                             "time_jump_policy=reset or call ~/reset to start over")
                return
        try:
            frame = self._decode(s)
        except conv.ConversionError as e:
            self._reject("bad_image", str(e))
            return
        except FrameError as e:
            self._reject("bad_frame", str(e))
            return

        def publish_now(T: np.ndarray, ok: bool):
            # Called by the pipeline right after tracking: the pose goes out before the
            # frame's fusion and mapping, which only the map needs. Corrections the back-end
            # delivered at the start of this frame reach the path first.
            if self.pipe.correction_count != self._seen_corrections:
                self._apply_corrections()
            self._publish_pose(T, s.stamp_ns, ok)
            self.stats.latency_ms.append(1000 * (time.monotonic() - s.received))

        try:
            res = self.pipe.process(frame, on_pose=publish_now, frame_waiting=self._frame_waiting)
        except FrameError as e:
            self._reject("bad_frame", str(e))
            return
        self._index += 1
        self._last_stamp_ns = s.stamp_ns
        if self.pipe.correction_count != self._seen_corrections:
            self._apply_corrections()
        self.stats.processed += 1
        self.stats.done_times.append(time.monotonic())
        self.stats.timings.append(dict(res.timings_ms))
        if not res.ok:
            self.stats.tracking_lost += 1
        if res.keyframe:
            self.stats.keyframes += 1
        if res.added or res.pruned:
            self._map_version += 1
        self._last_intr = frame.intrinsics
        self._check_slow("frame", time.perf_counter() - t_start, res.timings_ms)

    def _apply_corrections(self):
        """The back-end moved past poses and Gaussians: re-publish the path and the map.

        The pipeline's trajectory and this node's path hold one entry per processed frame,
        in order (both are cleared together on reset), so the path is rewritten in place
        (called from the on_pose hook, before the current frame joins either, and after
        the frame, when both hold it).
        """
        self._seen_corrections = self.pipe.correction_count
        traj = self.pipe.final_trajectory()
        if len(traj) >= len(self._path):
            self._path = [self._restamped(ps, T) for ps, (_, _, T) in zip(self._path, traj)]
            self._path_dirty = True
        self._map_version += 1

    @staticmethod
    def _restamped(ps: PoseStamped, T: np.ndarray) -> PoseStamped:
        out = PoseStamped()
        out.header = ps.header
        conv.fill_pose(out.pose, T)
        return out

    def _publish_pose(self, T: np.ndarray, stamp_ns: int, ok: bool):
        stamp = conv.ns_to_stamp(stamp_ns)
        mf = self.p["map_frame"]
        ps = PoseStamped()
        ps.header.stamp, ps.header.frame_id = stamp, mf
        conv.fill_pose(ps.pose, T)
        self.pub_pose.publish(ps)

        od = Odometry()
        od.header = ps.header
        od.child_frame_id = self._optical_frame
        od.pose.pose = ps.pose
        var = 1e-4 if ok else BAD_COVARIANCE
        od.pose.covariance = (np.eye(6) * var).reshape(-1).tolist()
        if self._last_pose is not None and stamp_ns > self._last_pose_stamp_ns:
            dt = (stamp_ns - self._last_pose_stamp_ns) * 1e-9
            rel = inv(self._last_pose) @ T                   # motion in the previous camera frame
            v = rel[:3, 3] / dt
            ang = _rotvec(rel[:3, :3]) / dt
            od.twist.twist.linear.x, od.twist.twist.linear.y, od.twist.twist.linear.z = map(float, v)
            od.twist.twist.angular.x, od.twist.twist.angular.y, od.twist.twist.angular.z = map(float, ang)
            od.twist.covariance = (np.eye(6) * var).reshape(-1).tolist()
        self.pub_odom.publish(od)
        self._last_pose, self._last_pose_stamp_ns = T, stamp_ns

        self._path.append(ps)
        self._path_dirty = True
        if float(self.p["path_rate_hz"]) <= 0:
            self._publish_path()
        if self.p["publish_tf"] and self.tf.backend != "off":
            self._publish_tf(T, stamp_ns)

    def _optical_from(self, child: str, user: str) -> Optional[np.ndarray]:
        """optical <- child (identity when child is the optical frame): a camera-internal,
        static transform from the driver's TF, looked up once and cached; None (logged)
        while TF does not have it."""
        if child == self._optical_frame:
            return np.eye(4)
        key = (self._optical_frame, child)
        T = self._static_tf.get(key)
        if T is None:
            T = self.tf.lookup(self._optical_frame, child)
            if T is None:
                self._warn_every(f"tf_{child}", f"no TF from {self._optical_frame} to {child}; "
                                 f"{user} not used until there is")
                return None
            self._static_tf[key] = T
        return T

    def _publish_tf(self, T_map_opt: np.ndarray, stamp_ns: int):
        child = self.p["base_frame"] or self._optical_frame
        T_opt_child = None
        if child != self._optical_frame:
            T_opt_child = self._optical_from(child, "map TF")
            if T_opt_child is None:
                return
        if self.p["tf_mode"] == "map_to_odom":
            T_odom_child = None
            o = self._nearest_odom(stamp_ns) if self.p["subscribe_odom_prior"] else None
            if o is not None and o["child_frame_id"] == child:
                T_odom_child = o["pose"]
            else:
                T_odom_child = self.tf.lookup(self.p["odom_frame"], child, stamp_ns)
            if T_odom_child is None:
                self._warn_every("tf_odom", f"tf_mode map_to_odom: no {self.p['odom_frame']} -> "
                                 f"{child} transform (TF or odometry prior); not broadcasting")
                return
            T = map_transform("map_to_odom", T_map_opt, T_opt_child, T_odom_child)
            self.tf.send(T, self.p["map_frame"], self.p["odom_frame"], stamp_ns)
        else:
            T = map_transform("map_to_camera", T_map_opt, T_opt_child)
            self.tf.send(T, self.p["map_frame"], child, stamp_ns)

    # ------------------------------------------------------------------ worker: periodic
    def _frame_waiting(self) -> bool:
        return len(self.worker.slot) > 0

    def _idle(self):
        t0 = time.perf_counter()
        done: Dict[str, float] = {}
        if not self._frame_waiting():
            # A map-only joint step put off while a frame was waiting: it runs in the
            # worker's slack (once started it holds the worker for its length).
            res = self.pipe.run_deferred()
            if res is not None:
                done["joint"] = res.ms
                self._apply_corrections()
        self._periodic_outputs(done)
        self._check_slow("output", time.perf_counter() - t0, done)

    def _periodic_outputs(self, done: Dict[str, float]):
        """Path, clouds and rendered views when due; `done` gets each one's ms."""
        now = time.monotonic()
        pr = float(self.p["path_rate_hz"])
        if self._path_dirty and pr > 0 and now >= self._next_path:
            _timed(done, "path", self._publish_path)
            self._next_path = now + 1.0 / pr
        graph = self._graph_state()
        if graph is not None and graph != self._graph_published and (pr <= 0 or now >= self._next_graph):
            _timed(done, "graph", self._publish_graph)
            self._graph_published = graph
            self._next_graph = now + (1.0 / pr if pr > 0 else 0.0)
        waiting = self._frame_waiting()
        mr = float(self.p["map_rate_hz"])
        if self._published_map_version != self._map_version and output_due(now, self._next_map, mr, waiting):
            _timed(done, "clouds", self._publish_clouds)
            self._next_map = now + 1.0 / mr
        qkey = (self._query_version, self._map_version)
        if self._query_done != qkey and output_due(now, self._next_map, mr, waiting):
            _timed(done, "query", self._publish_query)
        rr = float(self.p["render_rate_hz"])
        key = (self._last_pose_stamp_ns, self._map_version, self._query_version)
        if (self._last_pose is not None and len(self.pipe.map) and self._rendered != key
                and output_due(now, self._next_render, rr, waiting)):
            _timed(done, "render", self._publish_render)
            self._rendered = key
            self._next_render = now + 1.0 / rr

    def _publish_path(self):
        poses = list(self._path)                 # snapshot (references only) for the output thread
        frame = self.p["map_frame"]

        def job():
            msg = Path()
            msg.header.frame_id = frame
            msg.header.stamp = poses[-1].header.stamp if poses else self.get_clock().now().to_msg()
            msg.poses = poses
            self.pub_path.publish(msg)
        self.outputs.submit("path", job)
        self._path_dirty = False

    def _graph_state(self):
        """What ~/keyframe_graph shows changes with (keyframes, edges, corrections, loops
        rejected, joint steps that move poses); None when there is no graph to show."""
        be = self.pipe.backend
        if be is None or not self.p["publish_keyframe_graph"]:
            return None
        st = be.stats
        return (st.keyframes, len(be.graph.edges), self.pipe.correction_count, st.loop_outliers,
                st.joint_optimizations)

    def _publish_graph(self):
        poses, edges = self.pipe.backend.graph.snapshot()    # copies, under the graph's lock
        header = self._cloud_header()
        self.outputs.submit("graph", lambda: self.pub_graph.publish(keyframe_graph_markers(poses, edges, header)))

    def _cloud_header(self):
        from std_msgs.msg import Header
        h = Header()
        h.frame_id = self.p["map_frame"]
        h.stamp = (conv.ns_to_stamp(self._last_pose_stamp_ns) if self._last_pose_stamp_ns
                   else self.get_clock().now().to_msg())
        return h

    def _cloud_array(self, select=None):
        """CLOUD_DTYPE array of the current map (opacity-filtered, optionally subsampled);
        `select` [N] bool (a query's matches) keeps only those Gaussians."""
        import torch

        gm = self.pipe.map
        with torch.no_grad():
            n = len(gm)
            if n == 0:
                return np.empty(0, dtype=conv.CLOUD_DTYPE), np.empty(0, np.int64)
            op = torch.sigmoid(gm.opacity_logits.reshape(-1)).float().cpu().numpy()
            ok = op >= float(self.p["cloud_min_opacity"])
            if select is not None:
                ok &= select.cpu().numpy()
            keep = np.nonzero(ok)[0]
            m = int(self.p["cloud_max_points"])
            if m and keep.size > m:
                keep = keep[np.linspace(0, keep.size - 1, m).round().astype(np.int64)]
            idx = torch.as_tensor(keep, device=gm.means.device)
            q = gm.quats[idx]
            q = q / q.norm(dim=-1, keepdim=True).clamp(min=1e-12)
            if gm.num_classes:
                labels = gm.sem_logits[idx].argmax(-1).cpu().numpy().astype(np.int64)
                labels[~gm.labelled()[idx].cpu().numpy()] = 255    # never saw a label: unknown, not class 0
            else:
                labels = np.full(keep.size, 255, np.int64)
            col = (gm.colors[idx].clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
            arr = conv.gaussian_cloud_array(
                gm.means[idx].float().cpu().numpy(), col, labels.clip(0, 255).astype(np.uint32),
                op[keep], torch.exp(gm.log_scales[idx]).float().cpu().numpy(), q.float().cpu().numpy(),
                (gm.inferred[idx] != 0).cpu().numpy().astype(np.uint8))
        return arr, labels

    def _publish_clouds(self):
        arr, labels = self._cloud_array()        # device -> host copies stay on the worker
        header = self._cloud_header()
        semantic = bool(self.p["publish_semantic_cloud"])
        n_classes = self.cfg.num_classes

        def job():
            self.pub_map.publish(conv.array_to_pointcloud2(arr, header))
            if semantic:
                sem = arr.copy()
                if sem.size:
                    sem["rgb"] = conv.pack_rgb(conv.colorize_labels(labels, n_classes))
                self.pub_sem.publish(conv.array_to_pointcloud2(sem, header))
        self.outputs.submit("clouds", job)
        self._published_map_version = self._map_version

    def _publish_render(self):
        from std_msgs.msg import Header
        sem = bool(self.p["render_semantics"]) and self.cfg.num_classes > 0
        res = self._query_result()
        r = self.pipe.render(self._last_pose, self._last_intr, semantics=sem, query=res)
        rel = r.get("relevance")
        h = Header()
        h.stamp = conv.ns_to_stamp(self._last_pose_stamp_ns)
        h.frame_id = self._optical_frame
        n_classes = self.cfg.num_classes

        def job():
            self.pub_rcolor.publish(conv.numpy_to_image(r["color"], "rgb8", h))
            d = r["depth"].astype(np.float32, copy=True)
            d[r["alpha"] < 0.5] = np.nan                    # REP-118: NaN = no depth
            self.pub_rdepth.publish(conv.numpy_to_image(d, "32FC1", h))
            if sem:
                self.pub_rsem.publish(conv.numpy_to_image(
                    conv.colorize_labels(r["labels"], n_classes), "rgb8", h))
            if rel is not None:                              # NaN where the map shows nothing
                self.pub_qrel.publish(conv.numpy_to_image(rel, "32FC1", h))
        self.outputs.submit("render", job)

    # ------------------------------------------------------------------ open-vocabulary query
    def _on_query(self, msg: String):
        self._query_text = str(msg.data).strip()
        self._query_version += 1
        self.get_logger().info(f"query: {self._query_text!r}" if self._query_text else "query cleared")

    def _query_result(self):
        """The standing query's result for the current map (worker thread), or None when
        there is none or it cannot be answered (warned once per query)."""
        text, qv, mv = self._query_text, self._query_version, self._map_version
        c = self._query_cache
        if c is not None and c[:3] == (qv, mv, len(self.pipe.map)):
            return c[3]
        res = None
        if text:
            try:
                res = self.pipe.query(text)
            except (UnknownQuery, RuntimeError) as e:
                if c is None or c[0] != qv:
                    self.get_logger().warn(f"query {text!r} not answered: {e}")
            else:
                if c is None or c[0] != qv:
                    self.get_logger().info(f"query {res.summary()}")
        self._query_cache = (qv, mv, len(self.pipe.map), res)
        return res

    def _publish_query(self):
        """The Gaussians matching the standing query as a cloud, its objects as boxes and
        poses; all empty once cleared, or for a query that cannot be answered (so the
        outputs of the one before do not stand in for it)."""
        self._query_done = (self._query_version, self._map_version)
        res = self._query_result()
        if res is None:
            arr, objects, text = np.empty(0, dtype=conv.CLOUD_DTYPE), [], ""
        else:
            arr, _ = self._cloud_array(res.mask)
            ov = self.cfg.open_vocab
            objects = res.instances(self.pipe.map, ov.instance_voxel, ov.instance_min_gaussians)
            text = res.query.text
        header = self._cloud_header()

        def job():
            self.pub_qcloud.publish(conv.array_to_pointcloud2(arr, header))
            self.pub_qmarkers.publish(query_object_markers(objects, text, header))
            poses = PoseArray(header=header)          # for programs: where to go, largest first
            for o in objects:
                p = Pose()
                p.position.x, p.position.y, p.position.z = (float(v) for v in o.centroid)
                p.orientation.w = 1.0
                poses.poses.append(p)
            self.pub_qposes.publish(poses)
        self.outputs.submit("query", job)

    # ------------------------------------------------------------------ state changes (worker)
    def _reset(self):
        if self._cfg_changed:
            self.cfg = read_pipeline_config(self)
            self.pipe.close()                     # stop the old back-end thread
            self.pipe = SLAMPipeline(self.cfg)
            self._cfg_changed = False
        else:
            self.pipe.reset()
        self._path = []
        self._seen_corrections = 0
        self._path_dirty = True
        self._last_stamp_ns = None
        self._last_pose = None
        self._last_pose_stamp_ns = 0
        self._index = 0
        self._map_version += 1
        self._next_map = 0.0
        self._graph_published = None              # the new graph (empty) clears RViz's
        self._odom_hist.clear()

    def _load_map(self):
        from ..io.ply import load_ply

        path = expand_path(self.p["map_load_path"] or self.p["map_save_path"])
        try:
            gm = load_ply(path, device=self.pipe.device, num_classes=self.cfg.num_classes,
                          class_names=self.cfg.class_names)
        except (OSError, ValueError) as e:
            return False, f"cannot load map from {path}: {e}"
        if gm.num_classes != self.cfg.num_classes:
            return False, (f"{path} has {gm.num_classes} classes but the node is configured "
                           f"for {self.cfg.num_classes}")
        self.pipe.map = gm
        self.pipe.forget_keyframe_images()   # their classes belong to the map they saw
        self._map_version += 1
        self._next_map = 0.0
        return True, f"loaded {len(gm)} Gaussians from {path}"

    def _save_map(self):
        from ..io.ply import save_ply

        path = expand_path(self.p["map_save_path"])
        try:
            save_ply(path, self.pipe.map, class_names=self.cfg.class_names)
        except (OSError, ValueError) as e:
            return False, f"cannot save map to {path}: {e}"
        return True, f"saved {len(self.pipe.map)} Gaussians to {path}"

    # ------------------------------------------------------------------ services
    async def _on_worker(self, fn, response, timeout: float = 60.0):
        """Run fn on the worker between frames and answer with its (ok, message). A
        coroutine, so the executor keeps serving images, timers and the other services
        while the worker is at it (a map refinement takes minutes on a CPU)."""
        done, box = self.worker.post(fn, notify=self._wake_executor)
        end = time.monotonic() + timeout
        while not done.is_set() and time.monotonic() < end:
            await _NextLoop()
        try:
            if not done.is_set():
                raise TimeoutError(f"worker did not run the request within {timeout} s")
            ok, msg = FrameWorker.outcome(box)
        except Exception as e:  # noqa: BLE001 - reported to the caller
            ok, msg = False, f"{type(e).__name__}: {e}"
        response.success, response.message = bool(ok), msg
        self._log_result(ok, msg)
        return response

    def _wake_executor(self):
        try:
            self._worker_done.trigger()
        except Exception:  # noqa: BLE001 - the node is being destroyed; nobody waits
            pass

    async def _srv_refine(self, request, response):
        """The final map refinement on request (end of a mission, before ~/save_map), then
        the final semantic pass (network initialiser): the worker runs them between frames,
        so tracking waits for them (seconds on a GPU, minutes on a CPU); the executor keeps
        publishing and answering meanwhile."""
        def do():
            rounds = int(self.cfg.backend.final_refine_rounds) or REFINE_ROUNDS
            r = self.pipe.refine_map(rounds)
            s = self.pipe.final_semantics()
            if r is None and s is None:
                return False, ("nothing to refine: keyframes keep their images only with the back-end on "
                               "(pipeline.backend.enabled) or, for the final semantic pass, with the network "
                               "initialiser (pipeline.network.final_semantics), and the map must not be empty")
            self._map_version += 1
            parts = []
            if r is not None:
                parts.append(f"map refined: {rounds} passes over {r['views']} keyframes in {r['ms'] / 1000:.1f} s, "
                             f"mean view loss {r['loss_first']:.4f} -> {r['loss_last']:.4f}, {r['pruned']} "
                             f"Gaussians pruned, {r['compacted']} compacted away")
            if s is not None:
                parts.append(f"classes re-predicted at {s['keyframes']} keyframes with test-time augmentation "
                             f"({s['rows']} Gaussians re-labelled, {s['ms'] / 1000:.1f} s)")
            return True, "; ".join(parts)
        return await self._on_worker(do, response, timeout=1800.0)

    async def _srv_save(self, request, response):
        return await self._on_worker(self._save_map, response)

    async def _srv_load(self, request, response):
        return await self._on_worker(self._load_map, response)

    async def _srv_reset(self, request, response):
        def do():
            n = len(self.pipe.map)
            self.worker.slot.clear()
            if self._sync is not None:
                self._sync.clear()
            self._reset()
            return True, f"reset: cleared {n} Gaussians and the trajectory"
        return await self._on_worker(do, response)

    def _srv_pause(self, request, response):
        self._paused = True
        self.worker.slot.clear()
        response.success, response.message = True, "paused: incoming frames are ignored until ~/resume"
        self.get_logger().info(response.message)
        return response

    def _srv_resume(self, request, response):
        self._paused = False
        response.success, response.message = True, "resumed"
        self.get_logger().info(response.message)
        return response

    # ------------------------------------------------------------------ parameters
    def _validate_params(self, params: List[Parameter]) -> SetParametersResult:
        node_vals = {p.name: p.value for p in params if p.name in NODE_PARAM_NAMES}
        try:
            check_node_params(node_vals)
            trial = PipelineConfig.from_dict(self.cfg.to_dict())
            for p in params:
                if p.name.startswith(PIPELINE_PREFIX):
                    try:
                        trial.override({p.name[len(PIPELINE_PREFIX):]: p.value})
                    except (TypeError, ValueError) as e:
                        raise ValueError(f"parameter {p.name}={p.value!r}: {e}") from None
        except (ValueError, KeyError, TypeError) as e:
            return SetParametersResult(successful=False, reason=str(e))
        return SetParametersResult(successful=True)

    def _apply_params(self, params: List[Parameter]):
        for p in params:
            if p.name in NODE_PARAM_NAMES:
                self.p[p.name] = coerce(PARAMS_BY_NAME[p.name], p.value)
                if p.name == "use_cv_bridge":
                    conv.USE_CV_BRIDGE = bool(p.value)
                if p.name == "camera_frame" and p.value:
                    self._optical_frame = p.value
            elif p.name.startswith(PIPELINE_PREFIX):
                self._cfg_changed = True
                self.get_logger().info(f"{p.name} changed: applied on the next ~/reset")

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self):
        """Runs in the executor: reads counters only (no pipeline or GPU work)."""
        st = self.stats
        kv: Dict[str, Any] = {}
        kv["processing_rate_hz"] = f"{_rate(st.done_times):.2f}"
        kv["input_rate_hz"] = f"{_rate(st.sync_arrivals):.2f}"
        kv["frames_received_color"] = st.received[0]
        kv["frames_received_depth"] = st.received[1]
        if self._n_inputs > 2:
            kv["frames_received_labels"] = st.received[2]
        kv["frames_synced"] = st.synced
        kv["frames_processed"] = st.processed
        kv["frames_dropped"] = self.worker.dropped
        total_in = max(1, st.synced - st.paused_skipped)
        kv["drop_fraction"] = f"{self.worker.dropped / total_in:.3f}"
        kv["frames_rejected"] = sum(st.rejected.values())
        for k, v in sorted(st.rejected.items()):
            kv[f"rejected_{k}"] = v
        kv["frames_paused"] = st.paused_skipped
        kv["sync_evicted"] = self._sync.evicted if self._sync is not None else "n/a"
        kv["tracking_lost"] = st.tracking_lost
        last = self.pipe.last_result
        if last is not None and "inlier_fraction" in last.health:
            # The last tracked frame's health: a weakest_constraint near 0 means the view
            # leaves a direction of motion open (plain wall, corridor); see tracking.prediction_prior.
            kv["tracking_inlier_fraction"] = f"{last.health['inlier_fraction']:.3f}"
            kv["tracking_weakest_constraint"] = f"{last.health['weakest_constraint']:.4f}"
        kv["keyframes"] = st.keyframes
        kv["gaussians"] = len(self.pipe.map)
        kv["vocab_entries"] = len(self.pipe.map.vocab) if self.pipe.map.vocab is not None else 0
        kv["query"] = self._query_text
        be = self.pipe.backend
        if be is not None:                  # counters only: the back-end's thread owns the rest
            kv["loop_closures"] = be.stats.loop_closures
            kv["joint_optimizations"] = be.stats.joint_optimizations
            kv["joint_deferred"] = be.stats.joint_deferred
            kv["relocalizations"] = be.stats.reloc_applied
        lat = np.asarray(st.latency_ms, dtype=np.float64)
        if lat.size:
            kv["pose_latency_ms_p50"] = f"{np.percentile(lat, 50):.1f}"
            kv["pose_latency_ms_p95"] = f"{np.percentile(lat, 95):.1f}"
            kv["pose_latency_ms_max"] = f"{lat.max():.1f}"
        timings = list(st.timings)
        for stage in sorted({k for t in timings for k in t}):
            vals = [t[stage] for t in timings if stage in t]
            kv[f"latency_ms_{stage}"] = f"{np.mean(vals):.1f}"
        kv["device"] = str(self.pipe.device)
        kv["renderer"] = type(self.pipe.rasterizer).__name__
        kv["gpu_memory_mb"] = "n/a (cpu)"
        if self.pipe.device.type == "cuda":
            import torch
            kv["gpu"] = torch.cuda.get_device_name(self.pipe.device)
            kv["gpu_memory_mb"] = f"{torch.cuda.memory_allocated(self.pipe.device) / 2**20:.1f}"
            kv["gpu_memory_peak_mb"] = f"{torch.cuda.max_memory_allocated(self.pipe.device) / 2**20:.1f}"
        kv["rss_mb"] = f"{_rss_mb():.1f}"
        kv["paused"] = str(self._paused).lower()
        kv["worker_alive"] = str(self.worker.is_alive()).lower()
        kv["sync"] = self.sync_backend
        kv["tf"] = self.tf.backend
        kv["last_error"] = st.last_error

        status = DiagnosticStatus()
        status.name = f"{self.get_fully_qualified_name()}: SLAM"
        status.hardware_id = kv.get("gpu", str(self.pipe.device))
        if not self.worker.is_alive():
            status.level, status.message = DiagnosticStatus.ERROR, "worker thread stopped"
        elif self._paused:
            status.level, status.message = DiagnosticStatus.OK, "paused"
        elif st.synced == 0:
            status.level, status.message = DiagnosticStatus.WARN, "waiting for synchronised colour and depth"
        elif self.pipe.last_result is not None and not self.pipe.last_result.ok:
            status.level, status.message = DiagnosticStatus.WARN, "tracking weak"
        else:
            status.level, status.message = DiagnosticStatus.OK, "tracking"
        status.values = [KeyValue(key=k, value=str(v)) for k, v in kv.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [status]
        self.pub_diag.publish(arr)

    def shutdown(self):
        self.worker.stop()
        self.outputs.stop()
        logging.getLogger("gs4_ros").removeHandler(self._log_bridge)
        if self.p["save_map_on_shutdown"] and len(self.pipe.map):
            ok, msg = self._save_map()
            self._log_result(ok, msg)
        self.pipe.close()                         # the back-end's thread and child process


class _RosLogBridge(logging.Handler):
    """Sends the pipeline's Python `logging` records to the node's ROS logger (so they reach
    /rosout and the launch screen with the node name), repeated texts at most every 5 s."""

    def __init__(self, logger, period: float = 5.0):
        super().__init__(logging.DEBUG)
        self.ros = logger
        self.period = period
        self._last: Dict[str, float] = {}

    def emit(self, record: logging.LogRecord):
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string must not kill the worker
            msg = str(record.msg)
        now = time.monotonic()
        key = f"{record.levelno}:{msg[:32]}"
        if now - self._last.get(key, -1e9) < self.period:
            return
        self._last[key] = now
        if len(self._last) > 256:
            self._last.clear()
        text = f"[{record.name}] {msg}"
        # One call site per severity: rclpy refuses a call site that changes severity.
        if record.levelno >= logging.ERROR:
            self.ros.error(text)
        elif record.levelno >= logging.WARNING:
            self.ros.warn(text)
        elif record.levelno >= logging.INFO:
            self.ros.info(text)
        else:
            self.ros.debug(text)


def _kind(msg: str) -> str:
    """A message without its numbers: one key for every occurrence of the same problem."""
    return re.sub(r"[0-9.]+", "#", msg)[:80]


def _timed(done: Dict[str, float], key: str, fn):
    """fn(), its milliseconds recorded in done[key]."""
    t = time.perf_counter()
    fn()
    done[key] = 1000 * (time.perf_counter() - t)


def _rotvec(R: np.ndarray) -> np.ndarray:
    """Axis-angle vector of a rotation matrix."""
    c = max(-1.0, min(1.0, (np.trace(R) - 1.0) / 2.0))
    a = math.acos(c)
    w = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    if a < 1e-6:
        return 0.5 * w
    if abs(math.pi - a) < 1e-4:
        v = np.sqrt(np.maximum((np.diag(R) + 1.0) / 2.0, 0.0))
        return a * v
    return a / (2.0 * math.sin(a)) * w


class _NextLoop:
    """Awaiting it hands control back to rclpy's executor for one loop: a pending task is
    resumed each time the executor wakes (a message, a timer, the worker's guard)."""

    def __await__(self):
        yield


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_executor():
    """The executor gs4_node is spun by (main, benchmarks and tests share it).

    Single-threaded on purpose. rclpy's (Jazzy) MultiThreadedExecutor hands each ready
    callback to its pool and, until a pool thread has started it, yields the same task
    again on every loop: with 30 Hz images its thread ran ~40 loops per message and used
    86% of a core in Python, and the worker, starved of the GIL, tracked 20x slower (0.8
    instead of 8 frames/s on a CPU, 1.3 instead of ~40 on an H200; benchmarks/node_latency.py
    --in-process --sample shows the busiest threads). The callbacks here are microseconds,
    so one thread is enough; services that need the worker (save/load/reset/refine) are
    coroutines that yield to the executor until it has run them.
    """
    return SingleThreadedExecutor()


def main(args=None):
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = GS4Node()
        except (ValueError, KeyError, ParameterException) as e:  # bad parameters: say which, exit 2
            print(f"gs4_node: invalid parameters: {e}", file=sys.stderr)
            rclpy.try_shutdown()
            sys.exit(2)
        executor = make_executor()
        executor.add_node(node)
        name_os_thread("gs4_node")       # the executor's thread: `top -H` tells it from gs4_worker
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
