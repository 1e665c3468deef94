"""The privacy_protection_faces use case end to end, as a PeekingDuck user runs it."""

from __future__ import annotations

import subprocess
import sys

import cv2
import pytest

from conftest import REPO_DIR, without_display_env

SEED_CONFIG = REPO_DIR / "configs" / "privacy_protection_faces.yml"
pytestmark = pytest.mark.slow


def _run(args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "facepriv", "run", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _assert_clean(result, frames):
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"run finished: {frames} frame(s)" in result.stderr


def test_seed_config_is_peekingducks_use_case_unchanged():
    text = SEED_CONFIG.read_text()
    assert text == (
        "nodes:\n- input.visual:\n    source: 0\n- model.mtcnn\n- draw.mosaic_bbox\n- output.screen\n"
    )


@pytest.mark.parametrize("drawer", ["draw.mosaic_bbox", "draw.blur_bbox"])
def test_seed_config_runs_on_a_virtual_display(tmp_path, sample_video, virtual_display, drawer):
    config = tmp_path / "privacy_protection_faces.yml"
    config.write_text(SEED_CONFIG.read_text().replace("draw.mosaic_bbox", drawer))
    env = without_display_env() | {"DISPLAY": virtual_display}
    result = _run(["--config_path", str(config), "--node_config",
                   f'{{"input.visual": {{"source": "{sample_video}"}}}}', "--num_iter", "50"],
                  cwd=tmp_path, env=env)
    _assert_clean(result, 50)


def test_legacy_use_case_config_runs(tmp_path, sample_video, virtual_display):
    config = tmp_path / "legacy.yml"
    config.write_text(
        "nodes:\n- input.live:\n    input_source: 0\n- model.mtcnn:\n    mtcnn_min_size: 40\n"
        "- dabble.fps\n- draw.mosaic_bbox\n- draw.legend\n- output.screen\n"
    )
    env = without_display_env() | {"DISPLAY": virtual_display}
    result = _run(["--config_path", str(config), "--node_config",
                   f"{{'input.live': {{'input_source': '{sample_video}'}}}}", "--num_iter", "10"],
                  cwd=tmp_path, env=env)
    _assert_clean(result, 10)
    assert "'input.live' is deprecated" in result.stderr


def test_readme_main_command_anonymizes_the_sample(tmp_path):
    (tmp_path / "samples").symlink_to(REPO_DIR / "samples")
    (tmp_path / "configs").symlink_to(REPO_DIR / "configs")
    result = _run(["--config_path", "configs/anonymize_video.yml"], cwd=tmp_path)
    _assert_clean(result, 517)
    output = tmp_path / "output" / "peekingduck_wave.mp4"
    original = cv2.VideoCapture(str(REPO_DIR / "samples" / "peekingduck_wave.mp4"))
    anonymized = cv2.VideoCapture(str(output))
    assert anonymized.get(cv2.CAP_PROP_FRAME_COUNT) == 517

    from facepriv.evaluation.metrics import face_leaked
    from facepriv.nodes.model.mtcnn import Node as MTCNN

    detector = MTCNN()
    checked = 0
    for index in range(517):
        ok_in, frame_in = original.read()
        ok_out, frame_out = anonymized.read()
        assert ok_in and ok_out
        if index % 100:
            continue
        faces = detector.run({"img": frame_in})["bboxes"]
        assert len(faces) >= 1, f"the sample shows a face in frame {index}"
        box = faces[0] * [710, 540, 710, 540]
        assert not face_leaked(frame_in, frame_out, box), f"face recognisable in frame {index}"
        checked += 1
    assert checked == 6
