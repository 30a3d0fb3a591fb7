"""Planar hole filling (core/depth_fill): a hole inside one plane gets that plane's depth;
a hole bordered by several surfaces gets the ones nothing is seen behind (a wall past an
occluder, walls beyond the sensor's range), never a nearer surface through which a farther
one shows; a far wall seen only in speckles at the range limit gets a backdrop there; holes below the size limit stay empty; the pipeline maps a filled window but
tracks with the measured depth."""
import numpy as np

from gs4_ros.core.depth_fill import fill_planar_holes

K = np.array([[200.0, 0, 80], [0, 200.0, 60], [0, 0, 1]])
H, W = 120, 160


def plane_depth(n, d):
    """Depth of the plane n . X = d seen through every pixel."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    return (d / (rays @ np.asarray(n))).astype(np.float32)


def test_hole_in_a_tilted_plane_is_filled_with_that_plane():
    n = np.array([0.2, -0.1, 1.0])
    n /= np.linalg.norm(n)
    truth = plane_depth(n, 2.0)
    rng = np.random.default_rng(0)
    noisy = truth + rng.normal(0, 0.002, truth.shape).astype(np.float32)
    depth = noisy.copy()
    depth[30:70, 50:110] = 0.0                  # a window pane
    depth[5:7, 5:7] = 0.0                       # a dropout below the size limit
    out, filled = fill_planar_holes(depth, K)
    assert filled[30:70, 50:110].all() and filled.sum() == 40 * 60
    assert np.abs(out[30:70, 50:110] - truth[30:70, 50:110]).max() < 0.005
    assert out[5, 5] == 0.0
    np.testing.assert_array_equal(out[~filled], depth[~filled])     # measured depth untouched


def test_hole_across_a_depth_step_takes_the_farther_surface_or_nothing():
    """At an object's edge the nearer surface cannot continue (the farther one's ring points
    lie behind it), the farther one can, behind the object. Without occluded filling the
    ring is two surfaces and the hole stays empty."""
    depth = np.full((H, W), 1.5, np.float32)
    depth[:, 80:] = 3.0                         # an object edge: two surfaces
    depth[40:80, 60:100] = 0.0
    out, filled = fill_planar_holes(depth, K, occluded_fill=False)
    assert not filled.any() and (out[40:80, 60:100] == 0).all()
    out, filled = fill_planar_holes(depth, K)
    assert filled[40:80, 60:100].all() and np.allclose(out[40:80, 60:100], 3.0, atol=1e-3)


def test_nothing_to_fill_and_non_finite_depth():
    depth = np.full((H, W), 2.0, np.float32)
    out, filled = fill_planar_holes(depth, K)
    assert not filled.any() and np.array_equal(out, depth)
    depth[20:60, 20:60] = np.nan                # NaN is no measurement, like 0
    out, filled = fill_planar_holes(depth, K)
    assert filled[20:60, 20:60].all() and np.allclose(out[20:60, 20:60], 2.0, atol=1e-3)
    empty, f2 = fill_planar_holes(np.zeros((H, W), np.float32), K)   # no valid pixel at all
    assert not f2.any() and not empty.any()


def test_pipeline_maps_a_glass_pane_only_with_filling():
    """Synthetic seed 900 looks at windows (glass: no sensor depth) from its first frame:
    with filling the first keyframe's map covers most of the pane, without it little."""
    from gs4_ros.core.config import PipelineConfig
    from gs4_ros.core.pipeline import SLAMPipeline
    from gs4_ros.io.synthetic import SyntheticSequence

    f = SyntheticSequence(seed=900, n_frames=2, width=160, height=120).frame(0)
    glass = (f.depth <= 0) & (f.labels == 8)            # window pixels without depth
    assert glass.mean() > 0.1
    cover = {}
    for area in (0, 64):
        cfg = PipelineConfig()
        cfg.mapping.fill_holes_min_area = area
        pipe = SLAMPipeline(cfg, device="cpu")
        res = pipe.process(f)
        out = pipe.render(res.pose, f.intrinsics)
        cover[area] = float((out["alpha"][glass] > 0.5).mean())
    # (edge Gaussians of the frame spill a little onto the pane without filling; at 160x120
    # a few pane pieces between mullions are below the size limit)
    assert cover[0] < 0.35 and cover[64] > 0.6 and cover[64] > cover[0] + 0.3, cover


