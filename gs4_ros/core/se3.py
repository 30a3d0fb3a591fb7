"""SE(3) / SO(3) maths in torch, batched over leading dimensions.

Poses are 4x4 camera-to-world matrices (OpenCV camera axes). Twists are ordered
(rho, phi): translation part first, rotation part second. Small-angle branches keep
exp/log differentiable at zero, which the tracker and the joint optimiser rely on.
Quaternions are (w, x, y, z), the order the 3DGS PLY layout and gsplat use.
"""
from __future__ import annotations

import math

import torch


def skew(v: torch.Tensor) -> torch.Tensor:
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(v.shape[:-1] + (3, 3))


def _so3_coeffs(theta: torch.Tensor):
    """A = sin(t)/t, B = (1-cos t)/t^2, C = (t - sin t)/t^3 with Taylor series near 0."""
    t2 = theta * theta
    small = theta < 1e-3
    ts = torch.where(small, torch.ones_like(theta), theta)
    A = torch.where(small, 1 - t2 / 6 + t2 * t2 / 120, torch.sin(ts) / ts)
    # B as 2 sin^2(t/2) / t^2: (1 - cos t) cancels catastrophically in float32 (12% off at
    # t = 1e-3), which se3_log's D then amplifies into centimetre translation errors.
    sh = torch.sin(0.5 * ts) / ts
    B = torch.where(small, 0.5 - t2 / 24 + t2 * t2 / 720, 2 * sh * sh)
    C = torch.where(small, 1.0 / 6 - t2 / 120 + t2 * t2 / 5040, (ts - torch.sin(ts)) / (ts * ts * ts))
    return A, B, C


def so3_exp(phi: torch.Tensor) -> torch.Tensor:
    theta = phi.norm(dim=-1, keepdim=True).unsqueeze(-1)  # [...,1,1]
    A, B, _ = _so3_coeffs(theta)
    K = skew(phi)
    eye = torch.eye(3, dtype=phi.dtype, device=phi.device).expand(K.shape)
    return eye + A * K + B * (K @ K)


def so3_log(R: torch.Tensor) -> torch.Tensor:
    tr = R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2]
    w = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0],
                     R[..., 1, 0] - R[..., 0, 1]], dim=-1)
    # atan2(sin, cos) is accurate over the whole range; a clamped acos of the trace capped
    # the angle 4.5e-4 rad short of pi.
    cos = (tr - 1) * 0.5
    theta = torch.atan2(0.5 * w.norm(dim=-1), cos)
    small = theta < 1e-3
    ts = torch.where(small, torch.ones_like(theta), theta)
    factor = torch.where(small, 0.5 + theta * theta / 12, ts / (2 * torch.sin(ts)))
    phi = factor.unsqueeze(-1) * w
    # Near pi the antisymmetric part vanishes; recover the axis from the symmetric part.
    near_pi = theta > math.pi - 1e-3
    if bool(near_pi.any()):
        S = (R + R.transpose(-1, -2)) * 0.5 - cos[..., None, None] * torch.eye(3, dtype=R.dtype, device=R.device)
        diag = torch.diagonal(S, dim1=-2, dim2=-1).clamp(min=0)
        axis = torch.sqrt(diag / (1 - cos[..., None]).clamp(min=1e-9))
        i = diag.argmax(dim=-1, keepdim=True)
        sign = torch.sign(torch.gather(S, -1, i.unsqueeze(-1).expand(S.shape[:-1] + (1,))).squeeze(-1))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        axis = axis * sign
        # The symmetric part fixes the axis only up to sign; below pi exp(-phi) != exp(phi),
        # so take the sign the antisymmetric part (2 sin(theta) axis) still carries.
        s2 = torch.sign((axis * w).sum(-1, keepdim=True))
        axis = axis * torch.where(s2 == 0, torch.ones_like(s2), s2)
        axis = axis / axis.norm(dim=-1, keepdim=True).clamp(min=1e-9)
        phi = torch.where(near_pi[..., None], axis * theta[..., None], phi)
    return phi


def se3_exp(xi: torch.Tensor) -> torch.Tensor:
    """Twist (rho, phi) [..., 6] -> 4x4 transform."""
    rho, phi = xi[..., :3], xi[..., 3:]
    theta = phi.norm(dim=-1, keepdim=True).unsqueeze(-1)
    A, B, C = _so3_coeffs(theta)
    K = skew(phi)
    KK = K @ K
    eye = torch.eye(3, dtype=xi.dtype, device=xi.device).expand(K.shape)
    R = eye + A * K + B * KK
    V = eye + B * K + C * KK
    t = (V @ rho.unsqueeze(-1)).squeeze(-1)
    return make_T(R, t)


