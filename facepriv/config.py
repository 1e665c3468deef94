"""Run configs: loading, node names, and every node's settings merged and validated.

What a node's YAML declares is read by ``facepriv.specs`` (built-in nodes) and
``facepriv.custom_nodes``; each value is checked by ``facepriv.settings``. Nothing here
imports a node module, so ``facepriv nodes`` and ``--help`` stay fast.

Merge order: node defaults, then the run config, then ``--node_config``. A key that a
node does not know is an error: in a privacy tool a silently ignored typo is a leak.
"""

from __future__ import annotations

import ast
import difflib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from facepriv.batch.engines import ENGINES
from facepriv.custom_nodes import custom_spec, is_custom
from facepriv.errors import ConfigError
from facepriv.settings import brief, defaults_of, merge_settings
from facepriv.specs import NodeSpec, node_specs

PSEUDO_INPUTS = ("all", "none")

logger = logging.getLogger("facepriv.config")


def node_spec(name: str) -> NodeSpec:
    """The spec of a built-in node or of a custom node (``custom_nodes.<type>.<name>``)."""
    return custom_spec(name) if is_custom(name) else node_specs()[name]


def resolve_node_name(name: str) -> str:
    """Map a legacy node name to today's, or fail naming close matches."""
    specs = node_specs()
    if name in specs:
        return name
    if is_custom(name):
        custom_spec(name)  # fails naming where it looked
        return name
    for spec in specs.values():
        if name in spec.legacy_node_names:
            logger.warning("node '%s' is deprecated: use '%s' instead", name, spec.name)
            return spec.name
    known = sorted(specs) + [old for s in specs.values() for old in s.legacy_node_names]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else (
        "run 'facepriv nodes' to list the available nodes"
    )
    raise ConfigError(f"unknown node '{name}': {hint}")


def resolve_node_config(name: str, *layers: dict[str, Any] | None) -> dict[str, Any]:
    """A node's final settings: its defaults with each layer laid on in turn."""
    spec = node_spec(name)
    settings = spec.defaults()
    for layer in layers:
        if not layer:
            continue
        if not isinstance(layer, dict):
            raise ConfigError(
                f"settings of '{name}' must be a mapping of key: value, not {brief(layer)}"
            )
        settings = merge_settings(name, spec.keys, settings, layer, spec.legacy_keys)
    return merge_settings(name, spec.keys, settings, {})


# --------------------------------------------------------------------------- run config

# How a run is spread over processes (README "Scale out"): the run config's ``engine:``
# mapping and the run command's --engine/--workers/--address are checked against these.
ENGINE_KEYS: dict[str, dict[str, Any]] = {
    "name": {"default": "local", "type": "str", "choices": list(ENGINES)},
    "workers": {"default": None, "type": "int", "min": 1},
    "address": {"default": None, "type": "str"},
    # A worker that shows no progress for this long (a decoder hung on a damaged file, a
    # stuck network mount) is stopped and its file marked failed; null: never.
    "stall_seconds": {"default": 600.0, "type": "float", "min": 1.0, "nullable": True},
    # A file whose worker died (killed, out of memory, its node lost) or was stopped for
    # stall_seconds is tried again this many times, on any live worker; 0: failed at once.
    "max_retries": {"default": 2, "type": "int", "min": 0},
}


@dataclass
class RunConfig:
    """The nodes of a run, in order, each with its settings from the run config."""

    nodes: list[tuple[str, dict[str, Any]]]
    engine: dict[str, Any] = field(default_factory=lambda: defaults_of(ENGINE_KEYS))


def engine_settings(base: dict[str, Any], overrides: Any) -> dict[str, Any]:
    """Lay ``overrides`` over engine settings ``base``; reject what a job could not honour."""
    if not isinstance(overrides, dict):
        raise ConfigError(
            f"'engine:' must be a mapping such as {{name: ray, workers: 4}}, not {brief(overrides)}"
        )
    settings = merge_settings("engine", ENGINE_KEYS, base, overrides)
    for name, entry in ENGINES.items():
        for key in entry.own_keys:
            if settings[key] is not None and key not in ENGINES[settings["name"]].own_keys:
                raise ConfigError(
                    f"engine.{key} = {brief(settings[key])} is only used by the {name} engine: "
                    f"add --engine {name} (or 'name: {name}' under 'engine:')"
                )
    return settings


