"""`gs4 convert`: dataset -> rosbag2, and `bag_frames` for `gs4 run --bag`.

Both work without a ROS install (the `rosbags` library reads and writes the files), so a
TUM / 7-Scenes / Replica / synthetic sequence becomes a bag that `ros2 bag play` feeds
into gs4_node, and any RGB-D bag runs through the same pipeline offline.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Iterator, Optional

from ..core.frame import RGBDFrame

log = logging.getLogger(__name__)


def bag_frames(path, color_topic: Optional[str] = None, depth_topic: Optional[str] = None,
               info_topic: Optional[str] = None, depth_scale: Optional[float] = None,
               frames=None, width: Optional[int] = None, height: Optional[int] = None,
               labels_topic: Optional[str] = None, gt_topic: Optional[str] = None,
               odom_topic: Optional[str] = None) -> Iterator[RGBDFrame]:
    """Synchronised frames of a rosbag2 (sqlite3/MCAP) or ROS 1 bag, topics auto-detected.

    Ground truth comes from a PoseStamped/Odometry topic when the bag has one (e.g. the
    /gt/pose that `gs4 convert` writes). Undecodable frames are skipped with a warning.
    odom_topic: an Odometry topic whose motion seeds tracking (see io.rosbag.read_frames).
    """
    from ..io.rosbag import read_frames

    if (width is None) != (height is None):
        raise ValueError("give both width and height (or neither)")
    return read_frames(path, color_topic=color_topic, depth_topic=depth_topic,
                       info_topic=info_topic, labels_topic=labels_topic, gt_topic=gt_topic,
                       depth_scale=depth_scale, frames=frames, width=width, height=height,
                       log=log.warning, odom_topic=odom_topic)


def register(sub):
    p = sub.add_parser(
        "convert", help="write a dataset into a rosbag2 (colour, 16UC1 depth, CameraInfo, /gt/pose)",
        description="Write a dataset as a rosbag2 that `ros2 bag play` feeds into gs4_node: "
                    "<prefix>/color/image_raw (rgb8), <prefix>/depth/image_raw (16UC1 mm), "
                    "<prefix>/{color,depth}/camera_info, <prefix>/labels/image_raw (mono8, when the "
                    "dataset has labels) and /gt/pose (geometry_msgs/PoseStamped).")
    p.add_argument("--dataset", required=True, help="KIND:PATH with KIND in tum, 7scenes, replica, "
                   "synthetic (e.g. synthetic:seed=3,frames=120)")
    p.add_argument("--frames", default=None, help="frame range A:B or A:B:S")
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--out", required=True, help="bag folder to create")
    p.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3")
    p.add_argument("--prefix", default="/camera", help="topic prefix (default /camera)")
    p.add_argument("--frame-id", default="camera_color_optical_frame",
                   help="header frame_id of images and CameraInfo")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--odom-topic", default=None,
                   help="also write the ground truth as nav_msgs/Odometry here (odom -> the camera "
                        "frame): a perfect odometry prior for trying the node's odom_prior input")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args) -> int:
    from ..io.datasets import open_dataset
    from ..io.rosbag import write_bag

    if (args.width is None) != (args.height is None):
        raise ValueError("give both --width and --height (or neither)")
    kw = {}
    if args.frames:
        kw["frames"] = args.frames
    if args.width:
        kw.update(width=args.width, height=args.height)
    seq = open_dataset(args.dataset, **kw)
    n = len(seq)
    t0 = time.perf_counter()

    def frames():
        for i in range(n):
            if i and i % 100 == 0:
                print(f"  {i}/{n} frames", file=sys.stderr, flush=True)
            yield seq[i]

    s = write_bag(frames(), args.out, storage=args.storage, prefix=args.prefix,
                  frame_id=args.frame_id, overwrite=args.overwrite, odom_topic=args.odom_topic)
    print(f"wrote {s.frames} frames to {s.path} ({s.storage}) in {time.perf_counter() - t0:.1f} s")
    for topic, count in sorted(s.topics.items()):
        print(f"  {topic}: {count}")
    print(f"play it: ros2 bag play {s.path} --clock  (with gs4_node use_sim_time:=true), "
          f"or run offline: gs4 run --bag {s.path} --out OUT")
    return 0