def se3_generators(device=None, dtype=torch.float32) -> torch.Tensor:
    """[6, 16]: a twist xi [..., 6] times this is its 4x4 hat matrix, flattened.

    One matrix product instead of the dozens of small kernels of building the hat
    matrix entry by entry: the joint optimiser forms it every Adam step.
    """
    G = torch.zeros(6, 4, 4, dtype=dtype)
    for i in range(3):
        G[i, i, 3] = 1.0                                   # rho: translation
    G[3, 2, 1], G[3, 1, 2] = 1.0, -1.0                     # phi: rotation, [phi]x
    G[4, 0, 2], G[4, 2, 0] = 1.0, -1.0
    G[5, 1, 0], G[5, 0, 1] = 1.0, -1.0
    return G.reshape(6, 16).to(device)


def se3_log(T: torch.Tensor) -> torch.Tensor:
    R, t = T[..., :3, :3], T[..., :3, 3]
    phi = so3_log(R)
    theta = phi.norm(dim=-1, keepdim=True).unsqueeze(-1)
    K = skew(phi)
    small = theta < 1e-3
    ts = torch.where(small, torch.ones_like(theta), theta)
    half = 0.5 * ts
    D = torch.where(small, torch.full_like(theta, 1.0 / 12), (1 - half * torch.cos(half) / torch.sin(half)) / (ts * ts))
    eye = torch.eye(3, dtype=T.dtype, device=T.device).expand(K.shape)
    Vinv = eye - 0.5 * K + D * (K @ K)
    rho = (Vinv @ t.unsqueeze(-1)).squeeze(-1)
    return torch.cat([rho, phi], dim=-1)


def make_T(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    T = torch.zeros(R.shape[:-2] + (4, 4), dtype=R.dtype, device=R.device)
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    # fill_ rather than `= 1.0`: assigning a Python number copies a CPU scalar tensor,
    # which a CUDA graph capture refuses (the tracker's device solver captures this).
    T[..., 3, 3].fill_(1.0)
    return T


def inv(T: torch.Tensor) -> torch.Tensor:
    R, t = T[..., :3, :3], T[..., :3, 3]
    Rt = R.transpose(-1, -2)
    return make_T(Rt, -(Rt @ t.unsqueeze(-1)).squeeze(-1))


def transform_points(T: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Apply 4x4 T to points [..., N, 3] (T broadcast over N)."""
    return p @ T[..., :3, :3].transpose(-1, -2) + T[..., None, :3, 3]


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    q = q / q.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(q.shape[:-1] + (3, 3))


def rotmat_to_quat(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrix -> unit quaternion (w, x, y, z), w >= 0; stable for all angles."""
    m = R
    tr = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    cands = torch.stack([
        torch.stack([1 + tr, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2], m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], m[..., 1, 2] + m[..., 2, 1]], -1),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1),
    ], dim=-2)  # [...,4,4]: row k is 4*q*q_k (up to the k-th component being largest)
    diag = torch.stack([1 + tr, 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                        1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2],
                        1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1)
    k = diag.argmax(dim=-1)
    q = torch.gather(cands, -2, k[..., None, None].expand(k.shape + (1, 4))).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return torch.where(q[..., :1] < 0, -q, q)


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


def pose_distance(Ta: torch.Tensor, Tb: torch.Tensor):
    """(translation metres, rotation radians) between two poses."""
    D = inv(Ta) @ Tb
    trans = D[..., :3, 3].norm(dim=-1)
    return trans, rotation_angle(D[..., :3, :3])


def rotation_angle(R: torch.Tensor) -> torch.Tensor:
    """Angle of a rotation via atan2, accurate near zero (acos of the trace is not in float32)."""
    w = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0],
                     R[..., 1, 0] - R[..., 0, 1]], dim=-1)
    tr = R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2]
    return torch.atan2(0.5 * w.norm(dim=-1), 0.5 * (tr - 1))


def reorthonormalize(T: torch.Tensor, steps: int = 2) -> torch.Tensor:
    """Pull a pose that is already nearly a rigid transform (float32 products of poses)
    back onto SE(3) with Bjorck steps R <- R (3 I - R^T R) / 2, which converge
    quadratically to the nearest rotation. Unlike orthonormalize's SVD this never makes
    the host wait for the GPU; for matrices far from a rotation use orthonormalize."""
    R = T[..., :3, :3]
    eye = torch.eye(3, dtype=T.dtype, device=T.device)
    for _ in range(steps):
        R = R @ (1.5 * eye - 0.5 * (R.transpose(-1, -2) @ R))
    return make_T(R, T[..., :3, 3])


def orthonormalize(T: torch.Tensor) -> torch.Tensor:
    """Nearest proper rotation (SVD) for poses from files that drift off SO(3)."""
    U, _, Vh = torch.linalg.svd(T[..., :3, :3])
    d = torch.sign(torch.det(U @ Vh))
    D = torch.ones(T.shape[:-2] + (3,), dtype=T.dtype, device=T.device)
    D[..., 2] = d
    R = U @ torch.diag_embed(D) @ Vh
    return make_T(R, T[..., :3, 3])
