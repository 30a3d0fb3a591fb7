"""Procedural rooms: shell (walls, floor, ceiling), furniture placement, lights.

A room is rectangular, L-shaped or has a partition wall. Furniture is placed by rejection
sampling on a 5 cm floor grid (footprints may not overlap or leave the room) and on
per-wall intervals (wall-mounted items may not overlap furniture standing against that
wall). Rooms follow a type (living room, bedroom, kitchen, bathroom, office) so that
objects appear in sensible company, and across seeds every class shows up.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from scipy import ndimage

from . import furniture as F
from .classes import CLASS_ID, UNLABELLED
from .materials import Materials
from .scene import Scene, SceneBuilder, box, cylinder, ellipsoid

CELL = 0.05
WALL_T = 0.2
ROOM_TYPES = ["living", "bedroom", "kitchen", "bathroom", "office"]
ROOM_WEIGHTS = [0.24, 0.22, 0.2, 0.14, 0.2]


def _cross2(a, b) -> float:
    return float(a[0] * b[1] - a[1] * b[0])


@dataclass
class Wall:
    a: np.ndarray
    b: np.ndarray
    intervals: list = field(default_factory=list)  # (s0, s1, z0, z1, group)

    @property
    def length(self):
        return float(np.linalg.norm(self.b - self.a))

    @property
    def e(self):
        return (self.b - self.a) / self.length

    @property
    def n(self):  # inward normal (room on the left of a counter-clockwise outline)
        e = self.e
        return np.array([-e[1], e[0]])

    @property
    def yaw(self):
        e = self.e
        return float(np.arctan2(e[1], e[0]))

    def free(self, s0, s1, z0, z1, group=None):
        for a0, a1, b0, b1, g in self.intervals:
            if group is not None and g == group:
                continue
            if s0 < a1 and a0 < s1 and z0 < b1 and b0 < z1:
                return False
        return True


class FloorGrid:
    """Occupancy of the floor: -1 outside the room, 0 free, k > 0 taken by group k."""

    def __init__(self, xmax, ymax, rects):
        self.origin = np.array([-0.5, -0.5])
        self.nx = int(np.ceil((xmax + 1.0) / CELL))
        self.ny = int(np.ceil((ymax + 1.0) / CELL))
        xs = self.origin[0] + (np.arange(self.nx) + 0.5) * CELL
        ys = self.origin[1] + (np.arange(self.ny) + 0.5) * CELL
        self.X, self.Y = np.meshgrid(xs, ys, indexing="ij")
        inside = np.zeros((self.nx, self.ny), bool)
        for x0, y0, x1, y1 in rects:
            inside |= (self.X > x0) & (self.X < x1) & (self.Y > y0) & (self.Y < y1)
        self.occ = np.where(inside, 0, -1).astype(np.int32)

    def cells(self, cx, cy, yaw, hx, hy, margin=0.0):
        c, s = np.cos(yaw), np.sin(yaw)
        dx, dy = self.X - cx, self.Y - cy
        lx = np.abs(c * dx + s * dy)
        ly = np.abs(-s * dx + c * dy)
        return (lx <= hx + margin) & (ly <= hy + margin)

    def fits(self, cx, cy, yaw, hx, hy, margin=0.03, allow=()):
        m = self.cells(cx, cy, yaw, hx, hy, margin)
        if not m.any():
            return False
        v = self.occ[m]
        if (v < 0).any():
            # Footprint edges may touch the wall band; cells fully outside are not allowed.
            inner = self.cells(cx, cy, yaw, max(hx - 0.03, 0.01), max(hy - 0.03, 0.01), 0.0)
            if (self.occ[inner] < 0).any():
                return False
        taken = v[v > 0]
        return all(t in allow for t in np.unique(taken))

    def mark(self, cx, cy, yaw, hx, hy, group, margin=0.0):
        m = self.cells(cx, cy, yaw, hx, hy, margin) & (self.occ == 0)
        self.occ[m] = group

    def clearance(self):
        """Distance (m) from each free cell to the nearest wall or object footprint."""
        return ndimage.distance_transform_edt(self.occ == 0) * CELL


class RoomGen:
    def __init__(self, seed: int, room_type: Optional[str] = None):
        self.seed = int(seed)
        self.rng = np.random.default_rng([self.seed, 7])
        self.B = SceneBuilder()
        self.M = Materials(self.B, self.rng)
        if room_type is not None and room_type not in ROOM_TYPES:
            raise ValueError(f"unknown room type '{room_type}'; choose one of {', '.join(ROOM_TYPES)}")
        self.type = room_type or ROOM_TYPES[int(self.rng.choice(len(ROOM_TYPES), p=ROOM_WEIGHTS))]
        self.objects = []  # dicts describing placed objects
        self.ao_boxes = []
        self.pois = []
        self.group = 0

    # --- shell -----------------------------------------------------------------------
    def shell(self):
        r = self.rng
        if self.type == "bathroom":
            W, D = r.uniform(3.0, 4.5), r.uniform(3.0, 4.0)
        else:
            W, D = r.uniform(3.5, 8.0), r.uniform(3.0, 7.0)
        H = r.uniform(2.4, 3.2)
        self.W, self.D, self.H = W, D, H
        shape = "rect"
        u = r.uniform()
        if u < 0.3 and W > 4.5 and D > 4.0:
            shape = "L"
        elif u < 0.5 and max(W, D) > 4.5 and self.type != "bathroom":
            shape = "partition"
        self.shape = shape
        if shape == "L":
            cw, cd = r.uniform(0.3, 0.45) * W, r.uniform(0.3, 0.45) * D
            poly = [(0, 0), (W, 0), (W, D - cd), (W - cw, D - cd), (W - cw, D), (0, D)]
            rects = [(0, 0, W, D - cd), (0, 0, W - cw, D)]
        else:
            poly = [(0, 0), (W, 0), (W, D), (0, D)]
            rects = [(0, 0, W, D)]
        self.poly = np.array(poly, float)
        self.grid = FloorGrid(W, D, rects)
        self.walls = [Wall(self.poly[i], self.poly[(i + 1) % len(poly)]) for i in range(len(poly))]

        wall_m = self.M.wall_finish()
        accent = self.M.wall_finish() if r.uniform() < 0.3 else wall_m
        base_m = self.M.paint(base=(0.95, 0.95, 0.93)) if r.uniform() < 0.7 else self.M.wood()
        wl = CLASS_ID["wall"]
        tiles, tile_h = None, 0.0
        if (self.type == "bathroom" and r.uniform() < 0.75) or (self.type == "kitchen" and r.uniform() < 0.25):
            tiles = self.M.wall_tiles()
            tile_h = r.uniform(1.2, min(2.1, H - 0.3))
        n = len(poly)
        for i, w in enumerate(self.walls):
            # Extend each wall box past convex corners only, so it never pokes into the room.
            prev_e = self.walls[i - 1].e
            next_e = self.walls[(i + 1) % n].e
            e = w.e
            ext0 = WALL_T if _cross2(prev_e, e) > 0 else 0.0
            ext1 = WALL_T if _cross2(e, next_e) > 0 else 0.0
            L = w.length
            mid_s = (L + ext1 - ext0) / 2
            c2 = w.a + e * mid_s - w.n * (WALL_T / 2)
            m = accent if (i == 0 and accent != wall_m) else wall_m
            self.B.add([box((0, 0, 0), ((L + ext0 + ext1) / 2, WALL_T / 2, H / 2 + 0.1), m)],
                       (c2[0], c2[1], H / 2), w.yaw, wl, inst=0)
            cb = w.a + e * (L / 2) + w.n * 0.006
            self.B.add([box((0, 0, 0), (L / 2, 0.006, 0.04), base_m)], (cb[0], cb[1], 0.04), w.yaw, wl, inst=0)
            cw = w.a + e * mid_s - w.n * WALL_T
            self.ao_boxes.append((cw[0], cw[1], w.yaw, (L + ext0 + ext1) / 2, WALL_T, 0.12))
            if tiles is not None:  # tiled lower wall (wet rooms), slightly proud of the plaster
                ct = w.a + e * (L / 2) + w.n * 0.005
                self.B.add([box((0, 0, 0), (L / 2, 0.005, tile_h / 2), tiles)], (ct[0], ct[1], tile_h / 2), w.yaw,
                           wl, inst=0)
        floor_m = self.M.floor_finish("tiles" if self.type in ("bathroom", "kitchen") and r.uniform() < 0.7 else None)
        self.B.add([box((0, 0, 0), (W / 2 + WALL_T, D / 2 + WALL_T, 0.05), floor_m)], (W / 2, D / 2, -0.05), 0.0,
                   CLASS_ID["floor"], inst=0)
        self.B.add([box((0, 0, 0), (W / 2 + WALL_T, D / 2 + WALL_T, 0.05), self.M.ceiling())], (W / 2, D / 2, H + 0.05),
                   0.0, UNLABELLED, inst=0)
        if shape == "partition":
            self._partition(wall_m, base_m)

    def _partition(self, wall_m, base_m):
        r = self.rng
        horizontal = self.W >= self.D
        T = 0.1
        if horizontal:  # from the bottom or top wall, along y
            x = r.uniform(0.4, 0.6) * self.W
            depth = r.uniform(0.35, 0.55) * self.D
            y0 = 0.0 if r.uniform() < 0.5 else self.D - depth
            c = (x, y0 + depth / 2)
            half = (T / 2, depth / 2)
        else:
            y = r.uniform(0.4, 0.6) * self.D
            depth = r.uniform(0.35, 0.55) * self.W
            x0 = 0.0 if r.uniform() < 0.5 else self.W - depth
            c = (x0 + depth / 2, y)
            half = (depth / 2, T / 2)
        self.B.add([box((0, 0, 0), (half[0], half[1], self.H / 2 + 0.05), wall_m),
                    box((0, 0, -self.H / 2 + 0.04), (half[0] + 0.006, half[1] + 0.006, 0.04), base_m)],
                   (c[0], c[1], self.H / 2), 0.0, CLASS_ID["wall"], inst=0)
        self.grid.occ[self.grid.cells(c[0], c[1], 0.0, half[0], half[1]) & (self.grid.occ >= 0)] = -1
        self.partition = (c[0], c[1], half[0], half[1])
        self.ao_boxes.append((c[0], c[1], 0.0, half[0], half[1], 0.12))

    # --- placement -------------------------------------------------------------------
    def _new_group(self):
        self.group += 1
        return self.group

    def _commit(self, obj: F.Obj, cx, cy, yaw, group, z=0.0, mark=True, wall=None, s=None):
        inst = self.B.add(obj.parts, (cx, cy, z), yaw, obj.label)
        if mark and obj.mount != "wall":
            self.grid.mark(cx, cy, yaw, obj.hx, obj.hy, group)
        if wall is not None:
            wall.intervals.append((s - obj.hx, s + obj.hx, 0.0, obj.height, group))
        if obj.ao > 0 and obj.mount != "wall":
            self.ao_boxes.append((cx, cy, yaw, obj.hx, obj.hy, obj.ao))
        zc = z + obj.height / 2
        self.pois.append((cx, cy, zc))
        self.objects.append({"inst": inst, "label": int(obj.label), "centre": (float(cx), float(cy), float(zc)),
                             "yaw": float(yaw), "half": (obj.hx, obj.hy, obj.height / 2), "group": group})
        return inst

    def _walls_by_length(self, min_len):
        ws = [w for w in self.walls if w.length >= min_len]
        if not ws:
            return None
        p = np.array([w.length for w in ws])
        return ws[int(self.rng.choice(len(ws), p=p / p.sum()))]

    def against_wall(self, obj: F.Obj, tries=40, group=None, wall=None, s=None, allow=()):
        """Stand a floor object with its back to a wall. Returns (cx, cy, yaw, wall, s) or None."""
        group = group or self._new_group()
        for _ in range(tries):
            w = wall or self._walls_by_length(2 * obj.hx + 0.1)
            if w is None:
                return None
            lo, hi = obj.hx + 0.03, w.length - obj.hx - 0.03
            if hi < lo:
                if wall is not None:
                    return None
                continue
            ss = s if s is not None else self.rng.uniform(lo, hi)
            ss = float(np.clip(ss, lo, hi))
            c = w.a + w.e * ss + w.n * (obj.hy + 0.01)
            if not w.free(ss - obj.hx, ss + obj.hx, 0.0, obj.height, None):
                if s is not None:
                    return None
                continue
            if self.grid.fits(c[0], c[1], w.yaw, obj.hx, obj.hy, allow=allow):
                self._commit(obj, c[0], c[1], w.yaw, group, wall=w, s=ss)
                return c[0], c[1], w.yaw, w, ss
            if s is not None:
                return None
        return None

    def on_wall(self, obj: F.Obj, tries=40, group=None, wall=None, s=None, keepout=0.0):
        """Hang a wall item (door, window, picture, curtain) on a wall."""
        group = group or self._new_group()
        for _ in range(tries):
            w = wall or self._walls_by_length(2 * obj.hx + 0.2)
            if w is None:
                return None
            lo, hi = obj.hx + 0.05, w.length - obj.hx - 0.05
            if hi < lo:
                if wall is not None:
                    return None
                continue
            ss = float(np.clip(s if s is not None else self.rng.uniform(lo, hi), lo, hi))
            if not w.free(ss - obj.hx, ss + obj.hx, obj.z0, obj.z0 + obj.height, group):
                if s is not None:
                    return None
                continue
            c = w.a + w.e * ss
            floor_hit = obj.z0 < 0.5
            depth = max(keepout, obj.hy) if floor_hit else 0.0
            if floor_hit:
                k = w.a + w.e * ss + w.n * (depth / 2 + 0.01)
                if not self.grid.fits(k[0], k[1], w.yaw, obj.hx, depth / 2, margin=0.0):
                    if s is not None:
                        return None
                    continue
                self.grid.mark(k[0], k[1], w.yaw, obj.hx, depth / 2, group)
            inst = self.B.add(obj.parts, (c[0], c[1], obj.z0), w.yaw, obj.label)
            w.intervals.append((ss - obj.hx, ss + obj.hx, obj.z0, obj.z0 + obj.height, group))
            zc = obj.z0 + obj.height / 2
            p = c + w.n * 0.05
            self.pois.append((p[0], p[1], zc))
            self.objects.append({"inst": inst, "label": int(obj.label), "centre": (float(p[0]), float(p[1]), float(zc)),
                                 "yaw": w.yaw, "half": (obj.hx, obj.hy, obj.height / 2), "group": group})
            return c[0], c[1], w.yaw, w, ss
        return None

    def free_standing(self, obj: F.Obj, tries=60, wall_gap=0.5, yaw=None, group=None, allow=()):
        group = group or self._new_group()
        r = self.rng
        for _ in range(tries):
            x = r.uniform(wall_gap + obj.hx, self.W - wall_gap - obj.hx) if self.W > 2 * (wall_gap + obj.hx) else None
            y = r.uniform(wall_gap + obj.hy, self.D - wall_gap - obj.hy) if self.D > 2 * (wall_gap + obj.hy) else None
            if x is None or y is None:
                return None
            a = yaw if yaw is not None else (r.integers(4) * np.pi / 2 + r.normal(0, 0.08))
            if self.grid.fits(x, y, a, obj.hx + wall_gap * 0.0, obj.hy, margin=0.05, allow=allow):
                # Keep a gap to the walls so people (and the camera) can pass.
                if not self.grid.fits(x, y, a, obj.hx + wall_gap, obj.hy + wall_gap, margin=0.0,
                                      allow=tuple(range(1, self.group + 1))):
                    continue
                self._commit(obj, x, y, a, group)
                return x, y, a
        return None

    def place_at(self, obj: F.Obj, x, y, yaw, group, allow=()):
        if self.grid.fits(x, y, yaw, obj.hx, obj.hy, margin=0.02, allow=allow):
            self._commit(obj, x, y, yaw, group)
            return True
        return False

    # --- groups ----------------------------------------------------------------------
    def chairs_around(self, tx, ty, tyaw, thx, thy, group, n_max):
        r = self.rng
        sides = [(0, thy, 0.0), (0, -thy, np.pi), (thx, 0, -np.pi / 2), (-thx, 0, np.pi / 2)]
        order = r.permutation(4)
        placed = 0
        for k in order:
            if placed >= n_max:
                break
            ox, oy, a = sides[k]
            ch = F.chair(r, self.M)
            # Chair front (+y) faces the table; pulled out a little.
            yaw = tyaw + a + np.pi
            pull = ch.hy * 0.6 + r.uniform(0.0, 0.2)
            d = np.array([ox, oy]) / max(np.hypot(ox, oy), 1e-9)
            off = np.array([ox, oy]) + d * pull
            c, s = np.cos(tyaw), np.sin(tyaw)
            wx, wy = tx + c * off[0] - s * off[1], ty + s * off[0] + c * off[1]
            if self.place_at(ch, wx, wy, yaw + r.normal(0, 0.1), group, allow=(group,)):
                placed += 1
        return placed

    def table_set(self, against_wall_prob=0.3, coffee=False, chairs=4):
        t = F.table(self.rng, self.M, coffee=coffee)
        g = self._new_group()
        if self.rng.uniform() < against_wall_prob:
            res = self.against_wall(t, group=g)
            if res is None:
                return False
            x, y, yaw = res[:3]
        else:
            res = self.free_standing(t, group=g, wall_gap=0.7 if chairs else 0.5)
            if res is None:
                return False
            x, y, yaw = res
        if chairs:
            self.chairs_around(x, y, yaw, t.hx, t.hy, g, chairs)
        return True

    def desk_set(self):
        d = F.desk(self.rng, self.M)
        g = self._new_group()
        res = self.against_wall(d, group=g)
        if res is None:
            return False
        x, y, yaw, w, s = res
        if self.rng.uniform() < 0.85:
            ch = F.chair(self.rng, self.M)
            off = d.hy + ch.hy * 0.3 + self.rng.uniform(0.0, 0.25)
            cx, cy = np.array([x, y]) + w.n * off + w.e * self.rng.uniform(-0.2, 0.2)
            self.place_at(ch, cx, cy, w.yaw + np.pi + self.rng.normal(0, 0.2), g, allow=(g,))
        return True

    def sofa_set(self):
        sf = F.sofa(self.rng, self.M)
        g = self._new_group()
        if self.rng.uniform() < 0.7:
            res = self.against_wall(sf, group=g)
            if res is None:
                return False
            x, y, yaw, w, s = res
            n = w.n
        else:
            res = self.free_standing(sf, group=g, wall_gap=0.8)
            if res is None:
                return False
            x, y, yaw = res
            n = np.array([-np.sin(yaw), np.cos(yaw)])
        if self.rng.uniform() < 0.7:
            ct = F.table(self.rng, self.M, coffee=True)
            off = sf.hy + ct.hy + self.rng.uniform(0.3, 0.45)
            cx, cy = np.array([x, y]) + n * off
            self.place_at(ct, cx, cy, yaw, g, allow=(g,))
        return True

    def bed_set(self):
        b = F.bed(self.rng, self.M)
        g = self._new_group()
        res = self.against_wall(b, group=g)
        if res is None:
            return False
        x, y, yaw, w, s = res
        for side in (-1, 1):
            if self.rng.uniform() < 0.6:
                ns = F.otherfurniture(self.rng, self.M, "nightstand")
                ss = s + side * (b.hx + ns.hx + 0.05)
                self.against_wall(ns, wall=w, s=ss, tries=1)
        return True

    def window_set(self):
        win = F.window(self.rng, self.M, self.H)
        g = self._new_group()
        res = self.on_wall(win, group=g)
        if res is None:
            return False
        x, y, yaw, w, s = res
        if self.rng.uniform() < 0.55:
            top = min(self.H - 0.08, win.z0 + win.height + self.rng.uniform(0.1, 0.3))
            for side in (-1, 1):
                if self.rng.uniform() < 0.85:
                    cu = F.curtain(self.rng, self.M, width=self.rng.uniform(0.3, 0.6), top=top)
                    ss = s + side * (win.hx - 0.05 + cu.hx * 0.5)
                    self.on_wall(cu, wall=w, s=ss, group=g, keepout=0.2)
        return True

    def bath_set(self):
        tub = F.bathtub(self.rng, self.M)
        g = self._new_group()
        res = self.against_wall(tub, group=g)
        if res is None:
            return False
        x, y, yaw, w, s = res
        if self.rng.uniform() < 0.85:
            frac = self.rng.uniform(0.35, 0.75)
            sc = F.shower_curtain(self.rng, self.M, width=2 * tub.hx * frac)
            side = self.rng.choice([-1, 1])
            xo = side * (tub.hx - sc.hx)
            c, sn = np.cos(yaw), np.sin(yaw)
            yo = tub.hy - 0.035
            px, py = x + c * xo - sn * yo, y + sn * xo + c * yo
            self.B.add(sc.parts, (px, py, 0.0), yaw, sc.label)
            zc = 1.2
            self.pois.append((px, py, zc))
            self.objects.append({"inst": -1, "label": int(sc.label), "centre": (float(px), float(py), zc),
                                 "yaw": float(yaw), "half": (sc.hx, sc.hy, 0.8), "group": g})
        return True

    def wall_cabinet(self):
        """Upper cabinets: above a counter or sink when there is one, else anywhere."""
        cab = F.wall_cabinet(self.rng, self.M, self.H)
        below = [o for o in self.objects if o["label"] in (CLASS_ID["counter"], CLASS_ID["sink"])]
        if below and self.rng.uniform() < 0.85:
            o = below[int(self.rng.integers(len(below)))]
            for w in self.walls:
                rel = np.asarray(o["centre"][:2]) - w.a
                s_along, off = rel @ w.e, rel @ w.n
                if 0 <= s_along <= w.length and 0 < off < 0.8:
                    if self.on_wall(cab, wall=w, s=s_along + self.rng.uniform(-0.3, 0.3), tries=1):
                        return True
        return self.on_wall(cab) is not None

    def counter_set(self):
        ct = F.counter(self.rng, self.M)
        res = self.against_wall(ct)
        return res is not None

    def simple(self, kind):
        r, M = self.rng, self.M
        build = {"cabinet": lambda: F.cabinet(r, M), "bookshelf": lambda: F.bookshelf(r, M),
                 "refrigerator": lambda: F.refrigerator(r, M), "toilet": lambda: F.toilet(r, M),
                 "sink": lambda: F.sink(r, M), "otherfurniture": lambda: F.otherfurniture(r, M),
                 "chair": lambda: F.chair(r, M), "plant": lambda: F.plant(r, M)}[kind]
        obj = build()
        if kind in ("chair", "otherfurniture", "plant") and r.uniform() < 0.35:
            return self.free_standing(obj, wall_gap=0.6) is not None
        return self.against_wall(obj) is not None

    # --- whole room ------------------------------------------------------------------
    PROGRAMS = {
        "living": [("sofa", 0.9), ("table", 0.45), ("bookshelf", 0.6), ("cabinet", 0.6), ("picture", 0.9),
                   ("picture", 0.5), ("window", 0.9), ("window", 0.4), ("otherfurniture", 0.7),
                   ("otherfurniture", 0.4), ("chair", 0.4), ("desk", 0.2), ("plant", 0.5), ("rug", 0.5),
                   ("picture", 0.25), ("bookshelf", 0.2), ("curtain", 0.1)],
        "bedroom": [("bed", 1.0), ("cabinet", 0.8), ("desk", 0.5), ("picture", 0.7), ("picture", 0.4),
                    ("window", 0.9), ("window", 0.3), ("bookshelf", 0.35), ("otherfurniture", 0.5),
                    ("otherfurniture", 0.3), ("chair", 0.35), ("rug", 0.4), ("plant", 0.3), ("cabinet", 0.25),
                    ("sofa", 0.1)],
        "kitchen": [("counter", 1.0), ("wall_cabinet", 0.8), ("counter", 0.6), ("wall_cabinet", 0.5),
                    ("refrigerator", 0.9), ("cabinet", 0.5), ("table", 0.7), ("window", 0.9), ("picture", 0.4),
                    ("otherfurniture", 0.6), ("sink", 0.15), ("chair", 0.25), ("plant", 0.4),
                    ("window", 0.25), ("bookshelf", 0.1)],
        "bathroom": [("toilet", 1.0), ("sink", 1.0), ("bath", 0.8), ("wall_cabinet", 0.6), ("cabinet", 0.5),
                     ("window", 0.6), ("picture", 0.35), ("counter", 0.25), ("otherfurniture", 0.5),
                     ("curtain", 0.15), ("plant", 0.25)],
        "office": [("desk", 1.0), ("desk", 0.6), ("desk", 0.3), ("bookshelf", 0.9), ("bookshelf", 0.5),
                   ("cabinet", 0.7), ("table", 0.35), ("window", 0.9), ("window", 0.4), ("picture", 0.5),
                   ("otherfurniture", 0.6), ("sofa", 0.25), ("refrigerator", 0.12), ("plant", 0.4),
                   ("chair", 0.3), ("wall_cabinet", 0.15), ("otherfurniture", 0.3)],
    }

    def furnish(self):
        r = self.rng
        # The door first: it constrains the walls most.
        self.on_wall(F.door(r, self.M), keepout=0.9)
        program = [k for k, p in self.PROGRAMS[self.type] if r.uniform() < p]
        # Bigger rooms hold more: a few extra smaller pieces per 8 m^2 of floor.
        extras = ["otherfurniture", "plant", "chair", "picture", "cabinet", "bookshelf", "otherfurniture"]
        n_extra = int(r.poisson(max(0.0, self.W * self.D / 8.0 - 1.5)))
        program += [extras[int(r.integers(len(extras)))] for _ in range(n_extra)]
        wall_items = {"window", "picture", "wall_cabinet", "curtain", "rug"}
        for kind in program:
            if len(self.objects) >= 16:
                break
            if kind not in wall_items and self._free_area() < self._min_free:
                continue  # keep room for the camera to walk around
            if kind == "table":
                self.table_set(coffee=False, chairs=int(r.integers(1, 5)))
            elif kind == "desk":
                self.desk_set()
            elif kind == "sofa":
                self.sofa_set()
            elif kind == "bed":
                self.bed_set()
            elif kind == "window":
                self.window_set()
            elif kind == "bath":
                self.bath_set()
            elif kind == "counter":
                self.counter_set()
            elif kind == "wall_cabinet":
                self.wall_cabinet()
            elif kind == "picture":
                self.on_wall(F.picture(r, self.M))
            elif kind == "curtain":
                cu = F.curtain(r, self.M, top=self.H - 0.1)
                self.on_wall(cu, keepout=0.2)
            elif kind == "rug":
                self._rug()
            else:
                self.simple(kind)

    @property
    def _min_free(self) -> float:
        return min(0.15 * self.W * self.D, 3.0)

    def _free_area(self, clearance: float = 0.65) -> float:
        """Area (m^2) of the largest floor region at least `clearance` from everything."""
        ok = self.grid.clearance() >= clearance
        lab, n = ndimage.label(ok)
        if n == 0:
            return 0.0
        return float(np.bincount(lab.ravel())[1:].max()) * CELL * CELL

    def _rug(self):
        r = self.rng
        W, D = r.uniform(1.2, 2.5), r.uniform(0.8, 1.8)
        # Rugs go under furniture, so they ignore the occupancy grid but stay in the room.
        if self.W - 1.2 < W or self.D - 1.2 < D:   # no room for it (checked before drawing a place)
            return
        for _ in range(20):
            x, y = r.uniform(0.6 + W / 2, self.W - 0.6 - W / 2), r.uniform(0.6 + D / 2, self.D - 0.6 - D / 2)
            m = self.grid.cells(x, y, 0.0, W / 2, D / 2)
            if (self.grid.occ[m] < 0).any():
                continue
            rug = F.rug(r, self.M, W, D)
            self.B.add(rug.parts, (x, y, 0.0), 0.0, rug.label)
            return

    def lights(self):
        """Ambient, sun, floor bounce and 1-2 ceiling lamps; scalar intensities, one tint."""
        r = self.rng
        warm = r.uniform() < 0.6
        tint = np.array([1.0, 0.96, 0.9]) if warm else np.array([0.94, 0.97, 1.0])
        tint = tint * (1 + r.uniform(-0.02, 0.02, 3))
        amb = r.uniform(0.45, 0.6)
        el = np.radians(r.uniform(30, 70))
        az = r.uniform(0, 2 * np.pi)
        sun = np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)])
        # The sun (or a window) from above, and light bounced off the floor from below.
        directional = [(sun, r.uniform(0.22, 0.38)), (np.array([0.0, 0.0, -1.0]), r.uniform(0.08, 0.16))]
        points = []
        clear = self.grid.clearance()
        n = 1 if self.W * self.D < 20 else 2
        lamp_m = self.M.lamp()
        cord = self.M.paint(base=(0.2, 0.2, 0.2))
        for _ in range(n):
            ok = np.argwhere(clear > 0.3) if (clear > 0.3).any() else np.argwhere(self.grid.occ >= 0)
            i, j = ok[int(r.integers(len(ok)))]
            x, y = self.grid.X[i, j], self.grid.Y[i, j]
            drop = r.uniform(0.1, 0.5)
            z = self.H - drop
            points.append((np.array([x, y, z - 0.15]), r.uniform(0.35, 0.6), r.uniform(2.0, 3.0)))
            rad = r.uniform(0.12, 0.25)
            self.B.add([ellipsoid((0, 0, 0), (rad, rad, rad * r.uniform(0.4, 0.8)), lamp_m, label=UNLABELLED),
                        cylinder((0, 0, drop / 2), 0.006, drop / 2, cord, label=UNLABELLED)], (x, y, z), 0.0, UNLABELLED)
        return {"ambient": amb, "directional": directional, "point": points, "tint": tint}

    def build(self) -> Scene:
        self.shell()
        self.furnish()
        lights = self.lights()
        clear = self.grid.clearance()
        labels = sorted({o["label"] for o in self.objects} | {CLASS_ID["wall"], CLASS_ID["floor"]})
        info = {
            "seed": self.seed, "room_type": self.type, "shape": self.shape,
            "partition": getattr(self, "partition", None),
            "size": (self.W, self.D, self.H), "polygon": self.poly, "height": self.H,
            "lights": lights, "ao_boxes": np.array(self.ao_boxes, float).reshape(-1, 6),
            "grid_origin": self.grid.origin, "grid_cell": CELL, "clearance": clear,
            "pois": np.array(self.pois, float).reshape(-1, 3), "objects": self.objects,
            "labels_present": labels,
        }
        return self.B.build(info)


def generate_scene(seed: int, room_type: Optional[str] = None) -> Scene:
    """A furnished room, fully determined by the seed."""
    return RoomGen(seed, room_type).build()
