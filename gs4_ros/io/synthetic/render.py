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
    """Identity below the knee, then a smooth rational roll-off towards 1 (no clipped
    plateaus that would erase texture in bright regions)."""
    a = 1.0 - knee
    over = (x - knee).clamp(min=0)
    return x - over * over / (over + a)


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
    return torch.prod(1 - occ.clamp(0, 0.85), dim=1)


_AO_CELL = 0.025


def _floor_ao_map(scene: Scene, device) -> torch.Tensor:
    """Floor occlusion baked once per scene on a 2.5 cm grid (it varies slowly)."""
    key = ("floor_ao", str(device))
    if key not in scene._cache:
        W, D, _ = scene.info["size"]
        nx, ny = int(np.ceil((W + 1.0) / _AO_CELL)) + 1, int(np.ceil((D + 1.0) / _AO_CELL)) + 1
        xs = -0.5 + torch.arange(nx, dtype=torch.float32) * _AO_CELL
        ys = -0.5 + torch.arange(ny, dtype=torch.float32) * _AO_CELL
        gx, gy = torch.meshgrid(xs, ys, indexing="ij")
        pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
        boxes = torch.as_tensor(np.asarray(scene.info["ao_boxes"], np.float32)).reshape(-1, 6)
        ao = torch.cat([_floor_occlusion(pts[i:i + 65536], boxes) for i in range(0, len(pts), 65536)])
        scene._cache[key] = (ao.view(nx, ny).to(device), nx, ny)
    return scene._cache[key]


def _lookup_ao(scene: Scene, xy: torch.Tensor) -> torch.Tensor:
    table, nx, ny = _floor_ao_map(scene, xy.device)
    u = ((xy[:, 0] + 0.5) / _AO_CELL).clamp(0, nx - 1.001)
    v = ((xy[:, 1] + 0.5) / _AO_CELL).clamp(0, ny - 1.001)
    fu, fv = torch.floor(u), torch.floor(v)
    tu, tv = u - fu, v - fv
    i = fu.long() * ny + fv.long()
    flat = table.reshape(-1)
    a, b = torch.index_select(flat, 0, i), torch.index_select(flat, 0, i + ny)
    c, d = torch.index_select(flat, 0, i + 1), torch.index_select(flat, 0, i + ny + 1)
    return torch.lerp(torch.lerp(a, b, tu), torch.lerp(c, d, tu), tv)


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
    pp = torch.index_select(st["p_pack"], 0, prim)
    mat, label, inst = pp[:, 0], pp[:, 1], pp[:, 2]
    mp = torch.index_select(st["m_pack"], 0, mat)
    n_w, n_c, ray = hit["normal"], hit["normal_cam"], hit["ray"]
    ray_len = ray.norm(dim=-1)
    cos_view = (n_c * ray).sum(-1).abs() / ray_len
    # Pixel footprint on the surface (m), for band-limiting the textures.
    fp = hit["depth"] * ray_len / (0.5 * (intr.fx + intr.fy)) / cos_view.clamp(min=0.2)

    alb = albedo(mp[:, 0].long(), hit["uv"], hit["fsize"], fp, mp[:, 1:10].reshape(-1, 3, 3), mp[:, 10],
                 mp[:, 11:15], mp[:, 15].int())

    # Lighting is a scalar intensity times one colour tint per scene (cheaper than RGB).
    lights = scene.info["lights"]
    p = hit["point"]
    f32 = lambda a: torch.as_tensor(np.asarray(a, np.float32), device=device)
    # Hemispherical ambient: a little more from above, but ceilings still get bounce light.
    light = lights["ambient"] * (0.9 + 0.1 * n_w[:, 2])
    for d, inten in lights["directional"]:
        light = light + (n_w @ f32(d)).clamp(min=0) * inten
    for pos, inten, r0 in lights["point"]:
        v = f32(pos)[None] - p
        dist2 = (v * v).sum(-1).clamp(min=1e-6)
        light = light + ((n_w * v).sum(-1) * torch.rsqrt(dist2)).clamp(min=0) * (inten / (1 + dist2 / (r0 * r0)))

    # Ambient occlusion: floor near footprints and walls, any surface close above the floor.
    is_floor = (n_w[:, 2] > 0.9) & (p[:, 2] < 0.02)
    ao = 1 - 0.3 * torch.exp(p[:, 2].clamp(min=0) * (-1 / 0.07))
    fl = torch.nonzero(is_floor).squeeze(1)
    if fl.numel():
        ao.index_copy_(0, fl, _lookup_ao(scene, torch.index_select(p[:, :2], 0, fl)))
    light = light * (0.25 + 0.75 * ao)

    emis = mp[:, 16]
    gain = torch.where(emis > 0, emis, light)
    col = _soft_clip(alb * gain[:, None] * torch.where((emis > 0)[:, None], 1.0, f32(lights["tint"])[None]))
    label = label.to(torch.uint8)
    inst = inst.to(torch.int32)
    glass = mp[:, 17] > 0.5
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
