"""The measures behind ``facepriv eval``, on plain arrays.

The leak measure (see ../shared/REFERENCE.md): a ground-truth face is leaked when the
SSIM between its input and output crops (grey, 64 x 64, Gaussian window 7 x 7,
sigma 1.5) is at least 0.60. Collateral is the share of non-face pixels whose grey value
changed by more than 24 levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facepriv.geometry import iou_matrix

LEAK_SSIM = 0.60
COLLATERAL_LEVELS = 24
CROP_SIDE = 64
SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2
SIZE_BUCKETS = (("<20", 0, 20), ("20-40", 20, 40), ("40-80", 40, 80), (">=80", 80, float("inf")))
IGNORE_OVERLAP = 0.5  # a detection mostly inside an ignore region counts neither way


def size_bucket(height: float) -> str:
    """Face-size bucket of a box, by its height in pixels."""
    for name, low, high in SIZE_BUCKETS:
        if low <= height < high:
            return name
    return SIZE_BUCKETS[-1][0]


def _inside_share(boxes: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """For each box, the largest share of its area inside any one region."""
    boxes, regions = boxes.reshape(-1, 4), regions.reshape(-1, 4)
    if len(regions) == 0 or len(boxes) == 0:
        return np.zeros(len(boxes))
    top_left = np.maximum(boxes[:, None, :2], regions[None, :, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], regions[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 1e-9, None), axis=1)
    return (inter / area[:, None]).max(axis=1)


@dataclass
class Matching:
    """Which faces were found and what each detection turned out to be."""

    face_found: np.ndarray  # bool per ground-truth face
    detection_kind: np.ndarray  # "tp", "fp" or "ignored" per detection
    detection_face: np.ndarray  # index of the matched face, or -1


def match_detections(
    faces: np.ndarray, ignore: np.ndarray, detections: np.ndarray, scores: np.ndarray,
    threshold: float,
) -> Matching:
    """Greedy matching by descending score at an IoU ``threshold``.

    A detection that matches no face but overlaps an ignore region (IoU at the threshold,
    or mostly inside it) is neither a true nor a false positive.
    """
    faces = np.asarray(faces, dtype=np.float64).reshape(-1, 4)
    detections = np.asarray(detections, dtype=np.float64).reshape(-1, 4)
    ignore = np.asarray(ignore, dtype=np.float64).reshape(-1, 4)
    found = np.zeros(len(faces), dtype=bool)
    kind = np.full(len(detections), "fp", dtype=object)
    matched_face = np.full(len(detections), -1)
    ious = iou_matrix(detections, faces)
    ignored = (iou_matrix(detections, ignore).max(axis=1, initial=0) >= threshold) | (
        _inside_share(detections, ignore) >= IGNORE_OVERLAP
    )
    for index in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"):
        candidates = np.where(~found, ious[index], -1.0)
        best = int(np.argmax(candidates)) if len(faces) else -1
        if best >= 0 and candidates[best] >= threshold:
            found[best], kind[index], matched_face[index] = True, "tp", best
        elif ignored[index]:
            kind[index] = "ignored"
    return Matching(found, kind, matched_face)


def ssim(image_a: np.ndarray, image_b: np.ndarray) -> float:
    """Mean SSIM of two grey images of equal size (Gaussian window 7 x 7, sigma 1.5)."""
    a = image_a.astype(np.float64)
    b = image_b.astype(np.float64)

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (7, 7), 1.5, borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    numerator = (2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)
    denominator = (mu_a**2 + mu_b**2 + SSIM_C1) * (var_a + var_b + SSIM_C2)
    return float(np.mean(numerator / denominator))


def crop_grey(image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """The box's pixels, grey and resized to 64 x 64; None for an empty box."""
    height, width = image.shape[:2]
    x1, y1 = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
    x2, y2 = min(int(np.ceil(box[2])), width), min(int(np.ceil(box[3])), height)
    if x2 <= x1 or y2 <= y1:
        return None
    crop = image[y1:y2, x1:x2]
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    return cv2.resize(grey, (CROP_SIDE, CROP_SIDE), interpolation=cv2.INTER_AREA)


def face_leaked(before: np.ndarray, after: np.ndarray | None, box: np.ndarray) -> bool:
    """Is this face still recognisable in ``after``? A missing output leaks every face."""
    return is_leak(face_similarity(before, after, box))


def is_leak(similarity: float | None) -> bool:
    """The leak rule on a face_similarity value (None: an empty box, nothing to leak)."""
    return similarity is not None and similarity >= LEAK_SSIM


def face_similarity(before: np.ndarray, after: np.ndarray | None, box: np.ndarray) -> float | None:
    """SSIM of the face's input and output crops (1.0 for a missing output, None for an
    empty box): how much of the face is left to recognise."""
    if after is None or after.shape != before.shape:
        return 1.0
    crop_before, crop_after = crop_grey(before, box), crop_grey(after, box)
    if crop_before is None:
        return None
    return ssim(crop_before, crop_after)


def changed_pixels(before: np.ndarray, after: np.ndarray | None) -> np.ndarray | None:
    """Where the grey value moved by more than the collateral levels (None: no comparable output)."""
    if after is None or after.shape != before.shape:
        return None
    grey_before = cv2.cvtColor(before, cv2.COLOR_BGR2GRAY).astype(np.int16)
    grey_after = cv2.cvtColor(after, cv2.COLOR_BGR2GRAY).astype(np.int16)
    return np.abs(grey_after - grey_before) > COLLATERAL_LEVELS


def collateral_pixels(
    before: np.ndarray, after: np.ndarray | None, protected: np.ndarray,
    changed: np.ndarray | None = None,
) -> tuple[int, int]:
    """(changed, total) non-face pixels; ``protected`` boxes (faces, ignore) are left out.
    ``changed`` (from ``changed_pixels``) saves comparing the frames again."""
    height, width = before.shape[:2]
    outside = np.ones((height, width), dtype=bool)
    for box in np.asarray(protected, dtype=np.float64).reshape(-1, 4):
        x1, y1 = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
        x2, y2 = min(int(np.ceil(box[2])), width), min(int(np.ceil(box[3])), height)
        outside[y1:y2, x1:x2] = False
    total = int(outside.sum())
    if changed is None:
        changed = changed_pixels(before, after)
    if changed is None:
        return 0, total
    return int((changed & outside).sum()), total
