"""gs4_node pieces that are cheaper to check with the node in this process (still real
rclpy over DDS): simulated time, the odometry prior, TF maths."""
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import ros_helpers as H  # noqa: E402  (DDS domain isolation before rclpy starts)

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from gs4_ros.ros import conversions as conv  # noqa: E402
from gs4_ros.ros.tf import R_LINK_OPTICAL, inv, link_from_optical, map_transform  # noqa: E402


class InProcess:
    def __init__(self, *params):
        from gs4_ros.ros.node import GS4Node

        args = ["--ros-args"]
        for p in params:
            args += ["-p", p]
        self.ctx = rclpy.Context()
        rclpy.init(args=args, context=self.ctx)
        self.node = GS4Node(context=self.ctx)
        self.client = rclpy.create_node("inproc_client", context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.ex.add_node(self.client)

    def feed(self, frames, stamp: int = 10**9):
        """Publish frames one by one (100 ms apart), each once the node processed the last."""
        from gs4_ros.ros.player import FramePlayer, encode

        player = FramePlayer(self.client, prefix="", publish_labels=False, publish_gt=False)
        assert H.spin_until(self.ex, lambda: player.pub_color.get_subscription_count() > 0, 30)
        for f in frames:
            stamp += 100_000_000
            n = self.node.stats.processed
            player.publish(encode(f), stamp)
            assert H.spin_until(self.ex, lambda: self.node.stats.processed > n, 120), "frame not processed"

    def close(self):
        self.node.shutdown()
        self.node.destroy_node()
        self.client.destroy_node()
        rclpy.shutdown(context=self.ctx)


def test_use_sim_time_drives_timers_and_stamps():
    from diagnostic_msgs.msg import DiagnosticArray
    from rosgraph_msgs.msg import Clock

    t = InProcess("use_sim_time:=true", "diagnostics_rate_hz:=10.0")
    try:
        assert t.node.get_clock().ros_time_is_active
        diags = []
        t.client.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        clock = t.client.create_publisher(Clock, "/clock", 10)
        sim = 42 * 10**9
        end = time.monotonic() + 60
        # Timers run on the bag's clock: the diagnostics carry /clock's time, not wall time.
        while time.monotonic() < end and not any(d.header.stamp.sec in (42, 43) for d in diags):
            sim += 50_000_000
            clock.publish(Clock(clock=conv.ns_to_stamp(sim)))
            t.ex.spin_once(timeout_sec=0.02)
        assert any(d.header.stamp.sec in (42, 43) for d in diags), \
            f"no diagnostics stamped with simulated time; got {[d.header.stamp.sec for d in diags][:5]}"
    finally:
        t.close()


def test_odometry_prior_is_buffered_and_matched_by_stamp():
    from nav_msgs.msg import Odometry

    t = InProcess("subscribe_odom_prior:=true", "odom_prior_max_age:=0.05")
    try:
        pub = t.client.create_publisher(Odometry, "/odom_prior", 10)
        H.spin_until(t.ex, lambda: pub.get_subscription_count() > 0, 30)
        for k in range(3):
            m = Odometry()
            m.header.stamp = conv.ns_to_stamp(10 * 10**9 + k * 10**8)
            m.header.frame_id, m.child_frame_id = "odom", "base_link"
            m.pose.pose.position.x = float(k)
            m.pose.pose.orientation.w = 1.0
            m.pose.covariance[0] = m.pose.covariance[35] = 0.01 * (k + 1)   # x and yaw variances grow
            pub.publish(m)
        assert H.spin_until(t.ex, lambda: len(t.node._odom_hist) == 3, 30)
        for bad in ("zero", "nan"):          # broken messages are skipped with a warning
            m = Odometry()
            m.header.stamp = conv.ns_to_stamp(10 * 10**9 + 5 * 10**8)
            if bad == "nan":
                m.pose.pose.position.x = float("nan")
            else:
                m.pose.pose.orientation.w = 0.0         # (the message's default is w = 1)
            pub.publish(m)
            t.node._warned.clear()
        assert H.spin_until(t.ex, lambda: "odom_prior_bad" in t.node._warned, 10)
        H.spin_until(t.ex, lambda: False, 0.5)
        assert len(t.node._odom_hist) == 3
        o = t.node._nearest_odom(10 * 10**9 + 1 * 10**8 + 20_000_000)
        assert o["pose"][0, 3] == 1.0 and o["child_frame_id"] == "base_link" and o["frame_id"] == "odom"
        np.testing.assert_allclose(o["covariance"], np.diag([0.02, 0, 0, 0, 0, 0.02]))   # row-major 6x6
        assert t.node._nearest_odom(11 * 10**9) is None            # older than odom_prior_max_age
    finally:
        t.close()


def test_odometry_prior_becomes_the_camera_pose_the_tracker_starts_from():
    """An odometry whose child is the camera's optical frame goes to the pipeline as the
    camera pose in odom (frame.meta odom_camera_pose); one of another child needs TF's
    optical <- child first, and without TF it is not used (warned), not guessed."""
    from gs4_ros.core.frame import Intrinsics
    from gs4_ros.ros.node import SyncedSet
    from gs4_ros.ros.tf import odom_camera_pose
    import torch

    from gs4_ros.core import se3

    T_oc = se3.se3_exp(torch.tensor([0.1, 0.0, 0.2, 0.0, 0.3, 0.0], dtype=torch.float64)).numpy()
    T_odom_child = se3.se3_exp(torch.tensor([1.0, 2.0, 0.0, 0.0, 0.0, 0.5], dtype=torch.float64)).numpy()
    cam = odom_camera_pose(T_odom_child, T_oc)
    # The camera point p_opt maps into odom through child: odom <- child <- optical.
    p = np.array([0.3, -0.2, 1.5, 1.0])
    np.testing.assert_allclose(cam @ p, T_odom_child @ inv(T_oc) @ p)
    np.testing.assert_allclose(odom_camera_pose(T_odom_child), T_odom_child)
    # Its covariance: a small error d (position, rotation about odom's axes) of the child's
    # pose moves the camera by J d (the rotation's through the lever arm), so the covariance
    # d d^T of that one error becomes (J d)(J d)^T.
    from gs4_ros.ros.tf import odom_camera_covariance
    d = 1e-6 * np.random.default_rng(1).normal(size=6)
    Tp = T_odom_child.copy()
    Tp[:3, 3] += d[:3]
    Tp[:3, :3] = se3.se3_exp(torch.as_tensor(np.r_[0.0, 0.0, 0.0, d[3:]])).numpy()[:3, :3] @ T_odom_child[:3, :3]
    dcam = np.r_[odom_camera_pose(Tp, T_oc)[:3, 3] - cam[:3, 3], d[3:]]
    assert np.abs(dcam[:3] - d[:3]).max() > 1e-7                   # the lever arm matters here
    np.testing.assert_allclose(odom_camera_covariance(np.outer(d, d), T_odom_child, T_oc), np.outer(dcam, dcam),
                               rtol=1e-4, atol=1e-17)
    np.testing.assert_allclose(odom_camera_covariance(np.outer(d, d), T_odom_child), np.outer(d, d))

    t = InProcess("subscribe_odom_prior:=true", "camera_frame:=cam_optical")
    try:
        intr = Intrinsics(60.0, 60.0, 31.5, 23.5, 64, 48)
        color = conv.numpy_to_image(np.full((48, 64, 3), 128, np.uint8), "rgb8")
        depth = conv.numpy_to_image(np.full((48, 64), 1500, np.uint16), "16UC1")
        info = conv.intrinsics_to_camera_info(intr)
        cov = np.diag([0.01, 0.02, 0.03, 1e-4, 2e-4, 3e-4])
        for child, expect in (("cam_optical", True), ("", True), ("base_link", t.node.tf.can_lookup)):
            odo = {"stamp": 1.0, "pose": T_odom_child, "frame_id": "odom", "child_frame_id": child,
                   "covariance": cov}
            f = t.node._decode(SyncedSet(color, depth, None, info, 10**9, 0.0, odo))
            assert f.meta["odom_prior"] is odo
            assert ("odom_camera_pose" in f.meta) == expect, child
            assert ("odom_camera_covariance" in f.meta) == expect, child
            if expect:
                np.testing.assert_allclose(f.meta["odom_camera_pose"], T_odom_child)
                np.testing.assert_allclose(f.meta["odom_camera_covariance"], cov)
        del odo["covariance"]                  # a dict without one (older callers): no covariance
        f = t.node._decode(SyncedSet(color, depth, None, info, 10**9, 0.0, odo))
        assert "odom_camera_covariance" not in f.meta
    finally:
        t.close()


def test_tf_is_reported_off_when_tf2_is_missing():
    try:
        import tf2_ros  # noqa: F401
        pytest.skip("tf2_ros is installed")
    except ImportError:
        pass
    t = InProcess()
    try:
        assert t.node.tf.backend in ("off", "tf2_msgs")
        assert not t.node.tf.can_lookup
    finally:
        t.close()


def rand_T(rng):
    q = rng.normal(size=4)
    T = np.eye(4)
    T[:3, :3] = conv.quat_xyzw_to_rotmat(q / np.linalg.norm(q))
    T[:3, 3] = rng.normal(size=3)
    return T


def test_tf_maths():
    rng = np.random.default_rng(0)
    T_map_opt, T_opt_base, T_odom_base = rand_T(rng), rand_T(rng), rand_T(rng)
    np.testing.assert_allclose(inv(T_map_opt) @ T_map_opt, np.eye(4), atol=1e-12)
    # map_to_camera: map -> optical, or map -> base when the base frame is given
    np.testing.assert_allclose(map_transform("map_to_camera", T_map_opt), T_map_opt)
    T_map_base = map_transform("map_to_camera", T_map_opt, T_opt_base)
    np.testing.assert_allclose(T_map_base, T_map_opt @ T_opt_base)
    # map_to_odom: chaining the published map->odom with the robot's odom->base gives the SLAM pose
    T_map_odom = map_transform("map_to_odom", T_map_opt, T_opt_base, T_odom_base)
    np.testing.assert_allclose(T_map_odom @ T_odom_base, T_map_base, atol=1e-12)
    with pytest.raises(ValueError):
        map_transform("map_to_odom", T_map_opt)
    with pytest.raises(ValueError):
        map_transform("sideways", T_map_opt)


def test_optical_to_link_rotation():
    # optical z (forward) is link x; optical x (right) is link -y; optical y (down) is link -z
    np.testing.assert_array_equal(R_LINK_OPTICAL @ [0, 0, 1], [1, 0, 0])
    np.testing.assert_array_equal(R_LINK_OPTICAL @ [1, 0, 0], [0, -1, 0])
    np.testing.assert_array_equal(R_LINK_OPTICAL @ [0, 1, 0], [0, 0, -1])
    assert np.linalg.det(link_from_optical()[:3, :3]) == pytest.approx(1.0)


# The back-end inline (deterministic), no joint steps, a keyframe at least every 2nd frame,
# every output on every frame.
SYNC_BACKEND = ("pipeline.device:=cpu", "pipeline.backend.enabled:=true", "pipeline.backend.synchronous:=true",
                "pipeline.backend.joint_enabled:=false", "pipeline.mapping.keyframe_max_interval:=2",
                "path_rate_hz:=0.0", "map_rate_hz:=0.0", "render_rate_hz:=0.0", "publish_tf:=false")


def test_path_is_rewritten_when_the_back_end_corrects_past_poses():
    """A pose-graph correction of keyframe 1 moves the published path of every frame
    tracked after it (and no earlier one), as the pipeline's final trajectory does."""
    import torch
    from nav_msgs.msg import Path as PathMsg

    from gs4_ros.core import se3
    from gs4_ros.core.backend import GraphUpdate
    from gs4_ros.ros.player import FramePlayer, encode

    frames = H.synthetic_frames(8)
    t = InProcess(*SYNC_BACKEND, "map_alignment:=optical")
    try:
        paths = []
        t.client.create_subscription(PathMsg, "/gs4_node/path", paths.append, 10)
        player = FramePlayer(t.client, prefix="", publish_labels=False, publish_gt=False)
        assert H.spin_until(t.ex, lambda: player.pub_color.get_subscription_count() > 0, 30)
        stamp = 10**9

        def feed(f):
            nonlocal stamp
            stamp += 100_000_000
            n = t.node.stats.processed
            player.publish(encode(f), stamp)
            assert H.spin_until(t.ex, lambda: t.node.stats.processed > n and paths
                                and len(paths[-1].poses) == t.node.stats.processed, 120), \
                "no path for the frame"

        for f in frames[:6]:
            feed(f)

        def poses(msg):
            return [np.array(conv.pose_to_matrix(p.pose)) for p in msg.poses]

        before = poses(paths[-1])
        kfs = t.node.pipe.keyframes
        assert len(kfs) >= 2
        C = se3.se3_exp(torch.tensor([0.04, 0.0, -0.02, 0.0, 0.02, 0.0], dtype=torch.float64)).numpy()
        upd = {k.id: k.pose.double().cpu().numpy() for k in kfs[:2]}
        upd[1] = C @ upd[1]
        t.node.pipe.backend._results.put(GraphUpdate(upd, None, 0.0))
        feed(frames[6])
        after = poses(paths[-1])
        first_moved = kfs[1].frame_index
        for i, (p0, p1) in enumerate(zip(before, after)):
            expect = C @ p0 if i >= first_moved else p0
            np.testing.assert_allclose(p1, expect, atol=2e-3, err_msg=f"frame {i}")
        assert t.node.pipe.correction_count == 1
    finally:
        t.close()


def test_keyframe_graph_follows_the_back_end():
    """~/keyframe_graph (latched, over DDS) holds a sphere per keyframe at its pose and the
    tracker's edges between consecutive keyframes; a loop edge and a graph correction of
    keyframe 1 show up after the next frame: a loop line, and that sphere moved."""
    import torch
    from visualization_msgs.msg import MarkerArray

    from gs4_ros.core import se3
    from gs4_ros.core.backend import GraphUpdate
    from gs4_ros.core.backend.keyframe_graph import Edge
    from gs4_ros.ros.qos import latched_qos

    def by_ns(msg):
        return {mk.ns: mk for mk in msg.markers if mk.ns}

    def centres(msg):
        return [(p.x, p.y, p.z) for p in by_ns(msg)["keyframes"].points]

    frames = H.synthetic_frames(8)
    t = InProcess(*SYNC_BACKEND, "pipeline.backend.loop_closure:=false")
    try:
        got = []
        t.client.create_subscription(MarkerArray, "/gs4_node/keyframe_graph", got.append, latched_qos())
        t.feed(frames[:6])
        kfs = t.node.pipe.keyframes
        assert len(kfs) >= 3
        assert H.spin_until(t.ex, lambda: got and "keyframes" in by_ns(got[-1])
                            and len(centres(got[-1])) == len(kfs), 30), "no graph with every keyframe"
        poses = [kf.pose.double().cpu().numpy() for kf in kfs]
        np.testing.assert_allclose(centres(got[-1]), [T[:3, 3] for T in poses], atol=1e-5)
        assert len(by_ns(got[-1])["edges/odom"].points) == 2 * (len(kfs) - 1)
        assert "edges/loop" not in by_ns(got[-1])

        be = t.node.pipe.backend
        be.graph.add_edge(Edge(0, kfs[-1].id, np.eye(4), np.eye(6), "loop"))
        C = se3.se3_exp(torch.tensor([0.05, 0.0, -0.03, 0.0, 0.02, 0.0], dtype=torch.float64)).numpy()
        upd = {kf.id: T for kf, T in zip(kfs, poses)}
        upd[1] = C @ poses[1]
        be._results.put(GraphUpdate(upd, None, 0.0))
        n = len(got)
        t.feed(frames[6:7], stamp=10**9 + 6 * 100_000_000)   # after the first six frames
        assert H.spin_until(t.ex, lambda: len(got) > n and "edges/loop" in by_ns(got[-1]), 30), "no loop shown"
        m = by_ns(got[-1])
        np.testing.assert_allclose([(p.x, p.y, p.z) for p in m["edges/loop"].points][0], poses[0][:3, 3], atol=1e-5)
        np.testing.assert_allclose(centres(got[-1])[1], (C @ poses[1])[:3, 3], atol=2e-3)
        np.testing.assert_allclose(centres(got[-1])[0], poses[0][:3, 3], atol=2e-3)
    finally:
        t.close()


def test_keyframe_steps_wait_for_the_workers_slack():
    """With a newer frame waiting at every keyframe, the node defers the keyframe joint
    steps (map polishing) instead of delaying frames; once nothing waits, the worker's
    idle time runs one on the newest keyframes, the map is re-published and
    /diagnostics reports both counts."""
    from diagnostic_msgs.msg import DiagnosticArray

    frames = H.synthetic_frames(6)
    t = InProcess("pipeline.device:=cpu", "pipeline.backend.enabled:=true",
                  "pipeline.backend.synchronous:=true", "pipeline.backend.loop_closure:=false",
                  "pipeline.backend.joint_on_keyframe:=true", "pipeline.backend.joint_iterations:=1",
                  "pipeline.backend.joint_top_k:=2", "pipeline.backend.joint_min_interval:=1000",
                  "pipeline.mapping.keyframe_max_interval:=2", "path_rate_hz:=0.0", "map_rate_hz:=0.0",
                  "render_rate_hz:=0.0", "publish_tf:=false", "diagnostics_rate_hz:=5.0")
    try:
        diags = []
        t.client.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        waiting = [True]
        t.node._frame_waiting = lambda: waiting[0]   # as if the slot always held a newer frame
        t.feed(frames)
        st = t.node.pipe.backend.stats
        assert st.joint_optimizations == 0 and st.joint_deferred >= 2, st.summary()
        version = t.node._map_version
        waiting[0] = False
        assert H.spin_until(t.ex, lambda: st.joint_optimizations == 1, 60), st.summary()
        assert st.joint_reasons == {"keyframe (deferred)": 1}
        # The worker counts the step inside the pipeline and bumps the map version just
        # after it returns: wait for the bump rather than race it.
        assert H.spin_until(t.ex, lambda: t.node._map_version > version, 10)

        def reported():
            for arr in diags:
                kv = {v.key: v.value for v in arr.status[0].values}
                if kv.get("joint_optimizations") == "1":
                    return kv
            return None

        assert H.spin_until(t.ex, lambda: reported() is not None, 10)
        assert int(reported()["joint_deferred"]) == st.joint_deferred
    finally:
        t.close()


def _refining_node(rounds: int, n_frames: int) -> InProcess:
    """A node with the back-end keeping keyframe images (no loop closure), `rounds` passes
    of final refinement configured, fed `n_frames` synthetic frames."""
    t = InProcess("pipeline.device:=cpu", "pipeline.backend.enabled:=true",
                  "pipeline.backend.synchronous:=true", "pipeline.backend.loop_closure:=false",
                  f"pipeline.backend.final_refine_rounds:={rounds}", "pipeline.mapping.keyframe_max_interval:=2",
                  "path_rate_hz:=0.0", "map_rate_hz:=0.0", "render_rate_hz:=0.0", "publish_tf:=false")
    try:
        t.feed(H.synthetic_frames(n_frames))
    except BaseException:
        t.close()
        raise
    return t


def test_refine_map_service_refines_on_the_worker():
    """~/refine_map runs the final map refinement between frames (the configured passes)
    and reports it; the map is re-published; the trajectory stays."""
    from std_srvs.srv import Trigger

    t = _refining_node(2, 6)
    try:
        traj = [T for _, _, T in t.node.pipe.final_trajectory()]
        version = t.node._map_version
        r = H.call_service(t.client, t.ex, Trigger, "/gs4_node/refine_map", 300)
        assert r.success and r.message.startswith("map refined: 2 passes"), r.message
        assert t.node.pipe.backend.stats.refine_passes == 2 and t.node._map_version > version
        for a, b in zip(traj, [T for _, _, T in t.node.pipe.final_trajectory()]):
            np.testing.assert_array_equal(a, b)
    finally:
        t.close()


def test_refine_map_service_runs_the_final_semantic_pass_with_the_networks():
    """With the network initialiser and the back-end off there is no refinement, but
    ~/refine_map still re-predicts the keyframes' classes and re-publishes the map."""
    from std_srvs.srv import Trigger

    t = InProcess("pipeline.device:=cpu", "pipeline.initializer:=network",
                  "pipeline.tracking.min_inlier_fraction:=0.05", "pipeline.mapping.keyframe_max_interval:=2",
                  "path_rate_hz:=0.0", "map_rate_hz:=0.0", "render_rate_hz:=0.0", "publish_tf:=false")
    try:
        t.feed(H.synthetic_frames(4))
        pipe = t.node.pipe
        version, before = t.node._map_version, pipe.map.sem_logits.clone()
        r = H.call_service(t.client, t.ex, Trigger, "/gs4_node/refine_map", 300)
        assert r.success and r.message.startswith("classes re-predicted at"), r.message
        assert pipe.final_semantics_stats["keyframes"] == len(pipe.keyframes) >= 2
        assert t.node._map_version > version and not torch.equal(pipe.map.sem_logits, before)
    finally:
        t.close()


def test_a_service_waiting_on_the_worker_leaves_the_executor_free():
    """~/refine_map (like save, load, reset) waits for the worker as a coroutine: while the
    worker is busy, ~/pause and ~/resume answer at once; then the refinement answers."""
    import threading

    from std_srvs.srv import Trigger

    t = _refining_node(1, 4)
    gate = threading.Event()
    try:
        busy, _ = t.node.worker.post(lambda: gate.wait(60))      # the worker is held here
        cli = t.client.create_client(Trigger, "/gs4_node/refine_map")
        assert H.spin_until(t.ex, cli.service_is_ready, 20)
        refine = cli.call_async(Trigger.Request())
        H.spin_until(t.ex, lambda: False, 0.3)                    # the request reaches the node
        for name in ("pause", "resume"):
            r = H.call_service(t.client, t.ex, Trigger, f"/gs4_node/{name}", 10)
            assert r.success, r.message
        assert not refine.done() and not busy.is_set()
        gate.set()
        assert H.spin_until(t.ex, refine.done, 120)
        r = refine.result()
        assert r.success and r.message.startswith("map refined: 1 passes"), r.message
    finally:
        gate.set()
        t.close()


def test_slow_frames_are_reported_with_their_stage_times(capfd):
    """slow_frame_warn_ms: a frame that keeps the worker longer is logged with the
    pipeline's stage times; with the default (0) nothing is."""
    from gs4_ros.ros.player import FramePlayer, encode

    frames = H.synthetic_frames(2)
    for limit, expect in ((0.0, False), (0.001, True)):
        t = InProcess("pipeline.device:=cpu", f"slow_frame_warn_ms:={limit}", "map_rate_hz:=0.0",
                      "render_rate_hz:=0.0", "publish_tf:=false")
        try:
            player = FramePlayer(t.client, prefix="", publish_labels=False, publish_gt=False)
            assert H.spin_until(t.ex, lambda: player.pub_color.get_subscription_count() > 0, 30)
            player.publish(encode(frames[0]), 10**9)
            assert H.spin_until(t.ex, lambda: t.node.stats.processed >= 1, 120)
            assert H.spin_until(t.ex, lambda: "slow_frame" in t.node._warned, 2) is expect
        finally:
            t.close()
        err = capfd.readouterr().err
        assert ("slow frame:" in err and "track" in err) is expect, err[-2000:]


def test_a_worker_error_is_logged_with_its_traceback_once_per_kind(capfd):
    """The node survives an exception in its worker; the log says where it came from the
    first time (the message alone did not), and a repeat is counted, not re-traced."""
    t = InProcess("pipeline.device:=cpu", "map_rate_hz:=0.0", "render_rate_hz:=0.0", "publish_tf:=false")
    try:
        def boom():
            raise IndexError("index 0 is out of bounds for dimension 0 with size 0")
        for _ in range(2):
            try:
                boom()
            except IndexError as e:
                t.node._worker_error(e)
            t.node._warned.clear()                       # let the second one be logged too
        assert t.node.stats.rejected["internal_error"] == 2
    finally:
        t.close()
    err = capfd.readouterr().err
    assert err.count("worker error (node keeps running): IndexError") == 2, err[-2000:]
    assert err.count("Traceback (most recent call last)") == 1 and "in boom" in err


def test_errors_of_a_stopping_node_are_not_worker_errors(capfd):
    """On SIGINT rclpy shuts the context down while the worker may still be publishing a
    frame's outputs; that publish fails ("publisher's context is invalid") because the node
    is stopping, and must not be logged as a worker error with its traceback (a CI run of
    the node test caught one)."""
    t = InProcess("pipeline.device:=cpu", "map_rate_hz:=0.0", "render_rate_hz:=0.0", "publish_tf:=false")
    try:
        t.node._worker_error(RuntimeError("before shutdown"))
        rclpy.shutdown(context=t.ctx)
        t.node._worker_error(RuntimeError("Failed to publish: publisher's context is invalid"))
        assert t.node.stats.rejected["internal_error"] == 1
    finally:
        t.node.shutdown()                  # as main() does after the executor's spin ends
        t.node.destroy_node()
        t.client.destroy_node()
    err = capfd.readouterr().err
    assert "before shutdown" in err and "context is invalid" not in err


def test_a_callback_that_raises_is_logged_and_the_node_spins_on(capfd):
    """Whatever a message does to a callback, the executor must not end (it would take
    SLAM down): the error is counted and logged, the message skipped."""
    from std_msgs.msg import String

    t = InProcess("pipeline.device:=cpu", "map_rate_hz:=0.0", "render_rate_hz:=0.0", "publish_tf:=false")
    try:
        def broken(msg):
            raise RuntimeError(f"cannot handle {msg.data!r}")
        t.node.create_subscription(String, "/broken_input", t.node._guard(broken), 10)
        pub = t.client.create_publisher(String, "/broken_input", 10)
        assert H.spin_until(t.ex, lambda: pub.get_subscription_count() > 0, 30)
        pub.publish(String(data="x"))
        assert H.spin_until(t.ex, lambda: t.node.stats.rejected["callback_error"] == 1, 10)
        pub.publish(String(data="y"))                     # still spinning: the next one arrives too
        assert H.spin_until(t.ex, lambda: t.node.stats.rejected["callback_error"] == 2, 10)
    finally:
        t.close()
    err = capfd.readouterr().err
    assert "broken failed on a message, skipped: RuntimeError: cannot handle 'x'" in err
