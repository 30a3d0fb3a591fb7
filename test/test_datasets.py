"""Dataset readers on small fixture folders (TUM, Replica, 7-Scenes nesting) and on the real
7-Scenes sequence in ../shared/data (skipped when absent)."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from gs4_ros.io.datasets import DatasetError, open_dataset, parse_frame_range

REPO = Path(__file__).resolve().parents[1]
SEVEN = REPO.parent / "shared" / "data" / "7scenes_redkitchen_dev"


# --- frame ranges ----------------------------------------------------------------------

@pytest.mark.parametrize("spec,expect", [
    (None, list(range(10))), ("", list(range(10))), ("2:5", [2, 3, 4]), ("::3", [0, 3, 6, 9]),
    (":4", [0, 1, 2, 3]), ("7:", [7, 8, 9]), ("-3:", [7, 8, 9]), ("1:9:4", [1, 5]), ("4", [4]),
    ("-1", [9]), ("8:2:-2", [8, 6, 4]),
])
def test_frame_range_is_python_slice(spec, expect):
    assert list(range(10)[parse_frame_range(spec)]) == expect


@pytest.mark.parametrize("spec", ["a:b", "1:2:3:4", "1:5:0", "1.5:3"])
def test_frame_range_rejects_garbage(spec):
    with pytest.raises(DatasetError):
        parse_frame_range(spec)


# --- TUM fixture -----------------------------------------------------------------------

T0 = 1305031102.0


def _tum_pose(t):
    """Ground truth moving linearly in x and turning at a constant rate about z."""
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("z", 0.5 * (t - T0)).as_matrix()
    T[:3, 3] = (0.1 * (t - T0), 1.0, 1.5)
    return T


def make_tum(root: Path, n=6, size=(640, 480), name="rgbd_dataset_freiburg1_fixture", gt=True):
    seq = root / name
    (seq / "rgb").mkdir(parents=True)
    (seq / "depth").mkdir()
    w, h = size
    rgb_lines, depth_lines = ["# color images", "# timestamp filename"], ["# depth maps"]
    for i in range(n):
        t = T0 + i / 30.0
        bgr = np.zeros((h, w, 3), np.uint8)
        bgr[:] = (50, 100, 200)  # B, G, R
        bgr[0, 0] = (i, i, i)
        cv2.imwrite(str(seq / "rgb" / f"{t:.6f}.png"), bgr)
        rgb_lines.append(f"{t:.6f} rgb/{t:.6f}.png")
        if i == 3:  # this colour frame has no depth partner within 20 ms
            continue
        td = t + 0.008
        d = np.full((h, w), 5000 + 100 * i, np.uint16)  # (1 + 0.02 i) metres
        d[0, :10] = 0
        cv2.imwrite(str(seq / "depth" / f"{td:.6f}.png"), d)
        depth_lines.append(f"{td:.6f} depth/{td:.6f}.png")
    (seq / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (seq / "depth.txt").write_text("\n".join(depth_lines) + "\n")
    if gt:
        from gs4_ros.io.trajectory import write_tum
        stamps = T0 - 0.003 + np.arange(0, 0.1, 0.01)  # 100 Hz, ends before the last frames
        write_tum(seq / "groundtruth.txt", stamps, [_tum_pose(t) for t in stamps])
    return seq


def test_tum_reader_values(tmp_path):
    seq = make_tum(tmp_path)
    ds = open_dataset(f"tum:{seq}")
    assert len(ds) == 5  # frame 3 has no depth
    assert (ds.intrinsics.fx, ds.intrinsics.fy, ds.intrinsics.cx, ds.intrinsics.cy) == (517.3, 516.5, 318.6, 255.3)
    f = ds[0]
    assert f.rgb.shape == (480, 640, 3) and f.rgb.dtype == np.uint8
    assert tuple(f.rgb[5, 5]) == (200, 100, 50)  # converted to RGB
    assert f.depth.dtype == np.float32 and f.depth[0, 0] == 0.0
    assert f.depth[100, 100] == pytest.approx(1.0)
    assert ds[3].depth[100, 100] == pytest.approx(1.08)  # 4th pair is colour frame 4
    assert ds[3].rgb[0, 0, 0] == 4
    assert f.timestamp == pytest.approx(T0, abs=1e-6)
    np.testing.assert_allclose(ds.timestamps(), T0 + np.array([0, 1, 2, 4, 5]) / 30.0, atol=1e-6)
    # Ground truth interpolated to the colour stamps; frames after its end have none.
    for i, k in enumerate([0, 1, 2]):
        np.testing.assert_allclose(ds[i].gt_pose, _tum_pose(T0 + k / 30.0), atol=1e-6)
    assert ds[3].gt_pose is None and ds[4].gt_pose is None
    gt = ds.gt_poses()
    assert gt.shape == (5, 4, 4) and np.isnan(gt[4]).all() and np.isfinite(gt[0]).all()


def test_tum_ranges_resize_and_intrinsics_sources(tmp_path):
    seq = make_tum(tmp_path)
    ds = open_dataset(f"tum:{seq}", frames="1:5:2", width=320)
    assert len(ds) == 2 and [ds[i].index for i in range(2)] == [1, 3]
    f = ds[1]
    assert f.rgb.shape == (240, 320, 3) and f.depth.shape == (240, 320)
    assert ds.intrinsics.fx == pytest.approx(517.3 / 2) and ds.intrinsics.cx == pytest.approx((318.6 + 0.5) / 2 - 0.5)
    assert f.intrinsics == ds.intrinsics
    # A camera file in the folder wins over the family; the keyword wins over both.
    (seq / "camera.txt").write_text("500 501 300 200\n")
    assert open_dataset(f"tum:{seq}").intrinsics.fy == 501
    ds = open_dataset(f"tum:{seq}", intrinsics=(400, 401, 310, 230))
    assert (ds.intrinsics.fx, ds.intrinsics.cy) == (400, 230)


def test_tum_family_by_name(tmp_path):
    for name, fx in [("rgbd_dataset_freiburg2_xyz", 520.9), ("rgbd_dataset_freiburg3_office", 535.4),
                     ("my_own_recording", 525.0)]:
        seq = make_tum(tmp_path, n=2, name=name, gt=False)
        ds = open_dataset(f"tum:{seq}")
        assert ds.intrinsics.fx == fx
        assert ds.gt_poses() is None and ds[0].gt_pose is None


def test_tum_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(f"tum:{tmp_path / 'nope'}")
    seq = make_tum(tmp_path, n=4)
    with pytest.raises(DatasetError, match="selects no frames"):
        open_dataset(f"tum:{seq}", frames="10:20")
    # A listed file that is missing is named in the message.
    victim = sorted((seq / "depth").iterdir())[1]
    victim.unlink()
    with pytest.raises(DatasetError, match=victim.name):
        open_dataset(f"tum:{seq}")
    # A corrupt image: opening works (lazy), reading says which file.
    victim.write_bytes(b"not a png")
    ds = open_dataset(f"tum:{seq}")
    with pytest.raises(DatasetError, match="cannot be read"):
        ds[1]
    # Colour and depth of different sizes.
    cv2.imwrite(str(victim), np.zeros((240, 320), np.uint16))
    with pytest.raises(DatasetError, match="must match"):
        open_dataset(f"tum:{seq}")[1]
    (seq / "groundtruth.txt").write_text("1 2 3\n")
    with pytest.raises(DatasetError, match="ground truth"):
        open_dataset(f"tum:{seq}")
    (seq / "rgb.txt").unlink()
    with pytest.raises(DatasetError, match="rgb.txt"):
        open_dataset(f"tum:{seq}")


# --- Replica fixture -------------------------------------------------------------------

def make_replica(root: Path, n=4, cam=True, size=(64, 48)):
    scene = root / "room0"
    (scene / "results").mkdir(parents=True)
    w, h = size
    rows = []
    for i in range(n):
        cv2.imwrite(str(scene / "results" / f"frame{i:06d}.jpg"), np.full((h, w, 3), 128, np.uint8))
        cv2.imwrite(str(scene / "results" / f"depth{i:06d}.png"), np.full((h, w), 6553 + 655 * i, np.uint16))
        T = np.eye(4)
        T[:3, :3] = Rotation.from_euler("y", 0.1 * i).as_matrix()
        T[:3, 3] = (1.0 + i, 2.0, 3.0)
        rows.append(" ".join(f"{v:.9f}" for v in T.ravel()))
    (scene / "traj.txt").write_text("\n".join(rows) + "\n")
    if cam:
        (root / "cam_params.json").write_text(json.dumps(
            {"camera": {"w": w, "h": h, "fx": 50.0, "fy": 51.0, "cx": 31.5, "cy": 23.5, "scale": 6553.5}}))
    return scene


def test_replica_reader(tmp_path):
    scene = make_replica(tmp_path)
    ds = open_dataset(f"replica:{scene}")
    assert len(ds) == 4
    assert (ds.intrinsics.width, ds.intrinsics.fx, ds.intrinsics.fy) == (64, 50.0, 51.0)  # json one level up
    f = ds[2]
    assert f.depth[10, 10] == pytest.approx((6553 + 1310) / 6553.5, rel=1e-6)
    np.testing.assert_allclose(f.gt_pose[:3, 3], (3.0, 2.0, 3.0))
    np.testing.assert_allclose(f.gt_pose[:3, :3], Rotation.from_euler("y", 0.2).as_matrix(), atol=1e-8)
    assert f.timestamp == pytest.approx(2 / 30)
    assert ds.gt_poses().shape == (4, 4, 4)
    assert len(open_dataset(f"replica:{scene}", frames="::3")) == 2


def test_replica_defaults_and_errors(tmp_path):
    scene = make_replica(tmp_path, n=2, cam=False, size=(1200, 680))
    ds = open_dataset(f"replica:{scene}", width=300)
    assert ds.intrinsics.height == 170 and ds.intrinsics.fx == pytest.approx(150.0)
    assert ds[1].depth.shape == (170, 300)
    (scene / "traj.txt").write_text("1 2 3\n")
    with pytest.raises(DatasetError, match="16 numbers"):
        open_dataset(f"replica:{scene}")
    (scene / "traj.txt").write_text(" ".join(["0"] * 16) + "\n")
    with pytest.raises(DatasetError, match="1 poses but there are 2 frames"):
        open_dataset(f"replica:{scene}")
    (scene / "traj.txt").unlink()
    with pytest.raises(DatasetError, match="traj.txt"):
        open_dataset(f"replica:{scene}")
    with pytest.raises(DatasetError, match="results"):
        open_dataset(f"replica:{tmp_path}")


# --- 7-Scenes --------------------------------------------------------------------------

def make_7scenes_scene(root: Path):
    """Original nesting: scene/seq-01, scene/seq-02, small images, one 65535 pixel."""
    for s in (1, 2):
        d = root / "chess" / f"seq-{s:02d}"
        d.mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(d / f"frame-{i:06d}.color.png"), np.full((48, 64, 3), 10 * s, np.uint8))
            dep = np.full((48, 64), 1500, np.uint16)
            dep[0, 0] = 65535
            cv2.imwrite(str(d / f"frame-{i:06d}.depth.png"), dep)
            T = np.eye(4)
            T[:3, 3] = (s, i, 0)
            np.savetxt(d / f"frame-{i:06d}.pose.txt", T)
    return root / "chess"


def test_7scenes_nesting_and_invalid_depth(tmp_path):
    scene = make_7scenes_scene(tmp_path)
    ds = open_dataset(f"7scenes:{scene}")
    assert ds.name.endswith("seq-01") and len(ds) == 3
    f = ds[2]
    assert f.depth[0, 0] == 0.0 and f.depth[5, 5] == pytest.approx(1.5)
    np.testing.assert_allclose(f.gt_pose[:3, 3], (1, 2, 0))
    assert f.timestamp == pytest.approx(2 / 30)
    # No camera-intrinsics.txt: the 640x480 default scaled to the 64x48 images.
    assert ds.intrinsics.fx == pytest.approx(58.5)
    ds2 = open_dataset(f"7scenes:{scene}", seq=2)
    assert ds2[0].rgb[0, 0, 0] == 20
    with pytest.raises(DatasetError, match="seq-01, seq-02"):
        open_dataset(f"7scenes:{scene}", seq=5)
    (scene / "seq-02" / "frame-000001.depth.png").unlink()
    with pytest.raises(DatasetError, match="frame-000001 has no depth"):
        open_dataset(f"7scenes:{scene}", seq="seq-02")


@pytest.mark.data
@pytest.mark.skipif(not SEVEN.is_dir(), reason=f"real 7-Scenes data not found at {SEVEN}")
def test_7scenes_real_sequence():
    ds = open_dataset(f"7scenes:{SEVEN}", frames="0:500:1")
    assert len(ds) == 500
    i = ds.intrinsics
    assert (i.fx, i.fy, i.cx, i.cy, i.width, i.height) == (585, 585, 320, 240, 640, 480)
    f = ds[0]
    assert f.rgb.shape == (480, 640, 3) and f.depth.dtype == np.float32
    valid = f.depth > 0
    assert 0.5 < valid.mean() <= 1.0
    assert 0.5 < f.depth[valid].min() and f.depth.max() < 6.0  # metres, not millimetres
    expect = np.loadtxt(SEVEN / "frame-000000.pose.txt")
    np.testing.assert_allclose(f.gt_pose, expect, atol=1e-3)  # re-orthonormalised rotation
    R = f.gt_pose[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(f.gt_pose[:3, 3], expect[:3, 3])
    sub = open_dataset(f"7scenes:{SEVEN}", frames="::100", width=320, height=240)
    assert [sub[k].index for k in range(len(sub))] == [0, 100, 200, 300, 400]
    np.testing.assert_allclose(sub.timestamps(), np.arange(0, 500, 100) / 30)
    assert sub.gt_poses().shape == (5, 4, 4) and sub[1].depth.shape == (240, 320)
    assert sub.intrinsics.fx == pytest.approx(292.5)
    # The real path moves a few centimetres per frame at most (as the data README says).
    steps = np.linalg.norm(np.diff(ds.gt_poses()[:, :3, 3], axis=0), axis=1)
    assert steps.max() < 0.05


# --- colour-to-depth registration ------------------------------------------------------

def _plane_texture(x, y):
    """A smooth pattern on the plane z = 2 m, as a function of metric x, y."""
    return (127 + 100 * np.sin(9 * x) * np.cos(7 * y)).astype(np.float32)


def test_register_color_identity_camera_keeps_the_image():
    from gs4_ros.io.datasets.registration import ColorCamera, register_color

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 3.0, (30, 40)).astype(np.float32)
    K = np.array([[35.0, 0, 20], [0, 35.0, 15], [0, 0, 1]])
    out = register_color(rgb, depth, K, ColorCamera(35.0, 35.0, 20.0, 15.0, np.eye(4)))
    np.testing.assert_array_equal(out, rgb)


def test_register_color_moves_another_cameras_view_into_the_depth_view():
    """A textured plane seen by a colour camera with another focal length, 2.5 cm to the
    side: after registration each depth pixel holds the texture at its own 3D point."""
    from gs4_ros.io.datasets.registration import ColorCamera, register_color

    h, w, z = 120, 160, 2.0
    Kd = np.array([[146.0, 0, 80], [0, 146.0, 60], [0, 0, 1]])
    T = np.eye(4)
    T[0, 3] = -0.025                       # colour camera 2.5 cm along the depth camera's +x
    cam = ColorCamera(131.0, 131.0, 80.0, 60.0, T)
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    # What the colour camera sees: its ray hits the plane at (x_c, y_c) in its own frame.
    xc, yc = (u - cam.cx) * z / cam.fx, (v - cam.cy) * z / cam.fy
    rgb = np.repeat(_plane_texture(xc - T[0, 3], yc)[..., None], 3, axis=2).astype(np.uint8)
    depth = np.full((h, w), z, np.float32)
    out = register_color(rgb, depth, Kd, cam)[..., 0].astype(np.float32)
    want = _plane_texture((u - Kd[0, 2]) * z / Kd[0, 0], (v - Kd[1, 2]) * z / Kd[1, 1])
    inner = (slice(10, -10), slice(10, -10))     # away from the replicated border
    assert np.abs(out - want)[inner].mean() < 2.0
    assert np.abs(rgb[..., 0].astype(np.float32) - want)[inner].mean() > 20.0   # it did need moving


def test_7scenes_reader_registers_colour_unless_told_not_to(tmp_path):
    from gs4_ros.cli.main import build_parser
    from gs4_ros.cli.run import dataset_kwargs

    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "frame-000000.color.png"), rgb[..., ::-1])
    cv2.imwrite(str(tmp_path / "frame-000000.depth.png"), np.full((48, 64), 1500, np.uint16))
    args = build_parser().parse_args(["run", "--dataset", f"7scenes:{tmp_path}", "--out", str(tmp_path / "o"),
                                      "--no-color-registration"])
    kw = dataset_kwargs(args)
    assert kw == {"register_color": False}
    np.testing.assert_array_equal(open_dataset(f"7scenes:{tmp_path}", **kw)[0].rgb, rgb)
    registered = open_dataset(f"7scenes:{tmp_path}")[0].rgb
    assert np.abs(registered.astype(int) - rgb).mean() > 20     # resampled into the depth view


@pytest.mark.data
@pytest.mark.skipif(not SEVEN.is_dir(), reason=f"real 7-Scenes data not found at {SEVEN}")
def test_7scenes_colour_is_registered_to_depth_by_default():
    """Registered, colour edges sit on depth edges more often than as recorded (every
    frame of ten; benchmarks/color_registration.py prints the same score)."""
    from gs4_ros.eval.image_metrics import edge_alignment

    reg = open_dataset(f"7scenes:{SEVEN}", frames="0:500:50")
    raw = open_dataset(f"7scenes:{SEVEN}", frames="0:500:50", register_color=False)
    for i in range(len(reg)):
        a, b = reg[i], raw[i]
        np.testing.assert_array_equal(a.depth, b.depth)
        assert edge_alignment(a.rgb, a.depth) > edge_alignment(b.rgb, b.depth)


# --- open_dataset ----------------------------------------------------------------------

def test_open_dataset_messages(tmp_path):
    with pytest.raises(DatasetError, match="valid kinds are 7scenes, replica, synthetic, tum"):
        open_dataset("kitti:/x")
    with pytest.raises(DatasetError, match="KIND:PATH"):
        open_dataset("")
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(f"7scenes:{tmp_path / 'missing'}")
    with pytest.raises(DatasetError, match="no path"):
        open_dataset("replica:")
    assert issubclass(DatasetError, ValueError)
