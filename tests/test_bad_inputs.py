"""The bad-input catalogue: every mistake a user can make ends in ONE clear line.

Each case runs ``python -m facepriv`` in a subprocess (through ``main()``), as a user
would, and checks the exit code (2 for config and usage errors, 1 for a run that
finished but could not process some inputs), that stderr holds exactly one non-log
line, starting with ``error:``, that names the problem and says how to fix it, that no
traceback leaks, and that the user's input files are left exactly as they were.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import error_lines, output_files, run_cli

DISPLAY_VARS = ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")


# --------------------------------------------------------------------------- helpers


def tree_hashes(*roots: Path) -> dict[str, str]:
    """{path: sha256} of every file under (or at) ``roots``: contents and file set."""
    hashes = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            hashes[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def q(value: str | Path) -> str:
    """A YAML-safe scalar for a path (JSON strings are valid YAML)."""
    return json.dumps(str(value))


def env_without_display() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in DISPLAY_VARS}


class Workspace:
    """tmp_path/in holds the user's inputs (config, media); outputs go to tmp_path/out."""

    def __init__(self, root: Path, sample_video: Path, request: pytest.FixtureRequest) -> None:
        self.root = root
        self.inputs = root / "in"
        self.inputs.mkdir()
        self.out = root / "out"
        self.sample_video = sample_video
        self._request = request
        self.watched: list[Path] = [self.inputs, sample_video]

    def photos(self, count: int = 2) -> list[Path]:
        """Real photos from the shared data, copied into ``in/photos`` (skip if absent)."""
        faces_dir: Path = self._request.getfixturevalue("faces_dir")
        found = sorted((faces_dir / "images" / "fddb").glob("*.jpg"))[:count]
        if len(found) < count:
            pytest.skip(f"fewer than {count} photos in {faces_dir}/images/fddb")
        folder = self.inputs / "photos"
        folder.mkdir(exist_ok=True)
        return [Path(shutil.copy(photo, folder / photo.name)) for photo in found]

    def config(self, text: str, name: str = "config.yml") -> str:
        path = self.inputs / name
        path.write_text(text, encoding="utf-8")
        return str(path)

    def writer_config(self, source: str | Path, *middle: str) -> str:
        """input.visual(source) -> middle nodes -> output.media_writer(out)."""
        lines = ["nodes:", "- input.visual:", f"    source: {q(source)}"]
        lines += [f"- {node}" for node in middle]
        lines += ["- output.media_writer:", f"    output_dir: {q(self.out)}"]
        return self.config("\n".join(lines) + "\n")


def run_args(config: str, *extra: str) -> list[str]:
    return ["run", "--config_path", config, "--log_level", "error", *extra]


@dataclass
class Case:
    id: str
    setup: Callable[[Workspace], list[str]]
    fragments: tuple[str, ...]
    code: int = 2
    env: Callable[[], dict[str, str]] | None = None
    check: Callable[[Workspace, subprocess.CompletedProcess], None] | None = None
    marks: list = field(default_factory=list)


# --------------------------------------------------------------------------- case setups


def missing_config(ws: Workspace) -> list[str]:
    return run_args(str(ws.inputs / "nope.yml"))


def config_is_folder(ws: Workspace) -> list[str]:
    (ws.inputs / "configs.yml").mkdir()
    return run_args(str(ws.inputs / "configs.yml"))


def yaml_syntax_error(ws: Workspace) -> list[str]:
    return run_args(ws.config("nodes:\n- input.visual:\n    source: [samples/a.mp4\n- output.screen\n"))


def not_utf8_config(ws: Workspace) -> list[str]:
    path = ws.inputs / "latin1.yml"
    path.write_bytes("nodes:\n- input.visual:\n    source: caf\u00e9.jpg\n".encode("latin-1"))
    return run_args(str(path))


def no_nodes(ws: Workspace) -> list[str]:
    return run_args(ws.config("steps:\n- input.visual\n- output.media_writer\n"))


def empty_nodes(ws: Workspace) -> list[str]:
    return run_args(ws.config("nodes: []\n"))


def unknown_top_level_key(ws: Workspace) -> list[str]:
    return run_args(ws.config("nodes:\n- input.visual\nsettings:\n  fast: true\n"))


def unknown_node(ws: Workspace) -> list[str]:
    return run_args(ws.config(
        f"nodes:\n- input.visual:\n    source: {q(ws.sample_video)}\n- model.mtcn\n"
        "- draw.mosaic_bbox\n- output.media_writer\n"
    ))


