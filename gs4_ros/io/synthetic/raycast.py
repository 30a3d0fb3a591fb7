"""Exact ray casting of a primitive scene in torch (CPU or CUDA), no per-pixel loops.

A view is cast in two passes. Pass 1 (visibility) projects every primitive's bounding
box to a screen rectangle and tests the primitive densely over the 8x8 pixel tiles that
rectangle touches; the nearest hit per pixel is found with one scatter-min over keys that
pack the depth (to 10 micrometres) with the primitive id. Pass 2 takes the winner and its
depth per pixel and works out the hit point, normal and surface coordinates.

Rays are parameterised by camera depth: a camera-frame direction ((u-cx)/fx, (v-cy)/fy, 1)
hits at t = z, so t is the depth image directly.
"""
from __future__ import annotations

from typing import Dict

import torch

from .scene import BOX, CYLINDER, ELLIPSOID

INF = float("inf")
_KEY_SHIFT = 16  # low bits of a key hold the primitive id
_KEY_MISS = torch.iinfo(torch.int64).max
_T_QUANT = 1e5  # depth quantum of the visibility keys: 10 micrometres
# Box corners are ordered x-major (see Scene.corners); the 12 edges join corners one bit apart.
_EDGES = torch.tensor([(i, i | b) for b in (1, 2, 4) for i in range(8) if not i & b])


# Ray-primitive tests take origin, direction and half extents in the primitive's frame
# as separate components, so [n, 1] parameters broadcast against [n, k] rays without
# materialising [..., 3] tensors. They return the entry distance, or inf for a miss.

def hit_box(ox, oy, oz, dx, dy, dz, hx, hy, hz, eps=1e-4):
    """Slab test against a box of half extents (hx, hy, hz)."""
    tn = tf = None
    for o, d, h in ((ox, dx, hx), (oy, dy, hy), (oz, dz, hz)):
        inv = 1.0 / d
        sh = torch.copysign(h.expand_as(d), d)
        a = (-sh - o) * inv
        b = (sh - o) * inv
        tn = a if tn is None else torch.maximum(tn, a)
        tf = b if tf is None else torch.minimum(tf, b)
    return torch.where((tn <= tf) & (tn > eps), tn, torch.full_like(tn, INF))


def hit_cylinder(ox, oy, oz, dx, dy, dz, r, _, hz, eps=1e-4):
    """Side and cap test against a z-axis cylinder of radius r and half height hz."""
    a = dx * dx + dy * dy
    b = ox * dx + oy * dy
    c = ox * ox + oy * oy - r * r
    disc = b * b - a * c
    ts = (-b - disc.clamp(min=0).sqrt()) / a.clamp(min=1e-12)
    side = (disc >= 0) & ((oz + ts * dz).abs() <= hz) & (ts > eps)
    t = torch.where(side, ts, torch.full_like(ts, INF))
    zc = torch.where(oz >= 0, hz, -hz)
    tc = (zc - oz) / dz
    xc, yc = ox + tc * dx, oy + tc * dy
    cap = (oz.abs() > hz) & (tc > eps) & (xc * xc + yc * yc <= r * r)
    return torch.where(cap & (tc < t), tc, t)


def hit_ellipsoid(ox, oy, oz, dx, dy, dz, hx, hy, hz, eps=1e-4):
    """Quadratic test against an ellipsoid with semi-axes (hx, hy, hz)."""
    ox, oy, oz = ox / hx, oy / hy, oz / hz
    dx, dy, dz = dx / hx, dy / hy, dz / hz
    a = dx * dx + dy * dy + dz * dz
    b = ox * dx + oy * dy + oz * dz
    c = ox * ox + oy * oy + oz * oz - 1.0
    disc = b * b - a * c
    t = (-b - disc.clamp(min=0).sqrt()) / a
    return torch.where((disc >= 0) & (t > eps), t, torch.full_like(t, INF))


_HIT = {BOX: hit_box, CYLINDER: hit_cylinder, ELLIPSOID: hit_ellipsoid}


def cast_rays(st: Dict, origins: torch.Tensor, dirs: torch.Tensor, chunk: int = 1024,
              max_t: float = INF) -> torch.Tensor:
    """Nearest hit parameter of arbitrary rays [R, 3] against every primitive (brute force).

    For few rays (path checks); views go through `cast_view`. With a finite max_t only
    primitives within reach of a chunk's origins are tested and farther hits may read inf.
    """
    out = []
    radius = st["half"].norm(dim=-1)
    for s0 in range(0, origins.shape[0], chunk):
        o, d = origins[s0:s0 + chunk], dirs[s0:s0 + chunk]
        best = torch.full((o.shape[0],), INF, device=o.device)
        if max_t < INF:
            lo, hi = o.amin(0), o.amax(0)
            gap = (st["centre"] - st["centre"].clamp(lo, hi)).norm(dim=-1) - radius
            near = gap < max_t * float(d.norm(dim=-1).max())
        for kind, a, b in st["kind_ranges"]:
            if b <= a:
                continue
            idx = torch.arange(a, b, device=o.device)
            if max_t < INF:
                idx = idx[near[a:b]]
                if idx.numel() == 0:
                    continue
            rot, c, h = st["rot"][idx], st["centre"][idx], st["half"][idx]
            rel = o[:, None, :] - c[None]  # [r, p, 3]
            o_l = [(rel * rot[None, :, :, i]).sum(-1) for i in range(3)]  # rot^T (o - c)
            d_l = [d @ rot[:, :, i].T for i in range(3)]
            hh = [h[None, :, i] for i in range(3)]
            t = _HIT[kind](*o_l, *d_l, *hh)
            best = torch.minimum(best, t.amin(1))
        out.append(best)
    return torch.cat(out)


def _screen_rects(st, R, tc, fx, fy, cx, cy, W, H, near=0.02):
    """Pixel rectangle [u0, u1] x [v0, v1] that each primitive can cover; empty when culled."""
    cam = (st["corners"] - tc) @ R  # [P, 8, 3]
    z = cam[..., 2]
    front = z > near
    e0, e1 = _EDGES[:, 0].to(cam.device), _EDGES[:, 1].to(cam.device)
    za, zb = z[:, e0], z[:, e1]
    cross = (za > near) != (zb > near)
    s = ((near - za) / torch.where(cross, zb - za, torch.ones_like(za))).unsqueeze(-1)
    xpt = cam[:, e0] + s * (cam[:, e1] - cam[:, e0])
    pts = torch.cat([cam, xpt], 1)
    ok = torch.cat([front, cross], 1)
    zz = pts[..., 2].clamp(min=near)
    u = fx * pts[..., 0] / zz + cx
    v = fy * pts[..., 1] / zz + cy
    big = 1e9
    u = u.clamp(-big, big)
    v = v.clamp(-big, big)
    umin = torch.where(ok, u, torch.full_like(u, big)).amin(1)
    umax = torch.where(ok, u, torch.full_like(u, -big)).amax(1)
    vmin = torch.where(ok, v, torch.full_like(v, big)).amin(1)
    vmax = torch.where(ok, v, torch.full_like(v, -big)).amax(1)
    u0 = torch.ceil(umin - 1).clamp(0, W - 1).long()
    u1 = torch.floor(umax + 1).clamp(-1, W - 1).long()
    v0 = torch.ceil(vmin - 1).clamp(0, H - 1).long()
    v1 = torch.floor(vmax + 1).clamp(-1, H - 1).long()
    valid = ok.any(1) & (umax >= -1) & (umin <= W) & (vmax >= -1) & (vmin <= H) & (u1 >= u0) & (v1 >= v0)
    return u0, u1, v0, v1, valid


