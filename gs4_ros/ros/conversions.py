"""ROS message <-> numpy conversions, with no dependency on cv_bridge.

cv_bridge is not on PyPI and drags in Boost; our own decoder covers the encodings RGB-D
drivers publish (realsense2_camera, Azure Kinect, Orbbec, TUM / rosbag replays) and
honours `step` row padding and the `is_bigendian` flag, which hand-written decoders in
community wrappers often ignore. Functions take messages by duck typing (height, width,
encoding, is_bigendian, step, data), so rclpy messages and the `rosbags` library's
messages both work.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from ..core import palette as _palette
from ..core.frame import Intrinsics

# encoding -> (numpy dtype, channels). Matches sensor_msgs/image_encodings.hpp names.
ENCODINGS = {
    "rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
    "rgb16": (np.uint16, 3), "bgr16": (np.uint16, 3), "rgba16": (np.uint16, 4),
    "bgra16": (np.uint16, 4),
    "mono8": (np.uint8, 1), "mono16": (np.uint16, 1),
    "8UC1": (np.uint8, 1), "8UC3": (np.uint8, 3), "8UC4": (np.uint8, 4),
    "16UC1": (np.uint16, 1), "16SC1": (np.int16, 1),
    "32FC1": (np.float32, 1), "64FC1": (np.float64, 1),
    # packed YUV 4:2:2 (2 bytes per pixel), as RealSense and USB cameras publish
    "yuv422": (np.uint8, 2), "uyvy": (np.uint8, 2), "yuv422_yuy2": (np.uint8, 2),
    "yuyv": (np.uint8, 2),
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "rgb16", "bgr16", "rgba16", "bgra16",
                   "mono8", "mono16", "8UC3", "8UC4", "yuv422", "uyvy", "yuv422_yuy2", "yuyv")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1", "64FC1", "16SC1")
LABEL_ENCODINGS = ("mono8", "8UC1", "mono16", "16UC1")
MM_PER_M = 1000.0


class ConversionError(ValueError):
    """A message that cannot be turned into an array; the text says why (for the log)."""


# --- Image ------------------------------------------------------------------------------

def _bytes(data) -> np.ndarray:
    """A flat uint8 view of a message's data (bytes, array.array or numpy)."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def _cv_bridge():
    """A CvBridge when cv_bridge is installed (the ROS-standard decoder), else None."""
    global _BRIDGE
    if _BRIDGE is None:
        try:
            from cv_bridge import CvBridge
            _BRIDGE = CvBridge()
        except Exception:  # not installed (PyPI-only ROS) or broken Boost build
            _BRIDGE = False
    return _BRIDGE or None


_BRIDGE = None
USE_CV_BRIDGE = True  # the node sets this from its `use_cv_bridge` parameter


def decoder_name() -> str:
    return "cv_bridge" if USE_CV_BRIDGE and _cv_bridge() is not None else "builtin"


def _encoding(msg, kind: str, supported, units: str = "") -> str:
    """The message's encoding, or a ConversionError naming what this kind of image takes."""
    enc = str(msg.encoding)
    if enc not in supported:
        raise ConversionError(f"unsupported {kind} encoding '{enc}' (supported: {', '.join(supported)}{units})")
    return enc


def image_to_numpy(msg) -> np.ndarray:
    """Decode an Image into HxW or HxWxC (native dtype), dropping row padding.

    Always returns an array that owns its memory, so the message can be released.
    """
    enc = _encoding(msg, "image", sorted(ENCODINGS))
    dtype, ch = ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if USE_CV_BRIDGE and _cv_bridge() is not None and type(msg).__module__.startswith("sensor_msgs"):
        try:
            return np.array(_cv_bridge().imgmsg_to_cv2(msg, "passthrough"), copy=True)
        except Exception as e:  # cv_bridge raises its own error types
            raise ConversionError(f"cv_bridge cannot decode {w}x{h} {enc}: {e}") from None
    itemsize = np.dtype(dtype).itemsize
    row = w * ch * itemsize
    if h <= 0 or w <= 0:
        raise ConversionError(f"image has no pixels ({w}x{h})")
    if step < row:
        raise ConversionError(f"image step {step} is smaller than width x pixel size ({row} "
                              f"bytes) for {w}x{h} {enc}")
    buf = _bytes(msg.data)
    if buf.size < step * h:
        raise ConversionError(f"image data has {buf.size} bytes but step x height is "
                              f"{step * h} ({w}x{h} {enc})")
    rows = buf[: step * h].reshape(h, step)[:, :row]
    dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    arr = np.ascontiguousarray(rows).view(dt).reshape((h, w, ch) if ch > 1 else (h, w))
    return arr.astype(np.dtype(dtype).newbyteorder("="), copy=True)


