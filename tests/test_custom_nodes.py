"""Custom nodes as PeekingDuck projects have them: ``custom_nodes.<type>.<name>`` read from
``src/custom_nodes`` (or ``--custom_nodes_dir``), in serial runs and in jobs, plus
``init`` and ``create-node``."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from facepriv.custom_nodes import set_custom_nodes_dir
from facepriv.errors import ConfigError
from facepriv.node import build_node, load_node_class, node_name_of

from conftest import error_lines, output_files, run_cli

# A node as a PeekingDuck user writes it: PeekingDuck's import and super() call, untyped YAML.
PD_NODE = '''\
"""Counts the face boxes of every frame and appends the count to a file."""
from typing import Any, Dict

from peekingduck.pipeline.nodes.abstract_node import AbstractNode


class Node(AbstractNode):
    def __init__(self, config: Dict[str, Any] = None, **kwargs: Any) -> None:
        super().__init__(config, node_path=__name__, **kwargs)

    def run(self, inputs: Dict[str, Any]) -> Dict[str, Any]:
        count = len(inputs["bboxes"])
        with open(self.log_path, "a") as handle:
            handle.write(f"{count}\\n")
        return {"face_count": count}
'''
PLAIN_YAML = 'input: ["bboxes"]\noutput: ["face_count"]\n\nlog_path: counts.txt\n'
# The same node on facepriv's base class, no __init__ (its name comes from its module),
# with facepriv's typed YAML.
FACEPRIV_NODE = PD_NODE.replace(
    "from peekingduck.pipeline.nodes.abstract_node import AbstractNode",
    "from facepriv.node import AbstractNode",
).replace(
    "    def __init__(self, config: Dict[str, Any] = None, **kwargs: Any) -> None:\n"
    "        super().__init__(config, node_path=__name__, **kwargs)\n\n", ""
)
TYPED_YAML = (
    "description: Counts the face boxes of every frame.\n"
    'input: ["bboxes"]\noutput: ["face_count"]\n'
    "keys:\n  log_path:\n    default: counts.txt\n    type: str\n"
)
NAME = "custom_nodes.dabble.count_faces"


def make_project(root: Path, code: str = PD_NODE, config: str = PLAIN_YAML) -> Path:
    """A PeekingDuck-style project: src/custom_nodes/dabble/count_faces.py and its YAML."""
    folder = root / "src" / "custom_nodes"
    (folder / "dabble").mkdir(parents=True)
    (folder / "configs" / "dabble").mkdir(parents=True)
    (folder / "dabble" / "count_faces.py").write_text(code, encoding="utf-8")
    (folder / "configs" / "dabble" / "count_faces.yml").write_text(config, encoding="utf-8")
    return folder


def write_config(path: Path, source: Path, output: Path, middle: str) -> Path:
    path.write_text(
        f"nodes:\n- input.visual:\n    source: {json.dumps(str(source))}\n{middle}"
        f"- output.media_writer:\n    output_dir: {json.dumps(str(output))}\n", encoding="utf-8")
    return path


def count_node(log: Path, extra: str = "") -> str:
    return f"- model.centerface\n- {NAME}:\n    log_path: {json.dumps(str(log))}\n{extra}"


def frames_of(video: Path, root: Path, indexes: tuple[int, ...]) -> Path:
    """A folder of a few frames of ``video`` as JPEG images."""
    folder = root / "frames"
    folder.mkdir()
    capture = cv2.VideoCapture(str(video))
    for index in indexes:
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = capture.read()
        assert ok
        cv2.imwrite(str(folder / f"frame{index}.jpg"), frame)
    capture.release()
    return folder


def assert_one_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(autouse=True)
def _default_custom_dir():
    yield
    set_custom_nodes_dir(None)


# --------------------------------------------------------------------------- runs


def test_peekingduck_custom_node_runs_in_a_serial_run(tmp_path, sample_video):
    make_project(tmp_path)
    log = tmp_path / "counts.txt"
    config = write_config(tmp_path / "run.yml", sample_video, tmp_path / "out", count_node(log))
    result = run_cli("run", "--config_path", str(config), "--num_iter", "12", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert error_lines(result.stderr) == []
    counts = [int(line) for line in log.read_text().splitlines()]
    assert len(counts) == 12
    assert sum(counts) >= 6  # the waving man is found on most frames
    assert output_files(tmp_path / "out") == ["peekingduck_wave.mp4"]


@pytest.mark.parametrize("engine", [
    pytest.param(("--workers", "2"), id="local"),
    pytest.param(("--engine", "ray", "--workers", "2"), id="ray", marks=[pytest.mark.slow, pytest.mark.skipif(
        importlib.util.find_spec("ray") is None, reason="the ray extra is not installed")]),
])
def test_custom_node_runs_in_worker_processes_from_custom_nodes_dir(tmp_path, sample_video, engine):
    folder = make_project(tmp_path / "project")
    frames = frames_of(sample_video, tmp_path, (0, 200))
    log = tmp_path / "counts.txt"
    config = write_config(tmp_path / "run.yml", frames, tmp_path / "out", count_node(log))
    # Run from elsewhere: only --custom_nodes_dir (carried in the job spec) finds the node.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_cli("run", "--config_path", str(config), *engine,
                     "--custom_nodes_dir", str(folder), cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert "error:" not in result.stderr  # (Ray prints warnings of its own)
    counts = [int(line) for line in log.read_text().splitlines()]
    assert len(counts) == 2 and sum(counts) >= 1
    assert output_files(tmp_path / "out") == ["frame0.jpg", "frame200.jpg"]


def test_typed_yaml_and_facepriv_base_class(tmp_path, sample_video):
    make_project(tmp_path, FACEPRIV_NODE, TYPED_YAML)
    frames = frames_of(sample_video, tmp_path, (0,))
    log = tmp_path / "counts.txt"
    config = write_config(tmp_path / "run.yml", frames, tmp_path / "out", count_node(log))
    result = run_cli("run", "--config_path", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(log.read_text().splitlines()) == 1

    wrong = write_config(tmp_path / "wrong.yml", frames, tmp_path / "out",
                         f"- model.centerface\n- {NAME}:\n    log_path: 5\n")
    assert_one_error(run_cli("run", "--config_path", str(wrong), cwd=tmp_path),
                     f"{NAME}.log_path = 5", "wrong type")


@pytest.mark.parametrize("yaml_text", [PLAIN_YAML, TYPED_YAML], ids=["plain", "typed"])
def test_unknown_key_is_rejected_in_one_line(tmp_path, yaml_text):
    make_project(tmp_path, config=yaml_text)
    config = write_config(tmp_path / "run.yml", tmp_path, tmp_path / "out",
                          f"- model.centerface\n- {NAME}:\n    log_pth: x.txt\n")
    assert_one_error(run_cli("run", "--config_path", str(config), cwd=tmp_path),
                     f"unknown key '{NAME}.log_pth'", "did you mean 'log_path'")


def test_missing_custom_node_names_where_it_looked(tmp_path):
    config = write_config(tmp_path / "run.yml", tmp_path, tmp_path / "out", f"- {NAME}\n")
    line = assert_one_error(run_cli("run", "--config_path", str(config), cwd=tmp_path),
                            f"unknown node '{NAME}'")
    assert str(tmp_path / "src" / "custom_nodes" / "dabble" / "count_faces.py") in line
    assert "--custom_nodes_dir" in line

    assert_one_error(run_cli("run", "--config_path", str(config), "--custom_nodes_dir",
                             str(tmp_path / "absent"), cwd=tmp_path), "is not a folder")
    make_project(tmp_path)
    (tmp_path / "src/custom_nodes/configs/dabble/count_faces.yml").unlink()
    assert_one_error(run_cli("run", "--config_path", str(config), cwd=tmp_path),
                     "count_faces.yml does not exist")


def test_bad_custom_node_names_and_imports_fail_in_one_line(tmp_path):
    make_project(tmp_path, code="import not_a_module_anywhere\n")
    set_custom_nodes_dir(tmp_path / "src" / "custom_nodes")
    with pytest.raises(ConfigError, match="failed to import: ModuleNotFoundError"):
        load_node_class(NAME)
    with pytest.raises(ConfigError, match="custom_nodes.<type>.<name>"):
        load_node_class("custom_nodes.count_faces")


# --------------------------------------------------------------------------- in process


def test_peekingduck_import_is_served_without_leaving_a_fake_package(tmp_path):
    make_project(tmp_path)
    set_custom_nodes_dir(tmp_path / "src" / "custom_nodes")
    node = build_node(NAME, {"log_path": str(tmp_path / "n.txt")})
    assert node.node_name == NAME
    assert node.run({"bboxes": [[0, 0, 1, 1]] * 3}) == {"face_count": 3}
    assert (tmp_path / "n.txt").read_text() == "3\n"
    assert not any(name.startswith("peekingduck") for name in sys.modules)


def test_node_names_from_module_paths():
    assert node_name_of("facepriv.nodes.dabble.fps") == "dabble.fps"
    assert node_name_of("custom_nodes.dabble.count_faces") == NAME
    assert node_name_of("src.custom_nodes.draw.label") == "custom_nodes.draw.label"


# --------------------------------------------------------------------------- init, create-node


def test_init_makes_the_custom_nodes_folder(tmp_path):
    result = run_cli("init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "src" / "custom_nodes" / "configs").is_dir()


def test_nodes_lists_custom_nodes_after_the_built_in_ones(tmp_path):
    make_project(tmp_path)
    listed = run_cli("nodes", "dabble", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    names = [line.split(":")[0] for line in listed.stdout.splitlines() if not line.startswith(" ")]
    assert names[-1] == NAME and "dabble.fps" in names
    assert "    log_path: 'counts.txt'" in listed.stdout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    chosen = run_cli("nodes", "--custom_nodes_dir", str(tmp_path / "src" / "custom_nodes"), cwd=elsewhere)
    assert NAME in chosen.stdout
    assert NAME not in run_cli("nodes", "model", cwd=tmp_path).stdout
    assert_one_error(run_cli("nodes", "--custom_nodes_dir", str(tmp_path / "none"), cwd=tmp_path),
                     "is not a folder")


def test_create_node_output_runs_unchanged(tmp_path, sample_video):
    result = run_cli("create-node", "--node_type", "dabble", "--node_name", "passthru", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["src/custom_nodes/configs/dabble/passthru.yml",
                       "src/custom_nodes/dabble/passthru.py", "tests/test_passthru.py"]

    frames = frames_of(sample_video, tmp_path, (0,))
    config = write_config(tmp_path / "run.yml", frames, tmp_path / "out",
                          "- custom_nodes.dabble.passthru\n")
    run = run_cli("run", "--config_path", str(config), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert output_files(tmp_path / "out") == ["frame0.jpg"]

    stub = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_passthru.py"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert stub.returncode == 0, stub.stdout + stub.stderr
    assert "1 passed" in stub.stdout

    again = run_cli("create-node", "--node_type", "dabble", "--node_name", "passthru", cwd=tmp_path)
    assert_one_error(again, "passthru.py' already exists")


@pytest.mark.parametrize("args, fragment", [
    (("--node_type", "filter", "--node_name", "x"), "'filter' is not one of"),
    (("--node_type", "draw", "--node_name", "2fast"), "not a valid Python identifier"),
    (("--node_type", "draw", "--node_name", "class"), "not a valid Python identifier"),
])
def test_create_node_validates_its_flags(tmp_path, args, fragment):
    assert_one_error(run_cli("create-node", *args, cwd=tmp_path), fragment)
    assert not (tmp_path / "src").exists()


def test_create_node_prompts_when_flags_are_missing(tmp_path):
    result = subprocess.run([sys.executable, "-m", "facepriv", "create-node"], input="bogus\ndraw\nlabel\n",
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "not one of" in result.stdout + result.stderr  # asked again
    assert (tmp_path / "src/custom_nodes/draw/label.py").is_file()
