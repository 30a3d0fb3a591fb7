"""Co-visibility test shared by the geometric and the learned mapper: which stride x stride
blocks (one candidate Gaussian each) does the map not explain yet?"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import se3
from .fusion import observation_confidence
from .render import render_views


@torch.no_grad()
def unmapped_blocks(rasterizer, gmap, pose, K, width: int, height: int, stride: int,
                    block_depth: torch.Tensor, silhouette_threshold: float = 0.5,
                    front_margin: float = 0.04, render=None, measured_only: bool = True) -> torch.Tensor:
    """[hb*wb] bool: the map's silhouette over the block is below the threshold, or the
    observed depth lies clearly (front_margin x depth) in front of the rendered surface.

    render: a geometry render of the map from (nearly) this pose to use instead of
    rendering again (the tracker's reference; blocks are 8 pixels, a few millimetres of
    pose difference do not change which are explained). measured_only leaves out inferred
    rows (placed across depth holes): a guess never keeps measured depth out of the map."""
    s = stride
    hb, wb = height // s, width // s
    if len(gmap) == 0:
        return torch.ones(hb * wb, dtype=torch.bool, device=block_depth.device)
    r = render if render is not None else render_views(rasterizer, gmap.params(measured_only=measured_only),
                                                       pose, K, width, height, geometry=True)
    a = r.alpha[0, : hb * s, : wb * s].reshape(hb, s, wb, s)
    rd = r.surface_depth[0, : hb * s, : wb * s].reshape(hb, s, wb, s)
    solid = (a > 0.5).float()
    n_solid = solid.sum((1, 3)).flatten()
    rdm = (rd * solid).sum((1, 3)).flatten() / n_solid.clamp(min=1)
    unseen = a.mean((1, 3)).flatten() < silhouette_threshold
    in_front = (n_solid > 0) & (block_depth < rdm - front_margin * block_depth)
    return unseen | in_front


def block_confidence(bg, K, stride: int, width: int, height: int) -> torch.Tensor:
    """Depth-fusion confidence of each block's observation (at the block centre)."""
    hb, wb = bg.grid_shape
    dev = bg.depth.device
    vb, ub = torch.meshgrid(torch.arange(hb, device=dev), torch.arange(wb, device=dev), indexing="ij")
    uc = (ub.flatten().float() + 0.5) * stride - 0.5
    vc = (vb.flatten().float() + 0.5) * stride - 0.5
    return observation_confidence(uc, vc, bg.depth, K, width, height)


@torch.no_grad()
def blocks_to_insert(rasterizer, gmap, pose, K, width: int, height: int, stride: int, block_depth: torch.Tensor,
                     valid: torch.Tensor, silhouette_threshold: float, front_margin: float, render=None,
                     inferred_blocks=None) -> torch.Tensor:
    """[hb*wb] bool: valid blocks the map does not explain. Measured blocks are judged
    against the measured rows only (render: the tracker's render of them, if still valid),
    blocks on filled depth also against the earlier guesses (a render of the inferred rows
    alone, a fraction of the map), so a guess is not placed twice."""
    select = valid & unmapped_blocks(rasterizer, gmap, pose, K, width, height, stride, block_depth,
                                     silhouette_threshold, front_margin, render=render)
    rows = torch.nonzero(gmap.inferred != 0).flatten() if inferred_blocks is not None else None
    if rows is not None and rows.numel() > 0:
        guesses = render_views(rasterizer, gmap.params(rows), pose, K, width, height, geometry=True)
        free = unmapped_blocks(rasterizer, gmap, pose, K, width, height, stride, block_depth,
                               silhouette_threshold, front_margin, render=guesses)
        select = torch.where(inferred_blocks, select & free, select)
    return select


def project_rows(gmap, rows: torch.Tensor, pose: torch.Tensor, K: torch.Tensor, height: int, width: int):
    """(u, v, z, inside) of map rows seen from camera pose (c2w): nearest pixel, depth, and
    whether it falls in the image in front of the camera."""
    Tcw = se3.inv(pose)                  # closed form: linalg.inv syncs with the host on CUDA
    pc = gmap.means[rows] @ Tcw[:3, :3].T + Tcw[:3, 3]
    z = pc[:, 2]
    zs = z.clamp(min=1e-3)
    u = torch.floor(K[0, 0] * pc[:, 0] / zs + K[0, 2] + 0.5).long()
    v = torch.floor(K[1, 1] * pc[:, 1] / zs + K[1, 2] + 0.5).long()
    inside = (z > 0.05) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    return u.clamp(0, width - 1), v.clamp(0, height - 1), z, inside


@torch.no_grad()
def replaced_inferred(gmap, pose: torch.Tensor, K: torch.Tensor, depth: torch.Tensor,
                      margin: float = 0.05) -> torch.Tensor:
    """[N] bool: inferred rows (placed across a depth hole) at whose pixel this keyframe
    measures depth that does not hide them (not nearer by more than margin + 5%): the
    keyframe's measured Gaussians replace them, so a measurement wins over a guess, one
    seen through it included. Rows it does not see, or sees no depth at, stay."""
    out = torch.zeros(len(gmap), dtype=torch.bool, device=gmap.device)
    rows = torch.nonzero(gmap.inferred != 0).flatten()
    if rows.numel() == 0:
        return out
    u, v, z, ok = project_rows(gmap, rows, pose, K, *depth.shape)
    d = depth[v, u]
    ok &= (d > 0) & (d > z - (margin + 0.05 * z))
    out[rows[ok]] = True
    return out


def block_fraction(mask: torch.Tensor, stride: int) -> torch.Tensor:
    """[hb*wb] share of each stride x stride block's pixels set in an [H, W] mask."""
    return F.avg_pool2d(mask[None, None].float(), stride)[0, 0].flatten()
