"""``facepriv init`` and ``facepriv create-node``: the files of a custom-node project.

The layout is PeekingDuck's, so a project made with either tool runs with both:
``src/custom_nodes/<type>/<name>.py``, ``src/custom_nodes/configs/<type>/<name>.yml``,
and a test stub ``tests/test_<name>.py`` that runs the new node on one frame.
"""

from __future__ import annotations

from pathlib import Path

from facepriv.custom_nodes import DEFAULT_DIR, check_new_node
from facepriv.errors import ConfigError

NODE_TEMPLATE = '''\
"""custom_nodes.{node_type}.{node_name}: made by 'facepriv create-node'; it passes every
frame on unchanged until run() is given something to do."""

from typing import Any, Dict, Optional

from facepriv.node import AbstractNode


class Node(AbstractNode):
    """Settings come from configs/{node_type}/{node_name}.yml (self.<key>), laid over by the
    run config; the data keys it reads and writes are declared there too."""

    def __init__(self, config: Optional[Dict[str, Any]] = None, **kwargs: Any) -> None:
        super().__init__(config, node_path=__name__, **kwargs)

    def run(self, inputs: Dict[str, Any]) -> Dict[str, Any]:
        """Called once per frame with the declared inputs (inputs["img"]); returns the
        declared outputs. Nothing yet: the frame goes on as it came."""
        return {{}}
'''

CONFIG_TEMPLATE = """\
# custom_nodes.{node_type}.{node_name}: the data keys it reads and writes, then its settings.
input: ["img"]
output: []
# Settings, one 'key: default' a line (read as self.<key>; a run config may change them):
# threshold: 0.5
"""

TEST_TEMPLATE = '''\
"""custom_nodes.{node_type}.{node_name} runs on a frame (made by 'facepriv create-node')."""

from pathlib import Path

import numpy as np

from facepriv.custom_nodes import set_custom_nodes_dir
from facepriv.node import build_node

CUSTOM_NODES_DIR = Path(__file__).resolve().parents[1] / "src" / "custom_nodes"


def test_{node_name}_runs_on_a_frame():
    set_custom_nodes_dir(CUSTOM_NODES_DIR)
    node = build_node("custom_nodes.{node_type}.{node_name}")
    frame = np.zeros((48, 64, 3), dtype=np.uint8)
    outputs = node.run({{"img": frame}})
    assert set(outputs) <= set(node.outputs)
    node.release()
'''


def make_custom_nodes_dir(root: Path) -> Path:
    """``src/custom_nodes/configs`` below ``root`` (kept if there)."""
    folder = root / DEFAULT_DIR
    try:
        (folder / "configs").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create '{folder}': {err.strerror or err}") from None
    return folder


def create_node(root: Path, node_type: str, node_name: str) -> list[Path]:
    """Write a pass-through node, its YAML and its test below ``root``; never overwrite."""
    check_new_node(node_type, node_name)
    folder = root / DEFAULT_DIR
    fields = {"node_type": node_type, "node_name": node_name}
    files = {
        folder / node_type / f"{node_name}.py": NODE_TEMPLATE,
        folder / "configs" / node_type / f"{node_name}.yml": CONFIG_TEMPLATE,
        root / "tests" / f"test_{node_name}.py": TEST_TEMPLATE,
    }
    existing = [path for path in files if path.exists()]
    if existing:
        raise ConfigError(
            f"'{existing[0]}' already exists and was left unchanged: choose another --node_name"
        )
    make_custom_nodes_dir(root)
    for path, template in files.items():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("x", encoding="utf-8") as handle:
                handle.write(template.format(**fields))
        except OSError as err:
            raise ConfigError(f"cannot write '{path}': {err.strerror or err}") from None
    return list(files)
