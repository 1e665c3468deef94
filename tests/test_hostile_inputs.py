"""Hostile and unlucky inputs (issue 16): photos that hide their unmasked original in
metadata, images and videos that declare a huge size, and names at the file system's limit.

Every input is built here, small on disk; runs go through ``python -m facepriv`` as a
user's would, and check the exit code, the one ``error:`` line, that no traceback leaks,
that the inputs are unchanged and that nothing is left under a final or hidden name.
"""

from __future__ import annotations

import base64
import http.server
import shutil
import signal
from pathlib import Path

import av
import pytest

from facepriv.batch.manifest import MANIFEST_NAME, manifest_lock
from facepriv.media.image_metadata import exif_ifd0, jpeg_segments, png_chunks, read_exif

from conftest import RangeHandler, error_lines, interrupt_run, output_files, run_cli
from hostile_media import (
    growing_clip,
    h264_clip,
    h264_clip_in_child,
    http_server,
    jpeg_bomb,
    jpeg_bytes,
    photo,
    png_bomb,
    png_with_hidden_originals,
    portrait_photo_with_hidden_originals,
    run_measured,
    run_ok,
    writer_config,
)
from test_bad_inputs import q, run_args, tree_hashes

GPS_IFD, MAKE, EXIF_IFD = 0x8825, 0x010F, 0x8769


# --------------------------------------------------------------------------- metadata


@pytest.mark.parametrize("kind", ["jpg", "png"])
def test_keep_metadata_never_keeps_an_embedded_picture(kind, tmp_path):
    image = photo()
    build = portrait_photo_with_hidden_originals if kind == "jpg" else png_with_hidden_originals
    source = tmp_path / "in" / f"portrait.{kind}"
    source.parent.mkdir()
    source.write_bytes(build(image))
    before = tree_hashes(source.parent)
    run_ok(writer_config(tmp_path, source, "    keep_metadata: true"), tmp_path)
    assert tree_hashes(source.parent) == before

    output = (tmp_path / "out" / source.name).read_bytes()
    hidden = jpeg_bytes(image)
    for needle in (hidden[:64], hidden[-64:], base64.b64encode(hidden)[:64], hidden.hex()[:64].encode()):
        assert needle not in output  # not the picture, raw, base64 or hex
    for word in (b"GImage", b"GDepth", b"xmpmeta", b"8BIM", b"FPXR", b"MPF\x00", b"Raw profile"):
        assert word not in output, word
    assert output.count(b"\xff\xd8\xff") == (1 if kind == "jpg" else 0)  # no JPEG but the output itself
    tags = exif_ifd0(read_exif(output))
    assert tags[MAKE] == b"FaceCam\x00" and GPS_IFD not in tags  # camera kept, location not
    if kind == "jpg":
        assert output.endswith(b"\xff\xd9") and output.count(b"\xff\xd9") == 1  # nothing after the image
        app_segments = [payload[:4] for marker, payload in jpeg_segments(output) if 0xE1 <= marker <= 0xEF]
        assert app_segments == [b"Exif"]
    else:
        texts = [payload for chunk, payload in png_chunks(output) if chunk in (b"tEXt", b"zTXt", b"iTXt")]
        assert texts == [b"Author\x00J. Doe"]  # a short comment survives, long ones do not


# --------------------------------------------------------------------------- size limits

MB = 1 << 20
REFUSED_MARGIN = 64 * MB  # what a refused bomb may cost over a tiny input; one 8192x8192 frame is 100 MB
BYTES_PER_FRAME_PIXEL = 200  # README: about 90 measured (decoder and x264 threads); generous for more cores


@pytest.fixture(scope="module")
def baseline_peak(tmp_path_factory) -> int:
    """Peak memory of a run on a tiny video: what importing, PyAV and x264 cost on their own."""
    root = tmp_path_factory.mktemp("baseline")
    h264_clip(root / "tiny.mp4", 64, 48, frames=3)
    result, peak = run_measured(run_args(writer_config(root, root / "tiny.mp4")), root)
    assert result.returncode == 0, result.stderr
    return peak


