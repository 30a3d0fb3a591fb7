"""SLAMPipeline.process per frame: the pose reaches a live driver (on_pose) as soon as the
frame is tracked, before fusion and mapping, and equals the frame's final result; a
keyframe reuses the tracker's render of the map for co-visibility."""
import numpy as np
import torch
import pytest

from gs4_ros.core.config import PipelineConfig
from gs4_ros.core.pipeline import SLAMPipeline
from gs4_ros.io.synthetic import SyntheticSequence


@pytest.fixture(scope="module")
def frames():
    seq = SyntheticSequence(seed=1, n_frames=6, width=96, height=72)
    return [seq.frame(i) for i in range(len(seq))]


def test_pose_hook_runs_before_mapping_with_the_final_pose(frames):
    cfg = PipelineConfig()
    cfg.mapping.keyframe_max_interval = 2
    pipe = SLAMPipeline(cfg, device="cpu")
    seen = []

    def hook(T, ok):
        # Called before this frame's Gaussians are inserted: the map is still the old one.
        seen.append((T.copy(), ok, len(pipe.map), len(pipe.keyframes)))

    for f in frames:
        res = pipe.process(f, on_pose=hook)
        T, ok, n_map, n_kf = seen[-1]
        np.testing.assert_array_equal(T, res.pose)
        assert ok == res.ok
        if res.keyframe and res.added:
            assert n_map < res.num_gaussians or res.pruned
            assert n_kf == len(pipe.keyframes) - 1
    assert len(seen) == len(frames)


def test_a_failing_hook_does_not_break_the_frame(frames, caplog):
    pipe = SLAMPipeline(PipelineConfig(), device="cpu")

    def bad(T, ok):
        raise RuntimeError("publisher gone")

    ref = SLAMPipeline(PipelineConfig(), device="cpu")
    for f in frames[:3]:
        res = pipe.process(f, on_pose=bad)
        expect = ref.process(f)
        np.testing.assert_allclose(res.pose, expect.pose, atol=1e-6)
        assert res.num_gaussians == expect.num_gaussians
    assert "on_pose callback failed" in caplog.text
    assert len(pipe.trajectory) == 3


def test_keyframes_reuse_the_tracking_render_for_covisibility(monkeypatch):
    """With reuse (default) keyframes after the first render the map once (for tracking)
    and insert about the same Gaussians as when they render again at the tracked pose."""
    from gs4_ros.core import covisibility

    calls = {"own": 0}
    orig = covisibility.render_views

    def counting(*a, **k):
        calls["own"] += 1
        return orig(*a, **k)
    monkeypatch.setattr(covisibility, "render_views", counting)
    seq = SyntheticSequence(seed=0, n_frames=6, width=160, height=120)
    frames = [seq.frame(i) for i in range(len(seq))]
    counts = {}
    for step in (0.0, 0.05):     # steps from the prediction here are 0.7-2.6 cm
        cfg = PipelineConfig()
        cfg.mapping.keyframe_max_interval = 1            # every frame a keyframe
        cfg.mapping.covis_reuse_max_step = step
        cfg.mapping.covis_reuse_max_deg = 2.0          # rotations from the prediction here: < 0.6 deg
        cfg.mapping.fill_holes_min_area = 0   # blocks on filled depth take a render of their own (test_depth_fill)
        pipe = SLAMPipeline(cfg, device="cpu")
        calls["own"] = 0
        for f in frames:
            pipe.process(f)
        counts[step] = (len(pipe.map), calls["own"])
    assert counts[0.0][1] == len(frames) - 1            # every keyframe after the first rendered
    assert counts[0.05][1] == 0                         # none did: the tracker's render served
    assert abs(counts[0.05][0] - counts[0.0][0]) <= 0.05 * counts[0.0][0], counts


