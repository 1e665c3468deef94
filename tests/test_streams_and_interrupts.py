"""Network sources and Ctrl-C: the paths a live deployment takes."""

from __future__ import annotations

import functools
import http.server
import io
import signal
import subprocess
import sys
import threading
import time

import pytest

from facepriv.nodes.input.visual import Node as VisualInput


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves byte ranges, as video players (and FFmpeg, for MP4 indexes) ask for them."""

    def log_message(self, *args):
        pass

    def send_head(self):
        header = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not header or not header.startswith("bytes="):
            return super().send_head()
        data = open(path, "rb").read()  # noqa: SIM115 - small test file
        start_text, _, end_text = header[6:].partition("-")
        start = int(start_text or 0)
        end = min(int(end_text) if end_text else len(data) - 1, len(data) - 1)
        self.send_response(206)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        return io.BytesIO(data[start : end + 1])


@pytest.fixture()
def http_video_url(sample_video):
    """Serve the sample clip over HTTP on the loopback interface."""
    handler = functools.partial(RangeHandler, directory=str(sample_video.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{sample_video.name}"
    server.shutdown()
    server.server_close()


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
def test_ctrl_c_mid_video_leaves_no_output_and_exits_130(tmp_path, sample_video):
    config = tmp_path / "config.yml"
    config.write_text(
        f"nodes:\n- input.visual:\n    source: {sample_video}\n    frames_log_freq: 10\n"
        f"- model.mtcnn\n- draw.mosaic_bbox\n- output.media_writer:\n    output_dir: {tmp_path / 'out'}\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "facepriv", "run", "--config_path", str(config)],
        stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    lines = []
    deadline = time.monotonic() + 300
    for line in process.stderr:
        lines.append(line)
        if "20 frames read" in line or time.monotonic() > deadline:
            break
    assert any("20 frames read" in line for line in lines), "".join(lines)
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 130
    assert "interrupted" in rest and "Traceback" not in rest
    assert list((tmp_path / "out").iterdir()) == []
