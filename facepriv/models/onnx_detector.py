"""Any YOLO-style ONNX object detector on OpenCV's DNN module: licence plates, screens, ID cards.

No permissively licensed plate model ships in a wheel, so facepriv runs the detector the
user brings, as Ultralytics and Roboflow export it. Two output layouts are read:

* ``yolov8``: Ultralytics v8/v11 (and later) exports, one output ``[1, 4 + nc, N]``: per
  candidate, centre x, centre y, width, height in network-input pixels, then one score
  per class;
* ``yolov5``: ``[1, N, 5 + nc]``: the same box, an objectness score, then class
  probabilities (a candidate's score is objectness times its best class probability);
* ``end2end``: ``[1, N, 6]``: final boxes of exports with the suppression inside the
  model (YOLOv10, YOLO26, ``nms=True``): x1, y1, x2, y2 in network-input pixels, score,
  class index; unused rows score 0. They are not suppressed again (the model kept two
  overlapping objects on purpose).

Frames are letterboxed as Ultralytics does (aspect kept, centred, grey 114 padding, RGB,
/255), suppressed per class as Ultralytics does (one box may not hide another class's
box), and boxes are mapped back to frame pixels. Everything the model could get wrong
is checked when it is loaded, with a dummy forward pass: a file that is missing or not
an ONNX model, an input it does not take, an output of no known layout, a class count
that differs from ``class_names``. Each is a :class:`ConfigError` naming the fix.
OpenCV is always installed; onnxruntime is not needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facepriv.errors import ConfigError
from facepriv.models.centerface import as_bgr

FORMATS = ("auto", "yolov8", "yolov5", "end2end")
# An end-to-end export lists at most its max_det boxes (300 by default); a one-class yolov5
# output of the same [1, N, 6] shape has thousands of candidates (25,200 at 640 px).
END2END_MAX_ROWS = 1000
PAD_GREY = (114, 114, 114)
NAME = "model.onnx_detector"


@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into the network input: scale, then left/top padding."""

    gain: float
    left: int
    top: int

    def to_frame(self, boxes: np.ndarray, width: int, height: int) -> np.ndarray:
        """Network-input x1, y1, x2, y2 boxes to frame pixels, clipped to the frame."""
        boxes = (boxes - np.array([self.left, self.top] * 2, dtype=np.float32)) / self.gain
        np.clip(boxes[:, 0::2], 0, width, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, height, out=boxes[:, 1::2])
        return boxes


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """``image`` scaled to fit ``size`` (height, width), aspect kept, centred on grey 114,
    with Ultralytics' rounding (``LetterBox(auto=False)``), so boxes land where its own
    predictor would put them."""
    height, width = image.shape[:2]
    gain = min(size[0] / height, size[1] / width)
    new_w, new_h = round(width * gain), round(height * gain)
    pad_w, pad_h = (size[1] - new_w) / 2, (size[0] - new_h) / 2
    if (new_w, new_h) != (width, height):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(pad_h - 0.1), round(pad_h + 0.1)
    left, right = round(pad_w - 0.1), round(pad_w + 0.1)
    padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=PAD_GREY)
    return padded, Letterbox(gain, left, top)


def expected_shapes(classes: int) -> str:
    """The output shapes a detector of ``classes`` classes may have, for error messages."""
    return f"[1, {4 + classes}, N] (yolov8: 4 + {classes} classes), [1, N, {5 + classes}] " \
        f"(yolov5: 5 + {classes} classes) or [1, N, 6] (end2end: x1, y1, x2, y2, score, class)"


