"""What a node's YAML declares about itself for jobs spread over processes (``job:``).

The job and its workers read these declarations instead of knowing nodes by name, so a
new input or output node (or a custom one) says in its own YAML how a job treats it.
Every key may be left out: a node then runs in jobs, is built fresh for every file,
and neither reads the job's files nor writes its outputs.

``job:`` keys:

- ``runs_in_jobs`` (default true) and ``reason``: a node that cannot run in a job spread
  over processes (a window, one table for the whole run) says why.
- ``kept_per_worker``: built once per worker and lent to every file's pipeline (heavy to
  load, nothing kept from file to file: the node's ``reset()`` forgets the last file).
- ``thread_keys``: settings set to 1 in every worker unless the user chose them (one
  thread per process is fastest when several processes share the machine).
- ``reads_files``: ``{source: <setting>, recursive: <setting>, files: "module:function"}``
  (``recursive`` and ``files`` may be left out): the node reads the files a job spreads over
  workers; as the first node it is given one file per run through its ``items=[(path,
  output name)]`` constructor argument. ``files(settings)`` lists the (path, output name)
  pairs and whether the source names one file; without it, the media files of ``source``
  (``facepriv.media.reading.expand_sources``). Output names keep their media's suffix,
  which tells a writer a video from an image.
- ``writes_files``: ``{output_dir: <setting>, overwrite: <setting>, output_name:
  "module:function"}``: the node writes one output per input file below ``output_dir``;
  ``output_name(name, video, settings)`` is the name it gives an input (the job uses the
  same function to plan); the node lists what it committed in ``written``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facepriv.errors import ConfigError

_KEYS = ("runs_in_jobs", "reason", "kept_per_worker", "thread_keys", "reads_files", "writes_files")
_READS = ("source",), ("recursive", "files")  # needed, optional
_WRITES = ("output_dir", "overwrite", "output_name"), ()


@dataclass(frozen=True)
class JobDeclaration:
    """A node's ``job:`` block, defaults filled in."""

    runs_in_jobs: bool = True
    reason: str = ""
    kept_per_worker: bool = False
    thread_keys: tuple[str, ...] = ()
    reads_files: dict[str, str] | None = None
    writes_files: dict[str, str] | None = None

    def output_name_rule(self) -> Callable[[str, bool, dict[str, Any]], str]:
        """The function that names a writer's output (``writes_files.output_name``)."""
        assert self.writes_files is not None
        return _function(self.writes_files["output_name"])

    def files_rule(self) -> Callable[[dict[str, Any]], tuple[list[tuple[Path, str]], bool]]:
        """The function that lists a reader's files (``reads_files.files``), from its settings."""
        assert self.reads_files is not None
        roles = self.reads_files
        if "files" in roles:
            return _function(roles["files"])
        from facepriv.media import reading

        return lambda settings: reading.expand_sources(
            settings[roles["source"]], bool(settings[roles["recursive"]]) if "recursive" in roles else False)


def _function(reference: str) -> Callable[..., Any]:
    module, _, function = reference.partition(":")
    return getattr(importlib.import_module(module), function)


def parse_job_block(name: str, raw: Any) -> JobDeclaration:
    """The declaration in node ``name``'s ``job:`` block (None or missing: the defaults)."""
    if raw is None:
        return JobDeclaration()
    if not isinstance(raw, dict) or set(raw) - set(_KEYS):
        raise ConfigError(f"node '{name}': 'job:' must be a mapping of {', '.join(_KEYS)}")
    return JobDeclaration(
        runs_in_jobs=bool(raw.get("runs_in_jobs", True)),
        reason=str(raw.get("reason", "")),
        kept_per_worker=bool(raw.get("kept_per_worker", False)),
        thread_keys=tuple(raw.get("thread_keys", ())),
        reads_files=_roles(name, "reads_files", raw.get("reads_files"), _READS),
        writes_files=_roles(name, "writes_files", raw.get("writes_files"), _WRITES),
    )


def _roles(name: str, key: str, value: Any, roles: tuple[tuple[str, ...], tuple[str, ...]]
           ) -> dict[str, str] | None:
    if value is None:
        return None
    needed, optional = roles
    if not isinstance(value, dict) or not set(needed) <= set(value) <= set(needed + optional):
        also = f" (and may map {', '.join(optional)})" if optional else ""
        raise ConfigError(f"node '{name}': 'job: {key}:' must map {', '.join(needed)}{also}")
    return {role: str(setting) for role, setting in value.items()}
