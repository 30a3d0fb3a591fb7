#!/usr/bin/env python3
"""A diagnostic networks file: one file's predictor with another file's refinement side
(the refiner and the predictor's feat_head, the latent features the refiner reads, which
the recipe's refiner stage trains with it). Not for shipping: shipped weights come from
the training script alone.

Why: when two runs of the recipe differ in a figure (the fresh file's rendered depth 0.37
cm worse than the shipped file's in every held-out room), putting one run's refinement
side on the other's predictor says which stage carries the difference.

    python benchmarks/refiner_swap.py --predictor FRESH.pt --refiner SHIPPED.pt --out /tmp/hyb/gs4_nets.pt
    gs4 train eval --device cpu --seeds 900-904 --frames 40 --variants +pruning --weights /tmp/hyb/gs4_nets.pt
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gs4_ros.core.nets.weights import load_blob, load_networks, save_atomically  # noqa: E402

REFINER_SIDE = ("feat_head.",)      # predictor parameters the refiner stage trains


def swap(predictor_file: str, refiner_file: str, out: str) -> int:
    """Write the mixed file; returns how many predictor tensors came from refiner_file."""
    try:
        a, b = load_blob(predictor_file), load_blob(refiner_file)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    if a["predictor_arch"] != b["predictor_arch"] or a["refiner_arch"] != b["refiner_arch"]:
        raise SystemExit("the two files' architectures differ: their parts do not fit together")
    pred = dict(a["predictor"])
    moved = [k for k in pred if k.startswith(REFINER_SIDE)]
    for k in moved:
        pred[k] = b["predictor"][k]
    meta = {"summary": json.dumps({"diagnostic": "refiner_swap", "predictor_from": str(predictor_file),
                                   "refiner_from": str(refiner_file)})}
    save_atomically({**a, "predictor": pred, "refiner": b["refiner"], "meta": meta}, out)
    load_networks(out)          # the mixed file loads like any other
    return len(moved)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--predictor", required=True, help="networks file whose predictor is kept")
    ap.add_argument("--refiner", required=True, help="networks file whose refiner and feat_head are taken")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    n = swap(args.predictor, args.refiner, args.out)
    print(f"wrote {args.out}: predictor of {args.predictor} ({n} feat_head tensors and the refiner from {args.refiner})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
