"""``facepriv eval --video`` and output.audit_log, on a real clip (the sample's first 40 frames)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from facepriv.evaluation.video_eval import evaluate_videos

from conftest import error_lines, interrupt_run, run_cli


def write_config(path: Path, nodes: list) -> Path:
    path.write_text(yaml.safe_dump({"nodes": nodes}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reports(short_clip, tmp_path_factory):
    """The video eval of the clip without any mask, and with the default mosaic."""
    folder = tmp_path_factory.mktemp("configs")
    clip = str(short_clip)
    bare = write_config(folder / "bare.yml", [{"input.visual": {"source": clip}}, "model.mtcnn"])
    masked = write_config(folder / "masked.yml", [
        {"input.visual": {"source": clip}}, "model.mtcnn", "dabble.persist_bbox", "draw.mosaic_bbox",
        {"output.media_writer": {"output_dir": str(folder / "never")}},
    ])
    return (evaluate_videos(bare, [clip], worst=5),
            evaluate_videos(masked, [clip], reference="model.mtcnn"), folder)


def test_unmasked_output_leaks_every_frame_and_lists_the_worst(reports):
    bare, _, _ = reports
    video = bare["videos"][0]
    assert video["frames"] == 40 and video["frames_with_faces"] == 40
    assert video["frames_leaked"] == 40 and bare["frames_leaked"] == 40
    assert len(video["worst_frames"]) == 5
    assert video["collateral"] == 0.0  # nothing outside the faces changed either
    for frame in video["worst_frames"]:
        assert frame["worst_ssim"] >= 0.99  # the output is the input
        assert frame["time"] == pytest.approx(frame["frame"] / 30, abs=0.01)


def test_masked_output_leaves_no_face_visible_and_writes_nothing(reports):
    _, masked, folder = reports
    video = masked["videos"][0]
    assert video["frames"] == 40 and video["faces"] >= 40
    assert video["frames_leaked"] == 0 and video["worst_frames"] == []
    assert 0 < video["collateral"] < 10  # the grown mask reaches past the face box, not far
    assert not (folder / "never").exists(), "eval runs the pipeline without its output nodes"


def test_eval_video_cli_prints_table_and_writes_json(short_clip, tmp_path):
    config = write_config(tmp_path / "c.yml", [
        {"input.visual": {"source": "x"}}, "model.mtcnn", "draw.mosaic_bbox"])
    result = run_cli("eval", "--config_path", str(config), "--video", str(short_clip),
                     "--output", "report.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "short.mp4" in result.stdout and "0 frame(s) leave a face visible" in result.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["videos"][0]["frames"] == 40 and report["reference"] == "model.centerface"


@pytest.mark.parametrize("args, message", [
    (["--annotations", "a.json", "--video", "CLIP"], "do not exist"),
    (["--annotations", "a.json", "--video", "CLIP", "--video", "CLIP"], "one annotations file per video"),
    ([], "pass --annotations"),
    (["--video", "missing.mp4"], "does not exist"),
    (["--video", "CLIP", "--reference", "draw.mosaic_bbox"], "not a model node"),
    (["--video", "CLIP", "--reference_config", "{'min_size': -3}"], "min_size"),
])
def test_eval_video_bad_arguments_give_one_line(short_clip, tmp_path, args, message):
    config = write_config(tmp_path / "c.yml", [{"input.visual": {"source": "x"}}, "model.mtcnn"])
    args = [str(short_clip) if arg == "CLIP" else arg for arg in args]
    result = run_cli("eval", "--config_path", str(config), *args, cwd=tmp_path)
    assert result.returncode == 2
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and message in lines[0], result.stderr


def audit_config(path: Path, clip: Path, output_dir: Path) -> Path:
    return write_config(path, [
        {"input.visual": {"source": str(clip), "frames_log_freq": 5}},
        "model.mtcnn", "dabble.persist_bbox", "draw.mosaic_bbox",
        {"output.media_writer": {"output_dir": str(output_dir)}},
        {"output.audit_log": {"output_dir": str(output_dir)}},
    ])


def test_audit_log_records_each_file_beside_its_output(short_clip, tmp_path):
    out = tmp_path / "out"
    config = audit_config(tmp_path / "c.yml", short_clip, out)
    result = run_cli("run", "--config_path", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (out / "short.mp4").is_file()
    record = json.loads((out / "short.mp4.audit.json").read_text())
    assert record["status"] == "done" and record["error"] is None
    assert record["input"] == str(short_clip) and record["frames"] == 40
    assert record["frames_with_faces"] == 40 and record["faces_masked"] >= 40
    assert 0 <= record["frames_with_held_masks"] <= record["frames"]
    nodes = [entry["node"] for entry in record["nodes"]]
    assert nodes == ["input.visual", "model.mtcnn", "dabble.persist_bbox", "draw.mosaic_bbox",
                     "output.media_writer", "output.audit_log"]
    mtcnn = record["nodes"][1]["settings"]
    assert mtcnn["network_thresholds"] == [0.2, 0.2, 0.2] and mtcnn["min_size"] == 40


def test_audit_log_counts_masks_held_without_a_detection(short_clip, tmp_path):
    # Detection scores cannot reach 1.0, so with this threshold the detector finds nothing
    # on any frame: no face is masked and nothing is held.
    out = tmp_path / "out"
    config = audit_config(tmp_path / "c.yml", short_clip, out)
    result = run_cli("run", "--config_path", str(config), "--node_config",
                     '{"model.mtcnn": {"score_threshold": 1.0}}', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "short.mp4.audit.json").read_text())
    assert record["faces_masked"] == 0 and record["masks_held"] == 0 and record["frames"] == 40


def test_interrupted_run_writes_no_audit_for_the_unfinished_file(sample_video, tmp_path):
    out = tmp_path / "out"
    config = audit_config(tmp_path / "c.yml", sample_video, out)  # 517 frames: time to interrupt
    code, _ = interrupt_run(config, tmp_path, "peekingduck_wave.mp4: 10 frames read")
    assert code == 130
    assert not (out / "peekingduck_wave.mp4.audit.json").exists()
    assert not (out / "peekingduck_wave.mp4").exists()


def test_one_frame_reference_faces_count_only_without_confirmation(short_clip):
    """A reference 'face' on a single frame (as on a waving hand) is left out by default."""
    from facepriv.evaluation.video_eval import _LeakCheck
    from facepriv.nodes.input.visual import Node as VisualInput

    class BlinkingReference:
        """Finds the same real region, but on frame 3 only."""

        def __init__(self):
            self.calls = 0

        def run(self, inputs):
            self.calls += 1
            boxes = [[0.1, 0.1, 0.3, 0.4]] if self.calls == 4 else []
            return {"bboxes": np.array(boxes, dtype=np.float32).reshape(-1, 4),
                    "bbox_scores": np.ones(len(boxes), dtype=np.float32)}

        def release(self, completed=True):
            """Nothing to free."""

    for confirm, expected in ((True, 0), (False, 1)):
        reader = VisualInput(source=str(short_clip))
        check = _LeakCheck(BlinkingReference(), min_face_size=20, confirm=confirm)
        for _ in range(6):
            frame = reader.run({})
            check.run({"eval_original": frame["img"], "img": frame["img"], "frame_info": frame["frame_info"]})
        check.run({"pipeline_end": True})
        assert len(check.frames) == 6
        assert sum(frame["leaked"] for frame in check.frames) == expected
        assert check.unconfirmed == (1 if confirm else 0)
        reader.release()


def test_photo_eval_runs_configs_that_hold_masks(faces_dir, face_annotations, tmp_path):
    """Photos are single frames: dabble.persist_bbox hands each on at once and adds nothing."""
    from facepriv.evaluation.evaluate import evaluate

    subset = tmp_path / "annotations.json"
    images = [dict(entry, file=str(faces_dir / entry["file"])) for entry in face_annotations[:4]]
    subset.write_text(json.dumps({"format": "face-boxes-v1", "images": images}))
    reports = {}
    for name, nodes in (("with", ["model.mtcnn", "dabble.persist_bbox", "draw.mosaic_bbox"]),
                        ("without", ["model.mtcnn", "draw.mosaic_bbox"])):
        config = write_config(tmp_path / f"{name}.yml", [{"input.visual": {"source": "x"}}, *nodes])
        reports[name] = evaluate(config, subset, progress=False)
    assert reports["with"]["overall"] == reports["without"]["overall"]
    assert reports["with"]["collateral"] == reports["without"]["collateral"]
