"""Image / CameraInfo / pose / PointCloud2 conversions against hand-built messages.

The messages are real sensor_msgs classes (rclpy's generated types); each encoding is
checked by value, including row padding (`step`) and the big-endian flag, because those
are what ad-hoc decoders get wrong.
"""
import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg")
from sensor_msgs.msg import CameraInfo, Image, PointField  # noqa: E402

from gs4_ros.core.frame import Intrinsics  # noqa: E402
from gs4_ros.ros import conversions as conv  # noqa: E402


@pytest.fixture(autouse=True)
def builtin_decoder(monkeypatch):
    """Test our own decoder even where cv_bridge happens to be installed."""
    monkeypatch.setattr(conv, "USE_CV_BRIDGE", False)


def raw_image(arr, encoding, bigendian=False, pad=0, pad_byte=0xAB):
    """An Image built byte by byte (independently of conv.image_fields)."""
    a = np.asarray(arr)
    dt = a.dtype.newbyteorder(">" if bigendian else "<")
    h, w = a.shape[:2]
    rows = a.astype(dt).reshape(h, -1).view(np.uint8).reshape(h, -1)
    if pad:
        rows = np.concatenate([rows, np.full((h, pad), pad_byte, np.uint8)], 1)
    m = Image()
    m.height, m.width, m.encoding = h, w, encoding
    m.is_bigendian = int(bigendian)
    m.step = rows.shape[1]
    m.data = rows.tobytes()
    return m


RNG = np.random.default_rng(0)
SAMPLES = {
    "rgb8": RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8),
    "bgr8": RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8),
    "rgba8": RNG.integers(0, 256, (5, 7, 4), dtype=np.uint8),
    "bgra8": RNG.integers(0, 256, (5, 7, 4), dtype=np.uint8),
    "rgb16": RNG.integers(0, 65536, (5, 7, 3), dtype=np.uint16),
    "bgr16": RNG.integers(0, 65536, (5, 7, 3), dtype=np.uint16),
    "rgba16": RNG.integers(0, 65536, (5, 7, 4), dtype=np.uint16),
    "bgra16": RNG.integers(0, 65536, (5, 7, 4), dtype=np.uint16),
    "mono8": RNG.integers(0, 256, (5, 7), dtype=np.uint8),
    "mono16": RNG.integers(0, 65536, (5, 7), dtype=np.uint16),
    "8UC1": RNG.integers(0, 256, (5, 7), dtype=np.uint8),
    "8UC3": RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8),
    "8UC4": RNG.integers(0, 256, (5, 7, 4), dtype=np.uint8),
    "16UC1": RNG.integers(0, 65536, (5, 7), dtype=np.uint16),
    "16SC1": RNG.integers(-30000, 30000, (5, 7), dtype=np.int16),
    "32FC1": RNG.uniform(0.1, 9, (5, 7)).astype(np.float32),
    "64FC1": RNG.uniform(0.1, 9, (5, 7)),
    "yuv422": RNG.integers(0, 256, (5, 8, 2), dtype=np.uint8),
    "uyvy": RNG.integers(0, 256, (5, 8, 2), dtype=np.uint8),
    "yuv422_yuy2": RNG.integers(0, 256, (5, 8, 2), dtype=np.uint8),
    "yuyv": RNG.integers(0, 256, (5, 8, 2), dtype=np.uint8),
}


def test_every_encoding_has_a_sample():
    assert set(SAMPLES) == set(conv.ENCODINGS)


@pytest.mark.parametrize("enc", sorted(SAMPLES))
@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pad", [0, 5])
def test_decode_every_encoding_with_padding_and_endianness(enc, bigendian, pad):
    a = SAMPLES[enc]
    out = conv.image_to_numpy(raw_image(a, enc, bigendian, pad))
    assert out.dtype == a.dtype.newbyteorder("=")
    assert out.shape == (a.shape if a.ndim == 3 else a.shape[:2])
    np.testing.assert_array_equal(out, a)


