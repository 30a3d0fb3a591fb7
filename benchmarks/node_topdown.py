"""Make docs/node_topdown.png: run gs4_node on a synthetic sequence over DDS and draw
its semantic cloud and path from above (gs4_ros.ros.topdown).

    python benchmarks/node_topdown.py --frames 200 --step 2 --width 256 --height 192 \
        --out docs/node_topdown.png

Frames are sent one at a time (each waits for its pose), so the picture shows the map of
the whole sequence even on a slow CPU; what is drawn is exactly what the node published
on ~/semantic_cloud and ~/path.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--step", type=int, default=2, help="send every N-th frame")
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--height", type=int, default=192)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=str(REPO / "docs" / "node_topdown.png"))
    ap.add_argument("--save-npz", default=None, help="also keep the received cloud and path")
    args = ap.parse_args(argv)

    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import PointCloud2

    from gs4_ros.core.config import SCANNET20_CLASSES
    from gs4_ros.io.datasets import open_dataset
    from gs4_ros.ros import conversions as conv
    from gs4_ros.ros.player import FramePlayer, NodeRunner, encode
    from gs4_ros.ros.qos import latched_qos
    from gs4_ros.ros.topdown import plot_topdown, snapshot

    seq = open_dataset(f"synthetic:seed={args.seed},frames={args.frames}", width=args.width,
                       height=args.height)
    idx = list(range(0, len(seq), args.step))
    node = NodeRunner({"pipeline.device": args.device, "map_rate_hz": 1.0, "render_rate_hz": 0.0,
                       "path_rate_hz": 5.0, "cloud_min_opacity": 0.2,
                       # ground-truth labels stand in for an external segmenter
                       "subscribe_labels": True},
                      namespace="/demo", prefix="/demo_camera")
    rclpy.init()
    client = rclpy.create_node("gs4_topdown_demo")
    ex = SingleThreadedExecutor()
    ex.add_node(client)
    poses, clouds = {}, []
    client.create_subscription(PoseStamped, "/demo/gs4_node/pose",
                               lambda m: poses.__setitem__(conv.stamp_to_ns(m.header.stamp), m), 50)
    client.create_subscription(PointCloud2, "/demo/gs4_node/semantic_cloud",
                               lambda m: clouds.append(conv.stamp_to_ns(m.header.stamp)), latched_qos())
    player = FramePlayer(client, prefix="/demo_camera", publish_gt=False)
    try:
        if not node.wait_ready(600):
            raise SystemExit(node.log()[-3000:])
        while player.pub_color.get_subscription_count() == 0:
            ex.spin_once(timeout_sec=0.1)
        t_start = time.perf_counter()
        stamp0 = 1_700_000_000 * 10**9
        for n, i in enumerate(idx):
            f = seq[i]
            st = stamp0 + int(round(f.timestamp * 1e9))
            player.publish(encode(f), st)
            end = time.monotonic() + 300
            while st not in poses and time.monotonic() < end:
                ex.spin_once(timeout_sec=0.02)
            if st not in poses:
                raise SystemExit(f"no pose for frame {i}:\n{node.log()[-2000:]}")
            if n % 10 == 0:
                print(f"frame {i} ({n + 1}/{len(idx)}) {time.perf_counter() - t_start:.0f} s", flush=True)
        last = st
        end = time.monotonic() + 120
        while not (clouds and clouds[-1] == last) and time.monotonic() < end:
            ex.spin_once(timeout_sec=0.1)
        cloud, path = snapshot(client, ex, "/demo/gs4_node", 60)
    finally:
        client.destroy_node()
        rclpy.try_shutdown()
        node.stop()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if args.save_npz:
        import numpy as np
        np.savez_compressed(args.save_npz, cloud=cloud, path=path)
    plot_topdown(cloud, path, args.out, SCANNET20_CLASSES,
                 title=f"gs4_node on a synthetic room ({len(idx)} frames, {args.width}x{args.height}, "
                       f"labels from a stand-in segmenter)\n~/semantic_cloud ({cloud.size} Gaussians) "
                       "and ~/path seen from above")
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1024:.0f} KB): {cloud.size} points, "
          f"{len(path)} poses")
    return 0


if __name__ == "__main__":
    sys.exit(main())
