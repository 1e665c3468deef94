"""Custom nodes, PeekingDuck style: ``custom_nodes.<type>.<name>`` in a run config.

PeekingDuck projects keep their own nodes in ``src/custom_nodes/<type>/<name>.py`` with
the YAML in ``src/custom_nodes/configs/<type>/<name>.yml``. Their run configs must run
unchanged, so facepriv looks there (below the current folder, or in the folder given with
``--custom_nodes_dir``) for any node whose name starts with ``custom_nodes.``.

A node's YAML may be PeekingDuck's plain form (``input:``, ``output:`` and then
``key: default`` lines, untyped) or facepriv's typed ``keys:`` form. Either way an
unknown key in a run config is rejected, as for built-in nodes.
"""

from __future__ import annotations

import importlib.util
import keyword
import sys
import types
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from facepriv.errors import ConfigError
from facepriv.settings import brief
from facepriv.specs import NODE_TYPES, NodeSpec, spec_from_yaml

PREFIX = "custom_nodes"
DEFAULT_DIR = Path("src") / PREFIX
# What a plain-form YAML holds besides settings (PeekingDuck's own keys and facepriv's).
_RESERVED = ("input", "output", "description", "keys", "legacy_node_names", "append", "job")
# Modules a PeekingDuck custom node imports its base class from; see _peekingduck_shim.
_PD_MODULE = "peekingduck.pipeline.nodes.abstract_node"

_chosen_dir: Path | None = None


def is_custom(name: str) -> bool:
    """True for ``custom_nodes.<type>.<name>`` names."""
    return name.startswith(PREFIX + ".")


def node_type(name: str) -> str:
    """A node's type (input, model, dabble, draw, output), custom nodes included: what render
    and eval choose nodes by."""
    parts = name.split(".")
    return parts[1] if is_custom(name) and len(parts) > 2 else parts[0]


def set_custom_nodes_dir(path: str | Path | None) -> None:
    """Where custom nodes are looked for from now on; None: ``src/custom_nodes`` below the
    current folder. A job passes this on to its workers (``JobSpec.custom_nodes_dir``)."""
    global _chosen_dir
    if path is not None:
        path = Path(path).resolve()
        if not path.is_dir():
            raise ConfigError(
                f"--custom_nodes_dir '{path}' is not a folder: pass the folder that holds "
                "<type>/<name>.py and configs/<type>/<name>.yml"
            )
    _chosen_dir = path
    custom_spec.cache_clear()


def custom_nodes_dir() -> Path:
    """The folder custom nodes are read from (absolute)."""
    return _chosen_dir if _chosen_dir is not None else (Path.cwd() / DEFAULT_DIR).resolve()


def shared_custom_nodes_dir() -> str | None:
    """The custom folder to hand to worker processes (None when there is none)."""
    folder = custom_nodes_dir()
    return str(folder) if folder.is_dir() else None


def _split(name: str) -> tuple[str, str]:
    parts = name.split(".")
    if len(parts) != 3 or parts[1] not in NODE_TYPES or not parts[2].isidentifier():
        raise ConfigError(
            f"custom node '{name}' must be named custom_nodes.<type>.<name> with <type> one of "
            f"{', '.join(NODE_TYPES)}, e.g. custom_nodes.dabble.count_faces"
        )
    return parts[1], parts[2]


def _files(name: str) -> tuple[Path, Path]:
    node_type, node = _split(name)
    folder = custom_nodes_dir()
    return folder / node_type / f"{node}.py", folder / "configs" / node_type / f"{node}.yml"


