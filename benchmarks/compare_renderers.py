"""Compare the PyTorch rasteriser with gsplat on random scenes: values and gradients.

Runs on a CUDA machine with gsplat installed (`pip install gsplat==1.5.3`; its kernels
compile on first use, about a minute). Both backends render the same scenes through
`gs4_ros.core.render.render_views` with semantics on; the script prints, per scene, the
relative error ||torch - gsplat|| / ||gsplat|| and the max abs error of colour, depth,
alpha, semantics and of the gradients w.r.t. means, scales, quats, opacities, colours
and a per-camera pose twist (loss = sum of every output times a random weight image).

  python benchmarks/compare_renderers.py --out compare.json
  python benchmarks/compare_renderers.py --against torch16 --device cpu --gaussians 2000 \\
      --sizes 96x64 --seeds 0        # self-test of the script without a GPU

A float32 sum in another order differs at ~1e-6. A pixel where some Gaussian's alpha
sits within rounding of 1/255, or T within rounding of 1e-4, can include or skip it in
one backend and not the other; such pixels are counted ("flip" columns: fraction of
pixels whose alpha differs by more than 1e-4 / 1e-3) rather than hidden. The exit
status is 1 if any error is above --tol (default 1e-3) and 2 if the comparison cannot
run here.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gs4_ros.core import se3  # noqa: E402
from gs4_ros.core.gaussian_map import GaussianParams  # noqa: E402
from gs4_ros.core.render import render_views  # noqa: E402
from gs4_ros.core.render.torch_raster import TorchRasterizer  # noqa: E402
from gs4_ros.io.synthetic.seeds import seed_list  # noqa: E402

VALUES = ("color", "depth", "depth_acc", "alpha", "semantics")
GRADS = ("means", "scales", "quats", "opacities", "colors", "twist")
NUM_CLASSES = 20


def random_scene(n: int, cameras: int, width: int, height: int, seed: int, device):
    """Gaussians in a 4 x 3 x 5 m volume seen by cameras near the origin looking at it.

    Scales are log-uniform over 5 mm - 15 cm (1-30 px at 640x480 and 1-6 m), a third of
    the Gaussians flat (one axis 10x thinner), opacities spread over (0, 1) with many
    near 1, so there is real occlusion, early termination and 1/255 skipping.
    """
    g = torch.Generator().manual_seed(seed)

    def u(*s):
        return torch.rand(*s, generator=g, dtype=torch.float64)

    means = torch.stack([u(n) * 4 - 2, u(n) * 3 - 1.5, 1.0 + u(n) * 5], -1)
    scales = torch.exp(math.log(0.005) + u(n, 3) * math.log(0.15 / 0.005))
    flat = u(n) < 1 / 3
    scales[flat, 2] *= 0.1
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    opac = torch.sigmoid(torch.randn(n, generator=g, dtype=torch.float64) * 2.5 + 1.0)
    colors = u(n, 3)
    sem_logits = torch.randn(n, NUM_CLASSES, generator=g, dtype=torch.float64) * 2
    # Cameras: small motions around the origin, looking down +z (OpenCV).
    xi = torch.cat([0.3 * (u(cameras, 3) - 0.5), 0.15 * (u(cameras, 3) - 0.5)], -1)
    poses = se3.se3_exp(xi)
    f = 0.8 * width
    K = torch.tensor([[f, 0, (width - 1) / 2 + 3.3], [0, f * 1.02, (height - 1) / 2 - 2.1], [0, 0, 1]],
                     dtype=torch.float64)
    w = {
        "color": u(cameras, height, width, 3), "depth_acc": u(cameras, height, width),
        "alpha": u(cameras, height, width), "semantics": u(cameras, height, width, NUM_CLASSES),
    }
    to = dict(device=device, dtype=torch.float32)
    leaves = {"means": means, "scales": scales, "quats": quats, "opacities": opac, "colors": colors}
    return ({k: v.to(**to) for k, v in leaves.items()}, torch.softmax(sem_logits, -1).to(**to),
            poses.to(**to), K.to(**to), {k: v.to(**to) for k, v in w.items()})


def render_and_grad(rasterizer, leaves, sem, poses, K, W, H, weights):
    """One render with semantics, then the gradients of sum(weights * outputs)."""
    p = {k: v.clone().requires_grad_(True) for k, v in leaves.items()}
    twist = torch.zeros(poses.shape[0], 6, device=poses.device, dtype=poses.dtype, requires_grad=True)
    params = GaussianParams(means=p["means"], quats=p["quats"], scales=p["scales"],
                            opacities=p["opacities"], colors=p["colors"], sem_probs=sem)
    r = render_views(rasterizer, params, se3.se3_exp(twist) @ poses, K, W, H, semantics=True)
    loss = sum((getattr(r, k) * w).sum() for k, w in weights.items())
    loss.backward()
    vals = {k: getattr(r, k).detach() for k in VALUES}
    vals["visible"] = r.visible
    grads = {k: v.grad.detach() for k, v in p.items()}
    grads["twist"] = twist.grad.detach()
    return vals, grads


def errors(a: torch.Tensor, b: torch.Tensor):
    a, b = a.double(), b.double()
    nb = b.norm().item()
    diff = (a - b).norm().item()
    return {"rel": diff / nb if nb > 0 else (0.0 if diff == 0 else math.inf),
            "max_abs": (a - b).abs().max().item() if a.numel() else 0.0}


def make_reference(name: str):
    if name == "gsplat":
        from gs4_ros.core.render.gsplat_raster import GsplatRasterizer

        return GsplatRasterizer()
    if name == "torch16":  # the PyTorch backend with gsplat's tile size: a self-test
        return TorchRasterizer(tile_size=16, segment=8)
    raise ValueError(name)


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gaussians", default="2000,10000,50000")
    ap.add_argument("--sizes", default="640x480,333x217")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--cameras", type=int, default=3)
    ap.add_argument("--device", default="cuda", help="device for both backends")
    ap.add_argument("--against", default="gsplat", choices=["gsplat", "torch16"],
                    help="reference backend (torch16: self-test without gsplat)")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--out", help="write all numbers as JSON here")
    args = ap.parse_args(argv)

    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("compare_renderers: no CUDA device here; gsplat needs one (run on the GPU machine, "
              "or use --against torch16 --device cpu for a self-test of this script)")
        return 2
    if args.against == "gsplat":
        if dev.type != "cuda":
            print("compare_renderers: gsplat runs on CUDA only; use --device cuda")
            return 2
        try:
            import gsplat
        except ImportError as e:
            print(f"compare_renderers: gsplat is not importable ({e}); pip install gsplat==1.5.3")
            return 2
    # Full float32 matmuls: TF32 would add ~1e-3 errors to the PyTorch backend's exponents.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")

    ref = make_reference(args.against)
    ours = TorchRasterizer()
    info = {"torch": torch.__version__, "device": str(dev), "against": args.against,
            "python": platform.python_version()}
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    if args.against == "gsplat":
        info["gsplat"] = getattr(gsplat, "__version__", "?")
        print("warming up gsplat (compiles its CUDA kernels on first use, about a minute)...", flush=True)
        t0 = time.perf_counter()
        leaves, sem, poses, K, w = random_scene(100, 1, 64, 48, 0, dev)
        render_and_grad(ref, leaves, sem, poses, K, 64, 48, w)
        sync(dev)
        print(f"gsplat ready after {time.perf_counter() - t0:.0f} s", flush=True)
    print(json.dumps(info))

    rows = []
    t_start = time.perf_counter()
    hdr = (f"{'seed':>4} {'N':>6} {'size':>8} | " + " ".join(f"{k:>10}" for k in VALUES) + " | "
           + " ".join(f"{'d_' + k:>10}" for k in GRADS) + f" | {'flip>1e-4':>9} {'flip>1e-3':>9} {'vis!=':>5}"
           + f" | {'t_ref':>6} {'t_ours':>6}")
    print("relative errors ||ours - ref|| / ||ref|| (ours = PyTorch rasteriser):")
    print(hdr)
    for seed in seed_list(args.seeds):
        for n in [int(s) for s in args.gaussians.split(",")]:
            for size in args.sizes.split(","):
                W, H = (int(v) for v in size.split("x"))
                leaves, sem, poses, K, w = random_scene(n, args.cameras, W, H, seed, dev)
                sync(dev)
                t0 = time.perf_counter()
                v_ref, g_ref = render_and_grad(ref, leaves, sem, poses, K, W, H, w)
                sync(dev)
                t1 = time.perf_counter()
                v_our, g_our = render_and_grad(ours, leaves, sem, poses, K, W, H, w)
                sync(dev)
                t2 = time.perf_counter()
                e = {k: errors(v_our[k], v_ref[k]) for k in VALUES}
                e.update({"d_" + k: errors(g_our[k], g_ref[k]) for k in GRADS})
                da = (v_our["alpha"] - v_ref["alpha"]).abs()
                keep = da <= 1e-4  # pixels where no threshold flipped
                e_keep = {k: errors(v_our[k][keep], v_ref[k][keep]) for k in VALUES}
                row = {"seed": seed, "gaussians": n, "width": W, "height": H, "cameras": args.cameras,
                       "errors": e, "errors_without_flipped_pixels": e_keep,
                       "flip_1e-4": (da > 1e-4).float().mean().item(),
                       "flip_1e-3": (da > 1e-3).float().mean().item(),
                       "mean_alpha": v_ref["alpha"].mean().item(),
                       "visible": int(v_ref["visible"].sum().item()),
                       "visible_mismatch": int((v_ref["visible"] != v_our["visible"]).sum().item()),
                       "seconds_ref": t1 - t0, "seconds_ours": t2 - t1}
                rows.append(row)
                print(f"{seed:>4} {n:>6} {size:>8} | "
                      + " ".join(f"{e[k]['rel']:>10.2e}" for k in VALUES) + " | "
                      + " ".join(f"{e['d_' + k]['rel']:>10.2e}" for k in GRADS)
                      + f" | {row['flip_1e-4']:>9.2e} {row['flip_1e-3']:>9.2e} {row['visible_mismatch']:>5}"
                      + f" | {t1 - t0:>6.2f} {t2 - t1:>6.2f}", flush=True)

    keys = list(VALUES) + ["d_" + k for k in GRADS]
    worst = {k: max(r["errors"][k]["rel"] for r in rows) for k in keys}
    worst_abs = {k: max(r["errors"][k]["max_abs"] for r in rows) for k in keys}
    print("\nworst over all scenes:")
    print(f"{'quantity':>12} {'rel error':>10} {'max abs':>10}  target < {args.tol:g}")
    failed = []
    for k in keys:
        ok = worst[k] < args.tol
        failed += [] if ok else [k]
        print(f"{k:>12} {worst[k]:>10.2e} {worst_abs[k]:>10.2e}  {'PASS' if ok else 'FAIL'}")
    print(f"pixels whose alpha differs by > 1e-4: at most {max(r['flip_1e-4'] for r in rows):.2e} of a "
          f"scene; > 1e-3: at most {max(r['flip_1e-3'] for r in rows):.2e}")
    print("worst relative errors without those pixels (for information; PASS/FAIL above uses all): "
          + ", ".join(f"{k} {max(r['errors_without_flipped_pixels'][k]['rel'] for r in rows):.2e}"
                      for k in VALUES))
    print(f"compared {len(rows)} scenes in {time.perf_counter() - t_start:.1f} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"info": info, "tol": args.tol, "worst_rel": worst, "worst_max_abs": worst_abs,
                       "failed": failed, "rows": rows}, f, indent=1)
        print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
