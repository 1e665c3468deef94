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
    """What output.media_writer tells the manifest about each input of a serial run, by the
    input's output name (unique in a run; the reader may read another file than the one the
    manifest keys, as input.tracks reads the input of a tracks file)."""

    def __init__(self, manifest: Manifest, tasks: dict[str, FileTask], finals: dict[str, Path],
                 overwrite: bool) -> None:
        self._manifest = manifest
        self._tasks = tasks  # output name -> its task
        self._finals = finals  # output name -> its output
        self._overwrite = overwrite
        self._started: dict[str, float] = {}

    def may_replace(self, name: str | None) -> bool:
        """Whether the existing output of input ``name`` may be replaced: a run here wrote it."""
        return self._overwrite or (name in self._tasks and self._manifest.wrote(self._tasks[name].path,
                                                                               self._finals[name]))

    def started(self, name: str | None) -> None:
        if name in self._tasks:
            self._started[name] = time.perf_counter()
            self._manifest.start(self._tasks[name], _exists(self._finals[name]))

    def finished(self, name: str | None, output: Path | None, frames: int, error: str | None = None) -> None:
        """Record input ``name`` done (``output`` committed whole) or failed (``error``)."""
        if name in self._tasks:
            seconds = time.perf_counter() - self._started.get(name, time.perf_counter())
            self._manifest.append(FileResult(
                self._tasks[name], "failed" if error else "done", output=str(output) if output else None,
                frames=frames, seconds=seconds, error=error,
            ))


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
    finals = output_paths(pairs, writer)
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
            remaining = [(path, name) for path, name in pairs if name not in skip]
            yield {reader.name: {"items": remaining, "single": single}, writer.name: {"journal": journal}}
        finally:
            manifest.close()
            remove_temp_files(finals.values())
            with contextlib.suppress(OSError):
                if manifest.path.stat().st_size == 0:  # nothing started: leave output_dir as it was
                    manifest.path.unlink()


def _plan(pairs: list[tuple[Path, str]], finals: dict[str, Path], manifest: Manifest,
          overwrite: bool) -> tuple[dict[str, FileTask], set[str]]:
    """The tasks of the files to process and the names of those done before (skipped), by
    output name."""
    tasks: dict[str, FileTask] = {}
    skip: set[str] = set()
    for path, name in pairs:
        key = os.path.abspath(path)
        try:
            stat = os.stat(key)
        except OSError:  # vanished: the reader reports it
            continue
        task = FileTask(key, name, stat.st_size, stat.st_mtime_ns)
        if not overwrite and manifest.is_done(task):
            skip.add(name)
            continue
        tasks[name] = task
        if _exists(finals[name]):
            check_replaceable(finals[name], path, overwrite or manifest.wrote(key, finals[name]))
    return tasks, skip


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name its file system cannot hold: output.media_writer fails that file alone
        return False