@pytest.mark.parametrize("enc", sorted(SAMPLES))
def test_encode_decode_round_trip(enc):
    a = SAMPLES[enc]
    m = conv.numpy_to_image(a, enc)
    assert m.step == a.shape[1] * (a.shape[2] if a.ndim == 3 else 1) * a.dtype.itemsize
    np.testing.assert_array_equal(conv.image_to_numpy(m), a)


def test_color_channel_orders():
    rgb = SAMPLES["rgb8"]
    np.testing.assert_array_equal(conv.color_to_rgb(raw_image(rgb, "rgb8")), rgb)
    np.testing.assert_array_equal(conv.color_to_rgb(raw_image(rgb[:, :, ::-1], "bgr8")), rgb)
    np.testing.assert_array_equal(conv.color_to_rgb(raw_image(rgb[:, :, ::-1], "8UC3")), rgb)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 7, np.uint8)], 2)
    np.testing.assert_array_equal(conv.color_to_rgb(raw_image(rgba, "rgba8")), rgb)
    bgra = np.concatenate([rgb[:, :, ::-1], np.full(rgb.shape[:2] + (1,), 7, np.uint8)], 2)
    np.testing.assert_array_equal(conv.color_to_rgb(raw_image(bgra, "bgra8", pad=3)), rgb)
    mono = SAMPLES["mono8"]
    np.testing.assert_array_equal(conv.color_to_rgb(raw_image(mono, "mono8")), np.repeat(mono[:, :, None], 3, 2))
    rgb16 = rgb.astype(np.uint16) * 257
    np.testing.assert_array_equal(conv.color_to_rgb(raw_image(rgb16, "rgb16", bigendian=True)), rgb)
    np.testing.assert_array_equal(conv.color_to_rgb(raw_image(rgb16[:, :, ::-1], "bgr16")), rgb)


def test_yuv422_uniform_colour():
    # UYVY / YUY2 of a uniform mid-grey: Y = 128, U = V = 128 everywhere.
    grey = np.full((4, 6, 2), 128, np.uint8)
    for enc in ("uyvy", "yuv422", "yuyv", "yuv422_yuy2"):
        out = conv.color_to_rgb(raw_image(grey, enc))
        assert out.shape == (4, 6, 3)
        assert np.abs(out.astype(int) - 128).max() <= 2
    # Pure luma differences survive: Y = 50 vs 200 in the two pixels of a pair (UYVY order).
    uyvy = np.zeros((2, 2, 2), np.uint8)
    uyvy[..., 0] = 128
    uyvy[:, 0, 1], uyvy[:, 1, 1] = 50, 200
    out = conv.color_to_rgb(raw_image(uyvy, "uyvy"))
    assert out[0, 0].mean() < 80 and out[0, 1].mean() > 170


def test_depth_units_and_invalid_values():
    mm = np.array([[0, 1000, 65535], [1500, 1, 250]], np.uint16)
    for enc in ("16UC1", "mono16"):
        for be in (False, True):
            d = conv.depth_to_metres(raw_image(mm, enc, bigendian=be, pad=2))
            assert d.dtype == np.float32
            np.testing.assert_allclose(d, mm / 1000.0, rtol=1e-6)
    # TUM: 5000 counts per metre
    np.testing.assert_allclose(conv.depth_to_metres(raw_image(mm, "16UC1"), 5000.0), mm / 5000.0, rtol=1e-6)
    f = np.array([[np.nan, 1.25, -1.0], [np.inf, 0.0, 3.5]], np.float32)
    d = conv.depth_to_metres(raw_image(f, "32FC1", bigendian=True))
    np.testing.assert_array_equal(d, [[0, 1.25, 0], [0, 0, 3.5]])
    d64 = conv.depth_to_metres(raw_image(f.astype(np.float64), "64FC1"))
    np.testing.assert_array_equal(d64, [[0, 1.25, 0], [0, 0, 3.5]])
    s16 = np.array([[-5, 2000]], np.int16)
    np.testing.assert_array_equal(conv.depth_to_metres(raw_image(s16, "16SC1")), [[0, 2.0]])