def color_to_rgb(msg) -> np.ndarray:
    """Any supported colour encoding -> HxWx3 uint8 RGB."""
    enc = _encoding(msg, "colour", COLOR_ENCODINGS)
    a = image_to_numpy(msg)
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    if enc in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv"):
        import cv2
        code = cv2.COLOR_YUV2RGB_UYVY if enc in ("yuv422", "uyvy") else cv2.COLOR_YUV2RGB_YUY2
        return cv2.cvtColor(a, code)
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2)
    if enc.startswith("bgr") or enc in ("8UC3", "8UC4"):  # 8UCn: OpenCV order, as cv_bridge
        a = a[:, :, 2::-1]
    return np.ascontiguousarray(a[:, :, :3])


def depth_to_metres(msg, depth_scale: float = 0.0) -> np.ndarray:
    """Depth Image -> HxW float32 metres, 0 where invalid (NaN, inf, <= 0).

    Integer encodings are counts: millimetres by the ROS convention (REP-118), or
    `depth_scale` counts per metre when > 0 (5000 for TUM-style PNGs). Float encodings are
    metres; a depth_scale > 0 rescales them too (for float images stored in other units).
    """
    _encoding(msg, "depth", DEPTH_ENCODINGS, "; 16UC1/mono16 in mm, 32FC1 in m")
    a = image_to_numpy(msg)
    if a.dtype.kind in "iu":
        scale = depth_scale if depth_scale > 0 else MM_PER_M
        d = a.astype(np.float32) / np.float32(scale)
    else:
        d = a.astype(np.float32, copy=False)
        if depth_scale > 0:
            d = d / np.float32(depth_scale)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(d) | (d <= 0)
    if bad.any():
        d = d.copy() if not d.flags.writeable else d
        d[bad] = 0.0
    return np.ascontiguousarray(d, dtype=np.float32)


def labels_to_numpy(msg) -> np.ndarray:
    """Label image (class ids) -> HxW uint8; ids above 254 become 255 (unknown)."""
    _encoding(msg, "label", LABEL_ENCODINGS)
    a = image_to_numpy(msg)
    if a.dtype != np.uint8:
        a = np.where(a > 254, 255, a).astype(np.uint8)
    return a


def image_fields(arr: np.ndarray, encoding: str) -> dict:
    """Field values of an Image holding `arr` (little-endian, no padding)."""
    if encoding not in ENCODINGS:
        raise ConversionError(f"unsupported image encoding '{encoding}'")
    dtype, ch = ENCODINGS[encoding]
    a = np.asarray(arr)
    if a.dtype != np.dtype(dtype):
        raise ConversionError(f"{encoding} needs {np.dtype(dtype).name} pixels, got {a.dtype}")
    if (ch == 1 and a.ndim != 2) or (ch > 1 and (a.ndim != 3 or a.shape[2] != ch)):
        raise ConversionError(f"{encoding} needs {ch} channel(s), got shape {a.shape}")
    a = np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<"), copy=False))
    h, w = a.shape[:2]
    return dict(height=h, width=w, encoding=encoding, is_bigendian=0,
                step=w * ch * a.dtype.itemsize, data=a.reshape(-1).view(np.uint8))


def numpy_to_image(arr: np.ndarray, encoding: str, header=None):
    """rclpy sensor_msgs/Image from an array."""
    from sensor_msgs.msg import Image

    f = image_fields(arr, encoding)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.encoding = f["height"], f["width"], f["encoding"]
    msg.is_bigendian, msg.step = f["is_bigendian"], f["step"]
    msg.data = f["data"].tobytes()
    return msg