BOMBS = {
    "png-30000x30000": ("bomb.png", lambda path: path.write_bytes(png_bomb(30000, 30000))),
    "jpeg-30000x30000": ("bomb.jpg", lambda path: path.write_bytes(jpeg_bomb(30000, 30000))),
    "h264-8192x8192": ("bomb.mp4", lambda path: h264_clip_in_child(path, 8192, 8192)),
}


@pytest.mark.parametrize("bomb", BOMBS, ids=list(BOMBS))
def test_a_pixel_bomb_is_refused_from_its_header_before_any_allocation(bomb, tmp_path, baseline_peak):
    name, build = BOMBS[bomb]
    source = tmp_path / "in" / name
    source.parent.mkdir()
    build(source)
    assert source.stat().st_size < 300_000  # small on disk
    before = tree_hashes(source.parent)
    result, peak = run_measured(run_args(writer_config(tmp_path, source)), tmp_path)
    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert name in lines[0] and "input.visual.max_megapixels (50)" in lines[0], lines[0]
    print(f"{bomb}: peak {peak / MB:.0f} MB, tiny video {baseline_peak / MB:.0f} MB")
    assert peak < baseline_peak + REFUSED_MARGIN, f"{peak / MB:.0f} MB against {baseline_peak / MB:.0f} MB"
    assert tree_hashes(source.parent) == before and output_files(tmp_path / "out") == []


