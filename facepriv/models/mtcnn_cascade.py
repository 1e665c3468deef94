"""The MTCNN face cascade (P-Net, R-Net, O-Net) on the mtcnn package's networks and weights.

Why not ``mtcnn.MTCNN`` itself: mtcnn 1.0.0 counts its pyramid levels from ``min_dim / 12``
and ignores ``min_face_size``, so with a minimum face of 40 px its last levels are smaller
than P-Net's 12 px window and the whole frame fails (an exception, or silently no face at
all). It also runs every network eagerly, one Keras call at a time.

This cascade reproduces the package's algorithm step by step (normalisation, AREA pyramid,
box regression, its NMS, square and crop conventions) so its detections agree with the
package's, but it builds only the pyramid levels P-Net can read and runs each network as a
graph whose input shapes are unknown, so a new frame size never retraces it.

TensorFlow is imported when a cascade is built, never when this module is imported.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from facepriv.errors import ConfigError

WEIGHT_FILES = ("pnet.lz4", "rnet.lz4", "onet.lz4")
CELL = 12  # P-Net's window, in pixels of a pyramid level
STRIDE = 2  # P-Net's step between two windows
# IoU limits of the package's NMS rounds: P-Net per level, P-Net across levels, R-Net, O-Net.
NMS_PNET_LEVEL, NMS_PNET_ALL, NMS_RNET, NMS_ONET = 0.5, 0.7, 0.7, 0.7
NMS_PAIRS = 1 << 18  # box pairs compared at once: bounds memory on crowded frames

Boxes = np.ndarray  # N x 4 float64 pixel boxes x1, y1, x2, y2


def _tensorflow() -> Any:
    """Import TensorFlow on first use, without the C++ messages it prints while loading.

    TensorFlow 2.21 writes oneDNN, CUDA-stub and cuInit lines straight to file
    descriptor 2 whatever TF_CPP_MIN_LOG_LEVEL says; a user would take them for errors.
    Real import failures still surface as Python exceptions after stderr is restored.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _native_stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices()  # device probing prints the cuInit line
    return tf


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class MTCNNCascade:
    """Finds faces in RGB images: ``detect(image) -> (N x 4 pixel boxes, N scores)``.

    ``min_size`` is the smallest face looked for (px), ``scale_factor`` the shrink between
    pyramid levels, ``thresholds`` the P-Net, R-Net and O-Net confidences a window needs to
    go on, ``weights_dir`` a folder with ``pnet.lz4``, ``rnet.lz4`` and ``onet.lz4``
    (default: the weights inside the mtcnn package).
    """

    def __init__(
        self,
        min_size: float = 40,
        scale_factor: float = 0.709,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        weights_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if min_size <= 0:
            raise ValueError(f"min_size must be positive, not {min_size}")
        if not 0.0 < scale_factor < 1.0:
            raise ValueError(f"scale_factor must be between 0 and 1, not {scale_factor}")
        if len(thresholds) != 3:
            raise ValueError(f"thresholds must hold 3 values (P, R, O-Net), not {thresholds}")
        self.min_size = float(min_size)
        self.scale_factor = float(scale_factor)
        self.thresholds = tuple(float(t) for t in thresholds)
        self._tf = tf = _tensorflow()
        from mtcnn.network.onet import ONet
        from mtcnn.network.pnet import PNet
        from mtcnn.network.rnet import RNet

        pnet, rnet, onet = (
            _load_network(network, path)
            for network, path in zip((PNet, RNet, ONet), _weight_paths(weights_dir), strict=True)
        )
        image_spec = tf.TensorSpec([None, None, None, 3], tf.float32)
        self._pnet = _pyramid_through(tf, pnet, self.thresholds[0], image_spec)
        self._rnet = _crops_through(tf, rnet, 24, image_spec)
        self._onet = _crops_through(tf, onet, 48, image_spec)
        # uint8 frames (the usual case) are normalised in a graph: 4x less data to copy.
        self._prepare = tf.function(
            lambda rgb: ((tf.cast(rgb, tf.float32) - 127.5) / 128.0)[None],
            input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)],
        )

    # ------------------------------------------------------------------ public
    def detect(self, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Faces of one RGB (or grey, or RGBA) image: float32 boxes clipped to it, scores."""
        rgb = _as_rgb(image_rgb)
        height, width = rgb.shape[:2]
        scales = self.pyramid(height, width)
        if scales.size == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        if rgb.dtype == np.uint8:
            image = self._prepare(np.ascontiguousarray(rgb))
        else:
            image = self._tf.constant(_normalise(rgb)[None])
        boxes, scores = self._propose(image, height, width, scales)
        boxes, scores = self._refine(
            self._rnet, image, boxes, self.thresholds[1], NMS_RNET, "union", square=True
        )
        boxes, scores = self._refine(
            self._onet, image, boxes, self.thresholds[2], NMS_ONET, "min", square=False
        )
        # Clip to the frame's full extent (not width - 1 like the package): an edge face
        # must not leave its last row or column of pixels unmasked.
        boxes = np.clip(boxes, 0.0, [width, height, width, height])
        return boxes.astype(np.float32), scores.astype(np.float32)

    def pyramid(self, height: int, width: int) -> np.ndarray:
        """Scales m * f**k (m = 12 / min_size) of the levels at least 12 px a side."""
        base = CELL / self.min_size
        if min(height, width) * base < CELL:
            return np.zeros(0)
        steps = np.log(CELL / (min(height, width) * base)) / np.log(self.scale_factor)
        scales = base * self.scale_factor ** np.arange(int(steps) + 2)
        return scales[self._level_sizes(height, width, scales).min(axis=1) >= CELL]

    def tracing_counts(self) -> tuple[int, int, int, int]:
        """How often each graph (normalise, P-, R-, O-Net) was traced: 1 each once warm."""
        return tuple(  # type: ignore[return-value]
            fn.experimental_get_tracing_count()
            for fn in (self._prepare, self._pnet, self._rnet, self._onet)
        )

    # ------------------------------------------------------------------ stages
    @staticmethod
    def _level_sizes(height: int, width: int, scales: np.ndarray) -> np.ndarray:
        """(height, width) of each level, truncated as the package's resize does."""
        return (np.asarray([height, width]) * np.asarray(scales)[:, None]).astype(np.int32)

    def _propose(
        self, image: Any, height: int, width: int, scales: np.ndarray
    ) -> tuple[Boxes, np.ndarray]:
        """P-Net over the pyramid: regressed windows, NMS per level then across, squared."""
        sizes = self._level_sizes(height, width, scales)
        where, score, offsets = (t.numpy() for t in self._pnet(image, sizes))
        # The package's window: (2x + 1, 2y + 1) to (2x + 12, 2y + 12), regressed by 11 px.
        y, x = where[:, 1] * STRIDE, where[:, 2] * STRIDE
        windows = np.stack([x + 1, y + 1, x + CELL, y + CELL], axis=1)
        all_boxes = windows + offsets.astype(np.float64) * (CELL - 1)
        all_scores = score.astype(np.float64)
        bounds = np.searchsorted(where[:, 0], np.arange(len(scales) + 1))
        found_boxes, found_scores = [], []
        for level, scale in enumerate(scales):
            boxes = all_boxes[bounds[level] : bounds[level + 1]]
            scores = all_scores[bounds[level] : bounds[level + 1]]
            order = np.argsort(scores)[::-1]
            boxes, scores = boxes[order] / scale, scores[order]
            keep = _nms(boxes, scores, NMS_PNET_LEVEL, "union", presorted=True)
            found_boxes.append(boxes[keep])
            found_scores.append(scores[keep])
        boxes, scores = np.concatenate(found_boxes), np.concatenate(found_scores)
        keep = _nms(boxes, scores, NMS_PNET_ALL, "union")
        return _square(boxes[keep]), scores[keep]

    def _refine(
        self,
        network: Callable[[Any, Any], tuple[Any, Any]],
        image: Any,
        boxes: Boxes,
        threshold: float,
        nms_threshold: float,
        method: str,
        square: bool,
    ) -> tuple[Boxes, np.ndarray]:
        """R-Net or O-Net on every candidate at once: rescore, regress, filter, NMS."""
        if len(boxes) == 0:
            return boxes, np.zeros(0)
        height, width = image.shape[1:3]
        # The package's crop convention: coordinates over (height, width), y before x.
        crop_boxes = boxes[:, [1, 0, 3, 2]] / np.array([height, width, height, width])
        offsets, scores = (t.numpy() for t in network(image, crop_boxes.astype(np.float32)))
        sides = boxes[:, 2:4] - boxes[:, 0:2] + 1
        # float32 product, as the package multiplies a float32 tensor by these sizes.
        boxes = boxes + offsets * np.tile(sides, 2).astype(np.float32)
        scores = scores.astype(np.float64)
        passed = scores > threshold
        boxes, scores = boxes[passed], scores[passed]
        keep = _nms(boxes, scores, nms_threshold, method)
        boxes, scores = boxes[keep], scores[keep]
        return (_square(boxes) if square else boxes), scores


# ---------------------------------------------------------------------- helpers
def _weight_paths(weights_dir: str | os.PathLike[str] | None) -> list[Path]:
    """The three weight files, or a ConfigError naming the missing one and the fix."""
    if weights_dir is None:
        folder = Path(str(resources.files("mtcnn") / "assets" / "weights"))
        fix = "reinstall the mtcnn package (pip install --force-reinstall mtcnn==1.0.0)"
    else:
        folder = Path(weights_dir).expanduser()
        fix = (
            f"copy pnet.lz4, rnet.lz4 and onet.lz4 from the mtcnn package's assets/weights "
            f"folder into {folder}, or leave weights_parent_dir empty to use the package's"
        )
    paths = [folder / name for name in WEIGHT_FILES]
    for path in paths:
        if not path.is_file():
            raise ConfigError(f"MTCNN weights file {path} is missing: {fix}")
    return paths


def _load_network(network: type, path: Path) -> Any:
    """Build one of the package's Keras networks and load its joblib-pickled weights."""
    import joblib

    model = network()
    model.build()
    try:
        model.set_weights(joblib.load(path))
    except Exception as err:  # noqa: BLE001 - any unreadable or mismatched file
        raise ConfigError(
            f"cannot load MTCNN weights from {path} ({type(err).__name__}: {err}): "
            f"use the {path.name} file shipped with mtcnn 1.0.0"
        ) from err
    return model


def _pyramid_through(tf: Any, pnet: Any, threshold: float, image_spec: Any) -> Any:
    """A graph running P-Net over every pyramid level in one call.

    Takes the image and the (height, width) of each level; returns the windows above
    ``threshold`` as (level, y, x) rows in level then row-major order (like np.where), their
    scores and box offsets. One call per frame instead of one per level saves the per-call
    overhead, and independent levels run side by side on the CPU's cores.
    """
    sizes_spec = tf.TensorSpec([None, 2], tf.int32)

    @tf.function(input_signature=[image_spec, sizes_spec])
    def run(image: Any, sizes: Any) -> tuple[Any, Any, Any]:
        count = tf.shape(sizes)[0]
        found = [
            tf.TensorArray(dtype, size=count, infer_shape=False, element_shape=shape)
            for dtype, shape in ((tf.int64, [None, 3]), (tf.float32, [None]), (tf.float32, [None, 4]))
        ]

        def level(i: Any, where_ta: Any, score_ta: Any, offsets_ta: Any) -> tuple[Any, ...]:
            scaled = tf.image.resize(image, sizes[i], method="area")
            offsets, probs = pnet(scaled, training=False)
            score = probs[0, :, :, 1]
            where = tf.where(score > threshold)
            index = tf.fill([tf.shape(where)[0], 1], tf.cast(i, tf.int64))
            return (
                i + 1,
                where_ta.write(i, tf.concat([index, where], axis=1)),
                score_ta.write(i, tf.gather_nd(score, where)),
                offsets_ta.write(i, tf.gather_nd(offsets[0], where)),
            )

        _, *found = tf.while_loop(
            lambda i, *_: i < count, level, [tf.constant(0), *found], parallel_iterations=8
        )
        return tuple(ta.concat() for ta in found)

    return run


def _crops_through(tf: Any, network: Any, side: int, image_spec: Any) -> Any:
    """A graph that crops every box out of the image at side x side and runs ``network``.

    Returns (N x 4 box offsets, N face scores); all boxes of a stage go in one call.
    """

    @tf.function(input_signature=[image_spec, tf.TensorSpec([None, 4], tf.float32)])
    def run(image: Any, boxes: Any) -> tuple[Any, Any]:
        indices = tf.zeros(tf.shape(boxes)[:1], tf.int32)
        crops = tf.image.crop_and_resize(image, boxes, indices, (side, side))
        outputs = network(crops, training=False)
        return outputs[0], outputs[-1][:, 1]

    return run


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """Accept HxW, HxWx1 (grey), HxWx3 and HxWx4 (alpha dropped) images."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, not {image.shape}")
    if image.shape[2] == 1:
        return np.broadcast_to(image, (*image.shape[:2], 3))
    return image[:, :, :3]


def _normalise(rgb: np.ndarray) -> np.ndarray:
    """(x - 127.5) / 128 into a fresh C-contiguous float32 array, for non-uint8 images."""
    out = np.ascontiguousarray(rgb, dtype=np.float32)
    if np.may_share_memory(out, rgb):
        out = out.copy()
    out -= 127.5
    out *= 1.0 / 128.0  # exact: a power of two
    return out


def _square(boxes: Boxes) -> Boxes:
    """Grow each box's short side to its long one around the same centre."""
    sizes = boxes[:, 2:4] - boxes[:, 0:2]
    longest = sizes.max(axis=1, keepdims=True)
    corner = boxes[:, 0:2] + sizes * 0.5 - longest * 0.5
    return np.concatenate([corner, corner + longest], axis=1)


def _nms(
    boxes: Boxes, scores: np.ndarray, threshold: float, method: str, presorted: bool = False
) -> np.ndarray:
    """The package's NMS, vectorised: indices kept, best score first.

    Not greedy NMS: a box is dropped when ANY higher-scored box, kept or not, overlaps it
    by more than ``threshold`` (IoU for "union", intersection over the smaller area for
    "min"); reproduced as is so results match the package. Only pairs whose x ranges
    overlap can intersect, so pairs come from a sweep over boxes sorted by x1 instead of
    the package's N x N matrix, in bounded chunks.
    """
    order = np.arange(len(scores)) if presorted else np.argsort(scores)[::-1]
    boxes = boxes[order]  # a box's index is now its rank
    count = len(boxes)
    by_x = np.argsort(boxes[:, 0], kind="stable")
    x1_sorted = boxes[by_x, 0]
    # Sorted position p pairs with positions p+1 .. ends[p]-1, those starting before it ends.
    ends = np.searchsorted(x1_sorted, boxes[by_x, 2], side="left")
    partners = np.maximum(ends - np.arange(count) - 1, 0)
    pairs_end = np.cumsum(partners)
    total = int(pairs_end[-1]) if count else 0
    dropped = np.zeros(count, dtype=bool)
    for low in range(0, total, NMS_PAIRS):
        pair = np.arange(low, min(low + NMS_PAIRS, total))
        first = np.searchsorted(pairs_end, pair, side="right")
        second = first + 1 + pair - (pairs_end[first] - partners[first])
        a, b = by_x[first], by_x[second]
        hit = _overlap(boxes[a], boxes[b], method) > threshold
        dropped[np.maximum(a, b)[hit]] = True
    return order[~dropped]


def _overlap(a: Boxes, b: Boxes, method: str) -> np.ndarray:
    """Pairwise overlap of rows a[i], b[i], with the package's formulas (no +1 in areas)."""
    span = np.minimum(a[:, 2:], b[:, 2:]) - np.maximum(a[:, :2], b[:, :2])
    inter = np.maximum(span[:, 0], 0) * np.maximum(span[:, 1], 0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "union":
            return inter / (area_a + area_b - inter)
        return inter / np.minimum(area_a, area_b)
