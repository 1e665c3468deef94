"""Box geometry shared by the tracker, the draw nodes and the measures.

Boxes are x1, y1, x2, y2 rows, in any one coordinate system (normalised or pixels).
"""

from __future__ import annotations

import numpy as np


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``boxes_a`` with every box of ``boxes_b``."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_boxes(boxes_a: np.ndarray, labels_a: np.ndarray, boxes_b: np.ndarray, labels_b: np.ndarray,
                min_iou: float) -> list[tuple[int, int]]:
    """(row in a, row in b) pairs of the same object: same label, overlapping by ``min_iou``
    or more, matched one to one, best overlap first."""
    overlap = iou_matrix(boxes_a, boxes_b)
    overlap[np.asarray(labels_a).reshape(-1)[:, None] != np.asarray(labels_b).reshape(-1)[None, :]] = -1.0
    pairs: list[tuple[int, int]] = []
    while overlap.size and overlap.max() >= min_iou:
        row, col = np.unravel_index(int(np.argmax(overlap)), overlap.shape)
        pairs.append((int(row), int(col)))
        overlap[row, :] = -1.0
        overlap[:, col] = -1.0
    return pairs


def grow_boxes(boxes: np.ndarray, scale: float) -> np.ndarray:
    """Scale each box's width and height by ``scale`` around its centre."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if scale == 1.0 or boxes.size == 0:
        return boxes
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * scale
    return np.hstack([centre - half, centre + half])


def transform_boxes(matrix: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The boxes moved by a 3x3 affine transform: the bounding box of each moved rectangle."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if boxes.size == 0:
        return boxes
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    size = boxes[:, 2:] - boxes[:, :2]
    linear, shift = matrix[:2, :2], matrix[:2, 2]
    moved_centre = centre @ linear.T + shift
    half = (size @ np.abs(linear).T) / 2
    return np.hstack([moved_centre - half, moved_centre + half])


def share_inside_unit_square(boxes: np.ndarray) -> np.ndarray:
    """For each normalised box, the share of its area inside the frame."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    inside = np.clip(boxes, 0.0, 1.0)
    area = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 1e-12, None), axis=1)
    return np.prod(np.clip(inside[:, 2:] - inside[:, :2], 0, None), axis=1) / area


def normalise_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel x1, y1, x2, y2 boxes to [0, 1] coordinates, clipped to the frame."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scale = np.array([width, height, width, height], dtype=np.float32)
    return np.clip(boxes / scale, 0.0, 1.0)


def pixel_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Normalised boxes to pixels of a ``width`` x ``height`` frame (float32, not rounded)."""
    scale = np.array([width, height, width, height], dtype=np.float64)
    return (np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale).astype(np.float32)
