"""rosbag2 (sqlite3 or MCAP) and ROS 1 bags <-> RGBDFrames, without a ROS install.

Uses the pure-Python `rosbags` library, so `gs4 run --bag` and `gs4 convert` work on a
laptop with no ROS, and the bags written here play with `ros2 bag play` into gs4_node.

Written layout (what RGB-D drivers publish, so the node's default remaps fit):
  <prefix>/color/image_raw    sensor_msgs/Image rgb8
  <prefix>/depth/image_raw    sensor_msgs/Image 16UC1, millimetres (REP-118)
  <prefix>/color/camera_info  sensor_msgs/CameraInfo
  <prefix>/depth/camera_info  sensor_msgs/CameraInfo (depth is registered to colour)
  <prefix>/labels/image_raw   sensor_msgs/Image mono8 class ids, 255 unknown (if present)
  /gt/pose                    geometry_msgs/PoseStamped, camera-to-world, OpenCV optical axes
  (odom_topic)                nav_msgs/Odometry odom -> camera frame, the same poses (optional)
Every message of a frame carries the frame's stamp in its header and as bag time.

Reading finds the topics by message type and image encoding when they are not named,
pairs colour and depth (and labels) with the same approximate-time rule as the node, and
attaches ground truth interpolated from a pose topic when there is one.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from ..core.frame import FrameError, RGBDFrame
from ..ros import conversions as conv

IMAGE = "sensor_msgs/msg/Image"
INFO = "sensor_msgs/msg/CameraInfo"
POSE = "geometry_msgs/msg/PoseStamped"
ODOM = "nav_msgs/msg/Odometry"
STORAGES = ("sqlite3", "mcap")
NS = 1_000_000_000


class BagError(ValueError):
    """A bag that cannot be written or read as RGB-D; the message says what to change."""


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


# --- writing --------------------------------------------------------------------------------

@dataclass
class BagSummary:
    path: Path
    storage: str
    frames: int
    topics: Dict[str, int] = field(default_factory=dict)


def write_bag(frames: Iterable[RGBDFrame], out, storage: str = "sqlite3", prefix: str = "/camera",
              frame_id: str = "camera_color_optical_frame", gt_frame: str = "world",
              gt_topic: str = "/gt/pose", overwrite: bool = False,
              odom_topic: Optional[str] = None) -> BagSummary:
    """Write frames as a rosbag2 folder `out` (see the module doc for the layout).

    odom_topic: also write the ground truth as nav_msgs/Odometry (odom -> the camera
    frame), a perfect odometry for exercising the node's odometry prior."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    if storage not in STORAGES:
        raise BagError(f"storage must be one of {STORAGES}, got '{storage}'")
    out = Path(out)
    if out.exists():
        if not overwrite:
            raise BagError(f"{out} already exists; choose a new folder (rosbag2 writes a folder)")
        shutil.rmtree(out)
    ts = _typestore()
    T = ts.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    Image, CameraInfo = T[IMAGE], T[INFO]
    RegionOfInterest = T["sensor_msgs/msg/RegionOfInterest"]
    PoseStamped, Pose = T[POSE], T["geometry_msgs/msg/Pose"]
    Point, Quaternion = T["geometry_msgs/msg/Point"], T["geometry_msgs/msg/Quaternion"]

    p = prefix.rstrip("/")
    names = {"color": f"{p}/color/image_raw", "depth": f"{p}/depth/image_raw",
             "cinfo": f"{p}/color/camera_info", "dinfo": f"{p}/depth/camera_info",
             "labels": f"{p}/labels/image_raw", "gt": gt_topic, "odom": odom_topic}
    types = {"color": IMAGE, "depth": IMAGE, "cinfo": INFO, "dinfo": INFO, "labels": IMAGE, "gt": POSE,
             "odom": ODOM}
    counts: Dict[str, int] = {}
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    n = 0
    last_ns = None
    with Writer(out, version=9, storage_plugin=plugin) as w:
        conns: Dict[str, object] = {}

        def put(key, msg, t_ns):
            if key not in conns:
                conns[key] = w.add_connection(names[key], types[key], typestore=ts)
            w.write(conns[key], t_ns, bytes(ts.serialize_cdr(msg, types[key])))
            counts[names[key]] = counts.get(names[key], 0) + 1

        for f in frames:
            t_ns = int(round(f.timestamp * NS))
            if last_ns is not None and t_ns <= last_ns:
                raise BagError(f"frame {f.index} has stamp {f.timestamp:.6f}, not after the "
                               f"previous frame; bag time must increase")
            last_ns = t_ns
            hdr = Header(stamp=Time(sec=t_ns // NS, nanosec=t_ns % NS), frame_id=frame_id)

            def img(arr, enc):
                fl = conv.image_fields(arr, enc)
                return Image(header=hdr, height=fl["height"], width=fl["width"], encoding=enc,
                             is_bigendian=0, step=fl["step"], data=fl["data"].copy())

            mm = np.clip(np.round(np.nan_to_num(f.depth, nan=0.0) * 1000.0), 0, 65535).astype(np.uint16)
            ci = conv.camera_info_fields(f.intrinsics)
            info = CameraInfo(header=hdr, height=ci["height"], width=ci["width"],
                              distortion_model=ci["distortion_model"], d=ci["d"], k=ci["k"],
                              r=ci["r"], p=ci["p"], binning_x=0, binning_y=0,
                              roi=RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0,
                                                   do_rectify=False))
            put("cinfo", info, t_ns)
            put("dinfo", info, t_ns)
            put("color", img(np.ascontiguousarray(f.rgb), "rgb8"), t_ns)
            put("depth", img(mm, "16UC1"), t_ns)
            if f.labels is not None:
                put("labels", img(np.ascontiguousarray(f.labels, dtype=np.uint8), "mono8"), t_ns)
            if f.gt_pose is not None and np.all(np.isfinite(f.gt_pose)):
                pos, q = conv.matrix_to_pose_fields(f.gt_pose)
                pose = Pose(position=Point(x=float(pos[0]), y=float(pos[1]), z=float(pos[2])),
                            orientation=Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])))
                put("gt", PoseStamped(header=Header(stamp=hdr.stamp, frame_id=gt_frame), pose=pose), t_ns)
                if odom_topic:
                    put("odom", _odometry(T, Header(stamp=hdr.stamp, frame_id="odom"), frame_id, pose), t_ns)
            n += 1
    if n == 0:
        shutil.rmtree(out, ignore_errors=True)
        raise BagError("no frames to write")
    return BagSummary(out, storage, n, counts)


