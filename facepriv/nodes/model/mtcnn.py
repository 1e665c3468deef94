"""model.mtcnn: finds faces with the MTCNN cascade, PeekingDuck's ``model.mtcnn`` keys.

Settings (see ``mtcnn.yml``):

* ``min_size``: smallest face looked for, in pixels (>= 12). Smaller finds smaller faces
  and costs more time: the image pyramid starts at 12 / min_size.
* ``scale_factor``: shrink between two pyramid levels (0.709 as in the MTCNN paper).
* ``network_thresholds``: confidence a window needs to pass P-Net, R-Net and O-Net.
* ``score_threshold``: final confidence a face needs to be reported.
* ``flip_pass``: also detect in the mirrored frame and merge (``mtcnn_passes``).
* ``box_scale``: width and height factors of the reported boxes, around their centres.
* ``detect_every`` and the ``keyframe_*`` settings: key-frame detection on video files, as
  model.centerface has it (``facepriv.keyframes``; 1, the default, detects every frame).
* ``weights_parent_dir``: a folder with ``pnet.lz4``, ``rnet.lz4`` and ``onet.lz4``;
  empty uses the weights inside the installed mtcnn package.
* ``tf_intra_op_threads``, ``tf_inter_op_threads``: TensorFlow's thread pools (0 = its
  default). They can only be set before TensorFlow runs anything in the process; a later
  node asking for other counts logs a warning and runs with the existing ones.

Outputs ``bboxes`` (normalised x1, y1, x2, y2), ``bbox_labels`` ("face") and
``bbox_scores``. TensorFlow is loaded when the node is built, not when it is imported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facepriv.detection import FaceDetectorNode
from facepriv.keyframes import Detections
from facepriv.models.mtcnn_cascade import MTCNNCascade
from facepriv.models.mtcnn_passes import merge_passes, mirror_boxes, scale_boxes


class Node(FaceDetectorNode):
    """MTCNN face detector on BGR frames."""

    def __init__(self, config: dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.cascade = MTCNNCascade(
            min_size=self.min_size,
            scale_factor=self.scale_factor,
            thresholds=tuple(self.network_thresholds),
            weights_dir=self.weights_parent_dir,
            intra_op_threads=self.tf_intra_op_threads,
            inter_op_threads=self.tf_inter_op_threads,
        )

    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel boxes and scores of the faces scoring at least ``score_threshold``."""
        return self._detect(image_bgr, self.score_threshold)

    def detect_key_frame(self, image_bgr: np.ndarray, pool: dict[str, Any],
                         score_threshold: float) -> Detections:
        """A video key frame down to ``score_threshold`` (hysteresis between key frames)."""
        boxes, scores = self._detect(image_bgr, score_threshold)
        return boxes, scores, np.array([self.label] * len(boxes))

    def _detect(self, image_bgr: np.ndarray, score_threshold: float) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores = self.cascade.detect_bgr(image_bgr)
        if self.flip_pass:
            mirrored, mirrored_scores = self.cascade.detect_bgr(image_bgr[:, ::-1])
            boxes, scores = merge_passes(
                boxes, scores, mirror_boxes(mirrored, image_bgr.shape[1]), mirrored_scores
            )
        keep = scores >= score_threshold
        return scale_boxes(boxes[keep], *self.box_scale), scores[keep]
