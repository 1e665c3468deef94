"""Node and engine settings: each value checked against its rule from a node's YAML.

Rules give a setting's ``default``, ``type`` (bool, int, float, str, path, list, dict or a
list of them), ``choices``, ``min``/``max``, ``nullable`` and, for lists and dicts, their
items. A key no rule names is an error: in a privacy tool a silently ignored typo is a leak.
"""

from __future__ import annotations

import difflib
import logging
import reprlib
from typing import Any

from facepriv.errors import ConfigError

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


def default_of(rule: dict[str, Any]) -> Any:
    """A setting's default (a dict setting's from its keys' rules; lists copied, never shared)."""
    if rule.get("type") == "dict":
        return {key: default_of(sub) for key, sub in rule["keys"].items()}
    value = rule.get("default")
    return list(value) if isinstance(value, list) else value


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
        return merge_settings(where, rule["keys"], defaults_of(rule["keys"]), value)
    if kinds == ["list"]:
        return _validate_list(where, list(value), rule)
    if "float" in kinds and isinstance(value, int):
        value = float(value)
    if isinstance(value, (int, float)):
        _check_range(where, value, rule)
    return value


def defaults_of(keys: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every setting's default, by key."""
    return {key: default_of(rule) for key, rule in keys.items()}


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


