"""TF output (REP-105) with tf2_ros where installed and plain maths everywhere.

Two modes, as in rtabmap / robot_localization:
- `map_to_camera`: the node publishes map -> child, where child is `base_frame` if set
  (e.g. camera_link, whose static link -> optical transform the camera driver publishes)
  or the camera optical frame itself. Right for a handheld camera and bag replays.
- `map_to_odom`: the node publishes the map -> odom correction so that
  map -> odom -> child equals the SLAM pose, leaving odom -> child to the robot's own
  odometry (looked up in TF, or taken from the odometry prior topic when its
  child_frame_id is the child frame).

Without tf2_ros the node cannot look anything up; it then publishes TFMessage on /tf
itself when tf2_msgs is importable, and otherwise logs once that TF is off.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..core.backend.keyframe_graph import carry_covariance
from .conversions import fill_pose, ns_to_stamp, pose_to_matrix

TF_MODES = ("map_to_camera", "map_to_odom")

# Optical (x right, y down, z forward) expressed in a body/link frame (x forward, y left,
# z up): the rotation realsense2_camera publishes from camera_link to *_optical_frame.
R_LINK_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def link_from_optical() -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R_LINK_OPTICAL
    return T


def inv(T: np.ndarray) -> np.ndarray:
    R, t = T[:3, :3], T[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out


def map_transform(mode: str, T_map_optical: np.ndarray,
                  T_optical_child: Optional[np.ndarray] = None,
                  T_odom_child: Optional[np.ndarray] = None) -> np.ndarray:
    """The transform to broadcast: map->child (map_to_camera) or map->odom (map_to_odom).

    T_a_b maps points from frame b to frame a (tf2's lookup_transform(a, b) convention).
    """
    T_map_child = T_map_optical @ (np.eye(4) if T_optical_child is None else T_optical_child)
    if mode == "map_to_camera":
        return T_map_child
    if mode == "map_to_odom":
        if T_odom_child is None:
            raise ValueError("map_to_odom needs the odom -> child transform")
        return T_map_child @ inv(T_odom_child)
    raise ValueError(f"tf_mode must be one of {TF_MODES}, got '{mode}'")


def odom_camera_pose(T_odom_child: np.ndarray, T_optical_child: Optional[np.ndarray] = None) -> np.ndarray:
    """The camera's (optical frame's) pose in the odometry frame, from an odometry
    message's odom -> child and TF's optical <- child (None: the child is the optical
    frame), so the pipeline can take the camera's motion between two frames from it."""
    return T_odom_child if T_optical_child is None else T_odom_child @ inv(T_optical_child)


def odom_camera_covariance(cov_child: np.ndarray, T_odom_child: np.ndarray,
                           T_optical_child: Optional[np.ndarray] = None) -> np.ndarray:
    """An odometry message's pose covariance (6x6: child position, rotation about the
    odom axes) for the camera's pose instead: the same rotation, and the position takes
    the rotation's uncertainty through the lever arm from child to camera (first order)."""
    if T_optical_child is None:
        return np.array(cov_child, dtype=np.float64)
    return carry_covariance(cov_child, T_odom_child[:3, :3] @ inv(T_optical_child)[:3, 3])   # child -> camera


class TfOutput:
    """Broadcasts transforms and looks them up, using whatever TF packages exist."""

    def __init__(self, node, need_lookup: bool):
        self.node = node
        self.backend = "off"
        self._br = None
        self._pub = None
        self.buffer = None
        self._listener = None
        try:
            from tf2_ros import TransformBroadcaster
            self._br = TransformBroadcaster(node)
            self.backend = "tf2_ros"
        except ImportError:
            try:
                from tf2_msgs.msg import TFMessage
                from rclpy.qos import QoSProfile
                self._TFMessage = TFMessage
                self._pub = node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100))
                self.backend = "tf2_msgs"
            except ImportError:
                pass
        if need_lookup:
            try:
                from tf2_ros import Buffer, TransformListener
                self.buffer = Buffer()
                self._listener = TransformListener(self.buffer, node)
            except ImportError:
                self.buffer = None

    @property
    def can_lookup(self) -> bool:
        return self.buffer is not None

    def lookup(self, target: str, source: str, stamp_ns: Optional[int] = None
               ) -> Optional[np.ndarray]:
        """T_target_source at the stamp if the buffer has it, else the latest; None if unknown.

        Never waits: this runs on the tracking thread, and a robot's odometry is normally
        ahead of the camera anyway.
        """
        if self.buffer is None:
            return None
        from rclpy.time import Time
        tr = None
        if stamp_ns is not None:
            try:
                tr = self.buffer.lookup_transform(target, source, Time(nanoseconds=int(stamp_ns)))
            except Exception:  # tf2 raises several lookup/extrapolation error types
                tr = None
        if tr is None:
            try:
                tr = self.buffer.lookup_transform(target, source, Time())
            except Exception:
                return None
        return pose_to_matrix(tr.transform)

    def send(self, T: np.ndarray, parent: str, child: str, stamp_ns: int) -> bool:
        if self.backend == "off":
            return False
        from geometry_msgs.msg import TransformStamped
        msg = TransformStamped()
        msg.header.stamp = ns_to_stamp(stamp_ns)
        msg.header.frame_id = parent
        msg.child_frame_id = child
        fill_pose(msg.transform, T)
        if self._br is not None:
            self._br.sendTransform(msg)
        else:
            self._pub.publish(self._TFMessage(transforms=[msg]))
        return True
