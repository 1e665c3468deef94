"""The Ray engine: the job's workers as Ray actors, on this machine or a whole cluster.

Each actor (one CPU) builds the pipeline once and is sent one file at a time, as the
local engine's processes are. An actor that dies (killed, out of memory, its node lost) is
replaced, wherever Ray finds a CPU (a surviving node, or one that joins later), and its
file is tried again first, as in the local engine. Actors run two threads, so that while
one processes a file the parent can ask the other how long ago the pipeline last ticked:
an actor hung for ``stall_seconds`` is killed and its file handled the same way. When no
actor is up and the cluster has no CPU left for one, the job waits ``stall_seconds`` for a
node to join, then stops with one line. Ray is an optional extra
(``pip install 'facepriv[ray]'``) imported only here.
On a cluster every node must see the inputs and output_dir under the same paths
(shared storage) and have facepriv installed.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from typing import Any

from facepriv.batch.engines import Report
from facepriv.batch.local import MAX_FAILED_STARTS, STOP_SECONDS, sigint_ignored, stall_reason
from facepriv.batch.worker import (
    FileResult,
    FileTask,
    FileWorker,
    JobSpec,
    build_error,
    setup_worker_logging,
)
from facepriv.errors import ConfigError, FaceprivError

logger = logging.getLogger("facepriv.batch")

CAPACITY_WAIT_SECONDS = 600.0  # how long a job without a CPU left waits for a node when stall_seconds is null


def import_ray() -> Any:
    """Ray, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--engine ray needs Ray, which is not installed: pip install 'facepriv[ray]'"
        ) from None
    return ray


class _FileActor:
    """A FileWorker inside a Ray actor.

    A pipeline that cannot be built is kept as the answer to ``ready`` rather than raised,
    so the parent can stop the job with that message instead of replacing actors forever.
    """

    def __init__(self, spec: JobSpec) -> None:
        setup_worker_logging(spec.log_level)
        self._worker: FileWorker | None = None
        self._error: FaceprivError | None = None
        self._ticked = time.monotonic()
        try:
            self._worker = FileWorker(spec)
        except Exception as err:  # noqa: BLE001 - reported to the parent through ready()
            self._error = build_error(err)

    def ready(self) -> FaceprivError | None:
        return self._error

    def process(self, task: FileTask) -> FileResult:
        assert self._worker is not None, "process() called on an actor that is not ready"
        self._tick()
        return self._worker.process(task, on_tick=self._tick)

    def _tick(self) -> None:
        self._ticked = time.monotonic()

    def idle_seconds(self) -> float:
        """Seconds since the file's pipeline last ticked (answered from the actor's other thread)."""
        return time.monotonic() - self._ticked


