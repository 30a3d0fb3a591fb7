"""The built-in approximate-time synchroniser (used when message_filters is missing)."""
import pytest

from gs4_ros.ros.sync import ApproxTimeSync, SyncMonitor

MS = 1_000_000


def collect(n=2, queue=10, slop=0.02, **kw):
    out = []
    s = ApproxTimeSync(n, queue, slop, lambda *m: out.append(m), **kw)
    return s, out


def test_pairs_within_slop_in_any_arrival_order():
    s, out = collect()
    s.add(0, 1000 * MS, "c0")
    assert out == []
    s.add(1, 1015 * MS, "d0")          # 15 ms apart, slop 20 ms
    assert out == [("c0", "d0")]
    s.add(1, 1048 * MS, "d1")          # depth first this time
    s.add(0, 1033 * MS, "c1")
    assert out[-1] == ("c1", "d1")
    assert s.matched == 2 and s.queued() == 0


def test_beyond_slop_never_pairs():
    s, out = collect(slop=0.02)
    for k in range(5):
        s.add(0, (1000 + 100 * k) * MS, f"c{k}")
        s.add(1, (1000 + 100 * k + 21) * MS, f"d{k}")   # 21 ms > slop
    assert out == []


def test_picks_closest_and_drops_older_messages():
    s, out = collect(slop=0.02)
    for k, t in enumerate((1000, 1010, 1020)):
        s.add(0, t * MS, f"c{t}")
    s.add(1, 1019 * MS, "d")
    assert out == [("c1020", "d")]     # closest in time
    assert s.queued() == 0             # older colour frames are stale: discarded
    assert s.evicted == 2


def test_queue_is_bounded():
    s, out = collect(queue=4)
    for k in range(100):
        s.add(0, k * 100 * MS, k)      # depth never arrives
    assert len(s.queues[0]) == 4
    assert s.evicted == 96
    assert sorted(s.queues[0].values()) == [96, 97, 98, 99]   # newest kept


def test_exact_mode():
    s, out = collect(slop=0.0)
    s.add(0, 1000 * MS, "c")
    s.add(1, 1000 * MS + 1, "d-off-by-1ns")
    assert out == []
    s.add(1, 1000 * MS, "d")
    assert out == [("c", "d")]


def test_three_inputs_need_all():
    s, out = collect(n=3)
    s.add(0, 1000 * MS, "c")
    s.add(1, 1005 * MS, "d")
    assert out == []
    s.add(2, 1030 * MS, "l-late")      # 30 ms from colour: outside slop
    assert out == []
    s.add(2, 1010 * MS, "l")
    assert out == [("c", "d", "l")]


def test_set_spread_is_checked_not_just_pairwise_to_the_newcomer():
    # colour at 0, depth at +19 ms, labels arrive at -19 ms: each within 20 ms of colour
    # but depth and labels are 38 ms apart, so no set.
    s, out = collect(n=3)
    s.add(0, 1000 * MS, "c")
    s.add(1, 1019 * MS, "d")
    s.add(2, 981 * MS, "l")
    assert out == []


def test_warns_with_measured_skew_when_nothing_pairs():
    skews = []
    s, out = collect(queue=5, slop=0.005, on_no_match=skews.append)
    for k in range(40):
        t = 1000 * MS + k * 40 * MS
        s.add(0, t, "c")
        s.add(1, t + 130 * MS, "d")    # depth stamped 130 ms late (driver clock offset)
    assert out == []
    assert skews, "no warning although 80 messages never paired"
    # The closest colour/depth stamps are 130 - 3 * 40 = 10 ms apart: that is reported.
    assert all(x == pytest.approx(0.010) for x in skews)
    # The warning repeats at most once per `patience` arrivals, not on every message.
    assert len(skews) <= 80 // s.monitor.patience


def test_no_warning_while_pairing():
    skews = []
    s, out = collect(queue=5, on_no_match=skews.append)
    for k in range(100):
        s.add(0, k * 33 * MS, "c")
        s.add(1, k * 33 * MS + 2 * MS, "d")
    assert len(out) == 100 and skews == []


def test_callback_may_reenter():
    s = None
    seen = []

    def cb(c, d):
        seen.append((c, d))
        if len(seen) == 1:
            s.add(0, 5000 * MS, "c2")   # must not deadlock
    s = ApproxTimeSync(2, 10, 0.02, cb)
    s.add(0, 1000 * MS, "c1")
    s.add(1, 1000 * MS, "d1")
    s.add(1, 5000 * MS, "d2")
    assert seen == [("c1", "d1"), ("c2", "d2")]


def test_monitor_skew_definition():
    m = SyncMonitor(3, patience=2)
    assert m.skew() is None
    m.note_input(0, 100)
    m.note_input(1, 400)
    assert m.check() is None            # input 2 never seen
    m.note_input(2, 250)
    assert m.check() == pytest.approx(300e-9)
    m.note_input(1, 120)                # a closer depth stamp: best set is now 100..250
    m.note_input(0, 1000)
    assert m.check() == pytest.approx(150e-9)


def test_bad_arguments():
    with pytest.raises(ValueError):
        ApproxTimeSync(1, 10, 0.02, print)
    with pytest.raises(ValueError):
        ApproxTimeSync(2, 0, 0.02, print)
    with pytest.raises(ValueError):
        ApproxTimeSync(2, 10, -1, print)
