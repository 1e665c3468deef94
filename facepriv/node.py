"""The node contract, PeekingDuck style.

A node lives in ``facepriv/nodes/<type>/<name>.py`` as a class ``Node`` with a YAML of
the same name beside it that declares its ``input``/``output`` data keys and its
settings. ``Node(config, **overrides)`` merges and validates those settings, then
``run(inputs) -> outputs`` is called once per frame with the declared inputs.

Custom nodes (``custom_nodes.<type>.<name>``, see :mod:`facepriv.custom_nodes`) subclass
this class too; PeekingDuck's ``AbstractNode(config, node_path=__name__, **kwargs)`` call
works unchanged.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from facepriv.config import NodeSpec, node_spec, resolve_node_config, resolve_node_name
from facepriv.custom_nodes import PREFIX, is_custom, load_custom_class


class AbstractNode:
    """Base of every node: settings from YAML defaults plus overrides, declared keys."""

    spec: NodeSpec

    def __init__(
        self, config: dict[str, Any] | None = None, node_path: str | None = None, **overrides: Any
    ) -> None:
        # PeekingDuck nodes pass node_path=__name__ (and pkd_base_dir, which means nothing here).
        overrides.pop("pkd_base_dir", None)
        self.node_name = node_name_of(node_path or type(self).__module__)
        self.spec = node_spec(self.node_name)
        self.config = resolve_node_config(self.node_name, config, overrides)
        self.inputs: list[str] = list(self.spec.inputs)
        self.outputs: list[str] = list(self.spec.outputs)
        self.appends: list[str] = list(self.spec.appends)  # outputs added to earlier ones (runner)
        self.logger = logging.getLogger(f"facepriv.{self.node_name}")
        # Problems that did not stop the run (for example an unreadable file in a
        # folder); the run reports them and exits non-zero.
        self.failed_items: list[str] = []
        # Every node's resolved settings, in pipeline order, set by the API that built the
        # pipeline: lets a node record how the run was configured (output.audit_log).
        self.run_settings: list[tuple[str, dict[str, Any]]] = []
        for key, value in self.config.items():
            setattr(self, key, value)

    def run(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        """Outputs for this frame, or None to hold the frame (see ``pending``)."""
        raise NotImplementedError

    def pending(self) -> bool:
        """True while the node holds frames it can hand on without new input; the
        runner then starts the next tick at this node with an empty data pool."""
        return False

    def release(self, completed: bool = True) -> None:
        """Free devices, windows and files. ``completed`` is False when the run was
        interrupted or failed: writers then discard what they had not finished."""

    def reset(self) -> None:
        """Forget what the last run left behind (frames held when it stopped early), keeping
        what is costly to load: called instead of ``release`` on a node a job keeps loaded
        from one file's run to the next."""


def node_name_of(module: str) -> str:
    """A node's name from its module: ``facepriv.nodes.dabble.fps`` is ``dabble.fps``, a module
    loaded from a custom folder, ``custom_nodes.dabble.count_faces``, keeps its full name."""
    parts = module.split(".")
    if PREFIX in parts[:-2]:
        return ".".join(parts[parts.index(PREFIX):][:3])
    return ".".join(parts[-2:])


def load_node_class(name: str) -> type[AbstractNode]:
    """Import ``facepriv.nodes.<type>.<name>`` (or a custom node) and return its ``Node`` class."""
    canonical = resolve_node_name(name)
    if is_custom(canonical):
        return load_custom_class(canonical, AbstractNode)
    module = importlib.import_module(f"facepriv.nodes.{canonical}")
    return module.Node


def build_node(name: str, *layers: dict[str, Any] | None) -> AbstractNode:
    """Instantiate a node with its settings layers merged in order."""
    canonical = resolve_node_name(name)
    settings = resolve_node_config(canonical, *layers)  # before importing heavy modules
    return load_node_class(canonical)(settings)
