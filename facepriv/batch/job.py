"""A job: the files of a file or folder source spread over workers, resumable.

The parent checks the pipeline, plans (files the manifest shows done are skipped),
hands the rest to an engine (``engines``: local processes or Ray actors), appends each finished
file to the manifest as it comes back, and draws one progress bar. However the job
ends, no temporary file of an unfinished output is left, and every manifest line
that says done points to an output that exists.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from facepriv.batch.engines import make_engine
from facepriv.batch.manifest import MANIFEST_NAME, Manifest, manifest_lock
from facepriv.batch.worker import FileResult, FileTask, JobSpec
from facepriv.config import RunConfig
from facepriv.custom_nodes import shared_custom_nodes_dir
from facepriv.errors import ConfigError
from facepriv.media import reading
from facepriv.media.outputs import ensure_writable_dir, remove_temp_files
from facepriv.plan import PlannedNode, RunPlan, make_plan, output_dir_of, output_paths
from facepriv.runner import RunSummary
from facepriv.settings import brief
from facepriv.specs import node_specs

logger = logging.getLogger("facepriv.batch")

def run_job(
    run_config: RunConfig,
    node_config: dict[str, dict[str, Any]] | None,
    engine: dict[str, Any],
    *,
    force: bool = False,
    num_iter: int | None = None,
) -> RunSummary:
    """Process the files of the job not done yet (all with ``force``); what this run did."""
    if num_iter is not None:
        raise ConfigError(
            "--num_iter stops a single run after N frames; a job with --workers or --engine ray "
            "processes whole files: leave one of them out"
        )
    runner = make_engine(engine)  # a missing extra (Ray) is reported before anything else
    plan = make_plan(run_config, node_config)
    writer = _check_pipeline(plan)
    pairs, _ = plan.files()
    output_dir = output_dir_of(writer)
    ensure_writable_dir(output_dir, writer.setting_name(writer.spec.job.writes_files["output_dir"]))
    finals = output_paths(pairs, writer)
    with manifest_lock(output_dir / MANIFEST_NAME):  # one job at a time per output_dir
        manifest = Manifest(output_dir / MANIFEST_NAME)
        progress = _Progress(manifest, finals, engine["max_retries"])
        tasks = _plan(pairs, finals, manifest, force, progress)
        spec = JobSpec(_worker_plan(plan, run_config, node_config), os.getcwd(),
                       logging.getLogger("facepriv").getEffectiveLevel(), shared_custom_nodes_dir())
        where = runner.describe()
        logger.info("job: %d file(s), %d done before (skipped; --force redoes them), %d to process on %s; "
                    "manifest %s", len(pairs), len(pairs) - len(tasks) - len(progress.failed), len(tasks),
                    where, manifest.path)
        temp_paths = [finals[task.name] for task in tasks]
        remove_temp_files(temp_paths)  # left by a job that was killed outright
        started = time.perf_counter()
        try:
            progress.open(len(tasks))
            if tasks:
                runner.run(spec, tasks, progress)
        finally:
            progress.close()
            manifest.close()
            remove_temp_files(temp_paths)  # of files whose worker died or was stopped
        logger.info("job finished: %d file(s) done, %d failed, %d attempt(s) retried after their worker "
                    "was lost (engine.max_retries: %d)", progress.done, len(progress.failed),
                    progress.retried, engine["max_retries"])
        return RunSummary(iterations=progress.frames, seconds=time.perf_counter() - started,
                          failed_items=progress.failed)


def _check_pipeline(plan: RunPlan) -> PlannedNode:
    """The node that writes the files, once the job is known to make sense."""
    for node in plan.nodes:
        if not node.spec.job.runs_in_jobs:
            raise ConfigError(
                f"{node.name} {node.spec.job.reason}, so it cannot run in a job spread over processes: "
                "leave it out of the config, or run without --workers and --engine"
            )
    writer = plan.writer()
    if plan.reader() is None or writer is None:
        readers = " or ".join(name for name, spec in node_specs().items() if spec.job.reads_files)
        writers = " or ".join(name for name, spec in node_specs().items() if spec.job.writes_files)
        raise ConfigError(
            f"a job spread over processes reads files with {readers} (the first node) and "
            f"writes them with {writers} (its manifest goes beside the outputs): add them"
        )
    if plan.file_source() is None:
        reader = plan.nodes[0]
        key = reader.spec.job.reads_files["source"]
        raise ConfigError(
            f"{reader.setting_name(key)} {brief(reader.settings[key])} is a webcam or stream, and only files "
            "and folders can be spread over processes: run it without --workers and --engine"
        )
    return writer


def _plan(
    pairs: list[tuple[Path, str]], finals: dict[str, Path], manifest: Manifest, force: bool,
    progress: _Progress,
) -> list[FileTask]:
    """The files to process: not done before (all with ``force``); those that vanished fail."""
    tasks = []
    for path, name in pairs:
        absolute = os.path.abspath(path)
        try:
            stat = os.stat(absolute)
        except OSError as err:
            error = f"cannot read it ({err.strerror})"
            progress(FileResult(FileTask(absolute, name, 0, 0), "failed", error=error))
            continue
        task = FileTask(absolute, name, stat.st_size, stat.st_mtime_ns)
        if force or not manifest.is_done(task):
            # An output this job wrote for an earlier version of the input may be replaced.
            tasks.append(replace(task, overwrite=force or manifest.wrote(absolute, finals[name])))
    return tasks


def _worker_plan(
    plan: RunPlan, run_config: RunConfig, node_config: dict[str, dict[str, Any]] | None
) -> RunPlan:
    """The plan as workers get it: the writer's output_dir absolute (a Ray actor may start in
    another folder), and one thread per pool where a node declares thread settings
    (``job: thread_keys``) the user did not choose."""
    chosen: dict[str, set[str]] = {}
    for name, overrides in run_config.nodes:
        chosen.setdefault(name, set()).update(overrides, (node_config or {}).get(name, {}))
    nodes = []
    for node in plan.nodes:
        job = node.spec.job
        settings = dict(node.settings)
        unchosen = [key for key in job.thread_keys if key in settings and key not in chosen[node.name]]
        settings.update({key: 1 for key in unchosen})
        if job.writes_files:
            settings[job.writes_files["output_dir"]] = str(output_dir_of(node))
        nodes.append(replace(node, settings=settings))
    return RunPlan(tuple(nodes))


class _Progress:
    """Takes the engine's reports: writes the manifest, decides which lost files are tried
    again, and draws one bar (files, frames, retries)."""

    def __init__(self, manifest: Manifest, finals: dict[str, Path], max_retries: int = 0) -> None:
        self._manifest = manifest
        self._finals = finals  # output name -> final path
        self._max_retries = max_retries
        self._bar: Any = None
        self.frames = 0
        self.done = 0
        self.retried = 0
        self.failed: list[str] = []

    def open(self, total: int) -> None:
        self._bar = reading.progress_bar(total, "files", "file")

    def __call__(self, event: FileResult | int) -> None:
        if isinstance(event, int):
            self.frames += event
            self._show()
            return
        if event.status == "started":
            self._manifest.start(event.task, self._finals[event.task.name].exists())
            return
        if event.status == "interrupted":  # not finished: left for the next run
            return
        self._manifest.append(event)
        if event.status == "failed":
            self.failed.append(f"{event.task.path}: {event.error}")
        else:
            self.done += 1
        if self._bar is not None:
            self._bar.update()

    def lost(self, task: FileTask, error: str) -> FileTask | None:
        """Record an attempt whose worker died or was stopped; the task to try again, or None
        once engine.max_retries retries were spent (the file is then failed)."""
        attempts = self._max_retries + 1
        if task.attempt >= attempts:
            self(FileResult(task, "failed", error=f"{error} (attempt {task.attempt} of {attempts}; "
                                                  "engine.max_retries sets the retries)"))
            return None
        # A worker lost just after committing the output leaves it there: this job's to replace.
        overwrite = task.overwrite or self._manifest.wrote(task.path, self._finals[task.name])
        self._manifest.append(FileResult(task, "retried", error=error))
        self.retried += 1
        logger.warning("'%s' is tried again (attempt %d of %d)", task.path, task.attempt + 1, attempts)
        self._show()
        return replace(task, attempt=task.attempt + 1, overwrite=overwrite)

    def _show(self) -> None:
        if self._bar is not None:
            retried = f", {self.retried} retried" if self.retried else ""
            self._bar.set_postfix_str(f"{self.frames} frames{retried}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
