"""The single-slot hand-off between ROS callbacks and the worker thread.

Synchronisation is by events, never by sleeping, so the tests do not depend on speed.
"""
import threading

import pytest

from gs4_ros.ros.worker import FrameWorker, LatestSlot, output_due


def test_slot_keeps_only_the_newest_and_counts_drops():
    s = LatestSlot()
    assert s.take(0) is None
    assert s.put(1) is False
    assert s.put(2) is True
    assert s.put(3) is True
    assert len(s) == 1 and s.dropped == 2 and s.put_count == 3
    assert s.take(0) == 3
    assert s.take(0) is None and len(s) == 0
    s.put(4)
    assert s.clear() is True and s.take(0) is None and s.dropped == 2


def test_worker_drops_while_busy_and_never_queues():
    started, release = threading.Event(), threading.Event()
    seen = []
    done = threading.Event()

    def handler(item):
        seen.append(item)
        if item == 0:
            started.set()
            release.wait(30)
        if item == 99:
            done.set()

    w = FrameWorker(handler).start()
    try:
        w.submit(0)
        assert started.wait(30)
        for k in range(1, 100):           # the worker is busy with item 0 all along
            w.submit(k)
            assert len(w.slot) == 1       # never more than one waiting
        assert w.dropped == 98            # 1..98 overwritten, 99 waits
        release.set()
        assert done.wait(30)
        assert seen == [0, 99]
        assert w.processed == 2 and w.submitted == 100
    finally:
        w.stop()
    assert not w.is_alive()


def test_handler_errors_do_not_stop_the_worker():
    errors = []
    ok = threading.Event()

    def handler(item):
        if item == "bad":
            raise RuntimeError("broken frame")
        ok.set()

    w = FrameWorker(handler, on_error=errors.append).start()
    try:
        w.call(lambda: w.submit("bad"))   # submitted from the worker: processed next
        w.submit("good")
        assert ok.wait(30)
        assert w.is_alive()
        assert [str(e) for e in errors] == ["broken frame"]
    finally:
        w.stop()


def test_call_runs_on_the_worker_thread_and_returns_or_raises():
    w = FrameWorker(lambda item: None, name="gs4_worker_test").start()
    try:
        assert w.call(lambda: threading.current_thread().name, timeout=30) == "gs4_worker_test"
        with pytest.raises(ValueError, match="nope"):
            w.call(lambda: (_ for _ in ()).throw(ValueError("nope")), timeout=30)
    finally:
        w.stop()


def test_post_returns_at_once_and_notifies_after_running():
    """post() is call() without the wait (for the node's coroutine services): fn runs on
    the worker, done is set, then notify runs there too; outcome re-raises an error."""
    release = threading.Event()
    w = FrameWorker(lambda item: None, name="gs4_worker_test").start()
    seen = []
    try:
        w.post(lambda: release.wait(30))                 # holds the worker
        done, box = w.post(lambda: threading.current_thread().name,
                           notify=lambda: seen.append((threading.current_thread().name, done.is_set())))
        assert not done.wait(0.2) and seen == []
        release.set()
        assert done.wait(30)
        assert FrameWorker.outcome(box) == "gs4_worker_test"
        assert w.call(lambda: list(seen), timeout=30) == [("gs4_worker_test", True)]
        done, box = w.post(lambda: (_ for _ in ()).throw(ValueError("nope")))
        assert done.wait(30)
        with pytest.raises(ValueError, match="nope"):
            FrameWorker.outcome(box)
    finally:
        release.set()
        w.stop()
    # A stopped worker runs it in the caller's thread.
    done, box = w.post(lambda: 7)
    assert done.is_set() and FrameWorker.outcome(box) == 7


def test_call_waits_for_the_current_frame():
    """A service request never runs concurrently with a frame (no shared pipeline)."""
    in_frame, release = threading.Event(), threading.Event()
    log = []

    def handler(item):
        log.append("frame start")
        in_frame.set()
        release.wait(30)
        log.append("frame end")

    w = FrameWorker(handler).start()
    try:
        w.submit(1)
        assert in_frame.wait(30)
        t = threading.Thread(target=lambda: w.call(lambda: log.append("service"), timeout=30))
        t.start()
        release.set()
        t.join(30)
        assert log == ["frame start", "frame end", "service"]
    finally:
        w.stop()


def test_idle_runs_without_frames():
    ticks = threading.Event()
    w = FrameWorker(lambda i: None, idle=ticks.set, idle_period=0.01).start()
    try:
        assert ticks.wait(30)
    finally:
        w.stop()


def test_output_thread_keeps_only_the_newest_job_per_output():
    from gs4_ros.ros.worker import OutputThread

    gate, started = threading.Event(), threading.Event()
    ran = []

    def blocker():
        started.set()
        gate.wait(30)
        ran.append("blocker")

    out = OutputThread().start()
    try:
        out.submit("render", blocker)
        assert started.wait(30)
        for k in range(50):               # a slow subscriber side: clouds pile up
            out.submit("clouds", lambda k=k: ran.append(f"cloud{k}"))
        out.submit("path", lambda: ran.append("path"))
        assert out.pending() == 2 and out.replaced == 49
        gate.set()
        assert out.flush(30)
        assert ran == ["blocker", "cloud49", "path"]
    finally:
        out.stop()


def test_output_thread_survives_errors():
    from gs4_ros.ros.worker import OutputThread

    errors = []
    out = OutputThread(on_error=errors.append).start()
    try:
        out.submit("a", lambda: 1 / 0)
        done = threading.Event()
        out.submit("b", done.set)
        assert done.wait(30) and len(errors) == 1
    finally:
        out.stop()


def test_periodic_outputs_yield_to_a_waiting_frame_but_are_never_starved():
    # Not yet due, or switched off.
    assert not output_due(now=9.9, next_time=10.0, rate_hz=1.0, frame_waiting=False)
    assert not output_due(now=50.0, next_time=10.0, rate_hz=0.0, frame_waiting=False)
    # Due and the worker is free: publish.
    assert output_due(now=10.0, next_time=10.0, rate_hz=1.0, frame_waiting=False)
    # Due but a frame waits: tracking first ...
    assert not output_due(now=12.0, next_time=10.0, rate_hz=1.0, frame_waiting=True)
    # ... until it is overdue by max_defer_periods periods (4 s at 1 Hz, 8 s at 0.5 Hz).
    assert output_due(now=14.0, next_time=10.0, rate_hz=1.0, frame_waiting=True)
    assert not output_due(now=17.0, next_time=10.0, rate_hz=0.5, frame_waiting=True)
    assert output_due(now=18.0, next_time=10.0, rate_hz=0.5, frame_waiting=True)
