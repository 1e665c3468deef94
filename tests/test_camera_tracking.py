"""Masks follow faces, not the camera: pans, zooms and cuts filmed from a real frame.

A virtual camera moves over the sample clip's first frame (a real photo of a presenter), so
the face's true box is known on every frame. model.centerface finds the face; a probe node
after it removes detections on chosen frames, as a detector blink would, or adds false
ones, and the masks that dabble.persist_bbox holds are checked against the truth.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
import yaml

from facepriv.camera_motion import CameraMotion
from facepriv.evaluation.gt_video import GroundTruthCheck, clip_report
from facepriv.evaluation.metrics import face_leaked
from facepriv.evaluation.video_eval import evaluate_videos
from facepriv.geometry import grow_boxes, iou_matrix, transform_boxes
from facepriv.node import build_node
from facepriv.nodes.input.visual import Node as VisualInput
from facepriv.runner import Pipeline

from conftest import run_cli
from pipeline_probes import Collect, Frames

SIZE = (640, 360)  # the virtual camera's frame


@pytest.fixture(scope="module")
def photo(sample_video) -> tuple[np.ndarray, np.ndarray]:
    """The sample's first frame and the presenter's face box in it (pixels)."""
    frame = VisualInput(source=str(sample_video)).run({})["img"]
    found = build_node("model.centerface", {"detect_resolution": None}).run({"img": frame})
    assert len(found["bboxes"]) == 1
    height, width = frame.shape[:2]
    return frame, found["bboxes"][0] * np.array([width, height, width, height])


def film(image: np.ndarray, windows: list[tuple[float, float, float]]) -> tuple[list[np.ndarray], list]:
    """Frames of a camera looking at ``image`` through windows (centre x, centre y, width);
    also each frame's photo-to-frame transform (3x3, pixels)."""
    frames, transforms = [], []
    for cx, cy, width in windows:
        zoom = SIZE[0] / width
        matrix = np.array([[zoom, 0, SIZE[0] / 2 - cx * zoom], [0, zoom, SIZE[1] / 2 - cy * zoom], [0, 0, 1]])
        frames.append(cv2.warpAffine(image, matrix[:2], SIZE, flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_CONSTANT, borderValue=(40, 40, 40)))
        transforms.append(matrix)
    return frames, transforms


def swaying_camera(count: int, zoom_in: float = 8) -> list[tuple[float, float, float]]:
    """Pans left and right (not at a constant speed) while zooming in on the presenter
    (the window narrows by ``zoom_in`` px a frame)."""
    return [(420 + 90 * np.sin(t / 4), 200 + 20 * np.cos(t / 5), 560 - zoom_in * t) for t in range(count)]


class Probe:
    """Removes the detections of frames in ``drop``; adds ``extra`` (frame -> (box, score))."""

    node_name = "dabble.probe"
    inputs = ["img", "bboxes", "bbox_labels", "bbox_scores", "frame_info"]
    outputs = ["bboxes", "bbox_labels", "bbox_scores", "eval_original"]

    def __init__(self, drop: set[int], extra: dict[int, tuple[list[float], float]] | None = None) -> None:
        self.drop, self.extra, self.detected = drop, extra or {}, {}
        self.failed_items: list[str] = []

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        index = inputs["frame_info"].index
        boxes, scores = np.reshape(inputs["bboxes"], (-1, 4)), np.asarray(inputs["bbox_scores"])
        self.detected[index] = boxes
        if index in self.drop:
            boxes, scores = boxes[:0], scores[:0]
        if index in self.extra:
            box, score = self.extra[index]
            boxes, scores = np.vstack([boxes, [box]]), np.append(scores, score)
        return {"bboxes": boxes.astype(np.float32), "bbox_labels": np.array(["face"] * len(boxes)),
                "bbox_scores": scores.astype(np.float32), "eval_original": inputs["img"].copy()}

    def release(self, completed: bool = True) -> None:
        """Nothing to free."""


@pytest.fixture(scope="module")
def detector():
    return build_node("model.centerface", {"score_threshold": 0.1})


def run_probe(frames: list[np.ndarray], detector: Any, probe: Probe,
              persist: dict[str, Any] | None = None) -> Collect:
    collect = Collect()
    Pipeline([Frames(frames, "filmed.mp4", 25.0), detector, probe,
              build_node("dabble.persist_bbox", persist or {}), build_node("draw.fill_bbox"), collect]).run()
    return collect


