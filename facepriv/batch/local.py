"""The local engine: worker processes on this machine, supervised by the job's parent.

Each worker is a spawned process (TensorFlow is not safe across fork) that builds the
pipeline once and then processes the files the parent sends over its own pipe, one at a
time (the next one is sent ahead, so a worker never waits between files). The parent waits on
the pipes and on the processes themselves, so a worker that dies (killed, out of
memory, a crash in native code) is noticed at once: a new worker takes its place, and its
file is tried again first (``engine.max_retries`` times, then failed). A worker that sends
nothing for ``stall_seconds`` while it has a file (it reports every FRAMES_REPORT_SECONDS
while its pipeline ticks) is hung: it is killed, and its file is handled the same way.
Workers ignore Ctrl-C; the parent stops them, letting the ones in the middle of a file
discard what they had written.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from facepriv.batch.engines import Report
from facepriv.batch.worker import (
    FileResult,
    FileTask,
    FileWorker,
    JobSpec,
    build_error,
    setup_worker_logging,
)
from facepriv.errors import FaceprivError

logger = logging.getLogger("facepriv.batch")

FRAMES_REPORT_SECONDS = 0.5  # how often a worker reports frames in the middle of a file
STOP_SECONDS = 20.0  # how long a stopping worker may take to discard its file before it is killed
MAX_FAILED_STARTS = 3  # workers dying in a row before they ever took a file: the job stops
QUEUED_PER_WORKER = 2  # files sent ahead, so a worker never waits for the parent between files


def death_reason(exitcode: int | None) -> str:
    """'killed by SIGKILL' or 'exit code 3', for a process's exit code."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def stall_reason(seconds: float | None) -> str:
    """Why a worker that showed no progress was killed, for its file's manifest line."""
    return f"killed after {seconds:g} s without progress; engine.stall_seconds sets the limit"


# --------------------------------------------------------------------------- in the worker


def _worker_main(conn: Connection, spec: JobSpec) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    setup_worker_logging(spec.log_level)
    worker: FileWorker | None = None
    stop = threading.Event()

    def on_stop(signum: int, frame: Any) -> None:
        stop.set()  # files still queued for this worker stay unprocessed
        if worker is not None and worker.interruptible:
            raise KeyboardInterrupt  # the file's pipeline discards its unfinished output

    signal.signal(signal.SIGTERM, on_stop)
    try:
        worker = FileWorker(spec)
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which stops the job
        conn.send(("fatal", build_error(err)))
        return
    try:
        conn.send(("ready", None))
        while not stop.is_set():
            task = conn.recv()
            if task is None:
                break
            reporter = _Reporter(conn)
            conn.send(("done", worker.process(task, reporter.frames, reporter.tick)))
    except (EOFError, OSError):
        pass  # the parent has gone
    finally:
        worker.close()


class _Reporter:
    """Tells the parent, at most every FRAMES_REPORT_SECONDS, how many frames are out, or
    only that the pipeline still ticks (frames held by a node, a first pass over a file)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._last = time.monotonic()
        self._frames = 0

    def frames(self, frames: int) -> None:
        self._frames = frames
        self.tick()

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._last >= FRAMES_REPORT_SECONDS:
            self._last = now
            self._conn.send(("frames", self._frames))


# --------------------------------------------------------------------------- in the parent


@dataclass(eq=False)
class _Worker:
    process: Any
    conn: Connection
    tasks: deque[FileTask] = field(default_factory=deque)  # sent to it, in order; the first is in progress
    ready: bool = False
    frames: int = 0  # frames of the current task reported so far
    heard: float = field(default_factory=time.monotonic)  # when it last showed progress
    stalled: bool = False  # killed by the parent for showing none


class LocalEngine:
    """The ``local`` engine: ``engine.workers`` processes on this machine (one per core by default)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self._workers = settings["workers"]
        self._stall_seconds = settings["stall_seconds"]

    def describe(self) -> str:
        """How many local workers."""
        return f"{self._workers} local worker(s)"

    def run(self, spec: JobSpec, tasks: list[FileTask], progress: Report) -> None:
        """Process ``tasks`` on a pool of worker processes."""
        LocalPool(spec, self._workers, progress, self._stall_seconds).run(tasks)


