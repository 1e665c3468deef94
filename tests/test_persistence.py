"""dabble.persist_bbox: masks held across injected detection gaps, on real frames.

The detector (model.mtcnn) runs on every frame; a probe node after it removes the
detections of chosen frames, as a detector blink would. The face's true box on those
frames is the removed detection (or, for composed sequences, where the face was pasted).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from facepriv.evaluation.metrics import face_leaked
from facepriv.geometry import iou_matrix
from facepriv.media.reading import FrameInfo, MediaItem
from facepriv.node import build_node
from facepriv.nodes.input.visual import Node as VisualInput
from facepriv.runner import Pipeline

from pipeline_probes import Collect, Frames


class Blink:
    """Removes every detection on the frames in ``drop`` and remembers what it removed."""

    node_name = "dabble.blink"
    inputs = ["img", "bboxes", "bbox_labels", "bbox_scores", "frame_info"]
    outputs = ["bboxes", "bbox_labels", "bbox_scores", "eval_original"]

    def __init__(self, drop: set[int]) -> None:
        self.drop, self.removed, self.detected = drop, {}, {}
        self.failed_items: list[str] = []

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        index = inputs["frame_info"].index
        kept = dict(inputs, eval_original=inputs["img"].copy())
        self.detected[index] = inputs["bboxes"]
        if index in self.drop:
            self.removed[index] = inputs["bboxes"][np.argsort(-inputs["bbox_scores"])]  # best first
            kept.update(bboxes=np.zeros((0, 4), np.float32), bbox_labels=np.array([]),
                        bbox_scores=np.zeros(0, np.float32))
        return kept

    def release(self, completed: bool = True) -> None:
        """Nothing to free."""


@pytest.fixture(scope="module")
def detector():
    return build_node("model.mtcnn")


@pytest.fixture(scope="module")
def face_patch(sample_video, detector):
    """The presenter's face from the sample clip's first frame, with a margin, and its box in it."""
    frame = VisualInput(source=str(sample_video)).run({})["img"]
    x1, y1, x2, y2 = (detector.run({"img": frame})["bboxes"][0] * [710, 540, 710, 540]).round().astype(int)
    pad = (x2 - x1) // 3
    patch = frame[y1 - pad:y2 + pad, x1 - pad:x2 + pad].copy()
    return patch, np.array([pad, pad, pad + x2 - x1, pad + y2 - y1], dtype=float)


def compose(patch: np.ndarray, positions: list[tuple[int, int]], size=(540, 710)) -> np.ndarray:
    rng = np.random.default_rng(len(positions))
    canvas = np.clip(rng.normal(120, 12, (*size, 3)), 0, 255).astype(np.uint8)
    for x, y in positions:
        canvas[y:y + patch.shape[0], x:x + patch.shape[1]] = patch
    return canvas


def run_with_gaps(source: Any, detector: Any, drop: set[int], num_iter: int | None = None,
                  persist: dict[str, Any] | None = None, mask: bool = True) -> tuple[Blink, Collect]:
    blink, collect = Blink(drop), Collect()
    nodes = [source, detector, blink]
    if persist is not None:
        nodes.append(build_node("dabble.persist_bbox", persist))
    if mask:
        nodes.append(build_node("draw.mosaic_bbox"))
    Pipeline([*nodes, collect]).run(num_iter=num_iter)
    return blink, collect


def pixels(boxes: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    height, width = shape[:2]
    return np.asarray(boxes, dtype=float).reshape(-1, 4) * [width, height, width, height]


def held_box_over(frame: dict[str, Any], truth: np.ndarray) -> float:
    """Best overlap of a held mask with the face's true (pixel) box."""
    held = pixels(frame["bboxes"][frame["bbox_held"]], frame["img"].shape)
    return float(iou_matrix(held, truth.reshape(1, 4)).max(initial=0.0))


def leaked(frame: dict[str, Any], truth: np.ndarray) -> bool:
    return face_leaked(frame["eval_original"], frame["img"], truth)


@pytest.mark.parametrize("lookahead", ["none", "window"])
def test_gaps_of_1_2_and_8_frames_stay_masked(sample_video, detector, lookahead):
    drop = {10, 20, 21, *range(30, 38)}
    blink, out = run_with_gaps(VisualInput(source=str(sample_video)), detector, drop, num_iter=50,
                               persist={"lookahead": lookahead})
    assert sorted(out.frames) == list(range(50)) and out.order == sorted(out.order)
    for index in sorted(drop):
        truth = pixels(blink.removed[index], out.frames[index]["img"].shape)
        assert len(truth) >= 1, f"the detector found the face on frame {index}"
        assert held_box_over(out.frames[index], truth[0]) > 0.4, f"frame {index}"
        assert not leaked(out.frames[index], truth[0]), f"face visible on frame {index}"
    assert not any(out.frames[i]["bbox_held"].any() for i in range(5)), "nothing to hold before a gap"


