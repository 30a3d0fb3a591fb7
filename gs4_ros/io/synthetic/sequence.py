"""A synthetic RGB-D sequence: one generated room, one camera path, frames on demand.

Everything is fixed by the seed: the room, the path and the sensor noise of every frame
(frame i does not depend on which frames were read before). Frames are rendered lazily,
so a long sequence costs nothing until it is read.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Optional

import numpy as np
import torch

from gs4_ros.core.frame import Intrinsics, RGBDFrame

from .camera_path import plan_loop, plan_wander, step_sizes
from .classes import SCANNET20_CLASSES
from .layout import generate_scene
from .raycast import cast_rays
from .render import render_clean
from .sensor import SensorModel

BASE_INTRINSICS = Intrinsics(525.0, 525.0, 319.5, 239.5, 640, 480)


@contextmanager
def torch_threads(n: Optional[int], device: torch.device):
    """Run CPU work with n intra-op threads, restoring the previous setting afterwards.

    The renderer is a long chain of small element-wise ops; on a 2-core machine that is
    busy with other work, torch's spinning worker threads make it 10-20x slower than one
    thread, so the generator uses one CPU thread unless told otherwise."""
    if n is None or device.type != "cpu" or torch.get_num_threads() == n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class SyntheticSequence:
    """Frames of a generated room seen along a hand-held path.

    Args:
        seed: fixes room, path and noise.
        n_frames: sequence length (30 Hz).
        width, height: image size; the 640x480 fx = fy = 525 camera is scaled to it.
        loop: a loop around the room that returns to its start view at the last frame.
        device: torch device for rendering ('cpu' or 'cuda').
        sensor: noise model (SensorModel.clean() for noise-free frames).
        room_type: living, bedroom, kitchen, bathroom or office (default: drawn by seed).
        cpu_threads: torch threads while rendering on the CPU (None: leave torch's setting).
    """

    def __init__(self, seed: int = 0, n_frames: int = 300, width: int = 640, height: int = 480,
                 loop: bool = False, device="cpu", sensor: Optional[SensorModel] = None,
                 room_type: Optional[str] = None, fps: float = 30.0, cpu_threads: Optional[int] = 1):
        if n_frames < 2:
            raise ValueError(f"a synthetic sequence needs at least 2 frames, got {n_frames}")
        self.seed = int(seed)
        self.n_frames = int(n_frames)
        self.loop = bool(loop)
        self.fps = float(fps)
        self.device = torch.device(device)
        self.cpu_threads = cpu_threads
        self.sensor = sensor or SensorModel()
        self.intrinsics = BASE_INTRINSICS if (width, height) == (640, 480) else BASE_INTRINSICS.scaled(width, height)
        self.scene = generate_scene(self.seed, room_type)
        with torch_threads(self.cpu_threads, torch.device("cpu")):
            self.poses = self._plan()
        self.timestamps = np.arange(self.n_frames) / self.fps

    @property
    def class_names(self):
        return list(SCANNET20_CLASSES)

    def __len__(self):
        return self.n_frames

    # -- path -------------------------------------------------------------------------
    def _plan(self) -> np.ndarray:
        """Plan a path; re-plan (new random stream) when the camera would come closer than
        about half a metre to what it looks at, or step faster than real 30 Hz data."""
        best, best_score = None, -np.inf
        for attempt in range(8):
            rng = np.random.default_rng([self.seed, 11, attempt])
            plan = plan_loop if self.loop else plan_wander
            poses = plan(self.scene, self.n_frames, rng, self.fps)
            dt, dr = step_sizes(poses)
            near_c, near_all = self.view_clearance(poses)
            score = min(near_c - 0.5, near_all - 0.35, 0.0) - 10 * max(dt.max() - 0.04, dr.max() - 2.0, 0.0)
            if score > best_score:
                best, best_score = poses, score
            if score >= 0:
                break
        return best

    def view_clearance(self, poses: np.ndarray, max_frames: int = 150, cap: float = 1.5):
        """(min distance along the central rays, min over a sparse ray grid) over the path,
        checked every few frames (the camera moves about a centimetre per frame); distances
        beyond `cap` metres read as cap."""
        step = max(1, -(-len(poses) // max_frames))
        P = torch.as_tensor(np.concatenate([poses[::step], poses[-1:]]), dtype=torch.float32)
        K = BASE_INTRINSICS
        us = torch.linspace(20, 620, 7)
        vs = torch.linspace(20, 460, 5)
        vv, uu = torch.meshgrid(vs, us, indexing="ij")
        d_cam = torch.stack([(uu - K.cx) / K.fx, (vv - K.cy) / K.fy, torch.ones_like(uu)], -1).reshape(-1, 3)
        central = ((uu - 320).abs() < 200) & ((vv - 240).abs() < 150)
        d_w = torch.einsum("fij,rj->fri", P[:, :3, :3], d_cam)
        o_w = P[:, None, :3, 3].expand_as(d_w)
        st = self.scene.tensors("cpu")
        t = cast_rays(st, o_w.reshape(-1, 3), d_w.reshape(-1, 3), max_t=cap).reshape(len(P), -1)
        t = t.clamp(max=cap)
        return float(t[:, central.reshape(-1)].min()), float(t.min())

    # -- frames -----------------------------------------------------------------------
    def render_clean(self, i: int):
        """Noise-free render of frame i as torch tensors on the device."""
        return render_clean(self.scene, self.poses[i], self.intrinsics, self.device)

    def frame(self, i: int) -> RGBDFrame:
        if not 0 <= i < self.n_frames:
            raise IndexError(f"frame {i} out of range for {self.n_frames} frames")
        with torch_threads(self.cpu_threads, self.device):
            clean = self.render_clean(i)
            rgb, depth = self.sensor.apply(clean, self.seed, i, float(self.timestamps[i]))
        np_ = lambda x: x.detach().cpu().numpy()
        meta = {
            "depth_clean": np_(clean["depth"]).astype(np.float32),
            "labels_clean": np_(clean["label"]),
            "instance": np_(clean["inst"]).astype(np.int32),
            "normal": np_(clean["normal"]).astype(np.float32),
            "rgb_clean": np_((clean["rgb"] * 255.0).round().clamp(0, 255).to(torch.uint8)),
            "seed": self.seed,
            "room_type": self.scene.info["room_type"],
        }
        return RGBDFrame(index=i, timestamp=float(self.timestamps[i]), rgb=np_(rgb), depth=np_(depth),
                         intrinsics=self.intrinsics, gt_pose=self.poses[i].copy(), labels=meta["labels_clean"].copy(),
                         meta=meta)

    def __getitem__(self, i: int) -> RGBDFrame:
        return self.frame(int(i))

    def with_size(self, width: int, height: int) -> "SyntheticSequence":
        """The same sequence rendered at another size (shares the scene and the path)."""
        other = object.__new__(SyntheticSequence)
        other.__dict__.update(self.__dict__)
        other.intrinsics = BASE_INTRINSICS.scaled(width, height)
        return other
