"""facepriv eval: metrics on hand-made cases, and the real evaluation set."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from facepriv.evaluation.metrics import (
    collateral_pixels,
    face_leaked,
    iou_matrix,
    match_detections,
    size_bucket,
    ssim,
)

from conftest import REPO_DIR


def test_iou_of_hand_made_boxes():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 5, 5]])
    assert iou_matrix(a, b)[0] == pytest.approx([1.0, 50 / 150, 0.0, 0.25])


def test_matching_counts_hits_misses_false_positives_and_ignores():
    faces = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [100, 100, 110, 110]])
    ignore = np.array([[200, 200, 260, 260]])
    detections = np.array([
        [1, 1, 11, 11],      # hits face 0
        [0, 0, 10, 10],      # duplicate of face 0: a false positive
        [52, 52, 62, 62],    # IoU 0.47 with face 1: a hit at 0.3, not at 0.5
        [210, 210, 230, 230],  # inside the ignore region: neither way
        [300, 300, 320, 320],  # nothing there: a false positive
    ])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    strict = match_detections(faces, ignore, detections, scores, 0.5)
    assert strict.face_found.tolist() == [True, False, False]
    assert strict.detection_kind.tolist() == ["tp", "fp", "fp", "ignored", "fp"]
    loose = match_detections(faces, ignore, detections, scores, 0.3)
    assert loose.face_found.tolist() == [True, True, False]
    assert loose.detection_kind.tolist() == ["tp", "fp", "tp", "ignored", "fp"]


def test_matching_prefers_higher_scores():
    faces = np.array([[0, 0, 10, 10]])
    detections = np.array([[0, 0, 10, 10], [0, 0, 10, 9]])
    result = match_detections(faces, np.zeros((0, 4)), detections, np.array([0.2, 0.9]), 0.5)
    assert result.detection_kind.tolist() == ["fp", "tp"]


def test_size_buckets_by_height():
    assert [size_bucket(h) for h in (5, 19.9, 20, 39, 40, 79.9, 80, 500)] == [
        "<20", "<20", "20-40", "20-40", "40-80", "40-80", ">=80", ">=80",
    ]


SAMPLE_FACE = np.array([401, 67, 511, 212])  # the waving man's head in the sample's first frame
FACE = (slice(67, 212), slice(401, 511))


@pytest.fixture()
def photo(sample_video) -> np.ndarray:
    capture = cv2.VideoCapture(str(sample_video))
    ok, image = capture.read()
    capture.release()
    assert ok
    return image


def test_ssim_is_one_for_identical_and_low_for_flattened(photo):
    face = cv2.cvtColor(photo[FACE], cv2.COLOR_BGR2GRAY)
    assert ssim(face, face) == pytest.approx(1.0)
    assert ssim(face, np.full_like(face, int(face.mean()))) < 0.6


def test_leak_measure_on_hand_made_masks(photo):
    assert face_leaked(photo, photo.copy(), SAMPLE_FACE)
    hidden = photo.copy()
    small = cv2.resize(photo[FACE], (5, 5), interpolation=cv2.INTER_AREA)
    hidden[FACE] = cv2.resize(small, (110, 145), interpolation=cv2.INTER_NEAREST)
    assert not face_leaked(photo, hidden, SAMPLE_FACE)
    half = photo.copy()
    half[67:212, 401:456] = hidden[67:212, 401:456]  # only the left half hidden
    assert face_leaked(photo, half, SAMPLE_FACE)
    assert face_leaked(photo, None, SAMPLE_FACE)  # a missing output leaks every face


def test_collateral_counts_only_changed_non_face_pixels(photo):
    image = photo[:120, :160].copy()
    out = image.copy()
    out[0:10, 0:160] = np.clip(out[0:10, 0:160].astype(int) + 100, 0, 255).astype(np.uint8)
    out[30:90, 40:100] = 0  # the face: not collateral
    changed, total = collateral_pixels(image, out, np.array([[40, 30, 100, 90]]))
    assert total == 160 * 120 - 60 * 60
    grey_changed = np.abs(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY).astype(int)
                          - cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(int))[0:10] > 24
    assert changed == grey_changed.sum() and changed > 1000


# ---------------------------------------------------------------- the real evaluation set

def _independent_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM written separately from the product's: explicit 7 x 7 Gaussian windows, valid
    region only (no border handling), numpy sliding windows instead of OpenCV filters."""
    offsets = np.arange(7) - 3
    kernel = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * 1.5**2))
    kernel /= kernel.sum()
    a, b = a.astype(np.float64), b.astype(np.float64)

    def local_mean(x):
        windows = np.lib.stride_tricks.sliding_window_view(x, (7, 7))
        return np.einsum("ijkl,kl->ij", windows, kernel)

    mu_a, mu_b = local_mean(a), local_mean(b)
    var_a = local_mean(a * a) - mu_a**2
    var_b = local_mean(b * b) - mu_b**2
    cov = local_mean(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def _independent_leak(before, after, box) -> bool:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    crops = [cv2.resize(cv2.cvtColor(img[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY), (64, 64),
                        interpolation=cv2.INTER_LINEAR) for img in (before, after)]
    return _independent_ssim(*crops) >= 0.60


@pytest.fixture(scope="module")
def default_config_eval(faces_dir):
    from facepriv.evaluation.evaluate import evaluate

    independent = {"faces>=40": 0, "leaked>=40": 0, "faces": 0, "leaked": 0}

    def check(entry, before, after):
        for box in entry["faces"]:
            leaked = _independent_leak(before, after, box)
            independent["faces"] += 1
            independent["leaked"] += leaked
            if box[3] - box[1] >= 40:
                independent["faces>=40"] += 1
                independent["leaked>=40"] += leaked

    report = evaluate(REPO_DIR / "configs" / "privacy_protection_faces.yml",
                      faces_dir / "annotations.json", progress=False, on_image=check)
    return report, independent


@pytest.mark.slow
def test_default_privacy_config_leaks_at_most_3_percent_of_faces_of_40px_or_more(default_config_eval):
    report, _ = default_config_eval
    buckets = report["buckets"]
    faces = buckets["40-80"]["faces"] + buckets[">=80"]["faces"]
    leaked = sum(buckets[b]["leak_rate"] * buckets[b]["faces"] / 100 for b in ("40-80", ">=80"))
    assert faces > 300
    assert 100 * leaked / faces <= 3.0, json.dumps(report, indent=1)
    assert report["collateral"] <= 8.0


@pytest.mark.slow
def test_leak_figures_agree_with_an_independent_implementation(default_config_eval):
    report, independent = default_config_eval
    buckets = report["buckets"]
    faces = buckets["40-80"]["faces"] + buckets[">=80"]["faces"]
    ours_40 = sum(buckets[b]["leak_rate"] * buckets[b]["faces"] for b in ("40-80", ">=80")) / faces
    theirs_40 = 100 * independent["leaked>=40"] / independent["faces>=40"]
    assert independent["faces>=40"] == faces
    assert abs(ours_40 - theirs_40) <= 1.0
    theirs_all = 100 * independent["leaked"] / independent["faces"]
    assert abs(report["overall"]["leak_rate"] - theirs_all) <= 1.0


@pytest.mark.slow
def test_eval_cli_prints_the_table_and_writes_json(tmp_path, faces_dir, face_annotations):
    crowd = [entry for entry in face_annotations if entry["file"].endswith("0_Parade_marchingband_1_765.jpg")]
    subset = {"format": "face-boxes-v1", "images": [
        dict(entry, file=str(faces_dir / entry["file"])) for entry in face_annotations[:11] + crowd
    ]}
    annotations = tmp_path / "subset.json"
    annotations.write_text(json.dumps(subset))
    result = subprocess.run(
        [sys.executable, "-m", "facepriv", "eval", "--config_path",
         str(REPO_DIR / "configs" / "privacy_protection_faces.yml"), "--annotations", str(annotations),
         "--output", str(tmp_path / "report.json"), "--worst", "3"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    for label in ("<20", "20-40", "40-80", ">=80", "all", "recall@0.5", "precision@0.3", "leak_rate",
                  "collateral", "ms per image"):
        assert label in result.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["images"] == 12
    assert set(report["buckets"]) == {"<20", "20-40", "40-80", ">=80"}
    assert report["overall"]["faces"] == sum(len(e["faces"]) for e in subset["images"])

    # Every leaked face is listed for review, most similar first; the table shows --worst of them.
    leaked = report["leaked_faces"]
    counted = sum((b["leak_rate"] or 0) * b["faces"] / 100 for b in report["buckets"].values())
    assert len(leaked) == round(counted) >= 4, "a crowd of faces under 20 px"
    assert [face["ssim"] for face in leaked] == sorted((face["ssim"] for face in leaked), reverse=True)
    files = {entry["file"] for entry in subset["images"]}
    assert all(face["ssim"] >= 0.6 and face["file"] in files for face in leaked)
    assert not all(face["detected"] for face in leaked)
    listed = [line for line in result.stdout.splitlines() if line.startswith("  ") and "SSIM" in line]
    assert len(listed) == 3 and f"(3 of {len(leaked)}, most similar first" in result.stdout


def test_eval_rejects_bad_annotations_and_configs_without_a_model(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [{"nofile": 1}]}')
    config = tmp_path / "c.yml"
    config.write_text("nodes:\n- input.visual\n- model.mtcnn\n- draw.mosaic_bbox\n")
    result = subprocess.run([sys.executable, "-m", "facepriv", "eval", "--config_path", str(config),
                             "--annotations", str(bad)], capture_output=True, text=True)
    assert result.returncode == 2 and "face-boxes-v1" in result.stderr and "Traceback" not in result.stderr
    good = tmp_path / "good.json"
    good.write_text('{"images": []}')
    config.write_text("nodes:\n- input.visual\n- dabble.fps\n")
    result = subprocess.run([sys.executable, "-m", "facepriv", "eval", "--config_path", str(config),
                             "--annotations", str(good)], capture_output=True, text=True)
    assert result.returncode == 2 and "no model node" in result.stderr


class _HoldingDetector:
    """A model node that holds every photo until the next one comes (as a tracker holding
    frames does), hands the last one on at the end, and records how it was released."""

    node_name = "model.holding"
    inputs = ["all", "pipeline_end"]
    outputs = ["bboxes"]
    appends: list[str] = []

    def __init__(self):
        self.failed_items: list[str] = []
        self.held: list[dict] = []
        self.released: list[bool] = []

    def run(self, inputs):
        from facepriv.runner import HeldFrame

        if inputs and not inputs.get("pipeline_end"):
            self.held.append(dict(inputs, bboxes=np.array([[0.0, 0.0, 0.5, 0.5]])))
            return None if len(self.held) == 1 else HeldFrame(self.held.pop(0))
        return HeldFrame(self.held.pop(0)) if self.held else {"pipeline_end": True}

    def pending(self):
        return False

    def release(self, completed=True):
        self.released.append(completed)


def test_eval_runs_through_the_runner_held_frames_included(tmp_path, monkeypatch):
    from facepriv.evaluation import evaluate as module

    images = []
    for index in range(3):
        cv2.imwrite(str(tmp_path / f"p{index}.png"), np.full((40, 40, 3), 60 * index, np.uint8))
        images.append({"file": f"p{index}.png", "faces": [[0, 0, 20, 20]]})
    (tmp_path / "faces.json").write_text(json.dumps({"images": images}), encoding="utf-8")
    node = _HoldingDetector()
    monkeypatch.setattr(module, "build_eval_nodes", lambda run_config: [node])
    monkeypatch.setattr(module, "load_run_config", lambda path: None)
    seen = []
    report = module.evaluate("unused.yml", tmp_path / "faces.json", progress=False,
                             on_image=lambda entry, before, after: seen.append((entry["file"], after.mean())))
    assert seen == [("p0.png", 0.0), ("p1.png", 60.0), ("p2.png", 120.0)]  # each photo with its own output
    assert report["images"] == 3 and report["overall"]["recall@0.5"] == 100.0
    assert node.released == [True]
