"""What every detector node shares: the data keys it fills and its failure rule.

A detector error on a frame must never let that frame out unmasked, so when
``detect`` raises, the node logs it and reports a box covering the whole frame under each
label it detects (so that the draw node of every label, ``labels: [plate]`` included,
hides the frame).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facepriv.node import AbstractNode

FULL_FRAME = np.array([[0.0, 0.0, 1.0, 1.0]], dtype=np.float32)


class FaceDetectorNode(AbstractNode):
    """Base for ``model.*`` nodes: pixel boxes in, PeekingDuck's normalised keys out. Face
    detectors implement ``detect``; detectors of several classes ``detect_labelled``."""

    label = "face"

    def __init__(self, config: dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.frames_failed = 0

    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (N x 4 pixel boxes x1, y1, x2, y2; N scores) for one BGR frame."""
        raise NotImplementedError

    def detect_labelled(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``detect`` with each box's label: (N x 4 pixel boxes, N scores, N labels)."""
        boxes, scores = self.detect(image_bgr)
        return boxes, scores, np.array([self.label] * len(boxes))

    def failure_labels(self) -> list[str]:
        """The labels a failed frame's full-frame boxes carry: every label the node gives."""
        return [self.label]

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        image = inputs["img"]
        try:
            boxes, scores, labels = self.detect_labelled(image)
            bboxes = normalise_boxes(boxes, image.shape[1], image.shape[0])
        except Exception as err:  # noqa: BLE001 - privacy first: hide the whole frame
            self.frames_failed += 1
            self.logger.error(
                "detection failed on a frame (%s: %s): masking the whole frame",
                type(err).__name__, err,
            )
            labels = np.array(self.failure_labels())
            bboxes = np.repeat(FULL_FRAME, len(labels), axis=0)
            scores = np.ones(len(labels), dtype=np.float32)
        return {
            "bboxes": bboxes,
            "bbox_labels": np.asarray(labels, dtype=str).reshape(-1),
            "bbox_scores": np.asarray(scores, dtype=np.float32),
        }


def normalise_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel x1, y1, x2, y2 boxes to [0, 1] coordinates, clipped to the frame."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scale = np.array([width, height, width, height], dtype=np.float32)
    return np.clip(boxes / scale, 0.0, 1.0)