def _odometry(T, header, child: str, pose):
    """A nav_msgs/Odometry with this pose and zero twist (rosbags message classes)."""
    cov = np.zeros(36)
    Vec = T["geometry_msgs/msg/Vector3"]
    twist = T["geometry_msgs/msg/TwistWithCovariance"](
        twist=T["geometry_msgs/msg/Twist"](linear=Vec(x=0.0, y=0.0, z=0.0), angular=Vec(x=0.0, y=0.0, z=0.0)),
        covariance=cov.copy())
    return T[ODOM](header=header, child_frame_id=child,
                   pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=cov.copy()), twist=twist)


def static_chain(edges: Dict[Tuple[str, str], np.ndarray], target: str, source: str) -> Optional[np.ndarray]:
    """T_target_source (maps points from `source` into `target`) through a tree of static
    transforms {(parent, child): T_parent_child}, walked in either direction; None when
    the two frames are not connected. Written out because a bag replayed without ROS has
    no tf2 buffer to ask."""
    if target == source:
        return np.eye(4)
    nbr: Dict[str, List[Tuple[str, np.ndarray]]] = {}
    for (a, b), T in edges.items():
        nbr.setdefault(a, []).append((b, T))                 # a <- b: T_a_b
        nbr.setdefault(b, []).append((a, np.linalg.inv(T)))  # b <- a
    seen, frontier = {target: np.eye(4)}, [target]
    while frontier:
        nxt = []
        for f in frontier:
            for g, T in nbr.get(f, []):
                if g not in seen:
                    seen[g] = seen[f] @ T                     # T_target_g
                    nxt.append(g)
        frontier = nxt
    return seen.get(source)