def parse_run_config(data: Any, origin: str) -> RunConfig:
    """Turn the parsed YAML of a run config into (node name, overrides) pairs."""
    if not isinstance(data, dict) or "nodes" not in data:
        raise ConfigError(
            f"{origin} has no 'nodes:' list: start it with 'nodes:' followed by "
            "'- input.visual' and the other nodes (see 'facepriv init')"
        )
    unknown = sorted(set(data) - {"nodes", "engine"})
    if unknown:
        raise ConfigError(
            f"{origin}: unknown top-level key(s) {', '.join(unknown)}: only 'nodes:' is allowed "
            "(and 'engine:' for jobs spread over processes)"
        )
    engine = engine_settings(defaults_of(ENGINE_KEYS), data.get("engine") or {})
    entries = data["nodes"]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{origin}: 'nodes:' must be a non-empty list of node names")
    nodes = []
    for entry in entries:
        if isinstance(entry, str):
            name, overrides = entry, {}
        elif isinstance(entry, dict) and len(entry) == 1:
            name, overrides = next(iter(entry.items()))
            overrides = overrides or {}
        else:
            raise ConfigError(
                f"{origin}: node entry {brief(entry)} must be 'type.name' or a one-key mapping "
                "'type.name: {key: value}'"
            )
        if not isinstance(overrides, dict):
            raise ConfigError(
                f"{origin}: settings of '{name}' must be a mapping of key: value, "
                f"not {brief(overrides)}"
            )
        canonical = resolve_node_name(str(name))
        if canonical != name:
            overrides = _rename_legacy_node_keys(canonical, overrides)
        nodes.append((canonical, overrides))
    return RunConfig(nodes=nodes, engine=engine)


def _rename_legacy_node_keys(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Legacy node keys (``input_source`` ...) become today's without a second warning."""
    legacy = node_spec(name).legacy_keys
    return {legacy.get(key, key): value for key, value in overrides.items()}


def load_run_config(path: str | Path) -> RunConfig:
    """Read and check a run-config file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(
            f"config file '{path}' does not exist: pass --config_path to an existing "
            "file, or create one with 'facepriv init'"
        )
    if path.is_dir():
        raise ConfigError(f"config path '{path}' is a folder: pass a .yml file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ConfigError(
            f"config file '{path}' nests too deeply to read: a run config needs only a few levels"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(
            f"config file '{path}' is not valid YAML{where} ({problem}): fix the syntax"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"config file '{path}' is not UTF-8 text: save it as UTF-8 (or check it is a YAML file)"
        ) from None
    except OSError as err:
        raise ConfigError(f"cannot read config file '{path}': {err.strerror or err}") from None
    return parse_run_config(data, str(path))


def parse_node_config(text: str | None) -> dict[str, dict[str, Any]]:
    """Parse ``--node_config``: JSON or a Python literal mapping node -> settings."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        try:
            data = ast.literal_eval(text)
        except (ValueError, SyntaxError, RecursionError, MemoryError):
            raise ConfigError(
                f"--node_config {brief(text)} is not a valid mapping: write it as JSON, e.g. "
                '\'{"model.mtcnn": {"min_size": 20}}\''
            ) from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(
            "--node_config must map node names to settings, e.g. "
            '\'{"input.visual": {"source": "video.mp4"}}\''
        )
    result: dict[str, dict[str, Any]] = {}
    for name, settings in data.items():
        canonical = resolve_node_name(str(name))
        if canonical != name:
            settings = _rename_legacy_node_keys(canonical, settings)
        result.setdefault(canonical, {}).update(settings)
    return result
