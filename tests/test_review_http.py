"""facepriv review over HTTP: the token, path traversal, POST-only changes, the real server."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("starlette", reason="the review extra (starlette, uvicorn) is not installed")
from starlette.testclient import TestClient  # noqa: E402

from facepriv.review.app import create_app  # noqa: E402
from facepriv.review.library import Library  # noqa: E402
from facepriv.tracks_file import save_tracks  # noqa: E402

TOKEN = "test-token-123"
FRAMES = 40


@pytest.fixture()
def folder(tmp_path: Path, sample_video: Path) -> Path:
    """A reviewed folder: the sample as 'output', a hand-made tracks file, a secret beside it."""
    reviewed = tmp_path / "reviewed"
    reviewed.mkdir()
    shutil.copy(sample_video, reviewed / "clip.mp4")
    (tmp_path / "secret.txt").write_text("SECRET-CONTENT")
    save_tracks(reviewed / "clip.mp4.tracks.json", {
        "format": "face-tracks-v1", "size": [710, 540], "source": str(sample_video), "name": "clip.mp4",
        "output": str(reviewed / "clip.mp4"), "keep": [], "added": [], "nodes": [],
        "frames": [{"faces": [[400.0, 60.0, 520.0, 210.0, 0]], "scores": [0.9], "held": [False]}] * FRAMES})
    return reviewed


@pytest.fixture()
def client(folder: Path) -> TestClient:
    return TestClient(create_app(Library(folder), TOKEN), base_url="http://127.0.0.1")


GETS = ["/", "/api/files", "/api/files/0", "/api/files/0/frames/0", "/api/files/0/thumbnails/0",
        "/static/review.js", "/api/render"]
POSTS = ["/api/files/0/keep", "/api/files/0/boxes", "/api/files/0/boxes/1/remove", "/api/files/0/save",
         "/api/files/0/render"]


@pytest.mark.parametrize("path", GETS + POSTS)
def test_requests_without_the_token_get_401_and_with_a_wrong_one_403(client: TestClient, path: str) -> None:
    method = client.post if path in POSTS else client.get
    missing = method(path)
    assert missing.status_code == 401 and "SECRET" not in missing.text
    wrong = method(path, params={"token": TOKEN + "x"})
    assert wrong.status_code == 403
    wrong_header = method(path, headers={"X-Review-Token": "nope"})
    assert wrong_header.status_code == 403


def test_the_page_frames_and_thumbnails_with_the_token(client: TestClient) -> None:
    page = client.get("/", params={"token": TOKEN})
    assert page.status_code == 200 and "frame-canvas" in page.text
    frame = client.get("/api/files/0/frames/5", params={"token": TOKEN, "view": "input"})
    image = cv2.imdecode(np.frombuffer(frame.content, np.uint8), cv2.IMREAD_COLOR)
    assert frame.headers["content-type"] == "image/jpeg" and image.shape == (540, 710, 3)
    thumb = client.get("/api/files/0/thumbnails/0", params={"token": TOKEN})
    assert cv2.imdecode(np.frombuffer(thumb.content, np.uint8), cv2.IMREAD_COLOR).shape[0] == 96
    summary = client.get("/api/files/0", params={"token": TOKEN}).json()
    assert summary["frames"] == FRAMES and [t["id"] for t in summary["tracks"]] == [0]


@pytest.mark.parametrize("path", [
    "/static/../app.py", "/static/..%2Fapp.py", "/static/%2e%2e%2f%2e%2e%2fsecret.txt",
    "/static/..%2F..%2F..%2Fsecret.txt", "/api/files/..%2F..%2Fsecret.txt", "/api/files/-1",
    "/api/files/1/frames/0", "/api/files/0%2F..%2F..%2Fsecret.txt/frames/0", "/../secret.txt",
    "/static//etc/passwd", "/api/files/0/frames/99999",
])
def test_path_traversal_is_refused(client: TestClient, path: str) -> None:
    response = client.get(path, params={"token": TOKEN})
    assert response.status_code in (400, 404), (path, response.status_code)
    assert "SECRET" not in response.text and "root:" not in response.text


def test_an_output_outside_the_folder_is_never_served(folder: Path, tmp_path: Path) -> None:
    path = folder / "clip.mp4.tracks.json"
    data = json.loads(path.read_text())
    data["output"] = str(tmp_path / "secret.txt")
    save_tracks(path, data)
    client = TestClient(create_app(Library(folder), TOKEN), base_url="http://127.0.0.1")
    response = client.get("/api/files/0/frames/0", params={"token": TOKEN, "view": "output"})
    assert response.status_code == 404 and "SECRET" not in response.text


def test_changes_need_post_and_save_writes_the_tracks_file(client: TestClient, folder: Path) -> None:
    path = folder / "clip.mp4.tracks.json"
    before = path.read_bytes()
    for route in POSTS:
        assert client.get(route, params={"token": TOKEN, "track": 0, "keep": 1}).status_code == 405
    assert path.read_bytes() == before
    headers = {"X-Review-Token": TOKEN}
    assert client.post("/api/files/0/keep", json={"track": 0, "keep": True}, headers=headers).json() == \
        {"keep": [0]}
    added = client.post("/api/files/0/boxes", json={"frame": 10, "box": [40, 330, 160, 470], "back": 5,
                                                    "forward": 100}, headers=headers).json()
    assert added == {"track": 1, "first": 5, "last": FRAMES - 1}
    assert path.read_bytes() == before, "nothing is written before save"
    assert client.post("/api/files/0/save", headers=headers).status_code == 200
    saved = json.loads(path.read_text())
    assert saved["keep"] == [0] and saved["added"] == [1]
    boxes = [next((f for f in frame["faces"] if f[4] == 1), None) for frame in saved["frames"]]
    assert all(box is None for box in boxes[:5]) and all(box is not None for box in boxes[5:])
    # The sample's camera stands still: the box stays about where it was drawn (the waving arm
    # moves a few of the corners CameraMotion follows).
    assert all(abs(box[0] - 40) < 15 and abs(box[3] - 470) < 15 for box in boxes[5:])
    assert not list(folder.glob(".fp-*")), "no temporary file left"


def test_a_drawn_box_can_be_taken_back_and_a_detected_face_cannot(client: TestClient, folder: Path) -> None:
    headers = {"X-Review-Token": TOKEN}
    kept = client.post("/api/files/0/boxes", json={"frame": 0, "box": [40, 330, 160, 470], "forward": 20},
                       headers=headers).json()["track"]
    slip = client.post("/api/files/0/boxes", json={"frame": 5, "box": [600, 400, 700, 530], "forward": 10},
                       headers=headers).json()["track"]
    client.post("/api/files/0/keep", json={"track": slip, "keep": True}, headers=headers)
    assert client.post(f"/api/files/0/boxes/{slip}/remove", headers=headers).json() == {"added": [kept]}
    refused = client.post("/api/files/0/boxes/0/remove", headers=headers)
    assert refused.status_code == 400 and "not added in review" in refused.json()["error"]
    assert client.post("/api/files/0/boxes/99/remove", headers=headers).status_code == 400
    summary = client.get("/api/files/0", params={"token": TOKEN}).json()
    assert [t["id"] for t in summary["tracks"]] == [0, kept] and summary["keep"] == [] and summary["dirty"]
    client.post("/api/files/0/save", headers=headers)
    saved = json.loads((folder / "clip.mp4.tracks.json").read_text())
    assert saved["added"] == [kept] and saved["keep"] == []
    for frame in saved["frames"]:
        assert len(frame["faces"]) == len(frame["scores"]) == len(frame["held"])
        assert {face[4] for face in frame["faces"]} <= {0, kept} and frame["faces"][0][4] == 0


def test_bad_requests_get_400(client: TestClient) -> None:
    headers = {"X-Review-Token": TOKEN}
    assert client.post("/api/files/0/boxes", content=b"{no json", headers=headers).status_code == 400
    assert client.post("/api/files/0/boxes", json={"frame": 999, "box": [1, 2, 30, 40]},
                       headers=headers).status_code == 400
    assert client.post("/api/files/0/keep", json={}, headers=headers).status_code == 400


def test_other_host_names_are_refused(folder: Path) -> None:
    client = TestClient(create_app(Library(folder), TOKEN), base_url="http://attacker.example")
    assert client.get("/", params={"token": TOKEN}).status_code == 400


def test_the_command_serves_on_127_0_0_1_with_a_token(folder: Path) -> None:
    process = subprocess.Popen([sys.executable, "-m", "facepriv", "review", str(folder), "--no-browser"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        match = re.search(r"open (http://127\.0\.0\.1:(\d+)/\?token=([\w-]+))", line)
        assert match, line + process.stderr.read() if process.poll() is not None else line
        url, port, token = match.group(1), match.group(2), match.group(3)
        assert len(token) >= 32
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200 and b"frame-canvas" in response.read()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/files", timeout=30)
        assert refused.value.code == 401
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_review_of_a_folder_without_tracks_files_fails_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "facepriv", "review", str(tmp_path), "--no-browser"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("error: no usable .tracks.json file")
    assert "Traceback" not in result.stderr


def test_import_and_help_do_not_load_the_web_server() -> None:
    code = ("import sys, facepriv, facepriv.cli; from click.testing import CliRunner; "
            "CliRunner().invoke(facepriv.cli.cli, ['--help']); "
            "print(sorted(m for m in ('starlette', 'uvicorn', 'cv2') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr
