"""Extra MTCNN passes and box geometry, on plain arrays (no TensorFlow).

MTCNN misses some turned, occluded and cut-off faces that it finds in the mirrored frame:
a second pass on the mirrored frame, merged with the first, lets fewer faces through.
A face found by both passes is reported once, with the box covering both boxes and the
better score (hide more when in doubt). ``scale_boxes`` reshapes the reported boxes around
their centres: the merged boxes are wider than either pass's box, and the draw nodes grow
every box again, so the width is where the mask spills onto the background.
"""

from __future__ import annotations

import numpy as np

from facepriv.geometry import iou_matrix

SAME_FACE_IOU = 0.5  # two boxes of the two passes overlapping this much are one face


def mirror_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Boxes found in the horizontally mirrored frame, in the frame's own coordinates."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], axis=1)


def merge_passes(
    boxes: np.ndarray, scores: np.ndarray, other_boxes: np.ndarray, other_scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One face list from two passes: pairs (IoU >= 0.5, best first) become the box
    covering both with the higher score; faces found by one pass only are kept as found."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    other_boxes = np.asarray(other_boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    other_scores = np.asarray(other_scores, dtype=np.float64).reshape(-1)
    ious = iou_matrix(boxes, other_boxes)
    free = np.ones(len(other_boxes), dtype=bool)
    merged_boxes, merged_scores = boxes.copy(), scores.copy()
    for index in np.argsort(-scores, kind="stable"):
        candidates = np.where(free, ious[index], -1.0)
        best = int(np.argmax(candidates)) if len(other_boxes) else -1
        if best < 0 or candidates[best] < SAME_FACE_IOU:
            continue
        free[best] = False
        pair = np.stack([boxes[index], other_boxes[best]])
        merged_boxes[index] = np.concatenate([pair[:, :2].min(axis=0), pair[:, 2:].max(axis=0)])
        merged_scores[index] = max(scores[index], other_scores[best])
    return (
        np.concatenate([merged_boxes, other_boxes[free]]),
        np.concatenate([merged_scores, other_scores[free]]),
    )


def scale_boxes(boxes: np.ndarray, width_scale: float, height_scale: float) -> np.ndarray:
    """Each box's width and height multiplied around its centre."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if (width_scale, height_scale) == (1.0, 1.0) or boxes.size == 0:
        return boxes
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * np.array([width_scale, height_scale])
    return np.hstack([centre - half, centre + half])