def frame_pixels(boxes: np.ndarray) -> np.ndarray:
    return np.reshape(boxes, (-1, 4)) * [SIZE[0], SIZE[1], SIZE[0], SIZE[1]]


def covered(truth: np.ndarray, mask: np.ndarray) -> float:
    """The share of the true box inside the mask's box."""
    top_left, bottom_right = np.maximum(truth[:2], mask[:2]), np.minimum(truth[2:], mask[2:])
    return float(np.prod(np.clip(bottom_right - top_left, 0, None)) / np.prod(truth[2:] - truth[:2]))


@pytest.mark.parametrize("lookahead", ["none", "window"])
def test_held_masks_stay_on_the_face_while_the_camera_pans_and_zooms(photo, detector, lookahead):
    image, face = photo
    frames, transforms = film(image, swaying_camera(30))
    truths = [transform_boxes(m, face)[0] for m in transforms]
    drop = set(range(10, 19))  # a nine-frame blink while the camera swings back
    out = run_probe(frames, detector, Probe(drop), {"lookahead": lookahead})
    for index in drop:
        frame, truth = out.frames[index], truths[index]
        held = frame_pixels(frame["bboxes"][frame["bbox_held"]])
        assert len(held) == 1, f"frame {index}: one held mask, not {len(held)}"
        assert covered(truth, held[0]) > 0.9, f"frame {index}: the mask drifted off the face"
        assert not face_leaked(frame["eval_original"], frame["img"], truth), f"frame {index} shows the face"
        # nor does it stray far from the face (it grows while unconfirmed, to 1.5x at most)
        reach = grow_boxes(truth, 2.0)[0]
        assert (reach[:2] <= held[0, :2]).all() and (held[0, 2:] <= reach[2:]).all()


def face_free_shot(image: np.ndarray, count: int) -> list[np.ndarray]:
    """The presenter's suit and tie, close up, drifting: no face in sight."""
    height, width = image.shape[:2]
    suit = image[int(height * 0.6):, int(width * 0.35):int(width * 0.9)]
    windows = [(suit.shape[1] / 2 + t, suit.shape[0] / 2, suit.shape[1] * 0.8) for t in range(count)]
    return film(suit, windows)[0]


def test_no_mask_of_one_shot_appears_in_the_next(photo, detector):
    image, _ = photo
    faces = film(image, swaying_camera(12))[0]
    suit = face_free_shot(image, 12)
    out = run_probe(faces + suit, detector, Probe(drop=set(range(12, 24))))
    assert all(len(out.frames[i]["bboxes"]) for i in range(12)), "the face is masked in its shot"
    for index in range(12, 24):
        assert len(out.frames[index]["bboxes"]) == 0, f"frame {index} after the cut holds a mask"
        np.testing.assert_array_equal(out.frames[index]["img"], out.frames[index]["eval_original"])


def test_no_mask_is_back_filled_across_a_cut(photo, detector):
    image, _ = photo
    suit = face_free_shot(image, 12)
    faces = film(image, swaying_camera(12))[0]
    out = run_probe(suit + faces, detector, Probe(drop=set(range(12))), {"backfill_frames": 10})
    assert all(len(out.frames[i]["bboxes"]) for i in range(12, 24)), "the face is masked in its shot"
    for index in range(12):
        assert len(out.frames[index]["bboxes"]) == 0, f"frame {index} before the cut holds a mask"


def test_a_weak_false_box_on_two_frames_is_not_held(photo, detector):
    image, _ = photo
    frames = film(image, [(420, 200, 560)] * 24)[0]  # a camera on a tripod
    wall = [0.05, 0.4, 0.15, 0.58]  # green wall, left of the presenter
    weak = run_probe(frames, detector, Probe(set(), {6: (wall, 0.2), 8: (wall, 0.2)}))
    strong = run_probe(frames, detector, Probe(set(), {6: (wall, 0.9), 8: (wall, 0.9)}))

    def masks_on_wall(out: Collect, index: int) -> int:
        boxes = out.frames[index]["bboxes"]
        return int((iou_matrix(boxes, np.array([wall])) > 0.2).sum())

    assert all(masks_on_wall(weak, i) == 0 for i in range(24) if i not in (6, 8)), "weak box held"
    # dropped altogether: never confirmed, and the lookahead saw that
    assert masks_on_wall(weak, 6) == masks_on_wall(weak, 8) == 0
    # a confident box seen twice is held through the frame between and a while after
    assert all(masks_on_wall(strong, i) == 1 for i in (6, 7, 8, 9, 12))


