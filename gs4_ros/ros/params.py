"""Every node setting as a declared ROS parameter, in one table.

Names follow what rtabmap_ros and nvblox_ros users know (`map_frame`, `odom_frame`,
`publish_tf`, `approx_sync`, `approx_sync_max_interval`, `sync_queue_size`,
`input_qos`, `*_rate_hz`). The pipeline's configuration tree is declared as
`pipeline.<dotted key>` so one YAML file (config/*.yaml) sets both, `ros2 param get/set`
sees everything, and `load_config()` reads the same file for the CLI.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from ..core.config import PipelineConfig

PIPELINE_PREFIX = "pipeline."


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    read_only: bool = False          # needs a restart (subscriptions, QoS, sync)
    choices: Optional[Tuple[str, ...]] = None


NODE_PARAMS: List[Param] = [
    # frames and TF
    Param("map_frame", "map", "Fixed frame of poses, path, clouds (REP-105 map)."),
    Param("odom_frame", "odom", "Odometry frame; parent of the child frame in tf_mode map_to_odom."),
    Param("camera_frame", "", "Camera optical frame id; empty = taken from the CameraInfo "
          "(else Image) header."),
    Param("base_frame", "", "Child frame of the published TF; empty = the camera optical frame. "
          "Set e.g. camera_link when the driver publishes camera_link -> optical (needs tf2_ros)."),
    Param("publish_tf", True, "Broadcast TF (tf2_ros; off with a log line when it is not installed)."),
    Param("tf_mode", "map_to_camera", "map_to_camera: map -> base_frame/optical; map_to_odom: "
          "map -> odom correction (REP-105), odom -> child from TF or the odometry prior.",
          choices=("map_to_camera", "map_to_odom")),
    Param("map_alignment", "camera_link", "Axes of the map at the first frame: camera_link "
          "(x forward, y left, z up, as RViz and Nav2 expect) or optical (x right, y down, z forward).",
          read_only=True, choices=("camera_link", "optical")),
    # inputs
    Param("input_qos", "SENSOR_DATA", "QoS of the sensor subscriptions: SENSOR_DATA (best effort; "
          "also accepts reliable publishers such as ros2 bag play), SYSTEM_DEFAULT or RELIABLE.",
          read_only=True, choices=("SENSOR_DATA", "SYSTEM_DEFAULT", "RELIABLE")),
    Param("input_queue_depth", 5, "History depth of the sensor subscriptions.", read_only=True),
    Param("approx_sync", True, "Approximate-time sync of colour/depth(/labels); false = exact stamps.",
          read_only=True),
    Param("approx_sync_max_interval", 0.02, "Sync slop in seconds (max stamp difference in a set).",
          read_only=True),
    Param("sync_queue_size", 10, "Messages kept per input while waiting for a match.", read_only=True),
    Param("subscribe_labels", False, "Also sync a label image (mono8/mono16 class ids) from an "
          "external segmenter on labels/image_raw.", read_only=True),
    Param("subscribe_odom_prior", False, "Subscribe to an external nav_msgs/Odometry (topic "
          "odom_prior) and attach the nearest one to each frame; its motion between frames "
          "seeds tracking (pipeline.tracking.use_motion_prior) and, with the back-end on, links "
          "keyframes in the pose graph (pipeline.backend.odom_prior_edges).", read_only=True),
    Param("odom_prior_max_age", 0.1, "Seconds between a frame and the odometry prior used for it."),
    Param("depth_scale", 0.0, "Depth counts per metre for 16-bit depth; 0 = by encoding (16UC1/"
          "mono16 mm, 32FC1 m). 5000 for TUM-style images."),
    Param("process_width", 0, "Resize frames to this width before SLAM (0 = native); intrinsics "
          "follow. Use 320 on a CPU."),
    Param("process_height", 0, "Resize height (0 = keep the aspect ratio of process_width, or native)."),
    Param("use_cv_bridge", True, "Decode images with cv_bridge when installed (else the built-in decoder)."),
    Param("time_jump_policy", "skip", "A frame stamped at or before the previous one (bag loop, "
          "clock reset): skip it, or reset the map and trajectory.", choices=("skip", "reset")),
    # outputs
    Param("path_rate_hz", 2.0, "Rate of ~/path (whole trajectory; latched). 0 = every frame."),
    Param("map_rate_hz", 0.5, "Rate of ~/map_cloud and ~/semantic_cloud (latched). 0 = off."),
    Param("render_rate_hz", 1.0, "Rate of ~/render/color, ~/render/depth, ~/render/semantic. 0 = off."),
    Param("render_semantics", True, "Also render and publish ~/render/semantic."),
    Param("publish_semantic_cloud", True, "Publish ~/semantic_cloud (coloured by class)."),
    Param("publish_keyframe_graph", True, "Publish ~/keyframe_graph (visualization_msgs/MarkerArray, "
          "latched) when the back-end is on: keyframes and the pose graph's edges by kind, at "
          "path_rate_hz when it changed."),
    Param("cloud_min_opacity", 0.05, "Gaussians below this opacity are left out of the clouds."),
    Param("cloud_max_points", 0, "Subsample the clouds to at most this many points (0 = all)."),
    Param("diagnostics_rate_hz", 1.0, "Rate of /diagnostics.", read_only=True),
    Param("slow_frame_warn_ms", 0.0, "Warn (at most every 5 s) when a frame or a periodic output "
          "keeps the worker longer than this, with its stage times. 0 = off."),
    # map files and state
    Param("map_save_path", "~/.ros/gs4_map.ply", "PLY file written by ~/save_map."),
    Param("map_load_path", "", "PLY file read by ~/load_map; empty = map_save_path."),
    Param("load_map_on_start", False, "Load map_load_path when the node starts."),
    Param("save_map_on_shutdown", False, "Write map_save_path when the node shuts down."),
    Param("start_paused", False, "Start without processing frames until ~/resume."),
]
NODE_PARAM_NAMES = {p.name for p in NODE_PARAMS}


def pipeline_defaults() -> Dict[str, Any]:
    """{'pipeline.tracking.photo_weight': 0.05, ...} from the dataclass defaults."""
    return {PIPELINE_PREFIX + k: v for k, v in PipelineConfig().flatten().items()}


def declared_names() -> set:
    return NODE_PARAM_NAMES | set(pipeline_defaults())


def _param_value(v):
    return list(v) if isinstance(v, tuple) else v


def declare_all(node) -> None:
    """Declare node and pipeline parameters (values from --params-file override defaults).

    Numbers are declared with dynamic typing and coerced here, so `max_depth: 4` in a YAML
    file works for a float setting (plain rclpy would refuse an integer for a double);
    anything that cannot be coerced is refused with the parameter's name.
    """
    from rcl_interfaces.msg import ParameterDescriptor

    for p in NODE_PARAMS:
        desc = p.description + (f" One of: {', '.join(p.choices)}." if p.choices else "")
        node.declare_parameter(p.name, p.default, ParameterDescriptor(
            description=desc, read_only=p.read_only,
            dynamic_typing=isinstance(p.default, float)))
    for k, v in pipeline_defaults().items():
        v = _param_value(v)
        odd = v is None or isinstance(v, dict) or (isinstance(v, list) and not v)
        node.declare_parameter(k, None if odd else v, ParameterDescriptor(
            description="Pipeline setting (see gs4_ros/core/config.py); applied at start and "
                        "on ~/reset.",
            dynamic_typing=odd or isinstance(v, (int, float)) and not isinstance(v, bool)))


def coerce(p: Param, v):
    """A node parameter's value as the type of its default, or ValueError naming it."""
    d = p.default
    if isinstance(d, bool):
        if not isinstance(v, bool):
            raise ValueError(f"parameter {p.name} must be true or false, got {v!r}")
        return v
    if isinstance(d, float):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"parameter {p.name} must be a number, got {v!r}")
        return float(v)
    if isinstance(d, int):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"parameter {p.name} must be an integer, got {v!r}")
        return v
    if not isinstance(v, str):
        raise ValueError(f"parameter {p.name} must be a string, got {v!r}")
    return v


