"""Shared fixtures: real media from ../shared/data (skipped when absent) and the bundled sample."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
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
