"""The shipped Fast DDS profile (config/dds/fastdds_shm_large.xml) carries 640x480 images
between processes: with Fast DDS's 512 KiB default shared-memory segment most such
images were lost best effort on one host (benchmarks/node_latency.py: 23 of 30 at 5 Hz)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import ros_helpers  # noqa: E402,F401  (DDS domain isolation for the children)

from gs4_ros.ros.dds import DDS_PROFILES, PROFILE_VAR  # noqa: E402

pytest.importorskip("rclpy")

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / DDS_PROFILES["shm_large"]
PROBE = Path(__file__).with_name("dds_image_probe.py")


def test_shipped_profile_parses():
    import xml.etree.ElementTree as ET

    root = ET.parse(PROFILE).getroot()
    ns = {"f": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    seg = root.find(".//f:transport_descriptor[f:type='SHM']/f:segment_size", ns)
    assert seg is not None and int(seg.text) >= 4 * 640 * 480 * 3


@pytest.mark.skipif(os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") != "rmw_fastrtps_cpp",
                    reason="the profile is for Fast DDS; another RMW is selected")
def test_profile_carries_vga_images_between_processes():
    env = dict(os.environ, **{PROFILE_VAR: str(PROFILE)})
    env.pop("FASTDDS_BUILTIN_TRANSPORTS", None)   # it would override the profile's transports
    sub = subprocess.Popen([sys.executable, str(PROBE), "sub", "14"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    pub = subprocess.Popen([sys.executable, str(PROBE), "pub", "20"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    out, err = sub.communicate(timeout=90)
    pub.communicate(timeout=90)
    assert "received" in out, err[-2000:]
    n = int(out.split()[1])
    # Fast DDS reports a profile it cannot use on stderr and falls back to its defaults.
    assert "XMLPARSER" not in err and "Error" not in err, err[-2000:]
    assert n >= 17, f"only {n} of 20 best-effort 640x480 images arrived: {out}"
