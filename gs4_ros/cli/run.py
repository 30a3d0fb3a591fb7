"""`gs4 run` and `gs4 demo`: the dataset / bag runner with evaluation and outputs."""
from __future__ import annotations

import argparse
import logging
import time

log = logging.getLogger("gs4")

DEMO_SPEC = "synthetic:seed=7,frames=150"


def _add_common(p: argparse.ArgumentParser):
    p.add_argument("--frames", default=None, help="frame range A:B[:S] (python slice)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--width", type=int, default=None, help="processing width (default: input, "
                   "or half of 640-wide input on the CPU)")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--config", default=None, help="YAML config (config/*.yaml or a bare pipeline tree)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set tracking.photo_weight=0.1")
    p.add_argument("--eval-every", type=int, default=5, help="render-evaluate every N-th frame (GS4 protocol)")
    p.add_argument("--holdout-every", type=int, default=0,
                   help="with N>0, every N-th frame is tracked but never mapped and evaluated as novel view")
    p.add_argument("--no-report", action="store_true", help="skip the PNG report")
    p.add_argument("--no-map", action="store_true", help="do not write map.ply")
    p.add_argument("--print-every", type=int, default=25)


def dataset_kwargs(args) -> dict:
    """Reader options from the command line (the readers ignore the ones they lack)."""
    return {"register_color": False} if getattr(args, "no_color_registration", False) else {}


def register(sub):
    p = sub.add_parser("run", help="run SLAM on a dataset or a rosbag2 and evaluate")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="KIND:PATH with KIND in tum, 7scenes, replica, synthetic")
    src.add_argument("--bag", help="rosbag2 folder (sqlite3 or MCAP)")
    p.add_argument("--color-topic", default=None)
    p.add_argument("--depth-topic", default=None)
    p.add_argument("--info-topic", default=None)
    p.add_argument("--depth-scale", type=float, default=None, help="depth counts per metre override (TUM: 5000)")
    p.add_argument("--no-color-registration", action="store_true",
                   help="7-Scenes: use the colour images as recorded instead of resampling them into the "
                        "depth camera's view")
    p.add_argument("--odom-topic", default=None,
                   help="nav_msgs/Odometry topic of the bag whose motion seeds tracking (as the node's odom_prior)")
    p.add_argument("--out", required=True, help="output folder")
    _add_common(p)
    p.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help=f"run on a generated sequence ({DEMO_SPEC}) and print the ATE")
    d.add_argument("--out", default="out/demo")
    d.add_argument("--dataset", default=DEMO_SPEC, help=argparse.SUPPRESS)
    d.add_argument("--bag", default=None, help=argparse.SUPPRESS)
    _add_common(d)
    d.set_defaults(func=cmd_run)


def _resolve_size(args, device):
    if args.width or args.height:
        if not (args.width and args.height):
            raise ValueError("give both --width and --height")
        return args.width, args.height
    return None


def cmd_run(args) -> int:
    from ..core.config import load_config, parse_overrides
    from ..core.pipeline import SLAMPipeline, resolve_device
    from ..eval.runner import evaluate, run_frames, write_outputs

    cfg = load_config(args.config, parse_overrides(args.set))
    if args.device != "auto":
        cfg.device = args.device
    device = resolve_device(cfg.device)
    size = _resolve_size(args, device)
    if args.bag:
        from .bag import bag_frames

        frames = bag_frames(args.bag, color_topic=args.color_topic, depth_topic=args.depth_topic,
                            info_topic=args.info_topic, depth_scale=args.depth_scale, frames=args.frames,
                            width=size[0] if size else None, height=size[1] if size else None,
                            odom_topic=args.odom_topic)
        source = f"bag:{args.bag}"
    else:
        from ..io.datasets import open_dataset

        # open_dataset hands the device to the synthetic generator only.
        kw = dict(dataset_kwargs(args), device=str(device))
        if size is None and device.type == "cpu":
            probe = open_dataset(args.dataset, frames="0:1", **kw)
            if probe.intrinsics.width >= 640:
                size = (probe.intrinsics.width // 2, probe.intrinsics.height // 2)
                log.info("CPU run: processing at %dx%d (pass --width/--height to change)", *size)
        frames = open_dataset(args.dataset, frames=args.frames, width=size[0] if size else None,
                              height=size[1] if size else None, **kw)
        source = args.dataset
        if len(frames) == 0:
            raise ValueError(f"no frames selected from {args.dataset} (range {args.frames})")
    pipe = SLAMPipeline(cfg, device=str(device))
    log.info("source %s, device %s, renderer %s", source, pipe.device, pipe.rasterizer.name)
    t0 = time.perf_counter()
    count = [0]

    def progress(r):
        count[0] += 1
        if args.print_every and count[0] % args.print_every == 0:
            el = time.perf_counter() - t0
            print(f"[{count[0]:5d}] frame {r.index:6d}  gaussians {r.num_gaussians:7d}  "
                  f"{count[0] / el:5.1f} fps  track {r.timings_ms.get('track', 0):6.1f} ms  "
                  f"{'ok' if r.ok else 'LOST'}", flush=True)

    rec = run_frames(pipe, frames, eval_every=args.eval_every, holdout_every=args.holdout_every,
                     progress=progress)
    if not rec.results:
        raise ValueError(f"every frame of {source} was skipped; first reason: "
                         f"{rec.skipped[0][1] if rec.skipped else 'no frames'}")
    metrics = evaluate(pipe, rec)
    metrics["source"] = source
    paths = write_outputs(pipe, rec, metrics, args.out, save_map=not args.no_map, report=not args.no_report)
    _print_summary(metrics, paths)
    return 0


def _print_summary(m, paths):
    def f(k, fmt="{:.2f}"):
        v = m.get(k)
        return "n/a" if v is None else (fmt.format(v) if isinstance(v, float) else str(v))

    print("\n== gs4 run summary ==")
    print(f"source            {m.get('source')}")
    print(f"device / renderer {m.get('device')} / {m.get('renderer')}")
    print(f"frames            {m.get('frames_processed')} processed, {m.get('frames_skipped')} skipped, "
          f"{m.get('frames_lost')} lost, {m.get('keyframes')} keyframes")
    print(f"ATE RMSE          {f('ate_rmse_cm')} cm   (RPE {f('rpe_trans_rmse_cm')} cm / {f('rpe_rot_rmse_deg', '{:.3f}')} deg)")
    print(f"PSNR / SSIM       {f('psnr')} dB / {f('ssim', '{:.3f}')}   depth L1 {f('depth_l1_cm')} cm (every 5th frame)")
    if "heldout_psnr" in m:
        print(f"held-out          PSNR {f('heldout_psnr')} dB, depth L1 {f('heldout_depth_l1_cm')} cm")
    if "miou" in m:
        print(f"semantic mIoU     {100 * m['miou']:.1f} %")
        worst = sorted(m.get("per_class_iou", {}).items(), key=lambda kv: kv[1])[:3]
        conf = m.get("confusions", {})
        if worst and worst[0][1] < 0.5:
            print("  lowest IoU      " + "; ".join(
                f"{c} {100 * v:.0f}% (taken for " + ", ".join(f"{k} {100 * f:.0f}%" for k, f in conf.get(c, [])) + ")"
                for c, v in worst))
    b = m.get("backend") or {}
    if b.get("enabled"):
        lc, jo = b["loop_detection"], b["joint_optimization"]
        print(f"back-end          {b['loop_closures']} loop closures ({b['loop_outliers']} dropped as outliers, "
              f"{b['loop_candidates_verified']} candidates verified), {b['graph_optimization']['count']} graph "
              f"optimisations ({b['graph_optimization']['mean_ms']:.1f} ms mean), loop query "
              f"{lc['mean_ms']:.1f} ms mean")
        print(f"joint optimisation {jo['count']} runs, {jo['mean_ms']:.1f} ms mean, {jo['max_ms']:.1f} ms max "
              f"({', '.join(f'{k} {v}' for k, v in b['joint_reasons'].items()) or 'none'})")
        if b.get("reloc_requests") or b.get("odom_prior_edges"):
            rl = b.get("relocalization", {})
            print(f"relocalisation    {b.get('reloc_applied', 0)} applied, {b.get('reloc_successes', 0)} found in "
                  f"{b.get('reloc_requests', 0)} queries ({rl.get('max_ms', 0.0):.0f} ms max); "
                  f"{b.get('odom_prior_edges', 0)} external-odometry edges"
                  + (f" ({b['odom_prior_covariance_edges']} weighed by its covariance)"
                     if b.get("odom_prior_covariance_edges") else ""))
        fr = b.get("final_refine", {})
        if fr.get("count"):
            print(f"map refinement    {b.get('final_refine_passes', 0)} passes over the keyframes, "
                  f"{fr['total_ms'] / 1000:.1f} s" + (f", {b['final_refine_compacted']} Gaussians compacted away"
                                                     if b.get("final_refine_compacted") else ""))
    else:
        print("back-end          off")
    fs = m.get("final_semantics")
    if fs:
        passes = ["as seen"] + (["mirrored"] if fs.get("mirror") else []) + [f"{x:g}x" for x in fs.get("scales", [])]
        mixed = f" with {fs['head_weight']:g} of the head's" if fs.get("head_weight") else ""
        print(f"final semantics   {fs['keyframes']} keyframes re-predicted by the {fs.get('model', 'head')} "
              f"({', '.join(passes)}){mixed}, {fs['rows']} Gaussians re-labelled, {fs['ms'] / 1000:.1f} s"
              + (f"; {fs['dropped_keyframes']} older keyframes not kept" if fs.get("dropped_keyframes") else ""))
    print(f"map               {m.get('num_gaussians')} Gaussians ({m.get('num_gaussians_inferred', 0)} inferred), "
          f"{f('map_mb')} MB" + (f", {m['vocab_entries']} vocabulary entries (gs4 query)"
                                 if m.get("vocab_entries") else ""))
    fa = m.get("fill_ahead") or {}
    if fa.get("started"):
        print(f"hole fill ahead   {fa['used']} keyframes took a fill started while tracking, "
              f"{fa['computed_at_keyframe']} filled at the keyframe, {fa['started'] - fa['used']} fills unused")
    print(f"speed             {f('fps')} frames/s end to end")
    for k, v in (m.get("stage_ms") or {}).items():
        print(f"  {k:<15s} {v['mean']:8.2f} ms mean  {v['p95']:8.2f} ms p95")
    print("outputs           " + ", ".join(str(p) for p in paths.values()))
    if m.get("vocab_entries") and "map" in paths:
        print(f"ask the map       gs4 query {paths['map']} \"something to sit on\"")
