"""facepriv render as a job (``--workers``, ``--engine ray``): the tracks files spread over
workers, the same outputs as a serial render (the same frames), and a manifest keyed by tracks file, so a
file saved again after review is rendered again and an unchanged one is skipped."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import cv2
import pytest

from facepriv.batch.manifest import MANIFEST_NAME
from facepriv.tracks_file import load_tracks, save_tracks

from conftest import presenter, run_cli
from frame_checks import crop, read_frames, ssim
from test_scale_out import digests, manifest_lines

ADDED_BOX = [20.0, 300.0, 120.0, 420.0]  # plain background, left of the presenter
ADDED_FRAMES = 10
PHOTO_FRAME = 10
ENGINES = [
    pytest.param(("--workers", "2"), id="local"),
    pytest.param(("--engine", "ray", "--workers", "2"), id="ray", marks=[pytest.mark.slow, pytest.mark.skipif(
        importlib.util.find_spec("ray") is None, reason="the ray extra is not installed")]),
]


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory, short_clip: Path) -> dict:
    """Two clips and a photo run through the main job with output.tracks, then reviewed: the
    presenter of clips/first.mp4 kept visible, a box added to clips/second.mp4's first frames;
    and the same files rendered serially (what every job must write)."""
    root = tmp_path_factory.mktemp("render_jobs")
    source = root / "src"
    (source / "clips").mkdir(parents=True)
    (source / "photos").mkdir()
    shutil.copy(short_clip, source / "clips" / "first.mp4")
    shutil.copy(short_clip, source / "clips" / "second.mp4")
    cv2.imwrite(str(source / "photos" / "frame.jpg"), read_frames(short_clip)[PHOTO_FRAME])
    run_config = root / "run.yml"
    run_config.write_text(
        f"nodes:\n- input.visual:\n    source: {source}\n    recursive: true\n- model.centerface\n"
        f"- dabble.persist_bbox\n- output.tracks:\n    output_dir: {root / 'tracks'}\n- draw.fill_bbox\n"
        f"- output.media_writer:\n    output_dir: {root / 'run'}\n")
    result = run_cli("run", "--config_path", str(run_config), cwd=root)
    assert result.returncode == 0, result.stderr
    tracks = {name: root / "tracks" / f"{name}.tracks.json"
              for name in ("clips/first.mp4", "clips/second.mp4", "photos/frame.jpg")}
    first = load_tracks(tracks["clips/first.mp4"])
    first["keep"] = [presenter(first)]
    save_tracks(tracks["clips/first.mp4"], first)
    second = load_tracks(tracks["clips/second.mp4"])
    for frame in second["frames"][:ADDED_FRAMES]:
        frame["faces"].append([*ADDED_BOX, 1000])
        frame["scores"].append(1.0)
        frame["held"].append(False)
    second["added"] = [1000]
    save_tracks(tracks["clips/second.mp4"], second)
    render_config = root / "render.yml"
    render_config.write_text("nodes:\n- input.visual\n- draw.fill_bbox\n- output.media_writer\n")
    serial = render(root, render_config, tracks.values(), root / "serial")
    assert serial.returncode == 0, serial.stderr
    return {"root": root, "source": source, "tracks": tracks, "config": render_config,
            "kept": first["keep"][0]}


def render(root: Path, config: Path, tracks, output: Path, *args: str):  # noqa: ANN001, ANN201
    files = [arg for path in tracks for arg in ("--tracks", str(path))]
    overrides = json.dumps({"output.media_writer": {"output_dir": str(output)}})
    return run_cli("render", "--config_path", str(config), *files, "--node_config", overrides, *args,
                   cwd=root)


def decoded(folder: Path) -> dict[str, object]:
    """Every output below ``folder``: a photo's bytes, a video's frames (pixels and timestamps).
    x264's bitstream is not byte-repeatable from run to run when it encodes with frame threads:
    one CI run wrote the same 40 frames in different bytes (same size, identical once decoded)."""
    import av

    outputs: dict[str, object] = {}
    for name, digest in digests(folder).items():
        if not name.endswith(".mp4"):
            outputs[name] = digest
            continue
        with av.open(str(folder / name)) as container:
            outputs[name] = [(frame.pts, hashlib.sha256(frame.to_ndarray(format="bgr24").copy()).hexdigest())
                             for frame in container.decode(video=0)]
    return outputs


def test_serial_render_shows_the_review(reviewed: dict, short_clip: Path) -> None:
    root, kept = reviewed["root"], reviewed["kept"]
    inputs = read_frames(short_clip)
    first = load_tracks(reviewed["tracks"]["clips/first.mp4"])
    ran = read_frames(root / "run" / "clips" / "first.mp4")
    rendered = read_frames(root / "serial" / "clips" / "first.mp4")
    assert len(rendered) == len(inputs)
    for index in (0, 20, 39):
        box = next(face for face in first["frames"][index]["faces"] if face[4] == kept)
        kept_ssim = ssim(crop(inputs[index], box), crop(rendered[index], box))
        assert kept_ssim >= 0.8, f"frame {index}: the kept face is hidden (SSIM {kept_ssim:.2f})"
        assert ssim(crop(inputs[index], box), crop(ran[index], box)) < 0.5, "the run hid the presenter"
    second = read_frames(root / "serial" / "clips" / "second.mp4")
    for index in range(len(inputs)):
        before, after = crop(inputs[index], ADDED_BOX).astype(int), crop(second[index], ADDED_BOX)
        change = float(abs(before - after).mean())
        assert (change > 60) == (index < ADDED_FRAMES), f"frame {index}: added box change {change:.0f}"
    photo = cv2.imread(str(root / "serial" / "photos" / "frame.jpg"))
    face = load_tracks(reviewed["tracks"]["photos/frame.jpg"])["frames"][0]["faces"][0]
    assert ssim(crop(inputs[PHOTO_FRAME], face), crop(photo, face)) < 0.5, "the photo's face is visible"


@pytest.mark.parametrize("engine", ENGINES)
def test_a_render_job_writes_what_a_serial_render_writes_and_redoes_only_reviewed_files(
    reviewed: dict, tmp_path: Path, engine: tuple[str, ...]
) -> None:
    root, tracks = reviewed["root"], dict(reviewed["tracks"])
    for name, path in list(tracks.items()):  # this test saves one file again: its own copies
        data = load_tracks(path)
        tracks[name] = save_tracks(tmp_path / "tracks" / f"{name}.tracks.json", data)
    output = tmp_path / "job"
    result = render(root, reviewed["config"], tracks.values(), output, *engine)
    assert result.returncode == 0, result.stderr
    assert decoded(output) == decoded(root / "serial")
    done = [line for line in manifest_lines(output) if line["status"] == "done"]
    assert sorted(line["input"] for line in done) == sorted(str(path) for path in tracks.values())
    assert sorted(line["name"] for line in done) == sorted(tracks)

    # Run again: nothing changed, nothing is rendered. Save one file with its keep list
    # emptied: that file alone is rendered again, and the presenter is hidden in it.
    result = render(root, reviewed["config"], tracks.values(), output, *engine)
    assert result.returncode == 0, result.stderr
    assert len([line for line in manifest_lines(output) if line["status"] == "done"]) == 3
    first = load_tracks(tracks["clips/first.mp4"])
    first["keep"] = []
    save_tracks(tracks["clips/first.mp4"], first)
    result = render(root, reviewed["config"], tracks.values(), output, *engine)
    assert result.returncode == 0, result.stderr
    again = [line for line in manifest_lines(output) if line["status"] == "done"][3:]
    assert [line["name"] for line in again] == ["clips/first.mp4"]
    box = next(face for face in first["frames"][20]["faces"] if face[4] == reviewed["kept"])
    clip = read_frames(output / "clips" / "first.mp4")
    source = read_frames(reviewed["source"] / "clips" / "first.mp4")
    assert ssim(crop(source[20], box), crop(clip[20], box)) < 0.5, "a face no longer kept is visible"
    assert (output / MANIFEST_NAME).is_file()


INVERT_NODE = '''\
"""Inverts the pixels of every box: a user's own way of hiding."""
from facepriv.node import AbstractNode


