"""Training data held on the training device: synthetic sequences (with labels, clean
targets) and optional real frames (7-Scenes; rendering losses only), plus the sampler of
(source view, overlapping target views) and the co-visibility masks of those views."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch

log = logging.getLogger(__name__)


@dataclass
class Sequence:
    """Frames of one sequence on the device. `*_tgt` are the rendering targets: the noise-free
    images for synthetic data, the observations themselves for real data."""

    name: str
    rgb: torch.Tensor          # [N, H, W, 3] uint8 (network input)
    depth: torch.Tensor        # [N, H, W] float metres (network input)
    rgb_tgt: torch.Tensor      # [N, H, W, 3] uint8
    depth_tgt: torch.Tensor    # [N, H, W]
    labels: Optional[torch.Tensor]  # [N, H, W] uint8 (255 unknown) or None for real data
    poses: torch.Tensor        # [N, 4, 4] camera-to-world
    K: torch.Tensor            # [3, 3]
    real: bool

    def __len__(self):
        return self.rgb.shape[0]


def _stack(frames, device, clean: bool, fill_holes: bool = False) -> dict:
    """fill_holes: the network input depth is the one mapping uses (holes filled by planes,
    core/depth_fill.mapping_depth), so tokens on windows and far walls are trained too."""
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
    if fill_holes:
        from ..core.config import MappingConfig
        from ..core.depth_fill import mapping_depth

        mcfg = MappingConfig()
        depth = [mapping_depth(f.depth, f.intrinsics.K_numpy(), mcfg)[0] for f in frames]
    else:
        depth = [f.depth for f in frames]
    return {
        "rgb": t(np.stack([f.rgb for f in frames])),
        "depth": t(np.stack(depth).astype(np.float32)),
        "rgb_tgt": t(np.stack([f.meta["rgb_clean"] if clean else f.rgb for f in frames])),
        "depth_tgt": t(np.stack([f.meta["depth_clean"] if clean else f.depth for f in frames]).astype(np.float32)),
        "labels": t(np.stack([f.labels for f in frames])) if clean else None,
        "poses": t(np.stack([f.gt_pose for f in frames]).astype(np.float32)),
    }


def _seed_tensors(seed: int, frames: int, step: int, width: int, height: int, device,
                  fill_holes: bool = False) -> dict:
    """Sequence fields (K included) of one seed's kept frames, rendered on `device`."""
    from ..io.synthetic import SyntheticSequence

    seq = SyntheticSequence(seed=seed, n_frames=frames * step, width=width, height=height, device=device)
    d = _stack([seq[i] for i in range(0, frames * step, step)], device, clean=True, fill_holes=fill_holes)
    d["K"] = seq.intrinsics.K(device)
    return d


def _render_seed(seed: int, frames: int, step: int, width: int, height: int, fill_holes: bool = False) -> dict:
    """_seed_tensors as numpy arrays, rendered on the CPU with one thread (runs in a worker
    process of synthetic_sequences)."""
    torch.set_num_threads(1)
    return {k: None if v is None else v.numpy() for k, v in _seed_tensors(seed, frames, step, width, height,
                                                                         "cpu", fill_holes).items()}


def _render_seed_to_file(seed: int, frames: int, step: int, width: int, height: int, fill_holes: bool,
                         folder: str) -> tuple:
    """_render_seed in a worker process, its arrays written to a file in `folder`; returns
    (path, keys that were None). The result crosses the process boundary as a short
    message: a room's arrays are megabytes, sent through the executor's result pipe in
    several writes, and a worker stopped at the data deadline in the middle of them leaves
    a truncated message that the executor's reader waits on for ever. (The test suite hung
    once, 2026-12-05, in its first test that starts these workers or after it; not
    reproduced in 40 runs since, so this removes the one hang known there.) A message this
    short is written in one go, and a stopped worker leaves at most a partial file."""
    d = _render_seed(seed, frames, step, width, height, fill_holes)
    path = os.path.join(folder, f"seed{seed}.npz")
    with open(path + ".part", "wb") as f:
        np.savez(f, **{k: v for k, v in d.items() if v is not None})
    os.replace(path + ".part", path)
    return path, [k for k, v in d.items() if v is None]


def _load_rendered(path: str, none_keys) -> dict:
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    os.remove(path)
    d.update({k: None for k in none_keys})
    return d


