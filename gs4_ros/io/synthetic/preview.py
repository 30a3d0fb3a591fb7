"""Pictures of a synthetic sequence for a human to check: frames, depth, labels, plan view."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .classes import PALETTE, SCANNET20_CLASSES, colorize_labels


def depth_to_colour(depth: np.ndarray, max_depth: float = 6.0) -> np.ndarray:
    """HxW metres -> HxWx3 uint8 RGB (turbo), invalid pixels black."""
    import cv2

    d = np.clip(depth / max_depth, 0, 1)
    img = cv2.applyColorMap((d * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[:, :, ::-1].copy()
    img[depth <= 0] = 0
    return img


def plan_view(seq, path: Path):
    """Top-down picture: walls, object footprints coloured by class, the camera path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon

    info = seq.scene.info
    fig, ax = plt.subplots(figsize=(7, 7))
    poly = np.asarray(info["polygon"])
    ax.add_patch(Polygon(poly, closed=True, fill=False, lw=2.5, ec="k"))
    if info.get("partition") is not None:
        cx, cy, hx, hy = info["partition"]
        ax.add_patch(Polygon([(cx - hx, cy - hy), (cx + hx, cy - hy), (cx + hx, cy + hy), (cx - hx, cy + hy)],
                             closed=True, fc="k", ec="k"))
    seen = set()
    for o in info["objects"]:
        cx, cy, _ = o["centre"]
        hx, hy, _ = o["half"]
        c, s = np.cos(o["yaw"]), np.sin(o["yaw"])
        corners = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]]) @ np.array([[c, s], [-s, c]]) + [cx, cy]
        lab = o["label"]
        col = PALETTE[lab] / 255.0 if lab < len(PALETTE) else (0.5, 0.5, 0.5)
        name = SCANNET20_CLASSES[lab] if lab < len(SCANNET20_CLASSES) else "unlabelled"
        ax.add_patch(Polygon(corners, closed=True, fc=col, ec="k", lw=0.5, alpha=0.8,
                             label=None if name in seen else name))
        seen.add(name)
    p = seq.poses[:, :3, 3]
    ax.plot(p[:, 0], p[:, 1], "-", color="tab:red", lw=1.2, label="camera path")
    ax.plot(p[0, 0], p[0, 1], "o", color="tab:green", label="start")
    ax.plot(p[-1, 0], p[-1, 1], "x", color="k", label="end")
    step = max(1, len(p) // 25)
    f = seq.poses[::step, :3, 2]
    ax.quiver(p[::step, 0], p[::step, 1], f[:, 0], f[:, 1], angles="xy", scale=12, width=0.004, color="tab:blue")
    ax.set_aspect("equal")
    W, D, H = info["size"]
    ax.set_xlim(-0.5, W + 0.5)
    ax.set_ylim(-0.5, D + 0.5)
    ax.set_title(f"seed {info['seed']}: {info['room_type']} ({info['shape']}), "
                 f"{W:.1f} x {D:.1f} x {H:.1f} m, {len(p)} frames")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_preview(seq, out: Path, n_show: int = 6) -> dict:
    """Render n_show frames spread over the sequence; write PNGs into out. Returns timings."""
    import cv2

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    idx = np.linspace(0, len(seq) - 1, n_show).round().astype(int)
    rows, times = [], []
    for i in idx:
        t0 = time.perf_counter()
        f = seq[int(i)]
        times.append(time.perf_counter() - t0)
        rows.append((f.rgb, depth_to_colour(f.depth), colorize_labels(f.labels)))
    for k, name in enumerate(("colour", "depth", "labels")):
        tiles = [r[k] for r in rows]
        half = (len(tiles) + 1) // 2
        top = np.concatenate(tiles[:half], 1)
        bottom = np.concatenate(tiles[half:] + [np.zeros_like(tiles[0])] * (half - len(tiles[half:])), 1)
        cv2.imwrite(str(out / f"{name}.png"), np.concatenate([top, bottom], 0)[:, :, ::-1])
    plan_view(seq, out / "topdown.png")
    return {"frames": idx.tolist(), "seconds_per_frame": times}


def main(argv=None):
    import argparse

    from .sequence import SyntheticSequence

    ap = argparse.ArgumentParser(prog="python -m gs4_ros.io.synthetic",
                                 description="Generate a synthetic RGB-D sequence and write preview PNGs.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--loop", action="store_true", help="a loop that returns to its start view")
    ap.add_argument("--room", default=None, help="living, bedroom, kitchen, bathroom or office")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="/tmp/synthetic_preview")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    seq = SyntheticSequence(a.seed, a.frames, a.width, a.height, loop=a.loop, device=a.device, room_type=a.room)
    t_setup = time.perf_counter() - t0
    res = write_preview(seq, Path(a.out))
    t = res["seconds_per_frame"]
    info = seq.scene.info
    print(f"seed {a.seed}: {info['room_type']} room ({info['shape']}), {seq.scene.num_prims} primitives, "
          f"{len(info['objects'])} objects, classes: "
          + ", ".join(SCANNET20_CLASSES[c] for c in info["labels_present"] if c < len(SCANNET20_CLASSES)))
    print(f"setup (scene + path) {t_setup:.2f} s; frame {a.width}x{a.height}: first {t[0]:.3f} s, "
          f"then median {float(np.median(t[1:])) if len(t) > 1 else t[0]:.3f} s on {a.device}"
          + (f" ({seq.cpu_threads} torch thread(s))" if str(a.device) == "cpu" and seq.cpu_threads else ""))
    print(f"wrote {', '.join(sorted(p.name for p in Path(a.out).glob('*.png')))} to {a.out}")