def output_layout(shape: tuple[int, ...], classes: int, output_format: str = "auto") -> str | None:
    """The layout (``yolov8``, ``yolov5``, ``end2end``) an output of ``shape`` is in for
    ``classes`` classes, or None. ``auto`` takes any: of yolov8 and yolov5 the one whose
    candidate count is larger; of yolov5 and end2end (one class) end2end up to
    END2END_MAX_ROWS rows."""
    if len(shape) != 3 or shape[0] != 1:
        return None
    fits = {"yolov8": shape[1] == 4 + classes, "yolov5": shape[2] == 5 + classes, "end2end": shape[2] == 6}
    if output_format != "auto":
        return output_format if fits[output_format] else None
    if fits["end2end"] and fits["yolov5"]:
        return "end2end" if shape[1] <= END2END_MAX_ROWS else "yolov5"
    rows_last = next((name for name in ("yolov5", "end2end") if fits[name]), None)  # [1, N, k]
    if fits["yolov8"] and rows_last is not None:
        return "yolov8" if shape[2] >= shape[1] else rows_last
    return "yolov8" if fits["yolov8"] else rows_last


def class_count_hint(shape: tuple[int, ...], output_format: str) -> tuple[str, int] | None:
    """The layout and class count a 3-D output most likely has, when it fits none for the
    given class names: the candidate axis is the long one."""
    if len(shape) != 3 or shape[0] != 1:
        return None
    layout = "yolov8" if shape[1] < shape[2] else "yolov5"
    if output_format not in ("auto", layout):
        return None
    count = shape[1] - 4 if layout == "yolov8" else shape[2] - 5
    return (layout, count) if count >= 1 else None


