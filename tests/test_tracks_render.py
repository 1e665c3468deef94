"""output.tracks and facepriv render: a run's boxes written per file, rendered again with
consenting people kept visible and a missed region hidden (issue 17's done-when test)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facepriv import api
from facepriv.evaluation.gt_video import load_face_tracks
from facepriv.tracks_file import load_tracks, save_tracks

from conftest import REPO_DIR, error_lines, presenter, run_cli
from frame_checks import crop, read_frames, ssim

TRACKS_NAME = "peekingduck_wave.mp4.tracks.json"
ADDED_BOX = [40.0, 330.0, 160.0, 470.0]  # green background, left of the presenter
ADDED_FRAMES = 50


@pytest.mark.slow
def test_output_tracks_writes_one_annotation_file_per_input(tracked_sample: Path, sample_video: Path) -> None:
    data = load_face_tracks(tracked_sample / TRACKS_NAME)  # what facepriv eval --annotations reads
    assert data["source"] == str(sample_video) and data["keep"] == [] and data["size"] == [710, 540]
    assert len(data["frames"]) == len(read_frames(sample_video)) == 517
    for frame in data["frames"]:
        assert len(frame["faces"]) == len(frame["scores"]) == len(frame["held"])
    track = presenter(data)
    on = [any(face[4] == track for face in frame["faces"]) for frame in data["frames"]]
    assert sum(on) >= 500, "the presenter is one track through the clip"
    box = next(face for face in data["frames"][0]["faces"] if face[4] == track)
    assert 380 < (box[0] + box[2]) / 2 < 540 and 60 < (box[1] + box[3]) / 2 < 220, box
    assert data["output"] == str(tracked_sample / "peekingduck_wave.mp4")
    assert [entry["node"] for entry in data["nodes"]] == ["draw.fill_bbox", "output.media_writer"]


@pytest.mark.slow
def test_render_keeps_the_presenter_and_hides_an_added_box(tracked_sample: Path, sample_video: Path,
                                                            tmp_path: Path) -> None:
    data = load_tracks(tracked_sample / TRACKS_NAME)
    kept = presenter(data)
    added = 1 + max(face[4] for frame in data["frames"] for face in frame["faces"])
    data["keep"] = [kept]
    for frame in data["frames"][:ADDED_FRAMES]:
        frame["faces"].append([*ADDED_BOX, added])
        frame["scores"].append(1.0)
        frame["held"].append(False)
    reviewed = save_tracks(tmp_path / TRACKS_NAME, data)
    api.render([reviewed], REPO_DIR / "configs" / "anonymize_video.yml",
               {"output.media_writer": {"output_dir": str(tmp_path / "rendered")}})

    inputs, outputs = read_frames(sample_video), read_frames(tmp_path / "rendered" / "peekingduck_wave.mp4")
    assert len(outputs) == len(inputs)
    for index in range(0, len(inputs), 25):
        boxes = [face for face in data["frames"][index]["faces"] if face[4] == kept]
        for box in boxes:
            similarity = ssim(crop(inputs[index], box), crop(outputs[index], box))
            assert similarity >= 0.8, f"frame {index}: the kept presenter is hidden (SSIM {similarity:.2f})"
    inner = [ADDED_BOX[0] + 30, ADDED_BOX[1] + 35, ADDED_BOX[2] - 30, ADDED_BOX[3] - 35]
    for index in range(len(inputs)):
        region_in, region_out = crop(inputs[index], inner), crop(outputs[index], inner)
        change = float(np.abs(region_in.astype(int) - region_out.astype(int)).mean())
        if index < ADDED_FRAMES:
            assert change > 60 and ssim(region_in, region_out) < 0.5, f"frame {index}: added box not hidden"
        else:
            assert change < 8, f"frame {index}: the added box is hidden after its last frame"

    # Without the keep list the same file hides the presenter: keep is what made him visible.
    data["keep"] = []
    save_tracks(reviewed, data)
    api.render([reviewed], REPO_DIR / "configs" / "anonymize_video.yml",
               {"output.media_writer": {"output_dir": str(tmp_path / "hidden")}})
    hidden = read_frames(tmp_path / "hidden" / "peekingduck_wave.mp4")
    box = next(face for face in data["frames"][100]["faces"] if face[4] == kept)
    assert ssim(crop(inputs[100], box), crop(hidden[100], box)) < 0.5


def _bad(tmp_path: Path, name: str, content: object) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.mark.parametrize("case, fragment", [
    ("missing", "does not exist"),
    ("not_json", "cannot be read as JSON"),
    ("wrong_format", "not face-tracks-v1"),
    ("source_missing", "does not exist: put the input back"),
    ("bad_keep", "'keep' must list track ids"),
])
def test_render_refuses_bad_tracks_files_in_one_line(tmp_path: Path, case: str, fragment: str) -> None:
    good = {"format": "face-tracks-v1", "size": [710, 540], "source": str(REPO_DIR / "samples" /
                                                                         "peekingduck_wave.mp4"),
            "keep": [], "frames": [{"faces": []}]}
    paths = {
        "missing": tmp_path / "absent.tracks.json",
        "not_json": _bad(tmp_path, "a.tracks.json", "{not json"),
        "wrong_format": _bad(tmp_path, "b.tracks.json", {"frames": []}),
        "source_missing": _bad(tmp_path, "c.tracks.json", {**good, "source": str(tmp_path / "gone.mp4")}),
        "bad_keep": _bad(tmp_path, "d.tracks.json", {**good, "keep": "all"}),
    }
    result = run_cli("render", "--config_path", str(REPO_DIR / "configs" / "anonymize_video.yml"),
                     "--tracks", str(paths[case]), cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert not (tmp_path / "output").exists() or not any((tmp_path / "output").iterdir())


def test_render_fails_a_file_whose_tracks_do_not_match_its_frames(tmp_path: Path, sample_video: Path) -> None:
    """A tracks file listing fewer frames than its input decodes to: no output, exit 1."""
    path = save_tracks(tmp_path / "short.tracks.json", {
        "format": "face-tracks-v1", "size": [710, 540], "source": str(sample_video), "keep": [],
        "frames": [{"faces": [[400, 60, 520, 210, 0]]}] * 20})
    config = tmp_path / "render.yml"
    config.write_text("nodes:\n- draw.fill_bbox\n- output.media_writer:\n    output_dir: out\n")
    result = run_cli("render", "--config_path", str(config), "--tracks", str(path), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "tracks file lists" in result.stderr
    assert not (tmp_path / "out" / "peekingduck_wave.mp4").exists()


def test_photos_are_one_frame_tracks_files_and_render_keeps_a_kept_face(tmp_path: Path,
                                                                         sample_video: Path) -> None:
    import cv2

    (tmp_path / "in").mkdir()
    frame = read_frames(sample_video)[0]
    cv2.imwrite(str(tmp_path / "in" / "a.png"), frame)
    cv2.imwrite(str(tmp_path / "in" / "b.jpg"), frame)
    original = (tmp_path / "in" / "a.png").read_bytes()
    config = tmp_path / "photos.yml"
    config.write_text(f"nodes:\n- input.visual:\n    source: {tmp_path / 'in'}\n- model.centerface\n"
                      f"- dabble.persist_bbox\n- output.tracks:\n    output_dir: {tmp_path / 'out'}\n"
                      f"- draw.fill_bbox\n- output.media_writer:\n    output_dir: {tmp_path / 'out'}\n")
    api.run(config)
    data = load_tracks(tmp_path / "out" / "a.png.tracks.json")
    assert data["kind"] == "image" and len(data["frames"]) == 1 and len(data["frames"][0]["faces"]) == 1
    face = data["frames"][0]["faces"][0]
    hidden = cv2.imread(str(tmp_path / "out" / "a.png"))
    assert ssim(crop(frame, face), crop(hidden, face)) < 0.5
    data["keep"] = [face[4]]
    save_tracks(tmp_path / "out" / "a.png.tracks.json", data)
    api.render([tmp_path / "out" / "a.png.tracks.json", tmp_path / "out" / "b.jpg.tracks.json"], config,
               {"output.media_writer": {"output_dir": str(tmp_path / "rendered")}})
    shown = cv2.imread(str(tmp_path / "rendered" / "a.png"))
    assert ssim(crop(frame, face), crop(shown, face)) > 0.95
    other = cv2.imread(str(tmp_path / "rendered" / "b.jpg"))  # its file keeps nothing: hidden
    assert ssim(crop(frame, face), crop(other, face)) < 0.5
    assert (tmp_path / "in" / "a.png").read_bytes() == original, "the input is never modified"


@pytest.mark.slow
def test_running_again_keeps_boxes_a_reviewer_added_and_hides_kept_faces_again(tmp_path: Path,
                                                                               sample_video: Path) -> None:
    import cv2

    (tmp_path / "in").mkdir()
    frame = read_frames(sample_video)[0]
    cv2.imwrite(str(tmp_path / "in" / "a.png"), frame)
    config = tmp_path / "photos.yml"
    config.write_text(f"nodes:\n- input.visual:\n    source: {tmp_path / 'in'}\n- model.centerface\n"
                      f"- dabble.persist_bbox\n- output.tracks:\n    output_dir: {tmp_path / 'out'}\n"
                      f"- draw.fill_bbox\n- output.media_writer:\n    output_dir: {tmp_path / 'out'}\n"
                      "    overwrite: true\n")
    api.run(config)
    tracks = tmp_path / "out" / "a.png.tracks.json"
    data = load_tracks(tracks)
    face = data["frames"][0]["faces"][0]
    data["keep"] = [face[4]]
    data["frames"][0]["faces"].append([*ADDED_BOX, 99])
    data["frames"][0]["scores"].append(1.0)
    data["frames"][0]["held"].append(False)
    data["added"] = [99]
    save_tracks(tracks, data)
    api.run(config)  # the same job again: the review must not be lost by overwriting its file
    again = load_tracks(tracks)
    assert again["keep"] == []  # track ids change from run to run: hidden again until reviewed
    added = [box for box in again["frames"][0]["faces"] if box[4] in again["added"]]
    assert len(again["added"]) == 1 and [box[:4] for box in added] == [ADDED_BOX]
    assert len(again["frames"][0]["scores"]) == len(again["frames"][0]["faces"])
    api.render([tracks], config, {"output.media_writer": {"output_dir": str(tmp_path / "rendered")}})
    shown = cv2.imread(str(tmp_path / "rendered" / "a.png"))
    assert ssim(crop(frame, ADDED_BOX), crop(shown, ADDED_BOX)) < 0.5  # still hidden