def unknown_key(ws: Workspace) -> list[str]:
    return run_args(ws.config(
        f"nodes:\n- input.visual:\n    sorce: {q(ws.sample_video)}\n- output.media_writer\n"
    ))


def wrong_type(ws: Workspace) -> list[str]:
    return run_args(ws.config(
        f"nodes:\n- input.visual:\n    source: {q(ws.sample_video)}\n    mirror_image: 'yes'\n"
        f"- output.media_writer:\n    output_dir: {q(ws.out)}\n"
    ))


def bad_choice(ws: Workspace) -> list[str]:
    return run_args(ws.writer_config(ws.sample_video, "dabble.fps", "draw.legend:\n    position: middle"))


def mtcnn_threshold_out_of_range(ws: Workspace) -> list[str]:
    return run_args(ws.config(
        f"nodes:\n- input.visual:\n    source: {q(ws.sample_video)}\n"
        "- model.mtcnn:\n    score_threshold: 1.5\n"
        f"- draw.mosaic_bbox\n- output.media_writer:\n    output_dir: {q(ws.out)}\n"
    ))


def mtcnn_min_size_out_of_range_in_node_config(ws: Workspace) -> list[str]:
    config = ws.writer_config(ws.sample_video, "model.mtcnn", "draw.mosaic_bbox")
    return run_args(config, "--node_config", '{"model.mtcnn": {"min_size": 5}}')


def missing_source(ws: Workspace) -> list[str]:
    return run_args(ws.writer_config(ws.inputs / "holiday.mp4"))


def unreadable_image(ws: Workspace) -> list[str]:
    fake = ws.inputs / "x.jpg"
    fake.write_text("this is not a JPEG\n", encoding="utf-8")
    return run_args(ws.writer_config(fake))


def damaged_video(ws: Workspace) -> list[str]:
    fake = ws.inputs / "clip.mp4"
    fake.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    return run_args(ws.writer_config(fake))


def unsupported_extension(ws: Workspace) -> list[str]:
    notes = ws.inputs / "notes.txt"
    notes.write_text("faces: none\n", encoding="utf-8")
    return run_args(ws.writer_config(notes))


def empty_folder(ws: Workspace) -> list[str]:
    folder = ws.inputs / "empty"
    folder.mkdir()
    (folder / "readme.txt").write_text("no media here\n", encoding="utf-8")
    return run_args(ws.writer_config(folder))


def unwritable_output(ws: Workspace) -> list[str]:
    blocker = ws.inputs / "afile"
    blocker.write_text("a regular file, not a folder\n", encoding="utf-8")
    return run_args(ws.config(
        f"nodes:\n- input.visual:\n    source: {q(ws.sample_video)}\n"
        f"- output.media_writer:\n    output_dir: {q(blocker / 'out')}\n"
    ))


def csv_path_not_csv(ws: Workspace) -> list[str]:
    return run_args(ws.config(
        f"nodes:\n- input.visual:\n    source: {q(ws.sample_video)}\n"
        f"- output.csv_writer:\n    file_path: {q(ws.out / 'stats.txt')}\n    stats_to_track: [filename]\n"
    ))


def no_display(ws: Workspace) -> list[str]:
    return run_args(ws.config(
        f"nodes:\n- input.visual:\n    source: {q(ws.sample_video)}\n- output.screen\n"
    ))


def missing_webcam(ws: Workspace) -> list[str]:
    return run_args(ws.writer_config(57))


def refused_stream(ws: Workspace) -> list[str]:
    return run_args(ws.writer_config("rtsp://127.0.0.1:9/live"))


def channel_error(ws: Workspace) -> list[str]:
    return run_args(ws.writer_config(ws.sample_video, "draw.mosaic_bbox"))


def legend_shows_missing_key(ws: Workspace) -> list[str]:
    return run_args(ws.writer_config(ws.sample_video, "draw.legend:\n    show: [bboxes]"))


def bad_node_config_text(ws: Workspace) -> list[str]:
    return run_args(ws.writer_config(ws.sample_video), "--node_config", "{input.visual: source=a.mp4")


def node_config_not_a_mapping(ws: Workspace) -> list[str]:
    return run_args(ws.writer_config(ws.sample_video), "--node_config", '{"input.visual": "a.mp4"}')


def node_config_node_not_in_config(ws: Workspace) -> list[str]:
    return run_args(ws.writer_config(ws.sample_video), "--node_config", '{"model.mtcnn": {"min_size": 20}}')


