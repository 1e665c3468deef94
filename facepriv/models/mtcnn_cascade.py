"""The MTCNN face cascade (P-Net, R-Net, O-Net) on the mtcnn package's networks and weights.

Why not ``mtcnn.MTCNN`` itself: mtcnn 1.0.0 counts its pyramid levels from ``min_dim / 12``
and ignores ``min_face_size``, so with a minimum face of 40 px its last levels are smaller
than P-Net's 12 px window and the whole frame fails (an exception, or silently no face at
all). It also runs every network eagerly, one Keras call per level and per stage, with
numpy/tensor conversions in between: most of its time is that overhead, not the networks.

This cascade reproduces the package's algorithm step by step (normalisation, AREA pyramid,
box regression, its NMS, square and crop conventions): its pyramid levels and crops are
the package's up to float rounding and its boxes match the package's within 0.02 px on
the evaluation photos and frames. It builds only the pyramid levels P-Net can read, packs them into one
canvas so P-Net runs once per frame (``mtcnn_layout``), and runs each stage as one
compiled graph whose input shapes are unknown, so a new frame size never retraces it
(``mtcnn_graphs``).

TensorFlow is imported when a cascade is built, never when this module is imported.
"""

from __future__ import annotations

import importlib.util
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facepriv.errors import ConfigError
from facepriv.models import mtcnn_graphs
from facepriv.models.mtcnn_layout import CELL, Layout, build_layout, level_sizes, pyramid_scales

WEIGHT_FILES = ("pnet.lz4", "rnet.lz4", "onet.lz4")
STRIDE = 2  # P-Net's step between two windows
# IoU limits of the package's NMS rounds: P-Net per level, P-Net across levels, R-Net, O-Net.
NMS_PNET_LEVEL, NMS_PNET_ALL, NMS_RNET, NMS_ONET = 0.5, 0.7, 0.7, 0.7
NMS_DENSE = 32  # up to this many boxes NMS compares every pair at once (measured: the
# sweep below is 2x faster at 64 boxes, 6x at 256)
NMS_PAIRS = 1 << 18  # beyond, box pairs compared at once: bounds memory on crowded frames
# Crops from which R-Net and O-Net run as two halves on two threads: below, the second
# thread's overhead outweighs its share (O-Net does about 10x R-Net's work per crop).
SPLIT_RNET, SPLIT_ONET = 32, 4
# Canvas layouts are cached per frame size, up to this many bytes of arrays (NumPy and
# TensorFlow copies): a video needs one; a photo folder of mixed sizes (104 sizes in 200
# evaluation photos) reuses most instead of rebuilding each (~1.2 ms a photo).
LAYOUT_CACHE_BYTES = 64 << 20
LOGIT_SLACK = 1e-3  # the graph keeps cells a hair under the threshold; the exact test follows

Boxes = np.ndarray  # N x 4 float64 pixel boxes x1, y1, x2, y2


