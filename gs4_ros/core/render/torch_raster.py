"""Pure-PyTorch tile rasteriser: the CPU backend and the reference for gsplat.

Written by hand because no maintained CPU Gaussian rasteriser exists for torch; it
follows gsplat's image formation exactly (see the package docstring) and stays
differentiable through autograd. Work is organised as (tile, Gaussian) pairs sorted by
depth inside each tile and padded to the tile's count, processed in chunks of tiles so
peak memory stays bounded on small machines.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from ..se3 import quat_to_rotmat
from .base import ALPHA_MAX, ALPHA_MIN, EPS2D, FAR, NEAR, T_MIN, RasterOutput, Rasterizer


def project_gaussians(means, quats, scales, opacities, viewmat, K, width: int, height: int):
    """EWA projection of Gaussians into one camera.

    Returns dict with means2d [N,2], conics [N,3] (a, b, c of the inverse covariance),
    depths [N], radii [N,2] (int, 0 = culled) and the visibility mask.
    """
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    mc = means @ R.T + t
    Rg = quat_to_rotmat(quats)
    M = Rg * scales[:, None, :]
    cov_w = M @ M.transpose(1, 2)
    cov_c = R @ cov_w @ R.T
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    x, y, z = mc.unbind(-1)
    in_depth = (z > NEAR) & (z < FAR)
    zs = torch.where(in_depth, z, torch.ones_like(z))
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_xp, lim_xn = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_yp, lim_yn = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    tx = zs * torch.minimum(torch.maximum(x / zs, -lim_xn), lim_xp)
    ty = zs * torch.minimum(torch.maximum(y / zs, -lim_yn), lim_yp)
    rz = 1.0 / zs
    o = torch.zeros_like(zs)
    J = torch.stack([fx * rz, o, -fx * tx * rz * rz, o, fy * rz, -fy * ty * rz * rz], -1).reshape(-1, 2, 3)
    cov2 = J @ cov_c @ J.transpose(1, 2)
    a = cov2[:, 0, 0] + EPS2D
    b = 0.5 * (cov2[:, 0, 1] + cov2[:, 1, 0])
    c = cov2[:, 1, 1] + EPS2D
    det = a * c - b * b
    ok_det = det > 0
    dets = torch.where(ok_det, det, torch.ones_like(det))
    conics = torch.stack([c / dets, -b / dets, a / dets], -1)
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], -1)
    with torch.no_grad():
        op = opacities.clamp(min=1e-12)
        ext = torch.sqrt(2.0 * torch.log((op / ALPHA_MIN).clamp(min=1.0))).clamp(max=3.33)
        rx = torch.ceil(ext * torch.sqrt(a.clamp(min=0)))
        ry = torch.ceil(ext * torch.sqrt(c.clamp(min=0)))
        mx, my = means2d[:, 0], means2d[:, 1]
        vis = (in_depth & ok_det & (opacities >= ALPHA_MIN) & (rx > 0) & (ry > 0)
               & (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height))
        radii = torch.stack([rx, ry], -1).masked_fill(~vis[:, None], 0).to(torch.int32)
    return {"means2d": means2d, "conics": conics, "depths": z, "radii": radii, "visible": vis}


class TorchRasterizer(Rasterizer):
    name = "torch"

    def __init__(self, tile_size: int = 16, chunk_elems: int = 1 << 23):
        self.tile = tile_size
        self.chunk_elems = chunk_elems

    def rasterize(self, means, quats, scales, opacities, features, viewmats, Ks, width: int,
                  height: int, backgrounds: Optional[torch.Tensor] = None) -> RasterOutput:
        outs = [self._one(means, quats, scales, opacities, features, viewmats[i], Ks[i], width,
                          height, None if backgrounds is None else backgrounds[i])
                for i in range(viewmats.shape[0])]
        return RasterOutput(*(torch.stack(x) for x in zip(*outs)))

    def _one(self, means, quats, scales, opacities, features, viewmat, K, W, H, bg):
        ts = self.tile
        dev, dt = means.device, means.dtype
        D = features.shape[-1]
        proj = project_gaussians(means, quats, scales, opacities, viewmat, K, W, H)
        vis = proj["visible"]
        tiles_x, tiles_y = math.ceil(W / ts), math.ceil(H / ts)
        n_tiles = tiles_x * tiles_y
        feat_all = torch.cat([features, proj["depths"][:, None]], -1)  # depth as last channel
        out = torch.zeros(n_tiles, ts * ts, D + 1, device=dev, dtype=dt)
        trans = torch.ones(n_tiles, ts * ts, device=dev, dtype=dt)

        gid = torch.nonzero(vis).flatten()
        if gid.numel():
            with torch.no_grad():
                m2 = proj["means2d"][gid].detach()
                r = proj["radii"][gid].to(dt)
                x0 = ((m2[:, 0] - r[:, 0]) / ts).floor().clamp(0, tiles_x).long()
                x1 = ((m2[:, 0] + r[:, 0]) / ts).ceil().clamp(0, tiles_x).long()
                y0 = ((m2[:, 1] - r[:, 1]) / ts).floor().clamp(0, tiles_y).long()
                y1 = ((m2[:, 1] + r[:, 1]) / ts).ceil().clamp(0, tiles_y).long()
                nx, ny = x1 - x0, y1 - y0
                cnt = nx * ny
                keep = cnt > 0
                gid, x0, y0, nx, cnt = gid[keep], x0[keep], y0[keep], nx[keep], cnt[keep]
                # Expand to (tile, gaussian) pairs.
                pair_g = torch.repeat_interleave(torch.arange(gid.numel(), device=dev), cnt)
                start = torch.cumsum(cnt, 0) - cnt
                local = torch.arange(pair_g.numel(), device=dev) - start[pair_g]
                px = x0[pair_g] + local % nx[pair_g]
                py = y0[pair_g] + local // nx[pair_g]
                tile_id = py * tiles_x + px
                # Sort by (tile, depth): depth rank first, then a stable sort by tile.
                depth_rank = torch.empty_like(gid)
                depth_rank[torch.argsort(proj["depths"][gid].detach(), stable=True)] = torch.arange(gid.numel(), device=dev)
                order = torch.argsort(depth_rank[pair_g], stable=True)
                order = order[torch.argsort(tile_id[order], stable=True)]
                pair_gauss = gid[pair_g[order]]
                pair_tile = tile_id[order]
                per_tile = torch.bincount(pair_tile, minlength=n_tiles)
                tile_start = torch.cumsum(per_tile, 0) - per_tile
                # Pixel centres of each tile, [n_tiles, ts*ts, 2].
                iy, ix = torch.meshgrid(torch.arange(ts, device=dev), torch.arange(ts, device=dev), indexing="ij")
                ty_ = torch.arange(n_tiles, device=dev) // tiles_x
                tx_ = torch.arange(n_tiles, device=dev) % tiles_x
                pix = torch.stack([(tx_[:, None] * ts + ix.flatten()[None]).to(dt) + 0.5,
                                   (ty_[:, None] * ts + iy.flatten()[None]).to(dt) + 0.5], -1)
                busy = torch.nonzero(per_tile > 0).flatten()
                busy = busy[torch.argsort(per_tile[busy])]

            m2d, con, op = proj["means2d"], proj["conics"], opacities
            i = 0
            res_tiles, res_out, res_T = [], [], []
            while i < busy.numel():
                # Group tiles of similar size so padding stays small and memory bounded.
                mmax = int(per_tile[busy[min(busy.numel() - 1, i)]])
                step = max(1, self.chunk_elems // (ts * ts * max(mmax, 1)))
                j = min(busy.numel(), i + step)
                mmax = int(per_tile[busy[j - 1]])
                tiles = busy[i:j]
                ar = torch.arange(mmax, device=dev)
                idx = tile_start[tiles][:, None] + ar[None]
                valid = ar[None] < per_tile[tiles][:, None]
                g = pair_gauss[idx.clamp(max=pair_gauss.numel() - 1)]
                d = pix[tiles][:, :, None, :] - m2d[g][:, None, :, :]  # [t, P, m, 2]
                cg = con[g][:, None]
                sigma = (0.5 * (cg[..., 0] * d[..., 0] ** 2 + cg[..., 2] * d[..., 1] ** 2)
                         + cg[..., 1] * d[..., 0] * d[..., 1])
                alpha = (op[g][:, None] * torch.exp(-sigma)).clamp(max=ALPHA_MAX)
                use = valid[:, None] & (sigma >= 0) & (alpha >= ALPHA_MIN)
                alpha = torch.where(use, alpha, torch.zeros_like(alpha))
                one_m = 1.0 - alpha
                T_incl = torch.cumprod(one_m, -1)
                T_excl = torch.cat([torch.ones_like(T_incl[..., :1]), T_incl[..., :-1]], -1)
                # A pixel stops at the first Gaussian that would take T to <= T_MIN; it and
                # everything behind are excluded (T only falls, so a mask suffices).
                alive = T_incl > T_MIN
                w = torch.where(alive, alpha * T_excl, torch.zeros_like(alpha))
                T_fin = torch.where(alive, one_m, torch.ones_like(one_m)).prod(-1)
                res_out.append(torch.einsum("tpm,tmd->tpd", w, feat_all[g]))
                res_T.append(T_fin)
                res_tiles.append(tiles)
                i = j
            tiles_cat = torch.cat(res_tiles)
            out = out.index_put((tiles_cat,), torch.cat(res_out))
            trans = trans.index_put((tiles_cat,), torch.cat(res_T))

        if bg is not None:
            out = out + torch.cat([trans[..., None] * bg[None, None, :], torch.zeros_like(trans[..., None])], -1)
        # Tiles -> image.
        img = out.reshape(tiles_y, tiles_x, ts, ts, D + 1).permute(0, 2, 1, 3, 4).reshape(tiles_y * ts, tiles_x * ts, D + 1)[:H, :W]
        T_img = trans.reshape(tiles_y, tiles_x, ts, ts).permute(0, 2, 1, 3).reshape(tiles_y * ts, tiles_x * ts)[:H, :W]
        return img[..., :D], img[..., D], 1.0 - T_img, vis