def corner_room(depth_cut=None):
    """Two walls meeting in a far corner (the view of a room's corner): x = -1.5 + 0.5 z on
    the left and x = 2.5 - 0.5 z on the right, so the corner lies at z = 4 m; each pixel
    sees the nearer wall."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rx = (u - K[0, 2]) / K[0, 0]
    # x = a + b z and x = rx z  ->  z = a / (rx - b)
    with np.errstate(divide="ignore"):
        left = np.where(rx - 0.5 < 0, -1.5 / (rx - 0.5), np.inf)
        right = np.where(rx + 0.5 > 0, 2.5 / (rx + 0.5), np.inf)
    return np.minimum(left, right).astype(np.float32)


def test_hole_beyond_the_sensor_range_at_a_corner_gets_each_wall():
    """The sensor stops at 3.6 m and the corner is at 4 m: the hole around the corner is
    bounded by both walls (not one plane), and each pixel gets its own wall's depth, past
    the range limit."""
    truth = corner_room()
    rng = np.random.default_rng(1)
    depth = truth + rng.normal(0, 0.002, truth.shape).astype(np.float32)
    depth[truth > 3.6] = 0.0
    hole = depth == 0
    assert 0.05 < hole.mean() < 0.5
    out, filled = fill_planar_holes(depth, K, max_depth=10.0, occluded_fill=False)
    assert not filled[hole].any()                       # two walls: the ring is not one plane
    out, filled = fill_planar_holes(depth, K, max_depth=10.0)
    assert filled[hole].mean() > 0.9
    assert np.abs(out[filled] - truth[filled]).max() < 0.03 and out[filled].max() > 3.9
    np.testing.assert_array_equal(out[~filled], depth[~filled])
    # A backdrop at the range limit would cut the corner off: the walls keep it.
    out_b, filled_b = fill_planar_holes(depth, K, max_depth=10.0, beyond_range=3.3)
    np.testing.assert_array_equal(filled_b, filled)
    np.testing.assert_array_equal(out_b, out)


def test_wall_behind_an_occluder_is_filled_and_a_gap_takes_the_farther_surface():
    """A hole between a wall (2 m) and a box in front of it (1.2 m) takes the wall; a hole
    in a doorway of that wall, bordered by the wall and by the farther room seen through it
    (4 m), takes the farther room and never the wall, which ring points lie behind."""
    n = np.array([0.1, 0.0, 1.0])
    n /= np.linalg.norm(n)
    wall = plane_depth(n, 2.0)
    depth = wall.copy()
    depth[40:90, 20:50] = 1.2                            # a box in front of the wall
    depth[45:80, 40:70] = 0.0                            # hole: half behind the box's edge
    far = plane_depth(np.array([0.0, 0.0, 1.0]), 4.0)
    depth[20:100, 100:150] = far[20:100, 100:150]        # a doorway showing the next room
    depth[40:80, 90:120] = 0.0                           # hole across the door's edge
    out, filled = fill_planar_holes(depth, K)
    box_hole = np.zeros_like(filled)
    box_hole[45:80, 40:70] = True
    assert filled[box_hole].mean() > 0.9
    assert np.abs(out[box_hole & filled] - wall[box_hole & filled]).max() < 0.01
    door_hole = np.zeros_like(filled)
    door_hole[40:80, 90:120] = True
    assert filled[door_hole].any()
    assert np.abs(out[door_hole & filled] - 4.0).max() < 0.01      # the farther room, not the wall


def far_region_mapped(seed: int, key: str, values) -> tuple:
    """The first keyframe of a synthetic room mapped under mapping.<key> = each value: per
    value, the share of the pixels past the sensor's 6 m (no depth, truth beyond it) that
    the map covers, and the ratios of the rendered depth to the truth there."""
    from gs4_ros.core.config import PipelineConfig
    from gs4_ros.core.pipeline import SLAMPipeline
    from gs4_ros.io.synthetic import SyntheticSequence

    seq = SyntheticSequence(seed=seed, n_frames=2, width=160, height=120)
    f = seq.frame(0)
    truth = seq.render_clean(0)["depth"].numpy()
    far = (np.asarray(f.depth) <= 0) & (truth > 6.0)
    assert far.mean() > 0.05
    cover, ratio = {}, {}
    for v in values:
        cfg = PipelineConfig()
        setattr(cfg.mapping, key, v)
        pipe = SLAMPipeline(cfg, device="cpu")
        res = pipe.process(f)
        out = pipe.render(res.pose, f.intrinsics)
        seen = far & (np.asarray(out["alpha"]) > 0.5)
        cover[v] = float(seen.mean() / far.mean())
        ratio[v] = np.asarray(out["depth"])[seen] / truth[seen]
    return cover, ratio


def test_pipeline_maps_a_wall_beyond_the_sensor_range():
    """Synthetic room 902's far corner lies past the sensor's 6 m: with occluded filling the
    first keyframe maps it near its true depth (beyond mapping.max_depth, which bounds only
    measured depth), without it the region stays mostly empty."""
    cover, ratio = far_region_mapped(902, "fill_holes_occluded", (False, True))
    assert cover[False] < 0.4 and cover[True] > 0.8, cover
    assert np.median(np.abs(ratio[True] - 1)) < 0.05, np.median(ratio[True])


def test_pipeline_maps_a_far_wall_seen_only_in_speckles_on_a_backdrop():
    """Synthetic room 910's far wall (6.0-6.75 m) is past the sensor's 6 m but for speckles,
    and the frame's planes do not reach it: the first keyframe maps it on the backdrop at
    the range limit, a little nearer than the wall, and leaves it empty without."""
    cover, ratio = far_region_mapped(910, "fill_holes_beyond_range", (0.0, 5.0))
    assert cover[0.0] < 0.2 and cover[5.0] > 0.9, cover
    assert 0.8 < np.median(ratio[5.0]) < 1.0, np.median(ratio[5.0])


def test_inferred_rows_are_left_out_of_tracking_and_replaced_by_measurements():
    """Gaussians on filled depth are marked inferred: the tracking render leaves them out,
    and a later keyframe that measures depth there replaces them with measured ones (the
    same view, now with depth past 6 m, as a longer-range sensor would give it)."""
    import dataclasses

    from gs4_ros.core.config import PipelineConfig
    from gs4_ros.core.pipeline import SLAMPipeline
    from gs4_ros.io.synthetic import SyntheticSequence

    seq = SyntheticSequence(seed=902, n_frames=2, width=160, height=120)
    f = seq.frame(0)
    truth = seq.render_clean(0)["depth"].numpy()
    far = (f.depth <= 0) & (truth > 6.0)
    cfg = PipelineConfig()
    cfg.mapping.keyframe_max_interval = 1
    cfg.mapping.max_depth = 10.0                       # measured depth up to 10 m is mapped
    pipe = SLAMPipeline(cfg, device="cpu")
    res = pipe.process(f)
    gm = pipe.map
    n_inf = int((gm.inferred != 0).sum())
    assert n_inf > 0.5 * far.sum() / 64                # most far blocks (8x8) are inferred rows
    assert float(gm.params(measured_only=True).opacities[gm.inferred != 0].max()) == 0.0
    measured = dataclasses.replace(f, index=1, timestamp=f.timestamp + 1 / 30, depth=truth.astype(np.float32))
    res = pipe.process(measured)
    gm = pipe.map
    assert int((gm.inferred != 0).sum()) < 0.2 * n_inf
    out = pipe.render(res.pose, f.intrinsics)
    assert float((np.asarray(out["alpha"])[far] > 0.5).mean()) > 0.8


def test_metrics_count_the_inferred_gaussians():
    """metrics.json says how many Gaussians of the map are guesses (0 without filling)."""
    from gs4_ros.core.config import PipelineConfig
    from gs4_ros.core.pipeline import SLAMPipeline
    from gs4_ros.eval.runner import evaluate, run_frames
    from gs4_ros.io.synthetic import SyntheticSequence

    seq = SyntheticSequence(seed=902, n_frames=3, width=160, height=120)
    counts = {}
    for area in (0, 64):
        cfg = PipelineConfig()
        cfg.mapping.fill_holes_min_area = area
        pipe = SLAMPipeline(cfg, device="cpu")
        m = evaluate(pipe, run_frames(pipe, [seq.frame(i) for i in range(3)], eval_every=2))
        counts[area] = (m["num_gaussians_inferred"], m["num_gaussians"])
    assert counts[0][0] == 0
    assert 0 < counts[64][0] < counts[64][1]


def test_a_hole_sprawling_from_a_near_object_to_a_far_wall_fills_only_near_the_wall():
    """One hole component can run from below a near object (too near for the sensor) round
    the image border to a patch of the wall (7-Scenes frames 385-388). Its ring as a whole
    supports the wall, which used to fill all of it, below the object too; the wall now
    continues only near the ring pixels that lie on it."""
    wall = plane_depth(np.array([0.0, 0.0, 1.0]), 3.0)
    depth = wall.copy()
    depth[60:, :] = 1.0                     # a near object across the lower half
    depth[100:, :] = 0.0                    # band below it, too near to measure
    depth[10:, 150:] = 0.0                  # along the right border, joining ...
    depth[10:40, 110:] = 0.0                # ... a patch of the wall
    out, filled = fill_planar_holes(depth, K)
    patch = np.zeros_like(filled)
    patch[10:40, 110:150] = True
    assert filled[patch].mean() > 0.9 and np.allclose(out[patch & filled], 3.0, atol=1e-3)
    assert not filled[100:, :80].any()      # far from the wall's ring: left empty


def far_wall_speckles(seed=0):
    """A wall 6.6 m away facing the camera, past a sensor that stops at 6 m, with a box
    1.5 m away over the left third: noise brings the wall inside the range only in
    speckles, denser towards the image's top and right borders (synthetic room 910)."""
    rng = np.random.default_rng(seed)
    depth = np.zeros((H, W), np.float32)
    v, u = np.mgrid[0:H, 0:W]
    edge = np.minimum(v, W - 1 - u)                       # pixels from the top or right border
    speckle = rng.uniform(size=(H, W)) < 0.6 * np.exp(-edge / 6.0)
    depth[speckle] = rng.uniform(5.75, 6.0, size=int(speckle.sum()))
    depth[:, :50] = 1.5                                   # the box, measured everywhere
    return depth