def test_without_persistence_the_same_gaps_leak(sample_video, detector):
    drop = {10, 20, 21}
    blink, out = run_with_gaps(VisualInput(source=str(sample_video)), detector, drop, num_iter=25)
    for index in drop:
        truth = pixels(blink.removed[index], out.frames[index]["img"].shape)[0]
        assert leaked(out.frames[index], truth)


def test_masks_are_released_after_hold_frames_and_backfilled_before_a_return(sample_video, detector):
    drop = set(range(10, 30))  # 20 frames without the face's detection
    settings = {"hold_frames": 5, "backfill_frames": 4}

    def frames_with_face_held(out: Collect) -> list[int]:
        face = pixels(out.frames[9]["bboxes"], out.frames[9]["img"].shape)[0]  # last seen there
        return [i for i in range(40) if held_box_over(out.frames[i], face) > 0.3]

    _, causal = run_with_gaps(VisualInput(source=str(sample_video)), detector, drop, num_iter=40,
                              persist={**settings, "lookahead": "none"}, mask=False)
    assert frames_with_face_held(causal) == list(range(10, 15))
    _, window = run_with_gaps(VisualInput(source=str(sample_video)), detector, drop, num_iter=40,
                              persist=settings, mask=False)
    # Held after the face was lost, and back-filled before it came back.
    assert frames_with_face_held(window) == [*range(10, 15), *range(26, 30)]


@pytest.mark.parametrize("lookahead", ["none", "window"])
def test_a_fast_moving_face_is_followed_through_a_gap(face_patch, detector, lookahead):
    patch, face = face_patch
    step = int(0.45 * (face[2] - face[0]))  # almost half a face width per frame
    positions = [(20 + step * t, 150) for t in range(12)]
    frames = [compose(patch, [p]) for p in positions]
    drop = {6, 7}
    blink, out = run_with_gaps(Frames(frames), detector, drop, persist={"lookahead": lookahead})
    for index in drop:
        x, y = positions[index]
        truth = face + [x, y, x, y]
        assert held_box_over(out.frames[index], truth) > 0.5, f"frame {index}"
        assert not leaked(out.frames[index], truth), f"face visible on frame {index}"


