"""Network sources and Ctrl-C: the paths a live deployment takes."""

from __future__ import annotations

import pytest

from facepriv.nodes.input.visual import Node as VisualInput

from conftest import interrupt_run, output_files


def test_http_stream_source_yields_frames(http_video_url):
    node = VisualInput(source=http_video_url)
    frames = [node.run({}) for _ in range(20)]
    node.release()
    assert all(not f["pipeline_end"] and f["img"].shape == (540, 710, 3) for f in frames)
    assert frames[0]["filename"].startswith("stream_") and frames[0]["filename"].endswith(".mp4")


def test_unreachable_stream_is_a_clear_error():
    with pytest.raises(Exception, match="cannot open stream"):
        VisualInput(source="rtsp://127.0.0.1:9/nothing")


@pytest.mark.slow
def test_ctrl_c_while_the_model_runs_leaves_no_output_and_exits_130(tmp_path, sample_video):
    config = tmp_path / "config.yml"
    config.write_text(
        f"nodes:\n- input.visual:\n    source: {sample_video}\n    frames_log_freq: 10\n"
        f"- model.mtcnn\n- draw.mosaic_bbox\n- output.media_writer:\n    output_dir: {tmp_path / 'out'}\n"
    )
    code, rest = interrupt_run(config, tmp_path, "20 frames read")
    assert code == 130
    assert "interrupted" in rest and "Traceback" not in rest
    assert output_files(tmp_path / "out") == []
