"""One file of a job, processed the way a serial run processes it.

What a local worker process and a Ray actor share. A ``FileWorker`` builds the
nodes that declare ``job: kept_per_worker`` once (the model nodes: TensorFlow and the
networks load once per process); for each file it builds the others fresh, so per-file
state (an open video, a tracker's faces) starts clean, as it does in a serial run when the
next file begins. The node that reads files (``job: reads_files``, input.visual) is handed
the file under the output name it has in the whole job (its path below the source folder),
so the outputs are the ones a serial run writes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facepriv.custom_nodes import set_custom_nodes_dir
from facepriv.errors import FaceprivError
from facepriv.media import reading
from facepriv.node import AbstractNode, build_node, load_node_class
from facepriv.plan import RunPlan
from facepriv.runner import Pipeline

LOG_FORMAT = "%(asctime)s [%(levelname)s] %(name)s[%(process)d]: %(message)s"


@dataclass(frozen=True)
class JobSpec:
    """What every worker needs to build the pipeline: settings resolved by the parent."""

    plan: RunPlan  # every node's final settings and declarations, in order
    cwd: str  # relative paths in settings (weights folders) resolve from here
    log_level: int
    custom_nodes_dir: str | None = None  # where custom_nodes.<type>.<name> are imported from


@dataclass(frozen=True)
class FileTask:
    """One input file of a job, with the input's size and mtime when the job planned it."""

    path: str
    name: str  # the output name input.visual gives it (relative to output_dir)
    size: int
    mtime_ns: int
    overwrite: bool = False  # the job's own earlier output may be replaced
    attempt: int = 1  # 2 and more: tried again after its worker was lost (engine.max_retries)


@dataclass
class FileResult:
    """How a file went: ``done``, ``failed`` or ``interrupted`` (stopped by the job's end);
    ``started`` is the engines' notice that it goes to a worker now, ``retried`` the job's
    record of an attempt whose worker was lost."""

    task: FileTask
    status: str
    output: str | None = None  # the written file
    frames: int | None = None  # None when a crashed worker could not say
    faces: int | None = None  # face boxes masked, summed over the frames
    seconds: float = 0.0
    error: str | None = None


def build_error(err: BaseException) -> FaceprivError:
    """Why a worker could not build the pipeline, as the one-line error the job stops with."""
    return err if isinstance(err, FaceprivError) else FaceprivError(f"{type(err).__name__}: {err}")


def setup_worker_logging(level: int) -> None:
    """Log like the CLI does, with the worker's process id after the logger name."""
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%H:%M:%S", force=True)


