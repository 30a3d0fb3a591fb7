"""Pose-graph optimisation of the keyframe graph with gtsam (Levenberg-Marquardt).

Odometry edges (the tracker's, "odom", and an external odometry's, "odom_prior") carry
plain Gaussian noise; loop edges a robust kernel (Cauchy or Huber) so one wrong loop
that slipped through verification bends the graph far less than a squared loss would.
The oldest keyframe is fixed (the gauge). Runs on numpy copies (KeyframeGraph.snapshot),
so it can run on a background thread, and by default in a child process (GraphProcess)
because gtsam keeps the GIL while it works.
"""
from __future__ import annotations

import pickle
import struct
import threading
from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np

from .keyframe_graph import Edge

# core.se3 twists are (rho, phi); gtsam's Pose3 tangent is (phi, rho).
_PERM = np.array([3, 4, 5, 0, 1, 2])


def to_gtsam_information(info: np.ndarray) -> np.ndarray:
    return info[np.ix_(_PERM, _PERM)]


@dataclass
class GraphResult:
    poses: Dict[int, np.ndarray]            # optimised 4x4 camera-to-world per keyframe
    initial_error: float
    final_error: float
    iterations: int
    loop_chi2: List[float] = field(default_factory=list)   # whitened squared error per loop edge
    outliers: List[int] = field(default_factory=list)      # indices into `edges` of rejected loops


def _build(poses, edges, robust: str, robust_k: float, skip=()):
    import gtsam

    graph = gtsam.NonlinearFactorGraph()
    anchor = min(poses)
    graph.add(gtsam.PriorFactorPose3(anchor, gtsam.Pose3(np.asarray(poses[anchor], dtype=np.float64)),
                                     gtsam.noiseModel.Isotropic.Sigma(6, 1e-6)))
    loops = []
    for n, e in enumerate(edges):
        if e.kind == "rejected" or e.i not in poses or e.j not in poses or n in skip:
            continue
        noise = gtsam.noiseModel.Gaussian.Information(to_gtsam_information(e.information))
        if e.kind == "loop" and robust != "none":
            if robust == "cauchy":
                est = gtsam.noiseModel.mEstimator.Cauchy.Create(robust_k)
            elif robust == "huber":
                est = gtsam.noiseModel.mEstimator.Huber.Create(robust_k)
            else:
                raise ValueError(f"unknown robust kernel {robust!r}; use cauchy, huber or none")
            noise = gtsam.noiseModel.Robust.Create(est, noise)
        f = gtsam.BetweenFactorPose3(int(e.i), int(e.j), gtsam.Pose3(np.asarray(e.T_ij, dtype=np.float64)), noise)
        graph.add(f)
        if e.kind == "loop":
            loops.append((n, f, e))
    return graph, loops


def _solve(graph, initial, iterations):
    import gtsam

    params = gtsam.LevenbergMarquardtParams()
    params.setMaxIterations(int(iterations))
    params.setRelativeErrorTol(1e-6)
    opt = gtsam.LevenbergMarquardtOptimizer(graph, initial, params)
    return opt.optimize(), int(opt.iterations())


def optimize(poses: Dict[int, np.ndarray], edges: List[Edge], robust: str = "cauchy",
             robust_k: float = 1.0, iterations: int = 50, max_chi2: float = float("inf")) -> GraphResult:
    """Optimise keyframe poses given the edges; the oldest keyframe is held fixed.

    A robust kernel evaluated at the drifted initial estimate would see a correct loop
    as an outlier (its residual is the whole accumulated drift) and ignore it, so the
    solve starts with every edge Gaussian (L2), then re-solves from that solution with
    the robust kernel on loop edges: a loop consistent with the rest now has a small
    residual and full weight, one that disagrees with the others keeps a large residual
    and is down-weighted. Loops whose whitened squared error is still above max_chi2 are
    reported as outliers and the graph is solved once more without them.
    """
    import gtsam

    initial = gtsam.Values()
    for k, T in poses.items():
        initial.insert(int(k), gtsam.Pose3(np.asarray(T, dtype=np.float64)))
    g_l2, _ = _build(poses, edges, "none", robust_k)
    e0 = g_l2.error(initial)
    start, it1 = _solve(g_l2, initial, iterations)
    graph, loops = _build(poses, edges, robust, robust_k)
    result, it2 = _solve(graph, start, iterations)

    def chi2_of(res, loops_):
        out = []
        for n, f, e in loops_:
            err = f.unwhitenedError(res)
            out.append(float(err @ to_gtsam_information(e.information) @ err))
        return out

    chi2 = chi2_of(result, loops)
    outliers = [n for (n, _, _), c in zip(loops, chi2) if c > max_chi2]
    if outliers:
        g_l2, _ = _build(poses, edges, "none", robust_k, skip=set(outliers))
        start, _ = _solve(g_l2, initial, iterations)
        graph, loops = _build(poses, edges, robust, robust_k, skip=set(outliers))
        result, it3 = _solve(graph, start, iterations)
        it2 += it3
        chi2 = chi2_of(result, loops)
    out = {int(k): result.atPose3(int(k)).matrix() for k in poses}
    return GraphResult(out, float(e0), float(graph.error(result)), it1 + it2, chi2, outliers)


class GraphProcess:
    """`optimize` in a child process. gtsam holds the GIL while it optimises (a 3000-node
    graph stalled the tracking thread's Python for 230 ms in one call), so the back-end
    thread alone would not keep tracking free; a child process does. The child is a
    plain `python -m` of this module (no multiprocessing: spawn would re-import the
    caller's __main__) exchanging pickled requests over pipes."""

    def __init__(self):
        self._proc = None
        self._lock = threading.Lock()

    def _start(self):
        import os
        import subprocess
        import sys

        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self._proc = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, env=env)

    def optimize(self, *args, **kwargs) -> GraphResult:
        with self._lock:
            for attempt in (0, 1):
                if self._proc is None or self._proc.poll() is not None:
                    self._start()
                try:
                    _send(self._proc.stdin, (args, kwargs))
                    ok, payload = _recv(self._proc.stdout)
                except (OSError, EOFError, pickle.UnpicklingError):
                    self.close_locked()
                    if attempt:
                        raise
                    continue
                if not ok:
                    raise RuntimeError(f"pose-graph process: {payload}")
                return payload
        raise RuntimeError("unreachable")

    def close_locked(self):
        p, self._proc = self._proc, None
        if p is not None:
            try:
                p.stdin.close()
                p.wait(timeout=5)
            except Exception:  # noqa: BLE001
                p.kill()

    def close(self):
        with self._lock:
            self.close_locked()


def _send(f, obj):
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(struct.pack("<Q", len(data)))
    f.write(data)
    f.flush()


def _recv(f):
    head = f.read(8)
    if len(head) < 8:
        raise EOFError("pose-graph pipe closed")
    (n,) = struct.unpack("<Q", head)
    data = f.read(n)
    if len(data) < n:
        raise EOFError("pose-graph pipe closed")
    return pickle.loads(data)


def _serve():
    import importlib
    import sys

    # Run as __main__, but optimise through the package module so results pickle under
    # its name (the parent has no __main__.GraphResult).
    mod = importlib.import_module("gs4_ros.core.backend.pose_graph")
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr          # stray prints must not corrupt the pipe
    while True:
        try:
            args, kwargs = _recv(inp)
        except EOFError:
            return
        try:
            reply = (True, mod.optimize(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 - reported to the parent
            reply = (False, f"{type(e).__name__}: {e}")
        _send(out, reply)


if __name__ == "__main__":
    _serve()
