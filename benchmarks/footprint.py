#!/usr/bin/env python3
"""Print the size of the Gaussians each networks file predicts on the same frames: the
largest and smallest axis and the opacity, per file.

Why: two runs of the training recipe rendered the same colour but depth 0.3 cm apart, and
the difference was in how wide their predicted Gaussians are, which no training loss
reports (forty-first session, docs/results.md). This is the check that shows it.

    python benchmarks/footprint.py --seeds 900,903,905,907 A.pt B.pt ...
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gs4_ros.core.config import MappingConfig  # noqa: E402
from gs4_ros.core.nets import load_networks  # noqa: E402
from gs4_ros.io.synthetic.seeds import seed_list  # noqa: E402
from gs4_ros.train.data import synthetic_sequences  # noqa: E402


def footprint(path, seqs, every: int = 2) -> dict:
    pred, _, _ = load_networks(path)
    big, small, opa = [], [], []
    with torch.no_grad():
        for s in seqs:
            for i in range(0, len(s), every):
                t = pred(s.rgb[i].float() / 255, s.depth[i], s.K, MappingConfig())
                ls = t.log_scales[0][t.valid[0]]
                big.append(ls.max(-1).values.exp())
                small.append(ls.min(-1).values.exp())
                opa.append(torch.sigmoid(t.opacity_logits[0][t.valid[0]]))
    big, small, opa = torch.cat(big), torch.cat(small), torch.cat(opa)
    return {"tokens": big.numel(), "big_mean": big.mean().item(), "big_median": big.median().item(),
            "small_mean": small.mean().item(), "opacity_mean": opa.mean().item()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", nargs="+")
    ap.add_argument("--seeds", default="900,903,905,907")
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    a = ap.parse_args(argv)
    seqs = synthetic_sequences(seed_list(a.seeds), a.frames, 5, a.width, a.height, "cpu", workers=0,
                               fill_holes=True, targets=False)
    print(f"rooms {a.seeds}, {a.frames} frames each (every 2nd predicted), {a.width}x{a.height}, CPU")
    print("| file | tokens | largest axis mm (mean / median) | smallest axis mm (mean) | opacity (mean) |")
    print("|---|---|---|---|---|")
    for w in a.weights:
        f = footprint(w, seqs)
        print(f"| {w} | {f['tokens']} | {1e3 * f['big_mean']:.2f} / {1e3 * f['big_median']:.2f} | "
              f"{1e3 * f['small_mean']:.3f} | {f['opacity_mean']:.4f} |")


if __name__ == "__main__":
    main()