@cache
def custom_spec(name: str) -> NodeSpec:
    """The spec of custom node ``name``, read from its YAML (plain or typed form)."""
    code, config = _files(name)
    for path, what in ((code, "code"), (config, "config")):
        if not path.is_file():
            raise ConfigError(
                f"unknown node '{name}': its {what} {path} does not exist (custom nodes are read "
                f"from {custom_nodes_dir()}; pass --custom_nodes_dir or create it with "
                "'facepriv create-node')"
            )
    try:
        raw = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError):
        raise ConfigError(f"custom node config {config} is not valid YAML: fix the syntax") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"custom node config {config} must be a mapping with input: and output:")
    for key in ("input", "output", "append"):
        if not isinstance(raw.get(key, []), list):
            raise ConfigError(f"{config}: '{key}:' must be a list of data keys, not {brief(raw[key])}")
    return spec_from_yaml(name, _typed(raw))


def _typed(raw: dict[str, Any]) -> dict[str, Any]:
    """A plain-form YAML as the typed form: every other top-level key is an untyped setting."""
    keys = raw.get("keys")
    if isinstance(keys, dict) and all(isinstance(rule, dict) for rule in keys.values()):
        return raw
    plain = {key: {"default": value, "type": "any", "nullable": True}
             for key, value in raw.items() if key not in _RESERVED or key == "keys"}
    return {**{key: raw[key] for key in _RESERVED if key in raw and key != "keys"}, "keys": plain}


def load_custom_class(name: str, base: type) -> type:
    """Import custom node ``name`` from its file (as module ``custom_nodes.<type>.<name>``)
    and return its ``Node`` class; ``base`` (facepriv's AbstractNode) is what PeekingDuck's
    import gives it."""
    code, _ = _files(name)
    custom_spec(name)  # the files exist and the YAML reads
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(code):
        module = sys.modules[name]
    else:
        module_spec = importlib.util.spec_from_file_location(name, code)
        if module_spec is None or module_spec.loader is None:
            raise ConfigError(f"custom node '{name}': cannot import {code}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            with _peekingduck_shim(base):
                module_spec.loader.exec_module(module)
        except ConfigError:
            raise
        except Exception as err:
            del sys.modules[name]
            raise ConfigError(f"custom node '{name}' ({code}) failed to import: "
                              f"{type(err).__name__}: {err}") from None
    node_class = getattr(module, "Node", None)
    if not isinstance(node_class, type):
        raise ConfigError(f"custom node '{name}': {code} defines no class 'Node'")
    return node_class


@contextmanager
def _peekingduck_shim(base: type):  # noqa: ANN202 - a context manager
    """While a custom node's module runs, ``from peekingduck.pipeline.nodes.abstract_node
    import AbstractNode`` gives ``base`` (facepriv's AbstractNode), so PeekingDuck nodes run
    unchanged without PeekingDuck installed. sys.modules is restored afterwards."""
    names = [".".join(_PD_MODULE.split(".")[:i]) for i in range(1, 5)]
    saved = {name: sys.modules[name] for name in names if name in sys.modules}
    for name in names[:-1]:
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = []
            sys.modules[name] = package
    shim = types.ModuleType(_PD_MODULE)
    shim.AbstractNode = base  # type: ignore[attr-defined]
    sys.modules[_PD_MODULE] = shim
    try:
        yield
    finally:
        for name in names:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


def custom_node_names() -> list[str]:
    """Every custom node of the custom folder that has both its code and its YAML."""
    folder = custom_nodes_dir()
    return [
        f"{PREFIX}.{node_type}.{config.stem}"
        for node_type in NODE_TYPES
        for config in sorted((folder / "configs" / node_type).glob("*.yml"))
        if config.stem.isidentifier() and (folder / node_type / f"{config.stem}.py").is_file()
    ]


def check_new_node(node_type: str, node_name: str) -> None:
    """What ``create-node`` accepts: a known type and a name Python can import."""
    if node_type not in NODE_TYPES:
        raise ConfigError(f"node type '{node_type}' is not one of {', '.join(NODE_TYPES)}")
    if not node_name.isidentifier() or keyword.iskeyword(node_name):
        raise ConfigError(
            f"node name '{node_name}' is not a valid Python identifier: use letters, digits and "
            "underscores, not starting with a digit (e.g. count_faces)"
        )
