"""Launch gs4_node, optionally RViz and a rosbag2 replay.

    ros2 launch gs4_ros gs4.launch.py sensor:=realsense_d435
    ros2 launch gs4_ros gs4.launch.py bag:=/data/fr1_desk_bag sensor:=tum       # sim time on
    ros2 launch gs4_ros gs4.launch.py config:=/my/params.yaml color_topic:=/cam/rgb/image_raw \
        depth_topic:=/cam/depth_registered/image_raw camera_info_topic:=/cam/rgb/camera_info

`sensor` picks a shipped config and the topic names that camera's ROS 2 driver uses;
explicit arguments override both. `use_sim_time` is `auto` by default: on when a bag is
played (it is played with --clock), off otherwise. All argument handling is plain Python
in `resolve()`, so it is unit-tested without the launch packages.
"""
import os

from gs4_ros.ros.dds import dds_profile_env

# sensor -> default config file and input topics (driver defaults of each camera's ROS 2 driver)
SENSORS = {
    "generic": {
        "config": "gs4.yaml",
        "color_topic": "/camera/color/image_raw",
        "depth_topic": "/camera/depth/image_raw",
        "camera_info_topic": "/camera/color/camera_info",
        "depth_camera_info_topic": "/camera/depth/camera_info",
        "labels_topic": "/camera/labels/image_raw",
    },
    # realsense2_camera 4.x (`ros2 launch realsense2_camera rs_launch.py align_depth.enable:=true`)
    "realsense_d435": {
        "config": "realsense_d435.yaml",
        "color_topic": "/camera/camera/color/image_raw",
        "depth_topic": "/camera/camera/aligned_depth_to_color/image_raw",
        "camera_info_topic": "/camera/camera/color/camera_info",
        "depth_camera_info_topic": "/camera/camera/aligned_depth_to_color/camera_info",
        "labels_topic": "/camera/labels/image_raw",
    },
    # Azure_Kinect_ROS_Driver (depth registered to colour: depth_to_rgb)
    "azure_kinect": {
        "config": "azure_kinect.yaml",
        "color_topic": "/rgb/image_raw",
        "depth_topic": "/depth_to_rgb/image_raw",
        "camera_info_topic": "/rgb/camera_info",
        "depth_camera_info_topic": "/depth_to_rgb/camera_info",
        "labels_topic": "/rgb/labels",
    },
    # TUM RGB-D ROS bags converted to rosbag2 (rosbags-convert) keep these names;
    # bags written by `gs4 convert` use the generic ones.
    "tum": {
        "config": "tum.yaml",
        "color_topic": "/camera/rgb/image_color",
        "depth_topic": "/camera/depth/image",
        "camera_info_topic": "/camera/rgb/camera_info",
        "depth_camera_info_topic": "/camera/depth/camera_info",
        "labels_topic": "/camera/labels/image_raw",
    },
}

ARGUMENTS = [
    ("sensor", "generic", f"Preset for config and topics: {', '.join(SENSORS)}."),
    ("config", "", "Parameter file (default: the sensor's config/*.yaml)."),
    ("use_sim_time", "auto", "true / false / auto (= true when a bag is played)."),
    ("rviz", "true", "Start RViz with rviz/gs4.rviz."),
    ("rviz_config", "", "RViz config file (default: the package's rviz/gs4.rviz)."),
    ("bag", "", "rosbag2 to play with `ros2 bag play --clock` (empty = live sensor)."),
    ("bag_rate", "1.0", "Playback rate of the bag."),
    ("bag_delay", "3.0", "Seconds to wait before playing the bag (node start-up)."),
    ("color_topic", "", "Colour Image topic (default: from the sensor preset)."),
    ("depth_topic", "", "Depth Image topic (registered to colour)."),
    ("camera_info_topic", "", "CameraInfo of the colour camera."),
    ("depth_camera_info_topic", "", "CameraInfo of the depth camera (fallback)."),
    ("labels_topic", "", "Label Image topic (used when subscribe_labels is true)."),
    ("odom_prior_topic", "/odom", "nav_msgs/Odometry prior (used when subscribe_odom_prior is true)."),
    ("namespace", "", "Namespace of the node."),
    ("log_level", "info", "Node log level."),
    ("dds_profile", "shm_large", "Fast DDS profile for the node, RViz and the bag player: shm_large (shipped: "
     "64 MiB shared-memory segments, without which most 640x480 images between processes on one host are "
     "lost), none (keep the environment's), or the path of an XML profile."),
]


