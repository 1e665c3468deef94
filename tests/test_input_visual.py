"""input.visual on real media: videos, images, folders, odd pixel formats."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from facepriv.errors import ConfigError, MediaError
from facepriv.nodes.input.visual import Node

GREY_JPEG = "images/fddb/2002_07_20_big_img_318.jpg"
RGBA_PNG = "images/facemask/maksssksksss107.png"


def drain(node: Node) -> list[dict]:
    frames = []
    while True:
        out = node.run({})
        if out["pipeline_end"]:
            node.release()
            return frames
        frames.append(out)


def test_video_yields_every_frame_with_its_fps(sample_video):
    frames = drain(Node(source=str(sample_video)))
    assert len(frames) == 517
    first = frames[0]
    assert first["img"].shape == (540, 710, 3) and first["img"].dtype == np.uint8
    assert first["filename"] == "peekingduck_wave.mp4"
    assert first["saved_video_fps"] == pytest.approx(29.97, abs=0.01)


def test_end_of_stream_keeps_returning_pipeline_end(sample_video):
    node = Node(source=str(sample_video))
    drain(node)
    out = node.run({})
    assert out["pipeline_end"] is True and out["img"] is None
    assert out["filename"] == "peekingduck_wave.mp4"


def test_image_file_is_one_frame_at_configured_fps(faces_dir):
    frames = drain(Node(source=str(faces_dir / GREY_JPEG), saved_video_fps=12))
    assert len(frames) == 1
    assert frames[0]["img"].ndim == 3 and frames[0]["img"].shape[2] == 3  # grey became BGR
    assert frames[0]["filename"] == "2002_07_20_big_img_318.jpg"
    assert frames[0]["saved_video_fps"] == 12


def test_rgba_png_becomes_three_channel_bgr(faces_dir):
    raw = cv2.imread(str(faces_dir / RGBA_PNG), cv2.IMREAD_UNCHANGED)
    assert raw.shape[2] == 4
    frame = drain(Node(source=str(faces_dir / RGBA_PNG)))[0]["img"]
    assert frame.shape == raw.shape[:2] + (3,)
    assert np.array_equal(frame, raw[:, :, :3])


def test_folder_yields_images_and_videos_with_relative_names(tmp_path, faces_dir, sample_video):
    shutil.copy(faces_dir / GREY_JPEG, tmp_path / "b.jpg")
    shutil.copy(faces_dir / RGBA_PNG, tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("not media")
    short = tmp_path / "c.mp4"
    _write_clip(sample_video, short, frames=3)
    names = [frame["filename"] for frame in drain(Node(source=str(tmp_path)))]
    assert names == ["a.png", "b.jpg", "c.mp4", "c.mp4", "c.mp4"]


def test_unreadable_file_in_folder_is_skipped_and_counted(tmp_path, faces_dir):
    shutil.copy(faces_dir / GREY_JPEG, tmp_path / "good.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"this is not a jpeg")
    node = Node(source=str(tmp_path))
    frames = drain(node)
    assert [frame["filename"] for frame in frames] == ["good.jpg"]
    assert len(node.failed_items) == 1 and "broken.jpg" in node.failed_items[0]


def test_resize_and_mirror(sample_video):
    plain = Node(source=str(sample_video)).run({})["img"]
    mirrored = Node(source=str(sample_video), mirror_image=True).run({})["img"]
    assert np.array_equal(mirrored, plain[:, ::-1])
    resized = Node(
        source=str(sample_video), resize={"do_resizing": True, "width": 320, "height": 240}
    ).run({})["img"]
    assert resized.shape == (240, 320, 3)


def test_threaded_reading_of_a_file_loses_no_frame(sample_video):
    plain = drain(Node(source=str(sample_video)))
    threaded = drain(Node(source=str(sample_video), threading=True))
    assert len(threaded) == len(plain)
    for index in (0, 100, 516):
        assert np.array_equal(threaded[index]["img"], plain[index]["img"])


def test_legacy_keys_work_from_python(sample_video):
    node = Node({"input_source": str(sample_video)})
    assert node.source == str(sample_video)
    node.release()


@pytest.mark.parametrize(
    ("make_source", "error", "fragment"),
    [
        (lambda p: str(p / "missing.mp4"), ConfigError, "does not exist"),
        (lambda p: str(p), MediaError, "holds no images or videos"),
        (lambda p: _text_file(p, "x.jpg"), MediaError, "cannot read image"),
        (lambda p: _text_file(p, "x.mp4"), MediaError, "cannot read video"),
        (lambda p: _text_file(p, "x.txt"), MediaError, "not a supported image or video"),
        (lambda p: 57, MediaError, "cannot open webcam 57"),
    ],
)
def test_bad_sources_fail_before_the_first_frame(tmp_path, make_source, error, fragment):
    with pytest.raises(error, match=fragment):
        Node(source=make_source(tmp_path))


def _text_file(folder, name):
    path = folder / name
    path.write_text("plain text")
    return str(path)


def _write_clip(source, target, frames):
    capture = cv2.VideoCapture(str(source))
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), 10, (710, 540))
    for _ in range(frames):
        ok, image = capture.read()
        assert ok
        writer.write(image)
    writer.release()
    capture.release()