def cast_view(st: Dict, pose: torch.Tensor, fx: float, fy: float, cx: float, cy: float,
              W: int, H: int, tile: int = 8) -> Dict[str, torch.Tensor]:
    """Cast one pinhole view (pose: 4x4 camera-to-world, OpenCV axes) against the scene.

    Visibility is binned in tiles of tile x tile pixels: every (primitive, tile) pair whose
    screen rectangles overlap is tested densely over the tile, so per-pair parameters are
    gathered once per tile rather than once per pixel.

    Returns flat per-pixel results for the pixels that hit something: `pix` (linear pixel
    index), `prim`, `depth`, `normal` (world, unit), `point` (world), `uv` (surface
    coordinates in metres), `fsize` (size of the hit face in metres), `ray`.
    """
    dev = st["centre"].device
    R, tc = pose[:3, :3], pose[:3, 3]
    # Local-frame origin and direction map of every primitive: d_l = M @ (xn, yn, 1).
    M = st["rot"].transpose(1, 2) @ R  # [P, 3, 3]
    o_loc = torch.einsum("pji,pj->pi", st["rot"], tc[None] - st["centre"])  # [P, 3]

    TW, TH = -(-W // tile), -(-H // tile)
    Wp = TW * tile
    u0, u1, v0, v1, valid = _screen_rects(st, R, tc, fx, fy, cx, cy, W, H)
    tu0, tu1 = torch.div(u0, tile, rounding_mode="floor"), torch.div(u1, tile, rounding_mode="floor")
    tv0, tv1 = torch.div(v0, tile, rounding_mode="floor"), torch.div(v1, tile, rounding_mode="floor")
    tw = (tu1 - tu0 + 1).clamp(min=0)
    cnt = torch.where(valid, tw * (tv1 - tv0 + 1).clamp(min=0), torch.zeros_like(tw))
    ends = torch.cumsum(cnt, 0)
    keys = torch.full((TH * tile * Wp,), _KEY_MISS, dtype=torch.int64, device=dev)
    lv, lu = torch.meshgrid(torch.arange(tile, device=dev), torch.arange(tile, device=dev), indexing="ij")
    lu, lv = lu.reshape(1, -1), lv.reshape(1, -1)
    lxn, lyn = lu.float() / fx, lv.float() / fy
    loff = lv * Wp + lu
    starts = ends - cnt
    params = torch.cat([M.reshape(-1, 9), o_loc, st["half"]], 1)  # [P, 15]
    for kind, a, b in st["kind_ranges"]:
        if b <= a:
            continue
        pa, pb = int(starts[a]), int(ends[b - 1])
        if pb <= pa:
            continue
        prim = torch.repeat_interleave(torch.arange(a, b, device=dev), cnt[a:b])
        local = torch.arange(pa, pb, device=dev) - torch.index_select(starts, 0, prim)
        twp = torch.index_select(tw, 0, prim)
        tu = torch.index_select(tu0, 0, prim) + local % twp
        tv = torch.index_select(tv0, 0, prim) + torch.div(local, twp, rounding_mode="floor")
        pp = torch.index_select(params, 0, prim)
        xn = ((tu * tile).float() - cx) / fx
        yn = ((tv * tile).float() - cy) / fy
        xn = xn[:, None] + lxn
        yn = yn[:, None] + lyn
        c = [pp[:, i:i + 1] for i in range(15)]
        dx = c[0] * xn + c[1] * yn + c[2]
        dy = c[3] * xn + c[4] * yn + c[5]
        dz = c[6] * xn + c[7] * yn + c[8]
        t = _HIT[kind](c[9], c[10], c[11], dx, dy, dz, c[12], c[13], c[14])
        key = torch.where(t < INF, (t * _T_QUANT).long() * (1 << _KEY_SHIFT) + prim[:, None],
                          torch.full(t.shape, _KEY_MISS, dtype=torch.int64, device=dev))
        pix = (tv * (tile * Wp) + tu * tile)[:, None] + loff
        keys.scatter_reduce_(0, pix.reshape(-1), key.reshape(-1), reduce="amin")

    keys = keys.view(TH * tile, Wp)[:H, :W].reshape(-1)
    pix = torch.nonzero(keys != _KEY_MISS).squeeze(1)
    k = torch.index_select(keys, 0, pix)
    prim = k & ((1 << _KEY_SHIFT) - 1)
    # The key holds the depth to 10 micrometres: no need to intersect the winner again.
    t = ((k >> _KEY_SHIFT).float() + 0.5) * (1.0 / _T_QUANT)
    return _surface(st, M, o_loc, prim, pix, t, fx, fy, cx, cy, W, H, R, tc)


_GRIDS: Dict = {}


def _pixel_rays(pix, W, H, fx, fy, cx, cy):
    """Normalised image coordinates (xn, yn) of the given pixels; cached for full images."""
    if pix.numel() == W * H:
        key = (W, H, fx, fy, cx, cy, str(pix.device))
        if key not in _GRIDS:
            if len(_GRIDS) > 8:
                _GRIDS.clear()
            v, u = torch.meshgrid(torch.arange(H, device=pix.device, dtype=torch.float32),
                                  torch.arange(W, device=pix.device, dtype=torch.float32), indexing="ij")
            _GRIDS[key] = (((u - cx) / fx).reshape(-1), ((v - cy) / fy).reshape(-1))
        return _GRIDS[key]
    return ((pix % W).float() - cx) / fx, (torch.div(pix, W, rounding_mode="floor").float() - cy) / fy


def _surface(st, M, o_loc, prim, pix, t, fx, fy, cx, cy, W, H, R, tc):
    """Hit point, normal and surface coordinates of the winning primitive at each pixel
    (t: its depth from the visibility pass).

    Everything is computed for all pixels as if they hit boxes (the large majority, no
    gathers needed), then cylinder and ellipsoid pixels are overwritten.
    """
    xn, yn = _pixel_rays(pix, W, H, fx, fy, cx, cy)
    table = torch.cat([M.reshape(-1, 9), o_loc, st["half"]], 1)  # [P, 15]
    cols = torch.index_select(table, 0, prim).T.contiguous()
    m_ = cols[:9]
    dx = m_[0] * xn + m_[1] * yn + m_[2]
    dy = m_[3] * xn + m_[4] * yn + m_[5]
    dz = m_[6] * xn + m_[7] * yn + m_[8]
    ox, oy, oz, hx, hy, hz = cols[9:15]
    kind = torch.index_select(st["kind"], 0, prim)

    px, py, pz = ox + t * dx, oy + t * dy, oz + t * dz
    rx, ry, rz = px.abs() / hx, py.abs() / hy, pz.abs() / hz
    on_x = (rx >= ry) & (rx >= rz)
    on_z = ~on_x & (rz > ry)
    on_y = ~(on_x | on_z)
    nx = torch.where(on_x, torch.sign(px), 0.0)
    ny = torch.where(on_y, torch.sign(py), 0.0)
    nz = torch.where(on_z, torch.sign(pz), 0.0)
    # In-face coordinates: x-face -> (y, z), y-face -> (x, z), z-face -> (x, y).
    u = torch.where(on_x, py + hy, px + hx)
    v = torch.where(on_z, py + hy, pz + hz)
    fw = torch.where(on_x, hy, hx) * 2
    fh = torch.where(on_z, hy, hz) * 2

    for k in (CYLINDER, ELLIPSOID):
        m = torch.nonzero(kind == k).squeeze(1)
        if m.numel() == 0:
            continue
        g = lambda a: torch.index_select(a, 0, m)
        o = torch.stack([g(ox), g(oy), g(oz)], -1)
        d = torch.stack([g(dx), g(dy), g(dz)], -1)
        hh = torch.stack([g(hx), g(hy), g(hz)], -1)
        p = o + g(t)[:, None] * d
        if k == CYLINDER:
            r, hzz = hh[:, 0], hh[:, 2]
            rad = torch.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2)
            cap = (hzz - p[:, 2].abs()) < (r - rad).abs()
            rs = rad.clamp(min=1e-9)
            nl = torch.where(cap[:, None], torch.stack([torch.zeros_like(r), torch.zeros_like(r), torch.sign(p[:, 2])], -1),
                             torch.stack([p[:, 0] / rs, p[:, 1] / rs, torch.zeros_like(r)], -1))
            ang = torch.atan2(p[:, 1], p[:, 0])
            uk = torch.where(cap, p[:, 0] + r, (ang + torch.pi) * r)
            vk = torch.where(cap, p[:, 1] + r, p[:, 2] + hzz)
            fwk = torch.where(cap, 2 * r, 2 * torch.pi * r)
            fhk = torch.where(cap, 2 * r, 2 * hzz)
        else:
            gr = p / (hh * hh)
            nl = gr / gr.norm(dim=-1, keepdim=True).clamp(min=1e-12)
            q = p / hh
            rr = hh.mean(-1)
            uk = (torch.atan2(q[:, 1], q[:, 0]) + torch.pi) * rr
            vk = (torch.asin(q[:, 2].clamp(-1, 1)) + torch.pi / 2) * rr
            fwk, fhk = 2 * torch.pi * rr, torch.pi * rr
        for dst, src in ((nx, nl[:, 0]), (ny, nl[:, 1]), (nz, nl[:, 2]), (u, uk), (v, vk),
                         (fw, fwk), (fh, fhk)):
            dst.index_copy_(0, m, src)

    # Camera-frame normal: rot_p = R M_p^T, so R^T rot_p n_l = M_p^T n_l.
    n_cam = torch.stack([m_[0] * nx + m_[3] * ny + m_[6] * nz,
                         m_[1] * nx + m_[4] * ny + m_[7] * nz,
                         m_[2] * nx + m_[5] * ny + m_[8] * nz], -1)
    d_cam = torch.stack([xn, yn, torch.ones_like(xn)], -1)
    point = torch.addmm(tc[None], d_cam * t[:, None], R.T)
    return {"pix": pix, "prim": prim, "depth": t, "normal_cam": n_cam, "normal": n_cam @ R.T,
            "ray": d_cam, "point": point, "uv": torch.stack([u, v], -1), "fsize": torch.stack([fw, fh], -1)}
