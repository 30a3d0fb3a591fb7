"""Encoders turn keyframe regions and query text into the bank's embeddings.

The bank needs two things of an encoder: an embedding per region of a keyframe, and one
per query, comparable by cosine (for merging regions) and by the encoder's own `score`
(for relevance). The built-in ClassSpaceEncoder works with what the pipeline already has
offline: a region's embedding is its mean class distribution (semantic head or label
images, fused over views), a query's the set of classes its words name (lexicon.py),
and relevance compares the probability a region puts on those classes with that of its
likeliest other class (see score). Its vocabulary is
therefore the lexicon's, not open. A vision-language encoder (a CLIP-like model loaded
from a local path) plugs in through `open_vocab.encoder: "package.module:factory"`: the
factory gets the class names and returns an object with the same four members.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .colours import colour_word
from .lexicon import BUILTIN, STOP_WORDS


class UnknownQuery(ValueError):
    """The encoder cannot turn this text into an embedding (no word it knows)."""


@dataclass
class TextEmbedding:
    text: str
    embedding: np.ndarray                          # [D]
    meaning: str                                   # what the encoder understood, for people
    ignored: List[str] = field(default_factory=list)   # words it did not use
    colour: Optional[str] = None                       # "red chair": only red objects match


@dataclass
class Regions:
    """One keyframe's regions on its stride-block grid."""

    grid: np.ndarray            # [hb, wb] int, region index per block, -1 for none
    stride: int
    class_probs: np.ndarray     # [R, K] mean class distribution of each region's Gaussians
    weight: np.ndarray          # [R] Gaussians in each region


class ClassSpaceEncoder:
    """Embeddings are distributions over the configured classes (see the module doc)."""

    name = "classes"

    def __init__(self, class_names: Sequence[str], lexicon: Optional[str] = None):
        self.class_names = [str(c) for c in class_names]
        if not self.class_names:
            raise ValueError("the class-space encoder needs at least one class")
        self.dim = len(self.class_names)
        # A region matches when the classes asked for outweigh every other class (score).
        self.threshold = 0.5
        self.phrases = self._phrases(lexicon)

    def _phrases(self, lexicon: Optional[str]) -> Dict[str, List[int]]:
        index = {c: i for i, c in enumerate(self.class_names)}
        table: Dict[str, List[str]] = dict(BUILTIN)
        if lexicon:
            import yaml

            path = Path(lexicon).expanduser()
            try:
                extra = yaml.safe_load(path.read_text()) or {}
            except (OSError, yaml.YAMLError) as e:
                raise ValueError(f"open_vocab.lexicon: cannot read {path}: {e}") from e
            if not isinstance(extra, dict):
                raise ValueError(f"open_vocab.lexicon: {path} must map phrases to lists of class names")
            for k, v in extra.items():
                v = [v] if isinstance(v, str) else list(v or [])
                bad = [c for c in v if c not in index]
                if bad:
                    raise ValueError(f"open_vocab.lexicon: {path}: '{k}' names unknown classes {bad}")
                table[str(k)] = v
        out: Dict[str, List[int]] = {}
        for phrase, classes in table.items():
            ids = [index[c] for c in classes if c in index]
            if ids:
                out[_norm(phrase)] = ids
        for c, i in index.items():
            out[_norm(c)] = [i]
        return out

    # -- regions -----------------------------------------------------------------------
    def encode_regions(self, rgb, regions: Regions) -> np.ndarray:
        p = np.asarray(regions.class_probs, np.float32)
        return p / np.maximum(p.sum(-1, keepdims=True), 1e-12)

    # -- text --------------------------------------------------------------------------
    def encode_text(self, text: str) -> TextEmbedding:
        words = _norm(text).split()
        found: List[int] = []
        used: List[str] = []
        ignored: List[str] = []
        colour: Optional[str] = None
        i = 0
        longest = max(len(p.split()) for p in self.phrases)
        while i < len(words):
            for n in range(min(longest, len(words) - i), 0, -1):
                ids = self._lookup(" ".join(words[i:i + n]))
                if ids is not None:
                    found += ids
                    used.append(" ".join(words[i:i + n]))
                    i += n
                    break
            else:
                c = colour_word(words[i])
                if c is not None and colour is None:
                    colour = c
                elif words[i] not in STOP_WORDS:
                    ignored.append(words[i])
                i += 1
        if not found and colour is not None:
            raise UnknownQuery(f"{text!r} names a colour ({colour}) but no thing: say what, e.g. '{colour} chair'")
        if not found:
            raise UnknownQuery(
                f"no word of {text!r} names a class the class-space encoder knows "
                f"(classes: {', '.join(self.class_names)}; synonyms in gs4_ros/core/open_vocab/lexicon.py, "
                "more through open_vocab.lexicon, or a vision-language encoder through open_vocab.encoder)")
        e = np.zeros(self.dim, np.float32)
        e[sorted(set(found))] = 1.0
        meaning = " + ".join(self.class_names[k] for k in sorted(set(found)))
        if colour is not None:
            meaning = f"{colour} objects of {meaning}"
        return TextEmbedding(text, e, f"{meaning} (from: {', '.join(used)})", ignored, colour)

    def _lookup(self, phrase: str) -> Optional[List[int]]:
        if phrase in self.phrases:
            return self.phrases[phrase]
        for suffix in ("es", "s"):                 # plurals: "chairs", "couches"
            if phrase.endswith(suffix) and phrase[:-len(suffix)] in self.phrases:
                return self.phrases[phrase[:-len(suffix)]]
        return None

    def score(self, query: TextEmbedding, bank_emb: np.ndarray) -> np.ndarray:
        """Relevance of each bank entry: its probability on the classes asked for against
        that of the likeliest class not asked for, m / (m + best other), so 0.5 is where
        the query wins, as argmax decides a label. (The plain mass m missed the semantic
        head's soft regions: a sofa region at 0.4 sofa, and no class higher, is a sofa;
        synthetic rooms 901 / 902 lost 2.5 / 2.6 points of query mIoU to argmax with it.)"""
        p = np.asarray(bank_emb, np.float32)
        p = p / np.maximum(p.sum(-1, keepdims=True), 1e-12)
        asked = query.embedding > 0
        m = p[:, asked].sum(-1)
        other = p[:, ~asked].max(-1) if (~asked).any() else np.zeros(len(p), np.float32)
        return m / np.maximum(m + other, 1e-12)


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", str(text).lower()).split())


def load_encoder(spec: str, class_names: Sequence[str], lexicon: str = ""):
    """`classes` (built-in) or `package.module:factory` (factory(class_names) -> encoder)."""
    spec = (spec or "classes").strip()
    if spec == ClassSpaceEncoder.name:
        return ClassSpaceEncoder(class_names, lexicon or None)
    mod, sep, attr = spec.partition(":")
    if not sep or not mod or not attr:
        raise ValueError(f"open_vocab.encoder must be 'classes' or 'package.module:factory', got {spec!r}")
    try:
        factory = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"open_vocab.encoder {spec!r} cannot be loaded: {e}") from e
    enc = factory(class_names=list(class_names))
    missing = [m for m in ("dim", "threshold", "encode_regions", "encode_text", "score") if not hasattr(enc, m)]
    if missing:
        raise ValueError(f"open_vocab.encoder {spec!r} returned an object without {missing}")
    if not getattr(enc, "name", None):
        enc.name = spec
    return enc
