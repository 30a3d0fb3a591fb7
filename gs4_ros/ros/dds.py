"""Fast DDS profiles shipped with the package, and the environment that selects one.

One place for the launch file and the latency benchmark: the profile names they accept
and where each file lies (relative to the package's share directory, which in a source
checkout is the repository root). No ROS imports, so the launch file's argument
handling stays testable without the launch packages.
"""
from __future__ import annotations

import os

PROFILE_VAR = "FASTRTPS_DEFAULT_PROFILES_FILE"
# 64 MiB shared-memory segments: Fast DDS's 512 KiB default is smaller than one 640x480
# rgb8 image, which then goes as fragmented best-effort UDP and is mostly lost.
DDS_PROFILES = {"shm_large": os.path.join("config", "dds", "fastdds_shm_large.xml")}


def dds_profile_env(profile: str, share_dir: str) -> dict:
    """Environment for `profile`: a shipped name, an XML path, or '' / 'none' (nothing set)."""
    profile = str(profile).strip()
    if not profile or profile.lower() == "none":
        return {}
    path = os.path.join(share_dir, DDS_PROFILES[profile]) if profile in DDS_PROFILES else os.path.expanduser(profile)
    return {PROFILE_VAR: path}
