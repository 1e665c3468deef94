"""Mask geometry shared by every draw node that hides faces.

Draw nodes differ only in how they hide one region (mosaic, blur, ...); turning the
normalised ``bboxes`` into clipped pixel regions lives here, once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

EPSILON = 1e-6


def pixel_regions(bboxes: np.ndarray, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Normalised x1, y1, x2, y2 boxes to integer pixel regions inside the frame.

    Edges are rounded outwards (hide more, never less); boxes that end up empty are
    dropped.
    """
    boxes = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)
    if boxes.size == 0:
        return []
    scaled = boxes * np.array([width, height, width, height])
    # The epsilon keeps float noise (0.55 * 200 = 110.00000000000001) from adding a pixel.
    x1 = np.clip(np.floor(scaled[:, 0] + EPSILON), 0, width).astype(int)
    y1 = np.clip(np.floor(scaled[:, 1] + EPSILON), 0, height).astype(int)
    x2 = np.clip(np.ceil(scaled[:, 2] - EPSILON), 0, width).astype(int)
    y2 = np.clip(np.ceil(scaled[:, 3] - EPSILON), 0, height).astype(int)
    return [
        (int(a), int(b), int(c), int(d))
        for a, b, c, d in zip(x1, y1, x2, y2, strict=False)
        if c > a and d > b
    ]


def hide_regions(
    image: np.ndarray, bboxes: np.ndarray, hide: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Replace each box of ``image`` (in place) by ``hide(region)``; return the image."""
    height, width = image.shape[:2]
    for x1, y1, x2, y2 in pixel_regions(bboxes, width, height):
        image[y1:y2, x1:x2] = hide(image[y1:y2, x1:x2])
    return image