def test_external_odometry_seeds_tracking():
    """A 24 cm jump after a slow walk: with the frames' odometry (the ground truth in
    another odom frame) the tracker starts at the answer, with the constant-velocity model
    it starts 22 cm off (and recovers here). A broken matrix is ignored."""
    from gs4_ros.core import se3

    seq = SyntheticSequence(seed=3, n_frames=31, width=160, height=120)
    frames = [seq.frame(i) for i in list(range(8)) + [30]]
    A = se3.se3_exp(torch.tensor([0.5, -1.0, 0.2, 0.3, -0.2, 1.0], dtype=torch.float64)).numpy()
    step, err = {}, {}
    for use in (False, True):
        pipe = SLAMPipeline(PipelineConfig(), device="cpu")
        pipe.cfg.tracking.use_motion_prior = use
        poses = []
        for f in frames:
            f.meta["odom_camera_pose"] = A @ f.gt_pose
            r = pipe.process(f)
            poses.append(r.pose)
        step[use] = r.health["step_m"]
        rel_gt = np.linalg.inv(frames[-2].gt_pose) @ frames[-1].gt_pose
        err[use] = np.linalg.norm((np.linalg.inv(rel_gt) @ np.linalg.inv(poses[-2]) @ poses[-1])[:3, 3])
    assert step[True] < 0.015 and step[False] > 0.1, step
    assert err[True] < 0.015, err
    bad = frames[-1].__class__(99, 99.0, frames[-1].rgb, frames[-1].depth, frames[-1].intrinsics,
                               meta={"odom_camera_pose": np.full((4, 4), np.nan)})
    pipe.process(bad)
    assert pipe._odom_pose is None


def _numpy_blas_threads():
    from threadpoolctl import threadpool_info

    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas" and "numpy" in i["filepath"]]


def test_the_pipeline_caps_the_host_blas_threads_and_0_leaves_them():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=None):          # whatever a test sets is undone afterwards
        threadpool_limits(limits=2, user_api="blas")
        cfg = PipelineConfig()
        cfg.host_blas_threads = 0
        SLAMPipeline(cfg, device="cpu")
        assert _numpy_blas_threads() == [2]
        SLAMPipeline(PipelineConfig(), device="cpu")   # default: one thread
        assert _numpy_blas_threads() == [1]


def test_without_threadpoolctl_the_cap_is_skipped_with_a_warning(monkeypatch, caplog):
    import sys

    from gs4_ros.core.host_threads import limit_host_blas

    monkeypatch.setitem(sys.modules, "threadpoolctl", None)      # import fails as if not installed
    assert limit_host_blas(1) == []
    assert "threadpoolctl is not installed" in caplog.text


def test_set_strings_override_the_config_and_bad_ones_are_refused():
    """`--set KEY=VALUE` (gs4 run, gs4 train eval, the benchmarks) goes through one parser."""
    from gs4_ros.core.config import load_config, parse_overrides

    o = parse_overrides(["tracking.photo_weight = 0.1", "mapping.stride=16"])
    assert o == {"tracking.photo_weight": "0.1", "mapping.stride": "16"}
    cfg = load_config(None, o)
    assert cfg.tracking.photo_weight == 0.1 and cfg.mapping.stride == 16
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["tracking.photo_weight"])


def test_views_and_optionally_the_tracker_take_the_surface_blended_colour(frames):
    """Published views blend colour over each surface by default (render_blend_opacity);
    0 gives the plain composite. The tracker's reference keeps the composite unless
    tracking.surface_blend asks for the blend; its geometry never changes."""
    pipe = SLAMPipeline(PipelineConfig(), device="cpu")
    for f in frames[:2]:
        pipe.process(f)
    pose = pipe.trajectory[-1][2]
    blended = pipe.render(pose, frames[0].intrinsics)
    pipe.cfg.render_blend_opacity = 0.0
    plain = pipe.render(pose, frames[0].intrinsics)
    pipe.cfg.render_blend_opacity = 0.1
    np.testing.assert_array_equal(blended["alpha"], plain["alpha"])
    assert np.abs(blended["color"].astype(int) - plain["color"].astype(int)).mean() > 0.5

    T = torch.as_tensor(pose, dtype=torch.float32)
    K, w, h = frames[0].intrinsics.K("cpu"), frames[0].intrinsics.width, frames[0].intrinsics.height
    ref = pipe.render_reference(T, K, w, h)
    pipe.cfg.tracking.surface_blend = True
    ref_b = pipe.render_reference(T, K, w, h)
    torch.testing.assert_close(ref_b.points, ref.points)
    assert (ref_b.color - ref.color).abs().mean() > 1e-3


