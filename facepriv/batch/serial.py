"""A serial run over files: one run per output_dir at a time, resumable like a job.

A run without workers whose source is files (not a webcam or stream) and whose pipeline
writes them (output.media_writer: a node that declares ``job: writes_files``) does what a
job does around its files: it holds the lock of the job manifest in output_dir (a second
run or job there stops at once), removes the hidden temporary files a killed run left for
its outputs, and writes the same manifest lines (``started``, then ``done`` once an output
is committed whole). Run again, it skips the files the manifest shows done (input and
output unchanged) instead of stopping at the first output that exists, and redoes a file
whose run was killed. An output that existed before and that no run of this output_dir
wrote is never replaced without ``overwrite``: that is found before the first frame. With
``overwrite: true`` every file is redone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from facepriv.batch.manifest import MANIFEST_NAME, Manifest, manifest_lock
from facepriv.batch.worker import FileResult, FileTask
from facepriv.media.outputs import check_replaceable, ensure_writable_dir, remove_temp_files
from facepriv.plan import RunPlan, output_dir_of, output_paths

logger = logging.getLogger("facepriv.batch")


class SerialJournal:
    """What output.media_writer tells the manifest about each input of a serial run."""

    def __init__(self, manifest: Manifest, tasks: dict[str, FileTask], finals: dict[str, Path],
                 overwrite: bool) -> None:
        self._manifest = manifest
        self._tasks = tasks  # absolute input path -> its task
        self._finals = finals  # absolute input path -> its output
        self._overwrite = overwrite
        self._started: dict[str, float] = {}

    def may_replace(self, source: Path | None) -> bool:
        """Whether the existing output of ``source`` may be replaced: a run here wrote it."""
        key = _key(source)
        return self._overwrite or (key in self._finals and self._manifest.wrote(key, self._finals[key]))

    def started(self, source: Path | None) -> None:
        key = _key(source)
        if key in self._tasks:
            self._started[key] = time.perf_counter()
            self._manifest.start(self._tasks[key], _exists(self._finals[key]))

    def finished(
        self, source: Path | None, output: Path | None, frames: int, error: str | None = None
    ) -> None:
        """Record ``source`` done (``output`` committed whole) or failed (``error``)."""
        key = _key(source)
        if key in self._tasks:
            seconds = time.perf_counter() - self._started.get(key, time.perf_counter())
            self._manifest.append(FileResult(
                self._tasks[key], "failed" if error else "done", output=str(output) if output else None,
                frames=frames, seconds=seconds, error=error,
            ))


def _key(source: Path | None) -> str:
    return os.path.abspath(source) if source is not None else ""


@contextlib.contextmanager
def serial_session(plan: RunPlan) -> Iterator[dict[str, dict[str, Any]]]:
    """Lock, clean and plan a serial run; yields constructor arguments for its nodes
    (the reader's files still to do, the writer's journal), or nothing to add when the run
    does not write files from files."""
    reader, writer = plan.reader(), plan.writer()
    if writer is None or plan.file_source() is None:
        yield {}
        return
    assert reader is not None and writer.spec.job.writes_files is not None
    roles = writer.spec.job.writes_files
    pairs, single = plan.files()
    output_dir = output_dir_of(writer)
    ensure_writable_dir(output_dir, writer.setting_name(roles["output_dir"]))
    by_name = output_paths(pairs, writer)
    finals = {os.path.abspath(path): by_name[name] for path, name in pairs}
    overwrite = writer.settings[roles["overwrite"]]
    with manifest_lock(output_dir / MANIFEST_NAME):
        manifest = Manifest(output_dir / MANIFEST_NAME)
        try:
            tasks, skip = _plan(pairs, finals, manifest, overwrite)
            journal = SerialJournal(manifest, tasks, finals, overwrite)
            if skip:
                logger.info("%d of %d file(s) were done by an earlier run (manifest %s): skipped; "
                            "set %s: true to redo them", len(skip), len(pairs), manifest.path,
                            writer.setting_name(roles["overwrite"]))
            for removed in remove_temp_files(finals.values()):  # left by a run that was killed
                logger.info("removed %s, left by a run that was stopped", removed)
            remaining = [(path, name) for path, name in pairs if os.path.abspath(path) not in skip]
            yield {reader.name: {"items": remaining, "single": single}, writer.name: {"journal": journal}}
        finally:
            manifest.close()
            remove_temp_files(finals.values())
            with contextlib.suppress(OSError):
                if manifest.path.stat().st_size == 0:  # nothing started: leave output_dir as it was
                    manifest.path.unlink()


def _plan(pairs: list[tuple[Path, str]], finals: dict[str, Path], manifest: Manifest,
          overwrite: bool) -> tuple[dict[str, FileTask], set[str]]:
    """The tasks of the files to process, and the files done before (skipped)."""
    tasks: dict[str, FileTask] = {}
    skip: set[str] = set()
    for path, name in pairs:
        key = os.path.abspath(path)
        try:
            stat = os.stat(key)
        except OSError:  # vanished: input.visual reports it
            continue
        task = FileTask(key, name, stat.st_size, stat.st_mtime_ns)
        if not overwrite and manifest.is_done(task):
            skip.add(key)
            continue
        tasks[key] = task
        if _exists(finals[key]):
            check_replaceable(finals[key], path, overwrite or manifest.wrote(key, finals[key]))
    return tasks, skip


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name its file system cannot hold: output.media_writer fails that file alone
        return False
