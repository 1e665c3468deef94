"""Where each pyramid level sits in the canvases P-Net reads, and what a canvas needs.

Running P-Net over a canvas that holds many levels side by side replaces one graph call
per level (each with its own overhead, small levels keeping a core idle) with one large
convolution. The levels are split between two canvases of about equal cost, which the
P-Net graph runs side by side: with a second core free P-Net takes ~40 % less time, on
a busy machine it costs nothing more. A layout depends only on the frame size, so it is
computed once per size and reused for every frame of a video.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CELL = 12  # P-Net's window, in pixels of a pyramid level


def pyramid_scales(height: int, width: int, min_size: float, scale_factor: float) -> np.ndarray:
    """Scales m * f**k (m = 12 / min_size) of the levels at least 12 px a side."""
    base = CELL / min_size
    if min(height, width) * base < CELL:
        return np.zeros(0)
    steps = np.log(CELL / (min(height, width) * base)) / np.log(scale_factor)
    scales = base * scale_factor ** np.arange(int(steps) + 2)
    return scales[level_sizes(height, width, scales).min(axis=1) >= CELL]


def level_sizes(height: int, width: int, scales: np.ndarray) -> np.ndarray:
    """(height, width) of each level, truncated as the package's resize does."""
    return (np.asarray([height, width]) * np.asarray(scales)[:, None]).astype(np.int32)


