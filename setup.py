"""ament_python package that also installs with plain `pip install .` (no ROS needed).

colcon puts the executables under lib/gs4_ros (see setup.cfg) and launch/config/rviz
under share/gs4_ros; pip puts the same console scripts on PATH.
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "gs4_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["weights/*.pt", "weights/*.md", "weights/*.json", "train/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/config/dds", glob("config/dds/*.xml")),
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "setuptools",
        "numpy>=1.24",
        "torch>=2.2",
        "opencv-python-headless>=4.8",
        "scipy>=1.10",
        "matplotlib>=3.7",
        "pyyaml>=6",
        "evo>=1.25",
        "rosbags>=0.10",
        "plyfile>=1.0",
        "pytorch-msssim>=1.0",
        "gtsam>=4.2",
        "threadpoolctl>=3.1",
    ],
    extras_require={
        # CUDA rasteriser; compiles its kernels on first use.
        "cuda": ["gsplat==1.5.3"],
        # Real ROS 2 Jazzy client library and messages from PyPI, for people without a
        # ROS install (a sourced /opt/ros/jazzy provides the same modules).
        "ros": [
            "ros-jazzy-rclpy[fastrtps]",
            "ros-jazzy-sensor-msgs",
            "ros-jazzy-geometry-msgs",
            "ros-jazzy-std-msgs",
            "ros-jazzy-nav-msgs",
            "ros-jazzy-std-srvs",
            "ros-jazzy-diagnostic-msgs",
            "ros-jazzy-visualization-msgs",
            # colcon and ament_package: `colcon build` of this package without a ROS
            # install (the end-to-end tests build and start the installed gs4_node).
            "colcon-common-extensions",
            "ros-jazzy-ament-package",
        ],
        "test": ["pytest>=7", "pytest-timeout>=2"],
        # Peer for benchmarks/peer_odometry.py (a KinectFusion-style dense SLAM); about
        # 400 MB, and it needs the system's libusb-1.0, so it is nowhere else required.
        "bench": ["open3d>=0.18"],
    },
    zip_safe=True,
    maintainer="gs4_ros developers",
    maintainer_email="gs4-ros@example.org",
    description="GS4 RGB-D semantic Gaussian-splatting SLAM as a ROS 2 node",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "gs4 = gs4_ros.cli.main:main",
            "gs4_node = gs4_ros.ros.node:main",
        ],
    },
)
