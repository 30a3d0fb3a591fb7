"""The Dataset interface every reader implements, plus the helpers they share.

A reader only lists its frames (timestamps, files, poses) when opened and reads image
files on access, so long sequences never sit in memory. Frame ranges and optional
resizing are handled here once, so every reader behaves the same way.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

from gs4_ros.core.frame import FrameError, Intrinsics, RGBDFrame


class DatasetError(ValueError):
    """A dataset that cannot be opened or read; the message is meant for a human."""


FrameRange = Union[None, str, slice, range, Sequence[int]]


def parse_frame_range(spec: FrameRange) -> slice:
    """'A:B' or 'A:B:S' (either end optional, Python slice semantics) -> slice.

    A bare integer 'N' means the single frame N. None or '' means every frame.
    """
    if spec is None:
        return slice(None)
    if isinstance(spec, slice):
        return spec
    if isinstance(spec, range):
        return slice(spec.start, spec.stop, spec.step)
    s = str(spec).strip()
    if s in ("", ":", "::"):
        return slice(None)
    parts = s.split(":")
    if len(parts) > 3:
        raise DatasetError(f"frame range '{spec}' has too many ':' (use A:B or A:B:S)")

    def num(p: str) -> Optional[int]:
        p = p.strip()
        if p == "":
            return None
        try:
            return int(p)
        except ValueError:
            raise DatasetError(f"frame range '{spec}': '{p}' is not an integer (use A:B or A:B:S)")

    if len(parts) == 1:
        i = num(parts[0])
        return slice(i, None if i == -1 else i + 1)
    vals = [num(p) for p in parts] + [None] * (3 - len(parts))
    if vals[2] == 0:
        raise DatasetError(f"frame range '{spec}': step must not be zero")
    return slice(*vals)


def select_frames(n: int, spec: FrameRange) -> np.ndarray:
    """Indices of the original sequence that a frame range picks, as int64."""
    if spec is not None and not isinstance(spec, (str, slice, range)):
        idx = np.asarray(list(spec), dtype=np.int64)
        bad = idx[(idx < 0) | (idx >= n)]
        if bad.size:
            raise DatasetError(f"frame indices {bad[:5].tolist()} are outside the sequence of {n} frames")
    else:
        idx = np.arange(n, dtype=np.int64)[parse_frame_range(spec)]
    if idx.size == 0:
        raise DatasetError(f"frame range '{spec}' selects no frames from a sequence of {n}")
    return idx


def resolve_size(native: Intrinsics, width: Optional[int], height: Optional[int]):
    """Output size: as given, or the other side from the native aspect ratio."""
    if width is None and height is None:
        return native.width, native.height
    if width is not None and (int(width) <= 0):
        raise DatasetError(f"width must be positive, got {width}")
    if height is not None and (int(height) <= 0):
        raise DatasetError(f"height must be positive, got {height}")
    if height is None:
        height = max(1, round(native.height * int(width) / native.width))
    if width is None:
        width = max(1, round(native.width * int(height) / native.height))
    return int(width), int(height)


class Dataset:
    """A finite RGB-D sequence with optional ground truth.

    Subclasses call `_setup(...)` from their constructor and implement `_read(k)`, which
    returns the native-resolution frame at position k of the original sequence.
    """

    name: str = "dataset"
    class_names: Optional[List[str]] = None

    def _setup(self, native: Intrinsics, stamps: np.ndarray, poses: Optional[Sequence],
               frames: FrameRange = None, width: Optional[int] = None,
               height: Optional[int] = None):
        """Apply the frame range and output size. `poses` holds 4x4 arrays or None per frame."""
        self._native = native
        self._all_stamps = np.asarray(stamps, dtype=np.float64)
        n = len(self._all_stamps)
        if n == 0:
            raise DatasetError(f"{self.name}: the sequence has no frames")
        self._all_poses = poses
        self._idx = select_frames(n, frames)
        w, h = resolve_size(native, width, height)
        self._size = (w, h)
        self.intrinsics = native if (w, h) == (native.width, native.height) else native.scaled(w, h)

    # --- subclass hook -------------------------------------------------------------
    def _read(self, k: int) -> RGBDFrame:  # pragma: no cover - interface
        raise NotImplementedError

    # --- public API ----------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._idx.size)

    def __getitem__(self, i: int) -> RGBDFrame:
        n = len(self)
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"dataset index must be an integer, got {type(i).__name__}")
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"frame {i} out of range for a dataset of {n} frames")
        frame = self._read(int(self._idx[i]))
        w, h = self._size
        if (frame.intrinsics.width, frame.intrinsics.height) != (w, h):
            frame = frame.resized(w, h)
        return frame

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    @property
    def indices(self) -> np.ndarray:
        """Positions in the original sequence of the selected frames."""
        return self._idx.copy()

    def timestamps(self) -> np.ndarray:
        return self._all_stamps[self._idx].copy()

    def gt_poses(self) -> Optional[np.ndarray]:
        """[N, 4, 4] camera-to-world; rows of frames without ground truth are NaN.

        None when no selected frame has ground truth.
        """
        if self._all_poses is None:
            return None
        sel = [self._all_poses[k] for k in self._idx]
        if all(p is None for p in sel):
            return None
        out = np.full((len(sel), 4, 4), np.nan)
        for j, p in enumerate(sel):
            if p is not None:
                out[j] = p
        return out

    def gt_pose(self, k: int) -> Optional[np.ndarray]:
        """Ground-truth pose at position k of the original sequence (a copy), or None."""
        if self._all_poses is None:
            return None
        p = self._all_poses[k]
        return None if p is None else np.array(p, dtype=np.float64)

    def __repr__(self):
        i = self.intrinsics
        return (f"<{type(self).__name__} {self.name}: {len(self)} frames, {i.width}x{i.height}, "
                f"fx={i.fx:.1f} fy={i.fy:.1f} cx={i.cx:.1f} cy={i.cy:.1f}>")


# --- file helpers shared by the readers --------------------------------------------------

def require_dir(path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(f"{what} folder '{path}' does not exist")
    if not p.is_dir():
        raise DatasetError(f"{what} path '{path}' is not a folder")
    return p


def report_missing(paths: Sequence[Path], what: str):
    """Raise one error naming the first few missing files, if any are missing."""
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        shown = ", ".join(str(m) for m in missing[:3])
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise DatasetError(f"{what}: {len(missing)} listed file(s) are missing: {shown}{more}")


def read_color(path: Path) -> np.ndarray:
    """HxWx3 uint8 RGB (cv2 reads BGR; 16-bit colour is scaled down, grey is expanded)."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        if not Path(path).is_file():
            raise DatasetError(f"colour image '{path}' is missing")
        raise DatasetError(f"colour image '{path}' cannot be read (corrupt or not an image)")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.dtype != np.uint8:
        raise DatasetError(f"colour image '{path}' has unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    raise DatasetError(f"colour image '{path}' has {img.shape[2]} channels; expected 1, 3 or 4")


def read_depth(path: Path, scale: float, invalid_values=(0,)) -> np.ndarray:
    """16-bit depth image in counts -> float32 metres with 0 marking invalid pixels."""
    import cv2

    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        if not Path(path).is_file():
            raise DatasetError(f"depth image '{path}' is missing")
        raise DatasetError(f"depth image '{path}' cannot be read (corrupt or not an image)")
    if raw.ndim != 2 or raw.dtype not in (np.uint16, np.float32):
        raise DatasetError(f"depth image '{path}' must be single-channel 16-bit, got "
                           f"{raw.dtype} with shape {raw.shape}")
    bad = np.zeros(raw.shape, dtype=bool)
    for v in invalid_values:
        bad |= raw == v
    depth = raw.astype(np.float32) / np.float32(scale)
    depth[bad | ~np.isfinite(depth)] = 0.0
    return depth


def make_frame(index: int, stamp: float, rgb: np.ndarray, depth: np.ndarray, intr: Intrinsics,
               pose, rgb_path, depth_path, labels=None, meta=None) -> RGBDFrame:
    """Build a frame, turning size mismatches into DatasetErrors that name the files."""
    if rgb.shape[:2] != depth.shape:
        raise DatasetError(f"colour '{rgb_path}' is {rgb.shape[1]}x{rgb.shape[0]} but depth "
                           f"'{depth_path}' is {depth.shape[1]}x{depth.shape[0]}; they must match")
    if depth.shape != (intr.height, intr.width):
        raise DatasetError(f"images '{rgb_path}' are {depth.shape[1]}x{depth.shape[0]} but the "
                           f"intrinsics are for {intr.width}x{intr.height}")
    try:
        return RGBDFrame(index=int(index), timestamp=float(stamp), rgb=rgb, depth=depth,
                         intrinsics=intr, gt_pose=None if pose is None else np.array(pose, dtype=np.float64),
                         labels=labels, meta=dict(meta or {}))
    except FrameError as e:  # pragma: no cover - defensive
        raise DatasetError(str(e)) from None


def image_size(path: Path):
    """(width, height) of an image file, reading it once."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        if not Path(path).is_file():
            raise DatasetError(f"image '{path}' is missing")
        raise DatasetError(f"image '{path}' cannot be read (corrupt or not an image)")
    return int(img.shape[1]), int(img.shape[0])


def parse_numbers(path: Path, what: str) -> np.ndarray:
    """All whitespace/comma separated numbers in a small text file (comments with #)."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise DatasetError(f"{what} '{path}' cannot be read: {e.strerror}") from None
    vals = []
    for ln, line in enumerate(text.splitlines(), 1):
        s = line.split("#", 1)[0].replace(",", " ").strip()
        if not s:
            continue
        try:
            vals.extend(float(v) for v in s.split())
        except ValueError:
            raise DatasetError(f"{what} '{path}' line {ln}: cannot parse numbers from '{line.strip()}'") from None
    return np.array(vals, dtype=np.float64)


def intrinsics_from_numbers(vals: np.ndarray, width: int, height: int, source) -> Intrinsics:
    """4 numbers (fx fy cx cy) or 9 (a row-major 3x3 K) -> Intrinsics."""
    if vals.size == 4:
        fx, fy, cx, cy = vals
    elif vals.size == 9:
        K = vals.reshape(3, 3)
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    else:
        raise DatasetError(f"intrinsics in '{source}' must be 4 numbers (fx fy cx cy) or a 3x3 "
                           f"matrix, found {vals.size} numbers")
    try:
        return Intrinsics(float(fx), float(fy), float(cx), float(cy), int(width), int(height))
    except FrameError as e:
        raise DatasetError(f"intrinsics in '{source}': {e}") from None


def coerce_intrinsics(value, width: int, height: int) -> Intrinsics:
    """A user-supplied intrinsics override: Intrinsics, (fx, fy, cx, cy), 3x3 K or 'fx,fy,cx,cy'."""
    if isinstance(value, Intrinsics):
        return value
    if isinstance(value, str):
        try:
            value = [float(v) for v in value.replace(",", " ").split()]
        except ValueError:
            raise DatasetError(f"intrinsics '{value}' must be numbers 'fx fy cx cy'") from None
    return intrinsics_from_numbers(np.asarray(value, dtype=np.float64).ravel(), width, height,
                                   "the intrinsics argument")


def valid_pose(T) -> Optional[np.ndarray]:
    """A finite 4x4 pose with a proper rotation, or None (datasets mark bad poses with inf/NaN).

    Rotations stored with few digits (7-Scenes) are off orthonormal by ~1e-4; they are
    projected onto the nearest rotation so SE(3) maths downstream stays exact."""
    T = np.array(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        return None
    R = T[:3, :3]
    if abs(np.linalg.det(R) - 1.0) > 1e-2:
        return None
    U, _, Vt = np.linalg.svd(R)
    T[:3, :3] = U @ Vt
    T[3] = (0.0, 0.0, 0.0, 1.0)
    return T