def _truthy(v) -> bool:
    return str(v).strip().lower() in ("1", "true", "yes", "on")


def resolve(values: dict, share_dir: str) -> dict:
    """Launch arguments -> what to start (no launch imports, so tests can call it)."""
    v = {name: default for name, default, _ in ARGUMENTS}
    v.update({k: str(x) for k, x in values.items() if x is not None})
    if v["sensor"] not in SENSORS:
        raise ValueError(f"sensor:={v['sensor']} is not one of {', '.join(SENSORS)}")
    preset = SENSORS[v["sensor"]]
    config = v["config"] or os.path.join(share_dir, "config", preset["config"])
    bag = v["bag"].strip()
    sim = v["use_sim_time"].strip().lower()
    use_sim_time = bool(bag) if sim in ("", "auto") else _truthy(sim)
    topic = {k: v[k] or preset[k] for k in ("color_topic", "depth_topic", "camera_info_topic",
                                           "depth_camera_info_topic", "labels_topic")}
    remappings = [
        ("color/image_raw", topic["color_topic"]),
        ("depth/image_raw", topic["depth_topic"]),
        ("color/camera_info", topic["camera_info_topic"]),
        ("depth/camera_info", topic["depth_camera_info_topic"]),
        ("labels/image_raw", topic["labels_topic"]),
        ("odom_prior", v["odom_prior_topic"]),
    ]
    env = dds_profile_env(v["dds_profile"], share_dir)
    bag_cmd = None
    if bag:
        bag_cmd = ["ros2", "bag", "play", bag, "--clock", "--rate", v["bag_rate"]]
    return {
        "config": config,
        "use_sim_time": use_sim_time,
        "remappings": remappings,
        "namespace": v["namespace"],
        "log_level": v["log_level"],
        "rviz": _truthy(v["rviz"]),
        "rviz_config": v["rviz_config"] or os.path.join(share_dir, "rviz", "gs4.rviz"),
        "bag_cmd": bag_cmd,
        "bag_delay": float(v["bag_delay"]),
        "env": env,
    }


def _launch_setup(context, *args, **kwargs):
    from ament_index_python.packages import get_package_share_directory
    from launch.actions import ExecuteProcess, SetEnvironmentVariable, TimerAction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    values = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    r = resolve(values, get_package_share_directory("gs4_ros"))
    # Set first: the environment of every process this launch starts after it.
    actions = [SetEnvironmentVariable(k, val) for k, val in r["env"].items()]
    actions += [Node(
        package="gs4_ros", executable="gs4_node", name="gs4_node", namespace=r["namespace"],
        output="screen", emulate_tty=True,
        parameters=[r["config"], {"use_sim_time": r["use_sim_time"]}],
        remappings=r["remappings"],
        arguments=["--ros-args", "--log-level", r["log_level"]],
    )]
    if r["rviz"]:
        actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", output="log",
                            arguments=["-d", r["rviz_config"]],
                            parameters=[{"use_sim_time": r["use_sim_time"]}]))
    if r["bag_cmd"]:
        actions.append(TimerAction(period=r["bag_delay"],
                                   actions=[ExecuteProcess(cmd=r["bag_cmd"], output="screen")]))
    return actions


def generate_launch_description():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=desc)
         for name, default, desc in ARGUMENTS] + [OpaqueFunction(function=_launch_setup)])
