"""The PyTorch rasteriser against closed-form cases and an independent per-pixel reference
of gsplat's image formation, plus autograd gradient checks (Gaussians and camera pose).

Closed forms: a Gaussian centred on a pixel centre has alpha = opacity there and
falls off as exp(-0.5 d^2 / (s^2 + 0.3)) with s = f * scale / z; front-to-back
compositing gives c1 a1 + c2 a2 (1 - a1); a pixel stops before the Gaussian that would
take its transmittance to <= 1e-4; alphas under 1/255 are skipped.
"""
import math

import numpy as np
import pytest
import torch

from gs4_ros.core import se3
from gs4_ros.core.gaussian_map import GaussianParams
from gs4_ros.core.render import render_views
from gs4_ros.core.render.base import ALPHA_MIN, EPS2D, NEAR
from gs4_ros.core.render.torch_raster import TorchRasterizer, project_gaussians

D64 = torch.float64
EYE = torch.eye(4, dtype=D64)


def K_of(f, cx, cy, dtype=D64):
    return torch.tensor([[f, 0, cx], [0, f, cy], [0, 0, 1.0]], dtype=dtype)


def raster(means, scales, opac, feats, W, H, K, quats=None, viewmats=None, bg=None, rast=None):
    n = means.shape[0]
    dt = means.dtype
    quats = torch.tensor([[1.0, 0, 0, 0]], dtype=dt).expand(n, 4) if quats is None else quats
    viewmats = EYE.to(dt)[None] if viewmats is None else viewmats
    Ks = K[None].expand(viewmats.shape[0], 3, 3)
    return (rast or TorchRasterizer()).rasterize(means, quats, scales, opac, feats, viewmats, Ks, W, H, bg)


def pixel_d2(W, H, cx, cy):
    v, u = np.mgrid[0:H, 0:W]
    return (u + 0.5 - cx) ** 2 + (v + 0.5 - cy) ** 2


# --------------------------------------------------------------------------- closed forms
def test_single_isotropic_gaussian_closed_form():
    W, H, f, z, scale, op = 41, 33, 50.0, 2.0, 0.06, 0.8
    cx, cy = 20.5, 16.5  # the centre of pixel (20, 16)
    out = raster(torch.tensor([[0.0, 0.0, z]], dtype=D64), torch.full((1, 3), scale, dtype=D64),
                 torch.tensor([op], dtype=D64), torch.tensor([[0.2, 0.5, 0.9]], dtype=D64), W, H, K_of(f, cx, cy))
    s = f * scale / z
    ref = op * np.exp(-0.5 * pixel_d2(W, H, cx, cy) / (s * s + EPS2D))
    ref[ref < ALPHA_MIN] = 0.0
    alpha = out.alpha[0].numpy()
    assert alpha[16, 20] == pytest.approx(op, abs=1e-12)
    np.testing.assert_allclose(alpha, ref, atol=1e-12)
    np.testing.assert_allclose(out.depth[0].numpy(), z * ref, atol=1e-12)
    np.testing.assert_allclose(out.features[0, ..., 2].numpy(), 0.9 * ref, atol=1e-12)
    assert (alpha == 0).sum() > 100  # the skipped tail is exactly zero
    assert out.visible.tolist() == [[True]]


@pytest.mark.parametrize("x,y", [(0.0, 0.0), (0.7, -0.4)])
def test_anisotropic_rotated_gaussian_ewa(x, y):
    """Covariance through the EWA Jacobian J = [[f/z, 0, -f x/z^2], [0, f/z, -f y/z^2]]."""
    W, H, f, z = 48, 40, 40.0, 3.0
    cx, cy = 23.5, 19.5
    mean = np.array([x, y, z])
    q = np.array([0.9, 0.2, -0.3, 0.25])
    scales = np.array([0.25, 0.06, 0.12])
    R = se3.quat_to_rotmat(torch.tensor(q)).numpy()
    cov3 = R @ np.diag(scales ** 2) @ R.T
    J = np.array([[f / z, 0, -f * x / z ** 2], [0, f / z, -f * y / z ** 2]])
    cov2 = J @ cov3 @ J.T + EPS2D * np.eye(2)
    conic = np.linalg.inv(cov2)
    mu = np.array([f * x / z + cx, f * y / z + cy])
    v, u = np.mgrid[0:H, 0:W]
    d = np.stack([u + 0.5 - mu[0], v + 0.5 - mu[1]], -1)
    ref = 0.9 * np.exp(-0.5 * np.einsum("hwi,ij,hwj->hw", d, conic, d))
    ref[ref < ALPHA_MIN] = 0.0
    out = raster(torch.tensor(mean[None]), torch.tensor(scales[None]), torch.tensor([0.9], dtype=D64),
                 torch.ones(1, 1, dtype=D64), W, H, K_of(f, cx, cy), quats=torch.tensor(q[None]))
    np.testing.assert_allclose(out.alpha[0].numpy(), ref, atol=1e-12)
    assert (ref > 0.3).sum() > 10 and (ref == 0).sum() > 100


