"""Loop-closure detection: appearance and pose-proximity candidates, verified with depth.

1. Candidates: ORB descriptors of every keyframe go into one brute-force Hamming index;
   a query keyframe's descriptors vote for the keyframes holding their nearest
   neighbours (a close match only), plus keyframes whose current pose estimate is near
   the query's. The last `min_keyframe_gap` keyframes are never candidates: they are
   linked by odometry already. A relocalisation query (a lost frame) ranks every indexed
   keyframe by votes alone.
2. Verification, strongest first: ratio-test matches -> cv2.solvePnPRansac on the
   candidate's depth-lifted 3D points and the query's 2D keypoints (inlier count, inlier
   ratio, mean reprojection error) -> dense refinement keyframe-to-keyframe with the
   same Gauss-Newton tracker as odometry, seeded by PnP (inlier fraction, rms depth
   residual, and the dense result must stay near PnP). Only a candidate that passes all
   three becomes a loop edge, with the dense solution as the measurement and its
   Gauss-Newton information.

Runs on numpy / CPU torch only, so it can live on the back-end thread.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
import torch

from ..config import BackendConfig, TrackingConfig
from ..geometry import backproject, normals_from_points
from ..tracker import RGBDTracker
from .keyframe_graph import KeyframeNode, information_at_child, normalize_information, relative

log = logging.getLogger(__name__)

FEATURE_MIN_WIDTH = 320     # smaller images are upsampled for ORB (its 31 px patch needs room)
MAX_HAMMING_VOTE = 40       # a descriptor votes only for a close nearest neighbour
RATIO = 0.8                 # Lowe's ratio test in pairwise matching


@dataclass
class KeyframeFeatures:
    keypoints: np.ndarray    # [N, 2] pixel coordinates in the stored keyframe image
    descriptors: np.ndarray  # [N, 32] uint8
    points: np.ndarray       # [N, 3] camera-frame 3D points (NaN where depth is invalid)


@dataclass
class Verification:
    accepted: bool
    candidate: int
    reason: str
    T_ij: Optional[np.ndarray] = None
    information: Optional[np.ndarray] = None
    stats: Dict[str, float] = field(default_factory=dict)


def extract_features(gray: np.ndarray, depth: np.ndarray, K: np.ndarray, n_features: int,
                     target_K: np.ndarray) -> KeyframeFeatures:
    """ORB keypoints/descriptors of `gray` (uint8, with intrinsics K), lifted to 3D with
    `depth` (same size), keypoints expressed in the pixel frame of `target_K`."""
    h, w = gray.shape
    s = max(1.0, FEATURE_MIN_WIDTH / w)
    img = gray if s == 1.0 else cv2.resize(gray, (int(round(w * s)), int(round(h * s))),
                                           interpolation=cv2.INTER_LINEAR)
    orb = cv2.ORB_create(nfeatures=int(n_features), fastThreshold=10)
    kps, des = orb.detectAndCompute(img, None)
    if des is None or not kps:
        return KeyframeFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), np.zeros((0, 3)))
    uv = np.array([k.pt for k in kps], dtype=np.float64)
    uv = (uv + 0.5) / s - 0.5                            # back to the input image's pixels
    ui = np.clip(np.round(uv[:, 0]).astype(int), 0, w - 1)
    vi = np.clip(np.round(uv[:, 1]).astype(int), 0, h - 1)
    z = depth[vi, ui].astype(np.float64)
    x = (uv[:, 0] - K[0, 2]) / K[0, 0] * z
    y = (uv[:, 1] - K[1, 2]) / K[1, 1] * z
    pts = np.stack([x, y, z], -1)
    pts[~(z > 0)] = np.nan
    # Same rays, pixel coordinates of the stored (target) intrinsics.
    xn = (uv[:, 0] - K[0, 2]) / K[0, 0]
    yn = (uv[:, 1] - K[1, 2]) / K[1, 1]
    uvt = np.stack([xn * target_K[0, 0] + target_K[0, 2], yn * target_K[1, 1] + target_K[1, 2]], -1)
    return KeyframeFeatures(uvt.astype(np.float32), des, pts)


class LoopDetector:
    def __init__(self, cfg: BackendConfig, tracking: TrackingConfig):
        self.cfg = cfg
        tc = copy.deepcopy(tracking)
        tc.bilateral_radius = 0
        tc.finest_level = 0
        tc.pyramid_levels = 3
        tc.iterations = [6, 8, 10]
        tc.max_correspondence = 0.05
        self.tracking = tc
        # A private tracker: its buffers are never shared with the odometry thread.
        self.tracker = RGBDTracker(tc, use_cuda_graphs=False)
        self.matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        self._db_desc = np.zeros((0, 32), np.uint8)
        self._db_owner = np.zeros(0, np.int64)

    # -- index ---------------------------------------------------------------------------
    def add_to_index(self, kf_id: int, feats: KeyframeFeatures):
        self._db_desc = np.concatenate([self._db_desc, feats.descriptors])
        self._db_owner = np.concatenate([self._db_owner, np.full(len(feats.descriptors), kf_id, np.int64)])

    def drop_from_index(self, kf_ids):
        keep = ~np.isin(self._db_owner, np.asarray(list(kf_ids), np.int64))
        self._db_desc, self._db_owner = self._db_desc[keep], self._db_owner[keep]

    def appearance_votes(self, feats: KeyframeFeatures, max_id: Optional[int] = None) -> Dict[int, int]:
        """Votes per keyframe id < max_id (None: every indexed one) from nearest-neighbour
        descriptor matches."""
        sel = self._db_owner < max_id if max_id is not None else np.ones(len(self._db_owner), bool)
        if not sel.any() or len(feats.descriptors) == 0:
            return {}
        db, owner = self._db_desc[sel], self._db_owner[sel]
        matches = self.matcher.match(feats.descriptors, db)
        votes: Dict[int, int] = {}
        for m in matches:
            if m.distance <= MAX_HAMMING_VOTE:
                k = int(owner[m.trainIdx])
                votes[k] = votes.get(k, 0) + 1
        return votes

    # -- candidates ----------------------------------------------------------------------
    def candidates(self, query: KeyframeNode, nodes: Dict[int, KeyframeNode]) -> List[Tuple[int, float]]:
        """[(keyframe id, score)] best first; score = appearance votes (+ proximity bonus)."""
        c = self.cfg
        max_id = query.id - c.min_keyframe_gap
        if max_id <= 0 or query.features is None:
            return []
        votes = self.appearance_votes(query.features, max_id)
        scores = {k: float(v) for k, v in votes.items() if v >= c.min_appearance_matches}
        for k, n in nodes.items():
            if k >= max_id or n.features is None:
                continue
            R = query.pose[:3, :3].T @ n.pose[:3, :3]
            ang = np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1)))
            if np.linalg.norm(n.pose[:3, 3] - query.pose[:3, 3]) < c.proximity_radius and ang < c.proximity_angle_deg:
                scores[k] = scores.get(k, float(votes.get(k, 0))) + 0.5 * c.min_appearance_matches
        ranked = sorted(scores.items(), key=lambda kv: -kv[1])
        return ranked[: c.max_candidates]

    def relocalization_candidates(self, feats: KeyframeFeatures, max_candidates: int) -> List[Tuple[int, int]]:
        """[(keyframe id, votes)] best first, over every indexed keyframe: a lost frame's
        pose says nothing, so no proximity bonus, and recent keyframes count too (tracking
        is often lost right where it last mapped)."""
        votes = self.appearance_votes(feats)
        ranked = sorted(((k, v) for k, v in votes.items() if v >= self.cfg.min_appearance_matches),
                        key=lambda kv: -kv[1])
        return ranked[: max_candidates]

    # -- verification --------------------------------------------------------------------
    def verify(self, cand: KeyframeNode, query: KeyframeNode) -> Verification:
        """Is `query` seeing what `cand` saw? Returns T_ij = pose of query in cand's frame."""
        c = self.cfg
        fc, fq = cand.features, query.features
        if fc is None or fq is None or len(fc.descriptors) < 2 or len(fq.descriptors) < 2:
            return Verification(False, cand.id, "no features")
        knn = self.matcher.knnMatch(fq.descriptors, fc.descriptors, k=2)
        good = [m[0] for m in knn if len(m) == 2 and m[0].distance < RATIO * m[1].distance]
        qi = np.array([m.queryIdx for m in good], dtype=int)
        ci = np.array([m.trainIdx for m in good], dtype=int)
        if len(good):
            ok = np.isfinite(fc.points[ci]).all(-1)
            qi, ci = qi[ok], ci[ok]
        stats: Dict[str, float] = {"matches": float(len(qi))}
        if len(qi) < max(c.min_pnp_inliers, 6):
            return Verification(False, cand.id, "too few matches", stats=stats)
        obj = fc.points[ci].astype(np.float64)
        img = fq.keypoints[qi].astype(np.float64)
        K = query.K.astype(np.float64)
        ok, rvec, tvec, inl = cv2.solvePnPRansac(obj, img, K, None, iterationsCount=200,
                                                 reprojectionError=float(c.pnp_reprojection_px),
                                                 confidence=0.999, flags=cv2.SOLVEPNP_EPNP)
        if not ok or inl is None:
            return Verification(False, cand.id, "pnp failed", stats=stats)
        inl = inl.flatten()
        # Polish on the inliers (iterative LM).
        rvec, tvec = cv2.solvePnPRefineLM(obj[inl], img[inl], K, None, rvec, tvec)
        proj, _ = cv2.projectPoints(obj[inl], rvec, tvec, K, None)
        reproj = float(np.linalg.norm(proj[:, 0] - img[inl], axis=1).mean())
        stats.update(pnp_inliers=float(len(inl)), pnp_ratio=len(inl) / len(qi), reproj_px=reproj)
        if len(inl) < c.min_pnp_inliers or len(inl) / len(qi) < c.min_pnp_inlier_ratio or reproj > c.max_pnp_reprojection_px:
            return Verification(False, cand.id, "weak pnp", stats=stats)
        T_qc = np.eye(4)                                  # candidate camera -> query camera
        T_qc[:3, :3] = cv2.Rodrigues(rvec)[0]
        T_qc[:3, 3] = tvec.flatten()
        T_cq = relative(T_qc, np.eye(4))                  # inverse: query in candidate frame
        dense = self.dense_refine(cand, query, T_cq)
        if dense is None:
            return Verification(False, cand.id, "no dense overlap", stats=stats)
        T_dense, res = dense
        dt = float(np.linalg.norm(relative(T_cq, T_dense)[:3, 3]))
        stats.update(dense_inliers=res.inlier_fraction, dense_rms_m=res.rms_depth, dense_shift_m=dt)
        if not (res.inlier_fraction >= c.dense_min_inlier_fraction and np.isfinite(res.rms_depth)
                and res.rms_depth <= c.dense_max_rms_depth and dt <= c.max_dense_correction):
            return Verification(False, cand.id, "weak dense", stats=stats)
        info = normalize_information(information_at_child(res.information, T_dense), c.loop_sigma)
        return Verification(True, cand.id, "ok", T_dense, info, stats)

    def dense_refine(self, cand: KeyframeNode, query: KeyframeNode, T_init: np.ndarray):
        """Frame-to-frame Gauss-Newton: query's observed pyramid against cand's observed
        geometry (points and normals from its depth), seeded by T_init (query in cand)."""
        # Local references first: the tracking thread may evict a node's images meanwhile.
        imgs = [(n.depth, n.rgb) for n in (cand, query)]
        if any(d is None or c is None for d, c in imgs):
            return None
        K = torch.as_tensor(cand.K, dtype=torch.float32)
        tc = self.tracking
        (dc, rc), (dq, rq) = [(torch.from_numpy(d.astype(np.float32)), torch.from_numpy(c).float() / 255.0)
                              for d, c in imgs]
        with torch.no_grad():
            valid = (dc > tc.min_depth) & (dc < tc.max_depth)
            pts = backproject(torch.where(valid, dc, torch.zeros_like(dc)), K)
            nrm, nv = normals_from_points(pts, valid)
            alpha = (valid & nv).float()
            ref = self.tracker.reference_levels(pts, nrm, rc, alpha, K)
            cur = self.tracker.levels_for(dq, rq, K)
            res = self.tracker.track(cur, ref, torch.eye(4), init_rel=torch.as_tensor(T_init))
        return res.pose.double().numpy(), res
