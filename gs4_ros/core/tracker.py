"""Dense RGB-D frame-to-model tracking against views rendered from the Gaussian map.

Coarse-to-fine Gauss-Newton on projective point-to-plane depth residuals (KinectFusion
style data association) plus a photometric term, both against geometry and colour
rendered from the map at the predicted pose, so the map itself is the tracking reference.

Each pyramid level's normal equations are computed over the full pixel grid (invalid
pixels weigh zero), so every tensor has a fixed shape per level: on CUDA the whole
per-iteration computation is captured once as a CUDA graph and replayed, which removes
the kernel-launch overhead that otherwise dominates at 30 frames/s.

Two solvers share that computation. On CUDA the 6x6 system is solved on the device in
float64 and the pose updated there, so a level's iterations replay as one graph and a
frame costs one host round trip instead of one per iteration (the round trips, not the
arithmetic, were most of a frame's tracking time: benchmarks/profile_pipeline.py). On the
CPU, or with `device_solver` off, the host solves each step and can stop early.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from . import se3
from .config import TrackingConfig
from .cuda_graph import GraphedCall, capture
from .geometry import (backproject, bilateral_depth, depth_noise_sigma, depth_weight, downsample_depth, downsample_image,
                       image_gradients, normals_from_points)

LUMA = (0.299, 0.587, 0.114)


def intensity(rgb: torch.Tensor) -> torch.Tensor:
    """[H, W, 3] float in [0, 1] -> [H, W] luma (scalar weights: no host-to-device copy,
    so it can be captured in a CUDA graph)."""
    return rgb[..., 0] * LUMA[0] + rgb[..., 1] * LUMA[1] + rgb[..., 2] * LUMA[2]


def scale_K(K: torch.Tensor, level: int) -> torch.Tensor:
    """Intrinsics of pyramid level `level` (each level halves, pixel centres at +0.5)."""
    s = 0.5 ** level
    Kl = K.clone()
    Kl[0, 0] *= s
    Kl[1, 1] *= s
    Kl[0, 2] = (K[0, 2] + 0.5) * s - 0.5
    Kl[1, 2] = (K[1, 2] + 0.5) * s - 0.5
    return Kl


@dataclass
class Level:
    """One pyramid level, as flat per-pixel arrays plus image-shaped reference maps."""

    K: torch.Tensor
    shape: Tuple[int, int]
    points: torch.Tensor    # [H, W, 3] camera frame
    normals: torch.Tensor   # [H, W, 3]
    valid: torch.Tensor     # [H, W] bool
    gray: torch.Tensor      # [H, W]
    alpha: Optional[torch.Tensor] = None  # reference only: rendered silhouette
    photo: Optional[torch.Tensor] = None  # reference only: [1, 4, H, W] gray, gx, gy, alpha


def normal_radius(width: int, normal_width: int) -> int:
    """Pixels either side that observed normals are differenced over at this image width:
    the same angular baseline at any size (TrackingConfig.normal_width; 0: one pixel)."""
    return max(1, round(width / normal_width)) if normal_width > 0 else 1


def photo_falloff(z: torch.Tensor, depth: float) -> torch.Tensor:
    """Factor on each pixel's photometric weight: 1 up to `depth` (m), then the depth
    term's inverse-variance weight relative to its value there (TrackingConfig.
    photo_falloff_depth; 0: 1 everywhere)."""
    if depth <= 0:
        return torch.ones_like(z)
    ref = depth_weight(torch.full((), float(depth), dtype=z.dtype, device=z.device))
    return (depth_weight(z) / ref).clamp(max=1.0)


def build_pyramid(depth: torch.Tensor, gray: torch.Tensor, K: torch.Tensor, levels: int,
                  min_depth: float, max_depth: float, normal_width: int) -> List[Level]:
    """Observed depth/intensity pyramid with vertex and normal maps; level 0 = input size.

    Normals are differenced over a baseline of the same angle at every image size: one
    pixel either side at normal_width pixels across, two at twice that. Per-pixel
    differences of 640x480 Kinect depth at 3 m are mostly noise, so the tracker's normal
    test (max_normal_angle_deg) rejected most good pixels there: 19% inliers on synthetic
    seed 901's first frames, below min_inlier_fraction (lost for good), 37% at 320x240."""
    out: List[Level] = []
    d, g = depth, gray
    for lv in range(levels):
        if lv > 0:
            d = downsample_depth(d)
            g = downsample_image(g)
        Kl = scale_K(K, lv)
        dv = (d > min_depth) & (d < max_depth)
        pts = backproject(torch.where(dv, d, torch.zeros_like(d)), Kl)
        n, nv = normals_from_points(pts, dv, normal_radius(d.shape[1], normal_width))
        out.append(Level(Kl, tuple(d.shape), pts, n, nv & dv, g))
    return out


@dataclass
class TrackResult:
    pose: torch.Tensor                 # [4, 4] camera-to-world
    ok: bool
    inlier_fraction: float
    rms_depth: float                   # metres, over inliers at the finest level
    rms_photo: float
    iterations: int
    information: np.ndarray            # 6x6 Gauss-Newton information at the solution
    delta_from_prediction: tuple = (0.0, 0.0)  # (m, rad)
    stats: dict = field(default_factory=dict)


def _huber_w(r: torch.Tensor, delta: float) -> torch.Tensor:
    a = r.abs()
    return torch.where(a <= delta, torch.ones_like(a), delta / a.clamp(min=1e-12))


def solve_spd6(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x with A x = b for a symmetric positive (semi)definite n x n A (here 6 x 6).

    Gauss-Jordan on [A | b] without pivoting (safe for SPD systems, like Cholesky), five
    whole-matrix kernels per column. Written out rather than torch.linalg.solve because it
    runs inside a CUDA graph, where cuSOLVER's error checks would synchronise, and with
    few kernels because inside a graph the kernel count, not arithmetic, is the cost.
    Pivots are clamped, so a singular system gives a finite (damped) step, not an error.
    """
    n = A.shape[0]
    tiny = 1e-12 * A.diagonal().abs().sum().clamp(min=1e-30)
    M = torch.cat([A, b[:, None]], 1)
    for j in range(n):
        row = M[j] / M[j, j].clamp(min=tiny)
        M = M - M[:, j:j + 1] * row[None]
        M[j] = row
    return M[:, n]


def _block_means(H: torch.Tensor) -> torch.Tensor:
    """[6] the mean diagonal of H's translation block, then of its rotation block, each
    repeated 3 times: the scale in which the prediction prior is weighted and
    weakest_constraint reads the information, so the two speak of the same fractions."""
    d = H.diagonal()
    return torch.cat([d[:3].mean().expand(3), d[3:].mean().expand(3)])


def add_prediction_prior(H: torch.Tensor, g: torch.Tensor, T: torch.Tensor, weight: float):
    """(H, g) of the Gauss-Newton system plus a prior holding T (reference-from-current,
    identity at the prediction) in place: 0.5 (xi + dx)^T L (xi + dx), xi the small-angle
    twist of T (translation, then rotation, as dx), L diagonal at `weight` times the mean
    diagonal of H's translation and rotation blocks. Scaled to the data so that it decides
    only directions whose information is a small fraction of the rest (units and image
    size drop out). Closed form with no host sync, so the device step keeps it inside its
    CUDA graph."""
    if weight <= 0:
        return H, g
    lam = _block_means(H) * weight
    w = torch.stack([T[2, 1] - T[1, 2], T[0, 2] - T[2, 0], T[1, 0] - T[0, 1]]) * 0.5
    xi = torch.cat([T[:3, 3], w]).to(H.dtype)
    return H + torch.diag(lam), g + lam * xi


def weakest_constraint(info: np.ndarray) -> float:
    """Smallest eigenvalue of the Gauss-Newton information with its translation and
    rotation blocks each scaled to a mean diagonal of 1 (eigenvalues average 1): near 0 the
    view leaves a direction of motion open (a plain wall, a corridor), whatever the image
    size or units. NaN for an empty or non-finite system."""
    H = torch.as_tensor(info, dtype=torch.float64)
    m = _block_means(H)
    if not torch.isfinite(H).all() or (m <= 0).any():
        return float("nan")
    s = m.rsqrt()
    return float(torch.linalg.eigvalsh(H * s[:, None] * s[None, :])[0])


class _LevelProblem:
    """Static buffers and the normal-equation computation of one pyramid level."""

    def __init__(self, cfg: TrackingConfig, shape, device, dtype, use_graph: bool, level: int = 0):
        H, W = shape
        P = H * W
        z = lambda *s: torch.zeros(*s, device=device, dtype=dtype)
        self.cfg = cfg
        self.shape = shape
        self.photo_weight = cfg.photo_weight if level >= cfg.photo_min_level else 0.0
        self.cur_p, self.cur_n, self.cur_g, self.cur_w = z(P, 3), z(P, 3), z(P), z(P)
        self.cur_gate, self.cur_cos = z(P), z(P)  # per-pixel floors of the two gates (_load_noise_gates)
        self.cur_pw = torch.ones(P, device=device, dtype=dtype)  # per-pixel photometric factor (photo_falloff)
        self._pw_set = False
        self.level = level
        self.ref_geo = z(H, W, 7)          # points, normals, usable (alpha and validity)
        self.ref_photo = z(1, 4, H, W)     # gray, gx, gy, alpha
        self.K = z(3, 3)
        self.T = z(4, 4)
        self.gate = z(())
        self.cos_max = z(())
        self.out = z(44)                   # H (36), g (6), inliers, sum of squared residuals
        self.graph = None
        self.use_graph = use_graph and device.type == "cuda"
        # Device solver state: relative pose in float64 and per-frame statistics.
        self.T64 = torch.eye(4, device=device, dtype=torch.float64)
        self.stats = z(5)                  # inliers, sum r_d^2, photo inliers, sum r_p^2, valid
        self.min_inliers = 12
        self._step_graphs: Dict[int, "torch.cuda.CUDAGraph"] = {}
        self._stats_graph = None

    def load(self, cur: Level, ref: Level):
        c = self.cfg
        self.cur_p.copy_(cur.points.reshape(-1, 3))
        self.cur_n.copy_(cur.normals.reshape(-1, 3))
        self.cur_g.copy_(cur.gray.reshape(-1))
        z = cur.points[..., 2].reshape(-1)
        # Depth noise grows ~z^2 (structured light): inverse-variance weights, 1 at ~1 m.
        self.cur_w.copy_(cur.valid.reshape(-1).to(z.dtype) * depth_weight(z))
        self._load_noise_gates(z, cur)
        # Off (the default): the ones stay, no per-frame work; a setting switched off
        # between frames resets them once.
        if c.photo_falloff_depth > 0:
            self.cur_pw.copy_(photo_falloff(z, c.photo_falloff_depth))
            self._pw_set = True
        elif self._pw_set:
            self.cur_pw.fill_(1.0)
            self._pw_set = False
        usable = ref.valid & (ref.alpha >= c.render_alpha_min)
        self.ref_geo.copy_(torch.cat([ref.points, ref.normals, usable[..., None].to(ref.points.dtype)], -1))
        if ref.photo is not None:
            self.ref_photo.copy_(ref.photo)
        self.K.copy_(ref.K)

    def _load_noise_gates(self, z: torch.Tensor, cur: Level):
        """Widen the correspondence gates where the depth noise alone would fail them.

        Structured-light noise grows ~z^2 (4 cm at 5 m): there two observations of the same
        wall differ by more than the fixed distance gate, and normals differenced over a
        few pixels point anywhere, so fixed gates keep a biased few of the pixels
        (synthetic room 914, seen from 5 m, kept 18% and read as lost from its first frame:
        benchmarks/track_frames.py). Each pixel's distance gate is at least
        gate_noise_sigmas times the noise of a difference of two samples, and its normal
        gate at least normal_gate_noise_factor times the angle that noise gives its normal
        (differenced over this level's baseline, the level's averaging included). Near
        depth keeps the fixed gates: at 640x480 the normal gate widens past about 2.3 m, the
        distance gate past about 3.5 m.
        """
        c = self.cfg
        sig = depth_noise_sigma(z) / (2.0 ** self.level)        # a coarser level averages 4^lv pixels
        pair = 1.4142 * sig
        self.cur_gate.copy_(c.gate_noise_sigmas * pair)
        if c.normal_gate_noise_factor > 0:
            r = normal_radius(cur.shape[1], c.normal_width)
            base = 2.0 * r * z.clamp(min=1e-3) / cur.K[0, 0]       # metres between the differenced pixels
            ang = torch.atan(pair / base) * c.normal_gate_noise_factor
            self.cur_cos.copy_(torch.cos(ang.clamp(max=math.radians(c.normal_gate_max_deg))))
        else:
            self.cur_cos.fill_(1.0)

    def compute(self, with_residuals: bool = False):
        """Fill self.out from the current T; returns residual tensors when asked."""
        c = self.cfg
        H, W = self.shape
        T, K = self.T, self.K
        p = self.cur_p @ T[:3, :3].T + T[:3, 3]
        n_cr = self.cur_n @ T[:3, :3].T
        z = p[:, 2]
        zs = z.clamp(min=1e-3)
        u = K[0, 0] * p[:, 0] / zs + K[0, 2]
        v = K[1, 1] * p[:, 1] / zs + K[1, 2]
        inb = (z > 1e-3) & (u > -0.5) & (u < W - 0.5) & (v > -0.5) & (v < H - 0.5)
        ui = torch.round(u).long().clamp(0, W - 1)
        vi = torch.round(v).long().clamp(0, H - 1)
        geo = self.ref_geo[vi, ui]
        rv, rn, usable = geo[:, :3], geo[:, 3:6], geo[:, 6]
        diff = p - rv
        r_d = (diff * rn).sum(-1)
        ok = (inb & (usable > 0.5) & (diff.norm(dim=-1) < torch.maximum(self.gate, self.cur_gate))
              & ((n_cr * rn).sum(-1) > torch.minimum(self.cos_max, self.cur_cos)))
        w_d = ok.to(p.dtype) * _huber_w(r_d, c.huber_depth) * self.cur_w
        J_d = torch.cat([rn, torch.cross(p, rn, dim=-1)], -1)
        A = torch.cat([J_d, r_d[:, None]], -1)
        M = (A * w_d[:, None]).T @ A                            # [7, 7]
        r_p = a_ok = None
        if self.photo_weight > 0:
            gx_ = (u + 0.5) / W * 2 - 1
            gy_ = (v + 0.5) / H * 2 - 1
            grid = torch.stack([gx_, gy_], -1).reshape(1, -1, 1, 2)
            s = F.grid_sample(self.ref_photo, grid, mode="bilinear", padding_mode="border",
                              align_corners=False)[0, :, :, 0]  # [4, P]
            I_r, gxs, gys, al = s[0], s[1], s[2], s[3]
            r_p = I_r - self.cur_g
            a_ok = inb & (self.cur_w > 0) & (al >= c.render_alpha_min) & (r_p.abs() < 0.3)
            fx, fy = K[0, 0], K[1, 1]
            # dI/dp through the pinhole projection.
            a = torch.stack([gxs * fx / zs, gys * fy / zs, -(gxs * fx * p[:, 0] + gys * fy * p[:, 1]) / (zs * zs)], -1)
            Ap = torch.cat([a, torch.cross(p, a, dim=-1), r_p[:, None]], -1)
            w_p = a_ok.to(p.dtype) * _huber_w(r_p, c.huber_photo) * (self.photo_weight ** 2) * self.cur_pw
            M = M + (Ap * w_p[:, None]).T @ Ap
        self.out.copy_(torch.cat([M[:6, :6].reshape(-1), M[:6, 6], ok.sum().to(p.dtype).reshape(1),
                                  M[6, 6].reshape(1)]))
        if with_residuals:
            return r_d, ok, r_p, a_ok
        return None

    def step(self):
        """One Gauss-Newton step entirely on the device: T64 <- exp(dx) T64.

        Mirrors the host loop: no update when too few inliers or a non-finite step (the
        host loop stops there; repeating the same T gives the same result, so a no-op
        is equivalent).
        """
        self.T.copy_(self.T64.to(self.T.dtype))
        self.compute()
        o = self.out.double()
        Hd = o[:36].reshape(6, 6)
        Hd = Hd + torch.eye(6, dtype=Hd.dtype, device=Hd.device) * (1e-9 * Hd.diagonal().sum().clamp(min=1e-12))
        Hd, gd = add_prediction_prior(Hd, o[36:42], self.T64, self.cfg.prediction_prior)
        dx = -solve_spd6(Hd, gd)
        good = (o[42] >= self.min_inliers) & torch.isfinite(dx).all()
        dx = torch.where(good, dx, torch.zeros_like(dx))
        self.T64.copy_(se3.se3_exp(dx) @ self.T64)

    def run_steps(self, n: int):
        """n device steps; on CUDA one graph replay (captured once per n)."""
        if not self.use_graph:
            for _ in range(n):
                self.step()
            return
        g = self._step_graphs.get(n)
        if g is None:
            keep = self.T64.clone()

            def steps():
                for _ in range(n):
                    self.step()

            g, _ = capture(steps, warmup=lambda: (self.step(), self.T64.copy_(keep)))
            self.T64.copy_(keep)
            self._step_graphs[n] = g
        g.replay()

    def _compute_stats(self):
        self.T.copy_(self.T64.to(self.T.dtype))
        r_d, ok, r_p, a_ok = self.compute(with_residuals=True)
        okf = ok.to(r_d.dtype)
        parts = [okf.sum(), (r_d * r_d * okf).sum()]
        if r_p is not None:
            af = a_ok.to(r_p.dtype)
            parts += [af.sum(), (r_p * r_p * af).sum()]
        else:
            parts += [okf.new_zeros(()), okf.new_zeros(())]
        parts.append((self.cur_w > 0).to(r_d.dtype).sum())
        self.stats.copy_(torch.stack(parts))

    def final_stats(self):
        """Normal equations and residual statistics at T64 (one graph replay on CUDA)."""
        if not self.use_graph:
            self._compute_stats()
            return
        if self._stats_graph is None:
            self._stats_graph, _ = capture(self._compute_stats)
        self._stats_graph.replay()

    def run(self) -> np.ndarray:
        if self.use_graph:
            if self.graph is None:
                self.graph, _ = capture(self.compute, warmup_runs=2)
            self.graph.replay()
        else:
            self.compute()
        return self.out.double().cpu().numpy()


class RGBDTracker:
    def __init__(self, cfg: TrackingConfig, use_cuda_graphs: bool = True,
                 device_solver: Optional[bool] = None):
        """device_solver: None = on CUDA only (cfg.device_solver permitting); True/False force it."""
        self.cfg = cfg
        self.use_cuda_graphs = use_cuda_graphs
        self.device_solver = device_solver
        self._problems: Dict[tuple, _LevelProblem] = {}
        self._device_failed = False
        self._prep = GraphedCall(self._prepare_eager, "tracker pyramids", enabled=use_cuda_graphs)

    def prepare(self, depth, rgb, K, points, normals, color, alpha):
        """(observed pyramid, reference pyramid) of one frame.

        Both are dozens of small kernels whose launches, not their arithmetic, cost
        milliseconds at 640x480; on CUDA they are captured once per image size and
        replayed. The returned levels live in static buffers that the next call
        overwrites: use them before preparing another frame.
        """
        return self._prep(depth, rgb, K, points, normals, color, alpha)

    def _prepare_eager(self, depth, rgb, K, points, normals, color, alpha):
        return self.levels_for(depth, rgb, K), self.reference_levels(points, normals, color, alpha, K)

    def levels_for(self, depth, rgb, K) -> List[Level]:
        """Pyramid of the current (observed) frame."""
        c = self.cfg
        n = c.finest_level + c.pyramid_levels
        if c.bilateral_radius > 0:
            depth = bilateral_depth(depth, c.bilateral_radius)
        return build_pyramid(depth, intensity(rgb), K, n, c.min_depth, c.max_depth,
                             c.normal_width)[c.finest_level:]

    def reference_levels(self, points, normals, rgb, alpha, K) -> List[Level]:
        """Pyramid of the rendered reference: blended Gaussian centres and normals.

        Coarser levels average points/normals over solid pixels only; averaging points of
        one plane keeps them on it.
        """
        c = self.cfg
        out: List[Level] = []
        g = intensity(rgb)
        P, N, A = points, normals, alpha
        n = c.finest_level + c.pyramid_levels
        for lv in range(n):
            if lv > 0:
                w = (A >= c.render_alpha_min).to(P.dtype)
                ws = F.avg_pool2d(w[None, None], 2)[0, 0].clamp(min=1e-6)[..., None]
                P = downsample_image(P * w[..., None]) / ws
                N = downsample_image(N * w[..., None])
                N = N / N.norm(dim=-1, keepdim=True).clamp(min=1e-8)
                A = downsample_image(A)
                g = downsample_image(g)
            if lv < c.finest_level:
                continue
            z = P[..., 2]
            valid = (A >= c.render_alpha_min) & (z > c.min_depth) & (z < c.max_depth) & (N.norm(dim=-1) > 0.5)
            gx, gy = image_gradients(g)
            out.append(Level(scale_K(K, lv), tuple(g.shape), P, N, valid, g, alpha=A,
                             photo=torch.stack([g, gx, gy, A])[None]))
        return out

    def _problem(self, lv: int, shape, device, dtype) -> _LevelProblem:
        key = (lv, tuple(shape), str(device), dtype)
        if key not in self._problems:
            self._problems[key] = _LevelProblem(self.cfg, shape, device, dtype, self.use_cuda_graphs, lv)
        return self._problems[key]

    def track(self, cur: List[Level], ref: List[Level], ref_pose: torch.Tensor,
              init_rel: Optional[torch.Tensor] = None) -> TrackResult:
        """Align the current frame's pyramid to the reference (rendered) pyramid.

        ref_pose is the camera-to-world pose the reference was rendered at; the result
        is the current camera-to-world pose. init_rel (reference-from-current) seeds GN.
        """
        use_dev = self.device_solver
        if use_dev is None:
            use_dev = self.cfg.device_solver and ref_pose.device.type == "cuda"
        if use_dev and not self._device_failed:
            try:
                return self._track_device(cur, ref, ref_pose, init_rel)
            except RuntimeError as e:  # e.g. a CUDA graph capture this torch build refuses
                if ref_pose.device.type != "cuda":
                    raise
                import logging

                logging.getLogger(__name__).warning(
                    "device-side Gauss-Newton unavailable (%s); solving on the host", e)
                self._device_failed = True
                self._problems.clear()
        return self._track_host(cur, ref, ref_pose, init_rel)

    def _levels(self, cur, ref, dev, dt):
        """Coarsest to finest: (level, iterations, its problem loaded with this frame)."""
        c = self.cfg
        cos_max = math.cos(math.radians(c.max_normal_angle_deg))
        for lv in reversed(range(len(cur))):
            its = c.iterations[lv] if lv < len(c.iterations) else c.iterations[-1]
            prob = self._problem(lv, cur[lv].shape, dev, dt)
            prob.load(cur[lv], ref[lv])
            prob.gate.fill_(c.max_correspondence * (1.5 ** lv))
            prob.cos_max.fill_(cos_max)
            yield lv, its, prob

    def _track_device(self, cur, ref, ref_pose, init_rel) -> TrackResult:
        c = self.cfg
        dev, dt = ref_pose.device, ref_pose.dtype
        T64 = (init_rel.detach().to(device=dev, dtype=torch.float64) if init_rel is not None
               else torch.eye(4, device=dev, dtype=torch.float64))
        total_it = 0
        for lv, its, prob in self._levels(cur, ref, dev, dt):
            prob.T64.copy_(T64)
            prob.run_steps(its)
            T64 = prob.T64
            total_it += its
        # The loop ends on the finest level, whose problem still holds this frame.
        prob.gate.fill_(c.max_correspondence)
        prob.final_stats()
        # The frame's only host round trip: solution, information and statistics.
        host = torch.cat([prob.T64.reshape(-1), prob.out.double(), prob.stats.double()]).cpu().numpy()
        T = torch.from_numpy(host[:16].reshape(4, 4).copy())
        out, st = host[16:60], host[60:65]
        info = out[:36].reshape(6, 6)
        n_in, n_valid = int(st[0]), max(int(st[4]), 1)
        rms_d = math.sqrt(st[1] / n_in) if n_in else float("nan")
        rms_p = math.sqrt(st[3] / st[2]) if st[2] > 0 else float("nan")
        return self._result(T, ref_pose, n_in / n_valid, rms_d, rms_p, total_it, info, n_in)

    def _result(self, T, ref_pose, inl, rms_d, rms_p, total_it, info, n_in) -> TrackResult:
        c = self.cfg
        Tt = T.to(device=ref_pose.device, dtype=ref_pose.dtype)
        pose = ref_pose @ Tt
        dtr, drot = se3.pose_distance(torch.eye(4, dtype=torch.float64), T)
        ok_flag = inl >= c.min_inlier_fraction and bool(np.isfinite(info).all()) and bool(np.isfinite(T.numpy()).all())
        return TrackResult(pose=pose, ok=ok_flag, inlier_fraction=inl, rms_depth=rms_d, rms_photo=rms_p,
                           iterations=total_it, information=info,
                           delta_from_prediction=(float(dtr), float(drot)), stats={"n_in": n_in})

    def _track_host(self, cur, ref, ref_pose, init_rel) -> TrackResult:
        c = self.cfg
        dev, dt = ref_pose.device, ref_pose.dtype
        T = (init_rel.detach().double().cpu() if init_rel is not None else torch.eye(4, dtype=torch.float64))
        total_it = 0
        for lv, its, prob in self._levels(cur, ref, dev, dt):
            for _ in range(its):
                prob.T.copy_(T.to(dt), non_blocking=False)
                out = prob.run()
                total_it += 1
                if out[42] < prob.min_inliers:
                    break
                Hd, gd = out[:36].reshape(6, 6), out[36:42]
                Hd = Hd + np.eye(6) * 1e-9 * max(np.trace(Hd), 1e-12)
                if c.prediction_prior > 0:
                    Ht, gt = add_prediction_prior(torch.from_numpy(Hd), torch.from_numpy(gd), T, c.prediction_prior)
                    Hd, gd = Ht.numpy(), gt.numpy()
                try:
                    dx = -np.linalg.solve(Hd, gd)
                except np.linalg.LinAlgError:
                    break
                T = se3.se3_exp(torch.from_numpy(dx)) @ T
                if np.linalg.norm(dx[:3]) < 1e-5 and np.linalg.norm(dx[3:]) < 1e-5:
                    break
        # Health and information at the solution, finest level (the loop ended on it, so
        # its problem still holds this frame).
        prob.gate.fill_(c.max_correspondence)
        prob.T.copy_(T.to(dt))
        r_d, ok, r_p, a_ok = prob.compute(with_residuals=True)
        out = prob.out.double().cpu().numpy()
        info = out[:36].reshape(6, 6)
        n_in = int(out[42])
        n_valid = max(int(cur[0].valid.sum()), 1)
        rms_d = float(torch.sqrt((r_d[ok] ** 2).mean())) if n_in else float("nan")
        rms_p = float(torch.sqrt((r_p[a_ok] ** 2).mean())) if a_ok is not None and bool(a_ok.any()) else float("nan")
        return self._result(T, ref_pose, n_in / n_valid, rms_d, rms_p, total_it, info, n_in)