def test_two_gaussians_front_to_back():
    f, cx, cy = 30.0, 8.5, 8.5
    z1, z2, a1, a2 = 1.5, 2.5, 0.6, 0.7
    c1, c2 = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    means = torch.tensor([[0, 0, z2], [0, 0, z1]], dtype=D64)  # back one listed first
    scales = torch.tensor([[0.1] * 3, [0.05] * 3], dtype=D64)
    out = raster(means, scales, torch.tensor([a2, a1], dtype=D64), torch.tensor([c2, c1], dtype=D64),
                 17, 17, K_of(f, cx, cy))
    col = out.features[0, 8, 8].numpy()
    np.testing.assert_allclose(col, np.array(c1) * a1 + np.array(c2) * a2 * (1 - a1), atol=1e-12)
    assert out.depth[0, 8, 8].item() == pytest.approx(z1 * a1 + z2 * a2 * (1 - a1), abs=1e-12)
    assert out.alpha[0, 8, 8].item() == pytest.approx(1 - (1 - a1) * (1 - a2), abs=1e-12)
    # Input order does not matter, depth does.
    out2 = raster(means.flip(0), scales.flip(0), torch.tensor([a1, a2], dtype=D64),
                  torch.tensor([c1, c2], dtype=D64), 17, 17, K_of(f, cx, cy))
    torch.testing.assert_close(out2.features, out.features, atol=1e-14, rtol=0)
    # render_views: expected depth is the alpha-normalised accumulation.
    p = GaussianParams(means.float(), torch.tensor([[1.0, 0, 0, 0]] * 2), scales.float(),
                       torch.tensor([a2, a1]), torch.tensor([c2, c1]))
    # render_views takes K in the data's convention (pixel 8 centred at 8.0, not 8.5).
    r = render_views(TorchRasterizer(), p, torch.eye(4), K_of(f, cx - 0.5, cy - 0.5, torch.float32), 17, 17)
    exp_d = (z1 * a1 + z2 * a2 * (1 - a1)) / (1 - (1 - a1) * (1 - a2))
    assert r.depth[0, 8, 8].item() == pytest.approx(exp_d, rel=1e-6)
    assert r.depth[0, 0, 0].item() == 0.0 and r.alpha[0, 0, 0].item() < 1e-3


def test_termination_at_transmittance_1e_4():
    """Opacity 0.95: T = 0.05, 2.5e-3, 1.25e-4, then 6.25e-6 <= 1e-4, so the 4th and later
    layers are excluded (exclusive stop, as in gsplat) and alpha = 1 - 1.25e-4."""
    f, cx, cy, a = 30.0, 4.5, 4.5, 0.95
    zs = [1.0, 1.5, 2.0, 2.5, 3.0]
    cols = torch.eye(5, dtype=D64)
    out = raster(torch.tensor([[0, 0, z] for z in zs], dtype=D64), torch.full((5, 3), 0.1, dtype=D64),
                 torch.full((5,), a, dtype=D64), cols, 9, 9, K_of(f, cx, cy))
    c = out.features[0, 4, 4].numpy()
    np.testing.assert_allclose(c, [a, a * (1 - a), a * (1 - a) ** 2, 0, 0], atol=1e-12)
    assert out.alpha[0, 4, 4].item() == pytest.approx(1 - (1 - a) ** 3, abs=1e-12)
    assert out.depth[0, 4, 4].item() == pytest.approx(a * (1 + 1.5 * (1 - a) + 2 * (1 - a) ** 2), abs=1e-12)


