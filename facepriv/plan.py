"""The run plan: every node's resolved, validated settings with what its YAML declares.

Built in one place, below both the API (serial runs) and the engines (jobs spread over
processes), so neither knows nodes by name: which node reads the files, which one writes
them and how it names its outputs, which may not run in a job, which are built once per
worker, all come from the nodes' own declarations (``facepriv.declarations``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from facepriv.config import NodeSpec, RunConfig, node_spec, resolve_node_config
from facepriv.errors import ConfigError, MediaError
from facepriv.media import reading
from facepriv.runner import check_channel


@dataclass(frozen=True)
class PlannedNode:
    """One node of a plan: its name, final settings and spec."""

    name: str
    settings: dict[str, Any]
    spec: NodeSpec

    def setting_name(self, key: str) -> str:
        """``type.name.key``, as messages name a setting."""
        return f"{self.name}.{key}"


@dataclass(frozen=True)
class RunPlan:
    """The nodes of a run in order, checked before anything is built."""

    nodes: tuple[PlannedNode, ...]

    def settings(self) -> list[tuple[str, dict[str, Any]]]:
        """(node name, final settings) pairs, as nodes see them in ``run_settings``."""
        return [(node.name, node.settings) for node in self.nodes]

    def reader(self) -> PlannedNode | None:
        """The first node, if it declares that it reads files (``job: reads_files``)."""
        return self.nodes[0] if self.nodes and self.nodes[0].spec.job.reads_files else None

    def writer(self) -> PlannedNode | None:
        """The first node that declares that it writes one output per file (``writes_files``)."""
        return next((node for node in self.nodes if node.spec.job.writes_files), None)

    def file_source(self) -> Any:
        """The reader's source setting when it names files, None without a reader or for a live source."""
        reader = self.reader()
        if reader is None:
            return None
        source = reader.settings[reader.spec.job.reads_files["source"]]
        return None if source is None or reading.is_live_source(source) else source

    def files(self) -> tuple[list[tuple[Path, str]], bool]:
        """The reader's (file, output name) pairs and whether its source names one file."""
        reader = self.reader()
        assert reader is not None and reader.spec.job.reads_files is not None
        return reader.spec.job.files_rule()(reader.settings)


def make_plan(
    run_config: RunConfig,
    node_config: dict[str, dict[str, Any]] | None = None,
    provided: Sequence[str] = (),
) -> RunPlan:
    """Every node's final settings, ``node_config`` laid over the run config's.

    Checks the channel and every setting without building anything, so a job can be
    checked in the parent before worker processes load models.
    """
    node_config = node_config or {}
    unused = set(node_config) - {name for name, _ in run_config.nodes}
    if unused:
        names = ", ".join(sorted(unused))
        raise ConfigError(
            f"--node_config names {names}, which the run config does not use: "
            "check the node name or add the node to the config"
        )
    specs = {name: node_spec(name) for name, _ in run_config.nodes}
    check_channel(
        [(n, specs[n].inputs, specs[n].outputs) for n, _ in run_config.nodes], provided
    )
    return RunPlan(tuple(
        PlannedNode(name, resolve_node_config(name, overrides, node_config.get(name)), specs[name])
        for name, overrides in run_config.nodes
    ))


def output_dir_of(writer: PlannedNode) -> Path:
    """The writer's output folder, absolute."""
    assert writer.spec.job.writes_files is not None
    return Path(os.path.abspath(writer.settings[writer.spec.job.writes_files["output_dir"]]))


def output_paths(pairs: list[tuple[Path, str]], writer: PlannedNode) -> dict[str, Path]:
    """Where ``writer`` writes each input, by the writer's own naming rule.

    Two inputs that would share an output stop the job before anything is written; a
    serial run stops at the second of them.
    """
    rule = writer.spec.job.output_name_rule()
    output_dir = output_dir_of(writer)
    finals: dict[str, Path] = {}
    owners: dict[Path, Path] = {}
    for path, name in pairs:
        final = output_dir / PurePosixPath(rule(name, reading.is_video(name), writer.settings))
        if final in owners:
            raise MediaError(
                f"inputs '{owners[final]}' and '{path}' would both be written as '{final}': "
                "rename one, or write them to different output_dirs"
            )
        owners[final], finals[name] = path, final
    return finals
