"""model.mtcnn's extra passes and box geometry, and the seed config's margin (issue 20)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facepriv.models.mtcnn_passes import merge_passes, mirror_boxes, scale_boxes

REPO_DIR = Path(__file__).resolve().parents[1]
SEED_CONFIG = REPO_DIR / "configs" / "privacy_protection_faces.yml"


def test_mirror_boxes_maps_back_to_the_frame():
    boxes = np.array([[10.0, 5.0, 30.0, 45.0]])
    assert mirror_boxes(boxes, 100).tolist() == [[70.0, 5.0, 90.0, 45.0]]
    assert mirror_boxes(mirror_boxes(boxes, 100), 100).tolist() == boxes.tolist()


def test_merge_passes_reports_a_face_found_twice_once_covering_both():
    boxes, scores = np.array([[10.0, 10, 50, 60], [200, 10, 240, 60]]), np.array([0.9, 0.3])
    other, other_scores = np.array([[14.0, 8, 54, 58], [400, 10, 440, 60]]), np.array([0.95, 0.5])
    merged, merged_scores = merge_passes(boxes, scores, other, other_scores)
    assert merged.tolist() == [[10, 8, 54, 60], [200, 10, 240, 60], [400, 10, 440, 60]]
    assert merged_scores.tolist() == [0.95, 0.3, 0.5]


def test_merge_passes_with_an_empty_pass():
    boxes, scores = np.array([[10.0, 10, 50, 60]]), np.array([0.9])
    for a, b in (((boxes, scores), (np.zeros((0, 4)), np.zeros(0))),
                 ((np.zeros((0, 4)), np.zeros(0)), (boxes, scores))):
        merged, merged_scores = merge_passes(*a, *b)
        assert merged.tolist() == boxes.tolist() and merged_scores.tolist() == [0.9]


def test_scale_boxes_keeps_the_centre():
    scaled = scale_boxes(np.array([[0.0, 0, 100, 200]]), 0.9, 1.1)
    assert np.allclose(scaled, [[5, -10, 95, 210]])
    assert scale_boxes(np.zeros((0, 4)), 0.9, 1.1).shape == (0, 4)


@pytest.mark.slow
def test_seed_config_holds_on_the_shared_photos(faces_dir, face_annotations):
    """The PeekingDuck use case at the node defaults: no more leaks than issue 3 allows, and
    no source worse than when issue 20 was measured (benchmarks/cv_mtcnn_defaults.py).
    Issue 20's targets (2.0 % leaked, 7.5 % collateral) are not met by any MTCNN setting
    measured there: see the README."""
    from facepriv.evaluation.evaluate import evaluate

    report = evaluate(SEED_CONFIG, faces_dir / "annotations.json", progress=False)
    source = {entry["file"]: entry["source"] for entry in face_annotations}
    leaked: dict[str, int] = {}
    for face in report["leaked_faces"]:
        if face["height"] >= 40:
            leaked[source[face["file"]]] = leaked.get(source[face["file"]], 0) + 1
    assert sum(leaked.values()) <= ISSUE_3_LEAKS
    for name, count in leaked.items():
        assert count <= LEAKS_BY_SOURCE[name], f"{name}: {count} faces of 40 px or more leaked"
    assert report["collateral"] <= COLLATERAL_LIMIT


ISSUE_3_LEAKS = 12  # faces of 40 px or more, of 414
LEAKS_BY_SOURCE = {"fddb": 10, "facemask": 2, "wider_val": 0, "dlib_pascal": 0}  # before issue 20
COLLATERAL_LIMIT = 8.0  # % of non-face pixels (7.67 % measured)
