"""The job manifest: one JSON line per processed file, beside the outputs.

Only the job's parent writes it, one whole line at a time, synced to disk: a
``started`` line before a file goes to a worker, then its outcome (``done`` or
``failed``, or ``retried`` when its worker was lost and the job tries it again). On a
re-run the last line of each input wins: a file is done when that line says so, its input
still has the size and mtime it had, and its output is still there; failed files are
tried again. A file whose last line is ``started`` was being processed when the job died:
if its output now exists and did not when it started, the worker finished it just before
the parent could record it, so it is redone over that output.
A line cut short by a crash is ignored.
While a job (or a serial run, ``facepriv.batch.serial``) runs it holds a lock on its
manifest, so a second one on the same output_dir stops at once instead of redoing the
same files and mixing its lines into the manifest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from facepriv.batch.worker import FileResult, FileTask
from facepriv.errors import MediaError

try:
    import fcntl
except ImportError:  # Windows: jobs run without the lock
    fcntl = None  # type: ignore[assignment]

MANIFEST_NAME = "facepriv-manifest.jsonl"

logger = logging.getLogger("facepriv.batch")


@contextlib.contextmanager
def manifest_lock(path: Path) -> Iterator[None]:
    """Hold the job's manifest (created if need be) for this job alone, or raise a
    MediaError at once when another job holds it.

    An advisory lock (flock) on the local machine; on network file systems it may not
    reach other machines, so give concurrent jobs their own output_dirs there.
    """
    if fcntl is None:
        yield
        return
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise MediaError(
                f"another facepriv run is writing to '{path.parent}' (its manifest {path.name} "
                "is locked): wait for that run to end, or give this one another output_dir"
            ) from None
        yield
    finally:
        os.close(handle)  # releases the lock


class Manifest:
    """The records of earlier runs of a job, and the file new ones are appended to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}  # input path -> its last record
        self._written: dict[str, set[str]] = {}  # input path -> outputs its done lines name
        self._fd: int | None = None
        self._needs_newline = False
        if path.exists():
            self._read()

    def _read(self) -> None:
        data = self.path.read_bytes()
        self._needs_newline = bool(data) and not data.endswith(b"\n")
        for number, line in enumerate(data.splitlines(), 1):
            try:
                self._remember(json.loads(line))
            except (ValueError, TypeError, KeyError):
                logger.warning("%s line %d is incomplete or damaged: ignored", self.path, number)

    def is_done(self, task: FileTask) -> bool:
        """Done by an earlier run, and neither the input nor the output changed since."""
        record = self.records.get(task.path)
        return (
            record is not None and record.get("status") == "done"
            and record.get("size") == task.size and record.get("mtime_ns") == task.mtime_ns
            and self._output_exists(record)
        )

    def wrote(self, path: str, output: Path) -> bool:
        """Whether ``output``, the output now planned for input ``path``, exists and this job
        wrote it: a done line says so, or the file was started when it did not exist yet."""
        if not output.is_file():
            return False
        if Path(os.path.relpath(output, self.path.parent)).as_posix() in self._written.get(path, ()):
            return True
        record = self.records.get(path)
        return record is not None and record.get("status") == "started" and not record.get("output_existed")

    def _output_exists(self, record: dict[str, Any]) -> bool:
        output = record.get("output")
        return isinstance(output, str) and (self.path.parent / output).is_file()

    def _remember(self, record: dict[str, Any]) -> None:
        self.records[record["input"]] = record
        if record.get("status") == "done" and isinstance(record.get("output"), str):
            self._written.setdefault(record["input"], set()).add(record["output"])

    def start(self, task: FileTask, output_exists: bool) -> dict[str, Any]:
        """Record that ``task`` goes to a worker now, and whether its output exists already."""
        return self._write({
            "input": task.path, "name": task.name, "size": task.size, "mtime_ns": task.mtime_ns,
            "status": "started", "output": None, "output_existed": output_exists,
            "attempt": task.attempt, "started": _now(),
        })

    def append(self, result: FileResult) -> dict[str, Any]:
        """Record a finished file: one write of one whole line, synced to disk."""
        task = result.task
        output = result.output
        if output is not None:
            output = Path(os.path.relpath(output, self.path.parent)).as_posix()
        return self._write({
            "input": task.path, "name": task.name, "size": task.size, "mtime_ns": task.mtime_ns,
            "status": result.status, "output": output, "frames": result.frames,
            "faces": result.faces, "seconds": round(result.seconds, 3), "error": result.error,
            "attempt": task.attempt, "finished": _now(),
        })

    def _write(self, record: dict[str, Any]) -> dict[str, Any]:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        if self._needs_newline:  # the last line was cut short by a crash
            line = "\n" + line
            self._needs_newline = False
        data = line.encode("utf-8")
        try:
            while data:  # a disk that fills up takes part of a line, then refuses the rest
                data = data[os.write(self._fd, data):]
            os.fsync(self._fd)
        except OSError as err:  # a line cut short is ignored when the manifest is read again
            raise MediaError(
                f"cannot write the job manifest '{self.path}' ({err.strerror}): free space on "
                "that disk, then run the same command again (finished files are kept)"
            ) from None
        self._remember(record)
        return record

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")
