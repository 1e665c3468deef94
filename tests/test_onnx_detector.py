"""model.onnx_detector on real ONNX files built here (tests/onnx_graphs.py): decoding of both
output layouts, letterbox mapping, score filter, NMS and labels exactly; boxes that follow
a magenta rectangle on real frames; a second detector next to model.centerface, hidden by
label, in serial runs, jobs and with dabble.persist_bbox; the load-time errors via the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from onnx_graphs import CELL, constant_detector, magenta_detector

from facepriv.batch.manifest import MANIFEST_NAME as MANIFEST
from facepriv.errors import ConfigError
from facepriv.geometry import iou_matrix
from facepriv.models.onnx_detector import output_layout
from facepriv.node import build_node
from facepriv.nodes.input.visual import Node as VisualInput
from facepriv.runner import Pipeline, merge_outputs
from facepriv.tracking import FaceTracks, TrackSettings

from conftest import error_lines, run_cli
from pipeline_probes import Collect, Frames

MAGENTA = (255, 0, 255)  # BGR
GREEN = (0, 255, 0)
INPUT_HW = (320, 320)
BOX_HW = (32, 48)  # the magenta detector's boxes, in input pixels
# Candidates as (cx, cy, w, h) in input pixels with their class scores [plate, screen].
CANDIDATES = [
    ((100, 100, 40, 20), (0.9, 0.1)),  # kept: best plate
    ((102, 100, 40, 20), (0.8, 0.0)),  # suppressed by the first (IoU 0.9)
    ((100, 100, 40, 20), (0.05, 0.7)),  # kept: a screen, another class is never suppressed
    ((200, 60, 30, 30), (0.2, 0.1)),  # below score_threshold 0.25
    ((250, 200, 20, 10), (0.5, 0.0)),  # kept: a second plate
]


@pytest.fixture(scope="module")
def frame(sample_video) -> np.ndarray:
    """The sample clip's first frame (710 x 540)."""
    return VisualInput(source=str(sample_video)).run({})["img"]


def expected_in_frame(cx: float, cy: float, w: float, h: float) -> list[float]:
    """A 320 x 320 input box in the 710 x 540 frame: scaled by 320/710 (to 320 x 243),
    centred with round(38.5 - 0.1) = 38 grey rows on top."""
    gain, top = 320 / 710, 38
    return [(cx - w / 2) / gain, (cy - h / 2 - top) / gain, (cx + w / 2) / gain, (cy + h / 2 - top) / gain]


def layout_output(layout: str) -> np.ndarray:
    if layout == "yolov8":  # [1, 4 + 2, N]
        return np.array([[*box, *scores] for box, scores in CANDIDATES], np.float32).T[None]
    # [1, N, 5 + 2]: objectness 1 except the second plate's (0.625 x 0.8 = 0.5)
    rows = [[*box, 1.0, *scores] for box, scores in CANDIDATES]
    rows[-1] = [*CANDIDATES[-1][0], 0.625, 0.8, 0.0]
    return np.array(rows, np.float32)[None]


@pytest.mark.parametrize("layout", ["yolov8", "yolov5"])
@pytest.mark.parametrize("output_format", ["auto", "given"])
def test_known_output_is_decoded_mapped_filtered_and_suppressed(tmp_path, frame, layout, output_format):
    path = constant_detector(tmp_path / "const.onnx", layout_output(layout), INPUT_HW)
    node = build_node("model.onnx_detector", {
        "weights_path": str(path), "class_names": ["plate", "screen"], "input_size": list(INPUT_HW),
        "output_format": layout if output_format == "given" else "auto"})
    assert node.model.layout == layout
    out = node.run({"img": frame})
    order = np.argsort(-out["bbox_scores"])
    assert out["bbox_labels"][order].tolist() == ["plate", "screen", "plate"]
    np.testing.assert_allclose(out["bbox_scores"][order], [0.9, 0.7, 0.5], rtol=1e-6)
    expected = [expected_in_frame(*CANDIDATES[i][0]) for i in (0, 2, 4)]
    pixels = out["bboxes"][order] * [710, 540, 710, 540]
    np.testing.assert_allclose(pixels, expected, atol=1e-3)

    only_plates = build_node("model.onnx_detector", {
        "weights_path": str(path), "class_names": ["plate", "screen"], "input_size": list(INPUT_HW),
        "detect_classes": ["plate"]}).run({"img": frame})
    assert sorted(only_plates["bbox_labels"].tolist()) == ["plate", "plate"]
    strict = build_node("model.onnx_detector", {
        "weights_path": str(path), "class_names": ["plate", "screen"], "input_size": list(INPUT_HW),
        "score_threshold": 0.6, "nms_threshold": 0.95}).run({"img": frame})
    # At IoU 0.95 the second plate (IoU 0.9) survives; at 0.6 the 0.5 plate does not.
    assert sorted(strict["bbox_scores"].tolist()) == pytest.approx([0.7, 0.8, 0.9])


@pytest.mark.parametrize("output_format", ["auto", "end2end"])
def test_an_end_to_end_export_gives_final_boxes_not_suppressed_again(tmp_path, frame, output_format):
    """[1, N, 6] rows (x1, y1, x2, y2, score, class) of YOLOv10 / YOLO26 / nms=True exports;
    unused rows score 0; a class index class_names does not list is dropped."""
    rows = np.zeros((1, 300, 6), np.float32)
    rows[0, :5] = [[80, 90, 120, 110, 0.9, 0], [82, 90, 122, 110, 0.8, 0], [80, 90, 120, 110, 0.7, 1],
                   [185, 45, 215, 75, 0.2, 0], [240, 195, 260, 205, 0.95, 5]]
    path = constant_detector(tmp_path / "e2e.onnx", rows, INPUT_HW)
    node = build_node("model.onnx_detector", {
        "weights_path": str(path), "class_names": ["plate", "screen"], "input_size": list(INPUT_HW),
        "output_format": output_format})
    assert node.model.layout == "end2end"
    out = node.run({"img": frame})
    order = np.argsort(-out["bbox_scores"])
    assert out["bbox_labels"][order].tolist() == ["plate", "plate", "screen"]  # two plates kept
    np.testing.assert_allclose(out["bbox_scores"][order], [0.9, 0.8, 0.7], rtol=1e-6)
    expected = [expected_in_frame((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
                for x1, y1, x2, y2, _, _ in rows[0, :3]]
    np.testing.assert_allclose(out["bboxes"][order] * [710, 540, 710, 540], expected, atol=1e-3)
    screens = build_node("model.onnx_detector", {
        "weights_path": str(path), "class_names": ["plate", "screen"], "input_size": list(INPUT_HW),
        "detect_classes": ["screen"]}).run({"img": frame})
    assert screens["bbox_labels"].tolist() == ["screen"]
    assert output_layout((1, 300, 6), 1) == "end2end" and output_layout((1, 25200, 6), 1) == "yolov5"


def with_rectangle(image: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray:
    painted = image.copy()
    painted[y:y + h, x:x + w] = MAGENTA
    return painted


@pytest.mark.parametrize("layout", ["yolov8", "yolov5"])
def test_boxes_follow_a_rectangle_on_a_real_frame(tmp_path, frame, layout):
    path = magenta_detector(tmp_path / "magenta.onnx", INPUT_HW, BOX_HW, layout)
    node = build_node("model.onnx_detector", {
        "weights_path": str(path), "class_names": ["plate"], "input_size": list(INPUT_HW),
        "score_threshold": 0.8})
    assert node.run({"img": frame})["bboxes"].shape == (0, 4), "no magenta in the photo"
    gain = 320 / 710
    w, h = round(BOX_HW[1] / gain), round(BOX_HW[0] / gain)  # 106 x 71 frame pixels
    found = []
    for x, y in [(40, 60), (300, 200), (560, 420)]:
        out = node.run({"img": with_rectangle(frame, x, y, w, h)})
        assert out["bbox_labels"].tolist() == ["plate"]
        box = out["bboxes"][0] * [710, 540, 710, 540]
        assert iou_matrix(box, [x, y, x + w, y + h])[0, 0] > 0.85, (box, (x, y, w, h))
        found.append(box)
    shift = found[1] - found[0]
    np.testing.assert_allclose(shift, [260, 140, 260, 140], atol=CELL / gain + 1)


def test_a_second_detector_adds_to_the_first_ones_boxes():
    data = {"bboxes": np.array([[0.1, 0.1, 0.2, 0.2]], np.float32), "bbox_labels": np.array(["face"]),
            "bbox_scores": np.array([0.9], np.float32), "img": "frame"}
    merge_outputs(data, {"bboxes": np.array([[0.5, 0.5, 0.7, 0.6]]), "bbox_labels": np.array(["plate"]),
                         "bbox_scores": np.array([0.4]), "img": "new"},
                  appends=("bboxes", "bbox_labels", "bbox_scores"))
    assert data["bboxes"].shape == (2, 4) and data["bbox_labels"].tolist() == ["face", "plate"]
    assert data["bbox_scores"].tolist() == pytest.approx([0.9, 0.4]) and data["img"] == "new"
    merge_outputs(data, {"bboxes": np.zeros((0, 4))}, appends=())
    assert data["bboxes"].shape == (0, 4), "keys not listed under append: are replaced"


def test_a_face_track_never_takes_a_plate_and_a_held_box_keeps_its_label():
    tracks = FaceTracks(TrackSettings(min_detections=2))
    box = np.array([[0.4, 0.4, 0.5, 0.5]])
    both = (np.vstack([box, box]), np.array([0.9, 0.9]), np.array(["face", "plate"]))
    for time in range(3):
        owners = tracks.add(time, both[0], both[1], labels=both[2])
        assert [t.label for t in owners] == ["face", "plate"]
    owners = tracks.add(3, box, np.array([0.9]), labels=np.array(["plate"]))
    assert owners[0].label == "plate" and owners[0].detections == 4
    held, _, labels = tracks.masks_at(3)
    assert labels.tolist() == ["face"] and iou_matrix(held, box)[0, 0] > 0.6


def test_a_held_plate_box_stays_a_plate_in_a_pipeline(tmp_path, frame):
    path = magenta_detector(tmp_path / "magenta.onnx", INPUT_HW, BOX_HW)
    rectangle = (300, 200, 106, 71)
    frames = [frame.copy() if index == 5 else with_rectangle(frame, *rectangle) for index in range(10)]
    collect = Collect()
    Pipeline([
        Frames(frames),
        build_node("model.onnx_detector", {"weights_path": str(path), "class_names": ["plate"],
                                           "input_size": list(INPUT_HW), "score_threshold": 0.8}),
        build_node("dabble.persist_bbox", {"camera_motion": False}),
        build_node("draw.fill_bbox", {"labels": ["plate"], "mask_shape": "rectangle", "mask_scale": 1.0,
                                      "fill_color": list(GREEN)}),
        collect,
    ]).run()
    assert collect.order == list(range(10))
    gap = collect.frames[5]
    assert gap["bbox_held"].tolist() == [True] and gap["bbox_labels"].tolist() == ["plate"]
    x, y, w, h = rectangle
    for index in (4, 5, 6):
        inside = collect.frames[index]["img"][y + 4:y + h - 4, x + 4:x + w - 4]
        assert (inside == GREEN).all(), index


def fill_config(path: Path, source: Path, output: Path, weights: Path | None, extra: str = "") -> Path:
    """centerface then (if ``weights``) the magenta detector; faces black, plates green."""
    second = "" if weights is None else (
        f"- model.onnx_detector:\n    weights_path: {weights}\n    class_names: [plate]\n"
        f"    input_size: {list(INPUT_HW)}\n    score_threshold: 0.8\n")
    path.write_text(
        f"nodes:\n- input.visual:\n    source: {source}\n- model.centerface\n{second}"
        "- draw.fill_bbox:\n    labels: [face]\n"
        f"- draw.fill_bbox:\n    labels: [plate]\n    mask_shape: rectangle\n    mask_scale: 1.2\n"
        f"    fill_color: {list(GREEN)}\n{extra}"
        f"- output.media_writer:\n    output_dir: {output}\n")
    return path


@pytest.fixture(scope="module")
def painted_photos(tmp_path_factory, frame):
    """Two photos from the sample clip's first frame, a magenta rectangle on each, and the
    faces model.centerface finds on them (pixel boxes)."""
    folder = tmp_path_factory.mktemp("painted")
    rectangles = {"a.png": (40, 60, 106, 71), "b.png": (560, 420, 106, 71)}
    for name, rectangle in rectangles.items():
        cv2.imwrite(str(folder / name), with_rectangle(frame, *rectangle))
    faces = build_node("model.centerface").run({"img": frame})["bboxes"] * [710, 540, 710, 540]
    assert len(faces) >= 1
    assert not iou_matrix(faces, [[x, y, x + w, y + h] for x, y, w, h in rectangles.values()]).any()
    return folder, rectangles, faces


def assert_faces_black_plates_green(output: Path, rectangles: dict, faces: np.ndarray) -> None:
    for name, (x, y, w, h) in rectangles.items():
        image = cv2.imread(str(output / name))
        assert image is not None, name
        assert (image[y:y + h, x:x + w] == GREEN).all(), f"{name}: the rectangle is hidden whole"
        assert not (image == MAGENTA).all(axis=2).any(), f"{name}: no magenta pixel is left"
        for x1, y1, x2, y2 in faces.round().astype(int):
            cx, cy, qw, qh = (x1 + x2) // 2, (y1 + y2) // 2, (x2 - x1) // 4, (y2 - y1) // 4
            assert (image[cy - qh:cy + qh, cx - qw:cx + qw] == 0).all(), f"{name}: the face is filled black"


def test_centerface_then_onnx_detector_hides_each_by_its_draw_settings(tmp_path, painted_photos):
    source, rectangles, faces = painted_photos
    magenta = magenta_detector(tmp_path / "m.onnx", INPUT_HW, BOX_HW)
    audit = f"- output.audit_log:\n    output_dir: {tmp_path / 'audit'}\n"
    config = fill_config(tmp_path / "run.yml", source, tmp_path / "out", magenta, audit)
    result = run_cli("run", "--config_path", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_faces_black_plates_green(tmp_path / "out", rectangles, faces)
    record = json.loads((tmp_path / "audit" / "a.png.audit.json").read_text())
    assert record["masked_by_label"] == {"face": len(faces), "plate": 1}

    alone = fill_config(tmp_path / "faces.yml", source, tmp_path / "faces_only", None)
    assert run_cli("run", "--config_path", str(alone), cwd=tmp_path).returncode == 0
    image = cv2.imread(str(tmp_path / "faces_only" / "a.png"))
    x, y, w, h = rectangles["a.png"]
    assert (image[y:y + h, x:x + w] == MAGENTA).all(), "without the second detector the rectangle stays"


@pytest.mark.slow
def test_onnx_detector_in_a_workers_job(tmp_path, painted_photos):
    source, rectangles, faces = painted_photos
    magenta = magenta_detector(tmp_path / "m.onnx", INPUT_HW, BOX_HW)
    config = fill_config(tmp_path / "run.yml", source, tmp_path / "out", magenta)
    result = run_cli("run", "--config_path", str(config), "--workers", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_faces_black_plates_green(tmp_path / "out", rectangles, faces)
    # The manifest counts faces: the plates hidden too do not change the count.
    alone = fill_config(tmp_path / "faces.yml", source, tmp_path / "faces_only", None)
    assert run_cli("run", "--config_path", str(alone), "--workers", "2", cwd=tmp_path).returncode == 0
    lines = [map(json.loads, (folder / MANIFEST).read_text().splitlines())
             for folder in (tmp_path / "out", tmp_path / "faces_only")]
    counts = [{line["name"]: line["faces"] for line in found if line["status"] == "done"} for found in lines]
    assert counts[0] == counts[1] and len(counts[0]) == 2 and all(counts[0].values()), counts


@pytest.mark.slow
def test_face_eval_is_unchanged_by_a_second_detector(tmp_path, faces_dir, face_annotations):
    """Photos with a magenta rectangle away from every face: with the magenta detector after
    model.centerface the rectangles are hidden, and the face figures do not move."""
    from facepriv.evaluation.evaluate import evaluate

    entries, rectangles = [], {}
    for entry in face_annotations[:8]:
        image = cv2.imread(str(faces_dir / entry["file"]))
        height, width = image.shape[:2]
        gain = min(INPUT_HW[0] / height, INPUT_HW[1] / width)
        w, h = round(BOX_HW[1] / gain), round(BOX_HW[0] / gain)
        taken = np.array(entry["faces"] + entry.get("ignore", []), np.float64).reshape(-1, 4)
        for x, y in [(0, 0), (width - w, 0), (0, height - h), (width - w, height - h)]:
            margin = [x - 20, y - 20, x + w + 20, y + h + 20]
            if w < width and h < height and not iou_matrix(taken, margin).any():
                break
        else:
            continue
        name = f"{len(entries)}.png"
        cv2.imwrite(str(tmp_path / name), with_rectangle(image, x, y, w, h))
        entries.append(dict(entry, file=name))
        rectangles[name] = (x, y, w, h)
    assert len(entries) >= 4
    (tmp_path / "ann.json").write_text(json.dumps({"format": "face-boxes-v1", "images": entries}))
    magenta = magenta_detector(tmp_path / "m.onnx", INPUT_HW, BOX_HW)
    hidden = []

    def check(entry, before, after):
        x, y, w, h = rectangles[entry["file"]]
        hidden.append(bool((after[y + 2:y + h - 2, x + 2:x + w - 2] == GREEN).all()))

    faces_only = evaluate(fill_config(tmp_path / "a.yml", tmp_path, tmp_path / "o", None),
                          tmp_path / "ann.json", progress=False)
    both = evaluate(fill_config(tmp_path / "b.yml", tmp_path, tmp_path / "o", magenta),
                    tmp_path / "ann.json", progress=False, on_image=check)
    assert hidden == [True] * len(entries)
    assert both["buckets"] == faces_only["buckets"] and both["overall"] == faces_only["overall"]
    assert both["leaked_faces"] == faces_only["leaked_faces"]


# --------------------------------------------------------------------------- clear errors

def run_with_detector(tmp_path: Path, frame: np.ndarray, weights: Path, class_names: str = "[plate]"):
    cv2.imwrite(str(tmp_path / "photo.png"), frame)
    config = tmp_path / "run.yml"
    config.write_text(
        f"nodes:\n- input.visual:\n    source: {tmp_path / 'photo.png'}\n"
        f"- model.onnx_detector:\n    weights_path: {weights}\n    class_names: {class_names}\n"
        f"    input_size: {list(INPUT_HW)}\n- draw.fill_bbox\n"
        f"- output.media_writer:\n    output_dir: {tmp_path / 'out'}\n")
    result = run_cli("run", "--config_path", str(config), cwd=tmp_path)
    lines = error_lines(result.stderr)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert not (tmp_path / "out" / "photo.png").exists()
    return lines[0]


def test_a_missing_or_unreadable_model_is_one_error_line(tmp_path, frame):
    line = run_with_detector(tmp_path, frame, tmp_path / "nowhere.onnx")
    assert "nowhere.onnx' does not exist" in line and "weights_path" in line
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf\x00\xff" * 50)
    assert "cannot read the model" in run_with_detector(tmp_path, frame, garbage)


def test_an_output_of_no_known_layout_names_the_expected_shapes(tmp_path, frame):
    weights = constant_detector(tmp_path / "odd.onnx", np.zeros((1, 3, 8, 8), np.float32), INPUT_HW)
    line = run_with_detector(tmp_path, frame, weights)
    assert "[1, 3, 8, 8]" in line and "[1, 5, N]" in line and "[1, N, 6]" in line


def test_a_class_count_unlike_class_names_is_named(tmp_path, frame):
    weights = constant_detector(tmp_path / "three.onnx", np.zeros((1, 7, 100), np.float32), INPUT_HW)
    line = run_with_detector(tmp_path, frame, weights, "[plate, screen]")
    assert "3 class(es)" in line and "class_names lists 2" in line
    five = constant_detector(tmp_path / "v5.onnx", np.zeros((1, 100, 9), np.float32), INPUT_HW)
    assert "yolov5 detector of 4 class(es)" in run_with_detector(tmp_path, frame, five)
    six = constant_detector(tmp_path / "v5.onnx", np.zeros((1, 2000, 6), np.float32), INPUT_HW)
    with pytest.raises(ConfigError, match=r"\[1, 2000, 6\], the yolov5 layout, not yolov8"):
        build_node("model.onnx_detector", {"weights_path": str(six), "class_names": ["plate"],
                                           "input_size": list(INPUT_HW), "output_format": "yolov8"})


def test_a_failing_frame_is_masked_whole_under_every_label(tmp_path, frame):
    path = magenta_detector(tmp_path / "magenta.onnx", INPUT_HW, BOX_HW)
    node = build_node("model.onnx_detector", {"weights_path": str(path), "class_names": ["plate"],
                                              "input_size": list(INPUT_HW)})
    out = node.run({"img": np.zeros((40, 40, 3), np.float32)})  # not a uint8 frame: detect raises
    assert node.frames_failed == 1
    assert out["bbox_labels"].tolist() == ["plate"] and out["bboxes"].tolist() == [[0, 0, 1, 1]]
    hidden = build_node("draw.fill_bbox", {"labels": ["plate"], "mask_shape": "rectangle", "mask_scale": 1.0})
    image = hidden.run({"img": frame.copy(), **out})["img"]
    assert not image.any()
