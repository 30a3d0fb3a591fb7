"""ATE / RPE through evo, so our figures match what other SLAM papers compute."""
from __future__ import annotations

import copy
from typing import Dict

import numpy as np
from evo.core import metrics, sync
from evo.core.geometry import GeometryException
from evo.core.trajectory import PoseTrajectory3D


def _orthonormal(poses: np.ndarray) -> np.ndarray:
    """evo rejects matrices that are not in SE(3); dataset files often drift slightly."""
    out = np.array(poses, dtype=np.float64, copy=True)
    U, _, Vt = np.linalg.svd(out[:, :3, :3])
    d = np.sign(np.linalg.det(U @ Vt))
    U[:, :, 2] *= d[:, None]
    out[:, :3, :3] = U @ Vt
    out[:, 3, :] = (0, 0, 0, 1)
    return out


def make_traj(stamps, poses) -> PoseTrajectory3D:
    return PoseTrajectory3D(timestamps=np.asarray(stamps, dtype=np.float64),
                            poses_se3=list(_orthonormal(np.asarray(poses))))


def trajectory_errors(est_stamps, est_poses, gt_stamps, gt_poses, max_dt: float = 0.02,
                      rpe_delta_frames: int = 1) -> Dict[str, float]:
    """ATE (SE(3) alignment, no scale) and RPE in cm / deg. Empty dict without overlap."""
    est = make_traj(est_stamps, est_poses)
    ref = make_traj(gt_stamps, gt_poses)
    ref, est = sync.associate_trajectories(ref, est, max_diff=max_dt)
    if est.num_poses < 3:
        return {}
    est_aligned = copy.deepcopy(est)
    alignment = "se3"
    try:
        est_aligned.align(ref, correct_scale=False)
    except GeometryException:
        # Degenerate paths (a static or straight-line camera) admit no unique rotation;
        # fall back to aligning the first poses, as evo's --align_origin does.
        est_aligned = copy.deepcopy(est)
        est_aligned.align_origin(ref)
        alignment = "origin"
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((ref, est_aligned))
    out = {"ate_rmse_cm": 100 * ape.get_statistic(metrics.StatisticsType.rmse),
           "ate_mean_cm": 100 * ape.get_statistic(metrics.StatisticsType.mean),
           "ate_max_cm": 100 * ape.get_statistic(metrics.StatisticsType.max),
           "num_poses_evaluated": int(est.num_poses), "ate_alignment": alignment}
    for rel, key, scale in ((metrics.PoseRelation.translation_part, "rpe_trans_rmse_cm", 100.0),
                            (metrics.PoseRelation.rotation_angle_deg, "rpe_rot_rmse_deg", 1.0)):
        rpe = metrics.RPE(rel, delta=rpe_delta_frames, delta_unit=metrics.Unit.frames, all_pairs=False)
        rpe.process_data((ref, est))
        out[key] = scale * rpe.get_statistic(metrics.StatisticsType.rmse)
    return out


def aligned_positions(est_stamps, est_poses, gt_stamps, gt_poses, max_dt: float = 0.02):
    """(estimated positions aligned to gt, gt positions) for plotting."""
    est = make_traj(est_stamps, est_poses)
    ref = make_traj(gt_stamps, gt_poses)
    ref, est = sync.associate_trajectories(ref, est, max_diff=max_dt)
    if est.num_poses >= 3:
        try:
            est.align(ref, correct_scale=False)
        except GeometryException:
            est.align_origin(ref)
    return est.positions_xyz, ref.positions_xyz
