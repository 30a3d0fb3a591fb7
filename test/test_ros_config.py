"""Shipped launch file, parameter files and RViz config agree with the node.

The parameter files are loaded into a real in-process gs4_node (rclpy), so a misspelt
key, a wrong type (1 where a double is declared) or an unknown pipeline key fails here
rather than on a robot.
"""
import os
import py_compile
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import ros_helpers  # noqa: E402,F401  (isolated DDS domain before rclpy starts)

rclpy = pytest.importorskip("rclpy")

from gs4_ros.core.config import load_config  # noqa: E402
from gs4_ros.ros.params import NODE_PARAMS, declared_names, markdown_table  # noqa: E402
from conftest import load_script

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "config").glob("*.yaml"))
LAUNCH = REPO / "launch" / "gs4.launch.py"


def flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_expected_configs_ship():
    names = {c.name for c in CONFIGS}
    assert {"gs4.yaml", "realsense_d435.yaml", "azure_kinect.yaml", "tum.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_keys_are_declared_parameters(path):
    doc = yaml.safe_load(path.read_text())
    assert list(doc) == ["/**"], "one wildcard node entry, so the file works under any node name"
    params = flat(doc["/**"]["ros__parameters"])
    unknown = set(params) - declared_names() - {"use_sim_time"}
    assert not unknown, f"{path.name}: undeclared parameters {sorted(unknown)}"
    load_config(str(path))   # the CLI reads the same file


def test_gs4_yaml_gives_the_true_defaults():
    """config/gs4.yaml documents the defaults: each pipeline value it lists is the one
    PipelineConfig has, so the file cannot drift from the code."""
    from gs4_ros.core.config import PipelineConfig

    doc = yaml.safe_load((REPO / "config" / "gs4.yaml").read_text())
    listed = flat(doc["/**"]["ros__parameters"]["pipeline"])
    defaults = flat(PipelineConfig().to_dict())
    assert any(k.startswith("backend.") for k in listed)
    wrong = {k: (v, defaults.get(k)) for k, v in listed.items() if defaults.get(k) != v}
    assert not wrong, f"gs4.yaml value != default: {wrong}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_into_a_real_node(path):
    from gs4_ros.ros.node import GS4Node

    ctx = rclpy.Context()
    rclpy.init(args=["--ros-args", "--params-file", str(path)], context=ctx)
    node = None
    try:
        node = GS4Node(context=ctx)
        doc = flat(yaml.safe_load(path.read_text())["/**"]["ros__parameters"])
        for k, v in doc.items():
            got = node.get_parameter(k).value
            assert list(got) == v if isinstance(v, list) else got == v, k
        assert node.cfg.to_dict() == load_config(str(path)).to_dict()
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.shutdown(context=ctx)


@pytest.mark.parametrize("arg,match", [
    ("tf_mode:=sideways", "tf_mode"),
    ("publish_tf:=3", "publish_tf"),
    ("render_rate_hz:=-1.0", "render_rate_hz"),
    ("pipeline.tracking.max_depth:=far", "max_depth"),
])
def test_bad_parameter_values_are_refused(arg, match):
    from gs4_ros.ros.node import GS4Node

    ctx = rclpy.Context()
    rclpy.init(args=["--ros-args", "-p", arg], context=ctx)
    try:
        with pytest.raises(Exception, match=match):
            GS4Node(context=ctx)
    finally:
        rclpy.shutdown(context=ctx)


def test_integers_are_accepted_for_float_settings():
    """`max_depth: 4` in a YAML file is a float setting written as an int: accepted."""
    from gs4_ros.ros.node import GS4Node

    ctx = rclpy.Context()
    rclpy.init(args=["--ros-args", "-p", "approx_sync_max_interval:=0", "-p",
                     "pipeline.tracking.max_depth:=4", "-p", "pipeline.mapping.stride:=16"], context=ctx)
    node = None
    try:
        node = GS4Node(context=ctx)
        assert node.p["approx_sync_max_interval"] == 0.0 and isinstance(node.p["approx_sync_max_interval"], float)
        assert node.cfg.tracking.max_depth == 4.0 and node.cfg.mapping.stride == 16
        # run-time changes are validated the same way
        from rclpy.parameter import Parameter
        ok = node.set_parameters([Parameter("map_rate_hz", value=2)])[0]
        assert ok.successful and node.p["map_rate_hz"] == 2.0
        bad = node.set_parameters([Parameter("pipeline.tracking.max_depth", value="far")])[0]
        assert not bad.successful
        bad = node.set_parameters([Parameter("publish_tf", value="yes")])[0]
        assert not bad.successful
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.shutdown(context=ctx)


def test_launch_file_compiles_and_resolves_arguments():
    py_compile.compile(str(LAUNCH), doraise=True)
    mod = load_script(str(LAUNCH.relative_to(REPO)))
    r = mod.resolve({}, "/share")
    assert r["config"] == "/share/config/gs4.yaml" and r["use_sim_time"] is False
    assert ("color/image_raw", "/camera/color/image_raw") in r["remappings"]
    assert r["bag_cmd"] is None and r["rviz"] is True
    rs = mod.resolve({"sensor": "realsense_d435", "rviz": "false"}, "/share")
    assert rs["config"].endswith("realsense_d435.yaml") and not rs["rviz"]
    assert ("depth/image_raw", "/camera/camera/aligned_depth_to_color/image_raw") in rs["remappings"]
    b = mod.resolve({"bag": "/data/fr1", "sensor": "tum", "color_topic": "/x/rgb"}, "/share")
    assert b["use_sim_time"] is True                          # auto: on with a bag
    assert b["bag_cmd"] == ["ros2", "bag", "play", "/data/fr1", "--clock", "--rate", "1.0"]
    assert ("color/image_raw", "/x/rgb") in b["remappings"]    # explicit remap wins
    assert ("depth/image_raw", "/camera/depth/image") in b["remappings"]
    assert mod.resolve({"bag": "/b", "use_sim_time": "false"}, "/s")["use_sim_time"] is False
    with pytest.raises(ValueError, match="sensor"):
        mod.resolve({"sensor": "kinect9000"}, "/s")
    for preset in mod.SENSORS.values():
        assert (REPO / "config" / preset["config"]).is_file()
    # The shipped Fast DDS profile by default, an explicit path, or the environment's own.
    assert r["env"] == {"FASTRTPS_DEFAULT_PROFILES_FILE": "/share/config/dds/fastdds_shm_large.xml"}
    from gs4_ros.ros.dds import DDS_PROFILES

    for rel in DDS_PROFILES.values():
        assert (REPO / rel).is_file()
    assert mod.resolve({"dds_profile": "/etc/my.xml"}, "/s")["env"] == {"FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/my.xml"}
    assert mod.resolve({"dds_profile": "none"}, "/s")["env"] == {}


def test_launch_description_builds_when_launch_is_installed():
    try:
        from launch import LaunchDescription  # noqa: F401  (the repo's launch/ folder is not it)
        import launch_ros  # noqa: F401
    except ImportError:
        pytest.skip("launch / launch_ros are not installed (not on PyPI)")
    ld = load_script(str(LAUNCH.relative_to(REPO))).generate_launch_description()
    names = {a.name for a in ld.entities if hasattr(a, "name") and hasattr(a, "default_value")}
    assert {"config", "use_sim_time", "rviz", "bag", "color_topic", "depth_topic",
            "camera_info_topic"} <= names


def test_rviz_config_matches_node_topics_and_qos():
    from rclpy.qos import DurabilityPolicy

    from gs4_ros.ros.node import GS4Node

    rv = yaml.safe_load((REPO / "rviz" / "gs4.rviz").read_text())
    displays = rv["Visualization Manager"]["Displays"]
    assert rv["Visualization Manager"]["Global Options"]["Fixed Frame"] == "map"
    classes = {d["Class"] for d in displays}
    assert {"rviz_default_plugins/PointCloud2", "rviz_default_plugins/Path", "rviz_default_plugins/TF",
            "rviz_default_plugins/Image"} <= classes
    ctx = rclpy.Context()
    rclpy.init(args=[], context=ctx)
    node = None
    try:
        node = GS4Node(context=ctx)
        pubs = {p.topic_name: p for p in node.publishers}
        for d in displays:
            if "Topic" not in d:
                continue
            t = d["Topic"]
            assert t["Value"] in pubs, f"RViz display {d['Name']} listens to {t['Value']}, not published"
            latched = pubs[t["Value"]].qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
            assert (t["Durability Policy"] == "Transient Local") == latched, d["Name"]
        for name in ("/gs4_node/map_cloud", "/gs4_node/semantic_cloud", "/gs4_node/path",
                     "/gs4_node/render/color", "/gs4_node/render/semantic", "/gs4_node/query/cloud"):
            assert any(d.get("Topic", {}).get("Value") == name for d in displays), name
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.shutdown(context=ctx)


def test_docs_list_every_parameter():
    doc = (REPO / "docs" / "ros.md").read_text()
    for p in NODE_PARAMS:
        assert f"`{p.name}`" in doc, p.name
    assert markdown_table() in doc, "docs/ros.md parameter table is out of date (params.markdown_table())"


def test_setup_installs_launch_config_rviz():
    setup = (REPO / "setup.py").read_text()
    for folder in ("launch/*.launch.py", "config/*.yaml", "rviz/*.rviz"):
        assert folder in setup
    assert "gs4_node = gs4_ros.ros.node:main" in setup
    assert os.path.isfile(REPO / "resource" / "gs4_ros")