def _skipped(seed: int, e: Exception):
    log.warning("synthetic seed %d skipped: the generator failed (%s: %s)", seed, type(e).__name__, e)


def _synthetic(seed: int, d: dict, to_dev, targets: bool) -> Sequence:
    """Without targets the clean images are dropped and the targets name the inputs: a
    semantic-only chunk reads inputs and labels alone, and keeping the clean copies would
    more than double the memory a room takes."""
    if not targets:
        d = {k: v for k, v in d.items() if k not in ("rgb_tgt", "depth_tgt")}
    t = {k: to_dev(v) for k, v in d.items()}
    if not targets:
        t.update(rgb_tgt=t["rgb"], depth_tgt=t["depth"])
    return Sequence(f"synthetic:{seed}", real=False, **t)


class RoomStream:
    """Synthetic rooms rendered on the CPU by worker processes, handed over as they finish.

    The generator is a long chain of small tensor ops that keeps one core busy whatever the
    device, so on a many-core GPU machine a pool makes several times more rooms in the
    same minute than rendering one seed after another on the GPU. A training loop can
    poll() between steps and so train while rooms are still being made (the segmenter's
    does); synthetic_sequences waits for them instead. `device` is where a finished
    room's tensors go; `half_depth` keeps its depth in half precision (as the pipeline
    keeps keyframe depth for the final semantic pass)."""

    def __init__(self, seeds: List[int], frames: int, step: int, width: int, height: int, device, workers: int,
                 fill_holes: bool = False, targets: bool = True, half_depth: bool = False):
        import multiprocessing as mp
        import tempfile
        from concurrent.futures import ProcessPoolExecutor

        self.device, self.targets, self.half_depth = device, targets, half_depth
        self.made = self.failed = 0
        self._mp = mp
        self._before = set(mp.active_children())
        self.folder = tempfile.mkdtemp(prefix="gs4_rooms_")
        # spawn: the parent may hold a CUDA context, which a forked child must not inherit.
        # An executor, not a multiprocessing Pool: a worker that dies (killed for memory,
        # say) breaks the executor and fails its rooms, where a Pool starts a new worker
        # and waits for the lost room for ever.
        self.pool = ProcessPoolExecutor(max_workers=max(int(workers), 1), mp_context=mp.get_context("spawn"))
        self.pending = {self.pool.submit(_render_seed_to_file, s, frames, step, width, height, fill_holes,
                                         self.folder): s for s in seeds}

    def poll(self, timeout: Optional[float] = 0.0) -> List[Sequence]:
        """Rooms finished since the last call, waiting up to `timeout` s (None: until at
        least one finishes) when none has; a room whose generator failed is skipped with a
        warning."""
        from concurrent.futures import FIRST_COMPLETED, wait

        if not self.pending:
            return []
        done, _ = wait(self.pending, timeout=timeout, return_when=FIRST_COMPLETED)
        out = []
        for f in done:
            seed = self.pending.pop(f)
            try:
                d = _load_rendered(*f.result())
            except Exception as e:  # noqa: BLE001 - one bad room must not end a training chunk
                _skipped(seed, e)
                self.failed += 1
                continue
            if self.half_depth:
                d["depth"] = d["depth"].astype(np.float16)
            out.append(_synthetic(seed, d, self._to_dev, self.targets))
        self.made += len(out)
        return out

    def _to_dev(self, a):
        return None if a is None else torch.from_numpy(a).to(self.device)

    def close(self):
        """Stop the workers without waiting for the rooms still rendering or queued: with
        shutdown(wait=False) alone the interpreter's exit waited 47 s for them with 2
        workers on a 2-core machine and hung a training chunk after it had written its
        weights (2026-12-05, H200). So the workers (the children that appeared with the
        pool) are stopped, and the second shutdown joins what is left of the pool."""
        import shutil

        self.pool.shutdown(wait=False, cancel_futures=True)
        for p in set(self._mp.active_children()) - self._before:
            p.terminate()
        self.pool.shutdown(wait=True)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.pending = {}


