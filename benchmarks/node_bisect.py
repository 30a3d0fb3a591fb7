#!/usr/bin/env python3
"""Where does gs4_node lose time against the bare pipeline? One table, same frames.

On the H200 the node ran its pipeline stages ~20x slower than `gs4 run` (track 570 ms vs
~17 ms per 640x480 frame, also with the node in the benchmark's process), while on the
CPU the node matches the pipeline. This script feeds the same decoded frames, without
DDS transport, through increasingly complete set-ups and prints the per-stage means:

  pipeline       SLAMPipeline.process in the main thread (as `gs4 run`)
  thread         the same in a plain thread (as the node's worker)
  node-direct    GS4Node._process called in a thread, node built but not spinning
  node-spinning  the same while gs4_node's executor spins the node (timers,
                 diagnostics, periodic outputs), as in gs4_node

    python benchmarks/node_bisect.py --device cuda --width 640 --height 480 --frames 60
"""
from __future__ import annotations

import argparse
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


def means(timings):
    keys = sorted({k for t in timings for k in t})
    return {k: float(np.mean([t.get(k, 0.0) for t in timings])) for k in keys}


def in_thread(fn, profiles=None, label=""):
    """fn() in a fresh thread; with `profiles` (a dict) its stack is sampled into it."""
    from bench_common import StackSampler

    out = {}
    go = threading.Event()

    def body():
        go.wait()
        out["r"] = fn()
    th = threading.Thread(target=body)
    th.start()
    if profiles is None:
        go.set()
        th.join()
    else:
        with StackSampler(th.ident) as sp:
            go.set()
            th.join()
        profiles[label] = (sp.top(25, inclusive=True), sp.top(12))
    return out["r"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--skip", type=int, default=10, help="first frames left out of the means (warm-up)")
    ap.add_argument("--sample", action="store_true",
                    help="sample each threaded set-up's Python stack and print where its time went")
    ap.add_argument("--switch-interval", type=float, default=None,
                    help="sys.setswitchinterval in seconds (GIL hand-over; Python's default 0.005)")
    args = ap.parse_args()
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    profiles = {} if args.sample else None

    import rclpy
    import torch

    from gs4_ros.core.config import PipelineConfig
    from gs4_ros.core.pipeline import SLAMPipeline, resolve_device
    from gs4_ros.io.datasets import open_dataset
    from gs4_ros.ros import conversions as conv
    from gs4_ros.ros.node import GS4Node, SyncedSet, make_executor
    from gs4_ros.ros.player import encode

    dev = str(resolve_device(args.device))
    ds = open_dataset(f"synthetic:seed=3,frames={args.frames}", width=args.width, height=args.height, device=dev)
    enc = [encode(ds[i]) for i in range(len(ds))]
    t0 = time.time_ns()
    stamps = [t0 + i * 33_333_333 for i in range(len(enc))]      # 30 Hz
    for e, st in zip(enc, stamps):
        for m in (e.color, e.depth, e.info):
            m.header.stamp = conv.ns_to_stamp(st)

    def synced(i):
        """The set a synchronised callback would hand to the node's worker."""
        return SyncedSet(enc[i].color, enc[i].depth, None, enc[i].info, stamps[i], time.monotonic())

    rows = []

    def sync():
        if dev.startswith("cuda"):
            torch.cuda.synchronize()

    # Frames decoded as the node decodes them, so every set-up sees identical inputs.
    rclpy.init(args=["--ros-args", "-p", f"pipeline.device:={dev}"])
    probe = GS4Node()
    frames = [probe._decode(synced(i)) for i in range(len(enc))]
    probe.shutdown()
    probe.destroy_node()

    def run_pipeline():
        pipe = SLAMPipeline(PipelineConfig(), device=dev)
        tm = []
        t = time.perf_counter()
        for k, f in enumerate(frames):
            r = pipe.process(f)
            sync()
            if k >= args.skip:
                tm.append(dict(r.timings_ms))
        return means(tm), (time.perf_counter() - t) / len(frames) * 1000

    rows.append(("pipeline", *run_pipeline()))
    rows.append(("thread", *in_thread(run_pipeline, profiles, "thread")))

    def run_node(spin: bool):
        node = GS4Node()
        node.worker.stop()     # this thread drives _process/_idle instead, as the worker would
        ex = None
        if spin:
            ex = make_executor()
            ex.add_node(node)
            threading.Thread(target=ex.spin, daemon=True).start()

        tm = []

        def work():
            t = time.perf_counter()
            for i in range(len(enc)):
                done = node.stats.processed
                node._process(synced(i))
                node._idle()
                sync()
                # The node keeps only its last 30 timings: take each as it comes.
                if i >= args.skip and node.stats.processed > done:
                    tm.append(dict(node.stats.timings[-1]))
            return (time.perf_counter() - t) / len(enc) * 1000

        per = in_thread(work, profiles, "node-spinning" if spin else "node-direct")
        if ex is not None:
            ex.shutdown()
        node.shutdown()
        node.destroy_node()
        return means(tm), per

    rows.append(("node-direct", *run_node(False)))
    rows.append(("node-spinning", *run_node(True)))
    rclpy.try_shutdown()

    name = torch.cuda.get_device_name(0) if dev.startswith("cuda") else "cpu"
    keys = sorted({k for _, m, _ in rows for k in m})
    print(f"\nnode_bisect: {args.width}x{args.height} synthetic seed 3, {args.frames} frames "
          f"(first {args.skip} left out), device {name}")
    print(f"{'set-up':14s} " + " ".join(f"{k:>10s}" for k in keys) + f" {'wall/frame':>11s}  (ms)")
    for n, m, per in rows:
        print(f"{n:14s} " + " ".join(f"{m.get(k, float('nan')):10.1f}" for k in keys) + f" {per:11.1f}")
    for label, (incl, inner) in (profiles or {}).items():
        print(f"\n{label} thread: functions on the stack (share of samples)")
        print("\n".join("  " + t for t in incl))
        print(f"{label} thread: innermost frames")
        print("\n".join("  " + t for t in inner))


if __name__ == "__main__":
    main()
