"""What every detector node shares: the data keys it fills, its failure rule and key-frame
detection.

A detector error on a frame must never let that frame out unmasked, so when ``detect``
raises, the node logs it and reports a box covering the whole frame under each label it
detects (so that the draw node of every label, ``labels: [plate]`` included, hides the
frame).

With a ``detect_every`` setting above 1, video frames are detected on key frames in a
background thread and the frames between are decided from them (``facepriv.keyframes``);
the node then holds frames and hands them on in order through the runner's
hold/``pending`` protocol, so it needs the whole data pool (``all`` in its inputs).
Photos and live frames are detected at once, unless video frames still wait before them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facepriv.geometry import normalise_boxes
from facepriv.keyframes import Detections, KeyFrameDetector
from facepriv.node import AbstractNode
from facepriv.runner import HeldFrame, merge_outputs


class FaceDetectorNode(AbstractNode):
    """Base for ``model.*`` nodes: pixel boxes in, PeekingDuck's normalised keys out. Face
    detectors implement ``detect``; detectors of several classes ``detect_labelled``."""

    label = "face"

    def __init__(self, config: dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.frames_failed = 0
        self.frames_detected = 0  # frames the network ran on (fewer than seen with detect_every)
        every = int(getattr(self, "detect_every", 1) or 1)
        self._keyframes: KeyFrameDetector | None = None
        if every > 1:
            threshold = getattr(self, "score_threshold", None)
            share = float(getattr(self, "keyframe_match_share", 1.0))
            self._match_score = threshold * share if threshold is not None and share < 1 else None
            self._keyframes = KeyFrameDetector(
                self._detect_key_frame, self._whole_frame, every, self.keyframe_iou,
                self.keyframe_faint_score, report_score=threshold if self._match_score is not None else 0.0)
        self._end: dict[str, Any] | None = None

    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (N x 4 pixel boxes x1, y1, x2, y2; N scores) for one BGR frame."""
        raise NotImplementedError

    def detect_labelled(self, image_bgr: np.ndarray) -> Detections:
        """``detect`` with each box's label: (N x 4 pixel boxes, N scores, N labels)."""
        boxes, scores = self.detect(image_bgr)
        return boxes, scores, np.array([self.label] * len(boxes))

    def detect_frame(self, image_bgr: np.ndarray, pool: dict[str, Any]) -> Detections:
        """``detect_labelled`` for a frame of the data pool: a node may read more of it
        (frame_info)."""
        return self.detect_labelled(image_bgr)

    def detect_key_frame(self, image_bgr: np.ndarray, pool: dict[str, Any],
                         score_threshold: float) -> Detections:
        """``detect_frame`` down to ``score_threshold``, under the node's own: key frames are
        compared with their weaker boxes too (``keyframe_match_share``). A node without a
        ``score_threshold`` setting detects as usual."""
        return self.detect_frame(image_bgr, pool)

    def failure_labels(self) -> list[str]:
        """The labels a failed frame's full-frame boxes carry: every label the node gives."""
        return [self.label]

    def run(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        keyframes = self._keyframes
        if keyframes is None or (inputs and not len(keyframes) and self._video_of(inputs) is None):
            # every frame detected; or a photo or live frame with no video frame waiting before it
            if inputs.get("pipeline_end"):
                return {}
            return self._outputs(inputs["img"], self._detect_safely(inputs["img"], inputs))
        if not inputs:  # the runner asks for a waiting frame
            return self._hand_on()
        if inputs.get("pipeline_end"):
            self._keyframes.end_chain()
            if not len(self._keyframes):
                return {}
            self._end = dict(inputs)
            return None
        self._keyframes.add(dict(inputs), self._video_of(inputs))
        return self._hand_on()

    def pending(self) -> bool:
        if self._keyframes is None:
            return False
        return self._end is not None or self._keyframes.ready()

    def release(self, completed: bool = True) -> None:
        if self._keyframes is not None:
            self._keyframes.close()
        self._end = None

    def reset(self) -> None:
        if self._keyframes is not None:
            self._keyframes.clear()
        self._end = None

    def _hand_on(self) -> dict[str, Any] | None:
        assert self._keyframes is not None
        decided = self._keyframes.pop(wait=self._end is not None or self._keyframes.full())
        if decided is None:
            if self._end is not None and not len(self._keyframes):
                end, self._end = self._end, None
                return end
            return None
        pool, detections = decided
        frame = HeldFrame(pool)  # its boxes go after an earlier detector's, if there is one
        merge_outputs(frame, self._outputs(pool["img"], detections), self.appends)
        return frame

    @staticmethod
    def _video_of(pool: dict[str, Any]) -> object | None:
        """The video file a frame belongs to; None for photos, live frames and bare images."""
        info = pool.get("frame_info")
        return info.item if info is not None and info.item.kind == "video" else None

    def _detect_key_frame(self, image: np.ndarray, pool: dict[str, Any]) -> Detections:
        return self._detect_safely(image, pool, self._match_score)

    def _detect_safely(self, image: np.ndarray, pool: dict[str, Any],
                       score_threshold: float | None = None) -> Detections:
        self.frames_detected += 1
        try:
            if score_threshold is None:
                boxes, scores, labels = self.detect_frame(image, pool)
            else:
                boxes, scores, labels = self.detect_key_frame(image, pool, score_threshold)
            return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                    np.asarray(labels, dtype=str).reshape(-1))
        except Exception as err:  # noqa: BLE001 - privacy first: hide the whole frame
            self.frames_failed += 1
            self.logger.error(
                "detection failed on a frame (%s: %s): masking the whole frame",
                type(err).__name__, err,
            )
            return self._whole_frame(image)

    def _whole_frame(self, image: np.ndarray) -> Detections:
        """A box over the whole frame under every label the node gives."""
        labels = np.array(self.failure_labels())
        height, width = np.asarray(image).shape[:2]
        boxes = np.repeat(np.array([[0, 0, width, height]], np.float32), len(labels), axis=0)
        return boxes, np.ones(len(labels), np.float32), labels

    def _outputs(self, image: np.ndarray, detections: Detections) -> dict[str, Any]:
        boxes, scores, labels = detections
        return {
            "bboxes": normalise_boxes(boxes, image.shape[1], image.shape[0]),
            "bbox_labels": np.asarray(labels, dtype=str).reshape(-1),
            "bbox_scores": np.asarray(scores, dtype=np.float32),
        }

