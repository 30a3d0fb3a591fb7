"""`gs4 train ensemble`: one weights file whose semantic head is the mean log-probability
of several heads trained on the same frozen backbone.

Semantic-only chunks leave every weight outside the semantic head bit-identical, so two
chunks from the same weights are two heads on one backbone pass. On unseen rooms they
err on different objects: chunk 12's head and chunk 13's (trained from it on other
rooms) score token mIoU 49.2% and 48.6% on rooms 900-919 and 51.1% together
(benchmarks/semantic_tokens.py), where averaging their weights did not help
(docs/results.md, twenty-first session). The file
keeps the first input whole and adds the others' semantic parts as
GaussianPredictor.sem_members; the Gaussians it predicts are the first input's.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import List

import torch

from ..core.nets.weights import FORMAT

log = logging.getLogger(__name__)

_SEMANTIC_PREFIXES = ("sem_head.", "sem_context.", "sem_geometry.", "sem_attention.")


def _is_semantic(key: str) -> bool:
    return key.startswith(_SEMANTIC_PREFIXES)


def _load(path: Path) -> dict:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path} is not a gs4 networks file (format {FORMAT})")
    if blob["predictor_arch"].get("sem_members"):
        raise ValueError(f"{path} is an ensemble already: pass the files it was made from")
    return blob


def _summary(path: Path) -> dict:
    js = path.with_suffix(".json")
    if not js.is_file():
        raise FileNotFoundError(f"{path}: no training summary at {js} (written by gs4 train fit)")
    return json.loads(js.read_text())


def build_ensemble(paths: List[str], out: str, command: str = "") -> dict:
    """Write `out` (+ .json, MODEL_CARD.md beside it) from the weights files `paths`;
    returns the summary written. Every file must hold the same networks outside the
    semantic head (bit for bit), the same class list and the same semantic branches."""
    from .card import write_card

    if len(paths) < 2:
        raise ValueError("an ensemble needs two weights files or more")
    files = [Path(p) for p in paths]
    blobs = [_load(p) for p in files]
    first = blobs[0]
    for p, b in zip(files[1:], blobs[1:]):
        if b["predictor_arch"] != first["predictor_arch"] or b["class_names"] != first["class_names"]:
            raise ValueError(f"{p}: architecture or classes differ from {files[0]}'s")
        shared = [k for k in first["predictor"] if not _is_semantic(k)]
        moved = [k for k in shared if not torch.equal(first["predictor"][k], b["predictor"][k])]
        moved += [k for k in first["refiner"] if not torch.equal(first["refiner"][k], b["refiner"][k])]
        if moved:
            raise ValueError(f"{p}: {len(moved)} tensors outside the semantic head differ from {files[0]}'s "
                             f"(e.g. {moved[0]}): the heads must share one backbone (semantic-only chunks)")
    pred = dict(first["predictor"])
    for i, b in enumerate(blobs[1:]):
        pred.update({f"sem_members.{i}.{k}": v for k, v in b["predictor"].items() if _is_semantic(k)})
    arch = dict(first["predictor_arch"], sem_members=len(blobs) - 1)
    # The history: the longest of the members' (semantic-only chunks from one start share
    # every chunk before their own), plus what this command did.
    sums = [_summary(p) for p in files]
    summary = dict(max(sums, key=lambda s: len(s["chunks"])))
    summary["ensemble"] = {"command": command, "members": [
        {"file": str(p), "chunks": len(s["chunks"]), "last_chunk_command": s["chunks"][-1].get("command", "")}
        for p, s in zip(files, sums)]}
    blob = dict(first, predictor=pred, predictor_arch=arch, meta={"summary": json.dumps(summary)})
    out_p = Path(out)
    out_p.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_p.with_suffix(out_p.suffix + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(out_p)
    out_p.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    write_card(out_p.parent / "MODEL_CARD.md", summary, weights_path=out_p)
    log.info("wrote %s: %d semantic heads on one backbone", out_p, len(blobs))
    return summary
