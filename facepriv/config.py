"""Run-config loading, node defaults, merging and validation: all of it, in one place.

A node's YAML (``facepriv/nodes/<type>/<name>.yml``) declares its data keys and, for
every setting, its default, type and allowed range. This module reads those files
without importing any node module, so ``facepriv nodes`` and ``--help`` stay fast.

Merge order: node defaults, then the run config, then ``--node_config``. A key that a
node does not know is an error: in a privacy tool a silently ignored typo is a leak.
"""

from __future__ import annotations

import ast
import difflib
import json
import logging
import reprlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from facepriv.batch.engines import ENGINES
from facepriv.declarations import JobDeclaration, parse_job_block
from facepriv.errors import ConfigError

NODE_TYPES = ("input", "model", "draw", "dabble", "output")
NODES_DIR = Path(__file__).parent / "nodes"
PSEUDO_INPUTS = ("all", "none")

logger = logging.getLogger("facepriv.config")

# Values in messages are shown this briefly: a YAML alias bomb (a few lines that expand to
# billions of entries) or 50,000 nested lists must give one short line, not a MemoryError.
_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxlist, _BRIEF.maxdict, _BRIEF.maxtuple = 2, 4, 4, 4
_BRIEF.maxstring = _BRIEF.maxother = _BRIEF.maxlong = 80
BRIEF_CHARS = 120


def brief(value: Any) -> str:
    """``repr(value)`` cut short, whatever its size or depth."""
    text = _BRIEF.repr(value)
    return text if len(text) <= BRIEF_CHARS else text[:BRIEF_CHARS - 3] + "..."


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
        return {key: _default_of(rule) for key, rule in self.keys.items()}


def _default_of(rule: dict[str, Any]) -> Any:
    if rule.get("type") == "dict":
        return {key: _default_of(sub) for key, sub in rule["keys"].items()}
    value = rule.get("default")
    return list(value) if isinstance(value, list) else value


def _read_spec(path: Path) -> NodeSpec:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    # facepriv's own model nodes are kept loaded per worker unless their YAML says otherwise
    # (model.centerface's YAML does not say it yet).
    return spec_from_yaml(f"{path.parent.name}.{path.stem}", raw, kept_default=path.parent.name == "model")


def spec_from_yaml(name: str, raw: dict[str, Any], kept_default: bool = False) -> NodeSpec:
    """The spec a node's parsed YAML (typed ``keys:`` form) declares."""
    keys = raw.get("keys") or {}
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
        job=parse_job_block(name, raw.get("job"), kept_default),
    )


@lru_cache(maxsize=1)
def node_specs() -> dict[str, NodeSpec]:
    """Every node shipped with facepriv, by its ``type.name``."""
    specs = {}
    for node_type in NODE_TYPES:
        for path in sorted((NODES_DIR / node_type).glob("*.yml")):
            spec = _read_spec(path)
            specs[spec.name] = spec
    return specs


def node_spec(name: str) -> NodeSpec:
    """The spec of a built-in node or of a custom node (``custom_nodes.<type>.<name>``)."""
    from facepriv.custom_nodes import custom_spec, is_custom

    return custom_spec(name) if is_custom(name) else node_specs()[name]


def resolve_node_name(name: str) -> str:
    """Map a legacy node name to today's, or fail naming close matches."""
    from facepriv.custom_nodes import custom_spec, is_custom

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


# --------------------------------------------------------------------------- values

def _type_name(rule: dict[str, Any]) -> str:
    kind = rule.get("type", "any")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "list" and "items" in rule:
        length = f" of {rule['length']}" if "length" in rule else ""
        return f"a list{length} {rule['items']} values"
    return kind


def _matches(value: Any, kind: str) -> bool:
    if kind == "any":
        return True
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("float", "number"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind in ("str", "path"):
        return isinstance(value, str)
    if kind == "list":
        return isinstance(value, (list, tuple))
    if kind == "dict":
        return isinstance(value, dict)
    raise ValueError(f"unknown type '{kind}' in a node spec")


def _check_range(where: str, value: Any, rule: dict[str, Any]) -> None:
    low, high = rule.get("min"), rule.get("max")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = (
            f"between {low} and {high}" if low is not None and high is not None
            else f"at least {low}" if low is not None else f"at most {high}"
        )
        raise ConfigError(f"{where} = {brief(value)} is out of range: use a value {bounds}")


def validate_value(where: str, value: Any, rule: dict[str, Any]) -> Any:
    """Check one setting against its rule; return it normalised (ints to floats...)."""
    if value is None:
        if rule.get("nullable") or rule.get("default", 0) is None:
            return None
        raise ConfigError(f"{where} must not be empty: give {_type_name(rule)}")
    kinds = rule.get("type", "any")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if not any(_matches(value, kind) for kind in kinds):
        raise ConfigError(
            f"{where} = {brief(value)} has the wrong type: expected {_type_name(rule)}"
        )
    if "choices" in rule and value not in rule["choices"]:
        choices = ", ".join(repr(c) for c in rule["choices"])
        raise ConfigError(f"{where} = {brief(value)} is not allowed: choose one of {choices}")
    if kinds == ["dict"]:
        return merge_settings(where, rule["keys"], _defaults_of(rule["keys"]), value)
    if kinds == ["list"]:
        return _validate_list(where, list(value), rule)
    if "float" in kinds and isinstance(value, int):
        value = float(value)
    if isinstance(value, (int, float)):
        _check_range(where, value, rule)
    return value


def _defaults_of(keys: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {key: _default_of(rule) for key, rule in keys.items()}


def _validate_list(where: str, value: list[Any], rule: dict[str, Any]) -> list[Any]:
    length = rule.get("length")
    if length is not None and len(value) != length:
        raise ConfigError(
            f"{where} = {brief(value)} must have exactly {length} values, not {len(value)}"
        )
    if rule.get("min_length") and len(value) < rule["min_length"]:
        raise ConfigError(f"{where} must list at least {rule['min_length']} value(s)")
    items = rule.get("items")
    if items is None:
        return value
    item_rule = {"type": items, "min": rule.get("min"), "max": rule.get("max")}
    if "choices" in rule:
        item_rule["choices"] = rule["choices"]
    return [validate_value(f"{where}[{i}]", v, item_rule) for i, v in enumerate(value)]


def merge_settings(
    where: str,
    rules: dict[str, dict[str, Any]],
    base: dict[str, Any],
    overrides: dict[str, Any],
    legacy_keys: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Lay ``overrides`` over ``base``; reject unknown keys, validate known ones."""
    merged = dict(base)
    for key, value in overrides.items():
        if legacy_keys and key in legacy_keys:
            logger.warning("%s.%s is deprecated: use '%s'", where, key, legacy_keys[key])
            key = legacy_keys[key]
        if key not in rules:
            valid = ", ".join(sorted(rules)) or "(none)"
            close = difflib.get_close_matches(str(key), list(rules), n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(f"unknown key '{where}.{key}': {hint}valid keys are: {valid}")
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = {**merged[key], **value}
        merged[key] = value
    return {
        key: validate_value(f"{where}.{key}", merged[key], rules[key]) for key in rules
    }


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
    engine: dict[str, Any] = field(default_factory=lambda: _defaults_of(ENGINE_KEYS))


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
    engine = engine_settings(_defaults_of(ENGINE_KEYS), data.get("engine") or {})
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
