"""Text queries against the map: score the bank once, look the score up per Gaussian."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch

from .bank import VocabBank
from .encoders import TextEmbedding
from .instances import Instance, split_instances


@dataclass
class QueryResult:
    query: TextEmbedding
    entry_scores: np.ndarray        # [E] relevance of each bank entry
    scores: torch.Tensor            # [N] relevance of each Gaussian (0 without a bank id)
    threshold: float

    @property
    def mask(self) -> torch.Tensor:
        return self.scores >= self.threshold

    @property
    def count(self) -> int:
        return int(self.mask.sum())

    def instances(self, gmap, voxel: float = 0.1, min_count: int = 10) -> List[Instance]:
        """The matches as separate objects (instances.py), largest first."""
        rows = torch.nonzero(self.mask).reshape(-1)
        return split_instances(gmap.means[rows].double().cpu().numpy(), self.scores[rows].float().cpu().numpy(),
                               rows.cpu().numpy(), voxel, min_count)

    def summary(self) -> str:
        extra = f"; ignored: {', '.join(self.query.ignored)}" if self.query.ignored else ""
        hit = int((self.entry_scores >= self.threshold).sum())
        return (f"{self.query.text!r} -> {self.query.meaning}: {self.count} of {len(self.scores)} Gaussians, "
                f"{hit} of {len(self.entry_scores)} bank entries at relevance >= {self.threshold:g}{extra}")


def query_map(gmap, bank: Optional[VocabBank], encoder, text: str,
              threshold: Optional[float] = None) -> QueryResult:
    """Relevance of every Gaussian to `text` (raises encoders.UnknownQuery for text the
    encoder cannot read)."""
    q = encoder.encode_text(text)
    thr = float(encoder.threshold if threshold is None else threshold)
    if bank is None or len(bank) == 0:
        entry = np.zeros(0, np.float32)
    else:
        entry = np.asarray(encoder.score(q, bank.emb), np.float32).reshape(len(bank))
    ids = gmap.bank_id.long()
    table = torch.as_tensor(np.concatenate([entry, [0.0]]).astype(np.float32), device=ids.device)
    # id -1 (never seen by a keyframe with semantics), or an id past a bank that was not
    # saved with the map, reads the 0 at the end.
    scores = table[torch.where((ids >= 0) & (ids < len(entry)), ids, len(entry))]
    return QueryResult(q, entry, scores, thr)