def test_labels():
    lab = np.array([[0, 3, 254, 255]], np.uint8)
    np.testing.assert_array_equal(conv.labels_to_numpy(raw_image(lab, "mono8")), lab)
    wide = np.array([[0, 19, 254, 255, 1000]], np.uint16)
    np.testing.assert_array_equal(conv.labels_to_numpy(raw_image(wide, "16UC1", bigendian=True)),
                                  [[0, 19, 254, 255, 255]])
    with pytest.raises(conv.ConversionError, match="label encoding"):
        conv.labels_to_numpy(raw_image(SAMPLES["rgb8"], "rgb8"))


def test_errors_name_the_problem():
    with pytest.raises(conv.ConversionError, match="unsupported image encoding 'jpeg'"):
        conv.image_to_numpy(raw_image(SAMPLES["mono8"], "jpeg"))
    with pytest.raises(conv.ConversionError, match="depth encoding 'rgb8'"):
        conv.depth_to_metres(raw_image(SAMPLES["rgb8"], "rgb8"))
    with pytest.raises(conv.ConversionError, match="colour encoding '16UC1'"):
        conv.color_to_rgb(raw_image(SAMPLES["16UC1"], "16UC1"))
    m = raw_image(SAMPLES["rgb8"], "rgb8")
    m.data = bytes(m.data)[:-1]
    with pytest.raises(conv.ConversionError, match="bytes"):
        conv.image_to_numpy(m)
    m = raw_image(SAMPLES["rgb8"], "rgb8")
    m.step = 5
    with pytest.raises(conv.ConversionError, match="step"):
        conv.image_to_numpy(m)
    m = Image(encoding="rgb8")
    with pytest.raises(conv.ConversionError, match="no pixels"):
        conv.image_to_numpy(m)


def test_decoded_arrays_own_their_memory():
    m = raw_image(SAMPLES["16UC1"], "16UC1")
    a = conv.image_to_numpy(m)
    assert a.flags.owndata or a.base is None or a.flags.writeable
    m.data = bytes(len(m.data))  # overwrite the message: the array must not change
    np.testing.assert_array_equal(a, SAMPLES["16UC1"])


def test_camera_info():
    intr = Intrinsics(525.0, 520.0, 319.5, 239.5, 640, 480)
    ci = conv.intrinsics_to_camera_info(intr)
    assert conv.camera_info_to_intrinsics(ci) == intr
    # Only P set (some drivers)
    ci2 = CameraInfo(width=640, height=480)
    ci2.p = [500.0, 0, 320, 0, 0, 501.0, 240, 0, 0, 0, 1, 0]
    assert conv.camera_info_to_intrinsics(ci2) == Intrinsics(500, 501, 320, 240, 640, 480)
    with pytest.raises(conv.ConversionError, match="uncalibrated"):
        conv.camera_info_to_intrinsics(CameraInfo(width=640, height=480))
    ci.binning_x = ci.binning_y = 2
    b = conv.camera_info_to_intrinsics(ci)
    assert (b.width, b.height, b.fx, b.cy) == (320, 240, 262.5, 119.75)
    # Same camera at half resolution: rescaled; different aspect: refused.
    half = conv.intrinsics_for_image(intr, 320, 240)
    assert half == intr.scaled(320, 240)
    with pytest.raises(conv.ConversionError, match="aspect"):
        conv.intrinsics_for_image(intr, 640, 360)


def random_rotation(rng):
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    return conv.quat_xyzw_to_rotmat(q)


