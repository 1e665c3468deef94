"""Video-grade I/O on real clips: audio, timing, rotation, metadata, damaged files, Ctrl-C, progress.

No face detector is needed: the pipelines are input.visual -> output.media_writer, so
every check is about what the I/O path keeps or drops. Clips come from
../shared/data/videos (skipped when absent); derived clips (rotated, VFR, truncated,
tagged) are made from them in tmp_path by stream copy or re-encoding.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
import time
from fractions import Fraction
from pathlib import Path

import cv2  # before PyAV: see facepriv.media.video.load_av
import numpy as np
import pytest

from facepriv.errors import ConfigError, MediaError
from facepriv.media.reading import FrameInfo, MediaItem
from facepriv.media.video import load_av
from facepriv.nodes.input.visual import Node as VisualInput
from facepriv.nodes.output.media_writer import Node as MediaWriter
from facepriv.runner import Pipeline

from conftest import interrupt_run, output_files

av = load_av()

AUDIO_FIRST = "peekingduck_humans_mot_nofaces.mp4"  # audio is stream 0, 24 frames, 1280x720
SHORT_AUDIO = "egoblur_gen2_test_face_video.mp4"  # audio shorter than the video, 14 frames
CLIPS = [
    pytest.param(AUDIO_FIRST, id="humans_mot-audio-first"),
    pytest.param(SHORT_AUDIO, id="egoblur_gen2-short-audio"),
    pytest.param("peekingduck_wave.mp4", id="wave-29.97", marks=pytest.mark.slow),
    pytest.param("mtcnn_tf_video_test.avi", id="avi-mpeg4", marks=pytest.mark.slow),
    pytest.param("egoblur_gen1_test_video.mp4", id="egoblur_gen1-portrait", marks=pytest.mark.slow),
]


# --------------------------------------------------------------------------- helpers


def anonymize(source, out_dir: Path, **writer) -> tuple[VisualInput, list[str]]:
    """input.visual -> output.media_writer through the runner; returns the input node and failures."""
    reader = VisualInput(source=source if isinstance(source, list) else str(source), frames_log_freq=0)
    summary = Pipeline([reader, MediaWriter(output_dir=str(out_dir), **writer)]).run()
    return reader, summary.failed_items


def probe(path: Path) -> dict:
    """Video packet times, size and length, and every audio packet's (pts, bytes), by demuxing."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = list(container.streams.audio)
        facts = {
            "width": video.codec_context.width, "height": video.codec_context.height,
            "audio_codecs": [stream.codec_context.name for stream in audio],
            "metadata": dict(container.metadata),
        }
        times, ends, packets = [], [], {stream.index: [] for stream in audio}
        for packet in container.demux(video, *audio):
            if not packet.size:
                continue
            if packet.stream.type == "video":
                start = packet.pts * packet.time_base
                times.append(start)
                ends.append(start + (packet.duration or 0) * packet.time_base)
            else:
                packets[packet.stream.index].append((packet.pts * packet.time_base, bytes(packet)))
        facts["audio"] = [packets[stream.index] for stream in audio]
    times.sort()
    facts.update(frames=len(times), times=times, duration=float(max(ends) - times[0]))
    return facts


def frame_duration(facts: dict) -> float:
    return float(np.median(np.diff([float(t) for t in facts["times"]])))


def remux(source: Path, target: Path, rotation: int | None = None, metadata: dict | None = None) -> Path:
    """Copy every packet of ``source`` into ``target`` (no re-encoding), with optional tags."""
    with av.open(str(source)) as src, av.open(str(target), "w") as out:
        out.metadata.update(metadata or {})
        streams = {}
        for stream in src.streams:
            streams[stream.index] = out.add_stream_from_template(stream)
            if rotation is not None and stream.type == "video":
                streams[stream.index].set_display_rotation(rotation)
        for packet in src.demux():
            if packet.size:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    return target


def decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


# --------------------------------------------------------------------------- timing, size, audio


