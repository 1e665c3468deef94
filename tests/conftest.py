"""Shared fixtures: real media from ../shared/data (skipped when absent) and the bundled sample."""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO_DIR = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FACEPRIV_SHARED_DATA", REPO_DIR.parent / "shared" / "data"))
SAMPLE_VIDEO = REPO_DIR / "samples" / "peekingduck_wave.mp4"


def _shared(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared evaluation data is not beside this checkout")
    return path


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """../shared/data/faces: real photos with human-annotated face boxes."""
    return _shared("faces")


@pytest.fixture(scope="session")
def face_annotations(faces_dir: Path) -> list[dict]:
    return json.loads((faces_dir / "annotations.json").read_text())["images"]


@pytest.fixture(scope="session")
def videos_dir() -> Path:
    return _shared("videos")


@pytest.fixture(scope="session")
def exif_dir() -> Path:
    return _shared("exif_samples")


@pytest.fixture(scope="session")
def sample_video() -> Path:
    """The bundled Apache-2.0 sample clip (one waving man, 710x540, 517 frames)."""
    assert SAMPLE_VIDEO.exists(), "samples/peekingduck_wave.mp4 is part of the repository"
    return SAMPLE_VIDEO


@pytest.fixture(scope="session")
def virtual_display():
    """A private Xvfb display for output.screen tests (skipped where Xvfb is missing)."""
    import shutil
    import subprocess
    import time

    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb): on-screen tests need a display")
    for number in range(91, 120):
        if not Path(f"/tmp/.X11-unix/X{number}").exists():
            break
    process = subprocess.Popen(
        ["Xvfb", f":{number}", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    socket = Path(f"/tmp/.X11-unix/X{number}")
    for _ in range(100):
        if socket.exists():
            break
        time.sleep(0.05)
    else:
        process.kill()
        pytest.skip("Xvfb did not start")
    yield f":{number}"
    process.terminate()
    process.wait(timeout=5)


def without_display_env() -> dict[str, str]:
    """The current environment with every way to reach a display removed."""
    env = dict(os.environ)
    for key in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        env.pop(key, None)
    return env


LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d \[[A-Z]+\] \S+: ")


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``facepriv`` as a user does, through ``main()``."""
    return subprocess.run(
        [sys.executable, "-m", "facepriv", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=300,
    )


def error_lines(stderr: str) -> list[str]:
    """stderr without log lines (``HH:MM:SS [LEVEL] name: msg``) and blank lines."""
    return [line for line in stderr.splitlines() if line.strip() and not LOG_LINE.match(line)]


def output_files(folder: Path) -> list[str]:
    """Files below ``folder`` (posix, relative), hidden ones included, except the run's
    manifest: what a run left as outputs, finished or not."""
    from facepriv.batch.manifest import MANIFEST_NAME

    if not folder.exists():
        return []
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*")
                  if path.is_file() and path.name != MANIFEST_NAME)


def interrupt_run(
    config: Path, cwd: Path, after_line: str, on_line=None, sig: int | None = None
) -> tuple[int, str]:
    """Start ``facepriv run``, press Ctrl-C (or send ``sig``) once stderr shows ``after_line``.

    ``on_line()`` is called just before the interrupt (to look at the output folder
    mid-run). Returns the exit code and what stderr printed after the interrupt.
    """
    import signal

    process = subprocess.Popen(
        [sys.executable, "-m", "facepriv", "run", "--config_path", str(config)],
        stderr=subprocess.PIPE, text=True, cwd=cwd,
    )
    seen = []
    for line in process.stderr:
        seen.append(line)
        if after_line in line:
            break
    assert any(after_line in line for line in seen), "".join(seen)
    if on_line is not None:
        on_line()
    process.send_signal(signal.SIGINT if sig is None else sig)
    rest = process.stderr.read()
    return process.wait(timeout=60), rest


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


def boxes_matched(a, b, threshold: float = 0.3):
    """For each box of ``a``: does some box of ``b`` overlap it with IoU >= threshold?"""
    import numpy as np

    from facepriv.evaluation.metrics import iou_matrix

    if len(a) == 0 or len(b) == 0:
        return np.zeros(len(a), dtype=bool)
    return iou_matrix(a, b).max(axis=1) >= threshold


def read_photo(faces_dir: Path, entry: dict):
    """An annotated photo of ../shared/data/faces as a BGR array."""
    import cv2

    image = cv2.imread(str(faces_dir / entry["file"]))
    assert image is not None, entry["file"]
    return image


def assert_detects_nothing_cleanly(node, frame) -> None:
    """A detector node given ``frame`` reports no face and did not fall back to masking
    the whole frame (which it does when detection raises)."""
    failed = node.frames_failed
    out = node.run({"img": frame})
    assert node.frames_failed == failed
    assert out["bboxes"].shape == (0, 4)
    assert len(out["bbox_labels"]) == len(out["bbox_scores"]) == 0


@pytest.fixture(scope="session")
def short_clip(sample_video, tmp_path_factory):
    """The sample clip's first 40 frames, re-encoded (a real H.264 file)."""
    import av

    path = tmp_path_factory.mktemp("clip") / "short.mp4"
    with av.open(str(sample_video)) as source, av.open(str(path), "w") as target:
        stream = target.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 710, 540, "yuv420p"
        for index, frame in enumerate(source.decode(video=0)):
            if index == 40:
                break
            image = frame.to_ndarray(format="rgb24")
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                target.mux(packet)
        for packet in stream.encode():
            target.mux(packet)
    return path


@pytest.fixture(scope="session")
def tracked_sample(tmp_path_factory: pytest.TempPathFactory, sample_video: Path) -> Path:
    """The main job (configs/anonymize_video.yml) plus output.tracks, run once on the bundled
    sample: the folder holding its output and ``peekingduck_wave.mp4.tracks.json``."""
    import yaml

    from facepriv import api

    folder = tmp_path_factory.mktemp("tracked")
    config = yaml.safe_load((REPO_DIR / "configs" / "anonymize_video.yml").read_text())
    nodes = config["nodes"]
    nodes[0] = {"input.visual": {"source": str(sample_video)}}
    after = next(i for i, node in enumerate(nodes) if node == "dabble.persist_bbox")
    nodes.insert(after + 1, {"output.tracks": {"output_dir": str(folder)}})
    nodes[-1]["output.media_writer"]["output_dir"] = str(folder)
    path = folder / "main_job_with_tracks.yml"
    path.write_text(yaml.safe_dump(config))
    api.run(path)
    return folder


def presenter(tracks: dict) -> int:
    """The track of a tracks file on most frames: the sample's one person."""
    counts: dict[int, int] = {}
    for frame in tracks["frames"]:
        for face in frame["faces"]:
            counts[face[4]] = counts.get(face[4], 0) + 1
    return max(counts, key=counts.get)
