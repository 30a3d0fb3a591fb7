"""Map compaction: a Gaussian's share of a view comes from the rasteriser's gradient, and the
ones no view shows are dropped while the views stay as they were."""
import math

import pytest
import torch

from gs4_ros.core.frame import Intrinsics
from gs4_ros.core.gaussian_map import GaussianMap
from gs4_ros.core.map_compaction import compact, view_weights
from gs4_ros.core.render import make_rasterizer, render_views

INTR = Intrinsics(fx=80.0, fy=80.0, cx=39.5, cy=29.5, width=80, height=60)


def _map(rows):
    """rows: (x, y, z, sigma, opacity) isotropic grey Gaussians."""
    g = GaussianMap(num_classes=0)
    r = torch.tensor(rows, dtype=torch.float32)
    n = len(rows)
    op = r[:, 4].clamp(1e-6, 1 - 1e-6)
    g.insert(r[:, :3], torch.log(r[:, 3:4]).expand(n, 3).contiguous(),
             torch.tensor([[1.0, 0, 0, 0]]).expand(n, 4).contiguous(),
             torch.log(op / (1 - op)), torch.full((n, 3), 0.5))
    return g


def test_weights_count_pixels_and_occlusion():
    # 0: a wide opaque disc straight ahead; 1: a small one right behind it (hidden);
    # 2: a small one off to the side (visible); 3: one behind the camera.
    g = _map([(0, 0, 2.0, 0.3, 0.99), (0, 0, 3.0, 0.05, 0.99), (0.6, 0.4, 2.0, 0.02, 0.9),
              (0, 0, -2.0, 0.3, 0.99)])
    ras = make_rasterizer("torch")
    eye = torch.eye(4)
    w = view_weights(ras, g, [eye], INTR, scale=1.0)
    assert w[1] < 0.5 and w[3] == 0.0
    # The side disc: 0.9 x the integral of its footprint, 2 pi sigma^2 in pixels (f / z),
    # with the rasterisers' 0.3 px^2 screen-space dilation (gsplat's eps2d).
    s_px = 0.02 * 80.0 / 2.0
    expect = 0.9 * 2 * math.pi * (s_px ** 2 + 0.3)
    assert abs(float(w[2]) - expect) / expect < 0.1
    # The wide disc (12 px sigma) lies whole in the view and in front of the others.
    wide = 0.99 * 2 * math.pi * ((0.3 * 80.0 / 2.0) ** 2 + 0.3)
    assert abs(float(w[0]) - wide) / wide < 0.05
    # Half-size views give the same shares in full-size pixels, roughly.
    wh = view_weights(ras, g, [eye], INTR, scale=0.5)
    assert abs(float(wh[0]) - float(w[0])) / float(w[0]) < 0.1
    # A second view from behind the small disc shows it: the largest share counts.
    behind = torch.eye(4)
    behind[:3, :3] = torch.diag(torch.tensor([-1.0, 1.0, -1.0]))
    behind[2, 3] = 4.0
    w2 = view_weights(ras, g, [eye, behind], INTR, scale=1.0)
    assert w2[1] > 10.0


def test_compact_drops_only_what_no_view_shows():
    g = _map([(0, 0, 2.0, 0.3, 0.99), (0, 0, 3.0, 0.05, 0.99), (0.6, 0.4, 2.0, 0.02, 0.9)])
    ras = make_rasterizer("torch")
    eye = torch.eye(4)
    K = INTR.K()
    before = render_views(ras, g.params(), eye, K, INTR.width, INTR.height).color
    assert compact(ras, g, [eye], INTR, min_pixels=1.0, scale=1.0) == 1
    assert len(g) == 2 and float(g.means[:, 2].max()) == 2.0
    after = render_views(ras, g.params(), eye, K, INTR.width, INTR.height).color
    # What went was worth under a pixel of the view: the image moves by less than that.
    assert float((after - before)[..., 0].abs().sum()) < 0.5 * 1.0
    assert compact(ras, g, [eye], INTR, min_pixels=0.0) == 0 and len(g) == 2



@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (gsplat)")
def test_gsplat_gives_the_same_shares():
    """The GPU path reads the same gradient from gsplat's kernels."""
    pytest.importorskip("gsplat")
    g = _map([(0, 0, 2.0, 0.3, 0.99), (0, 0, 3.0, 0.05, 0.99), (0.6, 0.4, 2.0, 0.02, 0.9),
              (-0.5, 0.2, 2.5, 0.08, 0.6)])
    eye = torch.eye(4)
    ref = view_weights(make_rasterizer("torch"), g, [eye], INTR, scale=1.0)
    gpu = view_weights(make_rasterizer("gsplat", "cuda"), g.to("cuda"), [eye], INTR, scale=1.0).cpu()
    torch.testing.assert_close(gpu, ref, rtol=0.02, atol=0.05)