def test_alpha_below_1_over_255_is_skipped():
    f, cx, cy = 20.0, 4.5, 4.5
    one = dict(scales=torch.full((1, 3), 0.1, dtype=D64), feats=torch.ones(1, 1, dtype=D64),
               W=9, H=9, K=K_of(f, cx, cy))
    m = torch.tensor([[0, 0, 1.0]], dtype=D64)
    out = raster(m, opac=torch.tensor([0.9 / 255], dtype=D64), **one)
    assert not out.alpha.any() and not out.features.any() and not out.visible.any()
    out = raster(m, opac=torch.tensor([1.1 / 255], dtype=D64), **one)
    assert out.alpha[0, 4, 4].item() == pytest.approx(1.1 / 255, abs=1e-15)
    # Neighbours: 1.1/255 * exp(-0.5/(4+0.3)) < 1/255, so exactly zero.
    assert out.alpha[0, 4, 5].item() == 0.0 and out.alpha.count_nonzero() == 1


def test_background_is_final_transmittance_times_bg():
    W, H, f, cx, cy = 21, 15, 30.0, 10.5, 7.5
    bg = torch.tensor([[0.1, 0.2, 0.3, 0.0]], dtype=D64)
    out = raster(torch.tensor([[0, 0, 2.0]], dtype=D64), torch.full((1, 3), 0.08, dtype=D64),
                 torch.tensor([0.7], dtype=D64), torch.tensor([[1.0, 0.5, 0.0, 4.0]], dtype=D64),
                 W, H, K_of(f, cx, cy), bg=bg)
    a = out.alpha[0].numpy()[..., None]
    ref = a * np.array([1.0, 0.5, 0.0, 4.0]) + (1 - a) * bg[0].numpy()
    np.testing.assert_allclose(out.features[0].numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(out.features[0, 0, 0].numpy(), bg[0].numpy(), atol=0)
    # render_views puts the background on colour only, never on semantics.
    p = GaussianParams(torch.tensor([[0, 0, 2.0]]), torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 0.08),
                       torch.tensor([0.7]), torch.tensor([[1.0, 0.5, 0.0]]), torch.tensor([[0.25, 0.75]]))
    r = render_views(TorchRasterizer(), p, torch.eye(4), K_of(f, cx, cy, torch.float32), W, H,
                     semantics=True, background=torch.tensor([0.1, 0.2, 0.3]))
    assert r.color[0, 0, 0].tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert r.semantics[0, 0, 0].abs().max().item() == 0.0


def test_feature_channels_and_several_cameras():
    """20 semantic channels composite like colour (sum = alpha for class probabilities), and
    C cameras in one call equal C separate calls; a sideways camera shifts the image."""
    g = torch.Generator().manual_seed(0)
    n, W, H, f = 60, 40, 30, 35.0
    means = torch.cat([torch.rand(n, 2, generator=g) * 2 - 1, 2 + torch.rand(n, 1, generator=g)], -1)
    p = GaussianParams(means, torch.randn(n, 4, generator=g), 0.03 + 0.1 * torch.rand(n, 3, generator=g),
                       0.2 + 0.7 * torch.rand(n, generator=g), torch.rand(n, 3, generator=g),
                       torch.softmax(torch.randn(n, 20, generator=g) * 2, -1))
    p.quats = p.quats / p.quats.norm(dim=-1, keepdim=True)
    K = K_of(f, 19.0, 14.0, torch.float32)  # render_views' convention: pixel (19, 14) centred at (19, 14)
    poses = se3.se3_exp(torch.tensor([[0, 0, 0, 0, 0, 0], [0.2, 0.1, -0.3, 0.05, -0.1, 0.02],
                                      [-0.3, 0, 0.2, 0, 0.2, 0]], dtype=torch.float32))
    rast = TorchRasterizer()
    r = render_views(rast, p, poses, K, W, H, semantics=True)
    assert r.semantics.shape == (3, H, W, 20)
    torch.testing.assert_close(r.semantics.sum(-1), r.alpha, atol=1e-5, rtol=0)
    for c in range(3):
        rc = render_views(rast, p, poses[c], K, W, H, semantics=True)
        for name in ("color", "depth", "alpha", "semantics", "visible"):
            torch.testing.assert_close(getattr(rc, name)[0], getattr(r, name)[c], atol=1e-6, rtol=0)
    assert r.alpha.mean() > 0.15
    # Camera moved by dx (camera-to-world): a Gaussian at depth z moves by -f dx / z pixels.
    one = GaussianParams(torch.tensor([[0.0, 0.0, 2.0]]), torch.tensor([[1.0, 0, 0, 0]]),
                         torch.full((1, 3), 0.05), torch.tensor([0.9]), torch.ones(1, 3))
    shift = torch.eye(4).repeat(2, 1, 1)
    shift[1, 0, 3] = 2.0 * 4 / f  # 4 pixels
    a = render_views(rast, one, shift, K, W, H).alpha
    assert a[0].argmax().item() == 14 * W + 19 and a[1].argmax().item() == 14 * W + 15
    assert a[0, 14, 19].item() == pytest.approx(0.9, rel=1e-5) and a[1, 14, 15].item() == pytest.approx(0.9, rel=1e-5)