def device_memory(device) -> Optional[Tuple[int, int]]:
    """(free, total) bytes where the rooms are kept: the GPU's as its driver sees it, or the
    host's available memory (Linux /proc/meminfo); None where neither can be read."""
    device = torch.device(device)
    if device.type == "cuda":
        return tuple(int(v) for v in torch.cuda.mem_get_info(device))
    try:
        info = dict(line.split(":", 1) for line in open("/proc/meminfo"))
        return int(info["MemAvailable"].split()[0]) * 1024, int(info["MemTotal"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


MEMORY_FLOOR = 0.1, 1 << 30   # free memory the rooms leave: this share of the total, at least 1 GiB


def _memory_low(mem: Optional[Tuple[int, int]], made: int) -> bool:
    """Whether (free, total) bytes of the device are under MEMORY_FLOOR, with a warning when they are."""
    if mem is None:
        return False
    free, total = mem
    floor = max(MEMORY_FLOOR[0] * total, MEMORY_FLOOR[1])
    if free >= floor:
        return False
    log.warning("synthetic training data: %.1f GB free on the training device, under the %.1f GB kept "
                "free; no more rooms this chunk (%d so far)", free / 1e9, floor / 1e9, made)
    return True


class RoomFeed:
    """A chunk's synthetic rooms, arriving while it trains (fit's --stream-data).

    synthetic_sequences keeps the GPU idle for the whole data phase (a third of a recipe
    stage); here training starts once `min_rooms` are made and the rest join `rooms` (the
    list a Sampler draws from) at each top_up() until the deadline, when the workers stop.
    Early steps draw from fewer rooms than later ones; the deadline, not the step count,
    decides how many rooms a chunk sees, as with synthetic_sequences.
    The rooms live on the training device (2.5 MB a 640x480 frame without targets), so a
    long data phase could fill a GPU in the middle of a chunk: once the device's free
    memory falls under MEMORY_FLOOR the feed stops as at its deadline, with a warning.
    `memory` (a () -> (free, total) bytes or None) is device_memory on `device` unless given."""

    def __init__(self, seeds: List[int], frames: int, step: int, width: int, height: int, device, workers: int,
                 deadline: float, fill_holes: bool = False, targets: bool = True, min_rooms: int = 2,
                 every: float = 1.0, memory: Optional[Callable[[], Optional[Tuple[int, int]]]] = None):
        self.rooms: List[Sequence] = []
        self.deadline, self.every = deadline, every
        self._memory = memory or (lambda: device_memory(device))
        self.stopped_for_memory = False
        self._stream = RoomStream(seeds, frames, step, width, height, device, max(int(workers), 2), fill_holes,
                                  targets)
        self._last = 0.0
        self.made_at_start, self._closed = 0, False
        try:
            while len(self.rooms) < min(min_rooms, len(seeds)) and self._stream.pending:
                self.rooms.extend(sorted(self._stream.poll(None), key=_seed_of))
        except BaseException:
            self.close()
            raise
        if not self.rooms:
            self.close()
            raise RuntimeError(f"none of the {len(seeds)} synthetic rooms could be made (see the warnings)")
        self.made_at_start = len(self.rooms)
        log.info("synthetic training data: %d sequences to start with, more until the data deadline",
                 len(self.rooms))

    @property
    def open(self) -> bool:
        return bool(self._stream.pending)

    def top_up(self) -> List[Sequence]:
        """Rooms finished since the last look (one look every `every` seconds), already
        added to `rooms`; the first call past the deadline takes the last ones and stops
        the workers."""
        if not self.open:
            return []
        now = time.time()
        if now - self._last < self.every and now < self.deadline:
            return []
        self._last = now
        new = sorted(self._stream.poll(0), key=_seed_of)
        self.rooms.extend(new)
        if now >= self.deadline:
            self.close()
        elif _memory_low(self._memory(), len(self.rooms)):
            self.stopped_for_memory = True
            self.close()
        return new

    def close(self):
        if not self._closed and self.rooms:
            log.info("synthetic training data: %d sequences x %d frames (%d joined while training)",
                     len(self.rooms), len(self.rooms[0]), len(self.rooms) - self.made_at_start)
        self._closed = True
        self._stream.close()


def _seed_of(q: Sequence) -> int:
    return int(q.name.split(":")[1])


def synthetic_sequences(seeds: List[int], frames: int, step: int, width: int, height: int, device,
                        deadline: Optional[float] = None, min_sequences: int = 2,
                        workers: int = 0, fill_holes: bool = False, targets: bool = True,
                        report: Optional[dict] = None) -> List[Sequence]:
    """Every `step`-th frame of a frames*step long path per seed, until the deadline
    (time.time()) passes once at least min_sequences are made. targets=False keeps no
    clean rendering targets (_synthetic). With workers > 1 the seeds are rendered by a
    RoomStream of that many processes (the GPU stays free for the kernel compile that
    overlaps the data phase). As in RoomFeed, once min_sequences are made, the device's free
    memory falling under MEMORY_FLOOR ends the data phase early; `report` (a dict) then gets
    stopped_for_memory=True, for the chunk's record."""
    out = []

    def done() -> bool:   # the minimum made, and the deadline passed or the device's memory low
        if len(out) < min_sequences:
            return False
        if deadline is not None and time.time() >= deadline:
            return True
        if _memory_low(device_memory(device), len(out)):
            if report is not None:
                report["stopped_for_memory"] = True
            return True
        return False

    if workers > 1 and len(seeds) > 1:
        stream = RoomStream(seeds, frames, step, width, height, device, workers, fill_holes, targets)
        try:
            while stream.pending and not done():
                left = None if deadline is None else deadline - time.time()
                out.extend(stream.poll(None if left is None or len(out) < min_sequences else left))
        finally:
            stream.close()
        out.sort(key=_seed_of)
    else:
        for seed in seeds:
            if done():
                break
            try:
                d = _seed_tensors(seed, frames, step, width, height, device, fill_holes)
            except Exception as e:  # noqa: BLE001 - as above
                _skipped(seed, e)
                continue
            out.append(_synthetic(seed, d, lambda a: a, targets))
    log.info("synthetic training data: %d sequences x %d frames at %dx%d", len(out), frames, width, height)
    return out


def real_sequence(path: str, frames: str, width: int, height: int, device, fill_holes: bool = False) -> Sequence:
    from ..io.datasets import open_dataset

    ds = open_dataset(f"7scenes:{path}", frames=frames, width=width, height=height)
    fr = [ds[i] for i in range(len(ds))]
    d = _stack(fr, device, clean=False, fill_holes=fill_holes)
    log.info("real training data: %d frames of %s (%s)", len(fr), path, frames)
    return Sequence(f"7scenes:{frames}", K=ds.intrinsics.K(device), real=True, **d)


@torch.no_grad()
def covisible_mask(src_depth, src_pose, tgt_depth, tgt_pose, K, tol: float = 0.05) -> torch.Tensor:
    """[H, W] bool: target pixels whose surface point is seen by the source view (in its
    image, in front, and within tol (+5% of depth) of the source's observed depth)."""
    from ..core.geometry import backproject

    H, W = tgt_depth.shape
    p = backproject(tgt_depth, K).reshape(-1, 3)
    T = torch.linalg.inv(src_pose) @ tgt_pose
    q = p @ T[:3, :3].T + T[:3, 3]
    z = q[:, 2]
    zs = z.clamp(min=1e-3)
    u = torch.floor(K[0, 0] * q[:, 0] / zs + K[0, 2] + 0.5).long()
    v = torch.floor(K[1, 1] * q[:, 1] / zs + K[1, 2] + 0.5).long()
    ok = (tgt_depth.reshape(-1) > 0) & (z > 0.05) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    ds = src_depth[v.clamp(0, H - 1), u.clamp(0, W - 1)]
    ok &= (ds > 0) & ((z - ds).abs() < tol + 0.05 * ds)
    return ok.reshape(H, W)


class Sampler:
    """Draws (sequence, source index, target indices); real data with probability p_real."""

    def __init__(self, synthetic: List[Sequence], real: List[Sequence], p_real: float, max_gap: int, seed: int = 0):
        self.syn, self.real, self.p_real, self.max_gap = synthetic, real, p_real, max_gap
        self.rng = np.random.default_rng(seed)

    def pick(self) -> Sequence:
        if self.real and (not self.syn or self.rng.random() < self.p_real):
            return self.real[self.rng.integers(len(self.real))]
        return self.syn[self.rng.integers(len(self.syn))]

    def views(self, seq: Sequence, n_novel: int = 2):
        n = len(seq)
        i = int(self.rng.integers(n))
        out = [i]
        for _ in range(n_novel):
            g = int(self.rng.integers(1, self.max_gap + 1)) * (1 if self.rng.random() < 0.5 else -1)
            out.append(int(np.clip(i + g, 0, n - 1)) if n > 1 else i)
        return out

    def clip(self, length: int):
        seq = self.pick()
        n = len(seq)
        length = min(length, n)
        s = int(self.rng.integers(0, n - length + 1))
        return seq, list(range(s, s + length))
