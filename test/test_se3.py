"""SE(3)/SO(3) maths: round trips over the whole angle range (incl. the small-angle and
near-pi branches), quaternion conventions against scipy, and gradients at zero twist
(the tracker and the joint optimiser linearise there)."""
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from gs4_ros.core import se3

D = torch.float64


def twists(angles, seed=0):
    g = torch.Generator().manual_seed(seed)
    axis = torch.randn(len(angles), 3, generator=g, dtype=D)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    rho = torch.randn(len(angles), 3, generator=g, dtype=D)
    return torch.cat([rho, axis * torch.tensor(angles, dtype=D)[:, None]], -1)


ANGLES = [0.0, 1e-9, 1e-6, 5e-4, 9.99e-4, 1.001e-3, 0.1, 1.0, 2.0, 3.0,
          math.pi - 1e-2, math.pi - 1.001e-3, math.pi - 1e-4, math.pi - 1e-6]


def assert_rotation(R):
    eye = torch.eye(3, dtype=R.dtype).expand_as(R)
    torch.testing.assert_close(R @ R.transpose(-1, -2), eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(R.shape[:-2], dtype=R.dtype))


def test_so3_exp_matches_scipy_and_is_a_rotation():
    xi = twists(ANGLES)
    R = se3.so3_exp(xi[:, 3:])
    assert_rotation(R)
    ref = Rotation.from_rotvec(xi[:, 3:].numpy()).as_matrix()
    np.testing.assert_allclose(R.numpy(), ref, atol=1e-12)


def test_se3_exp_log_round_trip_all_angles():
    xi = twists(ANGLES)
    T = se3.se3_exp(xi)
    assert_rotation(T[:, :3, :3])
    back = se3.se3_log(T)
    # Away from pi the log is unique: compare twists.
    far = torch.tensor(ANGLES) < math.pi - 1e-2
    torch.testing.assert_close(back[far], xi[far], atol=1e-9, rtol=0)
    # Near pi the axis sign is ambiguous; the transform must still come back.
    torch.testing.assert_close(se3.se3_exp(back), T, atol=1e-6, rtol=0)
    assert (back[:, 3:].norm(dim=-1) <= math.pi + 1e-9).all()


def test_so3_log_exactly_pi():
    for axis in ([1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, -2.0, 0.5]):
        a = torch.tensor(axis, dtype=D)
        phi = a / a.norm() * math.pi
        R = se3.so3_exp(phi)
        back = se3.so3_log(R)
        assert abs(back.norm().item() - math.pi) < 1e-3
        torch.testing.assert_close(se3.so3_exp(back), R, atol=1e-6, rtol=0)


def test_exp_log_float32_small_angles():
    """The pipeline runs in float32; tiny tracker updates must not turn into NaN or jumps."""
    xi = twists([0.0, 1e-7, 1e-5, 1e-3, 0.5]).float()
    back = se3.se3_log(se3.se3_exp(xi))
    assert torch.isfinite(back).all()
    torch.testing.assert_close(back, xi, atol=2e-5, rtol=0)


def test_inv_and_transform_points():
    T = se3.se3_exp(twists([0.3, 2.5]))
    eye = torch.eye(4, dtype=D).expand_as(T)
    torch.testing.assert_close(T @ se3.inv(T), eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(se3.inv(T) @ T, eye, atol=1e-12, rtol=0)
    p = torch.randn(2, 5, 3, dtype=D)
    ph = torch.cat([p, torch.ones(2, 5, 1, dtype=D)], -1)
    ref = (T[:, None] @ ph[..., None])[..., :3, 0]
    torch.testing.assert_close(se3.transform_points(T, p), ref)


def test_quaternions_match_scipy_and_round_trip():
    rots = Rotation.random(200, random_state=3)
    # Add the awkward ones: identity and 180-degree turns about axes and diagonals.
    extra = Rotation.from_rotvec(np.array([[0, 0, 0], [math.pi, 0, 0], [0, math.pi, 0], [0, 0, math.pi],
                                           [math.pi / math.sqrt(2), math.pi / math.sqrt(2), 0]]))
    rots = Rotation.concatenate([rots, extra])
    R = torch.tensor(rots.as_matrix(), dtype=D)
    xyzw = rots.as_quat()
    q_ref = torch.tensor(np.concatenate([xyzw[:, 3:], xyzw[:, :3]], -1), dtype=D)  # w, x, y, z
    torch.testing.assert_close(se3.quat_to_rotmat(q_ref), R, atol=1e-12, rtol=0)
    q = se3.rotmat_to_quat(R)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(len(q), dtype=D))
    assert (q[:, 0] >= 0).all()
    # Same rotation (q and -q are the same rotation).
    dot = (q * q_ref).sum(-1).abs()
    torch.testing.assert_close(dot, torch.ones_like(dot), atol=1e-10, rtol=0)
    torch.testing.assert_close(se3.quat_to_rotmat(q), R, atol=1e-12, rtol=0)
    # Unnormalised input quaternions are normalised.
    torch.testing.assert_close(se3.quat_to_rotmat(3.0 * q_ref), R, atol=1e-12, rtol=0)


def test_quat_multiply_is_rotation_composition():
    a = torch.randn(10, 4, dtype=D)
    b = torch.randn(10, 4, dtype=D)
    lhs = se3.quat_to_rotmat(se3.quat_multiply(a, b))
    rhs = se3.quat_to_rotmat(a) @ se3.quat_to_rotmat(b)
    torch.testing.assert_close(lhs, rhs, atol=1e-12, rtol=0)


def test_exp_gradient_at_zero_twist_is_the_generator():
    """d/dxi (exp(xi) p) at xi = 0 is [I, -[p]x] for twists ordered (rho, phi)."""
    p = torch.tensor([0.3, -1.2, 2.0], dtype=D)
    xi = torch.zeros(6, dtype=D, requires_grad=True)
    J = torch.autograd.functional.jacobian(lambda x: se3.transform_points(se3.se3_exp(x), p[None])[0], xi)
    assert torch.isfinite(J).all()
    ref = torch.cat([torch.eye(3, dtype=D), -se3.skew(p)], 1)
    torch.testing.assert_close(J, ref, atol=1e-12, rtol=0)
    for dtype in (torch.float32, torch.float64):
        x = torch.zeros(6, dtype=dtype, requires_grad=True)
        se3.se3_log(se3.se3_exp(x)).pow(2).sum().backward()
        assert torch.isfinite(x.grad).all()
        x = torch.zeros(6, dtype=dtype, requires_grad=True)
        (se3.se3_log(se3.se3_exp(x)) * torch.arange(6, dtype=dtype)).sum().backward()
        assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("angle", [0.0, 1e-4, 0.7, 2.9])
def test_exp_log_gradcheck(angle):
    xi = twists([angle], seed=5)[0].requires_grad_(True)
    assert torch.autograd.gradcheck(se3.se3_exp, (xi,))
    if angle > 0:  # the log is differentiable away from identity's branch switch
        T = se3.se3_exp(xi.detach()).requires_grad_(True)
        assert torch.autograd.gradcheck(se3.se3_log, (T,))


def test_pose_distance():
    T = se3.se3_exp(twists([0.4])[0])
    D_ = se3.make_T(se3.so3_exp(torch.tensor([0.0, 0.0, 0.3], dtype=D)), torch.tensor([0.1, 0.2, -0.2], dtype=D))
    t, r = se3.pose_distance(T, T @ D_)
    torch.testing.assert_close(t, torch.tensor(0.3, dtype=D))
    torch.testing.assert_close(r, torch.tensor(0.3, dtype=D))
