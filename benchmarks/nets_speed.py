"""Cost of the networks per mapped frame: the Gaussian prediction model (backbone, heads
and the geometric prior it builds on) on one RGB-D frame, and the refinement network on
the visible map Gaussians plus the frame's new ones, as the pipeline runs them.

    python benchmarks/nets_speed.py [--device cuda] [--weights PATH] [--width 640 --height 480]

Prints median milliseconds (CUDA-synchronised) after warm-up. Target: predictor + refiner
at most 8 ms at 640x480 on an H100-class GPU. Without weights it times untrained networks
(same architecture, same cost).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gs4_ros.core.config import SCANNET20_CLASSES, MappingConfig  # noqa: E402
from gs4_ros.core.gaussian_map import GaussianMap  # noqa: E402
from gs4_ros.core.nets import DEFAULT_WEIGHTS, GaussianPredictor, GaussianRefiner, load_networks  # noqa: E402
from gs4_ros.core.nets.mapper import refine_set, select_rows, visible_rows  # noqa: E402
from bench_common import timed_ms  # noqa: E402  (this script's folder)


def timed(fn, dev, reps):
    out = timed_ms(fn, dev, reps)
    return float(np.median(out)), float(np.percentile(out, 90))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--map", type=int, default=6000, help="visible map Gaussians besides the new ones")
    ap.add_argument("--reps", type=int, default=0, help="timed repetitions (default 50 on CUDA, 5 on CPU)")
    ap.add_argument("--profile", action="store_true",
                    help="also print torch.profiler's top operators of each network")
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    reps = a.reps or (50 if dev.type == "cuda" else 5)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True   # as the pipeline sets it
    if os.path.isfile(a.weights):
        pred, ref, _ = load_networks(a.weights, dev)
        src = a.weights
    else:
        pred, ref = GaussianPredictor(len(SCANNET20_CLASSES)).to(dev).eval(), GaussianRefiner().to(dev).eval()
        src = "untrained (no weights file)"
    from gs4_ros.io.synthetic import SyntheticSequence

    seq = SyntheticSequence(seed=900, n_frames=20, width=a.width, height=a.height, device=dev)
    f0, f1 = seq[0], seq[6]
    K = f0.intrinsics.K(dev)
    cfg = MappingConfig()
    rgb = torch.from_numpy(f1.rgb).to(dev).float() / 255
    depth = torch.from_numpy(f1.depth).to(dev)
    pose = torch.from_numpy(f1.gt_pose).float().to(dev)
    with torch.no_grad():
        # A map: the Gaussians of an earlier frame (visible now), topped up to --map rows.
        gm = GaussianMap(num_classes=0, feature_dim=pred.feature_dim, device=dev)
        t0 = pred(torch.from_numpy(f0.rgb).to(dev).float() / 255, torch.from_numpy(f0.depth).to(dev), K, cfg)
        p0 = torch.from_numpy(f0.gt_pose).float().to(dev)
        while len(gm) < a.map:
            m, ls, q = t0.world(0, p0)
            v = t0.valid[0]
            gm.insert(m, ls, q, t0.opacity_logits[0][v], t0.colors[0][v], features=t0.features[0][v])
        tok = pred(rgb, depth, K, cfg)
        m, ls, q = tok.world(0, pose)
        v = tok.valid[0]
        new = gm.insert(m, ls, q, tok.opacity_logits[0][v], tok.colors[0][v], features=tok.features[0][v])
        rows = select_rows(visible_rows(gm, pose, K, depth), new, 32768, len(gm))

        from gs4_ros.core.config import PipelineConfig
        from gs4_ros.core.nets.mapper import NetworkMapper

        mapper = NetworkMapper(pred, ref, PipelineConfig())

        def run_pred():      # as the pipeline runs it: from a CUDA graph on the GPU
            mapper._predict(rgb, depth, K, None, 8)

        def run_ref():
            r = select_rows(visible_rows(gm, pose, K, depth), new, 32768, len(gm))
            out, upd = refine_set(ref, gm, r, new)
            return out

        from gs4_ros.core.initializer import block_gaussians
        from gs4_ros.core.nets.backbone import encode_rgbd
        from gs4_ros.core.nets.knn import knn

        g_rows = gm.means[rows]
        parts = {  # the pieces, each timed alone, to show where the time goes
            "predictor: eager (no graph)": lambda: pred(rgb, depth, K, cfg),
            "predictor: geometric prior": lambda: block_gaussians(depth, rgb, K, cfg, None, stride=8),
            "predictor: backbone": lambda: pred.backbone(encode_rgbd(rgb[None], depth[None])),
            "refiner: visible rows": lambda: select_rows(visible_rows(gm, pose, K, depth), new, 32768, len(gm)),
            "refiner: kNN": lambda: knn(g_rows, ref.k),
        }
        for _ in range(3):
            run_pred()
            run_ref()
            for fn in parts.values():
                fn()
        tp = timed(run_pred, dev, reps)
        tr = timed(run_ref, dev, reps)
        tparts = {k: timed(fn, dev, reps) for k, fn in parts.items()}
        if a.profile:
            from torch.profiler import ProfilerActivity, profile

            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
            for label, fn in (("predictor", run_pred), ("refiner", run_ref)):
                with profile(activities=acts) as prof:
                    for _ in range(10):
                        fn()
                    if dev.type == "cuda":
                        torch.cuda.synchronize(dev)
                key = "cuda_time_total" if dev.type == "cuda" else "cpu_time_total"
                print(f"\n{label}: torch.profiler, 10 calls, by {key}")
                print(prof.key_averages().table(sort_by=key, row_limit=15))
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"nets_speed: {a.width}x{a.height} on {name}; weights: {src}")
    print(f"  predictor  {tp[0]:7.2f} ms median  {tp[1]:7.2f} ms p90  ({v.numel()} tokens, {int(v.sum())} valid)")
    print(f"  refiner    {tr[0]:7.2f} ms median  {tr[1]:7.2f} ms p90  ({rows.numel()} Gaussians: "
          f"{rows.numel() - new.numel()} visible map + {new.numel()} new, k={ref.k})")
    print(f"  total      {tp[0] + tr[0]:7.2f} ms per mapped frame (target <= 8 ms on an H100-class GPU)")
    for k, (med, p90) in tparts.items():
        print(f"    {k:28s} {med:7.2f} ms median  {p90:7.2f} ms p90")
    return 0


if __name__ == "__main__":
    sys.exit(main())