class RayEngine:
    """The ``ray`` engine: ``engine.workers`` actors (default: one per CPU of the cluster)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        import_ray()  # a missing extra is reported before anything else
        self._settings = settings

    def describe(self) -> str:
        """Which Ray."""
        return f"Ray ({self._settings['address'] or 'this machine'})"

    def run(self, spec: JobSpec, tasks: list[FileTask], progress: Report) -> None:
        """Process ``tasks`` on Ray actors."""
        settings = self._settings
        run_ray(spec, tasks, settings["workers"], settings["address"], progress, settings["stall_seconds"])


def run_ray(spec: JobSpec, tasks: list[FileTask], workers: int | None, address: str | None,
            report: Report, stall_seconds: float | None = None) -> None:
    """Process ``tasks`` on Ray actors: a running Ray (this process's, or ``address``) or a new local one."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as err:
            where = f"at '{address}'" if address else "locally"
            raise ConfigError(
                f"cannot start or reach Ray {where} ({str(err).splitlines()[0]}): start a cluster "
                "with 'ray start --head' and pass --address auto, or leave --address out"
            ) from None
    try:
        size = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        _RayPool(ray, spec, size, report, stall_seconds).run(tasks)
    finally:
        if started:
            ray.shutdown()


class _RayPool:
    """``size`` actors fed one file at a time; one that dies is replaced and its file retried."""

    def __init__(self, ray: Any, spec: JobSpec, size: int, report: Report,
                 stall_seconds: float | None = None) -> None:
        self._ray = ray
        self._spec = spec
        self._size = size
        self._report = report
        self._stall_seconds = stall_seconds
        self._capacity_wait = CAPACITY_WAIT_SECONDS if stall_seconds is None else stall_seconds
        self._actor_class = ray.remote(num_cpus=1, max_restarts=0, max_concurrency=2)(_FileActor)
        self._actors: set[Any] = set()
        self._ready: set[Any] = set()  # actors that built the pipeline and are alive
        self._idle: set[Any] = set()  # ready actors without a file
        self._inflight: dict[Any, tuple[Any, FileTask | None]] = {}  # ref -> (actor, task; None: ready())
        self._heard: dict[Any, float] = {}  # ref of a file in progress -> when it last ticked
        self._stalled: set[Any] = set()  # actors killed for showing no progress
        self._failed_starts = 0
        self._short_since: float | None = None  # since when no actor is up and no CPU is left

    def run(self, tasks: list[FileTask]) -> None:
        pending = deque(tasks)
        try:
            for _ in range(min(self._size, len(pending))):
                self._start()
            # Also how often the cluster is asked whether a CPU is left when no actor is up.
            poll = min((self._stall_seconds or self._capacity_wait) / 4, 30.0)
            next_check = time.monotonic() + poll
            # Actors Ray could not place yet (no CPU) may still wait when the last file is done.
            while pending or any(task is not None for _, task in self._inflight.values()):
                done, _ = self._ray.wait(list(self._inflight), num_returns=1, timeout=poll)
                for ref in done:
                    self._finish(ref, pending)
                if time.monotonic() >= next_check:  # not once per file
                    if self._stall_seconds is not None:
                        self._stop_stalled()
                    self._check_capacity(pending)
                    next_check = time.monotonic() + poll
        except BaseException:
            with sigint_ignored():  # a second Ctrl-C must not leave actors writing
                self._stop(report_finished=True)
            raise
        self._stop(report_finished=False)

    def _stop_stalled(self) -> None:
        """Kill the actors whose file showed no progress for stall_seconds; _finish retries it."""
        assert self._stall_seconds is not None
        for ref, (actor, task) in list(self._inflight.items()):
            if task is None or actor in self._stalled:
                continue
            with contextlib.suppress(Exception):  # no answer (busy in native code): the last one stands
                idle = self._ray.get(actor.idle_seconds.remote(), timeout=5)
                self._heard[ref] = max(self._heard[ref], time.monotonic() - idle)
            if time.monotonic() - self._heard[ref] >= self._stall_seconds:
                logger.error("'%s' showed no progress for %g s: stopping its Ray worker",
                             task.path, self._stall_seconds)
                self._stalled.add(actor)
                self._ray.kill(actor)

    def _check_capacity(self, pending: deque[FileTask]) -> None:
        """Stop the job when files wait, no actor is up, and for capacity_wait seconds the
        cluster had no CPU to place one (its nodes were lost)."""
        if not pending or self._ready or self._ray.cluster_resources().get("CPU", 0) >= 1:
            self._short_since = None
            return
        if self._short_since is None:
            self._short_since = time.monotonic()
            logger.warning("no Ray worker is left and the cluster has no CPU for one: waiting up to "
                           "%g s for a node to join", self._capacity_wait)
        elif time.monotonic() - self._short_since >= self._capacity_wait:
            raise FaceprivError(
                f"no Ray node is left to run the job's workers (none joined in {self._capacity_wait:g} s; "
                f"engine.stall_seconds sets the wait): {len(pending)} file(s) were not processed; "
                "add nodes and run the same command again"
            )

    def _start(self) -> None:
        actor = self._actor_class.remote(self._spec)
        self._actors.add(actor)
        self._inflight[actor.ready.remote()] = (actor, None)

    def _finish(self, ref: Any, pending: deque[FileTask]) -> None:
        actor, task = self._inflight.pop(ref)
        self._heard.pop(ref, None)
        try:
            value = self._ray.get(ref)
        except self._ray.exceptions.RayActorError as err:
            with contextlib.suppress(Exception):  # "unavailable" may be unreachable, not dead: no more writes
                self._ray.kill(actor)
            self._actors.discard(actor)
            self._ready.discard(actor)
            reason = str(err).strip().splitlines()[0]
            if actor in self._stalled:
                reason = stall_reason(self._stall_seconds)
            if task is not None:
                logger.error("a Ray worker died while processing '%s': %s", task.path, reason)
                again = self._report.lost(task, f"the Ray worker died while processing it ({reason})")
                if again is not None:
                    pending.appendleft(again)
            elif not self._node_lost(err):  # a lost node's actors say nothing of the pipeline
                self._failed_starts += 1
                if self._failed_starts >= MAX_FAILED_STARTS:
                    raise FaceprivError(f"Ray workers die while loading the pipeline ({reason})") from None
            self._dispatch(pending)
            if pending and len(self._actors) < self._size:
                self._start()  # placed wherever Ray finds a CPU, now or when a node joins
            return
        if task is None:
            if value is not None:
                raise value
            self._failed_starts = 0
            self._ready.add(actor)
        else:
            self._report(value.frames or 0)
            self._report(value)
        self._idle.add(actor)
        self._dispatch(pending)

    def _node_lost(self, err: Exception) -> bool:
        """Whether an actor died with its node (or became unreachable), as Ray reports it."""
        unavailable = getattr(self._ray.exceptions, "ActorUnavailableError", ())
        return isinstance(err, unavailable) or "its node has died" in str(err)

    def _dispatch(self, pending: deque[FileTask]) -> None:
        """Give the next files to idle actors (a retried file may come when others are done)."""
        while pending and self._idle:
            actor = self._idle.pop()
            task = pending.popleft()
            self._report(FileResult(task, "started"))  # on disk before an actor can write
            ref = actor.process.remote(task)
            self._inflight[ref] = (actor, task)
            self._heard[ref] = time.monotonic()

    def _stop(self, report_finished: bool) -> None:
        """Kill the actors and wait until none can still be writing; record files finished meanwhile."""
        for actor in self._actors:
            self._ray.kill(actor)
        refs = list(self._inflight)
        if refs:
            done, _ = self._ray.wait(refs, num_returns=len(refs), timeout=STOP_SECONDS)
            for ref in done if report_finished else ():
                task = self._inflight[ref][1]
                with contextlib.suppress(Exception):
                    result = self._ray.get(ref)
                    if task is not None and result.status == "done":
                        self._report(result)
        self._actors.clear()
        self._ready.clear()
        self._idle.clear()
        self._inflight.clear()
