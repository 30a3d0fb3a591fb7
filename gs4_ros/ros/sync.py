"""Approximate-time synchronisation of 2 or 3 image streams (colour, depth, labels).

Same contract as `message_filters.ApproximateTimeSynchronizer` (one bounded queue per
input, a set is emitted when one message per input lies within `slop` seconds of each
other, matched messages are consumed), so the node behaves the same whether or not
message_filters is installed. Two differences that matter for a live SLAM front-end:
when several sets are possible the newest is taken and everything older is discarded
(stale frames are useless to a tracker), and a `SyncMonitor` reports the measured stamp
skew when inputs keep arriving but nothing pairs, because "no output" with no reason is
the most common RGB-D integration bug (unsynchronised driver clocks, slop in ms vs s).
"""
from __future__ import annotations

import collections
import itertools
import threading
from typing import Any, Callable, List, Optional, Sequence

NS = 1_000_000_000


class SyncMonitor:
    """Counts arrivals since the last matched set and measures how close the inputs get.

    `check()` returns, once `patience` arrivals have gone by without a match, the smallest
    spread (seconds) of any set that could be formed from the recent stamps of each input,
    i.e. the best pairing the synchroniser could have made: compare it with the slop. It
    then starts counting again, so a caller warns at most once per `patience` arrivals.
    """

    def __init__(self, n_inputs: int, patience: int = 30, history: int = 10):
        self.n = n_inputs
        self.patience = max(1, int(patience))
        self.recent = [collections.deque(maxlen=max(1, history)) for _ in range(n_inputs)]
        self.since_match = 0
        self.unmatched_total = 0

    def note_input(self, i: int, stamp_ns: int):
        self.recent[i].append(stamp_ns)
        self.since_match += 1

    def note_match(self):
        self.since_match = 0

    def skew(self) -> Optional[float]:
        """Smallest spread of a set from the recent stamps (s), None until all inputs seen."""
        if any(not r for r in self.recent):
            return None
        best = min(max(c) - min(c) for c in itertools.product(*self.recent))
        return best / NS

    def check(self) -> Optional[float]:
        if self.since_match < self.patience:
            return None
        sk = self.skew()
        if sk is None:
            return None
        self.since_match = 0
        self.unmatched_total += 1
        return sk


class ApproxTimeSync:
    """Built-in approximate (or exact, slop=0) time synchroniser.

    add(i, stamp_ns, msg) is called by the i-th input; `callback(*msgs)` receives one
    message per input in input order. Queues hold at most `queue_size` messages each, so
    memory is bounded whatever the input rate; messages evicted unmatched are counted in
    `evicted`. `on_no_match(skew_s)` is called with the measured skew when inputs keep
    arriving without a match (see SyncMonitor).
    """

    def __init__(self, n_inputs: int, queue_size: int, slop: float,
                 callback: Callable[..., Any],
                 on_no_match: Optional[Callable[[float], Any]] = None,
                 patience: Optional[int] = None):
        if n_inputs < 2:
            raise ValueError("synchronising needs at least two inputs")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if slop < 0:
            raise ValueError(f"slop must be >= 0 seconds, got {slop}")
        self.n = n_inputs
        self.queue_size = int(queue_size)
        self.slop_ns = int(round(slop * NS))
        self.callback = callback
        self.on_no_match = on_no_match
        self.queues: List[dict] = [dict() for _ in range(n_inputs)]
        self.monitor = SyncMonitor(n_inputs, patience or 3 * self.queue_size, self.queue_size)
        self.matched = 0
        self.evicted = 0
        self._lock = threading.Lock()

    def add(self, i: int, stamp_ns: int, msg: Any):
        out = None
        skew = None
        with self._lock:
            q = self.queues[i]
            if stamp_ns in q:  # duplicate stamp on one input: keep the newest message
                self.evicted += 1
            q[stamp_ns] = msg
            while len(q) > self.queue_size:
                del q[min(q)]
                self.evicted += 1
            self.monitor.note_input(i, stamp_ns)
            out = self._match(i, stamp_ns)
            if out is None:
                skew = self.monitor.check()
        # Callbacks run outside the lock so they may call back into add() safely.
        if out is not None:
            self.callback(*out)
        elif skew is not None and self.on_no_match is not None:
            self.on_no_match(skew)

    def _match(self, i: int, stamp_ns: int):
        """The newest full set containing the message just added to input i, if any."""
        cands: List[Sequence[int]] = []
        for j, q in enumerate(self.queues):
            if j == i:
                cands.append([stamp_ns])
                continue
            near = sorted((s for s in q if abs(s - stamp_ns) <= self.slop_ns),
                          key=lambda s: abs(s - stamp_ns))
            if not near:
                return None
            cands.append(near)
        best = None
        for combo in itertools.product(*cands):
            spread = max(combo) - min(combo)
            if spread <= self.slop_ns and (best is None or spread < best[0]):
                best = (spread, combo)
                if spread == 0:
                    break
        if best is None:
            return None
        combo = best[1]
        msgs = tuple(self.queues[j].pop(s) for j, s in enumerate(combo))
        # Everything older than the emitted set can only produce stale frames: drop it.
        for j, q in enumerate(self.queues):
            for s in [s for s in q if s < combo[j]]:
                del q[s]
                self.evicted += 1
        self.matched += 1
        self.monitor.note_match()
        return msgs

    def clear(self):
        with self._lock:
            for q in self.queues:
                q.clear()
            self.monitor = SyncMonitor(self.n, self.monitor.patience, self.queue_size)

    def queued(self) -> int:
        with self._lock:
            return sum(len(q) for q in self.queues)