def test_culling_near_plane_and_outside_image():
    W, H, f, cx, cy = 32, 24, 30.0, 15.5, 11.5
    K = K_of(f, cx, cy)
    means = torch.tensor([
        [0.0, 0.0, -1.0],          # behind the camera
        [0.0, 0.0, NEAR * 0.5],    # in front of the camera but before the near plane
        [5.0, 0.0, 1.0],           # far off to the right: projects to u = 165
        [0.0, -5.0, 1.0],          # far above
        [0.6, 0.0, 1.0],           # centre at u = 33.5 (just outside) but footprint inside
        [0.0, 0.0, 2.0],           # plain visible
    ], dtype=D64)
    scales = torch.full((6, 3), 0.02, dtype=D64)
    scales[4] = 0.03
    out = raster(means, scales, torch.full((6,), 0.9, dtype=D64), torch.eye(6, dtype=D64), W, H, K)
    assert out.visible[0].tolist() == [False, False, False, False, True, True]
    proj = project_gaussians(means, torch.tensor([[1.0, 0, 0, 0]] * 6, dtype=D64), scales,
                             torch.full((6,), 0.9, dtype=D64), EYE, K, W, H)
    assert proj["visible"].tolist() == out.visible[0].tolist()
    assert (proj["radii"][:4] == 0).all() and (proj["radii"][4:] > 0).all()
    assert proj["means2d"][5].tolist() == pytest.approx([cx, cy])
    per = out.features[0].sum((0, 1))
    assert per[:4].abs().max().item() == 0.0 and per[4] > 0 and per[5] > 0
    # The edge Gaussian contributes exactly its closed-form tail on the last columns.
    J = np.array([[f, 0, -f * 0.6], [0, f, 0]])  # EWA Jacobian at (0.6, 0, 1)
    conic = np.linalg.inv(0.03 ** 2 * J @ J.T + EPS2D * np.eye(2))
    v, u = np.mgrid[0:H, 0:W]
    du, dv = u + 0.5 - 33.5, v + 0.5 - cy
    ref = 0.9 * np.exp(-0.5 * (conic[0, 0] * du ** 2 + conic[1, 1] * dv ** 2))
    ref[ref < ALPHA_MIN] = 0
    np.testing.assert_allclose(out.features[0, ..., 4].numpy(), ref, atol=1e-12)
    assert ref[:, -1].max() > 0.1


# ---------------------------------------------------------- independent per-pixel reference
def reference_render(means, quats, scales, opac, feats, viewmat, K, W, H, bg=None):
    """Straight per-pixel loop over depth-sorted Gaussians, written from the gsplat spec."""
    means, quats, scales, opac, feats = (np.asarray(x, np.float64) for x in (means, quats, scales, opac, feats))
    Rv, tv = np.asarray(viewmat)[:3, :3], np.asarray(viewmat)[:3, 3]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    keep = []
    for i in range(len(means)):
        x, y, z = Rv @ means[i] + tv
        if z < NEAR or opac[i] < ALPHA_MIN:
            continue
        q = quats[i] / np.linalg.norm(quats[i])
        Rg = se3.quat_to_rotmat(torch.tensor(q)).numpy()
        cov = Rv @ Rg @ np.diag(scales[i] ** 2) @ Rg.T @ Rv.T
        lx, ly = 1.3 * 0.5 * W / fx, 1.3 * 0.5 * H / fy
        limxp, limxn = (W - cx) / fx + 0.3 * 0.5 * W / fx, cx / fx + 0.3 * 0.5 * W / fx
        limyp, limyn = (H - cy) / fy + 0.3 * 0.5 * H / fy, cy / fy + 0.3 * 0.5 * H / fy
        del lx, ly
        tx = z * min(limxp, max(-limxn, x / z))
        ty = z * min(limyp, max(-limyn, y / z))
        J = np.array([[fx / z, 0, -fx * tx / z ** 2], [0, fy / z, -fy * ty / z ** 2]])
        c2 = J @ cov @ J.T + EPS2D * np.eye(2)
        if np.linalg.det(c2) <= 0:
            continue
        mu = np.array([fx * x / z + cx, fy * y / z + cy])
        ext = min(3.33, math.sqrt(2 * math.log(opac[i] / ALPHA_MIN)))
        rx, ry = math.ceil(ext * math.sqrt(c2[0, 0])), math.ceil(ext * math.sqrt(c2[1, 1]))
        if rx <= 0 and ry <= 0:
            continue
        if mu[0] + rx <= 0 or mu[0] - rx >= W or mu[1] + ry <= 0 or mu[1] - ry >= H:
            continue
        keep.append((z, i, mu, np.linalg.inv(c2)))
    keep.sort(key=lambda k: (k[0], k[1]))
    Dn = feats.shape[1]
    img = np.zeros((H, W, Dn + 1))
    T_img = np.ones((H, W))
    for v in range(H):
        for u in range(W):
            T, acc = 1.0, np.zeros(Dn + 1)
            for z, i, mu, con in keep:
                d = mu - np.array([u + 0.5, v + 0.5])
                sig = 0.5 * (con[0, 0] * d[0] ** 2 + con[1, 1] * d[1] ** 2) + con[0, 1] * d[0] * d[1]
                a = min(0.999, opac[i] * math.exp(-sig))
                if sig < 0 or a < ALPHA_MIN:
                    continue
                nT = T * (1 - a)
                if nT <= 1e-4:
                    break
                acc += a * T * np.append(feats[i], z)
                T = nT
            img[v, u], T_img[v, u] = acc, T
    if bg is not None:
        img[..., :Dn] += T_img[..., None] * np.asarray(bg)
    return img[..., :Dn], img[..., Dn], 1 - T_img, {k[1] for k in keep}


