"""Pose-graph optimisation of the keyframe graph with gtsam (Levenberg-Marquardt).

Odometry edges carry plain Gaussian noise; loop edges a robust kernel (Cauchy or Huber)
so one wrong loop that slipped through verification bends the graph far less than a
squared loss would. The oldest keyframe is fixed (the gauge). Runs on numpy copies
(KeyframeGraph.snapshot), so it can run on a background thread.
"""
from __future__ import annotations

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
