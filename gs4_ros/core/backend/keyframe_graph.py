"""The keyframe graph: keyframe poses, their stored low-resolution images, and the edges
(odometry between consecutive keyframes: the tracker's and, where both carry one, an
external odometry's; verified loop closures) that the pose graph optimises. Plain numpy
float64 so the optimiser thread never touches the GPU.

Edge convention: an edge (i, j) measures T_ij = T_i^-1 T_j (keyframe j in keyframe i's
camera frame); its 6x6 information is in the tangent of the error at j, twist order
(rho, phi) like core.se3 (pose_graph converts to gtsam's (phi, rho)).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np


@dataclass
class KeyframeNode:
    id: int
    frame_index: int
    timestamp: float
    pose: np.ndarray                       # 4x4 camera-to-world, current estimate
    rgb: Optional[np.ndarray] = None       # h x w x 3 uint8 (downsampled), None once evicted
    depth: Optional[np.ndarray] = None     # h x w float32 metres
    K: Optional[np.ndarray] = None         # 3x3 of the stored size
    features: Optional[object] = None      # loop_detector.KeyframeFeatures, filled lazily
    odom_pose: Optional[np.ndarray] = None  # 4x4 camera-to-odom of an external odometry, if any
    odom_covariance: Optional[np.ndarray] = None  # its 6x6 (position, rotation; odom axes), if any


@dataclass
class Edge:
    i: int
    j: int
    T_ij: np.ndarray                       # 4x4 measurement, pose of j in i's frame
    information: np.ndarray                # 6x6, (rho, phi)
    kind: str = "odom"                     # odom (tracker) | odom_prior (external) | loop | rejected
    stats: Dict[str, float] = field(default_factory=dict)


def relative(Ti: np.ndarray, Tj: np.ndarray) -> np.ndarray:
    """T_i^-1 T_j for rigid 4x4 transforms."""
    R, t = Ti[:3, :3], Ti[:3, 3]
    inv = np.eye(4)
    inv[:3, :3] = R.T
    inv[:3, 3] = -R.T @ t
    return inv @ Tj


def skew(v) -> np.ndarray:
    """[v]x, the 3x3 matrix of the cross product v x . (numpy; core.se3.skew is torch)."""
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]], dtype=np.float64)


def carry_covariance(cov: np.ndarray, v) -> np.ndarray:
    """A pose covariance (position, rotation about fixed axes, 6x6) moved to a point `v`
    away that turns with the pose: a rotation error e moves it by e x v, so the covariance
    becomes J cov J^T with J = [[I, -[v]x], [0, I]] (first order)."""
    J = np.eye(6)
    J[:3, 3:] = -skew(v)
    return J @ np.asarray(cov, dtype=np.float64) @ J.T


def adjoint(T: np.ndarray) -> np.ndarray:
    """6x6 adjoint of T for (rho, phi) twists: exp(Ad_T xi) T = T exp(xi)."""
    R, t = T[:3, :3], T[:3, 3]
    tx = skew(t)
    A = np.zeros((6, 6))
    A[:3, :3] = R
    A[:3, 3:] = tx @ R
    A[3:, 3:] = R
    return A


def information_at_child(info_parent: np.ndarray, T_ij: np.ndarray) -> np.ndarray:
    """The tracker perturbs a relative pose on the left (in the reference camera i's frame);
    graph edges perturb on the right (in j's frame): xi_i = Ad_T xi_j, so the information
    becomes Ad^T I Ad."""
    A = adjoint(T_ij)
    return A.T @ info_parent @ A


def odometry_step_information(cov_i: np.ndarray, cov_j: np.ndarray, T_i: np.ndarray, T_j: np.ndarray,
                              fallback: np.ndarray) -> Tuple[np.ndarray, bool]:
    """(information, used) of an odometry edge i -> j from the odometry's pose covariances
    at i and j (6x6 over position and rotation about the odom frame's axes, as
    nav_msgs/Odometry carries them) and its poses there (4x4, odom frame).

    A dead-reckoning odometry's covariance at j is its covariance at i carried along the
    step (a heading error at i swings the step, d = p_j - p_i, by its lever arm: J Σ_i J^T,
    J = [[I, -[d]x], [0, I]]) plus what the step itself added; that remainder is the edge's
    covariance, moved into j's frame (the graph perturbs edges on the right). Nothing in
    the message says how it was made, so directions where nothing was added (a constant
    covariance, zeros, a 2D odometry's fixed z / roll / pitch) take `fallback`'s (the
    configured sigmas), and a remainder that still is not positive definite gives
    `fallback` whole (used False)."""
    d = np.asarray(T_j, dtype=np.float64)[:3, 3] - np.asarray(T_i, dtype=np.float64)[:3, 3]
    D = cov_j - carry_covariance(cov_i, d)
    D = 0.5 * (D + D.T)
    fb_var = 1.0 / np.diag(fallback)
    grown = np.diag(D) > 1e-12
    if not grown.any():
        return fallback.copy(), False
    D[~grown, :] = 0.0
    D[:, ~grown] = 0.0
    D[~grown, ~grown] = fb_var[~grown]
    if np.linalg.eigvalsh(D).min() <= 1e-15:
        return fallback.copy(), False
    B = np.zeros((6, 6))
    B[:3, :3] = B[3:, 3:] = np.asarray(T_j, dtype=np.float64)[:3, :3].T
    C = B @ D @ B.T
    return np.linalg.inv(0.5 * (C + C.T)), True


def normalize_information(info: Optional[np.ndarray], sigma: float, max_condition: float = 1e4) -> np.ndarray:
    """Information for the graph from a Gauss-Newton J^T J: keep its shape (which
    directions the images constrain, e.g. weak along a bare wall), but set its scale so
    the translation block's mean variance is sigma^2. Raw J^T J counts every pixel as an
    independent measurement and is orders of magnitude overconfident, and odometry and
    loop edges need one common scale. Eigenvalues are floored at max / max_condition so
    no direction is free."""
    if info is None or not np.isfinite(info).all() or np.trace(info[:3, :3]) <= 0:
        return np.eye(6) / sigma ** 2
    A = 0.5 * (info + info.T)
    A = A * (3.0 / (np.trace(A[:3, :3]) * sigma ** 2))
    w, V = np.linalg.eigh(A)
    w = np.clip(w, w.max() / max_condition, None)
    return (V * w) @ V.T


class KeyframeGraph:
    """Thread-safe container; `snapshot()` hands the optimiser a consistent copy."""

    def __init__(self, max_images: int = 2000):
        self.nodes: Dict[int, KeyframeNode] = {}
        self.edges: List[Edge] = []
        self.max_images = int(max_images)
        self.lock = threading.RLock()

    def __len__(self):
        return len(self.nodes)

    def add_keyframe(self, node: KeyframeNode):
        with self.lock:
            self.nodes[node.id] = node
            with_img = [k for k in sorted(self.nodes) if self.nodes[k].rgb is not None]
            for k in with_img[: max(0, len(with_img) - self.max_images)]:
                n = self.nodes[k]
                n.rgb = n.depth = None
                n.features = None

    def add_edge(self, edge: Edge):
        with self.lock:
            self.edges.append(edge)

    def loop_edges(self) -> List[Edge]:
        with self.lock:
            return [e for e in self.edges if e.kind == "loop"]

    def poses(self) -> Dict[int, np.ndarray]:
        with self.lock:
            return {k: n.pose.copy() for k, n in self.nodes.items()}

    def set_pose(self, kf_id: int, pose: np.ndarray):
        with self.lock:
            self.nodes[kf_id].pose = np.array(pose, dtype=np.float64)

    def correct(self, corrections: Dict[int, np.ndarray]):
        """Left-multiply world corrections C (new = C @ old) onto node poses."""
        with self.lock:
            for k, C in corrections.items():
                if k in self.nodes:
                    self.nodes[k].pose = C @ self.nodes[k].pose

    def snapshot(self):
        """(poses, edges) copies for an optimisation run outside the lock."""
        with self.lock:
            return ({k: n.pose.copy() for k, n in self.nodes.items()},
                    [Edge(e.i, e.j, e.T_ij.copy(), e.information.copy(), e.kind, dict(e.stats))
                     for e in self.edges])