@pytest.mark.parametrize("lookahead", ["none", "window"])
def test_two_faces_crossing_both_stay_masked(face_patch, detector, lookahead):
    patch, face = face_patch
    width = patch.shape[1]
    steps = 14
    left = [(10 + t * (710 - 20 - width) // (steps - 1), 40) for t in range(steps)]
    right = [(710 - 10 - width - t * (710 - 20 - width) // (steps - 1), 40 + patch.shape[0] // 2 + 60)
             for t in range(steps)]
    frames = [compose(patch, [a, b]) for a, b in zip(left, right, strict=True)]
    drop = {6, 7, 8}  # around the crossing
    blink, out = run_with_gaps(Frames(frames), detector, drop, persist={"lookahead": lookahead})
    assert all(len(blink.detected[i]) >= 2 for i in (4, 5, 9, 10)), "both faces found around the gap"
    for index in drop:
        for x, y in (left[index], right[index]):
            truth = face + [x, y, x, y]
            assert held_box_over(out.frames[index], truth) > 0.4, f"frame {index} face at {x}, {y}"
            assert not leaked(out.frames[index], truth), f"frame {index} face at {x}, {y}"


def test_file_lookahead_decodes_again_and_matches_the_window(short_clip, detector):
    results = {}
    for lookahead in ("window", "file"):
        out = Collect()
        Pipeline([VisualInput(source=str(short_clip)), detector, Blink({5, 6, 15}),
                  build_node("dabble.persist_bbox", {"lookahead": lookahead}), out]).run()
        results[lookahead] = out
    window, file = results["window"], results["file"]
    assert file.order == window.order == list(range(40))
    for index in range(40):
        np.testing.assert_array_equal(file.frames[index]["img"], file.frames[index]["eval_original"])
        # Every mask of the window, and maybe more: the file pass knows more of each face's
        # future (a track the window could not confirm yet may be confirmed later on), and
        # a back-filled box may differ a little, as it knows more of the new face's motion.
        boxes_file, boxes_window = file.frames[index]["bboxes"], window.frames[index]["bboxes"]
        assert len(boxes_file) >= len(boxes_window)
        assert (iou_matrix(boxes_window, boxes_file).max(axis=1, initial=1) > 0.7).all()
    assert file.frames[5]["bbox_held"].any() and file.frames[15]["bbox_held"].any()


def test_file_that_decodes_differently_the_second_time_fails(short_clip, detector):
    class Truncate:
        node_name, inputs, outputs = "dabble.truncate", ["frame_info"], []
        failed_items: list[str] = []

        def run(self, inputs):
            item = inputs["frame_info"].item
            original = item.replay
            if getattr(original, "truncated", False) is False:
                def shorter():
                    for index, frame in enumerate(original()):
                        if index < 20:
                            yield frame

                shorter.truncated = True
                item.replay = shorter
            return {}

        def release(self, completed=True):
            """Nothing to free."""

    persist = build_node("dabble.persist_bbox", {"lookahead": "file"})
    out = Collect()
    Pipeline([VisualInput(source=str(short_clip)), Truncate(), detector, persist, out]).run()
    assert len(out.order) == 40, "every frame is still handed on, in order"
    item = out.frames[0]["frame_info"].item
    assert item.failed and "decoded differently" in item.failed
    assert persist.failed_items and not out.frames[39]["img"].any(), "blank, never the unmasked frame"


def test_tracks_do_not_carry_over_between_files(short_clip, tmp_path, detector):
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (folder / name).write_bytes(short_clip.read_bytes())
    seen: list[tuple[str, int, bool]] = []

    class Record(Collect):
        def run(self, inputs):
            if not inputs.get("pipeline_end"):
                info = inputs["frame_info"]
                seen.append((info.item.name, info.index, bool(inputs["bbox_held"].any())))
            return {}

    class BlinkAtStartOfB(Blink):
        def run(self, inputs):
            self.drop = {0, 1, 2} if inputs["frame_info"].item.name == "b.mp4" else set()
            return super().run(inputs)

    Pipeline([VisualInput(source=str(folder)), detector, BlinkAtStartOfB(set()),
              build_node("dabble.persist_bbox"), Record()]).run()
    # a.mp4's waiting frames all go out before b.mp4's first one.
    assert [(name, index) for name, index, _ in seen] == \
        [(name, index) for name in ("a.mp4", "b.mp4") for index in range(40)]
    # b.mp4's first frames are covered by back-filling b's own track.
    assert [held for name, index, held in seen if name == "b.mp4" and index < 3] == [True] * 3


def test_images_and_frames_without_frame_info_pass_straight_through(detector, face_patch):
    patch, _ = face_patch
    persist = build_node("dabble.persist_bbox")
    image = compose(patch, [(100, 100)])
    found = detector.run({"img": image})
    pool = {"img": image, "pipeline_end": False, **found}
    result = persist.run(dict(pool))
    assert result is not None and not persist.pending()
    np.testing.assert_array_equal(result["bboxes"], found["bboxes"])
    item = MediaItem(None, "photo.jpg", "image")
    result = persist.run(dict(pool, frame_info=FrameInfo(item, 0)))
    assert result is not None and not result["bbox_held"].any()


def test_persistence_settings_are_validated():
    from facepriv.errors import ConfigError

    with pytest.raises(ConfigError, match="lookahead"):
        build_node("dabble.persist_bbox", {"lookahead": "both"})
    with pytest.raises(ConfigError, match="hold_frames"):
        build_node("dabble.persist_bbox", {"hold_frames": -1})



def test_live_sources_are_decided_at_once_with_held_masks_only(face_patch, detector):
    patch, face = face_patch
    frames = [compose(patch, [(100 + 10 * t, 120)]) for t in range(8)]
    source = Frames(frames)
    source.item = MediaItem(None, "webcam_0.mp4", "live", fps=30.0)
    persist = build_node("dabble.persist_bbox", {"backfill_frames": 5})
    handed_on = []
    for index in range(8):
        pool = source.run({})
        found = detector.run({"img": pool["img"]})
        if index in (5, 6):
            found = {"bboxes": np.zeros((0, 4), np.float32), "bbox_labels": np.array([]),
                     "bbox_scores": np.zeros(0, np.float32)}
        result = persist.run({**pool, **found})
        assert result is not None and result["frame_info"].index == index, "no frame waits"
        assert not persist.pending()
        handed_on.append(result)
    assert [bool(r["bbox_held"].any()) for r in handed_on] == [False] * 5 + [True, True, False]


def test_a_face_detected_on_one_frame_only_is_held_only_if_asked(sample_video, detector):
    drop = set(range(25)) - {5}  # the detector "sees" the face on frame 5 alone
    held = {}
    for min_detections in (2, 1):
        _, out = run_with_gaps(VisualInput(source=str(sample_video)), detector, drop, num_iter=25,
                               persist={"lookahead": "none", "min_detections": min_detections},
                               mask=False)
        face = pixels(out.frames[5]["bboxes"], out.frames[5]["img"].shape)[0]
        held[min_detections] = [i for i in range(25) if held_box_over(out.frames[i], face) > 0.3]
    assert held[2] == []
    assert held[1] == list(range(6, 21))  # hold_frames 15 after the one detection