class LocalPool:
    """``size`` worker processes, each processing one file at a time; one that dies is replaced."""

    def __init__(self, spec: JobSpec, size: int, report: Report, stall_seconds: float | None = None) -> None:
        self._spec = spec
        self._size = size
        self._report = report
        self._stall_seconds = stall_seconds
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._failed_starts = 0

    def run(self, tasks: list[FileTask]) -> None:
        """Process every task; on any exception (Ctrl-C included) stop the workers first."""
        pending = deque(tasks)
        try:
            for _ in range(min(self._size, len(pending))):
                self._start()
            while pending or any(worker.tasks for worker in self._workers):
                self._step(pending)
        except BaseException:
            with sigint_ignored():  # a second Ctrl-C must not leave workers behind
                self._stop()
            raise
        self._stop()

    def _start(self) -> None:
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main, args=(child_end, self._spec), name="facepriv-worker", daemon=True
        )
        with sigint_ignored():  # inherited: Ctrl-C in the terminal reaches the parent only
            process.start()
        child_end.close()
        self._workers.append(_Worker(process, parent_end))

    def _step(self, pending: deque[FileTask]) -> None:
        handles: dict[Any, _Worker] = {}
        for worker in self._workers:
            handles[worker.conn] = handles[worker.process.sentinel] = worker
        woken = {handles[handle] for handle in wait(list(handles), timeout=self._stall_timeout())}
        self._stop_stalled()
        for worker in woken:
            alive = worker.process.is_alive()  # before reading: a dead worker's last words are all in
            self._receive(worker, pending)
            if not alive:
                self._bury(worker, pending)

    def _stall_timeout(self) -> float | None:
        """Seconds until the first busy worker would count as stalled (None: no limit)."""
        busy = [worker.heard for worker in self._workers if worker.tasks and not worker.stalled]
        if self._stall_seconds is None or not busy:
            return None
        return max(0.0, min(busy) + self._stall_seconds - time.monotonic())

    def _stop_stalled(self) -> None:
        """Kill the workers that showed no progress for stall_seconds; _bury fails their file."""
        if self._stall_seconds is None:
            return
        now = time.monotonic()
        for worker in self._workers:
            if worker.tasks and not worker.stalled and now - worker.heard >= self._stall_seconds:
                logger.error("'%s' showed no progress for %g s: stopping its worker",
                             worker.tasks[0].path, self._stall_seconds)
                worker.stalled = True
                worker.process.kill()

    def _assign(self, worker: _Worker, pending: deque[FileTask]) -> None:
        if not worker.tasks:
            worker.heard = time.monotonic()  # an idle worker starts on this file now
        while pending and len(worker.tasks) < QUEUED_PER_WORKER:
            task = pending.popleft()
            self._report(FileResult(task, "started"))  # on disk before a worker can write
            try:
                worker.conn.send(task)
            except OSError:  # it died just now: its sentinel says so on the next step
                pending.appendleft(task)
                return
            worker.tasks.append(task)

    def _receive(self, worker: _Worker, pending: deque[FileTask]) -> None:
        """Handle what ``worker`` sent; one that is free gets the next file before results are recorded."""
        while True:
            try:
                if not worker.conn.poll():
                    return
                kind, value = worker.conn.recv()
            except (EOFError, OSError):
                return  # it died in the middle of a message; the caller handles its exit
            worker.heard = time.monotonic()
            if kind == "ready":
                worker.ready, self._failed_starts = True, 0
                self._assign(worker, pending)
            elif kind == "frames":
                self._report(value - worker.frames)
                worker.frames = value
            elif kind == "done":
                if value.frames:
                    self._report(value.frames - worker.frames)
                worker.tasks.popleft()
                worker.frames = 0
                self._assign(worker, pending)
                self._report(value)
            elif kind == "fatal":
                raise value

    def _bury(self, worker: _Worker, pending: deque[FileTask]) -> None:
        worker.process.join()
        worker.conn.close()
        self._workers.remove(worker)
        reason = death_reason(worker.process.exitcode)
        if worker.stalled:
            reason = stall_reason(self._stall_seconds)
        if worker.tasks:
            task = worker.tasks.popleft()
            pending.extendleft(reversed(worker.tasks))  # sent ahead, never started
            logger.error("a worker process died (%s) while processing '%s'", reason, task.path)
            again = self._report.lost(task, f"the worker process died ({reason}) while processing it")
            if again is not None:
                pending.appendleft(again)
        elif not worker.ready:
            self._failed_starts += 1
            if self._failed_starts >= MAX_FAILED_STARTS:
                raise FaceprivError(
                    f"worker processes die while loading the pipeline ({reason}): "
                    "run without --workers to see why"
                )
        if pending:
            self._start()

    def _stop(self) -> None:
        """Ask every worker to stop; one in the middle of a file discards its output first."""
        for worker in self._workers:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
            if worker.tasks:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signal.SIGTERM)
            elif not worker.ready:
                worker.process.kill()  # still loading models, holds no file
        deadline = time.monotonic() + STOP_SECONDS
        while self._workers and time.monotonic() < deadline:
            for worker in list(self._workers):
                alive = worker.process.is_alive()
                with contextlib.suppress(FaceprivError):
                    self._receive(worker, deque())  # files finished (or interrupted) meanwhile
                if not alive:
                    worker.process.join()
                    worker.conn.close()
                    self._workers.remove(worker)
            handles = [w.conn for w in self._workers] + [w.process.sentinel for w in self._workers]
            if handles:
                wait(handles, timeout=max(0.0, deadline - time.monotonic()))
        for worker in self._workers:
            logger.warning("worker %d did not stop in %.0f s: killed", worker.process.pid, STOP_SECONDS)
            worker.process.kill()
            worker.process.join()
            worker.conn.close()
        self._workers.clear()


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """Ctrl-C ignored while starting workers (they inherit it) and while stopping them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