class FileWorker:
    """Builds the models once, then runs the pipeline on one file at a time."""

    def __init__(self, spec: JobSpec) -> None:
        if os.path.isdir(spec.cwd):
            os.chdir(spec.cwd)
        set_custom_nodes_dir(spec.custom_nodes_dir)
        reading.hide_progress_bars()
        self._spec = spec
        self._kept: dict[int, AbstractNode] = {}
        # True only while a file's pipeline runs: a stop request may then interrupt it.
        self.interruptible = False
        try:
            for index, node in enumerate(spec.plan.nodes):
                if node.spec.job.kept_per_worker:
                    self._kept[index] = build_node(node.name, node.settings)
                    self._kept[index].run_settings = spec.plan.settings()
        except BaseException:
            self.close()
            raise

    def process(self, task: FileTask, on_frames: Callable[[int], None] | None = None,
                on_tick: Callable[[], None] | None = None) -> FileResult:
        """Run the pipeline on ``task``; every failure becomes a failed result, not an exception.

        ``on_frames(frames out so far)`` feeds the progress bar; ``on_tick()`` is called on
        every tick of the pipeline, frames held included, so a supervisor can tell a slow
        file from a hung one.
        """
        started = time.perf_counter()
        probe = _Probe(on_frames)
        writers: list[Any] = []
        failed: list[str] = []
        error = None
        interrupted = False
        try:
            nodes = self._nodes_for(task)
            planned = self._spec.plan.nodes
            writers = [node for node, plan in zip(nodes, planned, strict=True) if plan.spec.job.writes_files]
            self.interruptible = True
            failed = Pipeline([*nodes, probe]).run(on_tick=on_tick).failed_items
            self.interruptible = False
        except KeyboardInterrupt:
            interrupted = True
        except FaceprivError as err:
            error = str(err)
        except Exception as err:  # noqa: BLE001 - one file's failure must not stop the job
            logging.getLogger("facepriv.batch").exception("'%s' failed", task.path)
            error = f"{type(err).__name__}: {err}"
        finally:
            self.interruptible = False
        written = [str(path) for writer in writers for path in writer.written]
        result = FileResult(task, "done", written[0] if written else None, probe.frames, probe.faces,
                            time.perf_counter() - started)
        if written and not failed and error is None:
            return result  # complete, even if a stop request came after the output was committed
        if interrupted:
            result.status = "interrupted"
            return result
        result.status, result.output = "failed", None
        prefix = f"{task.path}: "
        reasons = [item[len(prefix):] if item.startswith(prefix) else item for item in failed]
        result.error = error or "; ".join(reasons) or "no output was written"
        return result

    def _nodes_for(self, task: FileTask) -> list[Any]:
        nodes: list[Any] = []
        try:
            for index, planned in enumerate(self._spec.plan.nodes):
                job, name, settings = planned.spec.job, planned.name, planned.settings
                if index in self._kept:
                    nodes.append(_Kept(self._kept[index]))
                elif job.reads_files and index == 0:
                    nodes.append(load_node_class(name)(settings, items=[(Path(task.path), task.name)]))
                elif job.writes_files and task.overwrite:
                    nodes.append(build_node(name, settings, {job.writes_files["overwrite"]: True}))
                else:
                    nodes.append(build_node(name, settings))
                nodes[-1].run_settings = self._spec.plan.settings()  # as api.build_nodes does (audit_log)
        except BaseException:
            for node in nodes:
                node.release(completed=False)
            raise
        return nodes

    def close(self) -> None:
        """Release the nodes built once (at the worker's end)."""
        for node in self._kept.values():
            try:
                node.release(completed=True)
            except Exception:  # noqa: BLE001 - releasing the others matters more
                logging.getLogger("facepriv.batch").exception("releasing %s failed", node.node_name)
        self._kept.clear()


class _Kept:
    """A node built once per worker, lent to one file's pipeline.

    The runner releases every node when a file ends; this one must stay loaded for the
    next file, and only the problems of this file are reported for it.
    """

    def __init__(self, node: AbstractNode) -> None:
        self._node = node
        self._first_failure = len(node.failed_items)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._node, name)

    @property
    def failed_items(self) -> list[str]:
        return self._node.failed_items[self._first_failure:]

    def release(self, completed: bool = True) -> None:
        """Kept for the next file (FileWorker.close releases it), without what this one left."""
        self._node.reset()


class _Probe:
    """Last node of a worker's pipeline: counts the file's frames and masked face boxes (a
    second detector's plates and other labels are not faces)."""

    node_name = "batch.probe"
    inputs = ["all", "pipeline_end"]
    outputs: list[str] = []

    def __init__(self, on_frames: Callable[[int], None] | None) -> None:
        self.failed_items: list[str] = []
        self.frames = 0
        self.faces = 0
        self._on_frames = on_frames

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        if inputs.get("pipeline_end"):
            return {}
        self.frames += 1
        labels = inputs.get("bbox_labels")
        boxes = len(inputs.get("bboxes", ()))
        self.faces += boxes if labels is None else int(np.count_nonzero(np.asarray(labels) == "face"))
        if self._on_frames is not None:
            self._on_frames(self.frames)
        return {}

    def release(self, completed: bool = True) -> None:
        """Nothing to free."""
