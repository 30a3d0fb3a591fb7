"""Closed-form 3x3 symmetric eigen-decomposition (geometry.sym3_eigh) against float64 eigh."""
import torch

from gs4_ros.core.geometry import sym3_eigh


def _spectra(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    R, _ = torch.linalg.qr(torch.randn(n, 3, 3, generator=g))
    lam = torch.rand(n, 3, generator=g) ** 4 * 1e-4         # depth-block covariance sizes (m^2)
    q = n // 5
    lam[:q, 0] = 1e-12                                        # planar blocks
    lam[q:2 * q, 1] = lam[q:2 * q, 2]                         # round (repeated largest)
    lam[2 * q:3 * q, 0] = lam[2 * q:3 * q, 1]                 # line-like (repeated smallest)
    return (R @ torch.diag_embed(lam) @ R.transpose(1, 2)) + torch.eye(3) * 1e-10


def test_matches_float64_eigh_where_eigenvectors_are_defined():
    A = _spectra(5000)
    e_ref, v_ref = torch.linalg.eigh(A.double())
    e, v = sym3_eigh(A)
    scale = e_ref[:, 2:].float()
    assert ((e - e_ref.float()).abs() / scale).max() < 1e-5
    gap_lo = ((e_ref[:, 1] - e_ref[:, 0]) / e_ref[:, 2]).float()
    gap_hi = ((e_ref[:, 2] - e_ref[:, 1]) / e_ref[:, 2]).float()
    dot_n = (v_ref[..., 0].float() * v[..., 0]).sum(-1).abs()
    dot_t = (v_ref[..., 2].float() * v[..., 2]).sum(-1).abs()
    assert dot_n[gap_lo > 1e-3].min() > 0.99999
    assert dot_t[gap_hi > 1e-3].min() > 0.99999


def test_eigenvectors_form_a_rotation_even_for_repeated_and_zero_spectra():
    A = torch.cat([_spectra(500, seed=1), torch.zeros(3, 3, 3), torch.eye(3).expand(2, 3, 3) * 2.0])
    e, v = sym3_eigh(A)
    assert torch.isfinite(v).all() and torch.isfinite(e).all()
    assert (v.transpose(1, 2) @ v - torch.eye(3)).abs().max() < 1e-5
    assert (torch.linalg.det(v) - 1).abs().max() < 1e-5
    # A v = lambda v column by column
    resid = (A @ v - v * e[:, None, :]).norm(dim=1) / A.norm(dim=(1, 2)).clamp(min=1e-30)[:, None]
    assert resid.max() < 1e-3
    assert torch.allclose(e[-1], torch.full((3,), 2.0))


def test_wider_normal_baseline_averages_depth_noise_out():
    from gs4_ros.core.geometry import backproject, normals_from_points

    torch.manual_seed(0)
    H = W = 120
    K = torch.tensor([[525.0, 0, 60], [0, 525.0, 60], [0, 0, 1]])
    u = torch.arange(W, dtype=torch.float32)[None].expand(H, W)
    clean = 3.0 + 0.002 * (u - 60)                      # a slanted wall 3 m away
    noisy = clean + 0.01 * torch.randn(H, W)            # Kinect-like centimetre noise
    truth, _ = normals_from_points(backproject(clean, K), clean > 0)
    err = {}
    for r in (1, 2, 4):
        n, ok = normals_from_points(backproject(noisy, K), noisy > 0, radius=r)
        assert not ok[:r].any() and not ok[:, -r:].any() and ok[r:-r, r:-r].all()
        cos = (n * truth).sum(-1)[ok].clamp(-1, 1)
        err[r] = torch.rad2deg(torch.acos(cos)).median().item()
    assert err[4] < err[2] < err[1]