@pytest.mark.parametrize("clip", CLIPS)
def test_frames_size_duration_and_audio_are_preserved(clip, videos_dir, tmp_path):
    source = videos_dir / clip
    _, failed = anonymize(source, tmp_path)
    assert failed == []
    output = tmp_path / Path(clip).with_suffix(".mp4").name
    before, after = probe(source), probe(output)

    assert after["frames"] == before["frames"]
    assert (after["width"], after["height"]) == (before["width"], before["height"])
    one_frame = frame_duration(before)
    assert abs(after["duration"] - before["duration"]) <= one_frame
    # every frame keeps its presentation time (to the output's clock resolution)
    shift = after["times"][0] - before["times"][0]
    assert max(abs(float(a - b - shift)) for a, b in zip(after["times"], before["times"], strict=True)) < 1e-3

    assert after["audio_codecs"] == before["audio_codecs"]
    for packets_in, packets_out in zip(before["audio"], after["audio"], strict=True):
        assert len(packets_out) == len(packets_in) > 0
        assert packets_out == packets_in  # same bytes, same timestamps, same order


def test_audio_first_clip_keeps_audio_and_video(videos_dir, tmp_path):
    source = videos_dir / AUDIO_FIRST
    with av.open(str(source)) as container:
        assert container.streams[0].type == "audio"  # the case under test
    reader, failed = anonymize(source, tmp_path)
    assert failed == []
    with av.open(str(tmp_path / AUDIO_FIRST)) as container:
        assert sorted(stream.type for stream in container.streams) == ["audio", "video"]
        assert sum(1 for _ in container.decode(video=0)) == 24


def test_variable_frame_rate_survives(videos_dir, tmp_path):
    # Re-encode the real clip with uneven frame times (as phones and screen recorders write).
    source = videos_dir / AUDIO_FIRST
    vfr = tmp_path / "in" / "vfr.mp4"
    vfr.parent.mkdir()
    steps = [1, 1, 3, 1, 2, 5, 1, 1, 2, 1, 4, 1]
    with av.open(str(source)) as src, av.open(str(vfr), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 15360)
        pts = 0
        for index, frame in enumerate(src.decode(video=0)):
            new = av.VideoFrame.from_ndarray(frame.to_ndarray(format="bgr24"), format="bgr24")
            new.pts, new.time_base = pts, Fraction(1, 15360)
            out.mux(stream.encode(new))
            pts += 512 * steps[index % len(steps)]
        out.mux(stream.encode(None))
    _, failed = anonymize(vfr, tmp_path / "out")
    assert failed == []
    before, after = probe(vfr), probe(tmp_path / "out" / "vfr.mp4")
    gaps_in = np.diff([float(t) for t in before["times"]])
    gaps_out = np.diff([float(t) for t in after["times"]])
    assert len(set(np.round(gaps_in, 4))) > 2  # really variable
    assert np.allclose(gaps_out, gaps_in, atol=1e-4)
    assert abs(after["duration"] - before["duration"]) <= float(gaps_in.min())


def test_live_sources_are_stamped_with_measured_times(request, tmp_path):
    # input.visual stamps camera and stream frames with the time they arrived
    reader = VisualInput(source=request.getfixturevalue("http_video_url"), frames_log_freq=0)
    summary = Pipeline([reader, MediaWriter(output_dir=str(tmp_path))]).run(num_iter=15)
    assert summary.iterations == 15 and summary.failed_items == []
    (output,) = tmp_path.glob("stream_*.mp4")
    times = probe(output)["times"]
    assert len(times) == 15 and all(b > a for a, b in zip(times, times[1:], strict=False))