def random_scene(n, seed, dtype=D64):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.rand(*s, generator=g, dtype=dtype)  # noqa: E731
    means = torch.cat([r(n, 2) * 4 - 2, r(n, 1) * 3.5 - 0.5], -1)  # some behind / before near
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = 0.01 + 0.2 * r(n, 3) ** 2
    opac = r(n)
    opac[:3] = torch.tensor([0.999, 1.0, 0.003], dtype=dtype)  # clamp and cull edge cases
    feats = r(n, 5)
    return means, quats, scales, opac, feats


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_per_pixel_reference_on_random_scenes(seed):
    W, H = 37, 29  # partial tiles on both axes
    means, quats, scales, opac, feats = random_scene(45, seed)
    K = K_of(22.0, 17.3, 15.1)
    views = se3.inv(se3.se3_exp(torch.tensor([[0, 0, -0.5, 0, 0, 0], [0.3, -0.2, -0.3, 0.1, 0.2, -0.05]], dtype=D64)))
    bg = torch.tensor([[0.2, 0.4, 0.1, 0, 1.0], [0.0, 0.0, 0.5, 0.5, 0.0]], dtype=D64)
    for rast in (TorchRasterizer(), TorchRasterizer(tile_size=16, chunk_elems=4096, segment=4)):
        out = rast.rasterize(means, quats, scales, opac, feats, views, K[None].expand(2, 3, 3), W, H, bg)
        for c in range(2):
            f_ref, d_ref, a_ref, vis = reference_render(means, quats, scales, opac, feats, views[c], K, W, H, bg[c])
            np.testing.assert_allclose(out.features[c].numpy(), f_ref, atol=1e-10)
            np.testing.assert_allclose(out.depth[c].numpy(), d_ref, atol=1e-10)
            np.testing.assert_allclose(out.alpha[c].numpy(), a_ref, atol=1e-10)
            assert set(torch.nonzero(out.visible[c]).flatten().tolist()) == vis
            assert 0.05 < a_ref.mean() < 0.95 and a_ref.max() > 0.5  # real overlap, not empty


def test_float32_matches_float64():
    means, quats, scales, opac, feats = random_scene(80, 3)
    K = K_of(22.0, 17.3, 15.1)
    v = se3.inv(se3.se3_exp(torch.tensor([[0, 0, -0.5, 0, 0, 0]], dtype=D64)))
    o64 = TorchRasterizer().rasterize(means, quats, scales, opac, feats, v, K[None], 37, 29)
    o32 = TorchRasterizer().rasterize(means.float(), quats.float(), scales.float(), opac.float(),
                                      feats.float(), v.float(), K[None].float(), 37, 29)
    for a, b in ((o32.features, o64.features), (o32.depth, o64.depth), (o32.alpha, o64.alpha)):
        rel = (a.double() - b).norm() / b.norm()
        assert rel < 1e-5