def test_a_faint_face_found_again_and_again_is_confirmed_and_back_filled(photo, detector):
    image, face = photo
    frames, transforms = film(image, swaying_camera(60, zoom_in=3))
    truths = [transform_boxes(m, face)[0] / [*SIZE, *SIZE] for m in transforms]
    # the detector sees the face only faintly, on every other frame from frame 20: its 12th
    # detection (confirm_frames) comes at frame 42, before frame 10 leaves the 45-frame window
    faint = {index: (truths[index].tolist(), 0.12) for index in range(20, 45, 2)}
    out = run_probe(frames, detector, Probe(set(range(60)), faint))
    for index in range(10, 60):  # back-filled from frame 10, filled in, held to the end
        frame = out.frames[index]
        assert not face_leaked(frame["eval_original"], frame["img"], truths[index] * [*SIZE, *SIZE]), index
    assert not any(out.frames[index]["bbox_held"].any() for index in range(10))


def test_camera_motion_recovers_a_pan_and_zoom_and_finds_the_cut(photo):
    image, face = photo
    rng = np.random.default_rng(3)
    frames, transforms = film(image, [(380, 260, 600), (392, 255, 585), (404, 250, 570)])
    motion = CameraMotion()
    assert not motion.update(frames[0]).cut
    for index in (1, 2):
        noisy = np.clip(frames[index] * 1.08 + rng.normal(0, 4, frames[index].shape), 0, 255).astype(np.uint8)
        step = motion.update(noisy)
        assert not step.cut, "noise and a brighter frame are no cut"
        before = transform_boxes(transforms[index - 1], face) / [*SIZE, *SIZE]
        truth = transform_boxes(transforms[index], face) / [*SIZE, *SIZE]
        assert iou_matrix(transform_boxes(step.matrix, before), truth)[0, 0] > 0.9
        assert iou_matrix(before, truth)[0, 0] < 0.9, "the camera did move"
    assert motion.update(face_free_shot(image, 1)[0]).cut


def write_clip(path: Path, frames: list[np.ndarray], faces: list[list[list[float]]]) -> Path:
    """An H.264 clip and its face-tracks-v1 annotations beside it."""
    with av.open(str(path), "w") as target:
        stream = target.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        stream.options = {"crf": "18"}
        for frame in frames:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                target.mux(packet)
        for packet in stream.encode():
            target.mux(packet)
    annotations = {"format": "face-tracks-v1", "fps": 25, "size": list(SIZE),
                   "frames": [{"faces": f, "ignore": []} for f in faces]}
    path.with_suffix(".json").write_text(json.dumps(annotations), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def annotated_clip(photo, tmp_path_factory) -> Path:
    image, face = photo
    frames, transforms = film(image, swaying_camera(20))
    truths = [[[*np.round(transform_boxes(m, face)[0], 1).tolist(), 0]] for m in transforms]
    suit = face_free_shot(image, 10)
    return write_clip(tmp_path_factory.mktemp("gt") / "filmed.mp4", frames + suit, truths + [[]] * 10)


def config(path: Path, *nodes: Any) -> Path:
    path.write_text(yaml.safe_dump({"nodes": [{"input.visual": {"source": "x"}}, *nodes]}), encoding="utf-8")
    return path


def test_ground_truth_eval_scores_leaks_flicker_and_spurious_masks(annotated_clip, tmp_path):
    clip, truth = str(annotated_clip), [str(annotated_clip.with_suffix(".json"))]
    bare = evaluate_videos(config(tmp_path / "bare.yml", "model.centerface"), [clip], annotations=truth)
    video = bare["videos"][0]
    assert video["frames"] == 30 and video["faces"] == 20
    assert video["faces_leaked"] == 20 and video["leak_rate"] == 100.0 and video["frames_leaked"] == 20
    assert video["flicker_leaks"] == 0, "never hidden, so no flicker"
    assert video["spurious"] == 0.0 and video["collateral"] == 0.0
    masked = evaluate_videos(config(tmp_path / "main.yml", {"model.centerface": {"score_threshold": 0.1}},
                                    "dabble.persist_bbox", "draw.fill_bbox"), [clip], annotations=truth)
    video = masked["videos"][0]
    assert video["faces_leaked"] == 0 and video["flicker_leaks"] == 0
    assert 0 < video["collateral"] < 5 and video["spurious"] < 0.5
    assert video["by_size"][">=80"]["faces"] == 20


def test_flicker_leaks_and_spurious_masks_are_found_frame_by_frame(photo):
    image, face = photo
    frames, transforms = film(image, swaying_camera(10))
    truths = [transform_boxes(m, face)[0] for m in transforms]
    annotations = {"frames": [{"faces": [[*t, 7]]} for t in truths]}
    check = GroundTruthCheck(annotations, min_face_size=20)
    for index, (frame, truth) in enumerate(zip(frames, truths, strict=True)):
        output = frame.copy()
        if index != 5:  # a one-frame blink
            x1, y1, x2, y2 = grow_boxes(truth, 1.2)[0].astype(int)
            output[max(y1, 0):y2, max(x1, 0):x2] = 0
        if index == 7:  # a false mask on the wall
            output[20:100, 20:100] = 0
        check.run({"img": output, "eval_original": frame, "frame_info": None})
    report = clip_report("filmed.mp4", check, [], worst=3)
    assert report["faces"] == 10 and report["faces_leaked"] == 1 and report["frames_leaked"] == 1
    assert report["flicker_leaks"] == 1, "hidden on frames 4 and 6, visible on 5"
    assert report["worst_frames"][0]["frame"] == 5
    assert report["most_spurious_frames"][0]["frame"] == 7 and len(report["most_spurious_frames"]) == 1
    # 80 x 80 pixels of one frame in ten, over the pixels far from the face (most of the frame)
    assert 100 * 80 * 80 / (10 * SIZE[0] * SIZE[1]) < report["spurious"] < 0.5


def test_eval_cli_with_ground_truth_prints_the_table_and_writes_json(annotated_clip, tmp_path):
    main = config(tmp_path / "c.yml", "model.centerface", "dabble.persist_bbox", "draw.fill_bbox")
    result = run_cli("eval", "--config_path", str(main), "--video", str(annotated_clip), "--annotations",
                     str(annotated_clip.with_suffix(".json")), "--output", "r.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "filmed.mp4" in result.stdout and "spurious" in result.stdout
    assert "0 of 20 ground-truth face(s)" in result.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["videos"][0]["flicker_leaks"] == 0 and report["faces"] == 20


@pytest.mark.slow
def test_main_job_on_pan_dev_hides_every_face_without_stray_masks(videos_dir):
    clip = videos_dir / "pan_dev.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip} is absent")
    main_job = Path(__file__).resolve().parents[1] / "configs" / "anonymize_video.yml"
    video = evaluate_videos(main_job, [str(clip)], annotations=[str(clip.with_suffix(".json"))])["videos"][0]
    assert video["frames"] == 480 and video["faces"] == 1514
    assert video["leak_rate"] <= 0.5 and video["flicker_leaks"] == 0
    # before camera motion, cuts and confirmation: collateral 12.0 %, spurious 9.5 %; now 2.8
    # and 0.47 % (issue 14 asks for 4 and 0.5 %), with room for another CPU's float rounding
    assert video["collateral"] <= 3.5 and video["spurious"] <= 0.6


@pytest.mark.slow
def test_key_frames_follow_a_panning_zooming_camera(photo):
    """model.centerface detect_every: a pan and zoom is no disagreement between two detected
    frames (they are compared in scene coordinates), and the boxes of the frames between,
    moved with the camera, cover the face as well as detecting every frame does."""
    image, face = photo
    frames, transforms = film(image, swaying_camera(41))
    coverage = {}
    for every in (1, 8):
        detector = build_node("model.centerface", {"score_threshold": 0.1, "detect_every": every})
        collect = Collect()
        Pipeline([Frames(frames), detector, collect]).run()
        assert collect.order == list(range(41))
        coverage[every] = [max([covered(transform_boxes(matrix, face)[0], box)  # (the face leaves
                                for box in frame_pixels(collect.frames[index]["bboxes"])] or [0.0])
                           for index, matrix in enumerate(transforms)]  # the frame as it zooms in)
        if every > 1:
            assert detector.frames_detected <= 12  # keys 0, 8, ..., 40 and a few more, not every frame
    assert min(coverage[1][:20]) > 0.95
    for index, (exact, fast) in enumerate(zip(coverage[1], coverage[8], strict=True)):
        assert fast >= exact - 0.05, index
