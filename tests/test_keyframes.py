"""Key-frame detection (model.centerface detect_every): frames between detected frames are
decided from them, and detected again where they disagree. Real frames of the sample."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facepriv.camera_motion import thumbnail
from facepriv.keyframes import compare
from facepriv.nodes.model.centerface import Node
from facepriv.runner import Pipeline

from pipeline_probes import Collect, Frames


@pytest.fixture(scope="module")
def sample_frames(sample_video) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(sample_video))
    frames = []
    while len(frames) < 48:
        ok, frame = capture.read()
        assert ok
        frames.append(frame)
    capture.release()
    return frames


def run_frames(frames: list[np.ndarray], node_class: type = Node, **settings) -> tuple[dict[int, dict], Node]:
    detector = node_class(**{"score_threshold": 0.1, **settings})
    collect = Collect()
    summary = Pipeline([Frames(frames), detector, collect]).run()
    assert summary.iterations == len(frames)
    assert collect.order == list(range(len(frames)))  # every frame, in order
    return collect.frames, detector


def pixel_boxes(pool: dict, minimum_score: float = 0.0) -> np.ndarray:
    height, width = pool["img"].shape[:2]
    keep = pool["bbox_scores"] >= minimum_score
    return pool["bboxes"][keep] * np.array([width, height, width, height])


def covered(box: np.ndarray, boxes: np.ndarray, share: float = 0.9) -> bool:
    """Whether one of ``boxes`` covers ``share`` of ``box``'s area."""
    if len(boxes) == 0:
        return False
    top_left = np.maximum(boxes[:, :2], box[:2])
    bottom_right = np.minimum(boxes[:, 2:], box[2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    return bool((inter >= share * np.prod(box[2:] - box[:2])).any())


def detections(boxes, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return boxes, np.asarray(scores, np.float32), np.array(["face"] * len(boxes))


def test_detected_frames_agree_when_every_face_matches():
    a = detections([[0, 0, 10, 10], [50, 50, 70, 70]], [0.9, 0.8])
    b = detections([[52, 51, 71, 70], [2, 0, 12, 10]], [0.7, 0.9])
    stretch = compare(a, b, 0.5, 0.0)
    assert stretch is not None and sorted(stretch.pairs) == [(0, 1), (1, 0)]
    boxes, scores, labels = stretch.at(0.5)  # halfway: each face's box halfway, its lower score
    order = np.argsort(boxes[:, 0])
    np.testing.assert_allclose(boxes[order], [[1, 0, 11, 10], [51, 50.5, 70.5, 70]])
    np.testing.assert_allclose(scores[order], [0.9, 0.7])
    assert list(labels) == ["face", "face"]
    assert compare(a, detections(b[0][:1], [0.7]), 0.5, 0.0) is None  # a face vanished
    assert compare(a, detections(b[0] + [30, 0, 30, 0], [0.7, 0.9]), 0.5, 0.0) is None  # moved too far
    plate = (b[0], b[1], np.array(["face", "plate"]))
    assert compare(a, plate, 0.5, 0.0) is None  # a face is never matched with a plate
    assert compare(detections([], []), detections([], []), 0.5, 0.0).pairs == []


def test_a_faint_box_on_one_side_is_kept_not_detected_again():
    a = detections([[0, 0, 10, 10]], [0.9])
    b = detections([[1, 0, 11, 10], [100, 100, 110, 112]], [0.9, 0.15])
    assert compare(a, b, 0.5, 0.0) is None  # every box counts
    assert compare(a, b, 0.5, 0.1) is None  # 0.15 is not faint at 0.1
    stretch = compare(a, b, 0.5, 0.3)
    assert stretch is not None
    boxes, scores, _ = stretch.at(0.25)
    np.testing.assert_allclose(boxes, [[0.25, 0, 10.25, 10], [100, 100, 110, 112]])
    np.testing.assert_allclose(scores, [0.9, 0.15])


def test_a_face_flickering_across_the_threshold_is_the_same_face_on_both_sides():
    """Hysteresis: detected down to half the threshold (0.05 for 0.1), a face at 0.12 on one
    frame and 0.07 on the other is matched and kept on the frames between; a weak box alone
    makes no disagreement and is never handed on; a confident face alone still does."""
    a = detections([[0, 0, 10, 10], [50, 50, 70, 70], [200, 0, 210, 10]], [0.12, 0.9, 0.06])
    b = detections([[1, 0, 11, 10], [51, 50, 71, 70], [201, 0, 211, 10], [300, 300, 310, 310]],
                   [0.07, 0.9, 0.07, 0.06])
    assert compare(a, b, 0.5, 0.0) is None  # every box counts without a reporting threshold
    stretch = compare(a, b, 0.5, 0.0, report_score=0.1)
    assert stretch is not None and sorted(stretch.pairs) == [(0, 0), (1, 1)]  # weak pair 2-2 not handed on
    boxes, scores, _ = stretch.at(0.5)
    order = np.argsort(boxes[:, 0])
    np.testing.assert_allclose(boxes[order], [[0.5, 0, 10.5, 10], [50.5, 50, 70.5, 70]])
    np.testing.assert_allclose(scores[order], [0.07, 0.9])  # its lower score
    alone = detections([[1, 0, 11, 10], [51, 50, 71, 70], [400, 400, 420, 420]], [0.07, 0.9, 0.3])
    assert compare(a, alone, 0.5, 0.0, report_score=0.1) is None  # a face came: detect again


@pytest.mark.slow
@pytest.mark.parametrize("share", [1.0, 0.5])
def test_fast_path_agrees_with_exact_path(sample_frames, share):
    exact, _ = run_frames(sample_frames)
    fast, detector = run_frames(sample_frames, detect_every=8, keyframe_match_share=share)
    assert detector.frames_detected < len(sample_frames) / 2  # the point of it
    for index in range(0, len(sample_frames), 8):  # key frames: the very same detections
        np.testing.assert_array_equal(fast[index]["bboxes"], exact[index]["bboxes"])
        np.testing.assert_array_equal(fast[index]["bbox_scores"], exact[index]["bbox_scores"])
    for index in range(len(sample_frames)):  # every frame: each confident face is covered
        boxes = pixel_boxes(fast[index])
        for face in pixel_boxes(exact[index], minimum_score=0.5):
            assert covered(face, boxes, 0.8), f"frame {index}: {face} not covered by {boxes}"


@pytest.mark.slow
def test_mtcnn_detects_key_frames_too(sample_frames):
    """model.mtcnn includes the same settings: PeekingDuck configs gain detect_every."""
    from facepriv.nodes.model.mtcnn import Node as MTCNN

    exact, _ = run_frames(sample_frames, MTCNN, score_threshold=0.2)
    fast, detector = run_frames(sample_frames, MTCNN, score_threshold=0.2, detect_every=8,
                                keyframe_match_share=0.5)
    assert detector.frames_detected < len(sample_frames) / 2
    for index in range(0, len(sample_frames), 8):
        np.testing.assert_array_equal(fast[index]["bboxes"], exact[index]["bboxes"])
    for index in range(len(sample_frames)):  # the face (1.0); MTCNN's false boxes on the waving
        boxes = pixel_boxes(fast[index])  # hand score 0.2-0.57 and come and go between key frames
        faces = pixel_boxes(exact[index], minimum_score=0.9)
        assert len(faces) == 1
        assert covered(faces[0], boxes, 0.8), f"frame {index}: {faces[0]} not covered by {boxes}"


@pytest.mark.slow
def test_a_face_appearing_between_key_frames_is_detected_where_it_appears(sample_frames):
    with_face = sample_frames[0]
    face = pixel_boxes(run_frames([with_face])[0][0], minimum_score=0.5)
    assert len(face) == 1
    x1, y1, x2, y2 = face[0].astype(int)
    # The same real frame with the head covered by the wall beside it: no face there.
    without_face = with_face.copy()
    width = x2 - x1 + 40
    without_face[: y2 + 15, x1 - 20 : x2 + 20] = with_face[: y2 + 15, x1 - 20 - width : x1 - 20]
    assert len(run_frames([without_face])[0][0]["bboxes"]) == 0
    assert float((thumbnail(with_face) * thumbnail(without_face)).sum()) > 0.6  # no abrupt change
    frames = [without_face] * 5 + [with_face] * 11  # the face shows from frame 5; keys 0, 8, 15
    decided, detector = run_frames(frames, detect_every=8)
    for index in range(5):
        assert len(pixel_boxes(decided[index], 0.5)) == 0, index
    for index in range(5, 16):  # frames 5-7 lie between key frames 0 and 8: detected again
        assert covered(face[0], pixel_boxes(decided[index]), 0.9), index
    assert detector.frames_detected > 3


@pytest.mark.slow
def test_a_fade_through_black_is_not_detected_frame_by_frame(sample_frames):
    """Black frames' thumbnails are noise: no abrupt change is seen in them, so a fade out and
    in costs a few detections, not one a frame; the face is found again as it fades in."""
    def faded(frame: np.ndarray, level: float) -> np.ndarray:
        return (frame.astype(np.float32) * level).astype(np.uint8)

    frames = (sample_frames[:8] + [faded(sample_frames[8 + i], 1 - i / 8) for i in range(8)]
              + [np.zeros_like(sample_frames[0])] * 16
              + [faded(sample_frames[16 + i], i / 8) for i in range(8)] + sample_frames[24:40])
    exact, _ = run_frames(frames)
    fast, detector = run_frames(frames, detect_every=8)
    assert detector.frames_detected <= 20, detector.frames_detected
    for index in range(len(frames)):
        boxes = pixel_boxes(fast[index])
        for face in pixel_boxes(exact[index], minimum_score=0.5):
            assert covered(face, boxes, 0.8), f"frame {index}: {face} not covered by {boxes}"


@pytest.mark.slow
def test_a_detector_error_on_a_key_frame_masks_that_frame_whole(sample_frames, monkeypatch):
    frames = sample_frames[:17]
    failing = {8}

    def detect_frame(self, image, pool):
        if pool["frame_info"].index in failing:
            raise RuntimeError("simulated network failure")
        boxes, scores = Node._detect(self, image, photo=False)
        return boxes, scores, np.array(["face"] * len(boxes))

    monkeypatch.setattr(Node, "detect_frame", detect_frame)
    decided, detector = run_frames(frames, detect_every=8)
    np.testing.assert_allclose(decided[8]["bboxes"], [[0, 0, 1, 1]])
    assert detector.frames_failed == 1
    for index in range(17):  # the face is hidden on every other frame too
        assert len(pixel_boxes(decided[index], 0.5)) >= 1, index


@pytest.mark.slow
def test_a_detector_kept_by_a_job_starts_the_next_file_clean(sample_frames):
    from facepriv.batch.worker import _Kept  # how a job lends its loaded model to each file

    detector = Node(score_threshold=0.1, detect_every=8)
    first = Collect()
    stopped = Pipeline([Frames(sample_frames[:20], "first.mp4"), _Kept(detector), first]).run(num_iter=3)
    assert stopped.iterations == 3  # stopped early, with later frames of first.mp4 held
    covered_frames = [np.zeros_like(frame) for frame in sample_frames[:10]]
    second = Collect()
    Pipeline([Frames(covered_frames, "second.mp4"), _Kept(detector), second]).run()
    assert second.order == list(range(10))
    assert {pool["frame_info"].item.name for pool in second.frames.values()} == {"second.mp4"}
    assert all(len(pool["bboxes"]) == 0 for pool in second.frames.values())
    detector.release()


@pytest.mark.slow
def test_photos_and_live_frames_are_detected_at_once(sample_frames):
    from facepriv.media.reading import FrameInfo, MediaItem

    exact, fast = Node(score_threshold=0.1), Node(score_threshold=0.1, detect_every=8)
    for kind in ("image", "live"):
        pool = {"img": sample_frames[0], "frame_info": FrameInfo(MediaItem(None, "x", kind), 0)}
        out = fast.run(dict(pool))  # as facepriv eval's photo path calls it: no runner, no holding
        assert out is not None
        np.testing.assert_array_equal(out["bboxes"], exact.run(dict(pool))["bboxes"])
    fast.release()


@pytest.mark.slow
def test_held_frames_keep_an_earlier_detectors_boxes_of_their_own_frame(sample_frames):
    frames = sample_frames[:20]
    exact, _ = run_frames(frames)
    first, second, collect = Node(score_threshold=0.1), Node(score_threshold=0.1, detect_every=8), Collect()
    Pipeline([Frames(frames), first, second, collect]).run()
    assert collect.order == list(range(20))
    for index, pool in collect.frames.items():
        own = len(exact[index]["bboxes"])
        np.testing.assert_array_equal(pool["bboxes"][:own], exact[index]["bboxes"])  # not a newer frame's
        assert len(pool["bboxes"]) == len(pool["bbox_labels"]) == len(pool["bbox_scores"]) > own
    second.release()
