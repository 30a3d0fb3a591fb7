#!/usr/bin/env python3
"""Compare weights files (or settings) from `gs4 train eval --json` files on the rooms all
of them hold: per variant, the mean of per-room map mIoU, the pooled mIoU (each class
over all its pixels), pixel accuracy, held-out PSNR, held-out depth L1 and Gaussians, then
each file against the first room by room (mean difference, its standard error, rooms
better / worse). Depth L1 is there because a fresh run of the recipe matched the shipped
file's mIoU and PSNR here while its rendered depth was 0.37 cm worse in every one of 60
rooms, which a table without it did not show (docs/results.md, fortieth session).

Why: the card's three rooms hold 4-8 classes each, so one room's mIoU moves by tens of
points with one misread class (room 902 between heads: 40 to 62%); twenty rooms and the
pooled figure say more, and the paired differences say whether a gap is larger than the
rooms' spread. Rows without labels (7-Scenes) count for PSNR only.

    gs4 train eval --device cpu --seeds 900-919 --frames 40 --variants +pruning --weights A --json a.json
    python benchmarks/eval_compare.py shipped=a.json recipe=b.json
    python benchmarks/eval_compare.py shipped=a1.json,a2.json recipe=b1.json,b2.json   # two room sets
    python benchmarks/eval_compare.py shipped=a.json.gz recipe=b.json    # a gzipped record
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gs4_ros.eval.image_metrics import classes_lowest_first, pooled_miou  # noqa: E402


def _read(path: str) -> str:
    """A gzipped file (.gz) too: a record kept in the repository is a tenth of the size."""
    if not path.endswith(".gz"):
        return Path(path).read_text()
    with gzip.open(path, "rt") as f:
        return f.read()


def load(spec: str):
    name, _, path = spec.partition("=")
    if not path:
        raise SystemExit(f"expected NAME=FILE.json, got {spec!r}")
    rows = [r for f in path.split(",") for r in json.loads(_read(f))
            if not str(r.get("source", "")).endswith(" seeds)")]       # not the mean rows
    return name, rows


def _finite(x) -> bool:
    """A room without a held-out depth figure (missing, or NaN where no held-out pixel had
    depth) is left out of the depth columns rather than turning their mean into NaN."""
    return x is not None and bool(np.isfinite(x))


def by_room(rows, variant):
    return {r["source"]: r for r in rows if r.get("variant") == variant}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help="NAME=FILE.json[,FILE.json...] (gs4 train eval --json; several runs' rooms "
                    "together), the first is the reference")
    args = ap.parse_args(argv)
    files = [load(s) for s in args.files]
    variants = list(dict.fromkeys(r["variant"] for _, rows in files for r in rows))
    print("| variant | file | rooms | mIoU % (mean of rooms) | mIoU % (pooled) | pixel acc % | ho PSNR dB "
          "| ho depth L1 cm | #G | vs first: mIoU points (± s.e.), better / worse | vs first: ho PSNR dB "
          "| vs first: ho depth L1 cm (± s.e.), lower / higher |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    lowest = []     # each file's weakest pooled classes, printed under the table
    for v in variants:
        # Only the rooms every file has, so each row is over the same rooms.
        rooms = [by_room(rows, v) for _, rows in files]
        common = set.intersection(*(set(r) for r in rooms))
        ref = rooms[0]
        for i, (name, _) in enumerate(files):
            mine = {k: r for k, r in rooms[i].items() if k in common}
            if not mine:
                continue
            ms = list(mine.values())
            pooled = pooled_miou(ms)
            miou = [r["miou"] for r in ms if "miou" in r]
            mm = f"{100 * np.mean(miou):.1f}" if miou else "-"
            pm, pa = ("-", "-") if pooled is None else (f"{100 * pooled['miou']:.1f}",
                                                         f"{100 * pooled['pixel_accuracy']:.1f}")
            l1 = [r["heldout_depth_l1_cm"] for r in ms if _finite(r.get("heldout_depth_l1_cm"))]
            line = (f"| {v} | {name} | {len(ms)} | {mm} | {pm} | {pa} | "
                    f"{np.nanmean([r['heldout_psnr'] for r in ms]):.2f} | "
                    f"{f'{np.nanmean(l1):.2f}' if l1 else '-'} | {np.mean([r['num_gaussians'] for r in ms]):.0f} |")
            if pooled is not None:
                worst = classes_lowest_first(pooled)[:6]
                lowest.append(f"{v}, {name}: lowest pooled IoU % " + ", ".join(f"{n} {100 * x:.0f}" for n, x in worst))
            both = sorted(mine)      # the common rooms, which the reference holds too
            if i > 0 and both:
                d = np.array([100 * (mine[k]["miou"] - ref[k]["miou"]) for k in both
                              if "miou" in mine[k] and "miou" in ref[k]])
                dp = np.array([mine[k]["heldout_psnr"] - ref[k]["heldout_psnr"] for k in both])
                se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
                dl = np.array([mine[k]["heldout_depth_l1_cm"] - ref[k]["heldout_depth_l1_cm"] for k in both
                               if _finite(mine[k].get("heldout_depth_l1_cm"))
                               and _finite(ref[k].get("heldout_depth_l1_cm"))])
                sel = dl.std(ddof=1) / np.sqrt(len(dl)) if len(dl) > 1 else float("nan")
                line += (f" {d.mean():+.1f} (± {se:.1f}) over {len(d)}, {int((d > 0.05).sum())} / "
                         f"{int((d < -0.05).sum())} |" if len(d) else " - |") + f" {dp.mean():+.2f} |"
                line += (f" {dl.mean():+.2f} (± {sel:.2f}), {int((dl < -0.005).sum())} / {int((dl > 0.005).sum())} |"
                         if len(dl) else " - |")
            else:
                line += " - | - | - |"
            print(line)
    if lowest:
        print("\n".join(lowest))


if __name__ == "__main__":
    main()
