"""The helpers the GPU-machine calls lean on (benchmarks/device_calls, benchmarks/pack_frames.py).

Why: those scripts run only on the lent machine, where a broken script or a lossy frame
pack costs a session's device time before anyone sees it; here they are checked on the CPU.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CALLS = REPO / "benchmarks" / "device_calls"
PACK = [sys.executable, str(REPO / "benchmarks" / "pack_frames.py")]


@pytest.mark.parametrize("script", sorted(p.name for p in CALLS.glob("*.sh")))
def test_device_scripts_parse(script):
    got = subprocess.run(["bash", "-n", str(CALLS / script)], capture_output=True, text=True)
    assert got.returncode == 0, got.stderr


def _seven_scenes_folder(root: Path, first: int, n: int, rng) -> dict:
    """A tiny 7-Scenes-layout folder: uint16 depth PNGs, colour JPEGs, pose files."""
    root.mkdir(parents=True)
    (root / "camera-intrinsics.txt").write_text("585 0 320\n0 585 240\n0 0 1\n")
    depth = {}
    for i in range(first, first + n):
        d = rng.integers(0, 65535, size=(12, 16), dtype=np.uint16)
        d[0, 0] = 65535   # 7-Scenes' invalid marker survives
        name = f"frame-{i:06d}"
        cv2.imwrite(str(root / f"{name}.depth.png"), d)
        cv2.imwrite(str(root / f"{name}.color.jpg"), rng.integers(0, 255, size=(12, 16, 3), dtype=np.uint8))
        (root / f"{name}.pose.txt").write_text(f"1 0 0 {i}\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
        depth[f"{name}.depth.png"] = d
    return depth


def test_frames_packed_in_two_halves_unpack_into_one_folder_losslessly(tmp_path):
    """t40a.sh carries 7-Scenes 0-249 and 250-499 as two packs (the carry limit) and
    unpacks both into one folder: every depth image must come back bit for bit, and the
    colour and pose files byte for byte."""
    rng = np.random.default_rng(0)
    depth = _seven_scenes_folder(tmp_path / "a", 0, 3, rng)
    depth |= _seven_scenes_folder(tmp_path / "b", 3, 2, rng)
    for half in ("a", "b"):
        subprocess.run([*PACK, "pack", str(tmp_path / half), str(tmp_path / f"pack_{half}"), "--workers", "1"],
                       check=True, capture_output=True)
        assert not list((tmp_path / f"pack_{half}").glob("*.depth.png"))   # depth travels only packed
        subprocess.run([*PACK, "unpack", str(tmp_path / f"pack_{half}"), str(tmp_path / "out"), "--workers", "1"],
                       check=True, capture_output=True)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("*.depth.png")) == sorted(depth)
    for name, d in depth.items():
        back = cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED)
        assert back.dtype == np.uint16 and np.array_equal(back, d), name
    for src in [*(tmp_path / "a").iterdir(), *(tmp_path / "b").iterdir()]:
        if not src.name.endswith(".depth.png"):
            assert (out / src.name).read_bytes() == src.read_bytes(), src.name


def test_pack_refuses_a_folder_without_depth(tmp_path):
    (tmp_path / "empty").mkdir()
    got = subprocess.run([*PACK, "pack", str(tmp_path / "empty"), str(tmp_path / "p")], capture_output=True, text=True)
    assert got.returncode != 0 and "no frame-*.depth.png" in got.stderr


def test_eval_failures_names_the_evaluations_that_left_no_json(tmp_path):
    """compare.sh keeps each background evaluation's log beside its JSON; eval_failures
    prints the tail of those whose JSON never came (t39a lost three without a word)."""
    (tmp_path / "ok.log").write_text("fine\n")
    (tmp_path / "ok.json").write_text("[]")
    (tmp_path / "died.log").write_text("".join(f"line {i}\n" for i in range(40)) + "CUDA out of memory\n")
    got = subprocess.run(["bash", "-c", f"source {CALLS / 'compare.sh'}; eval_failures {tmp_path}"],
                         capture_output=True, text=True, check=True)
    assert "died.log (no JSON)" in got.stdout and "CUDA out of memory" in got.stdout
    assert "line 10\n" not in got.stdout   # the tail, not the whole log
    assert "ok.log" not in got.stdout
    (tmp_path / "none").mkdir()   # no evaluation started: nothing to name
    got = subprocess.run(["bash", "-c", f"source {CALLS / 'compare.sh'}; eval_failures {tmp_path / 'none'}"],
                         capture_output=True, text=True, check=True)
    assert got.stdout == "" and got.stderr == ""