def test_a_far_wall_seen_only_in_speckles_gets_a_backdrop_at_the_range_limit():
    """No frame plane fits the speckles, so without the backdrop the far wall stays empty;
    with it the hole takes a plane facing the camera at the speckles' depth, and the box
    and measured pixels are untouched. Next to the box, farther than the occluded reach
    (a quarter of the width) from any speckle, the hole stays empty as any hole behind
    an occluder does."""
    depth = far_wall_speckles()
    hole = depth == 0
    out0, filled0 = fill_planar_holes(depth, K, max_depth=10.0)
    out, filled = fill_planar_holes(depth, K, max_depth=10.0, beyond_range=5.0)
    assert filled0[hole].mean() < 0.2, filled0[hole].mean()
    assert filled[20:70, 55:140].mean() > 0.9, filled[20:70, 55:140].mean()
    assert not filled[100:, 50:90].any()                  # beside the box, out of the speckles' reach
    assert np.all((out[filled & ~filled0] > 5.75) & (out[filled & ~filled0] < 6.0))
    np.testing.assert_array_equal(out[~filled], depth[~filled])
    assert not filled[:, :50].any()
    # Beyond a range the ring does not reach, nothing changes.
    out_far, filled_far = fill_planar_holes(depth, K, max_depth=10.0, beyond_range=6.5)
    np.testing.assert_array_equal(filled_far, filled0)


def test_holes_within_the_range_get_no_backdrop():
    """A hole ringed by a wall and an occluder 1-2 m away fills as before whatever the
    backdrop's range: the ring never reaches it."""
    n = np.array([0.1, 0.0, 1.0])
    n /= np.linalg.norm(n)
    depth = plane_depth(n, 2.0)
    depth[40:90, 20:50] = 1.2
    depth[45:80, 40:70] = 0.0
    depth[10:30, 100:140] = 0.0
    out0, filled0 = fill_planar_holes(depth, K)
    out, filled = fill_planar_holes(depth, K, beyond_range=5.0)
    np.testing.assert_array_equal(filled, filled0)
    np.testing.assert_array_equal(out, out0)