def blocked_then_back(mapped, n_blocked: int, back):
    """After the last of `mapped`: `n_blocked` frames of a flat grey surface 0.4 m in front
    of the camera (someone standing in front of it: every one lost), then the frames
    `back`, renumbered and restamped to follow (the view cleared). Shared with
    benchmarks/relocalization.py, so the benchmark replays the test's scenario."""
    import dataclasses

    last = mapped[-1]
    blocked = [dataclasses.replace(last, depth=np.full_like(last.depth, 0.4), rgb=np.full_like(last.rgb, 128),
                                   index=last.index + 1 + k, timestamp=last.timestamp + 0.033 * (k + 1))
               for k in range(n_blocked)]
    cleared = [dataclasses.replace(f, index=last.index + 1 + n_blocked + j,
                                   timestamp=last.timestamp + 0.033 * (n_blocked + 1 + j)) for j, f in enumerate(back)]
    return blocked, cleared


def with_odometry(frames, sources):
    """`frames` carrying the true poses of `sources` as their external odometry (a wheel
    odometry without error). Shared with benchmarks/relocalization.py."""
    import dataclasses

    return [dataclasses.replace(f, meta={**f.meta, "odom_camera_pose": s.gt_pose}) for f, s in zip(frames, sources)]


def test_a_blocked_view_holds_the_pose_and_tracking_finds_the_map_again():
    """Someone stands in front of the camera for 50 frames (a flat, grey surface 0.4 m
    away: every frame lost). The constant-velocity model continues the last velocity for
    `max_extrapolated_frames` of them, then holds the pose; when the view clears (the
    camera having stayed put), tracking finds the map again. Continued without end, the
    estimate ran 55 cm off at ~1.1 cm a frame and never came back (before the cap)."""
    seq = SyntheticSequence(seed=3, n_frames=20, width=160, height=120)
    frames = [seq.frame(i) for i in range(len(seq))]
    cfg = PipelineConfig()
    cap = cfg.tracking.max_extrapolated_frames
    pipe = SLAMPipeline(cfg, device="cpu")
    for f in frames[:10]:
        assert pipe.process(f).ok
    blocked, cleared = blocked_then_back(frames[:10], 50, frames[10:14])
    held = []
    for b in blocked:
        res = pipe.process(b)
        assert not res.ok
        held.append(res.pose[:3, 3].copy())
    steps = np.linalg.norm(np.diff(np.array(held), axis=0), axis=1)
    assert steps[:cap - 1].min() > 0.005                  # the velocity continued this long
    assert steps[cap - 1:].max() < 1e-6                   # then the pose held
    align = frames[0].gt_pose @ np.linalg.inv(pipe.trajectory[0][2])
    errors = []
    for j, (c, f) in enumerate(zip(cleared, frames[10:14])):
        res = pipe.process(c)
        assert res.ok, f"view cleared, frame {j}: still lost"
        errors.append(np.linalg.norm((align @ res.pose)[:3, 3] - f.gt_pose[:3, 3]))
    print(f"\nblocked 50 frames: the pose moved {100 * steps.sum():.2f} cm in all ({cap} extrapolated); "
          f"view cleared: tracked again, {', '.join(f'{100 * e:.2f}' for e in errors)} cm from the truth")
    assert max(errors) < 0.05