def node_config_unknown_node(ws: Workspace) -> list[str]:
    return run_args(ws.writer_config(ws.sample_video), "--node_config", '{"input.visuals": {"source": 0}}')


def num_iter_zero(ws: Workspace) -> list[str]:
    return run_args(ws.writer_config(ws.sample_video), "--num_iter", "0")


def unknown_option(ws: Workspace) -> list[str]:
    return run_args(ws.writer_config(ws.sample_video), "--num-iter", "3")


def unknown_log_level(ws: Workspace) -> list[str]:
    return ["run", "--config_path", ws.writer_config(ws.sample_video), "--log_level", "loud"]


def unknown_node_type(ws: Workspace) -> list[str]:
    return ["nodes", "models"]


def existing_output(ws: Workspace) -> list[str]:
    """An output that facepriv did not write (a run of the same command skips its own)."""
    photo = ws.photos(1)[0]
    ws.out.mkdir()
    (ws.out / photo.name).write_bytes(b"someone else's file\n")
    ws.watched.append(ws.out)  # kept as it was, and nothing added
    return run_args(ws.writer_config(photo))


def folder_with_one_bad_image(ws: Workspace) -> list[str]:
    ws.photos(2)
    (ws.inputs / "photos" / "broken.jpg").write_text("not an image\n", encoding="utf-8")
    return run_args(ws.writer_config(ws.inputs / "photos"))


# --------------------------------------------------------------------------- extra checks


def check_no_outputs(ws: Workspace, result: subprocess.CompletedProcess) -> None:
    written = sorted(p.name for p in ws.out.rglob("*")) if ws.out.exists() else []
    assert written == [], f"a failed run left {written} behind"  # not even a manifest


def check_good_images_written(ws: Workspace, result: subprocess.CompletedProcess) -> None:
    import cv2

    good = sorted(p.name for p in (ws.inputs / "photos").iterdir() if p.name != "broken.jpg")
    assert output_files(ws.out) == good
    for name in good:
        written = cv2.imread(str(ws.out / name))
        original = cv2.imread(str(ws.inputs / "photos" / name))
        assert written is not None and written.shape == original.shape, name
    assert "broken.jpg" in result.stderr  # the log names the file that was skipped


# --------------------------------------------------------------------------- the table