def test_pose_round_trip_and_quaternion_convention():
    from geometry_msgs.msg import Pose, Transform

    rng = np.random.default_rng(1)
    rots = [random_rotation(rng) for _ in range(50)]
    rots += [np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1]), np.eye(3)]
    for R in rots:
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = R, rng.normal(size=3)
        for msg in (Pose(), Transform()):
            np.testing.assert_allclose(conv.pose_to_matrix(conv.fill_pose(msg, T)), T, atol=1e-9)
    # 90 degrees about z is (0, 0, sin 45, cos 45) in ROS's x, y, z, w order.
    Rz = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_allclose(conv.rotmat_to_quat_xyzw(Rz), [0, 0, np.sqrt(0.5), np.sqrt(0.5)])


def test_stamps():
    st = conv.ns_to_stamp(1_700_000_000_123_456_789)
    assert (st.sec, st.nanosec) == (1_700_000_000, 123_456_789)
    assert conv.stamp_to_ns(st) == 1_700_000_000_123_456_789


def make_cloud(n=17, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, 4)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return conv.gaussian_cloud_array(
        rng.normal(size=(n, 3)).astype(np.float32), rng.integers(0, 256, (n, 3), dtype=np.uint8),
        rng.integers(0, 21, n).astype(np.uint32), rng.uniform(0, 1, n).astype(np.float32),
        rng.uniform(0.001, 0.1, (n, 3)).astype(np.float32), q, rng.integers(0, 2, n).astype(np.uint8)), rng


def test_pointcloud2_layout_and_round_trip():
    arr, _ = make_cloud()
    msg = conv.array_to_pointcloud2(arr)
    names = [f.name for f in msg.fields]
    assert names == ["x", "y", "z", "rgb", "label", "opacity", "scale_x", "scale_y", "scale_z",
                     "rot_w", "rot_x", "rot_y", "rot_z", "inferred"]
    types = {f.name: f.datatype for f in msg.fields}
    assert types["rgb"] == PointField.FLOAT32 and types["label"] == PointField.UINT32
    assert all(types[n] == PointField.FLOAT32 for n in names if n not in ("label", "inferred"))
    assert types["inferred"] == PointField.UINT8
    assert [f.offset for f in msg.fields] == [4 * i for i in range(14)]
    assert msg.point_step == 53 and msg.row_step == 53 * len(arr) and msg.height == 1
    back = conv.pointcloud2_to_array(msg)
    for n in names:
        np.testing.assert_array_equal(back[n], arr[n])


def test_rgb_packing_matches_pcl():
    c = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [1, 2, 3]], np.uint8)
    bits = conv.pack_rgb(c).view(np.uint32)
    assert list(bits) == [0xFF0000, 0x00FF00, 0x0000FF, 0x010203]
    np.testing.assert_array_equal(conv.unpack_rgb(conv.pack_rgb(c)), c)


def test_pointcloud2_decode_foreign_layouts():
    """A big-endian cloud with padding and an unknown extra field still decodes."""
    from sensor_msgs.msg import PointCloud2

    n = 4
    dt = np.dtype({"names": ["x", "y", "z", "intensity"], "formats": [">f4", ">f4", ">f4", ">u2"],
                   "offsets": [0, 4, 8, 16], "itemsize": 20})
    a = np.zeros(n, dt)
    a["x"], a["y"], a["z"], a["intensity"] = [1, 2, 3, 4], 5, 6, [10, 20, 30, 40]
    m = PointCloud2(height=1, width=n, is_bigendian=True, point_step=20, row_step=20 * n)
    m.fields = [PointField(name="x", offset=0, datatype=7, count=1),
                PointField(name="y", offset=4, datatype=7, count=1),
                PointField(name="z", offset=8, datatype=7, count=1),
                PointField(name="intensity", offset=16, datatype=4, count=1)]
    m.data = a.tobytes()
    back = conv.pointcloud2_to_array(m)
    np.testing.assert_array_equal(back["x"], [1, 2, 3, 4])
    np.testing.assert_array_equal(back["intensity"], [10, 20, 30, 40])