def test_a_kidnapped_camera_is_relocalised_against_the_keyframes(capsys):
    """The view is blocked (8 frames of a flat grey surface 0.4 m away) after 60 mapped
    frames, and when it clears the camera is back where it was at frame 3, 63 cm away,
    moving on ~5 cm a frame (every 5th frame) with a wheel odometry (the frames after the
    blockage carry one). The held pose is too far for the tracker; with the back-end
    (synchronous here) the lost frame is matched against the keyframes after
    `relocalize_after` lost frames and tracking continues from there, the answer carried
    to the next frame by the odometry. With relocalize_after 0 it stays lost."""
    seq = SyntheticSequence(seed=3, n_frames=60, width=160, height=120)
    frames = [seq.frame(i) for i in range(len(seq))]
    src = frames[3:28:5]
    blocked, back = blocked_then_back(frames, 8, src)
    back = with_odometry(back, src)
    assert np.linalg.norm(frames[-1].gt_pose[:3, 3] - frames[3].gt_pose[:3, 3]) > 0.3
    runs = {}
    for after in (3, 0):
        cfg = PipelineConfig()
        cfg.backend.enabled = cfg.backend.synchronous = True
        cfg.backend.relocalize_after = after
        pipe = SLAMPipeline(cfg, device="cpu")
        for f in frames + blocked:
            pipe.process(f)
        align = frames[0].gt_pose @ np.linalg.inv(pipe.trajectory[0][2])
        res = [pipe.process(f) for f in back]
        errors = [np.linalg.norm((align @ r.pose)[:3, 3] - f.gt_pose[:3, 3]) for r, f in zip(res, src)]
        runs[after] = ([r.ok for r in res], errors, pipe.backend.stats, pipe.backend_summary(), res)
        pipe.close()
    for after, (ok, errors, st, _, res) in runs.items():
        moved = [r.health.get("step_m", 0.0) for r in res]
        with capsys.disabled():                             # -s shows it; capsys takes the rest
            print(f"\nrelocalize_after {after}: tracked {''.join('+' if o else '-' for o in ok)}, "
                  f"{', '.join(f'{100 * e:.1f}' for e in errors)} cm from the truth; "
                  f"{st.reloc_requests} queries, {st.reloc_successes} found; tracking moved "
                  f"{', '.join(f'{100 * m:.1f}' for m in moved)} cm from the prediction", end="")
    ok, errors, st, summary, res = runs[3]
    assert all(ok[1:]) and max(errors[1:]) < 0.05            # the first frame back is the query
    # The answer is for the frame before; odometry carries it over the 4.7 cm between
    # (without it, tracking had to move 4.2 cm from the answer).
    assert res[1].health["step_m"] < 0.015
    assert st.reloc_applied == 1
    from gs4_ros.cli.run import _print_summary               # what `gs4 run` prints of it
    _print_summary({"backend": summary}, {})
    assert f"relocalisation    1 applied, 1 found in {st.reloc_requests} queries" in capsys.readouterr().out
    ok, errors, st, _, _ = runs[0]
    assert not any(ok) and min(errors) > 0.3 and st.reloc_requests == 0


def test_after_a_relocalisation_the_revisit_closes_loops_consistently():
    """The relocalised keyframe joins the graph by the tracker's edge across the jump.
    Going on over the path mapped before (frames 3-59 again), the revisit closes loops
    against the first pass's keyframes: none is rejected as an outlier, the corrections
    stay small, and the revisit tracks within 1 cm of the first pass on the same frames
    (a jump edge that contradicted the loops would pull the graph apart)."""
    seq = SyntheticSequence(seed=3, n_frames=60, width=160, height=120)
    frames = [seq.frame(i) for i in range(len(seq))]
    src = frames[3:]
    blocked, back = blocked_then_back(frames, 8, src)
    cfg = PipelineConfig()
    cfg.backend.enabled = cfg.backend.synchronous = True
    pipe = SLAMPipeline(cfg, device="cpu")
    try:
        for f in frames + blocked:
            pipe.process(f)
        align = frames[0].gt_pose @ np.linalg.inv(pipe.trajectory[0][2])
        res = [pipe.process(f) for f in back]
        st = pipe.backend.stats
        first = np.array([np.linalg.norm((align @ pipe.trajectory[f.index][2])[:3, 3] - f.gt_pose[:3, 3])
                          for f in src])
        again = np.array([np.linalg.norm((align @ r.pose)[:3, 3] - f.gt_pose[:3, 3]) for r, f in zip(res, src)])
    finally:
        pipe.close()
    print(f"\nrevisit after relocalisation: {st.loop_closures} loops, {st.loop_outliers} outliers, largest "
          f"correction {100 * st.max_correction_m:.1f} cm; error {100 * np.median(again[1:]):.1f} cm median "
          f"(first pass {100 * np.median(first[1:]):.1f}), worst gap {100 * (again - first)[1:].max():.1f} cm")
    assert st.reloc_applied == 1 and all(r.ok for r in res[1:])
    assert st.loop_closures >= 3 and st.loop_outliers == 0 and st.max_correction_m < 0.08
    assert (again - first)[1:].max() < 0.01
