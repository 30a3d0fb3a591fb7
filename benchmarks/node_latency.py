"""Live-node benchmark: a 30 Hz synthetic RGB-D stream into gs4_node over DDS.

Starts gs4_node as its own process (shipped defaults, chosen device), publishes a
synthetic sequence like a camera driver (rgb8 + 16UC1 + CameraInfo, wall-clock stamps),
and measures what a robot would see:
  - drops: frames published whose pose never came back (the node keeps only the newest
    frame, so a slow node drops rather than lags), split into transport losses (never
    received by the node) and the node's own single-slot drops (from /diagnostics);
  - pose latency: receive time of ~/pose minus the stamp of the input frame (same clock),
    as percentiles;
  - input rate achieved, resolution, device, per-stage latency and memory (RSS and GPU)
    at the start and end of the run, so growth is visible.

    python benchmarks/node_latency.py --device cuda --width 640 --height 480 --duration 20
    python benchmarks/node_latency.py --device cpu --width 320 --height 240 --frames 40 --duration 60

The sequence is played forwards and backwards (ping-pong) so the camera motion stays
continuous however long the run. A warm-up (one frame at a time, waiting for each pose)
builds the map and lets gsplat compile its kernels first. Exit status 1 when a
--max-drop-fraction / --max-p95-ms check fails.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import numpy as np  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="node device: auto | cuda | cpu")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--rate", type=float, default=30.0, help="input rate (Hz)")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    p.add_argument("--frames", type=int, default=120, help="distinct synthetic frames (played ping-pong)")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--warmup", type=int, default=30, help="frames processed one by one before measuring")
    p.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE",
                   help="extra node parameter, e.g. render_rate_hz=0 or pipeline.mapping.stride=16")
    p.add_argument("--labels", action="store_true",
                   help="also stream the sequence's label images (subscribe_labels), so the map has semantics")
    p.add_argument("--query", default=None,
                   help="after the warm-up, stand this text query on ~/query (its outputs follow the map)")
    p.add_argument("--json", default=None, help="write the results here as JSON")
    p.add_argument("--node-log", default=None, help="keep the node's log here")
    p.add_argument("--max-drop-fraction", type=float, default=None)
    p.add_argument("--max-p95-ms", type=float, default=None)
    p.add_argument("--dds-profile", default="shm_large",
                   help="Fast DDS profile of both processes: shm_large (the shipped one, as the launch file "
                        "sets), none (Fast DDS defaults: 640x480 images are mostly lost), or an XML path")
    p.add_argument("--in-process", action="store_true",
                   help="run the node in this process (own executor, as gs4_node spins it) instead of as a "
                        "child process; with --sample its worker's Python stack is sampled")
    p.add_argument("--sample", action="store_true", help="with --in-process: where the worker spends its time")
    return p.parse_args(argv)


class InProcessNode:
    """gs4_node built in this process and spun by its own executor thread, as main() spins it.

    The node then shares this process's GIL with the publisher, unlike on a robot, but its
    threads can be inspected: used to find where the worker loses time.
    """

    def __init__(self, params: dict, namespace: str, prefix: str):
        from rclpy.parameter import Parameter

        from gs4_ros.ros.node import GS4Node, make_executor
        from gs4_ros.ros.player import camera_remaps

        self.namespace = namespace
        self.node = GS4Node(namespace=namespace, cli_args=["--ros-args", *camera_remaps(prefix)],
                            parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        self.ex = make_executor()
        self.ex.add_node(self.node)
        threading.Thread(target=self.ex.spin, daemon=True, name="node_executor").start()
        self.pid = os.getpid()

    @property
    def topic_base(self) -> str:
        return f"{self.namespace}/gs4_node"

    def wait_ready(self, timeout: float = 0.0) -> bool:
        return True

    def log(self) -> str:
        return ""

    def stop(self):
        self.ex.shutdown()
        self.node.shutdown()
        self.node.destroy_node()


def make_frames(n, width, height, seed):
    import torch

    from gs4_ros.io.datasets import open_dataset

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.perf_counter()
    seq = open_dataset(f"synthetic:seed={seed},frames={n}", width=width, height=height, device=dev)
    frames = [seq[i] for i in range(len(seq))]
    print(f"generated {len(frames)} synthetic frames at {width}x{height} on {dev} in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    return frames


def ping_pong(n):
    """0, 1, ..., n-1, n-2, ..., 1, 0, 1, ... forever."""
    period = max(1, 2 * n - 2)
    k = 0
    while True:
        i = k % period
        yield i if i < n else period - i
        k += 1


def _yaml_value(v: str):
    import yaml
    return yaml.safe_load(v)


def pct(a, q):
    return float(np.percentile(a, q)) if len(a) else float("nan")


def main(argv=None) -> int:
    args = parse_args(argv)
    # Before rclpy starts: Fast DDS reads the profile when this process's participant is made,
    # and the node inherits the environment.
    # 'none' measures Fast DDS's own defaults, whatever this shell has set.
    from gs4_ros.ros.dds import PROFILE_VAR, dds_profile_env

    os.environ.pop(PROFILE_VAR, None)
    os.environ.update(dds_profile_env(args.dds_profile, str(REPO)))
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseStamped
    from rclpy.executors import SingleThreadedExecutor

    from gs4_ros.ros import conversions as conv
    from gs4_ros.ros.player import FramePlayer, NodeRunner, encode

    frames = make_frames(args.frames, args.width, args.height, args.seed)
    enc = [encode(f) for f in frames]
    params = {"pipeline.device": args.device, "diagnostics_rate_hz": 2.0}
    if args.labels:
        params["subscribe_labels"] = True
    for s in args.set:
        k, v = s.split("=", 1)
        params[k.strip()] = _yaml_value(v)
    rclpy.init()
    if args.in_process:
        node = InProcessNode(params, "/bench", "/bench_camera")
    else:
        node = NodeRunner(params, namespace="/bench", prefix="/bench_camera", log_path=args.node_log)
    client = rclpy.create_node("gs4_latency_bench")
    poses = {}          # stamp_ns -> receive time_ns
    diags = []          # (time, {key: value})
    lock = threading.Lock()
    base = node.topic_base

    def on_pose(m):
        t = time.time_ns()
        with lock:
            poses[conv.stamp_to_ns(m.header.stamp)] = t

    def on_diag(m):
        if m.status and m.status[0].name == f"{base}: SLAM":
            with lock:
                diags.append((time.monotonic(), {kv.key: kv.value for kv in m.status[0].values}))

    client.create_subscription(PoseStamped, f"{base}/pose", on_pose, 100)
    client.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    player = FramePlayer(client, prefix="/bench_camera", publish_labels=args.labels, publish_gt=False)
    if args.query is not None:
        from std_msgs.msg import String

        query_pub = client.create_publisher(String, f"{base}/query", 10)
    ex = SingleThreadedExecutor()
    ex.add_node(client)
    spinner = threading.Thread(target=ex.spin, daemon=True)
    spinner.start()
    rc = 0
    try:
        if not node.wait_ready(600):
            print(node.log()[-3000:], file=sys.stderr)
            raise SystemExit("gs4_node did not start")
        end = time.monotonic() + 60
        while player.pub_color.get_subscription_count() == 0 or player.pub_cinfo.get_subscription_count() == 0:
            if time.monotonic() > end:
                raise SystemExit("gs4_node never subscribed to the camera topics")
            time.sleep(0.1)
        time.sleep(1.0)
        order = ping_pong(len(enc))

        # warm-up: one frame at a time
        t_w = time.perf_counter()
        warm_ms = []
        resent = 0
        for k in range(args.warmup):
            i = next(order)
            deadline = time.monotonic() + (600 if k == 0 else 120)
            got = None
            while got is None:
                # The inputs are best effort: a frame lost in transport is sent again (new
                # stamp) after a quiet second instead of waiting out the deadline.
                st = time.time_ns()
                player.publish(enc[i], st)
                retry = time.monotonic() + (30 if k == 0 else 1.0)
                while st not in poses and time.monotonic() < min(retry, deadline):
                    time.sleep(0.001)
                if st in poses:
                    got = st
                elif time.monotonic() > deadline:
                    print(node.log()[-3000:], file=sys.stderr)
                    raise SystemExit(f"no pose for warm-up frame {k}")
                else:
                    resent += 1
            warm_ms.append((poses[got] - got) / 1e6)
        print(f"warm-up: {args.warmup} frames one by one in {time.perf_counter() - t_w:.1f} s "
              f"({resent} sent again after a loss); isolated frame latency median {pct(warm_ms[1:], 50):.1f} ms",
              flush=True)
        if args.query is not None:
            query_pub.publish(String(data=args.query))
        time.sleep(1.0)
        with lock:
            d0 = dict(diags[-1][1]) if diags else {}

        # measured stream
        from bench_common import StackSampler, busiest_threads, thread_cpu_seconds

        cpu0, tc0 = thread_cpu_seconds(node.pid), time.monotonic()
        sampler = None
        if args.sample and args.in_process:
            sampler = StackSampler(node.node.worker._thread.ident, period=0.002, depth=4).__enter__()
        n_pub = int(round(args.duration * args.rate))
        period = 1.0 / args.rate
        stamps = []
        t0 = time.monotonic()
        for k in range(n_pub):
            due = t0 + k * period
            while True:
                left = due - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(left, 0.002))
            st = time.time_ns()
            player.publish(enc[next(order)], st)
            stamps.append(st)
        t_pub = time.monotonic() - t0
        cpu1, tc1 = thread_cpu_seconds(node.pid), time.monotonic()
        if sampler is not None:
            sampler.__exit__(None, None, None)
        time.sleep(3.0)
        with lock:
            d1 = dict(diags[-1][1]) if diags else {}
            rss = [float(d["rss_mb"]) for t, d in diags if "rss_mb" in d]
            # RSS through the measured stream, one sample per tenth of it: flat or growing?
            stream = [(t - t0, float(d["rss_mb"])) for t, d in diags if "rss_mb" in d and t >= t0]
            rss_trace = [min(stream, key=lambda s: abs(s[0] - k * t_pub / 10))[1] for k in range(11)] if stream else []
            got = {s: poses[s] for s in stamps if s in poses}
        lat = np.array([(got[s] - s) / 1e6 for s in stamps if s in got])

        def delta(key):
            try:
                return int(d1[key]) - int(d0.get(key, 0))
            except (KeyError, ValueError):
                return None

        n_got = len(got)
        res = {
            "device": d1.get("gpu") or d1.get("device", args.device),
            "renderer": d1.get("renderer"),
            "resolution": f"{args.width}x{args.height}",
            "input_rate_target_hz": args.rate,
            "input_rate_achieved_hz": (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1e9) if len(stamps) > 1 else 0.0,
            "publish_seconds": t_pub,
            "frames_published": len(stamps),
            "poses_received": n_got,
            "frames_without_pose": len(stamps) - n_got,
            "drop_fraction": (len(stamps) - n_got) / max(1, len(stamps)),
            "node_received_color": delta("frames_received_color"),
            "node_synced": delta("frames_synced"),
            "node_dropped_single_slot": delta("frames_dropped"),
            "node_rejected": delta("frames_rejected"),
            "transport_lost": (len(stamps) - delta("frames_received_color"))
            if delta("frames_received_color") is not None else None,
            "pose_latency_ms": {q: pct(lat, q) for q in (50, 90, 95, 99)} | {"max": float(lat.max()) if lat.size else float("nan"),
                                                                          "mean": float(lat.mean()) if lat.size else float("nan")},
            "node_processing_rate_hz": d1.get("processing_rate_hz"),
            "stage_ms": {k[len("latency_ms_"):]: float(v) for k, v in d1.items() if k.startswith("latency_ms_")},
            "gaussians_end": d1.get("gaussians"),
            "rss_mb": {"start": float(d0.get("rss_mb", "nan")), "end": float(d1.get("rss_mb", "nan")),
                       "max": max(rss) if rss else float("nan"), "stream_trace": rss_trace},
            "gpu_memory_mb": {"start": d0.get("gpu_memory_mb"), "end": d1.get("gpu_memory_mb"),
                              "peak": d1.get("gpu_memory_peak_mb")},
            "warmup_isolated_latency_ms_median": pct(warm_ms[1:], 50),
            "warmup_frames_sent_again": resent,
            "dds_profile": args.dds_profile,
            "labels": args.labels,
            "query": d1.get("query"),
            "vocab_entries": d1.get("vocab_entries"),
            "keyframes": delta("keyframes"),
            "joint_steps": delta("joint_optimizations"),        # None with the back-end off
            "joint_deferred": delta("joint_deferred"),
        }
        L = res["pose_latency_ms"]
        print()
        print(f"gs4_node latency benchmark: {res['device']} ({res['renderer']}), {res['resolution']}, "
              f"DDS profile {args.dds_profile}, "
              f"input {res['input_rate_achieved_hz']:.1f} Hz (target {args.rate:g}) for {t_pub:.1f} s")
        print(f"  frames published {res['frames_published']}, poses received {n_got}, "
              f"dropped {res['frames_without_pose']} ({100 * res['drop_fraction']:.1f}%)")
        print(f"    of which lost in transport {res['transport_lost']}, dropped by the node's single slot "
              f"{res['node_dropped_single_slot']}, rejected {res['node_rejected']}")
        print(f"  pose latency ms: p50 {L[50]:.1f}  p90 {L[90]:.1f}  p95 {L[95]:.1f}  p99 {L[99]:.1f}  "
              f"max {L['max']:.1f}  (isolated frame {res['warmup_isolated_latency_ms_median']:.1f})")
        print(f"  node processing rate {res['node_processing_rate_hz']} Hz; stages (ms, last 30 frames): "
              + ", ".join(f"{k} {v:.1f}" for k, v in sorted(res['stage_ms'].items())))
        if res["joint_steps"] is not None:
            print(f"  keyframes {res['keyframes']}; joint steps {res['joint_steps']}, put off while a frame "
                  f"waited {res['joint_deferred']}")
        if args.labels or args.query is not None:
            print(f"  labels streamed: {args.labels}; standing query: {res['query']!r}; "
                  f"vocabulary entries {res['vocab_entries']}")
        print(f"  gaussians {res['gaussians_end']}; node RSS MB start {res['rss_mb']['start']:.0f} "
              f"end {res['rss_mb']['end']:.0f} max {res['rss_mb']['max']:.0f}; GPU MB "
              f"{res['gpu_memory_mb']['start']} -> {res['gpu_memory_mb']['end']} (peak {res['gpu_memory_mb']['peak']})")
        if res["rss_mb"]["stream_trace"]:
            print("  node RSS MB through the stream (every tenth of it): "
                  + " ".join(f"{v:.0f}" for v in res["rss_mb"]["stream_trace"]))
        names = {t.native_id: t.name for t in threading.enumerate()} if args.in_process else None
        busy = busiest_threads(cpu0, cpu1, tc1 - tc0, 8, names)
        if busy:
            print("  busiest threads of the node's process while streaming:")
            print("\n".join("  " + b for b in busy))
        res["busiest_threads"] = busy
        if sampler is not None:
            res["worker_stack_inclusive"] = sampler.top(30, inclusive=True)
            res["worker_stack_innermost"] = sampler.top(20)
            print("  the node's worker thread: functions on its stack (share of samples)")
            print("\n".join("  " + t for t in res["worker_stack_inclusive"]))
            print("  innermost frames")
            print("\n".join("  " + t for t in res["worker_stack_innermost"]))
        # When the slow frames came (seconds into the stream): a stall at the start points
        # to first-use costs (kernel selection, allocations), a periodic one to an output.
        series = [((s - stamps[0]) / 1e9, (got[s] - s) / 1e6 if s in got else None) for s in stamps]
        res["latency_series_s_ms"] = series
        slow = sorted((x for x in series if x[1] is None or x[1] > 50.0),
                      key=lambda x: -(x[1] if x[1] is not None else 1e9))[:8]
        if slow:
            print("  slowest frames (> 50 ms or no pose): " + ", ".join(
                f"t={t:.2f}s " + ("no pose" if v is None else f"{v:.0f} ms") for t, v in sorted(slow)))
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(res, indent=2, default=str))
        if args.max_drop_fraction is not None and res["drop_fraction"] > args.max_drop_fraction:
            print(f"FAIL: drop fraction {res['drop_fraction']:.3f} > {args.max_drop_fraction}")
            rc = 1
        if args.max_p95_ms is not None and not L[95] <= args.max_p95_ms:
            print(f"FAIL: p95 pose latency {L[95]:.1f} ms > {args.max_p95_ms} ms")
            rc = 1
    finally:
        ex.shutdown()
        client.destroy_node()
        rclpy.try_shutdown()
        node.stop()
    return rc


if __name__ == "__main__":
    sys.exit(main())
