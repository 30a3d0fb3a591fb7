"""Noise-free views of a synthetic scene: colour, depth, labels, instances, normals.

Shading is view-independent on purpose (Lambertian: hemispherical ambient, directional
and point lights, contact occlusion near the floor) so that a Gaussian map can represent
the rendered colours exactly; there are no specular highlights and no cast shadows.
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import torch

from gs4_ros.core.frame import Intrinsics

from .classes import UNLABELLED
from .raycast import cast_view
from .scene import Scene
from .textures import albedo


def _soft_clip(x: torch.Tensor, knee: float = 0.8) -> torch.Tensor:
    """Identity below the knee, then a smooth roll-off to 1 (no hard clipped plateaus)."""
    over = (x - knee).clamp(min=0)
    return torch.where(x > knee, knee + (1 - knee) * (1 - torch.exp(-over / (1 - knee))), x)


def _floor_occlusion(point: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Contact darkening of floor points from object footprints and walls [K, 6]:
    (cx, cy, yaw, hx, hy, strength)."""
    if boxes.numel() == 0:
        return torch.ones(point.shape[0], device=point.device)
    dx = point[:, None, 0] - boxes[None, :, 0]
    dy = point[:, None, 1] - boxes[None, :, 1]
    c, s = torch.cos(boxes[:, 2]), torch.sin(boxes[:, 2])
    lx = (c * dx + s * dy).abs() - boxes[:, 3]
    ly = (-s * dx + c * dy).abs() - boxes[:, 4]
    out = torch.sqrt(lx.clamp(min=0) ** 2 + ly.clamp(min=0) ** 2)
    inside = torch.maximum(lx, ly).clamp(max=0)
    d = out + inside  # signed distance, negative under the object
    occ = boxes[:, 5] * torch.exp(-d.clamp(min=0) / 0.12)
    occ = torch.where(d < 0, boxes[:, 5] * (1.0 + (-d / 0.1).clamp(max=0.6)), occ)
    vis = torch.prod(1 - occ.clamp(0, 0.85), dim=1)
    return vis


def render_clean(scene: Scene, pose: np.ndarray, intr: Intrinsics, device="cpu") -> Dict[str, torch.Tensor]:
    """Cast and shade one view. Returns HxW(x3) torch tensors on `device`:
    rgb (float, [0, 1]), depth (metres, 0 = nothing hit), label (uint8, 255 unlabelled),
    inst (int32), normal (camera frame), cos_view (|cos| of the incidence angle),
    glass (bool: surfaces a depth sensor sees through)."""
    st = scene.tensors(device)
    H, W = intr.height, intr.width
    T = torch.as_tensor(np.asarray(pose, np.float64), dtype=torch.float32, device=device)
    hit = cast_view(st, T, intr.fx, intr.fy, intr.cx, intr.cy, W, H)
    pix, prim = hit["pix"], hit["prim"]
    sel = lambda a, i: torch.index_select(a, 0, i)
    mat = sel(st["mat"], prim)
    n_w, n_c, ray = hit["normal"], hit["normal_cam"], hit["ray"]
    ray_len = ray.norm(dim=-1)
    cos_view = (n_c * ray).sum(-1).abs() / ray_len
    # Pixel footprint on the surface (m), for band-limiting the textures.
    fp = hit["depth"] * ray_len / (0.5 * (intr.fx + intr.fy)) / cos_view.clamp(min=0.2)

    alb = albedo(sel(st["m_kind"], mat), hit["uv"], hit["fsize"], fp, sel(st["m_col"], mat),
                 sel(st["m_scale"], mat), sel(st["m_params"], mat), sel(st["m_seed"], mat))

    lights = scene.info["lights"]
    p = hit["point"]
    f32 = lambda a: torch.as_tensor(np.asarray(a, np.float32), device=device)
    # Hemispherical ambient: a little more from above, but ceilings still get bounce light.
    light = f32(lights["ambient"])[None] * (0.9 + 0.1 * n_w[:, 2:3])
    for d, c in lights["directional"]:
        light = light + (n_w @ f32(d)).clamp(min=0)[:, None] * f32(c)[None]
    for pos, c, r0 in lights["point"]:
        v = f32(pos)[None] - p
        dist = v.norm(dim=-1).clamp(min=1e-3)
        lam = ((n_w * v).sum(-1) / dist).clamp(min=0) / (1 + (dist / r0) ** 2)
        light = light + lam[:, None] * f32(c)[None]

    # Ambient occlusion: floor near footprints and walls, any surface close above the floor.
    is_floor = (n_w[:, 2] > 0.9) & (p[:, 2] < 0.02)
    ao = 1 - 0.3 * torch.exp(-p[:, 2].clamp(min=0) / 0.07)
    fl = torch.nonzero(is_floor).squeeze(1)
    if fl.numel():
        boxes = f32(scene.info["ao_boxes"]).reshape(-1, 6)
        ao.index_copy_(0, fl, _floor_occlusion(sel(p, fl), boxes))
    light = light * (0.25 + 0.75 * ao)[:, None]

    emis = sel(st["m_emissive"], mat)
    col = torch.where((emis > 0)[:, None], alb * emis[:, None], alb * light)
    col = _soft_clip(col)
    label = sel(st["label"], prim).to(torch.uint8)
    inst = sel(st["inst"], prim).to(torch.int32)
    glass = sel(st["m_glass"], mat)
    depth = hit["depth"]

    if pix.numel() != H * W:  # some rays escaped (an open scene): scatter into full images
        def full(x, fill):
            out = torch.full((H * W,) + tuple(x.shape[1:]), fill, dtype=x.dtype, device=device)
            out.index_copy_(0, pix, x)
            return out
        col, depth, label, inst = full(col, 0.0), full(depth, 0.0), full(label, UNLABELLED), full(inst, 0)
        n_c, cos_view, glass = full(n_c, 0.0), full(cos_view, 0.0), full(glass, False)
    return {"rgb": col.view(H, W, 3), "depth": depth.view(H, W), "label": label.view(H, W),
            "inst": inst.view(H, W), "normal": n_c.view(H, W, 3), "cos_view": cos_view.view(H, W),
            "glass": glass.view(H, W)}
