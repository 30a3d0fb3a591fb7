"""Publish RGBDFrames over DDS like an RGB-D driver: colour, depth, CameraInfo, labels.

Used by the end-to-end tests, the latency benchmark and the picture script, and handy
for feeding any dataset into a running node without writing a bag first. Messages are
encoded once up front (`encode`), so the publishing loop costs only the DDS write and
holds its rate.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, List, Optional

import numpy as np

from ..core.frame import RGBDFrame
from . import conversions as conv


@dataclass
class EncodedFrame:
    color: object
    depth: object
    info: object
    labels: Optional[object]
    gt: Optional[object]
    frame: RGBDFrame


def encode(frame: RGBDFrame, frame_id: str = "camera_color_optical_frame",
           depth_encoding: str = "16UC1", gt_frame: str = "world") -> EncodedFrame:
    """rclpy messages for one frame (stamps are filled in when published)."""
    from geometry_msgs.msg import PoseStamped
    from std_msgs.msg import Header

    h = Header(frame_id=frame_id)
    color = conv.numpy_to_image(frame.rgb, "rgb8", h)
    if depth_encoding == "32FC1":
        depth = conv.numpy_to_image(frame.depth.astype(np.float32), "32FC1", h)
    else:
        mm = np.clip(np.round(np.nan_to_num(frame.depth) * 1000.0), 0, 65535).astype(np.uint16)
        depth = conv.numpy_to_image(mm, depth_encoding, h)
    info = conv.intrinsics_to_camera_info(frame.intrinsics, h)
    labels = None if frame.labels is None else conv.numpy_to_image(frame.labels.astype(np.uint8),
                                                                   "mono8", h)
    gt = None
    if frame.gt_pose is not None:
        gt = PoseStamped()
        gt.header.frame_id = gt_frame
        conv.fill_pose(gt.pose, frame.gt_pose)
    return EncodedFrame(color, depth, info, labels, gt, frame)


class FramePlayer:
    """Publishers on `<prefix>/color/image_raw`, `depth/image_raw`, `color/camera_info`,
    `depth/camera_info`, `labels/image_raw` and `/gt/pose` (reliable, like a recorder)."""

    def __init__(self, node, prefix: str = "/camera", publish_labels: bool = True,
                 publish_gt: bool = True, qos_depth: int = 5):
        from geometry_msgs.msg import PoseStamped
        from sensor_msgs.msg import CameraInfo, Image

        p = prefix.rstrip("/")
        self.node = node
        self.pub_color = node.create_publisher(Image, f"{p}/color/image_raw", qos_depth)
        self.pub_depth = node.create_publisher(Image, f"{p}/depth/image_raw", qos_depth)
        self.pub_cinfo = node.create_publisher(CameraInfo, f"{p}/color/camera_info", qos_depth)
        self.pub_dinfo = node.create_publisher(CameraInfo, f"{p}/depth/camera_info", qos_depth)
        self.pub_labels = (node.create_publisher(Image, f"{p}/labels/image_raw", qos_depth)
                           if publish_labels else None)
        self.pub_gt = node.create_publisher(PoseStamped, "/gt/pose", qos_depth) if publish_gt else None
        self.sent: List[int] = []

    def publish(self, ef: EncodedFrame, stamp_ns: int, info: bool = True):
        st = conv.ns_to_stamp(stamp_ns)
        for m in (ef.color, ef.depth, ef.info, ef.labels, ef.gt):
            if m is not None:
                m.header.stamp = st
        if info:
            self.pub_cinfo.publish(ef.info)
            self.pub_dinfo.publish(ef.info)
        if self.pub_labels is not None and ef.labels is not None:
            self.pub_labels.publish(ef.labels)
        self.pub_depth.publish(ef.depth)
        self.pub_color.publish(ef.color)
        if self.pub_gt is not None and ef.gt is not None:
            self.pub_gt.publish(ef.gt)
        self.sent.append(stamp_ns)

    def play(self, frames: Iterable[EncodedFrame], rate_hz: float = 30.0,
             stamp0_ns: Optional[int] = None, spin=None, wall_stamps: bool = False) -> List[int]:
        """Publish at `rate_hz` (wall clock); returns the stamps used.

        Stamps are stamp0 + i / rate (or the wall clock when `wall_stamps`, for latency
        measurements). `spin(timeout)` is called while waiting so the caller's
        subscriptions keep running.
        """
        period = 1.0 / rate_hz
        stamps = []
        t0 = time.monotonic()
        base = time.time_ns() if stamp0_ns is None else int(stamp0_ns)
        for i, ef in enumerate(frames):
            due = t0 + i * period
            while True:
                left = due - time.monotonic()
                if left <= 0:
                    break
                if spin is not None:
                    spin(min(left, 0.005))
                else:
                    time.sleep(min(left, 0.005))
            st = time.time_ns() if wall_stamps else base + int(round(i * period * 1e9))
            self.publish(ef, st)
            stamps.append(st)
        return stamps


# --- running a node process (benchmarks, demos) ---------------------------------------------

def _nest(flat: dict) -> dict:
    out: dict = {}
    for k, v in flat.items():
        d = out
        parts = k.split(".")
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = v
    return out


CAMERA_TOPICS = ("color/image_raw", "depth/image_raw", "color/camera_info", "depth/camera_info",
                 "labels/image_raw")


def camera_remaps(prefix: str) -> List[str]:
    """ROS arguments that point gs4_node's camera inputs at `prefix`/<topic>, as
    FramePlayer(prefix=...) publishes them."""
    out: List[str] = []
    for t in CAMERA_TOPICS:
        out += ["-r", f"{t}:={prefix.rstrip('/')}/{t}"]
    return out


class NodeRunner:
    """gs4_node as a child process (`python -m gs4_ros.ros.node`, or an installed executable)
    with parameters, a namespace and camera remaps; its output goes to a log file.

    Benchmarks use a separate process so the node's executor and the publisher's do not
    share a GIL, as on a robot.
    """

    def __init__(self, params: dict, namespace: str = "/gs4", prefix: str = "/camera",
                 log_path=None, executable=None, env: Optional[dict] = None):
        import os
        import subprocess
        import sys
        import tempfile
        from pathlib import Path

        import yaml

        self.namespace = namespace.rstrip("/") or ""
        self._dir = Path(tempfile.mkdtemp(prefix="gs4_node_"))
        pf = self._dir / "params.yaml"
        pf.write_text(yaml.safe_dump({"/**": {"ros__parameters": _nest(params)}}))
        self.log_path = Path(log_path) if log_path else self._dir / "node.log"
        cmd = [str(executable)] if executable else [sys.executable, "-m", "gs4_ros.ros.node"]
        cmd += ["--ros-args", "--params-file", str(pf), "-r", f"__ns:={namespace or '/'}"]
        cmd += camera_remaps(prefix)
        e = dict(os.environ)
        repo = str(Path(__file__).resolve().parents[2])
        e["PYTHONPATH"] = repo + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
        e.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "0")
        e.update(env or {})
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=e,
                                     start_new_session=True)

    @property
    def topic_base(self) -> str:
        return f"{self.namespace}/gs4_node"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def wait_ready(self, timeout: float = 300.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if "gs4_node ready" in self.log():
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.2)
        return False

    def stop(self, timeout: float = 20.0) -> Optional[int]:
        rc = stop_process(self.proc, timeout)
        self._log.close()
        return rc


def stop_process(proc, timeout: float = 20.0) -> Optional[int]:
    """Stop a node process as `ros2 launch` does: SIGINT (rclpy ignores SIGTERM while
    spinning), a kill if it has not exited within `timeout` s; its exit status."""
    import signal
    import subprocess

    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode
