"""Dense RGB-D frame-to-model tracking against views rendered from the Gaussian map.

Coarse-to-fine Gauss-Newton on projective point-to-plane depth residuals (KinectFusion
style data association) plus a photometric term, both against depth and colour rendered
from the map at the predicted pose, so the map itself is the tracking reference. The 6x6
normal equations are reduced on the device and solved on the host in float64.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
import torch

from . import se3
from .config import TrackingConfig
from .geometry import (backproject, bilinear_sample, downsample_depth, downsample_image,
                       image_gradients, normals_from_points, pixel_grid)

LUMA = (0.299, 0.587, 0.114)


def intensity(rgb: torch.Tensor) -> torch.Tensor:
    """[H, W, 3] float in [0, 1] -> [H, W] luma."""
    w = torch.tensor(LUMA, device=rgb.device, dtype=rgb.dtype)
    return rgb @ w


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
    K: torch.Tensor
    depth: torch.Tensor
    gray: torch.Tensor
    points: torch.Tensor    # [H, W, 3] camera frame
    normals: torch.Tensor   # [H, W, 3]
    valid: torch.Tensor     # [H, W] bool: depth and normal valid
    gx: Optional[torch.Tensor] = None
    gy: Optional[torch.Tensor] = None
    alpha: Optional[torch.Tensor] = None


def build_pyramid(depth: torch.Tensor, gray: torch.Tensor, K: torch.Tensor, levels: int,
                  min_depth: float, max_depth: float, alpha: Optional[torch.Tensor] = None,
                  gradients: bool = False) -> List[Level]:
    """Depth/intensity pyramid with vertex and normal maps; level 0 is the input size."""
    out: List[Level] = []
    d, g, a = depth, gray, alpha
    for lv in range(levels):
        if lv > 0:
            d = downsample_depth(d)
            g = downsample_image(g)
            if a is not None:
                a = downsample_image(a)
        Kl = scale_K(K, lv)
        dv = (d > min_depth) & (d < max_depth)
        pts = backproject(torch.where(dv, d, torch.zeros_like(d)), Kl)
        n, nv = normals_from_points(pts, dv)
        L = Level(Kl, d, g, pts, n, nv & dv, alpha=a)
        if gradients:
            L.gx, L.gy = image_gradients(g)
        out.append(L)
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


class RGBDTracker:
    def __init__(self, cfg: TrackingConfig):
        self.cfg = cfg

    def levels_for(self, depth, rgb, K) -> List[Level]:
        """Pyramid of the current (observed) frame."""
        c = self.cfg
        n = c.finest_level + c.pyramid_levels
        pyr = build_pyramid(depth, intensity(rgb), K, n, c.min_depth, c.max_depth)
        return pyr[c.finest_level:]

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
                w = (A >= c.render_alpha_min).to(P.dtype)[None, None]
                pool = lambda x: torch.nn.functional.avg_pool2d(x, 2)
                ws = pool(w)
                P = (pool((P * w[0, 0, ..., None]).permute(2, 0, 1)[None]) / ws.clamp(min=1e-6))[0].permute(1, 2, 0)
                N = (pool((N * w[0, 0, ..., None]).permute(2, 0, 1)[None]) / ws.clamp(min=1e-6))[0].permute(1, 2, 0)
                N = N / N.norm(dim=-1, keepdim=True).clamp(min=1e-8)
                A = downsample_image(A)
                g = downsample_image(g)
            if lv < c.finest_level:
                continue
            z = P[..., 2]
            valid = (A >= c.render_alpha_min) & (z > c.min_depth) & (z < c.max_depth) & (N.norm(dim=-1) > 0.5)
            gx, gy = image_gradients(g)
            out.append(Level(scale_K(K, lv), torch.where(valid, z, torch.zeros_like(z)), g, P, N, valid,
                             gx=gx, gy=gy, alpha=A))
        return out

    def track(self, cur: List[Level], ref: List[Level], ref_pose: torch.Tensor,
              init_rel: Optional[torch.Tensor] = None) -> TrackResult:
        """Align the current frame's pyramid to the reference (rendered) pyramid.

        ref_pose is the camera-to-world pose the reference was rendered at; the result
        is the current camera-to-world pose. init_rel (reference-from-current) seeds GN.
        """
        c = self.cfg
        dev = ref_pose.device
        T = init_rel.clone() if init_rel is not None else torch.eye(4, device=dev, dtype=ref_pose.dtype)
        cos_max = math.cos(math.radians(c.max_normal_angle_deg))
        total_it = 0
        info = np.zeros((6, 6))
        stats = {}
        for lv in reversed(range(len(cur))):
            its = c.iterations[lv] if lv < len(c.iterations) else c.iterations[-1]
            gate = c.max_correspondence * (1.5 ** lv)
            for _ in range(its):
                H, g, n_in = self._normal_equations(cur[lv], ref[lv], T, gate, cos_max)
                total_it += 1
                # One device->host transfer per iteration: H, g and the inlier count.
                packed = torch.cat([H.reshape(-1), g, n_in.reshape(1).to(H.dtype)]).double().cpu().numpy()
                if packed[42] < 12:
                    break
                Hd, gd = packed[:36].reshape(6, 6), packed[36:42]
                Hd = Hd + np.eye(6) * 1e-9 * max(np.trace(Hd), 1e-12)
                try:
                    dx = -np.linalg.solve(Hd, gd)
                except np.linalg.LinAlgError:
                    break
                T = se3.se3_exp(torch.as_tensor(dx, device=dev, dtype=T.dtype)) @ T
                if np.linalg.norm(dx[:3]) < 1e-5 and np.linalg.norm(dx[3:]) < 1e-5:
                    break
            if lv == 0:
                H, g, n_in, stats = self._normal_equations(cur[0], ref[0], T, gate, cos_max, with_stats=True)
                info = H.double().cpu().numpy()
        n_valid = max(int(cur[0].valid.sum()), 1)
        inl = stats.get("n_in", 0) / n_valid
        pose = ref_pose @ T
        dt, dr = se3.pose_distance(torch.eye(4, device=dev, dtype=T.dtype), T)
        ok = inl >= c.min_inlier_fraction and bool(np.isfinite(info).all())
        return TrackResult(pose=pose, ok=ok, inlier_fraction=inl, rms_depth=stats.get("rms_d", float("nan")),
                           rms_photo=stats.get("rms_p", float("nan")), iterations=total_it,
                           information=info, delta_from_prediction=(float(dt), float(dr)), stats=stats)

    def _normal_equations(self, cur: Level, ref: Level, T: torch.Tensor, gate: float, cos_max: float,
                          with_stats: bool = False):
        c = self.cfg
        m = cur.valid
        p_c = cur.points[m]
        n_c = cur.normals[m]
        R, t = T[:3, :3], T[:3, 3]
        p = p_c @ R.T + t
        n_cr = n_c @ R.T
        Kr = ref.K
        Hh, Ww = ref.depth.shape
        z = p[:, 2]
        u = Kr[0, 0] * p[:, 0] / z.clamp(min=1e-6) + Kr[0, 2]
        v = Kr[1, 1] * p[:, 1] / z.clamp(min=1e-6) + Kr[1, 2]
        ui = torch.round(u).long()
        vi = torch.round(v).long()
        inb = (z > 1e-3) & (ui >= 0) & (ui < Ww) & (vi >= 0) & (vi < Hh)
        uic, vic = ui.clamp(0, Ww - 1), vi.clamp(0, Hh - 1)
        rv = ref.points[vic, uic]
        rn = ref.normals[vic, uic]
        rvalid = ref.valid[vic, uic]
        if ref.alpha is not None:
            rvalid = rvalid & (ref.alpha[vic, uic] >= c.render_alpha_min)
        diff = p - rv
        r_d = (diff * rn).sum(-1)
        ok = (inb & rvalid & (diff.norm(dim=-1) < gate) & ((n_cr * rn).sum(-1) > cos_max))
        # Depth noise grows ~z^2 (structured light); weight residuals by inverse variance.
        sig = 0.0012 + 0.0019 * (p_c[:, 2] - 0.4).clamp(min=0) ** 2
        w_d = ok.to(p.dtype) * _huber_w(r_d, c.huber_depth) * (0.0031 / sig) ** 2
        J_d = torch.cat([rn, torch.cross(p, rn, dim=-1)], -1)
        Jw = J_d * w_d[:, None]
        H = Jw.T @ J_d
        g = Jw.T @ r_d
        n_in = ok.sum()
        if c.photo_weight > 0 and ref.gx is not None:
            I_r = bilinear_sample(ref.gray, u, v)
            gx = bilinear_sample(ref.gx, u, v)
            gy = bilinear_sample(ref.gy, u, v)
            a_ok = inb & (z > 1e-3)
            if ref.alpha is not None:
                a_ok = a_ok & (bilinear_sample(ref.alpha, u, v) >= c.render_alpha_min)
            r_p = I_r - cur.gray[m]
            a_ok = a_ok & (r_p.abs() < 0.3)
            zs = z.clamp(min=1e-3)
            fx, fy = Kr[0, 0], Kr[1, 1]
            # a = dpi/dp^T grad(I): chain rule through the pinhole projection.
            ax = gx * fx / zs
            ay = gy * fy / zs
            az = -(gx * fx * p[:, 0] + gy * fy * p[:, 1]) / (zs * zs)
            a = torch.stack([ax, ay, az], -1)
            J_p = torch.cat([a, torch.cross(p, a, dim=-1)], -1)
            lam2 = c.photo_weight ** 2
            w_p = a_ok.to(p.dtype) * _huber_w(r_p, c.huber_photo) * lam2
            Jpw = J_p * w_p[:, None]
            H = H + Jpw.T @ J_p
            g = g + Jpw.T @ r_p
        if not with_stats:
            return H, g, n_in
        ni = int(n_in)
        stats = {"n_in": ni, "rms_d": float(torch.sqrt((r_d[ok] ** 2).mean())) if ni else float("nan"),
                 "rms_p": float("nan")}
        if c.photo_weight > 0 and ref.gx is not None and bool(a_ok.any()):
            stats["rms_p"] = float(torch.sqrt((r_p[a_ok] ** 2).mean()))
        return H, g, n_in, stats
