"""What every face-detector node shares: the data keys it fills and its failure rule.

A detector error on a frame must never let that frame out unmasked, so when
``detect`` raises, the node logs it and reports one box covering the whole frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facepriv.node import AbstractNode

FULL_FRAME = np.array([[0.0, 0.0, 1.0, 1.0]], dtype=np.float32)


class FaceDetectorNode(AbstractNode):
    """Base for ``model.*`` nodes: pixel boxes in, PeekingDuck's normalised keys out."""

    label = "face"

    def __init__(self, config: dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.frames_failed = 0

    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (N x 4 pixel boxes x1, y1, x2, y2; N scores) for one BGR frame."""
        raise NotImplementedError

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        image = inputs["img"]
        try:
            boxes, scores = self.detect(image)
            bboxes = normalise_boxes(boxes, image.shape[1], image.shape[0])
        except Exception as err:  # noqa: BLE001 - privacy first: hide the whole frame
            self.frames_failed += 1
            self.logger.error(
                "face detection failed on a frame (%s: %s): masking the whole frame",
                type(err).__name__, err,
            )
            bboxes, scores = FULL_FRAME.copy(), np.ones(1, dtype=np.float32)
        return {
            "bboxes": bboxes,
            "bbox_labels": np.array([self.label] * len(bboxes)),
            "bbox_scores": np.asarray(scores, dtype=np.float32),
        }


def normalise_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel x1, y1, x2, y2 boxes to [0, 1] coordinates, clipped to the frame."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scale = np.array([width, height, width, height], dtype=np.float32)
    return np.clip(boxes / scale, 0.0, 1.0)