class Node(AbstractNode):
    def run(self, inputs):
        image = inputs["img"].copy()
        height, width = image.shape[:2]
        for x1, y1, x2, y2 in inputs["bboxes"]:
            box = image[int(y1 * height):int(y2 * height), int(x1 * width):int(x2 * width)]
            box[...] = 255 - box
        return {"img": image}
'''


def test_render_uses_a_custom_draw_node_in_a_job(reviewed: dict, tmp_path: Path, short_clip: Path) -> None:
    """A draw node of the user's own (custom_nodes.draw.*) is a draw node to render, as in run."""
    nodes = tmp_path / "custom"
    (nodes / "draw").mkdir(parents=True)
    (nodes / "configs" / "draw").mkdir(parents=True)
    (nodes / "draw" / "invert_bbox.py").write_text(INVERT_NODE)
    (nodes / "configs" / "draw" / "invert_bbox.yml").write_text("input: [img, bboxes]\noutput: [img]\n")
    config = tmp_path / "render.yml"
    config.write_text("nodes:\n- custom_nodes.draw.invert_bbox\n- output.media_writer\n")
    tracks = [reviewed["tracks"]["clips/second.mp4"]]
    result = render(reviewed["root"], config, tracks, tmp_path / "out", "--workers", "2",
                    "--custom_nodes_dir", str(nodes))
    assert result.returncode == 0, result.stderr
    inputs, outputs = read_frames(short_clip), read_frames(tmp_path / "out" / "clips" / "second.mp4")
    inner = [ADDED_BOX[0] + 10, ADDED_BOX[1] + 10, ADDED_BOX[2] - 10, ADDED_BOX[3] - 10]
    inverted = 255 - crop(inputs[0], inner).astype(int)
    assert float(abs(inverted - crop(outputs[0], inner)).mean()) < 12, "the added box is inverted"
    assert float(abs(crop(inputs[20], inner).astype(int) - crop(outputs[20], inner)).mean()) < 8
