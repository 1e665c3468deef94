"""output.media_writer, output.csv_writer and output.screen on real media."""

from __future__ import annotations

import contextlib
import csv
import resource
import subprocess
import sys

import cv2
import numpy as np
import pytest

from facepriv.errors import MediaError
from facepriv.nodes.input.visual import Node as VisualInput
from facepriv.nodes.output.csv_writer import Node as CsvWriter
from facepriv.nodes.output.media_writer import Node as MediaWriter
from facepriv.nodes.output.screen import check_display

from conftest import without_display_env

PHOTO = "images/fddb/2002_07_19_big_img_130.jpg"


def _feed(source, writer, limit=None) -> int:
    count = 0
    while limit is None or count < limit:
        out = source.run({})
        writer.run(out)
        if out["pipeline_end"]:
            break
        count += 1
    return count


def _frame_count(path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def test_video_is_written_whole_with_source_fps(tmp_path, sample_video):
    writer = MediaWriter(output_dir=str(tmp_path))
    _feed(VisualInput(source=str(sample_video)), writer)
    writer.release()
    output = tmp_path / "peekingduck_wave.mp4"
    assert _frame_count(output) == 517
    capture = cv2.VideoCapture(str(output))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(29.97, abs=0.01)
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (710, 540)
    assert [p.name for p in tmp_path.iterdir()] == ["peekingduck_wave.mp4"]


def test_interrupted_video_leaves_no_file(tmp_path, sample_video):
    writer = MediaWriter(output_dir=str(tmp_path))
    _feed(VisualInput(source=str(sample_video)), writer, limit=30)
    writer.release(completed=False)
    assert list(tmp_path.iterdir()) == []


def test_video_stopped_early_is_finalised_on_release(tmp_path, sample_video):
    writer = MediaWriter(output_dir=str(tmp_path))
    _feed(VisualInput(source=str(sample_video)), writer, limit=30)
    writer.release(completed=True)
    assert _frame_count(tmp_path / "peekingduck_wave.mp4") == 30


def test_image_written_in_its_own_format(tmp_path, faces_dir):
    source = VisualInput(source=str(faces_dir / PHOTO))
    writer = MediaWriter(output_dir=str(tmp_path / "out"))
    _feed(source, writer)
    output = tmp_path / "out" / "2002_07_19_big_img_130.jpg"
    assert output.read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG
    original = cv2.imread(str(faces_dir / PHOTO))
    written = cv2.imread(str(output))
    assert written.shape == original.shape
    assert np.abs(written.astype(int) - original.astype(int)).mean() < 3


def test_existing_output_is_refused_unless_overwrite(tmp_path, faces_dir):
    (tmp_path / "2002_07_19_big_img_130.jpg").write_bytes(b"keep me")
    with pytest.raises(MediaError, match="overwrite: true"):
        _feed(VisualInput(source=str(faces_dir / PHOTO)), MediaWriter(output_dir=str(tmp_path)))
    assert (tmp_path / "2002_07_19_big_img_130.jpg").read_bytes() == b"keep me"
    _feed(VisualInput(source=str(faces_dir / PHOTO)), MediaWriter(output_dir=str(tmp_path), overwrite=True))
    assert (tmp_path / "2002_07_19_big_img_130.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2002_07_19_big_img_130.jpg"]


def test_unwritable_output_dir_fails_before_the_first_frame(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(MediaError, match="not writable"):
        MediaWriter(output_dir=str(blocker / "out"))


def test_csv_writer_records_tracked_keys(tmp_path, sample_video):
    writer = CsvWriter(file_path=str(tmp_path / "stats.csv"), stats_to_track=["filename", "bboxes"],
                       logging_interval=0)
    source = VisualInput(source=str(sample_video))
    for _ in range(3):
        data = source.run({})
        data["bboxes"] = np.array([[0.1, 0.2, 0.3, 0.4]], dtype=np.float32)
        writer.run(data)
    assert list(tmp_path.iterdir()) != [] and not list(tmp_path.glob("stats_*.csv"))
    writer.release()
    (output,) = tmp_path.glob("stats_*.csv")
    rows = list(csv.reader(output.open()))
    assert rows[0] == ["Time", "filename", "bboxes"]
    assert len(rows) == 4 and rows[1][1] == "peekingduck_wave.mp4"
    assert rows[1][2] == "[[0.1, 0.2, 0.3, 0.4]]"


def test_csv_writer_interrupted_leaves_nothing(tmp_path):
    writer = CsvWriter(file_path=str(tmp_path / "stats.csv"))
    writer.release(completed=False)
    assert list(tmp_path.iterdir()) == []


@contextlib.contextmanager
def files_limited_to(size: int):
    """Files this process writes cannot grow past ``size`` bytes meanwhile: a real failed
    write (EFBIG, as a full disk gives ENOSPC); Python ignores the SIGXFSZ signal."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_csv_writer_that_cannot_write_reports_it_and_leaves_nothing(tmp_path, sample_video):
    writer = CsvWriter(file_path=str(tmp_path / "stats.csv"), stats_to_track=["filename"], logging_interval=0)
    data = VisualInput(source=str(sample_video)).run({})
    for _ in range(50):
        writer.run(data)
    with files_limited_to(64):  # the buffered rows reach the file only when it is closed
        writer.release()
    assert len(writer.failed_items) == 1, writer.failed_items
    assert "cannot write" in writer.failed_items[0] and "File too large" in writer.failed_items[0]
    assert list(tmp_path.iterdir()) == []


def test_audit_record_that_cannot_be_written_is_one_clear_error(tmp_path, faces_dir):
    from facepriv.nodes.output.audit_log import Node as AuditLog

    audit = AuditLog(output_dir=str(tmp_path / "out"))
    source = VisualInput(source=str(next((faces_dir / "images").rglob("*.jpg"))))
    data = source.run({})
    data.setdefault("bboxes", np.zeros((0, 4), np.float32))
    audit.run(data)
    with files_limited_to(64), pytest.raises(MediaError, match="cannot write .*audit.json.*File too large"):
        audit.run({"pipeline_end": True})
    assert list((tmp_path / "out").iterdir()) == []


def test_no_display_is_a_clear_error(monkeypatch):
    for key in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(MediaError, match="needs a display"):
        check_display()
    monkeypatch.setenv("DISPLAY", ":4242")
    with pytest.raises(MediaError, match="cannot reach display ':4242'"):
        check_display()


SCREEN_SCRIPT = """
import sys
from facepriv.nodes.input.visual import Node as VisualInput
from facepriv.nodes.output.screen import Node as Screen
source = VisualInput(source=sys.argv[1])
screen = Screen(window_name="facepriv-test", window_size={"do_resizing": True, "width": 320, "height": 240})
shown = 0
for _ in range(15):
    out = source.run({})
    assert screen.run(out) == {"pipeline_end": False}
    shown += 1
screen.release()
source.release()
print("shown", shown)
"""


def test_screen_shows_frames_on_a_virtual_display(sample_video, virtual_display):
    env = without_display_env() | {"DISPLAY": virtual_display}
    result = subprocess.run([sys.executable, "-c", SCREEN_SCRIPT, str(sample_video)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "shown 15" in result.stdout
