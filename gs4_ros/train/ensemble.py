"""`gs4 train ensemble`: one weights file whose semantic head is the mean log-probability
of several heads trained on the same frozen backbone.

Semantic-only chunks leave every weight outside the semantic head bit-identical, so two
chunks from the same weights are two heads on one backbone pass. On unseen rooms they
err on different objects: chunk 12's head and chunk 13's (trained from it on other
rooms) score token mIoU 49.2% and 48.6% on rooms 900-919 and 51.1% together
(benchmarks/semantic_tokens.py), where averaging their weights did not help
(docs/results.md, twenty-first session). The file
keeps the first input whole and adds the others' semantic parts as
GaussianPredictor.sem_members; the Gaussians it predicts are the first input's. An input
that is an ensemble already gives all its heads, so a head trained later can join a
shipped file whose members' own files are gone.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import List

import torch

from ..core.nets import GaussianPredictor, load_networks, save_networks
from ..core.nets.predictor import SEMANTIC_PARTS

log = logging.getLogger(__name__)


def _is_semantic(key: str) -> bool:
    return key.split(".", 1)[0] in SEMANTIC_PARTS + ("sem_members",)


def _heads(pred: GaussianPredictor) -> List[dict]:
    """The semantic parts of every head pred holds (its own, then its members'), each
    keyed as the predictor's own parts are."""
    own = {k: v for k, v in pred.state_dict().items() if k.split(".", 1)[0] in SEMANTIC_PARTS}
    return [own] + [m.state_dict() for m in (pred.sem_members or [])]


def _summary(path: Path) -> dict:
    js = path.with_suffix(".json")
    if not js.is_file():
        raise FileNotFoundError(f"{path}: no training summary at {js} (written by gs4 train fit)")
    return json.loads(js.read_text())


def build_ensemble(paths: List[str], out: str, command: str = "") -> dict:
    """Write `out` (+ .json, MODEL_CARD.md beside it) from the weights files `paths`;
    returns the summary written. Every file must hold the same networks outside the
    semantic head (bit for bit), the same class list and the same semantic branches; the
    heads of an input that is an ensemble all join."""
    from .card import write_card

    if len(paths) < 2:
        raise ValueError("an ensemble needs two weights files or more")
    files = [Path(p) for p in paths]
    nets = [load_networks(p) for p in files]
    (first, first_ref, info), others = nets[0], nets[1:]

    def arch(pred):   # how many heads an input holds may differ
        return dict(pred.arch(), sem_members=None)

    sd, ref_sd = first.state_dict(), first_ref.state_dict()
    for p, (pred, ref, inf) in zip(files[1:], others):
        if arch(pred) != arch(first) or inf["class_names"] != info["class_names"]:
            raise ValueError(f"{p}: architecture or classes differ from {files[0]}'s")
        b_sd, b_ref = pred.state_dict(), ref.state_dict()
        moved = [k for k in sd if not _is_semantic(k) and not torch.equal(sd[k], b_sd[k])]
        moved += [k for k in ref_sd if not torch.equal(ref_sd[k], b_ref[k])]
        if moved:
            raise ValueError(f"{p}: {len(moved)} tensors outside the semantic head differ from {files[0]}'s "
                             f"(e.g. {moved[0]}): the heads must share one backbone (semantic-only chunks)")
    heads = [h for pred, _, _ in nets for h in _heads(pred)]
    ens = GaussianPredictor(**dict(first.arch(), sem_members=len(heads) - 1))
    body = {k: v for k, v in sd.items() if not _is_semantic(k)}
    ens.load_state_dict(dict(body, **heads[0], **{f"sem_members.{i}.{k}": v for i, h in enumerate(heads[1:])
                                                   for k, v in h.items()}))
    # The history: the longest of the members' (semantic-only chunks from one start share
    # every chunk before their own), plus what this command did.
    sums = [_summary(p) for p in files]
    summary = dict(max(sums, key=lambda s: len(s["chunks"])))
    summary["ensemble"] = {"command": command, "heads": len(heads), "members": [
        dict({"file": str(p), "chunks": len(s["chunks"]), "last_chunk_command": s["chunks"][-1].get("command", "")},
             **({"ensemble": s["ensemble"]} if s.get("ensemble") else {}))
        for p, s in zip(files, sums)]}
    out_p = Path(out)
    save_networks(out_p, ens, first_ref, info["class_names"], meta={"summary": json.dumps(summary)})
    out_p.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    write_card(out_p.parent / "MODEL_CARD.md", summary, weights_path=out_p)
    log.info("wrote %s: %d semantic heads on one backbone", out_p, len(heads))
    return summary
