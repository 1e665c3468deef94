"""The runner: passes one data dict per frame from node to node.

It knows nothing about faces or media. It checks the channel before the first frame,
loops until a node sets ``pipeline_end`` (on that last tick only nodes that take
``pipeline_end`` run) or ``num_iter`` frames are out, and releases every node on
every exit path, Ctrl-C included.

Nodes that need to see later frames before letting one go (a tracker filling detection
gaps both ways) hold frames: ``run`` returns None and the tick ends there. While such
a node's ``pending()`` is true, the runner starts ticks at that node instead of the
input, so it can hand its buffered frames on (and, last, the end of the stream) one
per tick without new input.

A node's outputs replace what the data pool holds under the same keys, except the keys its
YAML lists under ``append:``: those are added to the earlier values (rows of arrays, items
of lists). So a second detector adds its boxes to the first one's, and a pipeline with one
detector behaves as before. A node handing on a frame it held returns that frame's whole
pool as a ``HeldFrame``: it replaces the tick's pool (which may be a newer frame's).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from facepriv.config import PSEUDO_INPUTS
from facepriv.errors import ConfigError

logger = logging.getLogger("facepriv.runner")


class PipelineNode(Protocol):
    node_name: str
    inputs: list[str]
    outputs: list[str]
    failed_items: list[str]

    def run(self, inputs: dict[str, Any]) -> dict[str, Any] | None: ...

    def release(self, completed: bool = True) -> None: ...


@dataclass
class RunSummary:
    """What a run did: frames out, wall time and the items nodes could not process."""

    iterations: int = 0
    seconds: float = 0.0
    failed_items: list[str] = field(default_factory=list)
    node_seconds: dict[str, float] = field(default_factory=dict)


def check_channel(
    steps: Sequence[tuple[str, Sequence[str], Sequence[str]]], provided: Sequence[str] = ()
) -> None:
    """Fail before the first frame if a node needs a key no earlier node produces.

    ``steps`` holds (node name, input keys, output keys) in pipeline order, so the
    check can run from the node specs, before any model is loaded. ``provided`` are keys
    the caller puts in the data pool itself (``facepriv eval`` feeds images directly).
    """
    if not steps:
        raise ConfigError("the pipeline has no nodes: list at least an input node")
    produced: list[str] = list(provided)
    for index, (name, inputs, outputs) in enumerate(steps):
        needed = [key for key in inputs if key not in PSEUDO_INPUTS]
        if index == 0 and needed and not provided:
            raise ConfigError(
                f"'{name}' cannot come first: it needs {', '.join(needed)}; "
                "start the pipeline with an input node such as input.visual"
            )
        missing = [key for key in needed if key not in produced]
        if missing:
            pool = ", ".join(produced) or "nothing"
            raise ConfigError(
                f"'{name}' needs {', '.join(missing)}, which no earlier node "
                f"produces (the data pool holds: {pool}): add or reorder nodes"
            )
        produced.extend(key for key in outputs if key not in produced)


class HeldFrame(dict):
    """The whole data pool of a frame a node held, handed on later: the runner takes it in
    place of the tick's pool, instead of laying it over (and appending to) a newer frame's."""


def merge_outputs(data: dict[str, Any], outputs: dict[str, Any], appends: Sequence[str] = ()) -> None:
    """Lay a node's ``outputs`` over the data pool; keys in ``appends`` that the pool already
    holds get the new rows added after the old ones instead."""
    for key, value in outputs.items():
        old = data.get(key)
        if key in appends and old is not None:
            if isinstance(old, list) and isinstance(value, list):
                value = old + value
            else:
                new = np.asarray(value)
                value = np.concatenate([np.asarray(old).reshape((-1, *new.shape[1:])), new])
        data[key] = value


def _inputs_for(node: PipelineNode, data: dict[str, Any]) -> dict[str, Any]:
    if "all" in node.inputs:
        return data
    return {key: data[key] for key in node.inputs if key in data}


class Pipeline:
    """An ordered, channel-checked list of nodes."""

    def __init__(self, nodes: Sequence[PipelineNode]) -> None:
        check_channel([(node.node_name, node.inputs, node.outputs) for node in nodes])
        self.nodes = list(nodes)

    def run(self, num_iter: int | None = None, on_tick: Callable[[], None] | None = None) -> RunSummary:
        """Tick until the input ends (or ``num_iter`` frames are out); ``on_tick`` is called
        after every tick, a frame held included: a sign of life for a supervisor."""
        summary = RunSummary(node_seconds={node.node_name: 0.0 for node in self.nodes})
        started = time.perf_counter()
        completed = False
        try:
            while num_iter is None or summary.iterations < num_iter:
                data: dict[str, Any] | None = {}
                for node in self.nodes[self._first_to_run():]:
                    if data.get("pipeline_end") and "pipeline_end" not in node.inputs:
                        continue
                    tick = time.perf_counter()
                    outputs = node.run(_inputs_for(node, data))
                    summary.node_seconds[node.node_name] += time.perf_counter() - tick
                    if outputs is None:  # the node holds this frame for now
                        data = None
                        break
                    if isinstance(outputs, HeldFrame):
                        data = dict(outputs)
                    else:
                        merge_outputs(data, outputs, getattr(node, "appends", ()))
                if on_tick is not None:
                    on_tick()
                if data is None:
                    continue
                if data.get("pipeline_end"):
                    break
                summary.iterations += 1
            completed = True
        finally:
            self._release(completed)
            summary.seconds = time.perf_counter() - started
        for node in self.nodes:
            summary.failed_items.extend(node.failed_items)
        return summary

    def _first_to_run(self) -> int:
        """The node that starts this tick: the last one with frames to hand on, else the input."""
        for index in range(len(self.nodes) - 1, 0, -1):
            pending = getattr(self.nodes[index], "pending", None)
            if pending is not None and pending():
                return index
        return 0

    def _release(self, completed: bool) -> None:
        for node in self.nodes:
            try:
                node.release(completed)
            except Exception:  # one failing release must not keep the others open
                logger.exception("releasing %s failed", node.node_name)
