"""draw.mosaic_bbox, draw.blur_bbox, draw.legend and dabble.fps on real frames."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from facepriv.errors import ConfigError
from facepriv.masking import pixel_regions
from facepriv.nodes.dabble.fps import Node as Fps
from facepriv.nodes.draw.blur_bbox import Node as Blur
from facepriv.nodes.draw.legend import Node as Legend
from facepriv.nodes.draw.mosaic_bbox import Node as Mosaic


@pytest.fixture()
def frame(sample_video) -> np.ndarray:
    capture = cv2.VideoCapture(str(sample_video))
    for _ in range(60):
        ok, image = capture.read()
    capture.release()
    assert ok
    return image


BOX = np.array([[0.4, 0.1, 0.6, 0.4]], dtype=np.float32)  # normalised x1, y1, x2, y2
EXACT_BOX = {"mask_scale": 1.0, "mask_shape": "rectangle"}  # geometry has its own tests


def _outside_unchanged(before: np.ndarray, after: np.ndarray, region) -> bool:
    x1, y1, x2, y2 = region
    mask = np.ones(before.shape[:2], bool)
    mask[y1:y2, x1:x2] = False
    return np.array_equal(before[mask], after[mask])


def test_pixel_regions_round_outwards_clip_and_drop_empty_boxes():
    boxes = np.array([
        [0.101, 0.2, 0.5, 0.55],   # ordinary
        [-0.2, -0.1, 0.05, 0.05],  # partly outside: clipped
        [0.5, 0.5, 0.5, 0.9],      # zero width: dropped
        [0.7, 0.7, 0.6, 0.8],      # negative width: dropped
        [1.2, 1.2, 1.5, 1.5],      # fully outside: dropped
    ])
    assert pixel_regions(boxes, 100, 200) == [(10, 40, 50, 110), (0, 0, 5, 10)]


def test_mosaic_hides_the_box_and_nothing_else(frame):
    before = frame.copy()
    after = Mosaic(**EXACT_BOX, mosaic_level=7).run({"img": frame, "bboxes": BOX})["img"]
    (x1, y1, x2, y2), = pixel_regions(BOX, frame.shape[1], frame.shape[0])
    assert _outside_unchanged(before, after, (x1, y1, x2, y2))
    patch = after[y1:y2, x1:x2].reshape(-1, 3)
    assert len(np.unique(patch, axis=0)) <= 7 * 7
    assert not np.array_equal(before[y1:y2, x1:x2], after[y1:y2, x1:x2])


def test_mosaic_level_sets_cells_per_side(frame):
    after = Mosaic(**EXACT_BOX, mosaic_level=2).run({"img": frame.copy(), "bboxes": BOX})["img"]
    (x1, y1, x2, y2), = pixel_regions(BOX, frame.shape[1], frame.shape[0])
    assert len(np.unique(after[y1:y2, x1:x2].reshape(-1, 3), axis=0)) <= 4


def test_blur_smooths_the_box_and_nothing_else(frame):
    before = frame.copy()
    after = Blur(**EXACT_BOX).run({"img": frame, "bboxes": BOX})["img"]
    region = pixel_regions(BOX, frame.shape[1], frame.shape[0])[0]
    x1, y1, x2, y2 = region
    assert _outside_unchanged(before, after, region)
    detail_before = cv2.Laplacian(before[y1:y2, x1:x2], cv2.CV_64F).var()
    detail_after = cv2.Laplacian(after[y1:y2, x1:x2], cv2.CV_64F).var()
    assert detail_after < detail_before / 20


def test_draw_nodes_leave_frames_without_boxes_untouched(frame):
    before = frame.copy()
    empty = np.zeros((0, 4), dtype=np.float32)
    assert np.array_equal(Mosaic().run({"img": frame, "bboxes": empty})["img"], before)
    assert np.array_equal(Blur().run({"img": frame, "bboxes": empty})["img"], before)


def test_boxes_at_frame_edges_are_clipped(frame):
    edge = np.array([[-0.1, -0.1, 0.2, 0.2], [0.9, 0.9, 1.3, 1.3]], dtype=np.float32)
    after = Mosaic().run({"img": frame.copy(), "bboxes": edge})["img"]
    assert after.shape == frame.shape
    assert not np.array_equal(after[:10, :10], frame[:10, :10])
    assert not np.array_equal(after[-10:, -10:], frame[-10:, -10:])


def test_legend_writes_fps_in_the_bottom_band(frame):
    before = frame.copy()
    after = Legend(show=["fps"]).run({"img": frame, "fps": 12.5, "filename": "x"})["img"]
    height = frame.shape[0]
    assert not np.array_equal(after[height - 40:], before[height - 40:])
    assert np.array_equal(after[: height // 2], before[: height // 2])


def test_legend_top_and_array_values(frame):
    before = frame.copy()
    after = Legend(show=["bboxes"], position="top").run({"img": frame, "bboxes": BOX})["img"]
    assert not np.array_equal(after[:40], before[:40])


def test_legend_names_missing_keys(frame):
    with pytest.raises(ConfigError, match="draw.legend.show names fsp"):
        Legend(show=["fsp"]).run({"img": frame, "fps": 1.0})


def test_fps_measures_tick_rate():
    node = Fps(fps_log_freq=5)
    for _ in range(8):
        fps = node.run({"pipeline_end": False})["fps"]
        time.sleep(0.02)
    assert 20 < fps < 55  # ~50 ticks a second, less under load
    assert node.run({"pipeline_end": True})["fps"] == pytest.approx(fps, rel=0.5)


def test_fps_undampened_reports_the_last_interval():
    node = Fps(dampen_fps=False)
    node.run({"pipeline_end": False})
    time.sleep(0.1)
    assert 5 < node.run({"pipeline_end": False})["fps"] <= 10.5
