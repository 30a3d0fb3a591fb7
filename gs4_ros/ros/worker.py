"""Single-slot hand-off from ROS callbacks to the one thread that does the heavy work.

Callbacks must return in microseconds and memory must not grow with the input rate, so
the hand-off holds at most one item: a new item overwrites an unprocessed one, and the
overwritten item is counted as dropped. The tracker always works on the newest frame,
which is what a live SLAM front-end wants (a queue would add latency instead).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional


def name_os_thread(name: str) -> None:
    """Give the calling thread its name at the OS level too (Linux, 15 characters).

    Python < 3.14 names threads only for itself, so `top -H`, `py-spy` or /proc show every
    thread of the node as "python"; with names the busy one is obvious. Best effort.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)     # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def _run_reporting(fn: Callable[..., Any], on_error: Optional[Callable[[BaseException], Any]], *args):
    """fn(*args); an exception goes to on_error (whose own failure is ignored), never up:
    one bad frame or output must not kill the thread a robot's SLAM runs on."""
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - reported, never fatal
        if on_error is not None:
            try:
                on_error(e)
            except Exception:
                pass


def output_due(now: float, next_time: float, rate_hz: float, frame_waiting: bool,
               max_defer_periods: float = 4.0) -> bool:
    """Is a periodic output (clouds, rendered views) due on the worker now?

    Outputs share the worker with tracking. When a frame is already waiting they are
    deferred, so a slow machine spends its time on poses rather than pictures, but never
    by more than `max_defer_periods` periods, so they still arrive under constant load.
    """
    if rate_hz <= 0 or now < next_time:
        return False
    return not frame_waiting or now >= next_time + max_defer_periods / rate_hz