def pnet_cells(size: np.ndarray) -> np.ndarray:
    """P-Net's output cells for an input of (height, width): conv 3, pool 2 (same), conv 3, 3."""
    return -(-(np.asarray(size) - 2) // 2) - 4


# Canvas sides are multiples of this: frames of nearby sizes (photos) then share canvas
# shapes, and oneDNN reuses the kernels it compiled for them (~4 ms per new shape).
CANVAS_STEP = 32
# Relative cost of P-Net per canvas pixel and of one AREA resize per frame pixel, measured
# on this project's machine: used to share the levels fairly between the two canvases.
PNET_COST, RESIZE_COST = 66.0, 0.7


@dataclass(frozen=True)
class Canvas:
    """Some pyramid levels packed together: one P-Net branch's inputs, and how to read it."""

    levels: np.ndarray  # which pyramid levels it holds (may be none)
    sizes: np.ndarray  # their (height, width)
    index: np.ndarray  # canvas H x W: row of the flat table of its levels' pixels
    edges: np.ndarray  # M x 6 pooled cells across an odd level edge, see _odd_edges
    valid: np.ndarray  # output cells that belong to a level
    level_of: np.ndarray  # output cells -> pyramid level, -1 for the gaps


@dataclass(frozen=True)
class Layout:
    """The pyramid of one frame size and the two canvases holding its levels."""

    scales: np.ndarray  # L
    sizes: np.ndarray  # L x 2 level (height, width)
    origins: np.ndarray  # L x 2 (y, x) of each level in its canvas, both even
    canvases: tuple[Canvas, Canvas]


def build_layout(height: int, width: int, min_size: float, scale_factor: float) -> Layout | None:
    """The canvases of a frame size, or None when no level is 12 px a side."""
    scales = pyramid_scales(height, width, min_size, scale_factor)
    if scales.size == 0:
        return None
    sizes = level_sizes(height, width, scales)
    origins = np.zeros((len(sizes), 2), np.int64)
    canvases = tuple(_canvas(levels, sizes, origins) for levels in _split(sizes, height * width))
    return Layout(scales, sizes, origins, canvases)  # type: ignore[arg-type]


def _split(sizes: np.ndarray, frame_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Two groups of levels of about equal cost, largest first (LPT scheduling)."""
    cost = PNET_COST * sizes.prod(axis=1) + RESIZE_COST * frame_pixels
    groups: tuple[list[int], list[int]] = ([], [])
    totals = [0.0, 0.0]
    for level in np.argsort(-cost, kind="stable"):
        lighter = int(totals[1] < totals[0])
        groups[lighter].append(int(level))
        totals[lighter] += cost[level]
    return tuple(np.sort(np.array(g, np.int64)) for g in groups)  # type: ignore[return-value]


def _canvas(levels: np.ndarray, all_sizes: np.ndarray, origins: np.ndarray) -> Canvas:
    """Pack ``levels`` into one canvas; record their origins in ``origins``."""
    sizes = all_sizes[levels]
    if len(levels) == 0:  # nothing to run: placeholders of the right ranks
        return Canvas(levels, sizes.reshape(0, 2), np.zeros((CELL, CELL), np.int32),
                      np.zeros((0, 6), np.int32), np.zeros((1, 1), bool), np.full((1, 1), -1, np.int16))
    placed, canvas = _pack(sizes + (sizes & 1))
    canvas = -(-canvas // CANVAS_STEP) * CANVAS_STEP  # shared shapes: compiled kernels reused
    origins[levels] = placed
    starts = np.concatenate([[0], np.cumsum(sizes.prod(axis=1))])
    index = np.zeros(canvas, np.int32)  # gaps show any pixel: no output depends on them
    level_of = np.full(pnet_cells(canvas), -1, np.int16)
    edges = []
    for i, ((h, w), (y, x)) in enumerate(zip(sizes, placed, strict=True)):
        index[y : y + h, x : x + w] = np.arange(starts[i], starts[i + 1]).reshape(h, w)
        rows, cols = pnet_cells((h, w))
        level_of[y // 2 : y // 2 + rows, x // 2 : x // 2 + cols] = levels[i]
        edges.append(_odd_edges(y, x, h, w))
    return Canvas(levels, sizes, index, np.concatenate(edges), level_of >= 0, level_of)


def _odd_edges(y: int, x: int, h: int, w: int) -> np.ndarray:
    """The pooled cells of P-Net's 2 x 2 max-pool that straddle this level's far edges.

    A level of odd width has an odd conv1 width, so its last pool window is half outside
    it: the package pads that half with -inf, while in the canvas it holds the next
    column's conv1 output (likewise for an odd height). Each row is one such pooled cell
    (y, x) and the two conv1 outputs (y, x) it must be the maximum of (the corner's one
    twice); the graph recomputes these few cells after pooling the whole canvas.
    """
    found = []
    last_row, last_col = y + h - 3, x + w - 3  # the level's last conv1 output
    rows = np.arange(y, last_row + 1, 2)
    cols = np.arange(x, last_col + 1, 2)
    if w % 2:  # right edge: conv1 rows 2i and 2i + 1 (if inside) of the last column
        below = np.minimum(rows + 1, last_row)
        found.append(np.stack(np.broadcast_arrays(rows // 2, last_col // 2, rows, last_col,
                                                  below, last_col), axis=1))
    if h % 2:  # bottom edge; its right-most cell is the corner, listed above if w is odd
        cols = cols[:-1] if w % 2 else cols
        right = np.minimum(cols + 1, last_col)
        found.append(np.stack(np.broadcast_arrays(last_row // 2, cols // 2, last_row, cols,
                                                  last_row, right), axis=1))
    return np.concatenate(found).astype(np.int32) if found else np.zeros((0, 6), np.int32)


def _pack(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bottom-left skyline packing of even-sized rectangles, largest first.

    Tries canvas widths from the largest level's to it plus the second's and keeps the
    smallest canvas: P-Net's cost is proportional to the canvas area.
    """
    widths = {int(sizes[0, 1])} | {int(sizes[0, 1] + w) for w in sizes[1:, 1]}
    best: tuple[int, np.ndarray, np.ndarray] | None = None
    for canvas_width in sorted(w for w in widths if w <= sizes[0, 1] + sizes[min(1, len(sizes) - 1), 1]):
        origins = _skyline(sizes, canvas_width)
        canvas = np.array([(origins[:, 0] + sizes[:, 0]).max(), canvas_width])
        if best is None or canvas.prod() < best[0]:
            best = (int(canvas.prod()), origins, canvas)
    assert best is not None
    return best[1], best[2]


def _skyline(sizes: np.ndarray, canvas_width: int) -> np.ndarray:
    """Place each (height, width) at the lowest spot of the skyline, leftmost on ties."""
    skyline = np.zeros(canvas_width, np.int64)  # filled height of every column
    origins = np.zeros((len(sizes), 2), np.int64)
    edges = {0}  # left ends of skyline steps: the only spots worth trying
    for i, (h, w) in enumerate(sizes):
        spots = sorted(x for x in edges | {canvas_width - w} if 0 <= x <= canvas_width - w)
        tops = [int(skyline[x : x + w].max()) for x in spots]
        y = min(tops)
        x = spots[tops.index(y)]
        origins[i] = (y, x)
        skyline[x : x + w] = y + h
        edges.add(x + w)
    return origins
