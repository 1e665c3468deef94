"""The ``facepriv`` command as a user runs it: a subprocess through ``main()``."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import facepriv
from facepriv.config import load_run_config, node_specs

from conftest import error_lines, output_files, run_cli

NODES_DIR = Path(facepriv.__file__).parent / "nodes"
SAMPLE_SIZE = (710, 540)


def assert_one_error_line(result: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def video_frames(path: Path) -> tuple[int, set[tuple[int, int]]]:
    """Decode every frame: (count, set of (width, height))."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"cannot open {path}"
    count, sizes = 0, set()
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            count += 1
            sizes.add((frame.shape[1], frame.shape[0]))
    finally:
        capture.release()
    return count, sizes


def write_config(path: Path, source: str | Path, output_dir: str = "out") -> Path:
    path.write_text(
        "nodes:\n"
        "- input.visual:\n"
        f"    source: {json.dumps(str(source))}\n"
        "- dabble.fps\n"
        "- draw.legend\n"
        "- output.media_writer:\n"
        f"    output_dir: {json.dumps(output_dir)}\n",
        encoding="utf-8",
    )
    return path


# --------------------------------------------------------------------------- help, version


def test_help_lists_commands(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for word in ("Usage:", "run", "nodes", "init", "--version", "--help"):
        assert word in result.stdout
    assert result.stderr == ""


def test_short_help_flag(tmp_path):
    result = run_cli("-h", cwd=tmp_path)
    assert result.returncode == 0
    assert "Commands:" in result.stdout


def test_run_help_lists_options(tmp_path):
    result = run_cli("run", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for option in ("--config_path", "--node_config", "--num_iter", "--log_level", "pipeline_config.yml",
                   "--workers", "--engine", "--address", "--force"):
        assert option in result.stdout
    for level in ("debug", "info", "warning", "error", "critical"):
        assert level in result.stdout


def test_version_prints_package_version(tmp_path):
    result = run_cli("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert facepriv.__version__ in result.stdout
    assert "facepriv" in result.stdout


LIGHT_CHECK = """\
import json, sys
from facepriv.cli import main
try:
    main({argv!r})
except SystemExit as done:
    code = done.code
else:
    code = "no SystemExit"
heavy = [name for name in ("tensorflow", "cv2", "keras", "mtcnn", "numpy", "ray") if name in sys.modules]
with open({report!r}, "w") as handle:
    json.dump({{"code": code, "heavy": heavy}}, handle)
"""


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["--version"], ["run", "--help"], ["nodes"], ["nodes", "model"], ["init"],
     ["init", "--config_path", "other.yml"], ["create-node", "--node_type", "dabble", "--node_name", "n"]],
    ids=lambda argv: " ".join(argv),
)
def test_light_commands_do_not_import_tensorflow_or_cv2(tmp_path, argv):
    report = tmp_path / "report.json"
    script = LIGHT_CHECK.format(argv=argv, report=str(report))
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(report.read_text())
    assert outcome["code"] == 0, result.stderr
    assert outcome["heavy"] == [], f"'{' '.join(argv)}' imported {outcome['heavy']}"


# --------------------------------------------------------------------------- nodes


def _shipped_node_names() -> list[str]:
    """type.name of every node YAML, found without asking facepriv (nodes/shared/ holds key
    groups nodes include, not nodes)."""
    return sorted(f"{path.parent.name}.{path.stem}" for path in NODES_DIR.glob("*/*.yml")
                  if path.parent.name != "shared")


def _node_blocks(stdout: str) -> dict[str, list[str]]:
    """Output of ``facepriv nodes`` split into {node name: its indented lines}."""
    blocks: dict[str, list[str]] = {}
    current = None
    for line in stdout.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            current = line.split(":", 1)[0]
            assert current not in blocks, f"{current} listed twice"
            blocks[current] = []
        else:
            assert current is not None, f"indented line before any node: {line!r}"
            blocks[current].append(line.strip())
    return blocks


def test_nodes_lists_every_node_with_keys_and_defaults(tmp_path):
    result = run_cli("nodes", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    names = _shipped_node_names()
    assert {"input.visual", "model.mtcnn", "draw.mosaic_bbox", "draw.blur_bbox", "draw.legend",
            "dabble.fps", "output.screen", "output.media_writer", "output.csv_writer"} <= set(names)
    header_lines = [line for line in result.stdout.splitlines() if line and not line.startswith(" ")]
    for name in names:
        assert sum(line.startswith(f"{name}:") for line in header_lines) == 1, name
    blocks = _node_blocks(result.stdout)
    assert sorted(blocks) == names
    specs = node_specs()
    for name in names:
        raw = yaml.safe_load((NODES_DIR / name.replace(".", "/")).with_suffix(".yml").read_text())
        for key in raw.get("keys") or {}:
            expected = f"{key}: {specs[name].defaults()[key]!r}"
            assert expected in blocks[name], f"{name}: {expected!r} missing from {blocks[name]}"
    # A few defaults spelled out, independent of the spec reader.
    assert "score_threshold: 0.2" in blocks["model.mtcnn"]
    assert "min_size: 40" in blocks["model.mtcnn"]
    assert "detect_every: 1" in blocks["model.mtcnn"] and "detect_every: 1" in blocks["model.centerface"]
    assert "overwrite: False" in blocks["output.media_writer"]
    assert "output_dir: 'output'" in blocks["output.media_writer"]
    assert "source: 0" in blocks["input.visual"]
    assert "mosaic_level: 5" in blocks["draw.mosaic_bbox"]


def test_nodes_of_one_type(tmp_path):
    result = run_cli("nodes", "draw", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    blocks = _node_blocks(result.stdout)
    assert sorted(blocks) == [name for name in _shipped_node_names() if name.startswith("draw.")]
    assert {"draw.mosaic_bbox", "draw.blur_bbox", "draw.legend"} <= set(blocks)
    assert "blur_kernel_size: 50" in blocks["draw.blur_bbox"]


def test_nodes_unknown_type_fails_in_one_line(tmp_path):
    result = run_cli("nodes", "bogus", cwd=tmp_path)
    assert_one_error_line(result, 2, "bogus", "input", "draw", "output")
    assert result.stdout == ""


# --------------------------------------------------------------------------- init


def test_init_writes_a_loadable_config_and_never_overwrites(tmp_path):
    first = run_cli("init", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    config = tmp_path / "pipeline_config.yml"
    assert config.is_file()
    assert "pipeline_config.yml" in first.stdout
    run_config = load_run_config(config)
    names = [name for name, _ in run_config.nodes]
    assert names[0] == "input.visual"
    assert set(names) <= set(node_specs())

    before = config.read_bytes()
    second = run_cli("init", cwd=tmp_path)
    assert_one_error_line(second, 2, "already exists", "--config_path")
    assert config.read_bytes() == before


def test_init_refuses_to_replace_a_users_file(tmp_path):
    config = tmp_path / "pipeline_config.yml"
    config.write_text("nodes:\n- input.visual\n# mine\n", encoding="utf-8")
    before = config.read_bytes()
    result = run_cli("init", cwd=tmp_path)
    assert_one_error_line(result, 2, "already exists")
    assert config.read_bytes() == before


def test_init_with_config_path(tmp_path):
    result = run_cli("init", "--config_path", "other.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "other.yml").is_file()
    assert not (tmp_path / "pipeline_config.yml").exists()
    assert "other.yml" in result.stdout
    load_run_config(tmp_path / "other.yml")


# --------------------------------------------------------------------------- run


def test_run_end_to_end_on_sample_video(tmp_path, sample_video):
    source_hash = sha256(sample_video)
    config = write_config(tmp_path / "run.yml", sample_video, output_dir=str(tmp_path / "out"))
    result = run_cli("run", "--config_path", str(config), "--num_iter", "20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert error_lines(result.stderr) == []
    output = tmp_path / "out" / "peekingduck_wave.mp4"
    assert output.is_file()
    assert output_files(tmp_path / "out") == ["peekingduck_wave.mp4"]
    count, sizes = video_frames(output)
    assert count == 20
    assert sizes == {SAMPLE_SIZE}
    assert sha256(sample_video) == source_hash


def _prepare_override_run(tmp_path: Path) -> Path:
    """A config whose source does not exist, and an output that is already there."""
    config = write_config(tmp_path / "run.yml", tmp_path / "missing.mp4")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "peekingduck_wave.mp4").write_bytes(b"old")
    return config


def test_node_config_json_overrides_the_run_config(tmp_path, sample_video):
    config = _prepare_override_run(tmp_path)
    node_config = json.dumps({
        "input.visual": {"source": str(sample_video)},
        "output.media_writer": {"overwrite": True},
    })
    assert "true" in node_config
    result = run_cli("run", "--config_path", str(config), "--node_config", node_config,
                     "--num_iter", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    count, sizes = video_frames(tmp_path / "out" / "peekingduck_wave.mp4")
    assert (count, sizes) == (3, {SAMPLE_SIZE})


def test_node_config_python_literal_overrides_the_run_config(tmp_path, sample_video):
    config = _prepare_override_run(tmp_path)
    node_config = repr({
        "input.visual": {"source": str(sample_video)},
        "output.media_writer": {"overwrite": True},
    })
    assert "True" in node_config
    result = run_cli("run", "--config_path", str(config), "--node_config", node_config,
                     "--num_iter", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    count, sizes = video_frames(tmp_path / "out" / "peekingduck_wave.mp4")
    assert (count, sizes) == (3, {SAMPLE_SIZE})


def test_log_level_debug_is_accepted(tmp_path, sample_video):
    config = write_config(tmp_path / "run.yml", sample_video)
    result = run_cli("run", "--config_path", str(config), "--num_iter", "2", "--log_level", "debug",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert error_lines(result.stderr) == []
    assert (tmp_path / "out" / "peekingduck_wave.mp4").is_file()


def test_log_level_must_be_a_known_level(tmp_path, sample_video):
    config = write_config(tmp_path / "run.yml", sample_video)
    result = run_cli("run", "--config_path", str(config), "--log_level", "loud", cwd=tmp_path)
    assert_one_error_line(result, 2, "--log_level", "loud", "debug")
    assert not (tmp_path / "out").exists()


def test_log_level_error_hides_info_lines(tmp_path, sample_video):
    config = write_config(tmp_path / "run.yml", sample_video)
    result = run_cli("run", "--config_path", str(config), "--num_iter", "2", "--log_level", "error",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "[INFO]" not in result.stderr


def test_default_config_path_is_pipeline_config_in_cwd(tmp_path, sample_video):
    write_config(tmp_path / "pipeline_config.yml", sample_video)
    result = run_cli("run", "--num_iter", "5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    count, sizes = video_frames(tmp_path / "out" / "peekingduck_wave.mp4")
    assert (count, sizes) == (5, {SAMPLE_SIZE})


def test_default_config_path_missing_names_it(tmp_path):
    result = run_cli("run", cwd=tmp_path)
    assert_one_error_line(result, 2, "pipeline_config.yml", "does not exist", "facepriv init")