def _static_transforms(reader) -> Dict[Tuple[str, str], np.ndarray]:
    edges: Dict[Tuple[str, str], np.ndarray] = {}
    conns = [c for c in reader.connections if c.topic == "/tf_static"]
    if not conns:                    # (an empty list would read every message)
        return edges
    for conn, _, raw in reader.messages(connections=conns):
        for t in reader.deserialize(raw, conn.msgtype).transforms:
            edges[(t.header.frame_id.lstrip("/"), t.child_frame_id.lstrip("/"))] = conv.pose_to_matrix(t.transform)
    return edges


# --- reading --------------------------------------------------------------------------------

@dataclass
class BagTopics:
    color: str
    depth: str
    info: Optional[str]
    labels: Optional[str]
    gt: Optional[str]


def _peek(reader, conns) -> Dict[str, object]:
    """First message of each connection's topic (for encodings and CameraInfo)."""
    out: Dict[str, object] = {}
    for c in conns:
        if c.topic in out:
            continue
        for conn, _, raw in reader.messages(connections=[c]):
            out[c.topic] = reader.deserialize(raw, conn.msgtype)
            break
    return out


def _score_name(topic: str, words: Tuple[str, ...]) -> int:
    t = topic.lower()
    return sum(w in t for w in words)


def detect_topics(reader, color_topic=None, depth_topic=None, info_topic=None,
                  labels_topic=None, gt_topic=None) -> BagTopics:
    """Pick colour / depth / labels Image topics by encoding and name, CameraInfo and GT."""
    by_type: Dict[str, List] = {}
    for c in reader.connections:
        by_type.setdefault(c.msgtype, []).append(c)
    topics = {c.topic for c in reader.connections}
    for name, t in (("colour", color_topic), ("depth", depth_topic), ("camera_info", info_topic),
                    ("labels", labels_topic), ("ground truth", gt_topic)):
        if t and t not in topics:
            raise BagError(f"{name} topic '{t}' is not in the bag (topics: {', '.join(sorted(topics))})")
    images = by_type.get(IMAGE, [])
    first = _peek(reader, images)
    depth_c, color_c, label_c = [], [], []
    for topic, msg in first.items():
        enc = str(msg.encoding)
        if _score_name(topic, ("label", "semantic", "segment", "class")) and enc in conv.LABEL_ENCODINGS:
            label_c.append(topic)
        elif enc in ("16UC1", "32FC1", "64FC1", "16SC1") or (enc == "mono16" and "depth" in topic.lower()):
            depth_c.append(topic)
        elif enc in conv.COLOR_ENCODINGS:
            color_c.append(topic)

    def pick(cands, words, what, flag):
        if not cands:
            return None
        best = sorted(cands, key=lambda t: (-_score_name(t, words), len(t), t))
        if len(best) > 1 and _score_name(best[0], words) == _score_name(best[1], words):
            raise BagError(f"several {what} topics fit ({', '.join(best)}); choose one with {flag}")
        return best[0]

    color = color_topic or pick(color_c, ("color", "rgb", "image_raw", "rect"), "colour", "--color-topic")
    depth = depth_topic or pick(depth_c, ("depth", "aligned", "registered", "image_raw"), "depth",
                                "--depth-topic")
    if not color or not depth:
        raise BagError("the bag needs a colour and a depth sensor_msgs/Image topic; found "
                       f"colour: {color_c or 'none'}, depth: {depth_c or 'none'} "
                       f"(image topics and encodings: "
                       f"{', '.join(f'{t} [{m.encoding}]' for t, m in first.items()) or 'none'})")
    labels = labels_topic if labels_topic is not None else (label_c[0] if len(label_c) == 1 else None)
    labels = labels or None
    infos = [c.topic for c in by_type.get(INFO, [])]
    info = info_topic
    if not info and infos:
        ns_c, ns_d = color.rsplit("/", 1)[0], depth.rsplit("/", 1)[0]
        info = next((t for t in infos if t.rsplit("/", 1)[0] == ns_c), None) or \
            next((t for t in infos if t.rsplit("/", 1)[0] == ns_d), None) or sorted(infos)[0]
    gt = gt_topic
    if gt is None:
        cands = [c.topic for c in by_type.get(POSE, []) + by_type.get(ODOM, [])]
        hinted = [t for t in cands if _score_name(t, ("gt", "ground", "truth", "mocap", "vicon"))]
        gt = hinted[0] if hinted else (cands[0] if len(cands) == 1 else None)
    return BagTopics(color, depth, info or None, labels, gt or None)