def decode(
    output: np.ndarray, layout: str, score_threshold: float, keep: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates of a raw output as (x1, y1, x2, y2 network-input boxes, scores, class
    indices), those scoring at least ``score_threshold`` among classes ``keep`` (None: all)."""
    rows = output[0].T if layout == "yolov8" else output[0]
    rows = np.asarray(rows, dtype=np.float32)
    if layout == "end2end":
        classes = np.rint(rows[:, 5]).astype(np.int64)
        chosen = rows[:, 4] >= score_threshold
        if keep is not None:
            chosen &= np.isin(classes, keep)
        return rows[chosen, :4].copy(), rows[chosen, 4].copy(), classes[chosen]
    if layout == "yolov8":
        class_scores = rows[:, 4:]
    else:
        class_scores = rows[:, 5:] * rows[:, 4:5]
    if keep is not None:
        masked = np.full_like(class_scores, -np.inf)
        masked[:, keep] = class_scores[:, keep]
        class_scores = masked
    classes = np.argmax(class_scores, axis=1) if len(rows) else np.zeros(0, dtype=np.int64)
    scores = class_scores[np.arange(len(rows)), classes]
    chosen = scores >= score_threshold
    centre, size = rows[chosen, 0:2], rows[chosen, 2:4]
    boxes = np.hstack([centre - size / 2, centre + size / 2]).astype(np.float32)
    return boxes, scores[chosen].astype(np.float32), classes[chosen].astype(np.int64)


def nms_per_class(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression within each class, best first."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    xywh = np.hstack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]).astype(np.float64)
    keep = cv2.dnn.NMSBoxesBatched(
        xywh.tolist(), scores.astype(float).tolist(), classes.astype(int).tolist(), 0.0, iou_threshold
    )
    return np.asarray(keep, dtype=np.int64).reshape(-1)


class OnnxDetector:
    """A user's ONNX detector: ``detect(image) -> (pixel boxes, scores, class indices)``.

    ``input_size`` is (height, width), as Ultralytics' ``imgsz``; ``classes`` is the number
    of classes the model was trained on (``class_names``' length).
    """

    def __init__(
        self,
        weights_path: str | os.PathLike[str],
        classes: int,
        input_size: tuple[int, int] = (640, 640),
        output_format: str = "auto",
    ) -> None:
        if output_format not in FORMATS:
            raise ValueError(f"output_format must be one of {FORMATS}, not {output_format!r}")
        self.weights = Path(weights_path).expanduser()
        self.classes = classes
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self._net = _read_net(self.weights)
        self._names = list(self._net.getUnconnectedOutLayersNames())
        self.layout, self._output = self._check_outputs(output_format)

    def _forward(self, blob: np.ndarray) -> list[np.ndarray]:
        self._net.setInput(blob)
        return list(self._net.forward(self._names))

    def _check_outputs(self, output_format: str) -> tuple[str, int]:
        """Run a grey frame through the model and find the output in a known layout."""
        height, width = self.input_size
        blob = np.full((1, 3, height, width), 114 / 255, dtype=np.float32)
        try:
            outputs = self._forward(blob)
        except cv2.error as err:
            raise ConfigError(
                f"{NAME}: the model '{self.weights}' does not run on a 1 x 3 x {height} x {width} "
                f"input ({_reason(err)}): set input_size to the [height, width] it was exported at "
                "(Ultralytics' imgsz)"
            ) from None
        shapes = [tuple(int(d) for d in out.shape) for out in outputs]
        for index, shape in enumerate(shapes):
            layout = output_layout(shape, self.classes, output_format)
            if layout is not None:
                return layout, index
        listed = ", ".join(str(list(shape)) for shape in shapes)
        for shape in shapes:
            other = output_layout(shape, self.classes)
            if other is not None:
                raise ConfigError(
                    f"{NAME}: the model '{self.weights}' outputs {list(shape)}, the {other} layout, "
                    f"not {output_format}: set output_format to auto (or {other})"
                )
        for shape in shapes:
            hint = class_count_hint(shape, output_format)
            if hint is not None:
                raise ConfigError(
                    f"{NAME}: the model '{self.weights}' outputs {list(shape)}, a {hint[0]} detector "
                    f"of {hint[1]} class(es), but class_names lists {self.classes}: list one name "
                    "per class, in the model's class order"
                )
        wanted = expected_shapes(self.classes) if output_format == "auto" else \
            expected_shapes(self.classes).split(" or ")[0 if output_format == "yolov8" else 1]
        raise ConfigError(
            f"{NAME}: the model '{self.weights}' outputs {listed}, which is no known detector "
            f"layout: expected {wanted}; export a YOLO detector (not a segmentation, pose or "
            "classification model) to ONNX"
        )

    def detect(
        self,
        image: np.ndarray,
        score_threshold: float = 0.25,
        nms_threshold: float = 0.45,
        keep: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame-pixel boxes, scores and class indices of the objects of a BGR image."""
        image = as_bgr(image)
        height, width = image.shape[:2]
        if height == 0 or width == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
        padded, fit = letterbox(image, self.input_size)
        blob = cv2.dnn.blobFromImage(padded, 1.0 / 255.0, swapRB=True)  # the network reads RGB
        output = self._forward(blob)[self._output]
        if keep is None and self.layout == "end2end":  # a row may name a class class_names lacks
            keep = np.arange(self.classes)
        boxes, scores, classes = decode(output, self.layout, score_threshold, keep)
        kept = np.arange(len(boxes)) if self.layout == "end2end" else \
            nms_per_class(boxes, scores, classes, nms_threshold)
        return fit.to_frame(boxes[kept], width, height), scores[kept], classes[kept]


def _reason(err: Exception) -> str:
    return " ".join(str(err).split())[:200]  # OpenCV's message spans lines


def _read_net(weights: Path) -> Any:
    """The model on OpenCV's DNN module; a missing or unreadable file is a setting to fix."""
    if not weights.is_file():
        where = "is a folder" if weights.is_dir() else "does not exist"
        raise ConfigError(
            f"{NAME}: weights_path '{weights}' {where}: set it to your detector's .onnx file "
            "(see the README, 'Hide more than faces')"
        )
    try:
        return cv2.dnn.readNetFromONNX(str(weights))
    except cv2.error as err:
        raise ConfigError(
            f"{NAME}: cannot read the model '{weights}' ({_reason(err)}): export the detector "
            "to ONNX again (see the README, 'Hide more than faces')"
        ) from None