def test_measured_timestamps_are_written_as_given(videos_dir, tmp_path):
    # What input.visual gives the writer for a webcam: milliseconds measured at capture.
    item = MediaItem(None, "webcam_test.mp4", "live", fps=30.0)
    reader = VisualInput(source=str(videos_dir / AUDIO_FIRST), frames_log_freq=0)
    writer = MediaWriter(output_dir=str(tmp_path))
    stamps = [0, 40, 75, 160, 200, 233, 400, 433, 466, 500]
    for index, ms in enumerate(stamps):
        image = reader.run({})["img"]
        writer.run({"img": image, "filename": item.name, "saved_video_fps": 30.0, "pipeline_end": False,
                    "frame_info": FrameInfo(item, index, ms, Fraction(1, 1000))})
    writer.run({"pipeline_end": True, "img": None, "filename": item.name, "frame_info": None})
    reader.release()
    times = probe(tmp_path / "webcam_test.mp4")["times"]
    assert [round(float(t - times[0]) * 1000) for t in times] == stamps


# --------------------------------------------------------------------------- rotation


@pytest.mark.parametrize(
    ("rotation", "turn"),
    [(-90, cv2.ROTATE_90_CLOCKWISE), (90, cv2.ROTATE_90_COUNTERCLOCKWISE), (180, cv2.ROTATE_180)],
)
def test_display_rotation_is_applied_to_the_pixels(rotation, turn, videos_dir, tmp_path):
    source = videos_dir / AUDIO_FIRST
    rotated = remux(source, tmp_path / "phone.mp4", rotation=rotation)
    stored = decoded_frames(source)
    reader = VisualInput(source=str(rotated))
    first = reader.run({})["img"]
    reader.release()
    upright = cv2.rotate(stored[0], turn)
    assert first.shape == upright.shape
    assert np.abs(first.astype(int) - upright.astype(int)).mean() < 1.5  # same picture, same way up

    _, failed = anonymize(rotated, tmp_path / "out")
    assert failed == []
    with av.open(str(tmp_path / "out" / "phone.mp4")) as container:
        frame = next(container.decode(video=0))
        assert (frame.height, frame.width) == upright.shape[:2]
        assert not frame.rotation  # upright pixels, no display matrix: displays like the input


# --------------------------------------------------------------------------- metadata


def test_container_metadata_is_dropped_unless_kept_and_location_always(videos_dir, tmp_path):
    tags = {"location": "+43.4674+011.8851/", "title": "interview with A. Person", "artist": "J. Doe"}
    source = remux(videos_dir / AUDIO_FIRST, tmp_path / "tagged.mp4", metadata=tags)
    assert probe(source)["metadata"].get("location") == tags["location"]

    anonymize(source, tmp_path / "plain")
    plain = probe(tmp_path / "plain" / "tagged.mp4")["metadata"]
    assert not set(plain) - {"major_brand", "minor_version", "compatible_brands", "encoder"}, plain

    anonymize(source, tmp_path / "kept", keep_metadata=True)
    kept = probe(tmp_path / "kept" / "tagged.mp4")["metadata"]
    assert kept.get("title") == tags["title"] and kept.get("artist") == tags["artist"]
    assert not [key for key in kept if "location" in key], kept  # never where it was filmed


def test_audio_the_container_cannot_hold_is_reencoded(videos_dir, tmp_path):
    # mu-law audio (old cameras, phone systems; fine in MOV) has no place in MP4: it becomes AAC.
    source = tmp_path / "mulaw.mov"
    with av.open(str(videos_dir / AUDIO_FIRST)) as src, av.open(str(source), "w") as out:
        video = out.add_stream_from_template(src.streams.video[0])
        audio = out.add_stream("pcm_mulaw", rate=src.streams.audio[0].rate, layout="mono")
        for packet in src.demux():
            if not packet.size:
                continue
            if packet.stream.type == "video":
                packet.stream = video
                out.mux(packet)
            else:
                for frame in packet.decode():
                    frame.pts = None
                    out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
    _, failed = anonymize(source, tmp_path / "out")
    assert failed == []
    output = probe(tmp_path / "out" / "mulaw.mp4")
    assert output["audio_codecs"] == ["aac"]
    audio_seconds = float(output["audio"][0][-1][0] - output["audio"][0][0][0])
    assert audio_seconds == pytest.approx(0.79, abs=0.1)


