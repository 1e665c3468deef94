"""Mask geometry shared by the draw nodes: growth, ellipse, clipping, overlaps, bad boxes."""

from __future__ import annotations

import numpy as np
import pytest

from facepriv.masking import grow_boxes, hide_faces, pixel_regions
from facepriv.nodes.draw.blur_bbox import Node as Blur
from facepriv.nodes.draw.fill_bbox import Node as Fill
from facepriv.nodes.draw.mosaic_bbox import Node as Mosaic


def _fill(region, face_w, face_h):
    return np.full_like(region, 255)


def _blank(height=100, width=200):
    return np.zeros((height, width, 3), dtype=np.uint8)


def test_growth_keeps_the_centre_and_scales_both_sides():
    grown = grow_boxes(np.array([[0.4, 0.4, 0.6, 0.5]]), 2.0)
    assert grown == pytest.approx(np.array([[0.3, 0.35, 0.7, 0.55]]))


def test_rectangle_growth_hides_exactly_the_grown_box():
    image = hide_faces(_blank(), np.array([[0.4, 0.4, 0.6, 0.6]]), _fill, mask_scale=1.5)
    hidden = np.argwhere(image[:, :, 0] == 255)
    assert hidden.min(axis=0).tolist() == [35, 70] and hidden.max(axis=0).tolist() == [64, 129]
    assert (image[35:65, 70:130] == 255).all()


def test_ellipse_leaves_the_corners_and_covers_the_centre():
    image = hide_faces(_blank(100, 100), np.array([[0.2, 0.2, 0.8, 0.8]]), _fill, mask_shape="ellipse")
    assert image[50, 50, 0] == 255  # centre
    assert image[20, 20, 0] == 0 and image[79, 79, 0] == 0  # box corners stay
    assert image[50, 20, 0] == 255 and image[20, 50, 0] == 255  # edge midpoints hidden
    area = (image[:, :, 0] == 255).sum()
    assert area == pytest.approx(np.pi * 30 * 30, rel=0.03)


def test_boxes_at_frame_edges_are_clipped():
    boxes = np.array([[-0.1, -0.2, 0.1, 0.2], [0.95, 0.9, 1.2, 1.3]])
    image = hide_faces(_blank(), boxes, _fill, mask_scale=1.2)
    assert image.shape == (100, 200, 3)
    assert image[0, 0, 0] == 255 and image[99, 199, 0] == 255
    assert image[50, 100, 0] == 0


def test_ellipse_clipped_at_the_edge_keeps_its_geometry():
    image = hide_faces(_blank(100, 100), np.array([[-0.5, 0.25, 0.5, 0.75]]), _fill, mask_shape="ellipse")
    # The ellipse is centred on the left edge: its right half is visible, its tip at x=50.
    assert image[50, 0, 0] == 255 and image[50, 48, 0] == 255 and image[50, 52, 0] == 0
    assert image[26, 2, 0] == 255 and image[26, 40, 0] == 0


def test_overlapping_boxes_are_hidden_once_from_the_original_pixels():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    calls = []

    def brighten(region, face_w, face_h):
        calls.append(region.copy())
        return np.clip(region.astype(int) + 10, 0, 255).astype(np.uint8)

    boxes = np.array([[0.1, 0.1, 0.6, 0.6], [0.4, 0.4, 0.9, 0.9], [0.1, 0.1, 0.6, 0.6]])
    out = hide_faces(image.copy(), boxes, brighten)
    expected = image.astype(int)
    union = np.zeros(image.shape[:2], bool)
    for x1, y1, x2, y2 in pixel_regions(boxes, 160, 120):
        union[y1:y2, x1:x2] = True
    expected[union] = np.clip(expected[union] + 10, 0, 255)
    assert np.array_equal(out, expected.astype(np.uint8))  # +10 once, never +20
    originals = [image[y1:y2, x1:x2] for x1, y1, x2, y2 in pixel_regions(boxes, 160, 120)]
    assert calls and all(any(np.array_equal(c, o) for o in originals) for c in calls)


def test_identical_duplicate_boxes_give_the_same_result_as_one():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (90, 90, 3), dtype=np.uint8)
    box = np.array([[0.2, 0.2, 0.7, 0.8]])
    for node in (Mosaic(), Blur(), Fill()):
        once = node.run({"img": image.copy(), "bboxes": box})["img"]
        twice = node.run({"img": image.copy(), "bboxes": np.vstack([box, box])})["img"]
        assert np.array_equal(once, twice)


@pytest.mark.parametrize(
    "box", [[0.5, 0.5, 0.5, 0.8], [0.6, 0.2, 0.4, 0.8], [0.2, 0.7, 0.8, 0.3], [0.3, 0.3, 0.3, 0.3]]
)
def test_zero_and_negative_size_boxes_are_ignored(box):
    image = hide_faces(_blank(), np.array([box]), _fill, mask_scale=2.0)
    assert not image.any()


def test_fill_uses_the_configured_colour():
    box = np.array([[0, 0, 0.5, 1.0]])
    image = Fill(fill_color=[10, 20, 30]).run({"img": _blank(), "bboxes": box})["img"]
    assert image[50, 50].tolist() == [10, 20, 30] and image[50, 150].tolist() == [0, 0, 0]


def test_blur_kernel_follows_the_face_but_never_drops_below_the_peekingduck_key():
    node = Blur(blur_kernel_size=50, blur_strength=0.5)
    assert node.kernel_size(40, 60) == 50
    assert node.kernel_size(300, 400) == 200
    assert Blur(blur_kernel_size=9, blur_strength=0.0).kernel_size(300, 400) == 9


def test_mosaic_cells_follow_the_hidden_region():
    image = np.random.default_rng(2).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    whole = np.array([[0, 0, 1, 1]])
    node = Mosaic(mosaic_level=4, mask_scale=1.0, mask_shape="rectangle")
    out = node.run({"img": image, "bboxes": whole})["img"]
    assert len(np.unique(out.reshape(-1, 3), axis=0)) <= 16


def test_a_non_contiguous_frame_is_still_hidden():
    """A mirrored view cannot be written in place by OpenCV: the face is hidden in a copy."""
    rng = np.random.default_rng(1)
    frame = rng.integers(1, 255, (100, 120, 3), dtype=np.uint8)[:, ::-1]
    out = hide_faces(frame, np.array([[0.2, 0.2, 0.6, 0.7]]), lambda r, w, h: np.zeros_like(r))
    assert (out[20:70, 24:72] == 0).all()
    assert (out[:20] == frame[:20]).all() and (out[:, 72:] == frame[:, 72:]).all()
