"""CPU speed of the PyTorch rasteriser on SLAM-like scenes (ms per render).

Tracking renders the map at every frame at reduced resolution (160x120 or 320x240 on
the CPU) with no gradient; the joint optimiser needs forward + backward. This script
times both on surface-like maps at 160x120, 320x240 and 640x480 with 1 and 2 threads and
prints a table (and `--out` JSON): wall-clock ms (median and min over poses and
repeats) and process CPU ms (less disturbed by other jobs on a shared machine).

  python benchmarks/render_speed.py                   # full table
  python benchmarks/render_speed.py --gaussians 20000 --sizes 320x240 --threads 2
  git show REV:gs4_ros/core/render/torch_raster.py > /tmp/old.py
  python benchmarks/render_speed.py --impl /tmp/old.py --tile 16   # an older version

Map: a 5 x 2.5 x 5 m room with box furniture, built view by view like the mapper does
it: hand-held-like viewpoints ray-cast on a stride-8 grid of a 640x480 camera, one flat
Gaussian per hit (tangential sigma 0.7 x the 8-pixel footprint, normal sigma a tenth of
that, opacity 0.9-0.99, procedural colours) inserted only where the surface is not yet
mapped. Render poses are mapping poses moved by a few centimetres, like tracking frames.
Features: `--channels` (default 9: colour + centres + normals, what tracking renders).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gs4_ros.core import se3  # noqa: E402
from gs4_ros.core.frame import Intrinsics  # noqa: E402
from gs4_ros.core.render.torch_raster import TorchRasterizer  # noqa: E402


def load_impl(path):
    """TorchRasterizer from another torch_raster.py (e.g. an older revision), imported as a
    sibling module of the package's so its relative imports resolve."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gs4_ros.core.render._bench_impl", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.TorchRasterizer

ROOM = (torch.tensor([-2.5, -1.2, -2.5]), torch.tensor([2.5, 1.3, 2.5]))  # y down (OpenCV)
BOXES = [
    (torch.tensor([-1.0, 0.5, -0.6]), torch.tensor([0.2, 1.3, 0.4])),    # table
    (torch.tensor([1.0, -0.2, -2.5]), torch.tensor([2.0, 1.3, -1.9])),   # cupboard
    (torch.tensor([-2.5, 0.7, 1.0]), torch.tensor([-1.6, 1.3, 2.2])),    # bed
    (torch.tensor([0.6, 0.9, 1.0]), torch.tensor([1.1, 1.3, 1.5])),      # stool
]
K640 = torch.tensor([[525.0, 0, 319.5], [0, 525.0, 239.5], [0, 0, 1]])


def look_at(eye: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Camera-to-world pose (OpenCV axes) at eye looking at target, y pointing down."""
    z = target - eye
    z = z / z.norm()
    down = torch.tensor([0.0, 1.0, 0.0])
    x = torch.linalg.cross(down, z)
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    return se3.make_T(torch.stack([x, y, z], 1), eye)


def _inside_box(p: torch.Tensor) -> bool:
    return any(bool(((p > lo - 0.3) & (p < hi + 0.3)).all()) for lo, hi in BOXES)


def view_poses(n: int, seed: int = 0) -> torch.Tensor:
    """Hand-held-like viewpoints: eyes inside the room (not in furniture), random yaw,
    pitch within +-30 degrees."""
    g = torch.Generator().manual_seed(seed)
    out = []
    while len(out) < n:
        eye = (torch.rand(3, generator=g) * 2 - 1) * torch.tensor([1.8, 0.4, 1.8])
        if _inside_box(eye):
            continue
        yaw = 2 * math.pi * float(torch.rand(1, generator=g))
        pitch = (float(torch.rand(1, generator=g)) - 0.5) * math.pi / 3
        d = torch.tensor([math.cos(yaw) * math.cos(pitch), math.sin(pitch), math.sin(yaw) * math.cos(pitch)])
        out.append(look_at(eye, eye + d))
    return torch.stack(out)


def _ray_boxes(o: torch.Tensor, d: torch.Tensor):
    """Nearest hit (t, normal) of rays o + t d with the room's inside and the boxes' outside."""
    inv = 1.0 / torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
    best_t = torch.full(d.shape[:1], float("inf"))
    best_n = torch.zeros_like(d)
    lo, hi = ROOM
    t_far = torch.maximum((lo - o) * inv, (hi - o) * inv)  # exits through the room's walls
    tr, ax = t_far.min(-1)
    best_t, best_n = tr, -torch.nn.functional.one_hot(ax, 3).float() * torch.sign(d)
    for lo, hi in BOXES:
        t0, t1 = (lo - o) * inv, (hi - o) * inv
        tmin = torch.minimum(t0, t1)
        tn, axn = tmin.max(-1)
        tf = torch.maximum(t0, t1).min(-1).values
        hit = (tn <= tf) & (tn > 1e-3) & (tn < best_t)
        nrm = -torch.nn.functional.one_hot(axn, 3).float() * torch.sign(d)
        best_t = torch.where(hit, tn, best_t)
        best_n = torch.where(hit[:, None], nrm, best_n)
    return best_t, best_n


def _texture(p: torch.Tensor) -> torch.Tensor:
    """Procedural colour so renders have gradients (stripes and checks in world space)."""
    c = 0.5 + 0.25 * torch.sin(p * torch.tensor([7.0, 5.0, 6.0]))
    chk = ((p * 4).floor().sum(-1) % 2)[:, None]
    return (0.7 * c + 0.3 * chk * torch.tensor([0.9, 0.6, 0.3])).clamp(0, 1)


def _view_gaussians(T: torch.Tensor, rays_c: torch.Tensor, stride: int, f: float, g):
    d = rays_c @ T[:3, :3].T
    o = T[:3, 3].expand_as(d)
    t, n = _ray_boxes(o, d)  # rays have unit camera z, so t is the depth
    ok = torch.isfinite(t) & (t < 6.0)
    p = o + t[:, None] * d
    # Slant-aware footprint: a block covers more surface when seen obliquely.
    cosang = (-(d / d.norm(dim=-1, keepdim=True)) * n).sum(-1).abs().clamp(min=0.3)
    sig_t = 0.7 * stride * t / f
    sc = torch.stack([sig_t / cosang, sig_t, 0.1 * sig_t], -1)
    a = torch.where(n[:, 1:2].abs() > 0.9, torch.tensor([[1.0, 0, 0]]), torch.tensor([[0.0, 1, 0]]))
    t1 = torch.linalg.cross(a, n)
    t1 = t1 / t1.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    R = torch.stack([t1, torch.linalg.cross(n, t1), n], -1)
    return ok, p + 0.002 * torch.randn(p.shape, generator=g), se3.rotmat_to_quat(R), sc, _texture(p)


def surface_scene(n_gaussians: int = 20000, stride: int = 8, seed: int = 0, max_views: int = 1000):
    """Map of about n_gaussians surface Gaussians, built view by view like the mapper.

    Each view adds the Gaussians of its stride-8 grid only where the surface is not
    mapped yet (no existing centre within half a block footprint), so surfaces are
    covered about once (low depth complexity) and the map grows with the explored area
    and with closer views. (A k-d tree test instead of the mapper's rendered silhouette
    keeps building independent of the renderer being measured.) Returns the Gaussians
    (means, quats, scales, opacities, colors) and the poses of the views used.
    """
    from scipy.spatial import cKDTree

    W, H, f = 640, 480, float(K640[0, 0])
    hb, wb = H // stride, W // stride
    v, u = torch.meshgrid(torch.arange(hb) * stride + (stride - 1) / 2, torch.arange(wb) * stride + (stride - 1) / 2,
                          indexing="ij")
    rays_c = torch.stack([(u - K640[0, 2]) / f, (v - K640[1, 2]) / f, torch.ones_like(u)], -1).reshape(-1, 3)
    g = torch.Generator().manual_seed(seed + 1)
    parts = {k: [] for k in ("means", "quats", "scales", "colors")}
    total, used = 0, []
    for T in view_poses(max_views, seed=seed):
        ok, p, q, sc, col = _view_gaussians(T, rays_c, stride, f, g)
        if total:
            tree = cKDTree(torch.cat(parts["means"]).numpy())
            dist, _ = tree.query(p.numpy(), k=1, distance_upper_bound=10.0)
            ok = ok & torch.from_numpy(dist > 0.5 * sc[:, 1].numpy() / 0.7)
        k = min(int(ok.sum()), n_gaussians - total)
        if k < 50:
            continue
        idx = torch.nonzero(ok).flatten()[:k]
        for name, val in zip(("means", "quats", "scales", "colors"), (p, q, sc, col)):
            parts[name].append(val[idx])
        total += k
        used.append(T)
        if total >= n_gaussians:
            break
    scene = {k: torch.cat(v) for k, v in parts.items()}
    scene["opacities"] = 0.9 + 0.09 * torch.rand(total, generator=g)
    return scene, torch.stack(used)


def render_poses(poses: torch.Tensor, n: int, seed: int = 7) -> torch.Tensor:
    """Mapping poses nudged by ~3 cm / 2 degrees: what tracking renders at a new frame."""
    g = torch.Generator().manual_seed(seed)
    xi = torch.cat([0.03 * torch.randn(n, 3, generator=g), 0.035 * torch.randn(n, 3, generator=g)], -1)
    return poses[torch.arange(n) % len(poses)] @ se3.se3_exp(xi)


def _time(fn, repeats: int):
    """Wall and process-CPU seconds of each of `repeats` calls after a warm-up call."""
    fn()  # warm-up (allocator, first-call overheads)
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def bench_one(rast, scene, pose, K, W, H, channels: int, mode: str, repeats: int):
    n = scene["means"].shape[0]
    g = torch.Generator().manual_seed(3)
    feats = torch.cat([scene["colors"], torch.rand(n, channels - 3, generator=g)], -1) if channels > 3 \
        else scene["colors"][:, :channels]
    viewmat = se3.inv(pose)[None]
    Ks = K[None]
    if mode == "fwd":
        def fn():
            with torch.no_grad():
                rast.rasterize(scene["means"], scene["quats"], scene["scales"], scene["opacities"], feats,
                               viewmat, Ks, W, H)
    else:
        wimg = torch.rand(1, H, W, channels, generator=g)
        leaves = [t.clone().requires_grad_(True) for t in
                  (scene["means"], scene["quats"], scene["scales"], scene["opacities"], feats)]
        xi = torch.zeros(6, requires_grad=True)

        def fn():
            for t in leaves + [xi]:
                t.grad = None
            vm = se3.inv(pose @ se3.se3_exp(xi))[None]
            out = rast.rasterize(*leaves, vm, Ks, W, H)
            loss = (out.features * wimg).sum() + out.depth.sum() + out.alpha.sum()
            loss.backward()
    return _time(fn, repeats)


def parse_sizes(s: str):
    return [tuple(int(v) for v in x.split("x")) for x in s.split(",")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gaussians", default="20000,60000", help="map sizes, comma separated")
    ap.add_argument("--sizes", default="160x120,320x240,640x480")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--modes", default="fwd,fwd+bwd")
    ap.add_argument("--channels", type=int, default=9,
                    help="feature channels (9 = colour + centres + normals, what tracking renders)")
    ap.add_argument("--poses", type=int, default=3, help="render poses per configuration (median over all)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tile", type=int, default=None, help="tile size (default: the rasteriser's)")
    ap.add_argument("--impl", help="time the TorchRasterizer of this file instead (an older version)")
    ap.add_argument("--out", help="write the numbers as JSON here")
    args = ap.parse_args(argv)

    cls = load_impl(args.impl) if args.impl else TorchRasterizer
    rows = []
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cpus; channels={args.channels}; impl={args.impl or 'package'}")
    print(f"{'gaussians':>9} {'visible':>8} {'size':>8} {'thr':>3} {'mode':>8} {'wall ms med':>11} "
          f"{'wall min':>8} {'cpu ms med':>10}")
    for n in [int(x) for x in args.gaussians.split(",")]:
        t0 = time.perf_counter()
        scene, poses = surface_scene(n)
        print(f"# map: {len(scene['means'])} Gaussians from {len(poses)} views "
              f"({time.perf_counter() - t0:.0f} s to build)", flush=True)
        rposes = render_poses(poses, args.poses)
        for W, H in parse_sizes(args.sizes):
            K = Intrinsics(525.0, 525.0, 319.5, 239.5, 640, 480).scaled(W, H).K()
            for thr in [int(x) for x in args.threads.split(",")]:
                torch.set_num_threads(thr)
                rast = cls() if args.tile is None else cls(tile_size=args.tile)
                with torch.no_grad():
                    vis = sum(int(rast.rasterize(scene["means"], scene["quats"], scene["scales"],
                                                 scene["opacities"], scene["colors"], se3.inv(p)[None],
                                                 K[None], W, H).visible.sum()) for p in rposes) / len(rposes)
                for mode in args.modes.split(","):
                    wall, cpu = [], []
                    for p in rposes:
                        w_, c_ = bench_one(rast, scene, p, K, W, H, args.channels, mode, args.repeats)
                        wall += w_
                        cpu += c_
                    row = dict(gaussians=len(scene["means"]), visible=vis, width=W, height=H, threads=thr,
                               mode=mode, ms_median=1000 * statistics.median(wall), ms_min=1000 * min(wall),
                               cpu_ms_median=1000 * statistics.median(cpu))
                    rows.append(row)
                    print(f"{row['gaussians']:>9} {vis:>8.0f} {f'{W}x{H}':>8} {thr:>3} {mode:>8} "
                          f"{row['ms_median']:>11.1f} {row['ms_min']:>8.1f} {row['cpu_ms_median']:>10.1f}",
                          flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(torch=torch.__version__, channels=args.channels, impl=args.impl, rows=rows), f,
                      indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