# --------------------------------------------------------------------------- damaged files


def _truncate(source: Path, target: Path, fraction: float) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def test_truncated_video_emits_only_clean_frames_and_is_counted(videos_dir, tmp_path):
    source = videos_dir / AUDIO_FIRST  # its index is at the front: the data can be cut mid-frame
    cut = _truncate(source, tmp_path / "cut.mp4", 0.6)
    reader = VisualInput(source=[str(cut)], frames_log_freq=0)
    emitted = []
    while not (out := reader.run({}))["pipeline_end"]:
        emitted.append(out["img"])
    reader.release()
    intact = [cv2.cvtColor(cv2.cvtColor(f, cv2.COLOR_BGR2YUV_I420), cv2.COLOR_YUV2BGR_I420)
              for f in decoded_frames(source)]
    assert 0 < len(emitted) < len(intact)
    for got, want in zip(emitted, intact[: len(emitted)], strict=True):  # never a half-decoded frame
        assert np.abs(got.astype(int) - want.astype(int)).mean() < 1.5
    assert len(reader.failed_items) == 1 and "cut.mp4" in reader.failed_items[0]
    assert "truncated" in reader.failed_items[0]


def test_damaged_files_are_reported_and_the_others_complete(videos_dir, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _truncate(videos_dir / AUDIO_FIRST, inputs / "a_cut_mid_data.mp4", 0.6)
    _truncate(videos_dir / "peekingduck_wave.mp4", inputs / "b_cut_no_index.mp4", 0.5)
    shutil.copy(videos_dir / AUDIO_FIRST, inputs / "c_whole.mp4")
    config = tmp_path / "run.yml"
    config.write_text(
        f"nodes:\n- input.visual:\n    source: {inputs}\n- output.media_writer:\n"
        f"    output_dir: {tmp_path / 'out'}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "facepriv", "run", "--config_path", str(config)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: 2 input(s) could not be processed (listed above): fix or remove them and run again"
    ]
    assert "a_cut_mid_data.mp4: the video is truncated or damaged" in result.stderr
    assert "b_cut_no_index.mp4: the file is damaged" in result.stderr
    written = output_files(tmp_path / "out")
    assert written == ["c_whole.mp4"]  # no partial output, not even a hidden temporary file
    assert probe(tmp_path / "out" / "c_whole.mp4")["frames"] == 24


@pytest.mark.slow
def test_ctrl_c_mid_video_leaves_no_output(videos_dir, tmp_path):
    config = tmp_path / "run.yml"
    config.write_text(
        f"nodes:\n- input.visual:\n    source: {videos_dir / 'egoblur_gen1_test_video.mp4'}\n"
        f"    frames_log_freq: 10\n- output.media_writer:\n    output_dir: {tmp_path / 'out'}\n"
    )

    def only_a_hidden_partial_exists():
        partial = output_files(tmp_path / "out")
        assert partial and all(name.startswith(".") and ".partial" in name for name in partial)

    code, rest = interrupt_run(config, tmp_path, "30 frames read", only_a_hidden_partial_exists)
    assert code == 130, rest
    assert "interrupted" in rest and "Traceback" not in rest
    assert output_files(tmp_path / "out") == []


def _run_with_file_size_limit(config: Path, cwd: Path, limit: int, *options: str):
    """``facepriv run`` in a process whose files cannot grow past ``limit`` bytes: a real
    write failure (EFBIG, as a full disk gives ENOSPC) in the middle of encoding."""
    import resource

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "facepriv", "run", "--config_path", str(config), *options],
        capture_output=True, text=True, cwd=cwd, timeout=300, preexec_fn=limited,
    )