def test_class_palette():
    pal = conv.class_palette(20)
    assert pal.shape == (21, 3)
    assert len({tuple(c) for c in pal}) == 21
    lab = np.array([[0, 19, 255, 20]], np.uint8)
    col = conv.colorize_labels(lab, 20)
    assert tuple(col[0, 2]) == tuple(col[0, 3]) == (128, 128, 128)


def test_rviz_reports_and_previews_share_one_palette():
    from gs4_ros.eval.report import colorize_labels as report_colours
    from gs4_ros.io.synthetic import colorize_labels as preview_colours

    lab = np.arange(20, dtype=np.uint8)[None]
    np.testing.assert_array_equal(conv.colorize_labels(lab, 20), report_colours(lab))
    np.testing.assert_array_equal(report_colours(lab), preview_colours(lab))
    assert tuple(report_colours(np.array([[255]]))[0, 0]) == (0, 0, 0)     # pictures: unknown is black
    pal = conv.class_palette(40)                                            # a longer class list
    assert len({tuple(c) for c in pal}) == 41


def test_keyframe_graph_markers_show_keyframes_and_edges_by_kind():
    """A sphere list of keyframe centres and one line list per edge kind, each edge as its
    two keyframes' centres; edges to a keyframe not in the poses are left out; DELETEALL
    first so a kind that disappears (a loop later rejected) is cleared in RViz."""
    from std_msgs.msg import Header
    from visualization_msgs.msg import Marker

    from gs4_ros.core.backend.keyframe_graph import Edge
    from gs4_ros.ros.markers import EDGE_STYLE, keyframe_graph_markers

    poses = {}
    for k in range(4):
        T = np.eye(4)
        T[:3, 3] = (k, 2.0 * k, -0.5 * k)
        poses[k] = T
    I6 = np.eye(6)
    edges = [Edge(0, 1, np.eye(4), I6, "odom"), Edge(1, 2, np.eye(4), I6, "odom"), Edge(2, 3, np.eye(4), I6, "odom"),
             Edge(1, 2, np.eye(4), I6, "odom_prior"), Edge(0, 3, np.eye(4), I6, "loop"),
             Edge(1, 3, np.eye(4), I6, "rejected"), Edge(3, 7, np.eye(4), I6, "loop")]   # 7: not in poses
    header = Header(frame_id="map")
    msg = keyframe_graph_markers(poses, edges, header)
    assert msg.markers[0].action == Marker.DELETEALL
    by_ns = {m.ns: m for m in msg.markers[1:]}
    assert set(by_ns) == {"keyframes", "edges/odom", "edges/odom_prior", "edges/loop", "edges/rejected"}
    assert all(m.header.frame_id == "map" and m.action == Marker.ADD for m in by_ns.values())
    kf = by_ns["keyframes"]
    assert kf.type == Marker.SPHERE_LIST
    assert [(p.x, p.y, p.z) for p in kf.points] == [(k, 2.0 * k, -0.5 * k) for k in range(4)]

    def pairs(ns):
        pts = [(p.x, p.y, p.z) for p in by_ns[ns].points]
        return [(pts[i], pts[i + 1]) for i in range(0, len(pts), 2)]

    c = {k: tuple(poses[k][:3, 3]) for k in poses}
    assert by_ns["edges/odom"].type == Marker.LINE_LIST
    assert pairs("edges/odom") == [(c[0], c[1]), (c[1], c[2]), (c[2], c[3])]
    assert pairs("edges/odom_prior") == [(c[1], c[2])]
    assert pairs("edges/loop") == [(c[0], c[3])]          # the edge to keyframe 7 is left out
    assert pairs("edges/rejected") == [(c[1], c[3])]
    colours = {ns: (m.color.r, m.color.g, m.color.b) for ns, m in by_ns.items()}
    assert len(set(colours.values())) == len(colours)     # every kind its own colour
    assert by_ns["edges/loop"].scale.x == pytest.approx(EDGE_STYLE["loop"][1])
    empty = keyframe_graph_markers({}, [], header)
    assert [m.action for m in empty.markers] == [Marker.DELETEALL]
