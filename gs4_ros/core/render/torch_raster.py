"""Pure-PyTorch tile rasteriser: the CPU backend and the reference for gsplat.

Written by hand because no maintained CPU Gaussian rasteriser exists for torch; it
follows gsplat's image formation exactly (see the package docstring) and is
differentiable with respect to the Gaussians and the camera (projection through
autograd, compositing through a hand-written backward).

How it stays fast on a 2-core CPU, where every pass over a big tensor costs memory
bandwidth (see benchmarks/render_speed.py for numbers):
- Gaussians that cannot reach the image are dropped with a cheap conservative bound
  before their covariances are formed.
- (tile, Gaussian) pairs come from each Gaussian's bounding box (as in gsplat), minus the
  tiles its alpha >= 1/255 ellipse misses (exact minimum of the quadratic form over the
  tile's pixel centres), so no pixel that gsplat would blend is lost. Pairs are generated
  in depth order and grouped by tile with one stable radix sort.
- Small tiles (8x8) and per-tile lists processed in depth-ordered segments: the
  exponent -sigma + log(opacity) for a whole segment is one matrix product of per-pair
  coefficients with a fixed per-pixel basis (tile-centred coordinates keep float32
  rounding at ~1e-6), and tiles whose pixels have all terminated (T <= 1e-4) drop out of
  later segments.
- Compositing uses a sliced scan for the transmittance; without autograd it runs in
  place in two reused buffers, with autograd a custom backward (gsplat's back-to-front
  recursion) replaces autograd through cumprod.

Results agree with gsplat to float32 rounding (~1e-6 relative); a pixel whose alpha
or transmittance sits within rounding of a threshold can differ (see
benchmarks/compare_renderers.py).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..se3 import quat_to_rotmat
from .base import ALPHA_MAX, ALPHA_MIN, EPS2D, FAR, NEAR, T_MIN, RasterOutput, Rasterizer

EXTEND_MAX = 3.33         # gsplat's cap on the opacity-aware extent (in sigmas)
LOG_ALPHA_MAX = math.log(ALPHA_MAX)
NEG_SIGMA_MIN = -30.0     # exp(-30) is far below 1/255 and still a normal float32
PAD_EXPONENT = -1.0e4     # exponent of padding entries: alpha 0 after the 1/255 cut


def _alpha_cut(dtype) -> float:
    """Largest value below 1/255 in dtype: F.threshold keeps x > cut, i.e. x >= 1/255."""
    a = torch.tensor(ALPHA_MIN, dtype=dtype)
    return torch.nextafter(a, torch.zeros((), dtype=dtype)).item()


def _project(means, quats, scales, opacities, viewmat, K, width: int, height: int):
    """EWA projection (gsplat's fully_fused_projection) of the Gaussians that can be visible.

    Returns (ids, proj): ids [M] indices of the candidates, proj dict of their means2d,
    conics (a, b, c of the inverse 2D covariance), depths, radii (int) and visibility.
    """
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_xp, lim_xn = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_yp, lim_yn = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    with torch.no_grad():
        # Conservative pre-cull: cov2d_xx <= |J row 0|^2 * max scale^2, with |x/z| bounded
        # by the clamp limits, so rx can only be smaller than this bound.
        mc = means.detach() @ R.detach().T + t.detach()
        z = mc[:, 2]
        ok = (z >= NEAR) & (z <= FAR) & (opacities.detach() >= ALPHA_MIN)
        zs = torch.where(ok, z, torch.ones_like(z))
        s2 = scales.detach().amax(-1) ** 2
        jx = (fx / zs) ** 2 * (1 + torch.maximum(lim_xp, lim_xn) ** 2)
        jy = (fy / zs) ** 2 * (1 + torch.maximum(lim_yp, lim_yn) ** 2)
        bx = EXTEND_MAX * torch.sqrt(jx * s2 + EPS2D) + 1
        by = EXTEND_MAX * torch.sqrt(jy * s2 + EPS2D) + 1
        u = fx * mc[:, 0] / zs + cx
        v = fy * mc[:, 1] / zs + cy
        ok &= (u + bx > 0) & (u - bx < width) & (v + by > 0) & (v - by < height)
        ids = torch.nonzero(ok).flatten()
    means, quats, scales, opacities = (x.index_select(0, ids) for x in (means, quats, scales, opacities))
    mc = means @ R.T + t
    n = means.shape[0]
    M = quat_to_rotmat(quats) * scales[:, None, :]
    # Camera-frame covariance is (R M)(R M)^T; R M for all Gaussians as one product.
    RM = (R @ M.permute(1, 0, 2).reshape(3, n * 3)).view(3, n, 3)
    x, y, z = mc.unbind(-1)
    rz = 1.0 / z
    tx = z * torch.minimum(torch.maximum(x * rz, -lim_xn), lim_xp)
    ty = z * torch.minimum(torch.maximum(y * rz, -lim_yn), lim_yp)
    # Rows of J R M (J is 2x3 with a zero), cheaper than batched 3x3 products.
    j0 = (fx * rz)[:, None] * RM[0] - (fx * tx * rz * rz)[:, None] * RM[2]
    j1 = (fy * rz)[:, None] * RM[1] - (fy * ty * rz * rz)[:, None] * RM[2]
    a = (j0 * j0).sum(-1) + EPS2D
    b = (j0 * j1).sum(-1)
    c = (j1 * j1).sum(-1) + EPS2D
    det = a * c - b * b
    ok_det = det > 0
    dets = torch.where(ok_det, det, torch.ones_like(det))
    conics = torch.stack([c / dets, -b / dets, a / dets], -1)
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], -1)
    with torch.no_grad():
        op = opacities.detach()
        ext = torch.sqrt(2.0 * torch.log((op / ALPHA_MIN).clamp(min=1.0))).clamp(max=EXTEND_MAX)
        rx = torch.ceil(ext * torch.sqrt(a.detach().clamp(min=0)))
        ry = torch.ceil(ext * torch.sqrt(c.detach().clamp(min=0)))
        mx, my = means2d[:, 0].detach(), means2d[:, 1].detach()
        vis = (ok_det & ~((rx <= 0) & (ry <= 0))
               & (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height))
        radii = torch.stack([rx, ry], -1).masked_fill(~vis[:, None], 0).to(torch.int32)
    return ids, {"means2d": means2d, "conics": conics, "depths": z, "radii": radii, "visible": vis}


def project_gaussians(means, quats, scales, opacities, viewmat, K, width: int, height: int):
    """EWA projection of all N Gaussians into one camera (culled rows have radii 0)."""
    ids, p = _project(means, quats, scales, opacities, viewmat, K, width, height)
    n = means.shape[0]
    out = {}
    for k, v in p.items():
        full = torch.zeros((n,) + v.shape[1:], dtype=v.dtype, device=v.device)
        out[k] = full.index_put((ids,), v)
    return out


def _min_sigma_over_rect(mx, my, ca, cb, cc, x_lo, x_hi, y_lo, y_hi):
    """Minimum of 0.5 a dx^2 + b dx dy + 0.5 c dy^2 over the rectangle of pixel centres.

    Zero if the centre is inside; otherwise the minimum lies on an edge, where the
    quadratic is one-dimensional and its minimiser is clamped to the edge.
    """
    def q(dx, dy):
        return 0.5 * ca * dx * dx + cb * dx * dy + 0.5 * cc * dy * dy

    dxl, dxh = x_lo - mx, x_hi - mx
    dyl, dyh = y_lo - my, y_hi - my
    best = None
    for dx in (dxl, dxh):
        dy = torch.minimum(torch.maximum(-cb * dx / cc, dyl), dyh)
        s = q(dx, dy)
        best = s if best is None else torch.minimum(best, s)
    for dy in (dyl, dyh):
        dx = torch.minimum(torch.maximum(-cb * dy / ca, dxl), dxh)
        best = torch.minimum(best, q(dx, dy))
    inside = (dxl <= 0) & (dxh >= 0) & (dyl <= 0) & (dyh >= 0)
    return torch.where(inside, torch.zeros_like(best), best)


def _stable_argsort_small(keys: torch.Tensor, bound: int) -> torch.Tensor:
    """Stable argsort of non-negative integer keys < bound (radix sort through numpy on
    the CPU, where torch's sort is several times slower)."""
    if keys.device.type != "cpu":
        return torch.argsort(keys, stable=True)
    dt = np.uint16 if bound <= 1 << 16 else np.int64
    return torch.from_numpy(np.argsort(keys.numpy().astype(dt), kind="stable"))


def _composite(e, T_buf, T_gate, dn, cut):
    """Front-to-back compositing of one segment for t tiles, in place.

    e [t, S, P]: exponents log(opacity) - sigma (overwritten with the effective alphas:
    0 where skipped or after a pixel's stop). T_buf [t, S, P] receives the transmittance
    after each Gaussian. T_gate [t, P] is the transmittance entering the segment (0 for
    pixels that already stopped, dn). Returns (alpha_eff, T_incl, T_seg, ends): T_seg the
    transmittance leaving the segment, ends the pixels that stop in it.
    """
    t_, S, _ = e.shape
    alpha = e.clamp_(NEG_SIGMA_MIN, LOG_ALPHA_MAX).exp_()
    F.threshold_(alpha, cut, 0.0)
    T_incl = torch.sub(1.0, alpha, out=T_buf)
    T_incl[:, 0].mul_(T_gate)
    for i in range(1, S):                    # a sliced scan beats cumprod on CPUs
        T_incl[:, i].mul_(T_incl[:, i - 1])
    last = T_incl[:, -1]
    ends = (last <= T_MIN) & ~dn
    if not bool(ends.any()):
        return alpha, T_incl, last.clone(), ends
    # Exclusive stop (gsplat): the Gaussian that takes T to <= T_MIN and all behind it
    # are dropped, T stays at its value before. Gather the affected tiles when few.
    q = torch.nonzero(ends.any(-1)).flatten()
    few = 4 * q.numel() < t_
    Tq = T_incl.index_select(0, q) if few else T_incl
    alive = Tq > T_MIN
    if few:
        alpha.index_copy_(0, q, alpha.index_select(0, q).mul_(alive))
    else:
        alpha.mul_(alive)
    n_alive = alive.sum(1, dtype=torch.int32)
    T_last = Tq.gather(1, (n_alive.long() - 1).clamp(min=0)[:, None]).squeeze(1)
    Tg = T_gate.index_select(0, q) if few else T_gate
    T_last = torch.where(n_alive == 0, Tg, T_last)
    T_seg = last.clone()
    if few:
        T_seg.index_copy_(0, q, T_last)
    else:
        T_seg = T_last
    return alpha, T_incl, T_seg, ends


def _weights(alpha, T_incl, T_gate, out=None):
    """Blending weights alpha_i * T_{i-1} (T_{-1} = T_gate)."""
    w = alpha.clone() if out is None else out
    w[:, 1:].mul_(T_incl[:, :-1])
    w[:, 0].mul_(T_gate)
    return w


class _BlendSegment(torch.autograd.Function):
    """One segment of t tiles: exponent coefficients [t*S, 6], features [t, S, Dt] and the
    entering transmittance [t, P] -> (blended features [t, P, Dt], leaving transmittance,
    stopping pixels). Hand-written backward (gsplat's back-to-front recursion, without
    divisions) instead of autograd through cumprod: several times faster and it keeps
    only alpha and T per (pixel, Gaussian)."""

    @staticmethod
    def forward(ctx, coef, fg, T_gate, Phi, dn, cut):
        t_, S, _ = fg.shape
        P = Phi.shape[1]
        e = (coef @ Phi).view(t_, S, P)
        alpha, T_incl, T_seg, ends = _composite(e, torch.empty_like(e), T_gate, dn, cut)
        contrib = torch.bmm(_weights(alpha, T_incl, T_gate).transpose(1, 2), fg)
        ctx.save_for_backward(alpha, T_incl, T_gate, fg, Phi)
        ctx.mark_non_differentiable(ends)
        return contrib, T_seg, ends

    @staticmethod
    def backward(ctx, g_contrib, g_T, _g_ends):
        alpha, T_incl, T_gate, fg, Phi = ctx.saved_tensors
        t_, S, P = alpha.shape
        g_fg = torch.bmm(_weights(alpha, T_incl, T_gate), g_contrib)   # [t, S, Dt]
        q = torch.bmm(fg, g_contrib.transpose(1, 2))                # [t, S, P]
        R = g_T.clone() if g_T is not None else torch.zeros_like(T_gate)
        g_alpha = q                                                  # overwritten in place
        for i in range(S - 1, -1, -1):
            d = q[:, i] - R
            R.addcmul_(alpha[:, i], d)
            torch.mul(T_incl[:, i - 1] if i else T_gate, d, out=g_alpha[:, i])
        # d alpha / d exponent = alpha, except where skipped (alpha 0) or clamped at 0.999.
        clamped = alpha >= ALPHA_MAX * (1 - 4 * torch.finfo(alpha.dtype).eps)
        g_e = g_alpha.mul_(alpha).masked_fill_(clamped, 0.0)
        g_coef = g_e.view(t_ * S, P) @ Phi.T
        return g_coef, g_fg, R, None, None, None


class TorchRasterizer(Rasterizer):
    """tile_size: tile side in pixels (8 suits CPUs; the image formation is independent of
    it). chunk_elems bounds the pixels x Gaussians evaluated at once (memory); segment is
    how many depth-ordered Gaussians per tile are blended before saturated tiles are
    dropped."""

    name = "torch"

    def __init__(self, tile_size: int = 8, chunk_elems: int = 1 << 20, segment: int = 32):
        self.tile = int(tile_size)
        self.chunk_elems = int(chunk_elems)
        self.segment = int(segment)

    def rasterize(self, means, quats, scales, opacities, features, viewmats, Ks, width: int,
                  height: int, backgrounds: Optional[torch.Tensor] = None) -> RasterOutput:
        outs = [self._one(means, quats, scales, opacities, features, viewmats[i], Ks[i], int(width),
                          int(height), None if backgrounds is None else backgrounds[i])
                for i in range(viewmats.shape[0])]
        return RasterOutput(*(torch.stack(x) for x in zip(*outs)))

    # ------------------------------------------------------------------------------
    def _pairs(self, proj, opacities, W, H):
        """Depth-ordered (tile, Gaussian) pairs grouped by tile: (pair_gauss, pair_tile)."""
        ts = self.tile
        tiles_x, tiles_y = math.ceil(W / ts), math.ceil(H / ts)
        dev = proj["depths"].device
        vis = torch.nonzero(proj["visible"]).flatten()
        if vis.numel() == 0:
            return None
        # Depth order first (ties by index, like gsplat's stable radix sort).
        order = torch.from_numpy(np.argsort(proj["depths"][vis].detach().cpu().numpy(), kind="stable")).to(dev)
        vis = vis.index_select(0, order)
        m2 = proj["means2d"].detach().index_select(0, vis)
        r = proj["radii"].index_select(0, vis).to(m2.dtype)
        con = proj["conics"].detach().index_select(0, vis)
        # Tile ranges as in gsplat's intersection kernel (floor / ceil of mean -+ radius).
        x0 = ((m2[:, 0] - r[:, 0]) / ts).floor().clamp(0, tiles_x)
        x1 = ((m2[:, 0] + r[:, 0]) / ts).ceil().clamp(0, tiles_x)
        y0 = ((m2[:, 1] - r[:, 1]) / ts).floor().clamp(0, tiles_y)
        y1 = ((m2[:, 1] + r[:, 1]) / ts).ceil().clamp(0, tiles_y)
        nx = x1 - x0
        cnt = (nx * (y1 - y0)).long()
        n_pairs = int(cnt.sum())
        if n_pairs == 0:
            return None
        pg = torch.repeat_interleave(torch.arange(vis.numel(), device=dev), cnt, output_size=n_pairs)
        # One gather for everything per pair (small integers are exact in float).
        thr = torch.log(opacities.detach().index_select(0, vis) / ALPHA_MIN) * (1 + 1e-4) + 1e-4
        start = (torch.cumsum(cnt, 0) - cnt).to(m2.dtype)
        fl = torch.stack([x0, y0, nx, start, m2[:, 0], m2[:, 1], con[:, 0], con[:, 1], con[:, 2], thr],
                         -1).index_select(0, pg)
        local = torch.arange(n_pairs, device=dev, dtype=m2.dtype) - fl[:, 3]
        row = torch.floor((local + 0.5) / fl[:, 2])
        px = fl[:, 0] + local - row * fl[:, 2]
        py = fl[:, 1] + row
        # Drop tiles whose pixel centres all lie outside the alpha >= 1/255 ellipse.
        x_lo = px * ts + 0.5
        y_lo = py * ts + 0.5
        smin = _min_sigma_over_rect(fl[:, 4], fl[:, 5], fl[:, 6], fl[:, 7], fl[:, 8],
                                    x_lo, x_lo + (ts - 1), y_lo, y_lo + (ts - 1))
        keep = torch.nonzero(smin <= fl[:, 9]).flatten()
        tile = (py * tiles_x + px).index_select(0, keep).long()
        perm = _stable_argsort_small(tile, tiles_x * tiles_y).to(dev)
        return vis.index_select(0, pg.index_select(0, keep.index_select(0, perm))), tile.index_select(0, perm)

    def _one(self, means, quats, scales, opacities, features, viewmat, K, W, H, bg):
        ts, P = self.tile, self.tile * self.tile
        dev, dt = means.device, means.dtype
        D = features.shape[-1]
        N = means.shape[0]
        tiles_x, tiles_y = math.ceil(W / ts), math.ceil(H / ts)
        n_tiles = tiles_x * tiles_y
        ids, proj = _project(means, quats, scales, opacities, viewmat, K, W, H)
        visible = torch.zeros(N, dtype=torch.bool, device=dev)
        visible[ids[proj["visible"]]] = True
        out_tiles = torch.zeros(n_tiles, P, D + 1, device=dev, dtype=dt)
        T_tiles = torch.ones(n_tiles, P, device=dev, dtype=dt)
        grad = torch.is_grad_enabled() and any(
            t.requires_grad for t in (means, quats, scales, opacities, features, viewmat, K))

        pairs = self._pairs(proj, opacities[ids], W, H) if ids.numel() else None
        # Pairs can all fall away at the alpha-ellipse test (faint, tiny Gaussians between
        # pixel centres): then nothing is drawn, as with no Gaussians at all.
        if pairs is not None and pairs[1].numel():
            # Everything the blend needs per Gaussian, in one tensor (one gather per pair).
            gauss = torch.cat([proj["means2d"], proj["conics"], torch.log(opacities[ids])[:, None],
                               features[ids], proj["depths"][:, None]], -1)
            acc, T_busy, busy = self._blend(*pairs, gauss, n_tiles, W, H, grad)
            if grad:
                out_tiles = out_tiles.index_copy(0, busy, acc)
                T_tiles = T_tiles.index_copy(0, busy, T_busy)
            else:
                out_tiles[busy] = acc
                T_tiles[busy] = T_busy

        if bg is not None:
            bgf = torch.cat([bg.to(dt), torch.zeros(1, device=dev, dtype=dt)])
            out_tiles = out_tiles + T_tiles[..., None] * bgf
        img = (out_tiles.reshape(tiles_y, tiles_x, ts, ts, D + 1).permute(0, 2, 1, 3, 4)
               .reshape(tiles_y * ts, tiles_x * ts, D + 1)[:H, :W])
        T_img = (T_tiles.reshape(tiles_y, tiles_x, ts, ts).permute(0, 2, 1, 3)
                 .reshape(tiles_y * ts, tiles_x * ts)[:H, :W])
        return img[..., :D], img[..., D], 1.0 - T_img, visible

    def _blend(self, pair_gauss, pair_tile, gauss, n_tiles, W, H, grad):
        """Front-to-back blending of every busy tile's depth-ordered list, in segments.

        gauss rows: mx, my, conic a, b, c, log opacity, features..., depth. Pairs are laid
        out segment-major: segment k holds S rows for each tile whose list is longer than
        k*S (tiles sorted by list length, so those come first), padded with rows whose
        alpha is 0. A segment is then one contiguous block: one matrix product gives the
        exponent of every (pixel, Gaussian) in it, and no per-segment gathers are needed
        unless saturated tiles have to be skipped.
        """
        ts, P = self.tile, self.tile * self.tile
        dt, dev = gauss.dtype, gauss.device
        Dt = gauss.shape[-1] - 6
        tiles_x = math.ceil(W / ts)
        per_tile = torch.bincount(pair_tile, minlength=n_tiles)
        busy = torch.nonzero(per_tile).flatten()
        cnt = per_tile[busy]
        srt = torch.argsort(cnt, descending=True, stable=True)
        busy, cnt = busy[srt], cnt[srt]
        nb = busy.numel()
        # Short lists (sparse maps) get shorter segments: less padding and fewer scan steps.
        S = min(self.segment, 1 << max(0, int(cnt[0]) - 1).bit_length())
        # Segment-major row of every pair.
        inv = torch.empty(n_tiles, dtype=torch.long, device=dev)
        inv[busy] = torch.arange(nb, device=dev)
        tile_start = torch.cumsum(per_tile, 0) - per_tile
        j = inv.index_select(0, pair_tile)
        rank = torch.arange(pair_gauss.numel(), device=dev) - tile_start.index_select(0, pair_tile)
        seg = torch.div(rank, S, rounding_mode="floor")
        n_seg = int((cnt[0] + S - 1) // S)
        n_active = (cnt[None, :] > torch.arange(n_seg, device=dev)[:, None] * S).sum(1)
        seg_off = S * (torch.cumsum(n_active, 0) - n_active)
        row = seg_off.index_select(0, seg) + j * S + (rank - seg * S)
        rows = int(S * n_active.sum())
        n_active, seg_off = n_active.tolist(), seg_off.tolist()

        tcx = ((busy % tiles_x) * ts).to(dt) + 0.5 * ts
        tcy = ((busy // tiles_x) * ts).to(dt) + 0.5 * ts
        # Per-pair coefficients of -sigma + log(opacity) in tile-centred pixel coordinates.
        gp = gauss.index_select(0, pair_gauss)
        ca, cb, cc = gp[:, 2], gp[:, 3], gp[:, 4]
        dx = gp[:, 0] - tcx.index_select(0, j)
        dy = gp[:, 1] - tcy.index_select(0, j)
        const = gp[:, 5] - (0.5 * ca * dx * dx + cb * dx * dy + 0.5 * cc * dy * dy)
        coef = torch.stack([-0.5 * ca, -cb, -0.5 * cc, ca * dx + cb * dy, cb * dx + cc * dy, const], -1)
        pad_row = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, PAD_EXPONENT], device=dev, dtype=dt)
        if grad:
            coef_rows = pad_row.expand(rows, 6).index_copy(0, row, coef)
            feat_rows = torch.zeros(rows, Dt, device=dev, dtype=dt).index_copy(0, row, gp[:, 6:])
        else:
            coef_rows = pad_row.repeat(rows, 1).index_copy_(0, row, coef)
            feat_rows = torch.zeros(rows, Dt, device=dev, dtype=dt).index_copy_(0, row, gp[:, 6:])
        del gp, ca, cb, cc, dx, dy, const, coef

        # Tile-centred pixel basis [6, P]: lx^2, lx ly, ly^2, lx, ly, 1.
        lv = torch.arange(ts, device=dev, dtype=dt) + 0.5 - 0.5 * ts
        ly, lx = torch.meshgrid(lv, lv, indexing="ij")
        lx, ly = lx.flatten(), ly.flatten()
        Phi = torch.stack([lx * lx, lx * ly, ly * ly, lx, ly, torch.ones_like(lx)])
        # Pixels outside the image count as terminated so border tiles can drop out too.
        done = (tcx[:, None] + lx[None] > W) | (tcy[:, None] + ly[None] > H)
        tile_done = torch.zeros(nb, dtype=torch.bool, device=dev)
        T = torch.ones(nb, P, device=dev, dtype=dt)
        acc = torch.zeros(nb, P, Dt, device=dev, dtype=dt)
        cut = _alpha_cut(dt)
        per_chunk = max(1, self.chunk_elems // (S * P))
        acc_parts, acc_idx = [], []
        if not grad:
            buf = torch.empty(per_chunk * S * P, device=dev, dtype=dt)
            buf2 = torch.empty_like(buf)
        for k in range(n_seg):
            na, r0 = n_active[k], seg_off[k]
            cblk = coef_rows[r0:r0 + na * S].view(na, S, 6)
            fblk = feat_rows[r0:r0 + na * S].view(na, S, Dt)
            sel = None
            if bool(tile_done[:na].any()):
                sel = torch.nonzero(~tile_done[:na]).flatten()
                cblk, fblk = cblk.index_select(0, sel), fblk.index_select(0, sel)
            n_live = cblk.shape[0]
            for c0 in range(0, n_live, per_chunk):
                c1 = min(n_live, c0 + per_chunk)
                tj = slice(c0, c1) if sel is None else sel[c0:c1]
                if grad and sel is None:
                    tj = torch.arange(c0, c1, device=dev)
                t_ = c1 - c0
                coef_c, fg = cblk[c0:c1].reshape(t_ * S, 6), fblk[c0:c1]
                Tp, dn = T[tj], done[tj].clone()   # clone: done is updated in place below
                T_gate = torch.where(dn, torch.zeros_like(Tp), Tp)   # finished pixels take nothing
                if grad:
                    contrib, T_seg, ends = _BlendSegment.apply(coef_c, fg, T_gate, Phi, dn, cut)
                else:
                    n_el = t_ * S * P
                    e = torch.mm(coef_c, Phi, out=buf[:n_el].view(t_ * S, P)).view(t_, S, P)
                    alpha, T_incl, T_seg, ends = _composite(e, buf2[:n_el].view(t_, S, P), T_gate, dn, cut)
                    w = _weights(alpha, T_incl, T_gate, out=alpha)   # in place
                    contrib = torch.bmm(w.transpose(1, 2), fg)
                T_new = torch.where(dn, Tp, T_seg)
                if bool(ends.any()):
                    dn = dn | ends
                    done[tj] = dn
                    tile_done[tj] = dn.all(-1)
                if grad:  # out of place, so autograd does not copy whole buffers per step
                    T = T.index_copy(0, tj, T_new)
                    acc_parts.append(contrib)
                    acc_idx.append(tj)
                else:
                    T[tj] = T_new
                    acc[tj] += contrib                                 # [t, P, Dt]
        if grad and acc_parts:
            acc = acc.index_add(0, torch.cat(acc_idx), torch.cat(acc_parts))
        return acc, T, busy