@pytest.mark.parametrize("kind", ["video", "image"])
def test_a_failed_write_stops_the_run_with_one_line_and_no_partial_file(kind, videos_dir, exif_dir, tmp_path):
    """The video's encoding thread hits the limit part-way; its error reaches the run as
    one line, the partial file is removed, and the input is untouched."""
    source = videos_dir / "egoblur_gen1_test_video.mp4" if kind == "video" else exif_dir / "DSCN0010_gps.jpg"
    before = source.stat()
    config = tmp_path / "run.yml"
    config.write_text(
        f"nodes:\n- input.visual:\n    source: {source}\n- output.media_writer:\n"
        f"    output_dir: {tmp_path / 'out'}\n"
    )
    result = _run_with_file_size_limit(config, tmp_path, 400_000 if kind == "video" else 20_000)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot write" in errors[0] and "File too large" in errors[0], errors
    assert source.name.rsplit(".", 1)[0] in errors[0] and "free space" in errors[0]
    assert output_files(tmp_path / "out") == []  # no output, not even a hidden partial
    after = source.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


@pytest.mark.slow
def test_a_failed_write_in_a_batch_job_fails_only_that_file(videos_dir, exif_dir, tmp_path):
    """With --workers the write failure is that file's failure, recorded in the manifest
    with its reason; the other file is done, and nothing partial is left."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(videos_dir / "egoblur_gen1_test_video.mp4", inputs / "big.mp4")
    shutil.copy(exif_dir / "Canon_40D.jpg", inputs / "small.jpg")
    config = tmp_path / "run.yml"
    config.write_text(
        f"nodes:\n- input.visual:\n    source: {inputs}\n- output.media_writer:\n"
        f"    output_dir: {tmp_path / 'out'}\n"
    )
    result = _run_with_file_size_limit(config, tmp_path, 400_000, "--workers", "2")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["facepriv-manifest.jsonl", "small.jpg"]
    records = {r["name"]: r for r in map(json.loads, (tmp_path / "out" / "facepriv-manifest.jsonl").open())}
    assert records["small.jpg"]["status"] == "done"
    assert records["big.mp4"]["status"] == "failed" and records["big.mp4"]["output"] is None
    assert "cannot write" in records["big.mp4"]["error"] and "File too large" in records["big.mp4"]["error"]


# --------------------------------------------------------------------------- sources and outputs


def test_list_glob_and_recursive_sources_mirror_into_output_dir(videos_dir, exif_dir, tmp_path):
    tree = tmp_path / "src"
    (tree / "day1" / "cam").mkdir(parents=True)
    shutil.copy(exif_dir / "Canon_40D.jpg", tree / "top.jpg")
    shutil.copy(exif_dir / "Canon_40D.jpg", tree / "day1" / "a.jpg")
    shutil.copy(videos_dir / AUDIO_FIRST, tree / "day1" / "cam" / "clip.mp4")

    names = lambda node: [i[1] for i in node._items]  # noqa: E731
    assert names(VisualInput(source=str(tree))) == ["top.jpg"]
    everything = ["day1/a.jpg", "day1/cam/clip.mp4", "top.jpg"]
    assert names(VisualInput(source=str(tree), recursive=True)) == everything
    assert names(VisualInput(source=str(tree / "**" / "*.jpg"))) == ["day1/a.jpg", "top.jpg"]
    assert names(VisualInput(source=[str(tree / "top.jpg"), str(tree / "day1")])) == ["top.jpg", "a.jpg"]

    reader = VisualInput(source=str(tree), recursive=True, frames_log_freq=0)
    summary = Pipeline([reader, MediaWriter(output_dir=str(tmp_path / "out"))]).run()
    assert summary.failed_items == []
    written = sorted(p.relative_to(tmp_path / "out").as_posix()
                     for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written == ["day1/a.jpg", "day1/cam/clip.mp4", "top.jpg"]


@pytest.mark.parametrize(
    ("source", "error", "fragment"),
    [
        (lambda t: [str(t / "a" / "x.jpg"), str(t / "b" / "x.jpg")], ConfigError,
         "would both be written as 'x.jpg'"),
        (lambda t: str(t / "a" / "*.png"), MediaError, "matches no images or videos"),
        (lambda t: [str(t / "a" / "x.jpg"), str(t / "missing.jpg")], ConfigError, "does not exist"),
        (lambda t: [0], ConfigError, "is not a path"),
        (lambda t: str(t / "a"), None, None),
    ],
)
def test_sources_are_checked_before_the_first_frame(source, error, fragment, exif_dir, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(exif_dir / "Canon_40D.jpg", tmp_path / folder / "x.jpg")
    if error is None:
        VisualInput(source=source(tmp_path)).release()
        return
    with pytest.raises(error, match=fragment):
        VisualInput(source=source(tmp_path))


def test_an_input_is_never_overwritten(exif_dir, tmp_path):
    photo = shutil.copy(exif_dir / "DSCN0010_gps.jpg", tmp_path / "photo.jpg")
    before = Path(photo).read_bytes()
    with pytest.raises(MediaError, match="would replace its input"):
        anonymize(str(tmp_path), tmp_path, overwrite=True)
    assert Path(photo).read_bytes() == before


def test_bad_encoder_settings_fail_before_the_first_frame(tmp_path):
    with pytest.raises(ConfigError, match="video_codec 'h266'"):
        MediaWriter(output_dir=str(tmp_path), video_codec="h266")
    with pytest.raises(ConfigError, match="preset 'warp'"):
        MediaWriter(output_dir=str(tmp_path), preset="warp")
    with pytest.raises(ConfigError, match="'avi' is not allowed"):
        MediaWriter(output_dir=str(tmp_path), container="avi")
    MediaWriter(output_dir=str(tmp_path), video_codec="mpeg4", preset=None, container="mkv").release()


def test_other_codecs_and_containers(videos_dir, tmp_path):
    _, failed = anonymize(videos_dir / AUDIO_FIRST, tmp_path, video_codec="mpeg4", container="mkv")
    assert failed == []
    facts = probe(tmp_path / "peekingduck_humans_mot_nofaces.mkv")
    assert facts["frames"] == 24 and facts["audio_codecs"] == ["aac"]
    with av.open(str(tmp_path / "peekingduck_humans_mot_nofaces.mkv")) as container:
        assert container.streams.video[0].codec_context.name == "mpeg4"


# --------------------------------------------------------------------------- progress


PROGRESS_RUN = [sys.executable, "-m", "facepriv", "run", "--log_level", "warning", "--config_path"]


def _progress_config(tmp_path: Path, videos_dir: Path) -> str:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    for name in ("one.mp4", "two.mp4"):
        if not (folder / name).exists():
            shutil.copy(videos_dir / AUDIO_FIRST, folder / name)
    config = tmp_path / "run.yml"
    config.write_text(
        f"nodes:\n- input.visual:\n    source: {folder}\n- output.media_writer:\n"
        f"    output_dir: {tmp_path / 'out'}\n    overwrite: true\n"
    )
    return str(config)


def test_no_progress_bar_when_output_is_piped(videos_dir, tmp_path):
    result = subprocess.run(PROGRESS_RUN + [_progress_config(tmp_path, videos_dir)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""


def test_progress_bars_on_a_terminal_and_never_on_stdout(videos_dir, tmp_path):
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a 120-column terminal
    try:
        process = subprocess.Popen(PROGRESS_RUN + [_progress_config(tmp_path, videos_dir)],
                                   stdout=subprocess.PIPE, stderr=secondary, stdin=subprocess.DEVNULL)
        os.close(secondary)
        screen = b""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        stdout = process.stdout.read()
        assert process.wait(timeout=60) == 0, screen.decode(errors="replace")
    finally:
        os.close(primary)
    text = screen.decode(errors="replace")
    assert "files: 100%" in text and "2/2" in text  # the folder bar
    for name in ("one.mp4", "two.mp4"):  # a bar per video, out of the container's frame count
        assert f"{name}:" in text and "/24 [" in text and "frame/s" in text
    assert stdout == b""
