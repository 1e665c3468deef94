"""Engines: where a job's files are processed, behind one interface, found by name.

An engine takes the job's spec (the run plan and what every worker needs), the files to
process and the job's progress report; it processes every file on its workers and reports
each outcome (``Report``), retrying the files of lost workers as ``Report.lost`` decides.
Adding an engine is one module with an ``Engine`` class plus one line in ``ENGINES``: the
job, the run config's ``engine: name`` and the CLI's ``--engine`` all read the registry.
This module imports nothing heavy: the CLI reads ``ENGINES`` for ``--help``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from facepriv.batch.worker import FileResult, FileTask, JobSpec


class Report(Protocol):
    """The job's side of an engine (``job._Progress``)."""

    def __call__(self, event: FileResult | int) -> None:
        """A FileResult (status "started" just before a file goes to a worker, then its
        outcome), or an int: frames read since the last call."""

    def lost(self, task: FileTask, error: str) -> FileTask | None:
        """``task``'s worker died or was stopped (``error`` says how): the task to put first
        in line for another attempt, or None when it is recorded failed."""


class Engine(Protocol):
    """Built from the job's ``engine:`` settings (a missing dependency fails there, before
    anything is planned); ``run`` returns once every task is reported."""

    def __init__(self, settings: dict[str, Any]) -> None: ...

    def describe(self) -> str:
        """Where the files go, for the job's first log line ("2 local worker(s)")."""

    def run(self, spec: JobSpec, tasks: list[FileTask], progress: Report) -> None:
        """Process ``tasks``; on any exception (Ctrl-C included) stop the workers first."""


@dataclass(frozen=True)
class EngineEntry:
    """A registered engine: its class as ``module:Class``, and the ``engine:`` settings only
    it uses (set with another engine, they are an error rather than silently ignored)."""

    target: str
    own_keys: tuple[str, ...] = ()


ENGINES: dict[str, EngineEntry] = {
    "local": EngineEntry("facepriv.batch.local:LocalEngine"),
    "ray": EngineEntry("facepriv.batch.ray_engine:RayEngine", own_keys=("address",)),
}


def make_engine(settings: dict[str, Any]) -> Engine:
    """The engine ``settings["name"]`` names, built from the job's ``engine:`` settings."""
    module, _, name = ENGINES[settings["name"]].target.partition(":")
    return getattr(importlib.import_module(module), name)(settings)
