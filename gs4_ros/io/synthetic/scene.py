"""Scene description: solid primitives (boxes, cylinders, ellipsoids) with materials.

Every surface in a synthetic room is one of three analytic primitives, so ray casting is
exact and cheap. A primitive is stored as a kind, a centre, a local-to-world rotation and
half extents (box: half sizes; cylinder: radius, radius, half height along local z;
ellipsoid: semi-axes). Objects are composed in their own frame (x width, y depth with +y
the front, z up) and placed with a yaw about world z.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import torch

BOX, CYLINDER, ELLIPSOID = 0, 1, 2
KIND_NAMES = {BOX: "box", CYLINDER: "cylinder", ELLIPSOID: "ellipsoid"}


def rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


@dataclass
class Part:
    """One primitive in an object's local frame."""

    kind: int
    centre: np.ndarray
    half: np.ndarray
    rot: np.ndarray
    mat: int
    label: Optional[int] = None  # None: the object's label


def box(centre, half, mat, yaw=0.0, label=None) -> Part:
    return Part(BOX, np.asarray(centre, float), np.asarray(half, float), rot_z(yaw), mat, label)


def cylinder(centre, radius, half_height, mat, axis="z", yaw=0.0, label=None) -> Part:
    """Cylinder along local z, or along x / y when lying down."""
    R = {"z": np.eye(3), "x": rot_y(np.pi / 2), "y": rot_x(np.pi / 2)}[axis]
    return Part(CYLINDER, np.asarray(centre, float), np.array([radius, radius, half_height], float),
                rot_z(yaw) @ R, mat, label)


def ellipsoid(centre, semi, mat, yaw=0.0, label=None) -> Part:
    return Part(ELLIPSOID, np.asarray(centre, float), np.asarray(semi, float), rot_z(yaw), mat, label)


@dataclass
class Material:
    kind: int  # texture kind, see textures.py
    colours: np.ndarray  # [3, 3] colours a, b, c in [0, 1]
    scale: float = 1.0
    params: np.ndarray = field(default_factory=lambda: np.zeros(4))
    seed: int = 0
    emissive: float = 0.0  # > 0: self-lit (window views), gain on the texture
    glass: bool = False  # a depth sensor sees through it: no depth here


@dataclass
class Scene:
    """Numpy description of a room; `tensors(device)` gives the ray caster's view."""

    kind: np.ndarray  # [P] int64, sorted by kind so pairs group by kind
    centre: np.ndarray  # [P, 3]
    rot: np.ndarray  # [P, 3, 3] local -> world
    half: np.ndarray  # [P, 3]
    mat: np.ndarray  # [P]
    label: np.ndarray  # [P] uint8
    inst: np.ndarray  # [P] int32, 0 = room shell
    materials: List[Material]
    info: Dict = field(default_factory=dict)  # room outline, lights, footprints, path helpers
    _cache: Dict = field(default_factory=dict, repr=False)

    @property
    def num_prims(self) -> int:
        return int(self.kind.size)

    def corners(self) -> np.ndarray:
        """[P, 8, 3] world corners of every primitive's oriented bounding box."""
        sgn = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
        local = sgn[None] * self.half[:, None, :]
        return self.centre[:, None, :] + np.einsum("pij,pkj->pki", self.rot, local)

    def tensors(self, device="cpu") -> Dict[str, torch.Tensor]:
        """Torch copies on a device (cached), in float32."""
        key = str(torch.device(device))
        if key in self._cache:
            return self._cache[key]
        f = lambda a: torch.as_tensor(np.asarray(a, np.float32), device=device)
        mats = self.materials
        t = {
            "kind": torch.as_tensor(self.kind, dtype=torch.int64, device=device),
            "centre": f(self.centre),
            "rot": f(self.rot),
            "half": f(self.half),
            "corners": f(self.corners()),
            "mat": torch.as_tensor(self.mat, dtype=torch.int64, device=device),
            "label": torch.as_tensor(self.label.astype(np.int64), device=device),
            "inst": torch.as_tensor(self.inst.astype(np.int64), device=device),
            "m_kind": torch.as_tensor([m.kind for m in mats], dtype=torch.int64, device=device),
            "m_col": f(np.stack([m.colours for m in mats])),
            "m_scale": f([m.scale for m in mats]),
            "m_params": f(np.stack([m.params for m in mats])),
            "m_seed": torch.as_tensor([m.seed for m in mats], dtype=torch.int64, device=device),
            "m_emissive": f([m.emissive for m in mats]),
            "m_glass": torch.as_tensor([m.glass for m in mats], dtype=torch.bool, device=device),
        }
        # Packed per-material and per-primitive attributes: one gather per pixel each.
        t["m_pack"] = torch.cat([t["m_kind"][:, None].float(), t["m_col"].reshape(-1, 9), t["m_scale"][:, None],
                                 t["m_params"], t["m_seed"][:, None].float(), t["m_emissive"][:, None],
                                 t["m_glass"][:, None].float()], 1)
        t["p_pack"] = torch.stack([t["mat"], t["label"], t["inst"]], 1)
        kinds = self.kind
        t["kind_ranges"] = [(k, int(np.searchsorted(kinds, k, "left")), int(np.searchsorted(kinds, k, "right")))
                            for k in (BOX, CYLINDER, ELLIPSOID)]
        self._cache[key] = t
        return t


class SceneBuilder:
    """Collects materials and placed objects, then freezes them into a Scene."""

    def __init__(self):
        self.materials: List[Material] = []
        self._parts: List[tuple] = []  # (kind, centre, rot, half, mat, label, inst)
        self._next_inst = 1

    def material(self, kind: int, a, b=None, c=None, scale=1.0, params=(0, 0, 0, 0), seed=0,
                 emissive=0.0, glass=False) -> int:
        a = np.clip(np.asarray(a, float), 0, 1)
        b = a if b is None else np.clip(np.asarray(b, float), 0, 1)
        c = b if c is None else np.clip(np.asarray(c, float), 0, 1)
        p = np.zeros(4)
        p[:len(params)] = params
        self.materials.append(Material(kind, np.stack([a, b, c]), float(scale), p, int(seed),
                                       float(emissive), bool(glass)))
        return len(self.materials) - 1

    def add(self, parts: List[Part], origin, yaw: float, label: int, inst: Optional[int] = None) -> int:
        """Place an object's parts at origin (x, y, z of its local origin) with a yaw."""
        if inst is None:
            inst = self._next_inst
            self._next_inst += 1
        R0 = rot_z(yaw)
        o = np.asarray(origin, float)
        for p in parts:
            self._parts.append((p.kind, o + R0 @ p.centre, R0 @ p.rot, np.abs(p.half), p.mat,
                                label if p.label is None else p.label, inst))
        return inst

    def build(self, info: Optional[dict] = None) -> Scene:
        order = sorted(range(len(self._parts)), key=lambda i: (self._parts[i][0], i))
        P = [self._parts[i] for i in order]
        return Scene(
            kind=np.array([p[0] for p in P], np.int64),
            centre=np.array([p[1] for p in P], float).reshape(-1, 3),
            rot=np.array([p[2] for p in P], float).reshape(-1, 3, 3),
            half=np.maximum(np.array([p[3] for p in P], float).reshape(-1, 3), 1e-4),
            mat=np.array([p[4] for p in P], np.int64),
            label=np.array([p[5] for p in P], np.uint8),
            inst=np.array([p[6] for p in P], np.int32),
            materials=list(self.materials),
            info=dict(info or {}),
        )