CASES = [
    Case("missing-config", missing_config, ("nope.yml", "does not exist", "facepriv init")),
    Case("config-is-a-folder", config_is_folder, ("--config_path", "configs.yml", "is a directory")),
    Case("yaml-syntax-error", yaml_syntax_error, ("not valid YAML", "line", "fix the syntax")),
    Case("config-not-utf8", not_utf8_config, ("is not UTF-8", "latin1.yml", "save it as UTF-8")),
    Case("no-nodes-key", no_nodes, ("has no 'nodes:' list", "start it with 'nodes:'")),
    Case("empty-nodes-list", empty_nodes, ("'nodes:' must be a non-empty list",)),
    Case("unknown-top-level-key", unknown_top_level_key, ("settings", "only 'nodes:' is allowed")),
    Case("unknown-node", unknown_node, ("unknown node 'model.mtcn'", "did you mean 'model.mtcnn'"),
         check=check_no_outputs),
    Case("unknown-key", unknown_key, ("unknown key 'input.visual.sorce'", "did you mean 'source'",
                                      "valid keys are:", "mirror_image")),
    Case("wrong-type", wrong_type, ("input.visual.mirror_image", "'yes'", "wrong type", "expected bool"),
         check=check_no_outputs),
    Case("value-not-a-choice", bad_choice, ("draw.legend.position", "'middle'", "'top', 'bottom'"),
         check=check_no_outputs),
    Case("mtcnn-threshold-out-of-range", mtcnn_threshold_out_of_range,
         ("model.mtcnn.score_threshold", "1.5", "out of range", "between 0.0 and 1.0"),
         check=check_no_outputs),
    Case("mtcnn-min-size-out-of-range-node-config", mtcnn_min_size_out_of_range_in_node_config,
         ("model.mtcnn.min_size", "5", "out of range", "at least 12"), check=check_no_outputs),
    Case("missing-source", missing_source, ("holiday.mp4", "does not exist", "webcam index"),
         check=check_no_outputs),
    Case("unreadable-image", unreadable_image, ("cannot read image", "x.jpg", "not an image"),
         check=check_no_outputs),
    Case("damaged-video", damaged_video, ("cannot read video", "clip.mp4"), check=check_no_outputs),
    Case("unsupported-extension", unsupported_extension,
         ("notes.txt", "not a supported image or video", ".jpg", ".mp4"), check=check_no_outputs),
    Case("empty-folder", empty_folder, ("holds no images or videos", "supported are", ".jpg")),
    Case("unwritable-output-dir", unwritable_output,
         ("output.media_writer.output_dir", "not writable", "choose a folder")),
    Case("csv-path-not-csv", csv_path_not_csv, ("output.csv_writer.file_path", "must end in .csv"),
         check=check_no_outputs),
    Case("no-display-for-screen", no_display, ("output.screen", "display", "output.media_writer"),
         env=env_without_display),
    Case("missing-webcam", missing_webcam, ("cannot open webcam 57", "input.visual.source"),
         check=check_no_outputs),
    Case("refused-stream", refused_stream, ("cannot open stream", "rtsp://127.0.0.1:9/live"),
         check=check_no_outputs),
    Case("channel-error-mosaic-without-model", channel_error,
         ("'draw.mosaic_bbox' needs bboxes", "add or reorder nodes"), check=check_no_outputs),
    Case("legend-shows-missing-key", legend_shows_missing_key,
         ("draw.legend.show", "bboxes", "fix the key"), check=check_no_outputs),
    Case("bad-node-config-text", bad_node_config_text, ("--node_config", "not a valid mapping", "JSON")),
    Case("node-config-not-a-mapping", node_config_not_a_mapping,
         ("--node_config must map node names to settings",)),
    Case("node-config-node-not-in-config", node_config_node_not_in_config,
         ("--node_config names model.mtcnn", "does not use", "add the node")),
    Case("node-config-unknown-node", node_config_unknown_node,
         ("unknown node 'input.visuals'", "did you mean 'input.visual'")),
    Case("num-iter-zero", num_iter_zero, ("--num_iter", "0", "--help")),
    Case("unknown-cli-option", unknown_option, ("No such option", "--num-iter", "--num_iter", "--help")),
    Case("unknown-log-level", unknown_log_level, ("--log_level", "loud", "debug")),
    Case("unknown-node-type", unknown_node_type, ("unknown node type 'models'", "choose one of", "model")),
    Case("existing-output-without-overwrite", existing_output,
         ("already exists", "overwrite: true", "output_dir")),
    Case("folder-with-one-unreadable-image", folder_with_one_bad_image,
         ("1 input(s) could not be processed", "fix or remove them"), code=1,
         check=check_good_images_written),
]


def test_catalogue_is_large_enough():
    assert len(CASES) >= 14
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case: Case, tmp_path, sample_video, request):
    ws = Workspace(tmp_path, sample_video, request)
    args = case.setup(ws)
    env = case.env() if case.env else None

    before = tree_hashes(*ws.watched)
    result = run_cli(*args, cwd=tmp_path, env=env)

    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == case.code, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1, f"expected one error line, got:\n{result.stderr}"
    line = lines[0]
    assert line.startswith("error: "), line
    for fragment in case.fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    assert tree_hashes(*ws.watched) == before, "the user's input files were changed"
    if case.check:
        case.check(ws, result)


# --------------------------------------------------------------------------- validation before loading


LOAD_CHECK = """\
import json, sys
from facepriv.cli import main
try:
    main({argv!r})
except SystemExit as done:
    code = done.code
except BaseException as err:  # reported below: main() must not let anything escape
    code = f"escaped: {{type(err).__name__}}: {{err}}"
loaded = [name for name in ("tensorflow", "keras", "mtcnn") if name in sys.modules]
with open({report!r}, "w") as handle:
    json.dump({{"code": code, "loaded": loaded}}, handle)
"""


@pytest.mark.parametrize(
    "setup",
    [mtcnn_threshold_out_of_range, mtcnn_min_size_out_of_range_in_node_config],
    ids=["run-config", "node-config"],
)
def test_bad_mtcnn_setting_is_rejected_before_tensorflow_loads(setup, tmp_path, sample_video, request):
    ws = Workspace(tmp_path, sample_video, request)
    report = tmp_path / "report.json"
    script = LOAD_CHECK.format(argv=setup(ws), report=str(report))
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    outcome = json.loads(report.read_text())
    assert outcome["code"] == 2, f"{outcome['code']}\n{result.stderr}"
    assert outcome["loaded"] == [], f"a bad setting loaded {outcome['loaded']} before failing"
