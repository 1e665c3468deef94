"""model.onnx_detector: the user's own ONNX object detector (licence plates, screens, ID cards).

Why: no permissively licensed plate model ships in a wheel, so facepriv runs the YOLO
detector the user brings, exported to ONNX by Ultralytics or Roboflow, on OpenCV's DNN
module (``facepriv.models.onnx_detector``). Put it after a face detector: its YAML lists
its outputs under ``append:``, so its boxes are added to the faces, and draw nodes with
``labels:`` hide each kind its own way.

Settings (see ``onnx_detector.yml``): ``weights_path``, ``class_names``, ``detect_classes``,
``input_size`` ([height, width]), ``score_threshold``, ``nms_threshold``, ``output_format``.
The model is loaded and run once on a grey frame when the node is built, so that a wrong
file, layout or class list stops the run before the first frame.

Outputs ``bboxes`` (normalised x1, y1, x2, y2), ``bbox_labels`` (class names) and
``bbox_scores``. A frame the model fails on is masked whole under every reported label.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facepriv.detection import FaceDetectorNode
from facepriv.errors import ConfigError

NAME = "model.onnx_detector"


class Node(FaceDetectorNode):
    """A YOLO-style ONNX detector on BGR frames, labelled with ``class_names``."""

    def __init__(self, config: dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        if not self.weights_path:
            raise ConfigError(f"{NAME}.weights_path is not set: give the path of your detector's .onnx file")
        if not self.class_names:
            raise ConfigError(f"{NAME}.class_names is not set: list the label of each class, e.g. [plate]")
        if len(set(self.class_names)) != len(self.class_names):
            raise ConfigError(f"{NAME}.class_names = {self.class_names} names a class twice")
        unknown = [name for name in self.detect_classes or [] if name not in self.class_names]
        if unknown:
            raise ConfigError(
                f"{NAME}.detect_classes names {', '.join(unknown)}, not in class_names "
                f"{self.class_names}: use names from class_names"
            )
        wanted = self.detect_classes or self.class_names
        self._keep = np.array([self.class_names.index(name) for name in wanted], dtype=np.int64)
        self._names = np.array(self.class_names, dtype=str)

        from facepriv.models.onnx_detector import OnnxDetector

        self.model = OnnxDetector(
            self.weights_path, len(self.class_names), tuple(self.input_size), self.output_format
        )

    def detect_labelled(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pixel boxes, scores and class names of the objects of ``detect_classes``."""
        boxes, scores, classes = self.model.detect(
            image_bgr, self.score_threshold, self.nms_threshold, self._keep
        )
        return boxes, scores, self._names[classes]

    def failure_labels(self) -> list[str]:
        return [str(name) for name in self._names[self._keep]]
