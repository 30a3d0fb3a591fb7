"""rosbag2 files written and read back with the rosbags library (no ROS needed)."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from ros_helpers import _room_frames  # noqa: E402

from gs4_ros.core.frame import Intrinsics, RGBDFrame  # noqa: E402
from gs4_ros.io import rosbag  # noqa: E402


@pytest.fixture(scope="module")
def frames():
    return _room_frames(6, 48, 36)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_write_then_read_back(tmp_path, frames, storage):
    out = tmp_path / f"bag_{storage}"
    s = rosbag.write_bag(frames, out, storage=storage)
    assert s.frames == len(frames)
    assert (out / "metadata.yaml").is_file()
    assert any(p.suffix == (".mcap" if storage == "mcap" else ".db3") for p in out.iterdir())
    info = rosbag.bag_info(out)
    assert info["topics"]["/camera/color/image_raw"] == {"type": "sensor_msgs/msg/Image", "count": 6}
    assert info["topics"]["/camera/depth/camera_info"]["type"] == "sensor_msgs/msg/CameraInfo"
    assert info["topics"]["/gt/pose"] == {"type": "geometry_msgs/msg/PoseStamped", "count": 6}

    back = list(rosbag.read_frames(out))
    assert len(back) == len(frames)
    for a, b in zip(frames, back):
        np.testing.assert_array_equal(b.rgb, a.rgb)
        # 16UC1 millimetres: exact to half a millimetre
        assert np.abs(b.depth - a.depth).max() <= 0.0005 + 1e-6
        np.testing.assert_array_equal(b.labels, a.labels)
        assert b.intrinsics == a.intrinsics
        assert abs(b.timestamp - a.timestamp) < 1e-9 * 2
        np.testing.assert_allclose(b.gt_pose, a.gt_pose, atol=1e-9)


def test_raw_messages_follow_ros_conventions(tmp_path, frames):
    """Inspect the serialised messages directly: encodings, units, frame ids, stamps."""
    from rosbags.highlevel import AnyReader

    out = tmp_path / "bag"
    rosbag.write_bag(frames[:2], out, frame_id="cam_optical")
    seen = {}
    with AnyReader([out]) as r:
        for conn, t, raw in r.messages():
            m = r.deserialize(raw, conn.msgtype)
            seen.setdefault(conn.topic, []).append((t, m))
    color = seen["/camera/color/image_raw"][0][1]
    depth = seen["/camera/depth/image_raw"][0][1]
    info = seen["/camera/color/camera_info"][0][1]
    assert (color.encoding, color.step, color.header.frame_id) == ("rgb8", 48 * 3, "cam_optical")
    assert (depth.encoding, depth.step, depth.is_bigendian) == ("16UC1", 48 * 2, 0)
    mm = np.frombuffer(depth.data.tobytes(), "<u2").reshape(36, 48)
    np.testing.assert_array_equal(mm, np.round(frames[0].depth * 1000).astype(np.uint16))
    assert list(info.k) == [frames[0].intrinsics.fx, 0, frames[0].intrinsics.cx, 0,
                            frames[0].intrinsics.fy, frames[0].intrinsics.cy, 0, 0, 1]
    t, gt = seen["/gt/pose"][1]
    assert t == round(frames[1].timestamp * 1e9)
    assert gt.header.stamp.sec + gt.header.stamp.nanosec * 1e-9 == pytest.approx(frames[1].timestamp)
    assert seen["/camera/labels/image_raw"][0][1].encoding == "mono8"


def test_frame_range_resize_and_explicit_topics(tmp_path, frames):
    out = tmp_path / "bag"
    rosbag.write_bag(frames, out, storage="mcap")
    sel = list(rosbag.read_frames(out, frames="1:5:2"))
    assert [f.index for f in sel] == [1, 3]
    np.testing.assert_array_equal(sel[1].rgb, frames[3].rgb)
    small = list(rosbag.read_frames(out, frames="0:1", width=24, height=18,
                                    color_topic="/camera/color/image_raw",
                                    depth_topic="/camera/depth/image_raw",
                                    info_topic="/camera/depth/camera_info", labels_topic=""))
    assert small[0].rgb.shape == (18, 24, 3) and small[0].labels is None
    assert small[0].intrinsics == frames[0].intrinsics.scaled(24, 18)
    with pytest.raises(rosbag.BagError, match="not in the bag"):
        list(rosbag.read_frames(out, color_topic="/nope"))
    with pytest.raises(rosbag.BagError, match="non-negative"):
        list(rosbag.read_frames(out, frames="-3:"))


def test_write_refuses_existing_folder_and_backward_time(tmp_path, frames):
    out = tmp_path / "bag"
    rosbag.write_bag(frames[:1], out)
    with pytest.raises(rosbag.BagError, match="already exists"):
        rosbag.write_bag(frames[:1], out)
    rosbag.write_bag(frames[:2], out, overwrite=True)
    with pytest.raises(rosbag.BagError, match="not after"):
        rosbag.write_bag([frames[1], frames[0]], tmp_path / "bag2")


def _foreign_bag(path, depth_enc="32FC1", skew_ns=0, with_info=True):
    """A bag as other tools write it: TUM-like names, 32FC1 metres, no ground truth."""
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    T = ts.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    Image = T["sensor_msgs/msg/Image"]
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    depth_m = rng.uniform(0.5, 3, (4, 6)).astype(np.float32)
    with Writer(path, version=9) as w:
        c_rgb = w.add_connection("/camera/rgb/image_color", "sensor_msgs/msg/Image", typestore=ts)
        c_d = w.add_connection("/camera/depth/image", "sensor_msgs/msg/Image", typestore=ts)
        c_i = w.add_connection("/camera/rgb/camera_info", "sensor_msgs/msg/CameraInfo", typestore=ts)
        for k in range(3):
            t = 1_300_000_000_000_000_000 + k * 100_000_000   # 10 Hz
            td = t + skew_ns

            def hdr(tt):
                return Header(stamp=Time(sec=tt // 10**9, nanosec=tt % 10**9), frame_id="openni_rgb_optical_frame")
            # bgr8 with 2 bytes of row padding
            row = np.concatenate([rgb[:, :, ::-1].reshape(4, -1), np.zeros((4, 2), np.uint8)], 1)
            w.write(c_rgb, t, bytes(ts.serialize_cdr(Image(header=hdr(t), height=4, width=6, encoding="bgr8",
                                                           is_bigendian=0, step=20, data=row.reshape(-1)),
                                                     "sensor_msgs/msg/Image")))
            if depth_enc == "32FC1":
                data = depth_m.view(np.uint8).reshape(-1)
                step = 24
            else:
                data = np.round(depth_m * 5000).astype("<u2").view(np.uint8).reshape(-1)
                step = 12
            w.write(c_d, td, bytes(ts.serialize_cdr(Image(header=hdr(td), height=4, width=6, encoding=depth_enc,
                                                         is_bigendian=0, step=step, data=data),
                                                   "sensor_msgs/msg/Image")))
            if with_info:
                from gs4_ros.ros.conversions import camera_info_fields
                f = camera_info_fields(Intrinsics(5.0, 5.0, 2.5, 1.5, 6, 4))
                ci = T["sensor_msgs/msg/CameraInfo"](
                    header=hdr(t), height=4, width=6, distortion_model="plumb_bob", d=f["d"], k=f["k"],
                    r=f["r"], p=f["p"], binning_x=0, binning_y=0,
                    roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                              do_rectify=False))
                w.write(c_i, t, bytes(ts.serialize_cdr(ci, "sensor_msgs/msg/CameraInfo")))
    return rgb, depth_m


def test_reads_foreign_bag_by_type_and_encoding(tmp_path):
    rgb, depth_m = _foreign_bag(tmp_path / "tum")
    topics = None
    from rosbags.highlevel import AnyReader
    with AnyReader([tmp_path / "tum"]) as r:
        topics = rosbag.detect_topics(r)
    assert (topics.color, topics.depth, topics.info, topics.gt) == (
        "/camera/rgb/image_color", "/camera/depth/image", "/camera/rgb/camera_info", None)
    out = list(rosbag.read_frames(tmp_path / "tum"))
    assert len(out) == 3 and out[0].gt_pose is None
    np.testing.assert_array_equal(out[0].rgb, rgb)
    np.testing.assert_allclose(out[0].depth, depth_m)
    assert out[0].intrinsics == Intrinsics(5.0, 5.0, 2.5, 1.5, 6, 4)


def test_depth_scale_override_and_sync_slop(tmp_path):
    rgb, depth_m = _foreign_bag(tmp_path / "b", depth_enc="16UC1", skew_ns=15_000_000)
    out = list(rosbag.read_frames(tmp_path / "b", depth_scale=5000.0))
    assert len(out) == 3                                  # 15 ms apart: within 20 ms
    assert np.abs(out[0].depth - depth_m).max() <= 1e-4
    _foreign_bag(tmp_path / "c", skew_ns=25_000_000)
    with pytest.raises(rosbag.BagError, match="no synchronised"):
        list(rosbag.read_frames(tmp_path / "c"))


def test_missing_camera_info_skips_frames_with_a_reason(tmp_path):
    _foreign_bag(tmp_path / "b", with_info=False)
    msgs = []
    out = list(rosbag.read_frames(tmp_path / "b", log=msgs.append))
    assert out == [] and len(msgs) == 3 and "CameraInfo" in msgs[0]


def test_interpolate_pose():
    from scipy.spatial.transform import Rotation

    T0, T1 = np.eye(4), np.eye(4)
    T1[:3, :3] = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    T1[:3, 3] = [1, 0, 0]
    st = np.array([0, 100_000_000])
    mid = rosbag.interpolate_pose(st, np.stack([T0, T1]), 50_000_000)
    np.testing.assert_allclose(mid[:3, 3], [0.5, 0, 0])
    np.testing.assert_allclose(Rotation.from_matrix(mid[:3, :3]).as_euler("zyx", degrees=True), [45, 0, 0],
                               atol=1e-9)
    assert rosbag.interpolate_pose(np.array([0, 10**9]), np.stack([T0, T1]), 5 * 10**8) is None  # gap
    assert rosbag.interpolate_pose(st, np.stack([T0, T1]), 10**9) is None                      # past end


def test_cli_convert_and_bag_frames(tmp_path, frames, monkeypatch):
    """`gs4 convert` through its argparse registration, then bag_frames as `gs4 run` uses it."""
    import argparse

    from gs4_ros.cli import bag as bag_cli

    class FakeSeq:     # stands in for open_dataset's Sequence (same interface)
        def __len__(self):
            return len(frames)

        def __getitem__(self, i):
            return frames[i]

    calls = []

    def fake_open(spec, **kw):
        calls.append((spec, kw))
        return FakeSeq()

    import types
    mod = types.ModuleType("gs4_ros.io.datasets")
    mod.open_dataset = fake_open
    monkeypatch.setitem(sys.modules, "gs4_ros.io.datasets", mod)
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    bag_cli.register(sub)
    args = p.parse_args(["convert", "--dataset", "synthetic:seed=3,frames=6", "--frames", "0:6",
                         "--width", "48", "--height", "36", "--out", str(tmp_path / "conv"),
                         "--storage", "mcap"])
    assert args.func(args) == 0
    assert calls == [("synthetic:seed=3,frames=6", {"frames": "0:6", "width": 48, "height": 36})]
    got = list(bag_cli.bag_frames(tmp_path / "conv", frames="2:4"))
    assert [g.index for g in got] == [2, 3]
    np.testing.assert_array_equal(got[0].rgb, frames[2].rgb)
    np.testing.assert_allclose(got[1].gt_pose, frames[3].gt_pose, atol=1e-9)
    with pytest.raises(ValueError, match="both"):
        bag_cli.bag_frames(tmp_path / "conv", width=10)


def test_convert_real_synthetic_dataset(tmp_path):
    open_dataset = getattr(pytest.importorskip("gs4_ros.io.datasets"), "open_dataset", None)
    if open_dataset is None:
        pytest.skip("gs4_ros.io.datasets.open_dataset not available yet")

    seq = open_dataset("synthetic:seed=3,frames=4", width=64, height=48)
    s = rosbag.write_bag((seq[i] for i in range(len(seq))), tmp_path / "syn")
    back = list(rosbag.read_frames(tmp_path / "syn"))
    assert s.frames == len(back) == 4
    for i, b in enumerate(back):
        a = seq[i]
        np.testing.assert_array_equal(b.rgb, a.rgb)
        assert np.abs(b.depth - a.depth).max() <= 0.0005 + 1e-6
        assert b.intrinsics == a.intrinsics
        if a.gt_pose is not None:
            np.testing.assert_allclose(b.gt_pose, a.gt_pose, atol=1e-9)


def test_frames_are_rgbdframes(tmp_path, frames):
    rosbag.write_bag(frames[:1], tmp_path / "b")
    (f,) = rosbag.read_frames(tmp_path / "b")
    assert isinstance(f, RGBDFrame) and f.depth.dtype == np.float32 and f.meta["stamp_ns"] > 0


def test_reads_ros1_bag_like_tum(tmp_path):
    """TUM RGB-D ships ROS 1 bags (rgb8 colour, 32FC1 depth in metres, ROS 1 CameraInfo
    with upper-case K/P); they are read directly, no conversion step."""
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS1_NOETIC)
    T = ts.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    Image, CameraInfo = T["sensor_msgs/msg/Image"], T["sensor_msgs/msg/CameraInfo"]
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 4.0, (6, 8)).astype(np.float32)
    depth[0, 0] = np.nan                                   # Kinect holes are NaN in TUM bags
    path = tmp_path / "fr1.bag"
    with Writer(path) as w:
        c_rgb = w.add_connection("/camera/rgb/image_color", "sensor_msgs/msg/Image", typestore=ts)
        c_d = w.add_connection("/camera/depth/image", "sensor_msgs/msg/Image", typestore=ts)
        c_i = w.add_connection("/camera/rgb/camera_info", "sensor_msgs/msg/CameraInfo", typestore=ts)
        for k in range(4):
            t = 1_305_031_102_000_000_000 + k * 33_333_333
            hdr = Header(seq=k, stamp=Time(sec=t // 10**9, nanosec=t % 10**9), frame_id="/openni_rgb_optical_frame")
            info = CameraInfo(header=hdr, height=6, width=8, distortion_model="plumb_bob",
                              D=np.zeros(5), K=np.array([7.0, 0, 3.5, 0, 7.5, 2.5, 0, 0, 1]),
                              R=np.eye(3).reshape(-1), P=np.zeros(12), binning_x=0, binning_y=0,
                              roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0,
                                                                        width=0, do_rectify=False))
            w.write(c_i, t, bytes(ts.serialize_ros1(info, "sensor_msgs/msg/CameraInfo")))
            w.write(c_rgb, t, bytes(ts.serialize_ros1(Image(header=hdr, height=6, width=8, encoding="rgb8",
                                                             is_bigendian=0, step=24, data=rgb.reshape(-1)),
                                                       "sensor_msgs/msg/Image")))
            td = t + 8_000_000                                # depth 8 ms after colour, as in TUM
            hd = Header(seq=k, stamp=Time(sec=td // 10**9, nanosec=td % 10**9), frame_id="/openni_depth_optical_frame")
            w.write(c_d, td, bytes(ts.serialize_ros1(Image(header=hd, height=6, width=8, encoding="32FC1",
                                                            is_bigendian=0, step=32,
                                                            data=depth.view(np.uint8).reshape(-1)),
                                                      "sensor_msgs/msg/Image")))
    out = list(rosbag.read_frames(path))
    assert len(out) == 4
    np.testing.assert_array_equal(out[2].rgb, rgb)
    assert out[2].depth[0, 0] == 0.0
    np.testing.assert_allclose(out[2].depth[1:], depth[1:])
    assert out[0].intrinsics == Intrinsics(7.0, 7.5, 3.5, 2.5, 8, 6)
    assert out[1].timestamp == pytest.approx(1_305_031_102.033333333)


def test_odometry_topic_gives_each_frame_its_camera_pose(tmp_path, frames):
    """`gs4 convert --odom-topic` writes the ground truth as Odometry of the camera frame;
    `gs4 run --bag --odom-topic` hands it to the pipeline as odom_camera_pose."""
    out = tmp_path / "odom_bag"
    rosbag.write_bag(frames, out, odom_topic="/odom")
    assert rosbag.bag_info(out)["topics"]["/odom"] == {"type": "nav_msgs/msg/Odometry", "count": len(frames)}
    back = list(rosbag.read_frames(out, odom_topic="/odom"))
    assert len(back) == len(frames)
    for a, b in zip(frames, back):
        np.testing.assert_allclose(b.meta["odom_camera_pose"], a.gt_pose, atol=1e-9)
        np.testing.assert_allclose(b.gt_pose, a.gt_pose, atol=1e-9)       # still the ground truth
        np.testing.assert_array_equal(b.meta["odom_camera_covariance"], np.zeros((6, 6)))   # as written
    assert all("odom_camera_pose" not in f.meta for f in rosbag.read_frames(out))
    with pytest.raises(rosbag.BagError, match="no nav_msgs/Odometry"):
        next(rosbag.read_frames(out, odom_topic="/gt/pose"))
    # Odometry of another frame with no /tf_static path to the camera: warned once, not used.
    msgs = []
    track = {"stamps": np.array([back[0].meta["stamp_ns"]], np.int64), "poses": np.eye(4)[None],
             "child": "base_link"}
    odom = dict(track, edges={})

    class Color:
        class header:
            frame_id = "camera_color_optical_frame"

    for f in back[:3]:
        f.meta.pop("odom_camera_pose"), f.meta.pop("odom_camera_covariance")
        rosbag._attach_odometry(f, Color, None, odom, msgs.append)
        assert "odom_camera_pose" not in f.meta
    assert len(msgs) == 1 and "no /tf_static path" in msgs[0] and "base_link" in msgs[0]
    odom = dict(track, edges={("camera_color_optical_frame", "base_link"): np.eye(4)})
    rosbag._attach_odometry(back[0], Color, None, odom, msgs.append)
    assert "odom_camera_pose" in back[0].meta
    assert "odom_camera_covariance" not in back[0].meta       # a track without covariances
    # Between two odometry messages the covariance is interpolated like the position.
    t0 = back[0].meta["stamp_ns"]
    odom = {"stamps": np.array([t0 - 10**7, t0 + 3 * 10**7], np.int64), "poses": np.stack([np.eye(4)] * 2),
            "covs": np.stack([np.diag([0.1] * 6), np.diag([0.5] * 6)]), "child": "",
            "edges": {}}
    rosbag._attach_odometry(back[0], Color, None, odom, msgs.append)
    np.testing.assert_allclose(back[0].meta["odom_camera_covariance"], np.diag([0.2] * 6))


def test_static_chain_walks_the_tree_both_ways():
    from gs4_ros.core import se3
    import torch

    def T(*xi):
        return se3.se3_exp(torch.tensor(xi, dtype=torch.float64)).numpy()

    base_link, link_cam, cam_opt = T(0.1, 0, 0.3, 0, 0, 0.2), T(0, 0.05, 0, 0.1, 0, 0), T(0, 0, 0, -1.2, 0, -1.5)
    edges = {("base_link", "camera_link"): base_link, ("camera_link", "camera_optical"): link_cam,
             ("camera_link", "imu"): cam_opt}
    want = np.linalg.inv(link_cam) @ np.linalg.inv(base_link)           # optical <- base_link
    np.testing.assert_allclose(rosbag.static_chain(edges, "camera_optical", "base_link"), want, atol=1e-12)
    np.testing.assert_allclose(rosbag.static_chain(edges, "base_link", "camera_optical"), np.linalg.inv(want),
                               atol=1e-12)
    np.testing.assert_allclose(rosbag.static_chain(edges, "imu", "imu"), np.eye(4))
    assert rosbag.static_chain(edges, "camera_optical", "wheel") is None