# --- CameraInfo ---------------------------------------------------------------------------

def camera_info_to_intrinsics(msg) -> Intrinsics:
    """Pinhole intrinsics from CameraInfo K (P when K is empty), honouring binning.

    ROI is not applied: drivers publishing RGB-D for SLAM send full frames.
    """
    # ROS 1 messages (rosbag1 replays, via `rosbags`) spell the matrices K and P.
    k = np.asarray(msg.k if hasattr(msg, "k") else msg.K, dtype=np.float64).reshape(-1)
    w, h = int(msg.width), int(msg.height)
    if k.size == 9 and k[0] > 0 and k[4] > 0:
        fx, fy, cx, cy = k[0], k[4], k[2], k[5]
    else:
        p = np.asarray(msg.p if hasattr(msg, "p") else msg.P, dtype=np.float64).reshape(-1)
        if p.size != 12 or p[0] <= 0 or p[5] <= 0:
            raise ConversionError("CameraInfo has neither K nor P set (all zero); the camera "
                                  "is uncalibrated")
        fx, fy, cx, cy = p[0], p[5], p[2], p[6]
    bx = max(1, int(getattr(msg, "binning_x", 0) or 1))
    by = max(1, int(getattr(msg, "binning_y", 0) or 1))
    if bx > 1 or by > 1:
        fx, cx, w = fx / bx, cx / bx, w // bx
        fy, cy, h = fy / by, cy / by, h // by
    if w <= 0 or h <= 0:
        raise ConversionError(f"CameraInfo has no image size ({w}x{h})")
    return Intrinsics(float(fx), float(fy), float(cx), float(cy), w, h)


def intrinsics_for_image(intr: Intrinsics, width: int, height: int) -> Intrinsics:
    """Intrinsics matching an image size; rescales when only the resolution differs.

    Raises ConversionError when the aspect ratios disagree (a different camera/crop).
    """
    if (intr.width, intr.height) == (width, height):
        return intr
    if abs(intr.width * height - intr.height * width) > max(intr.width, intr.height):
        raise ConversionError(f"CameraInfo is for {intr.width}x{intr.height} but the images are "
                              f"{width}x{height} (different aspect ratio)")
    return intr.scaled(width, height)


def camera_info_fields(intr: Intrinsics, distortion_model: str = "plumb_bob") -> dict:
    fx, fy, cx, cy = intr.fx, intr.fy, intr.cx, intr.cy
    return dict(height=intr.height, width=intr.width, distortion_model=distortion_model,
                d=np.zeros(5), k=np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1], dtype=np.float64),
                r=np.eye(3).reshape(-1),
                p=np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0], dtype=np.float64))


def intrinsics_to_camera_info(intr: Intrinsics, header=None):
    from sensor_msgs.msg import CameraInfo

    msg = CameraInfo()
    if header is not None:
        msg.header = header
    f = camera_info_fields(intr)
    msg.height, msg.width, msg.distortion_model = f["height"], f["width"], f["distortion_model"]
    msg.d = f["d"].tolist()
    msg.k, msg.r, msg.p = f["k"], f["r"], f["p"]
    return msg


# --- time -------------------------------------------------------------------------------

def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def stamp_to_sec(stamp) -> float:
    return int(stamp.sec) + int(stamp.nanosec) * 1e-9


def ns_to_stamp(ns: int):
    from builtin_interfaces.msg import Time

    ns = int(ns)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


# --- poses --------------------------------------------------------------------------------

def rotmat_to_quat_xyzw(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w), ROS's order, with w >= 0. scipy's Rotation does the
    maths (tf_transformations, the ROS wrapper of the same, is not on PyPI)."""
    from scipy.spatial.transform import Rotation

    q = Rotation.from_matrix(np.asarray(R, dtype=np.float64)).as_quat()
    return -q if q[3] < 0 else q


def quat_xyzw_to_rotmat(q) -> np.ndarray:
    """3x3 rotation of a quaternion (x, y, z, w), normalised first (a message's may not be)."""
    from scipy.spatial.transform import Rotation

    q = np.asarray([float(v) for v in q], dtype=np.float64)
    if q.shape != (4,) or not np.isfinite(q).all() or float(q @ q) < 1e-12:
        raise ConversionError(f"quaternion {q.tolist()} has zero length or is not finite")
    return Rotation.from_quat(q).as_matrix()


def matrix_to_pose_fields(T: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(position xyz, quaternion xyzw) of a 4x4 transform."""
    T = np.asarray(T, dtype=np.float64)
    return T[:3, 3].copy(), rotmat_to_quat_xyzw(T[:3, :3])


def fill_pose(pose_msg, T: np.ndarray):
    """Write a 4x4 transform into a geometry_msgs/Pose (or Transform, by field names)."""
    p, q = matrix_to_pose_fields(T)
    if hasattr(pose_msg, "position"):
        pos, rot = pose_msg.position, pose_msg.orientation
    else:
        pos, rot = pose_msg.translation, pose_msg.rotation
    pos.x, pos.y, pos.z = float(p[0]), float(p[1]), float(p[2])
    rot.x, rot.y, rot.z, rot.w = (float(v) for v in q)
    return pose_msg


def pose_to_matrix(pose_msg) -> np.ndarray:
    """geometry_msgs/Pose or Transform -> 4x4."""
    if hasattr(pose_msg, "position"):
        pos, rot = pose_msg.position, pose_msg.orientation
    else:
        pos, rot = pose_msg.translation, pose_msg.rotation
    T = np.eye(4)
    T[:3, :3] = quat_xyzw_to_rotmat((rot.x, rot.y, rot.z, rot.w))
    T[:3, 3] = (pos.x, pos.y, pos.z)
    return T


# --- PointCloud2 ---------------------------------------------------------------------------

# One Gaussian per point. `rgb` is PCL's packed float (0x00RRGGBB bits) so RViz's RGB8
# colour transformer and pcl::fromROSMsg both read it; `label` is uint32 as in PCL's
# PointXYZRGBL. Scale (metres, activated) and rotation (unit w, x, y, z) let Gaussian
# viewers rebuild the ellipsoids from the topic alone; `inferred` is 1 for a Gaussian placed
# on a plane across a depth hole rather than on measured depth (a planner may ignore it).
CLOUD_FIELDS = [
    ("x", np.float32), ("y", np.float32), ("z", np.float32), ("rgb", np.float32),
    ("label", np.uint32), ("opacity", np.float32),
    ("scale_x", np.float32), ("scale_y", np.float32), ("scale_z", np.float32),
    ("rot_w", np.float32), ("rot_x", np.float32), ("rot_y", np.float32), ("rot_z", np.float32),
    ("inferred", np.uint8),
]
CLOUD_DTYPE = np.dtype([(n, np.dtype(t).newbyteorder("<")) for n, t in CLOUD_FIELDS])
_PF_TYPES = {np.dtype(np.int8): 1, np.dtype(np.uint8): 2, np.dtype(np.int16): 3,
             np.dtype(np.uint16): 4, np.dtype(np.int32): 5, np.dtype(np.uint32): 6,
             np.dtype(np.float32): 7, np.dtype(np.float64): 8}
_PF_NUMPY = {v: k for k, v in _PF_TYPES.items()}


def pack_rgb(rgb_u8: np.ndarray) -> np.ndarray:
    """Nx3 uint8 -> N float32 carrying 0x00RRGGBB bits (PCL convention)."""
    c = np.asarray(rgb_u8, dtype=np.uint32)
    return ((c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]).astype(np.uint32).view(np.float32)


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    bits = np.ascontiguousarray(packed, dtype=np.float32).view(np.uint32)
    return np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], -1).astype(np.uint8)


def gaussian_cloud_array(means, colors_u8, labels, opacity, scales, quats_wxyz, inferred=None) -> np.ndarray:
    """Structured CLOUD_DTYPE array from per-Gaussian numpy columns (inferred: 0 if None)."""
    n = len(means)
    out = np.empty(n, dtype=CLOUD_DTYPE)
    out["x"], out["y"], out["z"] = means[:, 0], means[:, 1], means[:, 2]
    out["rgb"] = pack_rgb(colors_u8)
    out["label"] = labels
    out["opacity"] = opacity
    out["scale_x"], out["scale_y"], out["scale_z"] = scales[:, 0], scales[:, 1], scales[:, 2]
    for i, a in enumerate("wxyz"):
        out[f"rot_{a}"] = quats_wxyz[:, i]
    out["inferred"] = 0 if inferred is None else inferred
    return out


def array_to_pointcloud2(arr: np.ndarray, header=None):
    """Unorganised, dense PointCloud2 from a structured array of plain numeric fields."""
    from sensor_msgs.msg import PointCloud2, PointField

    msg = PointCloud2()
    if header is not None:
        msg.header = header
    fields = []
    for name in arr.dtype.names:
        dt, off = arr.dtype.fields[name][:2]
        fields.append(PointField(name=name, offset=int(off), datatype=_PF_TYPES[dt.newbyteorder("=")],
                                 count=1))
    msg.fields = fields
    msg.height, msg.width = 1, int(arr.shape[0])
    msg.is_bigendian = False  # CLOUD_DTYPE and callers' arrays are little-endian
    msg.point_step = int(arr.dtype.itemsize)
    msg.row_step = msg.point_step * msg.width
    msg.is_dense = True
    msg.data = np.ascontiguousarray(arr).view(np.uint8).tobytes()
    return msg


def pointcloud2_to_array(msg) -> np.ndarray:
    """Structured array from a PointCloud2 (any field layout, padding, endianness)."""
    order = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for f in msg.fields:
        if f.datatype not in _PF_NUMPY:
            raise ConversionError(f"PointField '{f.name}' has unknown datatype {f.datatype}")
        base = _PF_NUMPY[f.datatype].newbyteorder(order)
        names.append(f.name)
        formats.append(base if f.count <= 1 else (base, f.count))
        offsets.append(f.offset)
    dt = np.dtype({"names": names, "formats": formats, "offsets": offsets,
                   "itemsize": int(msg.point_step)})
    n = int(msg.width) * int(msg.height)
    buf = _bytes(msg.data)
    if msg.height > 1 and msg.row_step != msg.point_step * msg.width:
        rows = buf.reshape(int(msg.height), int(msg.row_step))[:, : msg.point_step * msg.width]
        buf = np.ascontiguousarray(rows).reshape(-1)
    if buf.size < n * msg.point_step:
        raise ConversionError(f"PointCloud2 has {buf.size} bytes for {n} points of "
                              f"{msg.point_step} bytes")
    return np.frombuffer(buf[: n * msg.point_step].tobytes(), dtype=dt, count=n)


# --- semantic colours ------------------------------------------------------------------------

def class_palette(n: int) -> np.ndarray:
    """(n+1)x3 uint8 colours: n class colours (core/palette), the last grey for unknown."""
    return _palette.class_palette(n)


def colorize_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Class ids (255 or >= num_classes = unknown, grey) -> RGB uint8 of the same shape + 3."""
    return _palette.colorize_labels(labels, num_classes)


__all__ = [
    "ConversionError", "ENCODINGS", "image_to_numpy", "color_to_rgb", "depth_to_metres",
    "labels_to_numpy", "image_fields", "numpy_to_image", "camera_info_to_intrinsics",
    "intrinsics_for_image", "camera_info_fields", "intrinsics_to_camera_info", "stamp_to_ns",
    "stamp_to_sec", "ns_to_stamp", "rotmat_to_quat_xyzw", "quat_xyzw_to_rotmat", "fill_pose",
    "pose_to_matrix", "CLOUD_FIELDS", "CLOUD_DTYPE", "pack_rgb", "unpack_rgb",
    "gaussian_cloud_array", "array_to_pointcloud2", "pointcloud2_to_array", "class_palette",
    "colorize_labels", "decoder_name",
]
