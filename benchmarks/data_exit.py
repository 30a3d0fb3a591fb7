#!/usr/bin/env python3
"""How long a training process takes to exit after its synthetic-data phase ends at a
deadline with rooms still rendering: the phase itself, then the whole process (start-up
and interpreter exit included), in a child process so the exit is measured too.

A chunk on the H200 once wrote its weights and then did not exit before its call's time
limit; rooms left to the worker pool at the deadline are one way to keep a process from
exiting. The test (test_train.py) checks that the workers are stopped; this prints what
that costs or saves in seconds.

    python benchmarks/data_exit.py [--workers 2 --seeds 300 --width 320 --height 240]
    python benchmarks/data_exit.py --root OLD_CHECKOUT      # the same with older code
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import sys, time, torch
sys.path.insert(0, {root!r})
from gs4_ros.train.data import synthetic_sequences

def main():
    t = time.time()
    s = synthetic_sequences(list(range(1000, 1000 + {seeds})), 4, 5, {w}, {h}, torch.device("cpu"),
                            deadline=time.time() + {deadline}, min_sequences=1, workers={workers}, fill_holes=True)
    print(len(s), round(time.time() - t, 1), flush=True)

if __name__ == "__main__":
    main()
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=300, help="rooms asked for (far more than the deadline allows)")
    ap.add_argument("--deadline", type=float, default=5.0, help="seconds of data phase")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--root", default=str(ROOT), help="the gs4_ros checkout to measure (e.g. an older one, as a peer)")
    args = ap.parse_args(argv)
    code = CHILD.format(root=args.root, seeds=args.seeds, w=args.width, h=args.height,
                        deadline=args.deadline, workers=args.workers)
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    total = time.time() - t0
    rooms, phase = int(out[0]), float(out[1])
    print(f"code: {args.root}")
    print(f"data phase: {rooms} rooms at {args.width}x{args.height} (hole fill on) by {args.workers} workers, "
          f"deadline {args.deadline:.0f} s")
    print(f"  phase returned after {phase:.1f} s; process exited after {total:.1f} s "
          f"({total - phase:.1f} s of start-up and exit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