PARAMS_BY_NAME = {p.name: p for p in NODE_PARAMS}


def read_node_params(node) -> Dict[str, Any]:
    out = {p.name: coerce(p, node.get_parameter(p.name).value) for p in NODE_PARAMS}
    check_node_params(out)
    return out


def check_node_params(values: Dict[str, Any]) -> None:
    """Raise ValueError for a wrongly typed value, one outside its choices or an impossible number."""
    values = {k: coerce(PARAMS_BY_NAME[k], v) for k, v in values.items() if k in PARAMS_BY_NAME}
    for p in NODE_PARAMS:
        if p.name not in values:
            continue
        v = values[p.name]
        if p.choices and str(v) not in p.choices:
            raise ValueError(f"parameter {p.name}='{v}' must be one of {', '.join(p.choices)}")
    for name in ("approx_sync_max_interval", "odom_prior_max_age", "depth_scale", "path_rate_hz",
                 "map_rate_hz", "render_rate_hz", "diagnostics_rate_hz", "cloud_min_opacity"):
        if name in values and float(values[name]) < 0:
            raise ValueError(f"parameter {name} must be >= 0, got {values[name]}")
    for name in ("input_queue_depth", "sync_queue_size"):
        if name in values and int(values[name]) < 1:
            raise ValueError(f"parameter {name} must be >= 1, got {values[name]}")
    for name in ("process_width", "process_height", "cloud_max_points"):
        if name in values and int(values[name]) < 0:
            raise ValueError(f"parameter {name} must be >= 0, got {values[name]}")


def read_pipeline_config(node) -> PipelineConfig:
    vals = {k[len(PIPELINE_PREFIX):]: node.get_parameter(k).value for k in pipeline_defaults()}
    cfg = PipelineConfig()
    for k, v in vals.items():
        if v is None:                                   # unset: keep the default
            continue
        try:
            cfg.override({k: v})
        except (TypeError, ValueError) as e:
            raise ValueError(f"parameter {PIPELINE_PREFIX}{k}={v!r}: {e}") from None
    return cfg


def expand_path(p: str) -> str:
    return os.path.abspath(os.path.expanduser(os.path.expandvars(str(p))))


def markdown_table() -> str:
    """The node parameter table for docs/ros.md (kept in sync by a test)."""
    rows = ["| parameter | default | start-up only | meaning |", "|---|---|---|---|"]
    for p in NODE_PARAMS:
        if isinstance(p.default, bool):
            d = str(p.default).lower()
        elif isinstance(p.default, str):
            d = p.default or '""'
        else:
            d = str(p.default)
        ch = f" One of: {', '.join(p.choices)}." if p.choices else ""
        rows.append(f"| `{p.name}` | `{d}` | {'yes' if p.read_only else ''} | {p.description}{ch} |")
    return "\n".join(rows)
