#!/usr/bin/env python3
"""Pack a 7-Scenes-layout folder into a few LZMA chunks and unpack it again, losslessly.

Why: the lent GPU machine receives at most 64 MiB per call, and 500 frames of 7-Scenes
PNG depth alone are 40 MB; LZMA on the raw uint16 stack is about 40% smaller than PNG.
Colour JPEGs and pose files are copied byte for byte.

    python benchmarks/pack_frames.py pack ../shared/data/7scenes_redkitchen_dev .devcarry/7s
    python benchmarks/pack_frames.py unpack .devcarry/7s /tmp/7scenes
"""
from __future__ import annotations

import argparse
import json
import lzma
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

CHUNK = 50


def _pack_chunk(args):
    files, out = args
    stack = np.stack([cv2.imread(str(f), cv2.IMREAD_UNCHANGED) for f in files])
    Path(out).write_bytes(lzma.compress(stack.tobytes(), preset=6))
    return str(out), stack.shape


def pack(src: Path, dst: Path, workers: int):
    dst.mkdir(parents=True, exist_ok=True)
    depth = sorted(src.glob("frame-*.depth.png"))
    if not depth:
        sys.exit(f"no frame-*.depth.png in {src}")
    for f in src.iterdir():
        if not f.name.endswith(".depth.png") and f.is_file():
            shutil.copy2(f, dst / f.name)
    jobs = [(depth[i:i + CHUNK], dst / f"depth_{i // CHUNK:03d}.xz") for i in range(0, len(depth), CHUNK)]
    with ProcessPoolExecutor(workers) as ex:
        shapes = list(ex.map(_pack_chunk, jobs))
    (dst / "depth_index.json").write_text(json.dumps(
        {"names": [f.name for f in depth], "chunks": [[Path(o).name, list(s)] for o, s in shapes]}))
    print(f"packed {len(depth)} depth images into {len(jobs)} chunks in {dst}")


def _unpack_chunk(args):
    chunk, shape, names, dst = args
    stack = np.frombuffer(lzma.decompress(Path(chunk).read_bytes()), dtype=np.uint16).reshape(shape)
    for img, name in zip(stack, names):
        cv2.imwrite(str(Path(dst) / name), img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return len(names)


def unpack(src: Path, dst: Path, workers: int):
    dst.mkdir(parents=True, exist_ok=True)
    idx = json.loads((src / "depth_index.json").read_text())
    for f in src.iterdir():
        if f.suffix not in (".xz",) and f.name != "depth_index.json":
            shutil.copy2(f, dst / f.name)
    jobs, k = [], 0
    for name, shape in idx["chunks"]:
        jobs.append((src / name, tuple(shape), idx["names"][k:k + shape[0]], str(dst)))
        k += shape[0]
    with ProcessPoolExecutor(workers) as ex:
        n = sum(ex.map(_unpack_chunk, jobs))
    print(f"unpacked {n} depth images into {dst}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["pack", "unpack"])
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    (pack if a.mode == "pack" else unpack)(a.src, a.dst, a.workers)


if __name__ == "__main__":
    main()