class LatestSlot:
    """A one-item mailbox: put() never blocks, take() waits for an item."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item: Any = None
        self._full = False
        self.put_count = 0
        self.dropped = 0

    def put(self, item: Any) -> bool:
        """Store `item`; returns True when an unprocessed item was overwritten (a drop)."""
        with self._cond:
            dropped = self._full
            if dropped:
                self.dropped += 1
            self._item, self._full = item, True
            self.put_count += 1
            self._cond.notify()
            return dropped

    def take(self, timeout: Optional[float] = None) -> Any:
        """The item, or None after `timeout` seconds without one."""
        with self._cond:
            if not self._full:
                self._cond.wait(timeout)
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def clear(self) -> bool:
        """Discard a waiting item (not counted as a drop); True if there was one."""
        with self._cond:
            had = self._full
            self._item, self._full = None, False
            return had

    def __len__(self) -> int:
        return int(self._full)


class FrameWorker:
    """One daemon thread that runs `handler(item)` for the newest item in a LatestSlot.

    `idle()` runs whenever no item arrived within `idle_period` seconds (and after each
    item), so periodic heavy work (map clouds, rendered views) also stays off the
    callbacks. `call(fn)` runs fn on the worker between frames and returns its result
    (`post(fn)` queues it without waiting, for callers that must not block), so services
    (save, load, reset, refine) never touch the pipeline from another thread and need no
    lock around it. Exceptions from handler/idle go to `on_error` and the thread keeps going:
    one bad frame must never kill a robot's SLAM node.
    """

    def __init__(self, handler: Callable[[Any], Any], idle: Optional[Callable[[], Any]] = None,
                 on_error: Optional[Callable[[BaseException], Any]] = None,
                 idle_period: float = 0.05, name: str = "gs4_worker"):
        self.slot = LatestSlot()
        self.handler = handler
        self.idle = idle
        self.on_error = on_error
        self.idle_period = idle_period
        self.processed = 0
        self.busy = False
        self.last_duration = 0.0
        self._commands: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def dropped(self) -> int:
        return self.slot.dropped

    @property
    def submitted(self) -> int:
        return self.slot.put_count

    def start(self) -> "FrameWorker":
        self._thread.start()
        return self

    def submit(self, item: Any) -> bool:
        """Hand over an item; True if it replaced one the worker had not started (dropped)."""
        return self.slot.put(item)

    def call(self, fn: Callable[[], Any], timeout: Optional[float] = None) -> Any:
        """Run fn() on the worker thread and return its result (or raise its exception).

        Raises TimeoutError if the worker did not finish it within `timeout` seconds.
        Called from the worker thread itself, it runs fn directly.
        """
        if threading.current_thread() is self._thread or not self._thread.is_alive():
            return fn()
        done, box = self.post(fn)
        if not done.wait(timeout):
            raise TimeoutError(f"worker did not run the request within {timeout} s")
        return self.outcome(box)

    def post(self, fn: Callable[[], Any], notify: Optional[Callable[[], Any]] = None):
        """Queue fn() for the worker without waiting: returns (done, box); done is set once
        it ran and `outcome(box)` gives its result. notify() is called after that, on the
        worker thread, so an event loop can wake (rclpy: a guard condition's trigger).
        With the worker stopped, fn runs here and now."""
        done = threading.Event()
        box: dict = {}
        item = (fn, done, box, notify)
        if threading.current_thread() is self._thread or not self._thread.is_alive():
            self._run_one(*item)
            return done, box
        with self.slot._cond:
            self._commands.append(item)
            self.slot._cond.notify_all()
        return done, box

    @staticmethod
    def outcome(box: dict) -> Any:
        """What a posted fn returned, or its exception raised again."""
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def _run_one(self, fn, done, box, notify):
        try:
            box["result"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the caller
            box["error"] = e
        done.set()
        if notify is not None:
            self._call(notify)

    def _run_commands(self):
        with self.slot._cond:
            cmds, self._commands = self._commands, []
        for item in cmds:
            self._run_one(*item)

    def stop(self, timeout: float = 5.0):
        self._stop.set()
        with self.slot._cond:
            self.slot._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _call(self, fn, *args):
        _run_reporting(fn, self.on_error, *args)

    def _run(self):
        name_os_thread(self._thread.name)
        while not self._stop.is_set():
            with self.slot._cond:
                if not self._commands and not self.slot._full:
                    self.slot._cond.wait(self.idle_period)
            if self._stop.is_set():
                break
            self._run_commands()
            item = self.slot.take(0)
            if item is not None:
                self.busy = True
                t0 = time.perf_counter()
                self._call(self.handler, item)
                self.last_duration = time.perf_counter() - t0
                self.processed += 1
                self.busy = False
            if self.idle is not None:
                self._call(self.idle)
        self._run_commands()  # release callers waiting on a stopped worker


class OutputThread:
    """Publishes heavy outputs (clouds, path, rendered images) off the tracking thread.

    Building and serialising a large PointCloud2 or Path takes milliseconds of CPU, which
    would delay the next frame if done by the worker. Jobs are keyed by output: a new job
    replaces a pending one with the same key (only the newest map matters), so at most one
    job per output waits and memory stays bounded.
    """

    def __init__(self, on_error: Optional[Callable[[BaseException], Any]] = None,
                 name: str = "gs4_outputs"):
        self._cond = threading.Condition()
        self._jobs: dict = {}
        self._stop = False
        self.on_error = on_error
        self.replaced = 0
        self.done = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "OutputThread":
        self._thread.start()
        return self

    def submit(self, key: str, fn: Callable[[], Any]) -> bool:
        """Queue fn under key; True if it replaced a job of that key not yet started."""
        with self._cond:
            replaced = key in self._jobs
            if replaced:
                self.replaced += 1
            self._jobs.pop(key, None)
            self._jobs[key] = fn                 # re-insert: oldest-first order across keys
            self._cond.notify()
            return replaced

    def pending(self) -> int:
        with self._cond:
            return len(self._jobs)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued job has run (for shutdown and tests)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._cond:
                if not self._jobs and not getattr(self, "_running", False):
                    return True
            time.sleep(0.005)
        return False

    def stop(self, timeout: float = 5.0):
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self):
        name_os_thread(self._thread.name)
        while True:
            with self._cond:
                while not self._jobs and not self._stop:
                    self._cond.wait()
                if self._stop and not self._jobs:
                    return
                key = next(iter(self._jobs))
                fn = self._jobs.pop(key)
                self._running = True
            try:
                _run_reporting(fn, self.on_error)
            finally:
                with self._cond:
                    self._running = False
                self.done += 1
