"""QoS profiles: best-effort sensor inputs, reliable latched map outputs.

Inputs default to SENSOR_DATA (best effort, keep last few): a best-effort subscriber
accepts both best-effort drivers and reliable publishers such as `ros2 bag play`, and
never makes a camera driver block or resend on our behalf. Map-like outputs (clouds,
path) are reliable + transient-local with depth 1, so RViz or a recorder that starts
late still gets the latest map. Per-frame outputs (pose, odometry, rendered images)
are reliable + volatile, which both reliable and best-effort subscribers accept.
"""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

INPUT_QOS_CHOICES = ("SENSOR_DATA", "SYSTEM_DEFAULT", "RELIABLE")


def input_qos(name: str, depth: int = 5) -> QoSProfile:
    """Profile for the image / camera_info / odometry subscriptions."""
    key = str(name).strip().upper()
    if key in ("SENSOR_DATA", "BEST_EFFORT"):
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                          reliability=ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.VOLATILE)
    if key in ("SYSTEM_DEFAULT", "RELIABLE"):
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
    raise ValueError(f"input_qos must be one of {', '.join(INPUT_QOS_CHOICES)}, got '{name}'")


def latched_qos() -> QoSProfile:
    """Map clouds and path: the newest message is kept for late subscribers."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def stream_qos(depth: int = 10) -> QoSProfile:
    """Per-frame outputs (pose, odometry)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def image_out_qos() -> QoSProfile:
    """Rendered views: only the newest matters; reliable so RViz's default accepts it."""
    return stream_qos(depth=1)
