"""Shared pieces of the ROS tests: an isolated DDS domain, a small synthetic RGB-D
sequence, a colcon-built node process and helpers to wait for messages.

Import this module before rclpy is initialised: it pins ROS_DOMAIN_ID to a value derived
from the test process id (parallel sessions do not hear each other) and keeps DDS
discovery on the loopback interface.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_LOCALHOST_ONLY", None)  # deprecated in Jazzy; conflicts with the above
os.environ["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
os.environ["PYTHONUNBUFFERED"] = "1"

from gs4_ros.core.frame import Intrinsics, RGBDFrame  # noqa: E402


# --- a small synthetic sequence -------------------------------------------------------------

def _room_frames(n: int, width: int, height: int, seed: int = 0) -> List[RGBDFrame]:
    """Ray-cast a textured box room with two boxes in it along a smooth camera arc.

    Used only when the project's synthetic dataset (gs4_ros.io.datasets) is not available,
    so the ROS tests do not depend on another module's progress.
    """
    rng = np.random.default_rng(seed)
    fx = fy = 0.8 * width
    intr = Intrinsics(fx, fy, (width - 1) / 2, (height - 1) / 2, width, height)
    lo, hi = np.array([-2.5, -1.2, -2.5]), np.array([2.5, 1.4, 2.5])   # y down (floor at +1.4)
    boxes = [(np.array([-0.6, 0.6, 0.6]), np.array([0.2, 1.4, 1.2]), 6),
             (np.array([0.5, 0.2, -0.2]), np.array([1.1, 1.4, 0.3]), 2)]
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    rays_c = np.stack([(u - intr.cx) / fx, (v - intr.cy) / fy, np.ones_like(u, float)], -1)
    phase = rng.uniform(0, 1, 6)
    frames = []
    for k in range(n):
        a = 0.3 * np.sin(k / 40.0)
        c = np.array([0.6 * np.sin(a), -0.1 + 0.05 * np.sin(0.5 * a), -2.0 + 0.4 * (1 - np.cos(a))])
        yaw = 0.5 * a
        R = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
        pitch = 0.12
        Rx = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
        R = R @ Rx
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = R, c
        d = rays_c @ R.T                                              # world dirs, z_cam = 1
        with np.errstate(divide="ignore", invalid="ignore"):
            t_room = np.min(np.where(d > 0, (hi - c) / d, np.where(d < 0, (lo - c) / d, np.inf)), -1)
            axis = np.argmin(np.where(d > 0, (hi - c) / d, np.where(d < 0, (lo - c) / d, np.inf)), -1)
        t = t_room
        label = np.where(axis == 1, np.where(d[..., 1] > 0, 1, 0), 0).astype(np.uint8)  # floor / wall
        for b0, b1, lab in boxes:
            with np.errstate(divide="ignore", invalid="ignore"):
                t1, t2 = (b0 - c) / d, (b1 - c) / d
            tn = np.max(np.minimum(t1, t2), -1)
            tf = np.min(np.maximum(t1, t2), -1)
            hit = (tn < tf) & (tn > 0) & (tn < t)
            t = np.where(hit, tn, t)
            label = np.where(hit, lab, label)
        p = c + d * t[..., None]
        f = 3.0
        tex = (0.5 + 0.25 * np.sin(f * p[..., 0] + 6 * phase[0]) * np.cos(f * p[..., 2] + 6 * phase[1])
               + 0.25 * np.sin(2.3 * f * p[..., 1] + 6 * phase[2]))
        checker = ((np.floor(2 * p[..., 0]) + np.floor(2 * p[..., 1]) + np.floor(2 * p[..., 2])) % 2)
        base = np.array([[0.8, 0.7, 0.6], [0.5, 0.4, 0.3], [0.3, 0.5, 0.7], [0.6, 0.3, 0.3],
                         [0.4, 0.6, 0.4], [0.7, 0.7, 0.3], [0.3, 0.3, 0.6], [0.5, 0.5, 0.5]])
        col = base[label % len(base)] * (0.55 + 0.3 * tex[..., None] + 0.15 * checker[..., None])
        rgb = (np.clip(col, 0, 1) * 255).astype(np.uint8)
        depth = t.astype(np.float32)                                  # t is z because z_cam = 1
        frames.append(RGBDFrame(k, 1000.0 + k / 30.0, rgb, depth, intr, gt_pose=T, labels=label))
    return frames


def synthetic_frames(n: int = 30, width: int = 160, height: int = 120, seed: int = 3
                     ) -> List[RGBDFrame]:
    """The project's synthetic sequence when it exists, else the built-in room."""
    try:
        from gs4_ros.io.datasets import open_dataset
    except ImportError:
        return _room_frames(n, width, height)
    seq = open_dataset(f"synthetic:seed={seed},frames={n}", width=width, height=height)
    return [seq[i] for i in range(len(seq))]


# --- colcon ---------------------------------------------------------------------------------

def colcon_build(ws: Path) -> Path:
    """Build the package with colcon in `ws` (repo symlinked into ws/src); returns install/."""
    src = ws / "src"
    src.mkdir(parents=True, exist_ok=True)
    link = src / "gs4_ros"
    if not link.exists():
        link.symlink_to(REPO)
    env = dict(os.environ)
    env.pop("AMENT_PREFIX_PATH", None)
    cmd = [sys.executable, "-m", "colcon", "build",
           "--build-base", str(ws / "build"), "--install-base", str(ws / "install"),
           "--base-paths", str(src), "--event-handlers", "console_cohesion-"]
    r = subprocess.run(cmd, cwd=ws, env=env, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"colcon build failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return ws / "install"


class NodeProcess:
    """The installed gs4_node executable as a child process, its log captured to a file."""

    def __init__(self, exe: Path, params_file: Optional[Path], log_path: Path,
                 extra_args: Optional[List[str]] = None, env: Optional[dict] = None):
        self.log_path = log_path
        args = [str(exe), "--ros-args"]
        if params_file is not None:
            args += ["--params-file", str(params_file)]
        args += list(extra_args or [])
        self._log = open(log_path, "w")
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=e,
                                     start_new_session=True)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_log(self, text: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.log():
                return True
            if not self.alive():
                return text in self.log()
            time.sleep(0.1)
        return False

    def stop(self, timeout: float = 15.0) -> int:
        from gs4_ros.ros.player import stop_process

        rc = stop_process(self.proc, timeout)
        self._log.close()
        return rc


# --- waiting on DDS -------------------------------------------------------------------------

def spin_until(executor, cond: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        executor.spin_once(timeout_sec=step)
    return cond()


def call_service(node, executor, srv_type, name: str, timeout: float = 60.0, request=None):
    cli = node.create_client(srv_type, name)
    try:
        if not spin_until(executor, cli.service_is_ready, 20.0):
            raise TimeoutError(f"service {name} not available")
        fut = cli.call_async(request or srv_type.Request())
        if not spin_until(executor, fut.done, timeout):
            raise TimeoutError(f"service {name} did not answer within {timeout} s")
        return fut.result()
    finally:
        node.destroy_client(cli)


def which_colcon() -> bool:
    try:
        import colcon_core  # noqa: F401
    except ImportError:
        return shutil.which("colcon") is not None
    return True
