"""A top-down picture of what a running gs4_node publishes: semantic cloud and path.

    python -m gs4_ros.ros.topdown --node /gs4_node --out topdown.png

subscribes to the node's latched ~/semantic_cloud and ~/path (so it works at any time,
also after the camera stopped) and draws the map from above (map x/y; with the default
map_alignment the map's z is up at the first frame), classes coloured as in RViz.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Optional, Sequence

import numpy as np

from . import conversions as conv


def plot_topdown(points: np.ndarray, path_xyz: Optional[np.ndarray], out,
                 class_names: Optional[Sequence[str]] = None, title: str = "",
                 max_points: int = 60000, dpi: int = 110, point_size: float = 5.0):
    """Scatter of a CLOUD_DTYPE semantic cloud (x, y, rgb, label, opacity) plus the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    pts = points
    if pts.size > max_points:
        pts = pts[np.linspace(0, pts.size - 1, max_points).round().astype(np.int64)]
    order = np.argsort(pts["z"], kind="stable")          # highest last: seen from above
    pts = pts[order]
    cols = conv.unpack_rgb(pts["rgb"]).astype(np.float32) / 255.0
    fig, ax = plt.subplots(figsize=(7.2, 6.0))
    ax.scatter(pts["x"], pts["y"], c=cols, s=point_size, marker="s", linewidths=0,
               alpha=np.clip(pts["opacity"], 0.35, 1.0), rasterized=True)
    handles = []
    if path_xyz is not None and len(path_xyz):
        p = np.asarray(path_xyz)
        ax.plot(p[:, 0], p[:, 1], "-", color="black", lw=2.2, zorder=5)
        ax.plot(p[:, 0], p[:, 1], "-", color="#ffd400", lw=1.2, zorder=6)
        ax.plot(p[0, 0], p[0, 1], "o", ms=8, mfc="#2ca02c", mec="black", zorder=7)
        ax.plot(p[-1, 0], p[-1, 1], "s", ms=8, mfc="#d62728", mec="black", zorder=7)
        handles += [Line2D([], [], color="#ffd400", lw=2.5, label=f"path ({len(p)} poses)"),
                    Line2D([], [], marker="o", ls="", mfc="#2ca02c", mec="black", label="start"),
                    Line2D([], [], marker="s", ls="", mfc="#d62728", mec="black", label="end")]
    if class_names is not None and points.size:
        pal = conv.class_palette(len(class_names)).astype(np.float32) / 255.0
        lab, cnt = np.unique(points["label"], return_counts=True)
        for lb, c in sorted(zip(lab, cnt), key=lambda x: -x[1]):
            if lb < len(class_names) and c >= 0.01 * points.size:
                handles.append(Line2D([], [], marker="s", ls="", mfc=pal[lb], mec="none", ms=8,
                                      label=class_names[lb]))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_aspect("equal")
    ax.set_xlabel("map x [m]")
    ax.set_ylabel("map y [m]")
    ax.grid(True, lw=0.3, alpha=0.5)
    ax.set_title(title or f"gs4_node: ~/semantic_cloud ({points.size} Gaussians) and ~/path from above",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return out


def snapshot(node, executor, topic_base: str, timeout: float = 30.0):
    """Latest latched semantic cloud (structured array) and path (Nx3) of a node."""
    from nav_msgs.msg import Path
    from sensor_msgs.msg import PointCloud2

    from .qos import latched_qos

    got = {}
    s1 = node.create_subscription(PointCloud2, f"{topic_base}/semantic_cloud",
                                  lambda m: got.__setitem__("cloud", m), latched_qos())
    s2 = node.create_subscription(Path, f"{topic_base}/path", lambda m: got.__setitem__("path", m),
                                  latched_qos())
    end = time.monotonic() + timeout
    while time.monotonic() < end and not ("cloud" in got and "path" in got):
        executor.spin_once(timeout_sec=0.1)
    node.destroy_subscription(s1)
    node.destroy_subscription(s2)
    if "cloud" not in got:
        raise TimeoutError(f"no {topic_base}/semantic_cloud within {timeout} s (is the node running, "
                           "with publish_semantic_cloud and map_rate_hz > 0?)")
    cloud = conv.pointcloud2_to_array(got["cloud"])
    path = None
    if "path" in got:
        path = np.array([[p.pose.position.x, p.pose.position.y, p.pose.position.z]
                         for p in got["path"].poses]).reshape(-1, 3)
    return cloud, path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--node", default="/gs4_node", help="fully qualified node name (topic prefix)")
    ap.add_argument("--out", default="gs4_topdown.png")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--title", default="")
    args = ap.parse_args(argv)
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from ..core.config import SCANNET20_CLASSES

    rclpy.init()
    node = rclpy.create_node("gs4_topdown")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    try:
        cloud, path = snapshot(node, ex, args.node.rstrip("/"), args.timeout)
    except TimeoutError as e:
        print(f"gs4_topdown: {e}", file=sys.stderr)
        return 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    plot_topdown(cloud, path, args.out, SCANNET20_CLASSES, args.title)
    print(f"wrote {args.out}: {cloud.size} points, {0 if path is None else len(path)} poses")
    return 0


if __name__ == "__main__":
    sys.exit(main())