class MTCNNCascade:
    """Finds faces in RGB images: ``detect(image) -> (N x 4 pixel boxes, N scores)``.

    ``min_size`` is the smallest face looked for (px), ``scale_factor`` the shrink between
    pyramid levels, ``thresholds`` the P-Net, R-Net and O-Net confidences a window needs to
    go on, ``weights_dir`` a folder with ``pnet.lz4``, ``rnet.lz4`` and ``onet.lz4``
    (default: the weights inside the mtcnn package). ``intra_op_threads`` and
    ``inter_op_threads`` size TensorFlow's thread pools (0: TensorFlow's default); they
    apply only if TensorFlow has not run anything yet in this process.
    """

    def __init__(
        self,
        min_size: float = 40,
        scale_factor: float = 0.709,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        weights_dir: str | os.PathLike[str] | None = None,
        intra_op_threads: int = 0,
        inter_op_threads: int = 0,
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
        paths = _weight_paths(weights_dir)
        self._tf = tf = mtcnn_graphs.tensorflow(intra_op_threads, inter_op_threads)
        pnet, rnet, onet = mtcnn_graphs.load_weights(paths)
        self._graphs = (
            mtcnn_graphs.pnet_graph(tf, pnet),
            mtcnn_graphs.crops_graph(tf, rnet, mtcnn_graphs.rnet_body, 24, SPLIT_RNET),
            mtcnn_graphs.crops_graph(tf, onet, mtcnn_graphs.onet_body, 48, SPLIT_ONET),
        )
        # Their one concrete graph each, called directly: skips ~1.4 ms of argument binding.
        self._pnet, self._rnet, self._onet = (
            mtcnn_graphs.DirectCall(tf, g.get_concrete_function()) for g in self._graphs
        )
        self._margin = tf.constant(_logit(self.thresholds[0]) - LOGIT_SLACK, tf.float32)
        # Frame size -> (layout, its arrays as tensors), or None when too small for a face,
        # least recently used first; and the bytes each entry holds.
        self._layouts: OrderedDict[tuple[int, int], tuple[Layout, tuple[Any, ...]] | None] = (
            OrderedDict()
        )
        self._layout_bytes: dict[tuple[int, int], int] = {}

    # ------------------------------------------------------------------ public
    def detect(self, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Faces of one RGB (or grey, or RGBA) image: float32 boxes clipped to it, scores."""
        image = np.asarray(image_rgb)
        if image.ndim == 3 and image.shape[2] in (3, 4):
            image = image[:, :, 2::-1]
        return self.detect_bgr(image)

    def detect_bgr(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Faces of one BGR (or grey, or BGRA) image, as OpenCV reads them: boxes, scores.

        The graphs take the BGR frame as it is: their first convolutions swap channels and
        normalise, which saves two full-frame passes per frame.
        """
        frame = _as_bgr_uint8(image_bgr)
        height, width = frame.shape[:2]
        canvas = self._canvas(height, width)
        if canvas is None:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        pixels = self._tf.constant(frame)  # one copy into TensorFlow for the three graphs
        boxes, scores = self._propose(pixels, *canvas)
        boxes, scores = self._refine(
            self._rnet, pixels, boxes, self.thresholds[1], NMS_RNET, "union", square=True
        )
        boxes, scores = self._refine(
            self._onet, pixels, boxes, self.thresholds[2], NMS_ONET, "min", square=False
        )
        # Clip to the frame's full extent (not width - 1 like the package): an edge face
        # must not leave its last row or column of pixels unmasked.
        boxes = np.clip(boxes, 0.0, [width, height, width, height])
        return boxes.astype(np.float32), scores.astype(np.float32)

    def pyramid(self, height: int, width: int) -> np.ndarray:
        """Scales m * f**k (m = 12 / min_size) of the levels at least 12 px a side."""
        return pyramid_scales(height, width, self.min_size, self.scale_factor)

    def layout(self, height: int, width: int) -> Layout | None:
        """The P-Net canvas of a frame size (None: too small for any face), cached."""
        canvas = self._canvas(height, width)
        return None if canvas is None else canvas[0]

    def tracing_counts(self) -> tuple[int, int, int]:
        """How often each graph (P-, R-, O-Net) was traced: 1 each, whatever the sizes."""
        return tuple(g.experimental_get_tracing_count() for g in self._graphs)  # type: ignore[return-value]

    def _canvas(self, height: int, width: int) -> tuple[Layout, tuple[Any, ...]] | None:
        """The layout of a frame size and its P-Net graph inputs, built once per size."""
        key = (height, width)
        if key in self._layouts:
            self._layouts.move_to_end(key)
            return self._layouts[key]
        layout = build_layout(height, width, self.min_size, self.scale_factor)
        found, size = None, 0
        if layout is not None:
            arrays = [a for c in layout.canvases for a in (c.sizes, c.index, c.edges, c.valid)]
            found = (layout, tuple(self._tf.constant(a, dtype=a.dtype) for a in arrays))
            size = 2 * sum(a.nbytes for a in arrays) + sum(c.level_of.nbytes for c in layout.canvases)
        self._layouts[key], self._layout_bytes[key] = found, size
        while sum(self._layout_bytes.values()) > LAYOUT_CACHE_BYTES and len(self._layouts) > 1:
            oldest, _ = self._layouts.popitem(last=False)
            del self._layout_bytes[oldest]
        return found

    # ------------------------------------------------------------------ stages
    @staticmethod
    def _level_sizes(height: int, width: int, scales: np.ndarray) -> np.ndarray:
        return level_sizes(height, width, scales)

    def _pnet_windows(
        self, frame: Any, layout: Layout, inputs: tuple[Any, ...]
    ) -> tuple[np.ndarray, Boxes, np.ndarray]:
        """P-Net's windows above threshold: level, regressed level-pixel box, score.

        Windows are sorted by level, then in row-major order within a level, as np.where
        lists them in the package: its NMS breaks score ties by that order.
        """
        found = [t.numpy() for t in self._pnet(frame, *inputs, self._margin)]
        # Each canvas's cells, with their pyramid level, in one list.
        cells = np.concatenate(found[0::3])
        scores = np.concatenate(found[1::3])
        offsets = np.concatenate(found[2::3])
        level = np.concatenate([
            canvas.level_of[c[:, 0], c[:, 1]] for canvas, c in zip(layout.canvases, found[0::3], strict=True)
        ]).astype(np.intp)
        passed = scores > self.thresholds[0]
        cells, scores, offsets, level = cells[passed], scores[passed], offsets[passed], level[passed]
        order = np.argsort(level, kind="stable")
        cells, scores, offsets, level = cells[order], scores[order], offsets[order], level[order]
        local = cells - layout.origins[level] // 2
        # The package's window: (2x + 1, 2y + 1) to (2x + 12, 2y + 12), regressed by 11 px.
        y, x = local[:, 0] * STRIDE, local[:, 1] * STRIDE
        windows = np.stack([x + 1, y + 1, x + CELL, y + CELL], axis=1)
        boxes = windows + offsets.astype(np.float64) * (CELL - 1)
        return level, boxes, scores.astype(np.float64)

    def _propose(self, frame: Any, layout: Layout, inputs: tuple[Any, ...]) -> tuple[Boxes, np.ndarray]:
        """P-Net over the pyramid: regressed windows, NMS per level then across, squared."""
        level, boxes, scores = self._pnet_windows(frame, layout, inputs)
        if len(scores) == 0:
            return np.zeros((0, 4)), np.zeros(0)
        # Each level's windows best first, as the package sorts them, levels in order; then
        # one NMS call that compares windows of the same level only.
        bounds = np.searchsorted(level, np.arange(len(layout.scales) + 1))
        order = np.concatenate([
            start + np.argsort(scores[start:end])[::-1]
            for start, end in zip(bounds[:-1], bounds[1:], strict=True)
        ])
        level, scores = level[order], scores[order]
        boxes = boxes[order] / layout.scales[level][:, None]
        keep = _nms(boxes, scores, NMS_PNET_LEVEL, "union", presorted=True, groups=level)
        boxes, scores = boxes[keep], scores[keep]
        keep = _nms(boxes, scores, NMS_PNET_ALL, "union")
        return _square(boxes[keep]), scores[keep]

    def _refine(
        self,
        network: Any,
        frame: Any,
        boxes: Boxes,
        threshold: float,
        nms_threshold: float,
        method: str,
        square: bool,
    ) -> tuple[Boxes, np.ndarray]:
        """R-Net or O-Net on every candidate at once: rescore, regress, filter, NMS."""
        if len(boxes) == 0:
            return boxes, np.zeros(0)
        height, width = frame.shape[:2]
        # The package's crop convention: coordinates over (height, width), y before x.
        crop_boxes = boxes[:, [1, 0, 3, 2]] / np.array([height, width, height, width])
        # Padded to a few batch sizes: each new size costs oneDNN ~3 ms (and memory) to
        # compile its kernels, and the candidate count changes from frame to frame.
        padded = np.resize(crop_boxes.astype(np.float32), (_batch_size(len(boxes)), 4))
        offsets, scores = (t.numpy()[: len(boxes)] for t in network(frame, padded))
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
        # find_spec locates the package without importing it (and TensorFlow with it).
        spec = importlib.util.find_spec("mtcnn")
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError("the mtcnn package is not installed: pip install mtcnn==1.0.0")
        folder = Path(list(spec.submodule_search_locations)[0]) / "assets" / "weights"
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


def _batch_size(count: int) -> int:
    """``count`` rounded up to 1-8, then multiples of 8 to 64, then of 32: 46 sizes up to
    1,000 candidates, and little padding where O-Net's crops are costly."""
    if count <= 8:
        return count
    step = 8 if count <= 64 else 32
    return -(-count // step) * step


def _logit(probability: float) -> float:
    """The face-minus-background logit margin P-Net's softmax turns into ``probability``."""
    if probability <= 0.0:
        return -np.inf
    if probability >= 1.0:
        return np.inf
    return float(np.log(probability / (1.0 - probability)))


def _as_bgr_uint8(image: np.ndarray) -> np.ndarray:
    """HxW, HxWx1 (grey), HxWx3 and HxWx4 (alpha dropped) images as contiguous uint8 BGR.

    Other dtypes are read as 0-255 intensities, as the package does, rounded and clipped.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, not {image.shape}")
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    if image.shape[2] == 1:
        image = np.broadcast_to(image, (*image.shape[:2], 3))
    return np.ascontiguousarray(image[:, :, :3])


def _square(boxes: Boxes) -> Boxes:
    """Grow each box's short side to its long one around the same centre."""
    sizes = boxes[:, 2:4] - boxes[:, 0:2]
    longest = sizes.max(axis=1, keepdims=True)
    corner = boxes[:, 0:2] + sizes * 0.5 - longest * 0.5
    return np.concatenate([corner, corner + longest], axis=1)


def _nms(
    boxes: Boxes,
    scores: np.ndarray,
    threshold: float,
    method: str,
    presorted: bool = False,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """The package's NMS, vectorised: indices kept, best score first.

    Not greedy NMS: a box is dropped when ANY higher-scored box, kept or not, overlaps it
    by more than ``threshold`` (IoU for "union", intersection over the smaller area for
    "min"); reproduced as is so results match the package. ``groups`` (one integer per
    box) runs independent NMS rounds in one call: boxes of different groups never drop
    each other, as if each group had its own call (the package's per-level rounds).
    Up to NMS_DENSE boxes the package's N x N matrix is cheapest; beyond, only pairs whose
    x ranges overlap can intersect, so pairs come from a sweep over boxes sorted by x1
    (groups shifted apart along x), in bounded chunks.
    """
    order = np.arange(len(scores)) if presorted else np.argsort(scores)[::-1]
    boxes = boxes[order]  # a box's index is now its rank
    count = len(boxes)
    if count <= NMS_DENSE:
        hit = _overlap(boxes[:, None], boxes[None], method) > threshold
        if groups is not None:
            hit &= groups[order][:, None] == groups[order][None]
        return order[~np.triu(hit, 1).any(axis=0)]
    starts, ends = boxes[:, 0], boxes[:, 2]
    if groups is not None:  # only the sweep's ranges move; overlaps use the true boxes
        shift = (groups[order] - groups.min()) * (np.ptp(boxes[:, [0, 2]]) + 1.0)
        starts, ends = starts + shift, ends + shift
    by_x = np.argsort(starts, kind="stable")
    x1_sorted = starts[by_x]
    # Sorted position p pairs with positions p+1 .. ends[p]-1, those starting before it ends.
    ends = np.searchsorted(x1_sorted, ends[by_x], side="left")
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
    """Overlap of boxes a[...] and b[...] (broadcast), with the package's formulas (no +1)."""
    span = np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2])
    inter = np.maximum(span[..., 0], 0) * np.maximum(span[..., 1], 0)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "union":
            return inter / (area_a + area_b - inter)
        return inter / np.minimum(area_a, area_b)