# ------------------------------------------------------------------------------ gradients
def test_gradcheck_gaussians_and_pose():
    """float64 gradcheck w.r.t. means, scales, quats, opacities, colours and a pose twist."""
    g = torch.Generator().manual_seed(4)
    n, W, H = 4, 10, 8
    means = torch.tensor([[0.0, 0.0, 2.0], [0.3, -0.2, 2.5], [-0.4, 0.2, 1.8], [0.1, 0.35, 3.0]], dtype=D64)
    scales = torch.tensor([[0.45, 0.3, 0.15], [0.6, 0.5, 0.3], [0.3, 0.7, 0.3], [0.8, 0.6, 0.5]], dtype=D64)
    quats = torch.randn(n, 4, generator=g, dtype=D64)
    opac = torch.tensor([0.6, 0.5, 0.7, 0.8], dtype=D64)
    colors = torch.rand(n, 3, generator=g, dtype=D64)
    twist = torch.tensor([0.01, -0.02, 0.03, 0.02, -0.01, 0.015], dtype=D64)
    K = K_of(9.0, 4.7, 3.9)
    T1 = se3.se3_exp(torch.tensor([0.2, 0.0, -0.1, 0.0, 0.1, 0.0], dtype=D64))
    rast = TorchRasterizer()

    def f(m, s, q, o, c, xi):
        poses = torch.stack([se3.se3_exp(xi), T1])
        p = GaussianParams(m, q, s, o, c, None)
        r = render_views(rast, p, poses, K, W, H)
        return r.color, r.depth_acc, r.alpha

    inputs = tuple(t.clone().requires_grad_(True) for t in (means, scales, quats, opac, colors, twist))
    r = f(*inputs)
    assert (r[2] > 0.2).double().mean() > 0.5  # the Gaussians cover most of the image
    # fast_mode checks J v for random v (800 outputs make the full Jacobian slow).
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


def test_gradcheck_semantics_background_and_clamped_jacobian():
    """Semantic channels and a background, with one large Gaussian centred outside the
    1.3x field of view (the clamped branch of the EWA Jacobian) reaching into the image."""
    W, H = 9, 7
    means = torch.tensor([[0.0, 0.0, 2.0], [2.6, 0.1, 2.2], [-0.2, -0.1, 2.4]], dtype=D64)
    scales = torch.tensor([[0.2, 0.15, 0.1], [1.2, 0.9, 0.6], [0.3, 0.2, 0.2]], dtype=D64)
    quats = torch.tensor([[0.9, 0.1, 0.2, 0.0], [0.8, -0.3, 0.1, 0.4], [1.0, 0.0, 0.3, 0.1]], dtype=D64)
    opac = torch.tensor([0.5, 0.6, 0.4], dtype=D64)
    feats = torch.tensor([[0.1, 0.9, 0.3, 0.2], [0.7, 0.2, 0.5, 0.9], [0.4, 0.4, 0.8, 0.1]], dtype=D64)
    K = K_of(8.0, 4.5, 3.5)
    bg = torch.tensor([[0.3, 0.1, 0.6, 0.0]], dtype=D64)
    x_over_z = means[1, 0] / means[1, 2]
    assert x_over_z > (W - 4.5) / 8.0 + 0.3 * 0.5 * W / 8.0  # really clamped
    rast = TorchRasterizer()

    def f(m, s, q, o, c):
        out = rast.rasterize(m, q, s, o, c, EYE[None], K[None], W, H, bg)
        return out.features, out.depth, out.alpha

    probe = f(means, scales, quats, opac, feats)[0]
    only_big = rast.rasterize(means[1:2], quats[1:2], scales[1:2], opac[1:2], feats[1:2], EYE[None], K[None], W, H)
    assert only_big.alpha.max() > 0.05 and probe.shape == (1, H, W, 4)
    inputs = tuple(t.clone().requires_grad_(True) for t in (means, scales, quats, opac, feats))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_no_grad_matches_grad_path():
    means, quats, scales, opac, feats = random_scene(60, 5, torch.float32)
    K = K_of(22.0, 17.3, 15.1, torch.float32)
    v = se3.inv(se3.se3_exp(torch.tensor([[0, 0, -0.5, 0, 0, 0]])))
    rast = TorchRasterizer()
    with torch.no_grad():
        a = rast.rasterize(means, quats, scales, opac, feats, v, K[None], 37, 29)
    m = means.clone().requires_grad_(True)
    b = rast.rasterize(m, quats, scales, opac, feats, v, K[None], 37, 29)
    assert b.features.requires_grad
    for x, y in ((a.features, b.features), (a.depth, b.depth), (a.alpha, b.alpha)):
        torch.testing.assert_close(x, y.detach(), atol=1e-6, rtol=0)


