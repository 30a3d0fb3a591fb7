"""Seed lists as the command lines write them: "900,901,902" or "900-907" or a mix.

Evaluations are asked for over more held-out rooms than three (one room's mIoU swings
with its room type, and a room the network path loses shows only in some), so a range
should be as easy to write as a list."""
from __future__ import annotations

from typing import List


def seed_list(text: str) -> List[int]:
    """'900-903,910' -> [900, 901, 902, 903, 910], in the order written; ValueError on
    anything else (a reversed range included)."""
    out: List[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        a, sep, b = part.partition("-")
        if not sep:
            out.append(int(part))
            continue
        lo, hi = int(a), int(b)
        if hi < lo:
            raise ValueError(f"seed range {part!r} runs backwards")
        out.extend(range(lo, hi + 1))
    return out
