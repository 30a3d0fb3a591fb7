"""The map's semantic memory bank: one embedding per entry, one integer id per Gaussian.

As in SegSplat, a Gaussian does not carry its own open-vocabulary embedding (hundreds of
floats each for a vision-language encoder); it carries the id of a bank entry, and a
query scores the bank once. In SLAM the bank grows online: a keyframe region whose
embedding is close enough (cosine) to an entry joins it as a running mean, anything else
opens a new entry. Ids are positions in the bank and never change or get reused, so ids
already written into the map (and into saved PLY files) stay valid as the bank grows.
"""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np

log = logging.getLogger(__name__)


class VocabBank:
    def __init__(self, dim: int, merge_threshold: float = 0.9, max_entries: int = 4096,
                 max_count: float = 1000.0):
        if dim <= 0:
            raise ValueError(f"a vocabulary bank needs a positive embedding size, got {dim}")
        self.dim = int(dim)
        self.merge_threshold = float(merge_threshold)
        self.max_entries = int(max_entries)
        # A running mean's weight stops growing here, so an entry can still follow a scene
        # that changes rather than freezing after its first thousand regions.
        self.max_count = float(max_count)
        self.emb = np.zeros((0, self.dim), np.float32)
        self.count = np.zeros(0, np.float32)
        self.encoder = ""          # the encoder that made the embeddings (saved with the map)
        self._warned_full = False

    def __len__(self) -> int:
        return int(self.emb.shape[0])

    def _unit(self, x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)

    def add(self, embs: np.ndarray, weights: Optional[np.ndarray] = None) -> np.ndarray:
        """Merge each row of `embs` [R, D] into its nearest entry or open a new one; returns
        the ids [R]. Rows near an existing entry merge in one batch (a keyframe brings a
        couple of hundred regions when the semantic head's classes are noisy); the rest go
        in order, so similar new regions of one keyframe share the entry the first opens.
        `weights` (default 1) are how much each row counts in the running mean."""
        embs = np.asarray(embs, np.float32).reshape(-1, self.dim)
        if not np.isfinite(embs).all():
            raise ValueError("vocabulary bank: embeddings must be finite")
        w = np.ones(len(embs), np.float32) if weights is None else np.asarray(weights, np.float32).reshape(-1)
        if len(w) != len(embs) or not (w > 0).all():
            raise ValueError(f"vocabulary bank: {len(w)} weights for {len(embs)} embeddings; weights must be > 0")
        ids = np.full(len(embs), -1, np.int64)
        if len(self) and len(embs):
            sims = self._unit(embs) @ self._unit(self.emb).T           # [R, E]
            best = sims.argmax(1)
            near = sims[np.arange(len(embs)), best] >= self.merge_threshold
            ids[near] = best[near]
            self._merge(ids[near], embs[near], w[near])
        for r in np.flatnonzero(ids < 0):
            e, wr = embs[r], w[r]
            best, sim = -1, -np.inf
            if len(self):
                sims = self._unit(self.emb) @ self._unit(e)
                best = int(np.argmax(sims))
                sim = float(sims[best])
            full = len(self) >= self.max_entries
            if best >= 0 and (sim >= self.merge_threshold or full):
                if full and sim < self.merge_threshold and not self._warned_full:
                    log.warning("vocabulary bank full (%d entries): new regions join their nearest "
                                "entry (raise open_vocab.max_entries)", self.max_entries)
                    self._warned_full = True
                self._merge(np.array([best]), e[None], np.array([wr]))
                ids[r] = best
            else:
                self.emb = np.concatenate([self.emb, e[None]], 0)
                self.count = np.concatenate([self.count, [wr]]).astype(np.float32)
                ids[r] = len(self) - 1
        return ids

    def _merge(self, ids: np.ndarray, embs: np.ndarray, w: np.ndarray):
        """Count-weighted running means of the entries `ids` with `embs` (ids may repeat)."""
        if not len(ids):
            return
        uid, inv = np.unique(ids, return_inverse=True)
        tot = np.zeros((len(uid), self.dim), np.float64)
        wsum = np.zeros(len(uid), np.float64)
        np.add.at(tot, inv, embs.astype(np.float64) * w[:, None])
        np.add.at(wsum, inv, w)
        c = self.count[uid].astype(np.float64)
        self.emb[uid] = ((c[:, None] * self.emb[uid] + tot) / (c + wsum)[:, None]).astype(np.float32)
        self.count[uid] = np.minimum(c + wsum, self.max_count)

    def copy(self) -> "VocabBank":
        b = VocabBank(self.dim, self.merge_threshold, self.max_entries, self.max_count)
        b.emb, b.count, b.encoder = self.emb.copy(), self.count.copy(), self.encoder
        return b

    @classmethod
    def from_arrays(cls, emb: np.ndarray, count: np.ndarray, **kw) -> "VocabBank":
        emb = np.asarray(emb, np.float32)
        if emb.ndim != 2 or len(count) != len(emb):
            raise ValueError(f"vocabulary bank arrays disagree: emb {emb.shape}, count {np.shape(count)}")
        b = cls(emb.shape[1], **kw)
        b.emb, b.count = emb.copy(), np.asarray(count, np.float32).copy()
        return b