def test_empty_and_fully_culled_scenes():
    rast = TorchRasterizer()
    K = K_of(10.0, 5.0, 5.0, torch.float32)
    empty = GaussianParams(torch.zeros(0, 3), torch.zeros(0, 4), torch.zeros(0, 3), torch.zeros(0), torch.zeros(0, 3))
    r = render_views(rast, empty, torch.eye(4), K, 10, 10, background=torch.tensor([1.0, 0.0, 0.0]))
    assert r.alpha.abs().sum() == 0 and r.color[0, 3, 3].tolist() == [1.0, 0.0, 0.0]
    behind = GaussianParams(torch.tensor([[0.0, 0, -2]]), torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 0.1),
                            torch.tensor([0.9]), torch.ones(1, 3))
    r = render_views(rast, behind, torch.eye(4), K, 10, 10)
    assert r.alpha.abs().sum() == 0 and not r.visible.any()


def test_gradcheck_with_termination_across_segments():
    """Opaque layers make pixels stop mid-list; small tiles and segments make that happen
    across segment boundaries, where saturated tiles drop out."""
    zs = [1.5, 1.7, 1.9, 2.1, 2.3, 2.5]
    n = len(zs)
    means = torch.tensor([[0.05 * (i % 3) - 0.05, 0.04 * (i % 2), z] for i, z in enumerate(zs)], dtype=D64)
    scales = torch.full((n, 3), 0.6, dtype=D64) + 0.05 * torch.arange(n, dtype=D64)[:, None]
    quats = torch.tensor([[1.0, 0.1 * i, 0.0, 0.05] for i in range(n)], dtype=D64)
    opac = torch.full((n,), 0.93, dtype=D64)
    feats = torch.rand(n, 3, generator=torch.Generator().manual_seed(2), dtype=D64)
    K = K_of(10.0, 5.5, 4.5)
    rast = TorchRasterizer(tile_size=4, segment=2)

    def f(m, s, q, o, c):
        out = rast.rasterize(m, q, s, o, c, EYE[None], K[None], 11, 9)
        return out.features, out.depth, out.alpha

    out = f(means, scales, quats, opac, feats)
    assert (out[2] > 1 - 2e-4).sum() > 5  # several pixels reach the stop
    ref = reference_render(means, quats, scales, opac, feats, EYE, K, 11, 9)
    np.testing.assert_allclose(out[0][0].numpy(), ref[0], atol=1e-10)
    np.testing.assert_allclose(out[2][0].numpy(), ref[2], atol=1e-10)
    inputs = tuple(t.clone().requires_grad_(True) for t in (means, scales, quats, opac, feats))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


def test_a_gaussian_that_reaches_no_pixel_centre_renders_nothing():
    """Faint and tiny, centred on a pixel corner: its tile is touched but alpha reaches
    1/255 at no pixel centre, so every tile is dropped. That empty blend once raised
    IndexError (a live node lost a keyframe to it) instead of rendering empty."""
    K = K_of(100.0, 8.0, 8.0)                       # pixel centres at i + 0.5: (8, 8) is a corner
    means = torch.tensor([[0.0, 0.0, 1.0]], dtype=D64)
    scales = torch.full((1, 3), 1e-5, dtype=D64)
    feats = torch.ones(1, 3, dtype=D64)
    out = raster(means, scales, torch.tensor([0.005], dtype=D64), feats, 16, 16, K)
    assert float(out.alpha.abs().max()) == 0.0 and float(out.features.abs().max()) == 0.0
    assert bool(out.visible.all())                  # projected, just below every pixel's threshold


def test_render_views_centres_pixels_like_the_data():
    """A Gaussian on the ray of pixel (10, 7) (OpenCV/ROS convention: pixel centres at
    integer coordinates, as backprojection and the tracker use) renders its peak on that
    pixel, symmetric about it. The rasterisers sample at +0.5; render_views bridges that."""
    K = K_of(20.0, 10.0, 7.0)          # the optical axis passes through pixel (10, 7)
    p = GaussianParams(means=torch.tensor([[0.0, 0.0, 2.0]], dtype=D64), quats=torch.tensor([[1.0, 0, 0, 0]], dtype=D64),
                       scales=torch.full((1, 3), 0.1, dtype=D64), opacities=torch.full((1,), 0.9, dtype=D64),
                       colors=torch.ones(1, 3, dtype=D64))
    a = render_views(TorchRasterizer(), p, EYE, K, 21, 15).alpha[0]
    assert tuple(int(i) for i in np.unravel_index(int(a.argmax()), a.shape)) == (7, 10)
    torch.testing.assert_close(a[7, 9], a[7, 11])
    torch.testing.assert_close(a[6, 10], a[8, 10])