def test_a_bomb_in_a_folder_fails_alone(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_bomb.png").write_bytes(png_bomb(20000, 20000))
    (folder / "b_fine.jpg").write_bytes(jpeg_bytes(photo()))
    result = run_cli(*run_args(writer_config(tmp_path, folder)), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert error_lines(result.stderr) == [
        "error: 1 input(s) could not be processed (listed above): fix or remove them and run again"]
    assert "a_bomb.png: it is 20000x20000 pixels (400.0 MP), above input.visual.max_megapixels" \
        in result.stderr
    assert output_files(tmp_path / "out") == ["b_fine.jpg"]


def test_a_video_that_grows_past_the_limit_part_way_fails_there(tmp_path):
    """The container and the first seconds declare 64x48; then the stream turns 1024x1024.
    FFmpeg's max_pixels stops the decoder before it allocates such a frame."""
    source = growing_clip(tmp_path / "grows.mpg", (64, 48, 100), (1024, 1024, 5))
    config = writer_config(tmp_path, source, visual_lines=("    max_megapixels: 0.5",))
    result = run_cli(*run_args(config), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "grows.mpg: the video changes to frames of 1024x1024 pixels (1.0 MP), above " \
        "input.visual.max_megapixels (0.5)" in result.stderr
    assert "after frame 100" in result.stderr
    assert output_files(tmp_path / "out") == []  # what was written of it is discarded


def test_an_accepted_video_at_the_limit_stays_within_the_documented_memory(tmp_path, baseline_peak):
    source = h264_clip(tmp_path / "in.mp4", 1280, 720, frames=10)
    config = writer_config(tmp_path, source, visual_lines=("    max_megapixels: 0.93",))
    result, peak = run_measured(run_args(config), tmp_path)
    assert result.returncode == 0, result.stderr
    assert output_files(tmp_path / "out") == ["in.mp4"]
    bound = baseline_peak + BYTES_PER_FRAME_PIXEL * 1280 * 720
    print(f"720p at the limit: peak {peak / MB:.0f} MB, bound {bound / MB:.0f} MB")
    assert peak < bound, f"{peak / MB:.0f} MB, bound {bound / MB:.0f} MB"


# --------------------------------------------------------------------------- streams


class WholeFileHandler(http.server.SimpleHTTPRequestHandler):
    """A plain web server: no range requests, as many are; it answers every GET with the whole file."""

    def log_message(self, *args):
        pass


def test_an_mp4_with_its_index_at_the_end_over_plain_http_fails_clearly(tmp_path):
    """Before: '0 frame(s)', no output and exit code 0."""
    (tmp_path / "www").mkdir()
    clip = h264_clip(tmp_path / "www" / "late_index.mp4", 320, 240, frames=30, faststart=False, noise=True)
    assert clip.read_bytes().find(b"moov") > clip.read_bytes().find(b"mdat")  # the index is at the end
    with http_server(tmp_path / "www", WholeFileHandler) as url:
        result = run_cli(*run_args(writer_config(tmp_path, f"{url}/late_index.mp4")), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and "late_index.mp4" in lines[0] and "gave no frame" in lines[0], result.stderr
    assert "range requests" in lines[0] and "faststart" in lines[0]
    assert output_files(tmp_path / "out") == []


def test_the_same_mp4_from_a_server_with_range_requests_is_read_whole(tmp_path, sample_video):
    """The fix does not refuse what works: a server that answers ranges gives every frame."""
    clip = h264_clip(tmp_path / "late_index.mp4", 320, 240, frames=30, faststart=False, noise=True)
    with http_server(tmp_path, RangeHandler) as url:
        run_ok(writer_config(tmp_path, f"{url}/{clip.name}"), tmp_path)
    (written,) = output_files(tmp_path / "out")
    with av.open(str(tmp_path / "out" / written)) as output:
        assert sum(1 for _ in output.decode(video=0)) == 30


# --------------------------------------------------------------------------- names


def test_a_240_byte_file_name_is_written_like_any_other(tmp_path):
    """Before: 'OSError: File name too long' from the hidden temporary name, a traceback,
    and the rest of the folder not processed."""
    folder = tmp_path / "in"
    folder.mkdir()
    long_photo, long_clip = "p" * 236 + ".jpg", "v" * 236 + ".mp4"
    (folder / long_photo).write_bytes(jpeg_bytes(photo()))
    h264_clip(folder / long_clip, 64, 48, frames=3)
    (folder / "z.jpg").write_bytes(jpeg_bytes(photo()))
    before = tree_hashes(folder)
    run_ok(writer_config(tmp_path, folder), tmp_path)
    assert output_files(tmp_path / "out") == sorted([long_photo, long_clip, "z.jpg"])
    assert tree_hashes(folder) == before


def test_a_name_the_file_system_cannot_hold_fails_that_file_alone(tmp_path):
    """The input's path fits in PATH_MAX (4096 bytes) but its mirror below a longer output_dir does not."""
    folder = tmp_path / "in"
    deep = folder
    for index in range((4096 - len(str(folder)) - 20) // 251):
        deep = deep / (chr(ord("a") + index % 26) * 250)
    deep.mkdir(parents=True)
    (deep / "x.jpg").write_bytes(jpeg_bytes(photo()))
    (folder / "top.jpg").write_bytes(jpeg_bytes(photo()))
    output_dir = tmp_path / ("o" * 250)
    config = tmp_path / "config.yml"
    config.write_text(f"nodes:\n- input.visual:\n    source: {q(folder)}\n    recursive: true\n"
                      f"- output.media_writer:\n    output_dir: {q(output_dir)}\n", encoding="utf-8")
    result = run_cli(*run_args(str(config)), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert error_lines(result.stderr) == [
        "error: 1 input(s) could not be processed (listed above): fix or remove them and run again"]
    assert "x.jpg: the file system cannot hold the output name (File name too long)" in result.stderr
    assert output_files(output_dir) == ["top.jpg"]


# --------------------------------------------------------------------------- stopped and concurrent runs


@pytest.fixture()
def folder_with_a_video(tmp_path, sample_video):
    """in/a.jpg, in/b.mp4 (the 517-frame sample) and in/c.jpg, and a config that copies them."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(jpeg_bytes(photo(seed=1)))
    shutil.copy(sample_video, folder / "b.mp4")
    (folder / "c.jpg").write_bytes(jpeg_bytes(photo(seed=2)))
    return folder, writer_config(tmp_path, folder, visual_lines=("    frames_log_freq: 10",))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_stopped_serial_run_leaves_no_partial_and_the_same_command_resumes(sig, folder_with_a_video,
                                                                              tmp_path):
    """Before: a hidden *.partial* file left for ever, and the same command stopping at the
    first finished output with 'already exists' (exit 2), the rest of the folder never done."""
    folder, config = folder_with_a_video
    before = tree_hashes(folder)
    out = tmp_path / "out"
    code, rest = interrupt_run(Path(config), tmp_path, "b.mp4: 20 frames read", sig=sig)
    left = output_files(out)
    if sig == signal.SIGKILL:  # nothing can run: the video's hidden partial file stays, for now
        assert code == -signal.SIGKILL
        assert left[0].startswith(".fp-") and left[0].endswith(".partial.mp4") and left[1:] == ["a.jpg"], left
    else:  # handled like Ctrl-C
        assert code == 130 and "interrupted" in rest and "Traceback" not in rest, rest
        assert left == ["a.jpg"]
    first = (out / "a.jpg").stat().st_mtime_ns

    result = run_cli(*run_args(config), cwd=tmp_path)
    assert result.returncode == 0 and error_lines(result.stderr) == [], result.stderr
    assert output_files(out) == ["a.jpg", "b.mp4", "c.jpg"]  # the partial file is gone
    assert (out / "a.jpg").stat().st_mtime_ns == first  # done before: skipped, not rewritten
    with av.open(str(out / "b.mp4")) as video:
        assert video.streams.video[0].frames == 517
    assert tree_hashes(folder) == before


def test_a_second_serial_run_on_the_same_output_dir_stops_at_once(folder_with_a_video, tmp_path):
    """Before: two serial runs both said 'wrote' and the last rename won. Here the test holds
    the lock a running facepriv holds."""
    folder, config = folder_with_a_video
    (tmp_path / "out").mkdir()
    with manifest_lock(tmp_path / "out" / MANIFEST_NAME):
        result = run_cli(*run_args(config), cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert error_lines(result.stderr) == [
            f"error: another facepriv run is writing to '{tmp_path / 'out'}' (its manifest {MANIFEST_NAME} "
            "is locked): wait for that run to end, or give this one another output_dir"]
        assert output_files(tmp_path / "out") == []
    run_ok(config, tmp_path)
    assert output_files(tmp_path / "out") == ["a.jpg", "b.mp4", "c.jpg"]


def test_two_inputs_with_one_output_name_stop_before_the_first_frame(tmp_path):
    """Before: clip.mkv was written as clip.mp4, then clip.mp4 stopped the run midway with exit 2."""
    folder = tmp_path / "in"
    folder.mkdir()
    h264_clip(folder / "clip.mkv", 64, 48)
    h264_clip(folder / "clip.mp4", 64, 48)
    result = run_cli(*run_args(writer_config(tmp_path, folder)), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (line,) = error_lines(result.stderr)
    assert "clip.mkv" in line and "clip.mp4" in line and "would both be written as" in line, line
    assert output_files(tmp_path / "out") == [] and not (tmp_path / "out" / MANIFEST_NAME).exists()


def test_a_stream_above_the_pixel_limit_is_refused_before_the_first_frame(tmp_path):
    clip = h264_clip(tmp_path / "clip.mp4", 320, 240, frames=5)
    with http_server(tmp_path, RangeHandler) as url:
        config = writer_config(tmp_path, f"{url}/{clip.name}", visual_lines=("    max_megapixels: 0.05",))
        result = run_cli(*run_args(config), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (line,) = error_lines(result.stderr)
    assert "its frames are 320x240 pixels (0.1 MP), above input.visual.max_megapixels (0.05)" in line, line
    assert output_files(tmp_path / "out") == []