def _gt_track(reader, topic: str, msgtype: str, covariances: Optional[list] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(stamps, poses) sorted by stamp; an Odometry topic's pose covariances (6x6) are
    appended to `covariances` in the same order when it is given."""
    stamps, poses, covs = [], [], []
    conns = [c for c in reader.connections if c.topic == topic]
    for conn, t_ns, raw in reader.messages(connections=conns):
        m = reader.deserialize(raw, conn.msgtype)
        pose = m.pose.pose if conn.msgtype == ODOM else m.pose
        st = conv.stamp_to_ns(m.header.stamp) or t_ns
        stamps.append(st)
        poses.append(conv.pose_to_matrix(pose))
        if covariances is not None and conn.msgtype == ODOM:
            covs.append(np.asarray(m.pose.covariance, dtype=np.float64).reshape(6, 6))
    order = np.argsort(stamps, kind="stable")
    if covariances is not None:
        covariances.extend(covs[k] for k in order)
    return np.asarray(stamps, dtype=np.int64)[order], np.asarray(poses).reshape(-1, 4, 4)[order]


def interpolate_pose(stamps: np.ndarray, poses: np.ndarray, t_ns: int,
                     max_gap_s: float = 0.1) -> Optional[np.ndarray]:
    """Pose at t (linear translation, slerp rotation) between samples at most max_gap apart."""
    if stamps.size == 0:
        return None
    i = int(np.searchsorted(stamps, t_ns))
    if i < stamps.size and stamps[i] == t_ns:
        return poses[i].copy()
    if i == 0 or i == stamps.size:
        j = 0 if i == 0 else stamps.size - 1
        return poses[j].copy() if abs(stamps[j] - t_ns) <= 0.02 * NS else None
    t0, t1 = stamps[i - 1], stamps[i]
    if (t1 - t0) > max_gap_s * NS:
        return None
    from scipy.spatial.transform import Rotation, Slerp

    a = (t_ns - t0) / (t1 - t0)
    rots = Rotation.from_matrix(np.stack([poses[i - 1][:3, :3], poses[i][:3, :3]]))
    T = np.eye(4)
    T[:3, :3] = Slerp([0.0, 1.0], rots)(a).as_matrix()
    T[:3, 3] = (1 - a) * poses[i - 1][:3, 3] + a * poses[i][:3, 3]
    return T


def _parse_range(frames) -> Tuple[int, Optional[int], int]:
    if frames is None or frames == "":
        return 0, None, 1
    if isinstance(frames, slice):
        s = frames
    else:
        parts = str(frames).split(":")
        if len(parts) > 3:
            raise BagError(f"frame range '{frames}' must be A:B or A:B:S")
        try:
            vals = [int(p) if p.strip() else None for p in parts]
        except ValueError:
            raise BagError(f"frame range '{frames}' must be integers A:B or A:B:S") from None
        if len(vals) == 1:
            vals = [vals[0], None if vals[0] is None else vals[0] + 1]
        s = slice(*vals)
    a, b, st = s.start or 0, s.stop, s.step or 1
    if a < 0 or (b is not None and b < 0) or st <= 0:
        raise BagError(f"frame range '{frames}': bags are streamed, so use non-negative A:B:S")
    return a, b, st


def read_frames(path, color_topic: Optional[str] = None, depth_topic: Optional[str] = None,
                info_topic: Optional[str] = None, labels_topic: Optional[str] = None,
                gt_topic: Optional[str] = None, depth_scale: Optional[float] = None,
                frames=None, width: Optional[int] = None, height: Optional[int] = None,
                slop: float = 0.02, log=None, odom_topic: Optional[str] = None) -> Iterator[RGBDFrame]:
    """Stream synchronised RGBDFrames from a rosbag2 folder / .mcap / .db3 or a ROS 1 .bag.

    Frames that cannot be decoded are skipped with a message to `log` (a callable), like
    the node does. `labels_topic=""` ignores label images even when the bag has them.
    odom_topic (nav_msgs/Odometry): each frame gets the camera's pose in that odometry
    (meta "odom_camera_pose", through the bag's /tf_static when the odometry's child is
    not the camera frame), which seeds tracking as the node's odometry prior does.
    """
    from rosbags.highlevel import AnyReader

    from ..ros.sync import ApproxTimeSync

    p = Path(path)
    if not p.exists():
        raise BagError(f"no bag at {p}")
    a, b, step = _parse_range(frames)
    if (width is None) != (height is None) and (width or height) and (width or height) <= 0:
        raise BagError("width/height must be positive")
    with AnyReader([p], default_typestore=_typestore()) as reader:
        tp = detect_topics(reader, color_topic, depth_topic, info_topic, labels_topic, gt_topic)
        gt_stamps = np.zeros(0, np.int64)
        gt_poses = np.zeros((0, 4, 4))
        if tp.gt:
            gtype = next(c.msgtype for c in reader.connections if c.topic == tp.gt)
            gt_stamps, gt_poses = _gt_track(reader, tp.gt, gtype)
        odom = None
        if odom_topic:
            oconn = [c for c in reader.connections if c.topic == odom_topic]
            if not oconn or oconn[0].msgtype != ODOM:
                raise BagError(f"--odom-topic {odom_topic}: no nav_msgs/Odometry topic of that name in {p}")
            o_covs: list = []
            o_stamps, o_poses = _gt_track(reader, odom_topic, ODOM, o_covs)
            first = _peek(reader, oconn[:1]).get(odom_topic)
            odom = {"stamps": o_stamps, "poses": o_poses, "covs": np.asarray(o_covs).reshape(-1, 6, 6),
                    "child": first.child_frame_id.lstrip("/"), "edges": _static_transforms(reader)}
        inputs = [tp.color, tp.depth] + ([tp.labels] if tp.labels else [])
        want = set(inputs) | ({tp.info} if tp.info else set())
        conns = [c for c in reader.connections if c.topic in want]
        info_msg = None
        if tp.info:
            info_msg = _peek(reader, [c for c in conns if c.topic == tp.info]).get(tp.info)
        ready: List[tuple] = []
        sync = ApproxTimeSync(len(inputs), 30, slop, lambda *ms: ready.append(ms))
        pos = {t: i for i, t in enumerate(inputs)}
        k = 0        # index of the synchronised set in the bag
        emitted = 0
        scale = float(depth_scale or 0.0)
        for conn, t_ns, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic == tp.info:
                info_msg = msg
                continue
            st = conv.stamp_to_ns(msg.header.stamp) or t_ns
            sync.add(pos[conn.topic], st, msg)
            while ready:
                ms = ready.pop(0)
                idx = k
                k += 1
                if idx < a or (idx - a) % step:
                    continue
                if b is not None and idx >= b:
                    return
                fr = _make_frame(idx, ms, info_msg, scale, gt_stamps, gt_poses, width, height, log)
                if fr is not None and odom is not None:
                    _attach_odometry(fr, ms[0], info_msg, odom, log)
                if fr is not None:
                    emitted += 1
                    yield fr
        if emitted == 0 and k == 0:
            raise BagError(f"no synchronised colour/depth pairs in {p} ({tp.color} and {tp.depth} "
                           f"never within {slop * 1000:.0f} ms)")


def _make_frame(idx, ms, info_msg, scale, gt_stamps, gt_poses, width, height, log):
    color, depth = ms[0], ms[1]
    st = conv.stamp_to_ns(color.header.stamp)
    try:
        if info_msg is None:
            raise conv.ConversionError("the bag has no CameraInfo topic; intrinsics are unknown")
        rgb = conv.color_to_rgb(color)
        d = conv.depth_to_metres(depth, scale)
        if rgb.shape[:2] != d.shape:
            raise FrameError(f"colour {rgb.shape[1]}x{rgb.shape[0]} and depth {d.shape[1]}x{d.shape[0]} differ")
        labels = conv.labels_to_numpy(ms[2]) if len(ms) > 2 else None
        intr = conv.intrinsics_for_image(conv.camera_info_to_intrinsics(info_msg), d.shape[1], d.shape[0])
        fr = RGBDFrame(idx, st / NS, rgb, d, intr,
                       gt_pose=interpolate_pose(gt_stamps, gt_poses, st), labels=labels,
                       meta={"stamp_ns": st})
        if width or height:
            w = width or round(intr.width * height / intr.height)
            h = height or round(intr.height * width / intr.width)
            fr = fr.resized(int(w), int(h))
        return fr
    except (conv.ConversionError, FrameError) as e:
        if log is not None:
            log(f"skipping bag frame {idx} at {st / NS:.6f}: {e}")
        return None


def _attach_odometry(fr: RGBDFrame, color, info_msg, odom: dict, log) -> None:
    """meta odom_camera_pose of a bag frame: the odometry at its stamp moved into the
    camera's optical frame (the colour image's / CameraInfo's frame_id), and its pose
    covariance (odom_camera_covariance, interpolated like the position) beside it."""
    from ..ros.tf import odom_camera_covariance, odom_camera_pose

    if "T_opt_child" not in odom:    # resolved once, at the first frame (static transforms)
        cam = (color.header.frame_id or (info_msg.header.frame_id if info_msg is not None else "")).lstrip("/")
        child = odom["child"] or cam
        odom["T_opt_child"] = static_chain(odom["edges"], cam, child)
        if odom["T_opt_child"] is None and log is not None:
            log(f"odometry child frame '{child}' has no /tf_static path to the camera frame "
                f"'{cam}' in the bag; the odometry prior is not used")
    if odom["T_opt_child"] is None:
        return
    T = interpolate_pose(odom["stamps"], odom["poses"], int(fr.meta["stamp_ns"]))
    if T is not None:
        fr.meta["odom_camera_pose"] = odom_camera_pose(T, odom["T_opt_child"])
        t, st, covs = int(fr.meta["stamp_ns"]), odom["stamps"], odom.get("covs")
        cov = None if covs is None else np.array([np.interp(t, st, c) for c in covs.reshape(len(st), 36).T])
        if cov is not None and np.isfinite(cov).all():
            cov = cov.reshape(6, 6)
            fr.meta["odom_camera_covariance"] = odom_camera_covariance(cov, T, odom["T_opt_child"])


def bag_info(path) -> Dict[str, object]:
    """Topics, types and counts of a bag (for error messages and `gs4 convert` output)."""
    from rosbags.highlevel import AnyReader

    with AnyReader([Path(path)], default_typestore=_typestore()) as r:
        topics = {}
        for c in r.connections:
            t = topics.setdefault(c.topic, {"type": c.msgtype, "count": 0})
            t["count"] += c.msgcount
        return {"duration_s": r.duration / NS if r.message_count else 0.0,
                "messages": r.message_count, "topics": topics}


__all__ = ["write_bag", "read_frames", "detect_topics", "bag_info", "interpolate_pose",
           "BagError", "BagSummary", "BagTopics", "STORAGES"]
