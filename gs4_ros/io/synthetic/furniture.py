"""Furniture of the ScanNet-20 classes composed from boxes, cylinders and ellipsoids.

Every builder works in the object's frame: origin on the floor at the centre of the
footprint, x across, y depth with +y the front (facing into the room), z up. It returns
an Obj with the parts and the footprint the layout needs. Sizes follow real furniture so
the rooms read as rooms and the depth statistics look like indoor scans.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from .classes import CLASS_ID, UNLABELLED
from .materials import Materials, pick
from .scene import Part, box, cylinder, ellipsoid

C = CLASS_ID


@dataclass
class Obj:
    parts: List[Part]
    hx: float  # footprint half width (x)
    hy: float  # footprint half depth (y)
    height: float
    label: int
    mount: str = "floor"  # floor | wall (hangs on a wall at z0..z0+height)
    z0: float = 0.0
    ao: float = 0.35  # floor contact darkening strength
    extra: dict = field(default_factory=dict)


def _legs(pts, r, h, mat, square=False) -> List[Part]:
    out = []
    for x, y in pts:
        if square:
            out.append(box((x, y, h / 2), (r, r, h / 2), mat))
        else:
            out.append(cylinder((x, y, h / 2), r, h / 2, mat))
    return out


def bed(rng, M: Materials) -> Obj:
    double = rng.uniform() < 0.7
    W = rng.uniform(1.4, 1.8) if double else rng.uniform(0.9, 1.05)
    L = rng.uniform(1.95, 2.15)
    fh = rng.uniform(0.22, 0.35)
    frame = M.wood() if rng.uniform() < 0.6 else M.fabric()
    sheet = M.fabric(base=pick(rng, [(0.92, 0.92, 0.9), (0.85, 0.88, 0.92), (0.9, 0.86, 0.8)]), plaid=False)
    blanket = M.fabric()
    hb_h = rng.uniform(0.85, 1.25)
    parts = [
        box((0, 0, fh / 2 + 0.05), (W / 2, L / 2, fh / 2), frame),
        box((0, 0.02, fh + 0.05 + 0.1), (W / 2 - 0.03, L / 2 - 0.06, 0.1), sheet),
        box((0, -L / 2 + 0.03, hb_h / 2), (W / 2 + 0.02, 0.03, hb_h / 2), frame),
    ]
    parts += _legs([(sx * (W / 2 - 0.05), sy * (L / 2 - 0.05)) for sx in (-1, 1) for sy in (-1, 1)], 0.03, 0.05,
                   frame, square=True)
    top = fh + 0.05 + 0.2
    cover = rng.uniform(0.55, 0.75) * L
    parts.append(box((0, L / 2 - cover / 2 + 0.01, top - 0.07), (W / 2 + 0.01, cover / 2, 0.095), blanket))
    n_p = 2 if double else 1
    pillow = M.fabric(base=(0.93, 0.92, 0.9), plaid=False)
    for i in range(n_p):
        x = 0 if n_p == 1 else (i - 0.5) * W / 2
        parts.append(ellipsoid((x, -L / 2 + 0.28, top + 0.05), (W / (2 * n_p) - 0.06, 0.16, 0.07), pillow))
    return Obj(parts, W / 2 + 0.02, L / 2, hb_h, C["bed"], ao=0.3)


def chair(rng, M: Materials) -> Obj:
    w = rng.uniform(0.42, 0.52)
    d = rng.uniform(0.42, 0.5)
    sh = rng.uniform(0.43, 0.48)
    st = rng.uniform(0.03, 0.06)
    bh = rng.uniform(0.78, 0.98)
    frame = M.wood() if rng.uniform() < 0.6 else M.metal()
    seat = M.fabric() if rng.uniform() < 0.6 else frame
    leg_r = rng.uniform(0.013, 0.022)
    parts = [box((0, 0, sh - st / 2), (w / 2, d / 2, st / 2), seat)]
    parts += _legs([(sx * (w / 2 - 0.03), sy * (d / 2 - 0.03)) for sx in (-1, 1) for sy in (-1, 1)], leg_r,
                   sh - st, frame, square=rng.uniform() < 0.4)
    back_style = rng.integers(3)
    if back_style == 0:  # solid back
        parts.append(box((0, -d / 2 + 0.015, (sh + bh) / 2), (w / 2, 0.015, (bh - sh) / 2), seat))
    else:  # two posts and a top rail (plus slats)
        for sx in (-1, 1):
            parts.append(box((sx * (w / 2 - 0.02), -d / 2 + 0.015, (sh + bh) / 2), (0.018, 0.015, (bh - sh) / 2), frame))
        parts.append(box((0, -d / 2 + 0.015, bh - 0.06), (w / 2, 0.015, 0.06), frame))
        if back_style == 2:
            for k in range(3):
                x = (k - 1) * w / 4
                parts.append(box((x, -d / 2 + 0.015, (sh + bh - 0.12) / 2 + 0.02), (0.015, 0.01, (bh - sh - 0.12) / 2), frame))
    return Obj(parts, w / 2, d / 2, bh, C["chair"], ao=0.15)


def sofa(rng, M: Materials) -> Obj:
    W = rng.uniform(1.6, 2.4)
    D = rng.uniform(0.82, 0.98)
    fab = M.fabric()
    cush = fab if rng.uniform() < 0.6 else M.fabric()
    arm_w = rng.uniform(0.12, 0.22)
    arm_h = rng.uniform(0.55, 0.68)
    back_h = rng.uniform(0.78, 0.92)
    back_d = rng.uniform(0.16, 0.24)
    base_h = 0.38
    leg = M.wood(base=(0.3, 0.2, 0.14))
    parts = [box((0, 0, 0.06 + (base_h - 0.06) / 2), (W / 2, D / 2, (base_h - 0.06) / 2), fab),
             box((0, -D / 2 + back_d / 2, (base_h + back_h) / 2), (W / 2 - arm_w, back_d / 2, (back_h - base_h) / 2), fab)]
    for sx in (-1, 1):
        parts.append(box((sx * (W / 2 - arm_w / 2), 0, (0.06 + arm_h) / 2), (arm_w / 2, D / 2, (arm_h - 0.06) / 2), fab))
    n = 2 if W < 1.9 else 3
    inner = W - 2 * arm_w
    for i in range(n):
        x = -inner / 2 + inner * (i + 0.5) / n
        parts.append(box((x, back_d / 2, base_h + 0.06), (inner / (2 * n) - 0.01, (D - back_d) / 2 - 0.01, 0.06), cush))
    parts += _legs([(sx * (W / 2 - 0.06), sy * (D / 2 - 0.06)) for sx in (-1, 1) for sy in (-1, 1)], 0.025, 0.06, leg)
    if rng.uniform() < 0.7:
        pil = M.fabric()
        for sx in (-1, 1):
            parts.append(ellipsoid((sx * (inner / 2 - 0.2), -D / 2 + back_d + 0.08, base_h + 0.28), (0.2, 0.07, 0.18), pil))
    return Obj(parts, W / 2, D / 2, back_h, C["sofa"], ao=0.35)


def table(rng, M: Materials, coffee: Optional[bool] = None) -> Obj:
    coffee = rng.uniform() < 0.25 if coffee is None else coffee
    h = rng.uniform(0.38, 0.46) if coffee else rng.uniform(0.72, 0.77)
    t = rng.uniform(0.025, 0.05)
    top = M.wood() if rng.uniform() < 0.7 else (M.stone() if rng.uniform() < 0.5 else M.paint())
    legm = top if rng.uniform() < 0.6 else M.metal()
    if rng.uniform() < 0.25 and not coffee:  # round pedestal table
        r = rng.uniform(0.4, 0.6)
        parts = [cylinder((0, 0, h - t / 2), r, t / 2, top), cylinder((0, 0, (h - t) / 2), 0.04, (h - t) / 2, legm),
                 cylinder((0, 0, 0.015), r * 0.5, 0.015, legm)]
        return Obj(parts, r, r, h, C["table"], ao=0.2, extra={"round": True})
    W = rng.uniform(0.9, 1.3) if coffee else rng.uniform(0.8, 1.8)
    D = rng.uniform(0.5, 0.7) if coffee else rng.uniform(0.65, 1.0)
    parts = [box((0, 0, h - t / 2), (W / 2, D / 2, t / 2), top)]
    lr = rng.uniform(0.02, 0.035)
    parts += _legs([(sx * (W / 2 - 0.06), sy * (D / 2 - 0.06)) for sx in (-1, 1) for sy in (-1, 1)], lr, h - t, legm,
                   square=rng.uniform() < 0.5)
    if rng.uniform() < 0.5:  # apron
        parts.append(box((0, 0, h - t - 0.05), (W / 2 - 0.06, D / 2 - 0.06, 0.05), legm))
    if coffee and rng.uniform() < 0.5:  # lower shelf
        parts.append(box((0, 0, 0.1), (W / 2 - 0.07, D / 2 - 0.07, 0.012), top))
    return Obj(parts, W / 2, D / 2, h, C["table"], ao=0.2)


def desk(rng, M: Materials) -> Obj:
    W = rng.uniform(1.0, 1.7)
    D = rng.uniform(0.6, 0.78)
    h = rng.uniform(0.72, 0.76)
    t = 0.03
    top = M.wood() if rng.uniform() < 0.6 else M.paint()
    body = top if rng.uniform() < 0.5 else M.paint()
    parts = [box((0, 0, h - t / 2), (W / 2, D / 2, t / 2), top)]
    side = rng.integers(3)
    if side == 0:  # two solid side panels
        for sx in (-1, 1):
            parts.append(box((sx * (W / 2 - 0.015), 0, (h - t) / 2), (0.015, D / 2 - 0.01, (h - t) / 2), body))
        parts.append(box((0, -D / 2 + 0.05, h - 0.25), (W / 2 - 0.03, 0.008, 0.2), body))
    else:
        lm = M.metal()
        parts += _legs([(sx * (W / 2 - 0.04), sy * (D / 2 - 0.04)) for sx in (-1, 1) for sy in (-1, 1)], 0.02,
                       h - t, lm, square=True)
    if side != 0 or rng.uniform() < 0.5:  # drawer unit on one side
        dw = 0.4
        sx = rng.choice([-1, 1])
        x = sx * (W / 2 - dw / 2 - 0.02)
        dm = M.panel(base=None, margin=0.03, panels=3, grain=False)
        parts.append(box((x, 0, (h - t) / 2), (dw / 2, D / 2 - 0.03, (h - t) / 2), dm))
        for k in range(3):
            parts.append(box((x, D / 2 - 0.025, (h - t) * (k + 0.5) / 3 + 0.05), (0.06, 0.008, 0.008), M.metal()))
    # A monitor and keyboard on top: not in the class set.
    if rng.uniform() < 0.6:
        dark = M.paint(base=(0.08, 0.08, 0.09), variation=0.2)
        mw = rng.uniform(0.5, 0.7)
        parts += [box((0, -D / 2 + 0.2, h + 0.12 + 0.18), (mw / 2, 0.02, 0.17), dark, label=UNLABELLED),
                  box((0, -D / 2 + 0.22, h + 0.07), (0.03, 0.02, 0.07), dark, label=UNLABELLED),
                  box((0, -D / 2 + 0.22, h + 0.005), (0.1, 0.08, 0.005), dark, label=UNLABELLED),
                  box((0, 0.05, h + 0.01), (0.22, 0.07, 0.01), dark, label=UNLABELLED)]
    return Obj(parts, W / 2, D / 2, h, C["desk"], ao=0.2)


def _doors(parts, M, x0, x1, z0, z1, y_front, n, rng, handles=True, handle_z=None):
    """n door fronts side by side over [x0, x1] x [z0, z1], proud of y_front, with
    handles near the meeting edges (at handle_z, default: hand height or mid-door)."""
    pm = M.panel(panels=1)
    hm = M.metal()
    w = (x1 - x0) / n
    if handle_z is None:
        handle_z = min(1.05, z1 - 0.1) if z1 - z0 > 1.0 else (z0 + z1) / 2
    for i in range(n):
        cx = x0 + w * (i + 0.5)
        parts.append(box((cx, y_front + 0.01, (z0 + z1) / 2), (w / 2 - 0.004, 0.01, (z1 - z0) / 2 - 0.004), pm))
        if handles:
            hx = cx + (w / 2 - 0.05) * (1 if i % 2 == 0 else -1)
            parts.append(cylinder((hx, y_front + 0.035, handle_z), 0.008, min(0.08, (z1 - z0) / 4), hm))


def cabinet(rng, M: Materials, tall: Optional[bool] = None) -> Obj:
    tall = rng.uniform() < 0.45 if tall is None else tall
    W = rng.uniform(0.8, 1.6) if tall else rng.uniform(0.6, 1.8)
    D = rng.uniform(0.45, 0.62) if tall else rng.uniform(0.38, 0.5)
    H = rng.uniform(1.7, 2.15) if tall else rng.uniform(0.7, 1.0)
    body = M.wood() if rng.uniform() < 0.5 else M.paint()
    parts = [box((0, 0, 0.05 + (H - 0.05) / 2), (W / 2, D / 2, (H - 0.05) / 2), body),
             box((0, -0.02, 0.025), (W / 2 - 0.03, D / 2 - 0.04, 0.025), M.paint(base=(0.15, 0.15, 0.15)))]
    n = max(1, int(round(W / rng.uniform(0.4, 0.6))))
    if not tall and rng.uniform() < 0.4:  # drawers over doors
        _doors(parts, M, -W / 2 + 0.02, W / 2 - 0.02, H - 0.22, H - 0.03, D / 2, n, rng)
        _doors(parts, M, -W / 2 + 0.02, W / 2 - 0.02, 0.08, H - 0.23, D / 2, n, rng)
    else:
        _doors(parts, M, -W / 2 + 0.02, W / 2 - 0.02, 0.08, H - 0.03, D / 2, n, rng)
    if not tall and rng.uniform() < 0.5:  # something on top, not in the class set
        vase = M.paint(base=pick(rng, [(0.8, 0.3, 0.2), (0.2, 0.4, 0.6), (0.9, 0.9, 0.85)]))
        parts.append(cylinder((rng.uniform(-W / 3, W / 3), 0, H + 0.12), 0.06, 0.12, vase, label=UNLABELLED))
    return Obj(parts, W / 2, D / 2 + 0.02, H, C["cabinet"], ao=0.4)


def wall_cabinet(rng, M: Materials, room_h: float) -> Obj:
    """An upper kitchen cabinet or a bathroom wall cabinet, hung at head height."""
    W = rng.uniform(0.5, 1.6)
    D = rng.uniform(0.28, 0.36)
    z0 = rng.uniform(1.42, 1.6)
    H = min(rng.uniform(0.55, 0.8), room_h - z0 - 0.05)
    body = M.paint() if rng.uniform() < 0.6 else M.wood()
    parts = [box((0, D / 2, H / 2), (W / 2, D / 2 - 0.01, H / 2), body)]
    n = max(1, int(round(W / rng.uniform(0.35, 0.55))))
    _doors(parts, M, -W / 2 + 0.01, W / 2 - 0.01, 0.01, H - 0.01, D - 0.01, n, rng, handle_z=0.1)
    return Obj(parts, W / 2, D + 0.04, H, C["cabinet"], mount="wall", z0=z0, ao=0.0)


def bookshelf(rng, M: Materials) -> Obj:
    W = rng.uniform(0.6, 1.2)
    D = rng.uniform(0.28, 0.4)
    H = rng.uniform(1.2, 2.2)
    t = 0.02
    body = M.wood() if rng.uniform() < 0.6 else M.paint()
    parts = [box((sx * (W / 2 - t / 2), 0, H / 2), (t / 2, D / 2, H / 2), body) for sx in (-1, 1)]
    parts += [box((0, 0, H - t / 2), (W / 2, D / 2, t / 2), body),
              box((0, 0, 0.04), (W / 2 - t, D / 2, 0.04), body),
              box((0, -D / 2 + 0.005, H / 2), (W / 2 - t, 0.005, H / 2), body)]
    n = max(2, int(round((H - 0.1) / rng.uniform(0.3, 0.4))))
    gap = (H - 0.08 - t) / n
    inner = W - 2 * t
    for i in range(n):
        z = 0.08 + i * gap
        if i > 0:
            parts.append(box((0, 0, z + t / 2), (inner / 2, D / 2 - 0.01, t / 2), body))
        # 1-3 blocks of books per shelf, sometimes leaving space.
        x = -inner / 2 + rng.uniform(0.0, 0.05)
        for _ in range(int(rng.integers(1, 4))):
            bw = rng.uniform(0.12, 0.45)
            if x + bw > inner / 2 - 0.01:
                bw = inner / 2 - 0.01 - x
            if bw < 0.08:
                break
            bh = gap * rng.uniform(0.65, 0.88)
            bd = D * rng.uniform(0.6, 0.85)
            parts.append(box((x + bw / 2, -D / 2 + 0.01 + bd / 2, z + t + bh / 2), (bw / 2, bd / 2, bh / 2), M.books()))
            x += bw + rng.uniform(0.0, 0.15)
    return Obj(parts, W / 2, D / 2, H, C["bookshelf"], ao=0.4)


def counter(rng, M: Materials, with_sink: Optional[bool] = None) -> Obj:
    W = rng.uniform(1.2, 3.0)
    D = rng.uniform(0.58, 0.65)
    H = rng.uniform(0.88, 0.93)
    t = 0.04
    body = M.paint() if rng.uniform() < 0.6 else M.wood()
    top = M.stone() if rng.uniform() < 0.7 else M.wood()
    parts = [box((0, -0.02, 0.1 + (H - t - 0.1) / 2), (W / 2, D / 2 - 0.02, (H - t - 0.1) / 2), body, label=C["cabinet"]),
             box((0, -0.06, 0.05), (W / 2, D / 2 - 0.06, 0.05), M.paint(base=(0.12, 0.12, 0.12)), label=C["cabinet"]),
             box((0, 0.01, H - t / 2), (W / 2 + 0.01, D / 2 + 0.01, t / 2), top)]
    sub = []
    n = max(1, int(round(W / 0.55)))
    _doors(sub, M, -W / 2 + 0.01, W / 2 - 0.01, 0.11, H - t - 0.01, D / 2 - 0.04, n, rng)
    for p in sub:
        p.label = C["cabinet"]
    parts += sub
    with_sink = rng.uniform() < 0.45 if with_sink is None else with_sink
    if with_sink and W > 1.0:
        sx = rng.uniform(-W / 2 + 0.4, W / 2 - 0.4)
        steel = M.metal(base=(0.7, 0.71, 0.72))
        parts += [box((sx, 0.0, H + 0.008), (0.28, 0.22, 0.008), steel, label=C["sink"]),
                  box((sx, 0.0, H + 0.017), (0.24, 0.18, 0.002), M.metal(base=(0.45, 0.46, 0.47)), label=C["sink"]),
                  cylinder((sx, -0.25, H + 0.15), 0.015, 0.15, steel, label=C["sink"]),
                  cylinder((sx, -0.17, H + 0.29), 0.012, 0.08, steel, axis="y", label=C["sink"])]
    return Obj(parts, W / 2 + 0.01, D / 2 + 0.01, H, C["counter"], ao=0.4)


def refrigerator(rng, M: Materials) -> Obj:
    W = rng.uniform(0.6, 0.9)
    D = rng.uniform(0.62, 0.75)
    H = rng.uniform(1.65, 1.95)
    mini = rng.uniform() < 0.1
    if mini:
        H = rng.uniform(0.8, 0.9)
        W = 0.5
    shell = M.metal() if rng.uniform() < 0.5 else M.paint(base=pick(rng, [(0.93, 0.93, 0.92), (0.2, 0.2, 0.21)]))
    door = shell
    parts = [box((0, -0.02, H / 2 + 0.01), (W / 2, D / 2 - 0.02, H / 2 - 0.01), shell)]
    split = H * (rng.uniform(0.3, 0.4) if not mini else 0.0)
    hm = M.metal(base=(0.6, 0.6, 0.62))
    if split > 0:
        parts += [box((0, D / 2 - 0.02, split / 2 + 0.02), (W / 2 - 0.005, 0.02, split / 2 - 0.012), door),
                  box((0, D / 2 - 0.02, (split + H) / 2 + 0.01), (W / 2 - 0.005, 0.02, (H - split) / 2 - 0.012), door)]
        parts += [cylinder((W / 2 - 0.06, D / 2 + 0.04, split + 0.35), 0.012, 0.25, hm),
                  cylinder((W / 2 - 0.06, D / 2 + 0.04, split - 0.2), 0.012, 0.12, hm)]
    else:
        parts += [box((0, D / 2 - 0.02, H / 2 + 0.01), (W / 2 - 0.005, 0.02, H / 2 - 0.012), door),
                  cylinder((W / 2 - 0.06, D / 2 + 0.04, H * 0.6), 0.012, 0.15, hm)]
    return Obj(parts, W / 2, D / 2 + 0.05, H, C["refrigerator"], ao=0.45)


def toilet(rng, M: Materials) -> Obj:
    cer = M.ceramic()
    parts = [cylinder((0, 0.02, 0.19), rng.uniform(0.12, 0.15), 0.19, cer),
             ellipsoid((0, 0.06, 0.36), (0.19, 0.26, 0.09), cer),
             ellipsoid((0, 0.06, 0.43), (0.2, 0.26, 0.025), M.ceramic() if rng.uniform() < 0.7 else M.paint()),
             box((0, -0.25, 0.62), (0.2, 0.09, 0.2), cer),
             box((0, -0.25, 0.83), (0.21, 0.1, 0.015), cer),
             cylinder((0.12, -0.17, 0.75), 0.012, 0.02, M.metal(base=(0.75, 0.75, 0.77)), axis="y")]
    return Obj(parts, 0.21, 0.34, 0.85, C["toilet"], ao=0.35)


def sink(rng, M: Materials) -> Obj:
    cer = M.ceramic()
    steel = M.metal(base=(0.75, 0.75, 0.77))
    W = rng.uniform(0.5, 0.7)
    D = rng.uniform(0.42, 0.5)
    h = rng.uniform(0.82, 0.88)
    parts = []
    if rng.uniform() < 0.5:  # pedestal basin
        parts += [cylinder((0, -0.05, (h - 0.12) / 2), 0.09, (h - 0.12) / 2, cer)]
    else:  # vanity cabinet below (a cabinet), basin on top
        vm = M.panel(panels=1)
        parts += [box((0, -0.02, (h - 0.02) / 2), (W / 2, D / 2 - 0.02, (h - 0.02) / 2), vm, label=C["cabinet"])]
    parts += [box((0, 0, h - 0.06), (W / 2, D / 2, 0.06), cer),
              box((0, 0.02, h + 0.001), (W / 2 - 0.06, D / 2 - 0.08, 0.001), M.paint(base=(0.8, 0.8, 0.8), variation=0.3)),
              cylinder((0, -D / 2 + 0.05, h + 0.1), 0.014, 0.1, steel),
              cylinder((0, -D / 2 + 0.11, h + 0.19), 0.011, 0.06, steel, axis="y")]
    return Obj(parts, W / 2, D / 2, h + 0.2, C["sink"], ao=0.3)


def bathtub(rng, M: Materials) -> Obj:
    L = rng.uniform(1.5, 1.8)
    W = rng.uniform(0.7, 0.8)
    H = rng.uniform(0.5, 0.6)
    rim = 0.07
    cer = M.ceramic()
    parts = [box((0, 0, 0.06), (L / 2, W / 2, 0.06), cer),
             box((0, -W / 2 + rim / 2, H / 2), (L / 2, rim / 2, H / 2), cer),
             box((0, W / 2 - rim / 2, H / 2), (L / 2, rim / 2, H / 2), cer),
             box((-L / 2 + rim / 2, 0, H / 2), (rim / 2, W / 2 - rim, H / 2), cer),
             box((L / 2 - rim / 2, 0, H / 2), (rim / 2, W / 2 - rim, H / 2), cer),
             cylinder((L / 2 - 0.2, -W / 2 + 0.03, H + 0.12), 0.012, 0.08, M.metal(base=(0.75, 0.75, 0.77)), axis="y")]
    return Obj(parts, L / 2, W / 2, H, C["bathtub"], ao=0.35)


def _folds(width, z0, z1, y, mat, rng, r_lo=0.035, r_hi=0.06) -> List[Part]:
    """A hanging fabric as a row of overlapping vertical cylinders (the folds)."""
    parts = []
    r = rng.uniform(r_lo, r_hi)
    pitch = 1.5 * r
    n = max(2, int(width / pitch))
    for i in range(n):
        x = -width / 2 + r + (width - 2 * r) * i / (n - 1)
        dy = (0.3 * r) * np.sin(i * 2.1 + rng.uniform())
        parts.append(cylinder((x, y + dy, (z0 + z1) / 2), r, (z1 - z0) / 2, mat))
    return parts


def curtain(rng, M: Materials, width: Optional[float] = None, top: float = 2.4) -> Obj:
    W = width or rng.uniform(0.5, 1.4)
    z1 = top
    z0 = rng.uniform(0.02, 0.1) if rng.uniform() < 0.7 else rng.uniform(0.7, 0.9)
    mat = M.fabric()
    parts = _folds(W, z0, z1, 0.09, mat, rng)
    parts.append(cylinder((0, 0.09, z1 + 0.03), 0.015, W / 2 + 0.1, M.metal(), axis="x"))
    return Obj(parts, W / 2 + 0.1, 0.16, z1 + 0.05 - z0, C["curtain"], mount="wall", z0=z0, ao=0.15)


def shower_curtain(rng, M: Materials, width: Optional[float] = None) -> Obj:
    W = width or rng.uniform(0.8, 1.4)
    z0, z1 = rng.uniform(0.35, 0.6), rng.uniform(1.9, 2.05)
    r = M.rng.uniform()
    if r < 0.5:
        mat = M.b.material(4, (0.92, 0.93, 0.95), (0.6, 0.75, 0.85), params=(rng.uniform(0.05, 0.15), 0.5, 0),
                           seed=int(rng.integers(1, 1 << 20)))
    else:
        mat = M.fabric(base=pick(rng, [(0.95, 0.95, 0.95), (0.8, 0.88, 0.9), (0.9, 0.85, 0.75)]), plaid=False)
    parts = _folds(W, z0, z1, 0.0, mat, rng, 0.025, 0.04)
    parts.append(cylinder((0, 0.0, z1 + 0.03), 0.012, W / 2 + 0.05, M.metal(), axis="x"))
    return Obj(parts, W / 2 + 0.05, 0.06, z1 + 0.05 - z0, C["shower curtain"], mount="free", z0=0.0, ao=0.0)


def door(rng, M: Materials) -> Obj:
    W = rng.uniform(0.8, 0.95)
    H = rng.uniform(2.0, 2.12)
    leaf = M.panel(panels=int(rng.integers(1, 4)))
    trim = M.paint(base=(0.95, 0.95, 0.93)) if rng.uniform() < 0.7 else leaf
    aw = 0.07
    parts = [box((0, 0.02, H / 2), (W / 2, 0.02, H / 2), leaf),
             box((-W / 2 - aw / 2, 0.025, H / 2 + aw / 2), (aw / 2, 0.025, H / 2 + aw / 2), trim),
             box((W / 2 + aw / 2, 0.025, H / 2 + aw / 2), (aw / 2, 0.025, H / 2 + aw / 2), trim),
             box((0, 0.025, H + aw / 2), (W / 2, 0.025, aw / 2), trim)]
    hm = M.metal()
    hx = (W / 2 - 0.08) * rng.choice([-1, 1])
    parts += [cylinder((hx, 0.06, 1.0), 0.025, 0.02, hm, axis="y"),
              cylinder((hx - np.sign(hx) * 0.06, 0.085, 1.0), 0.01, 0.06, hm, axis="x")]
    return Obj(parts, W / 2 + aw, 0.09, H + aw, C["door"], mount="wall", z0=0.0, ao=0.1)


def window(rng, M: Materials, room_h: float) -> Obj:
    W = rng.uniform(0.8, 2.0)
    sill = rng.uniform(0.75, 1.0)
    H = min(rng.uniform(1.0, 1.5), room_h - sill - 0.25)
    frame = M.paint(base=(0.95, 0.95, 0.94)) if rng.uniform() < 0.7 else M.wood()
    view = M.view()
    f = 0.05
    parts = [box((0, 0.008, H / 2), (W / 2, 0.008, H / 2), view),
             box((0, 0.03, H - f / 2), (W / 2 + f, 0.03, f / 2), frame),
             box((0, 0.03, f / 2), (W / 2 + f, 0.03, f / 2), frame),
             box((-W / 2 - f / 2, 0.03, H / 2), (f / 2, 0.03, H / 2), frame),
             box((W / 2 + f / 2, 0.03, H / 2), (f / 2, 0.03, H / 2), frame),
             box((0, 0.07, -0.015), (W / 2 + 0.08, 0.07, 0.015), frame)]
    n_v = int(round(W / rng.uniform(0.5, 0.9)))
    for i in range(1, n_v):
        parts.append(box((-W / 2 + W * i / n_v, 0.025, H / 2), (0.02, 0.025, H / 2), frame))
    if rng.uniform() < 0.5:
        parts.append(box((0, 0.025, H * rng.uniform(0.55, 0.7)), (W / 2, 0.025, 0.02), frame))
    return Obj(parts, W / 2 + f + 0.08, 0.14, H + 0.03, C["window"], mount="wall", z0=sill, ao=0.0)


def picture(rng, M: Materials) -> Obj:
    W = rng.uniform(0.3, 1.2)
    H = np.clip(W * rng.uniform(0.6, 1.3), 0.3, 0.9)
    z0 = rng.uniform(1.45, 1.75) - H / 2
    fw = rng.uniform(0.02, 0.06)
    frame = M.wood() if rng.uniform() < 0.5 else M.paint(base=pick(rng, [(0.1, 0.1, 0.1), (0.95, 0.95, 0.95), (0.75, 0.6, 0.3)]))
    art = M.painting()
    parts = [box((0, 0.012, H / 2), (W / 2 - fw, 0.012, H / 2 - fw), art),
             box((0, 0.02, H - fw / 2), (W / 2, 0.02, fw / 2), frame),
             box((0, 0.02, fw / 2), (W / 2, 0.02, fw / 2), frame),
             box((-W / 2 + fw / 2, 0.02, H / 2), (fw / 2, 0.02, H / 2 - fw), frame),
             box((W / 2 - fw / 2, 0.02, H / 2), (fw / 2, 0.02, H / 2 - fw), frame)]
    return Obj(parts, W / 2, 0.04, H, C["picture"], mount="wall", z0=z0, ao=0.0)


def otherfurniture(rng, M: Materials, kind: Optional[str] = None) -> Obj:
    kind = kind or pick(rng, ["nightstand", "dresser", "stool", "ottoman", "bin", "lamp", "rack"])
    L = C["otherfurniture"]
    if kind in ("nightstand", "dresser"):
        W = rng.uniform(0.4, 0.55) if kind == "nightstand" else rng.uniform(0.8, 1.4)
        D = rng.uniform(0.35, 0.45)
        H = rng.uniform(0.5, 0.65) if kind == "nightstand" else rng.uniform(0.75, 1.1)
        mat = M.wood() if rng.uniform() < 0.6 else M.paint()
        parts = [box((0, 0, H / 2), (W / 2, D / 2, H / 2), mat)]
        dm = M.panel(margin=0.03, panels=int(rng.integers(2, 5)), grain=False)
        parts.append(box((0, D / 2 + 0.006, H / 2), (W / 2 - 0.02, 0.006, H / 2 - 0.03), dm))
        return Obj(parts, W / 2, D / 2 + 0.012, H, L, ao=0.4, extra={"kind": kind})
    if kind == "stool":
        r = rng.uniform(0.16, 0.2)
        h = rng.uniform(0.45, 0.7)
        mat = M.wood()
        parts = [cylinder((0, 0, h - 0.02), r, 0.02, mat)]
        parts += _legs([(r * 0.7 * np.cos(a), r * 0.7 * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 4)[:3] + 0.3],
                       0.015, h - 0.04, mat)
        return Obj(parts, r, r, h, L, ao=0.15, extra={"kind": kind})
    if kind == "ottoman":
        r = rng.uniform(0.25, 0.35)
        h = rng.uniform(0.38, 0.45)
        parts = [cylinder((0, 0, h / 2), r, h / 2, M.fabric())]
        return Obj(parts, r, r, h, L, ao=0.35, extra={"kind": kind})
    if kind == "bin":
        r = rng.uniform(0.12, 0.18)
        h = rng.uniform(0.3, 0.45)
        return Obj([cylinder((0, 0, h / 2), r, h / 2, M.metal() if rng.uniform() < 0.5 else M.paint())], r, r, h, L,
                   ao=0.3, extra={"kind": kind})
    if kind == "lamp":
        h = rng.uniform(1.4, 1.7)
        m = M.metal()
        shade_m = M.fabric(base=pick(rng, [(0.95, 0.92, 0.85), (0.9, 0.9, 0.9), (0.85, 0.75, 0.6)]), plaid=False)
        parts = [cylinder((0, 0, 0.015), 0.15, 0.015, m), cylinder((0, 0, h / 2), 0.012, h / 2, m),
                 cylinder((0, 0, h - 0.05), 0.2, 0.14, shade_m)]
        return Obj(parts, 0.2, 0.2, h + 0.1, L, ao=0.1, extra={"kind": kind})
    # rack: a low open shelf unit
    W, D, H = rng.uniform(0.8, 1.4), rng.uniform(0.3, 0.4), rng.uniform(0.4, 0.9)
    mat = M.wood() if rng.uniform() < 0.5 else M.paint()
    parts = [box((sx * (W / 2 - 0.015), 0, H / 2), (0.015, D / 2, H / 2), mat) for sx in (-1, 1)]
    for z in np.linspace(0.05, H - 0.015, 3):
        parts.append(box((0, 0, z), (W / 2 - 0.03, D / 2, 0.015), mat))
    if rng.uniform() < 0.6:
        parts.append(box((0, -0.02, 0.065 + 0.11), (W / 4, D / 2 - 0.05, 0.11), M.books(), label=UNLABELLED))
    return Obj(parts, W / 2, D / 2, H, L, ao=0.2, extra={"kind": kind})


def plant(rng, M: Materials) -> Obj:
    """A potted plant: not in the class set (unlabelled), adds organic shapes."""
    r = rng.uniform(0.12, 0.2)
    h = rng.uniform(0.25, 0.4)
    pot = M.paint(base=pick(rng, [(0.7, 0.4, 0.25), (0.9, 0.9, 0.88), (0.2, 0.2, 0.22)]))
    leaf = M.foliage()
    fr = rng.uniform(0.25, 0.4)
    parts = [cylinder((0, 0, h / 2), r, h / 2, pot, label=UNLABELLED),
             ellipsoid((0, 0, h + fr * 0.8), (fr, fr, fr * 1.1), leaf, label=UNLABELLED),
             ellipsoid((fr * 0.4, fr * 0.2, h + fr * 1.5), (fr * 0.6, fr * 0.6, fr * 0.7), leaf, label=UNLABELLED)]
    return Obj(parts, max(r, fr), max(r, fr), h + 2.2 * fr, UNLABELLED, ao=0.3)


def rug(rng, M: Materials, W: float, D: float) -> Obj:
    return Obj([box((0, 0, 0.006), (W / 2, D / 2, 0.006), M.rug())], W / 2, D / 2, 0.012, C["floor"], ao=0.0)
