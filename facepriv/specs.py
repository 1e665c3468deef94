"""Node specs: what a node's YAML declares, read without importing any node module.

A node's YAML (``facepriv/nodes/<type>/<name>.yml``) declares its data keys, its settings
(default, type, allowed range: ``facepriv.settings``) and how jobs treat it (``job:``,
``facepriv.declarations``). Reading them is cheap, so ``facepriv nodes`` and ``--help`` stay
fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from facepriv.declarations import JobDeclaration, parse_job_block
from facepriv.errors import ConfigError
from facepriv.settings import defaults_of

NODE_TYPES = ("input", "model", "draw", "dabble", "output")
NODES_DIR = Path(__file__).parent / "nodes"
SHARED_DIR = NODES_DIR / "shared"  # settings several nodes share (``include:``)


@dataclass(frozen=True)
class NodeSpec:
    """What a node's YAML declares: data keys in and out, and its settings."""

    name: str
    description: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    keys: dict[str, dict[str, Any]]
    legacy_node_names: tuple[str, ...] = ()
    legacy_keys: dict[str, str] = field(default_factory=dict)
    # Outputs added to what earlier nodes put under the same keys instead of replacing it
    # (``append:`` in the YAML): a second detector adds its boxes to the first one's.
    appends: tuple[str, ...] = ()
    # How a job spread over processes treats the node (``job:``, see facepriv.declarations).
    job: JobDeclaration = field(default_factory=JobDeclaration)

    def defaults(self) -> dict[str, Any]:
        return defaults_of(self.keys)


def _read_spec(path: Path) -> NodeSpec:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return spec_from_yaml(f"{path.parent.name}.{path.stem}", raw)


def spec_from_yaml(name: str, raw: dict[str, Any]) -> NodeSpec:
    """The spec a node's parsed YAML (typed ``keys:`` form) declares; ``include: [group]``
    adds the settings of ``facepriv/nodes/shared/<group>.yml`` (several nodes' own keys,
    written once), listed after the node's own."""
    keys = dict(raw.get("keys") or {})
    for key, rule in included_keys(name, raw.get("include") or []).items():
        keys.setdefault(key, rule)
    legacy_keys = {
        old: key for key, rule in keys.items() for old in rule.get("legacy_names", [])
    }
    return NodeSpec(
        name=name,
        description=raw.get("description", "").strip(),
        inputs=tuple(raw.get("input", [])),
        outputs=tuple(raw.get("output", [])),
        keys=keys,
        legacy_node_names=tuple(raw.get("legacy_node_names", [])),
        legacy_keys=legacy_keys,
        appends=tuple(raw.get("append", [])),
        job=parse_job_block(name, raw.get("job")),
    )


def included_keys(name: str, groups: list[str]) -> dict[str, dict[str, Any]]:
    """The settings of shared key groups a node's YAML includes."""
    keys: dict[str, dict[str, Any]] = {}
    for group in groups:
        path = SHARED_DIR / f"{group}.yml"
        if not isinstance(group, str) or not path.is_file():
            known = ", ".join(sorted(p.stem for p in SHARED_DIR.glob("*.yml")))
            raise ConfigError(f"node '{name}' includes '{group}', which is not a shared key group: "
                              f"use {known}")
        keys.update(yaml.safe_load(path.read_text(encoding="utf-8"))["keys"])
    return keys


@lru_cache(maxsize=1)
def node_specs() -> dict[str, NodeSpec]:
    """Every node shipped with facepriv, by its ``type.name``."""
    specs = {}
    for node_type in NODE_TYPES:
        for path in sorted((NODES_DIR / node_type).glob("*.yml")):
            spec = _read_spec(path)
            specs[spec.name] = spec
    return specs
