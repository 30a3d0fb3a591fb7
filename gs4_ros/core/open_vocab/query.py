"""Text queries against the map: score the bank once, look the score up per Gaussian."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from .bank import VocabBank
from .colours import name_colour
from .encoders import TextEmbedding
from .instances import Instance, split_instances


@dataclass
class QueryResult:
    query: TextEmbedding
    entry_scores: np.ndarray        # [E] relevance of each bank entry
    scores: torch.Tensor            # [N] relevance of each Gaussian (0 without a bank id)
    threshold: float
    # Objects already split, per (voxel, min_count): a colour query splits them to filter
    # by colour, and its caller asks for the same objects again.
    _objects: Dict[Tuple[float, int], List[Instance]] = field(default_factory=dict, repr=False)

    @property
    def mask(self) -> torch.Tensor:
        return self.scores >= self.threshold

    @property
    def count(self) -> int:
        return int(self.mask.sum())

    def instances(self, gmap, voxel: float = 0.1, min_count: int = 10) -> List[Instance]:
        """The matches as separate objects (instances.py), largest first, each with the
        name of its colour (colours.py). They describe the map as it was queried."""
        key = (float(voxel), int(min_count))
        if key in self._objects:
            return list(self._objects[key])
        rows = torch.nonzero(self.mask).reshape(-1)
        objs = split_instances(gmap.means[rows].double().cpu().numpy(), self.scores[rows].float().cpu().numpy(),
                               rows.cpu().numpy(), voxel, min_count)
        if objs:
            colors = gmap.colors.float().cpu().numpy()
            for o in objs:
                o.colour = name_colour(colors[o.rows])
        self._objects[key] = objs
        return list(objs)

    def summary(self) -> str:
        extra = f"; ignored: {', '.join(self.query.ignored)}" if self.query.ignored else ""
        hit = int((self.entry_scores >= self.threshold).sum())
        col = f" of the colour {self.query.colour}" if getattr(self.query, "colour", None) else ""
        return (f"{self.query.text!r} -> {self.query.meaning}: {self.count} of {len(self.scores)} Gaussians{col}, "
                f"{hit} of {len(self.entry_scores)} bank entries at relevance >= {self.threshold:g}{extra}")


def query_map(gmap, bank: Optional[VocabBank], encoder, text: str,
              threshold: Optional[float] = None, voxel: float = 0.1, min_count: int = 10) -> QueryResult:
    """Relevance of every Gaussian to `text` (raises encoders.UnknownQuery for text the
    encoder cannot read). A colour in the text ("red chair") keeps the relevance of the
    objects of that colour only (objects: `voxel`, `min_count`, as QueryResult.instances)."""
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
    res = QueryResult(q, entry, scores, thr)
    colour = getattr(q, "colour", None)
    if colour is not None:
        keep = torch.zeros_like(scores, dtype=torch.bool)
        mine = [o for o in res.instances(gmap, voxel, min_count) if o.colour == colour]
        for o in mine:
            keep[torch.as_tensor(o.rows, device=keep.device)] = True
        res.scores = torch.where(keep, scores, torch.zeros_like(scores))
        # Objects are separate components of the matches, so dropping the other colours'
        # leaves these unchanged: no second split (unless a threshold <= 0 still matches
        # the dropped rows).
        res._objects = {(float(voxel), int(min_count)): mine} if thr > 0 else {}
    return res