def _two_discs(z_right):
    """A red disc at 2 m left of the axis and a blue one right of it at z_right, overlapping
    on the middle pixel column (flat, facing the camera, nearly opaque)."""
    return GaussianParams(
        means=torch.tensor([[-0.05, 0.0, 2.0], [0.05, 0.0, z_right]]),
        quats=torch.tensor([[1.0, 0, 0, 0]] * 2),
        scales=torch.tensor([[0.06, 0.06, 0.001]] * 2),
        opacities=torch.tensor([0.99, 0.99]),
        colors=torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]))


def test_surface_blend_mixes_one_surface_and_keeps_occlusions():
    """Two neighbours on one surface, 1 cm apart in depth: composited front to back, the
    nearer covers the overlap (its colour spreads half a disc over the other); blended, the
    middle shows both equally. A disc 1 m behind the other is another surface: the
    composited colour stays there. The silhouette never changes."""
    from gs4_ros.core.render import blend_surface_colour

    W, H = 41, 21
    K = torch.tensor([[100.0, 0, 20.0], [0, 100.0, 10.0], [0, 0, 1.0]])
    rast = TorchRasterizer()
    mid = (10, 20)                                     # row, column between the two centres
    for z_right, mixed in ((2.01, True), (3.0, False)):
        p = _two_discs(z_right)
        hard = render_views(rast, p, torch.eye(4), K, W, H)
        red_h, blue_h = hard.color[0][mid][0].item(), hard.color[0][mid][2].item()
        out = blend_surface_colour(rast, p, render_views(rast, p, torch.eye(4), K, W, H), torch.eye(4), K, W, H,
                                   opacity_scale=0.1, depth_tol=0.03)
        red, blue = out.color[0][mid][0].item(), out.color[0][mid][2].item()
        torch.testing.assert_close(out.alpha, hard.alpha)
        assert red_h > 2 * blue_h                      # the nearer disc wins the overlap
        if mixed:
            assert abs(red - blue) < 0.1 * (red + blue), (red, blue)
            assert red + blue == pytest.approx(red_h + blue_h, rel=0.05)
        else:
            torch.testing.assert_close(out.color[0][mid], hard.color[0][mid])
    # Off: the composited colour unchanged.
    p = _two_discs(2.01)
    hard = render_views(rast, p, torch.eye(4), K, W, H)
    same = blend_surface_colour(rast, p, render_views(rast, p, torch.eye(4), K, W, H), torch.eye(4), K, W, H,
                                opacity_scale=0.0, depth_tol=0.03)
    torch.testing.assert_close(same.color, hard.color)


def test_surface_blend_full_alpha_shows_the_surface_at_full_strength():
    """Between one surface's discs the silhouette dips and the composite darkens; with
    full_alpha a pixel whose silhouette reaches it shows the blended colour undimmed,
    while a fainter pixel (the disc's rim) stays scaled by its silhouette."""
    from gs4_ros.core.render import blend_surface_colour

    W, H = 41, 21
    K = torch.tensor([[100.0, 0, 20.0], [0, 100.0, 10.0], [0, 0, 1.0]])
    rast = TorchRasterizer()
    p = _two_discs(2.01)
    p.colors = torch.tensor([[0.8, 0.8, 0.8], [0.8, 0.8, 0.8]])   # one grey surface
    a = render_views(rast, p, torch.eye(4), K, W, H).alpha[0]
    out = blend_surface_colour(rast, p, render_views(rast, p, torch.eye(4), K, W, H), torch.eye(4), K, W, H,
                               opacity_scale=0.1, depth_tol=0.03, full_alpha=0.5)
    dim = (a > 0.5) & (a < 0.95)
    faint = (a > 0.05) & (a < 0.4)
    assert dim.any() and faint.any()
    torch.testing.assert_close(out.color[0][dim], torch.full((int(dim.sum()), 3), 0.8), atol=1e-3, rtol=0)
    torch.testing.assert_close(out.color[0][faint], 0.8 * a[faint][:, None].expand(-1, 3), atol=1e-3, rtol=0)
