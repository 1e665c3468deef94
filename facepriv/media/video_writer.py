"""Writing videos through FFmpeg's libraries (PyAV): timing kept, audio copied, metadata dropped.

Each frame is encoded with the presentation time it had in the source, so variable
frame rate survives and the output lasts as long as the input. The source's audio
packets are copied unchanged (same bytes, same timestamps), interleaved by time with
the video. Container and stream metadata (location, device, dates) are dropped unless
``keep_metadata``.

Encoding runs in a background thread by default: ``write`` converts the frame to YUV (a
private copy, so the caller may change its frame afterwards) and queues it; one thread
encodes and muxes the frames in order while the pipeline works on the next ones (x264
and PyAV release the GIL). An encoding error is raised by the next ``write`` or by
``finish``, so a failed file is never finished as if complete.
"""

from __future__ import annotations

import functools
import io
import logging
import queue
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from facepriv.errors import ConfigError
from facepriv.media.video import load_av, main_video_stream

logger = logging.getLogger("facepriv.video")

# setting -> (FFmpeg muxer, file suffix); each holds H.264/H.265/MPEG-4 video and AAC audio
CONTAINERS = {"mp4": ("mp4", ".mp4"), "mov": ("mov", ".mov"), "mkv": ("matroska", ".mkv")}
MUXER_KEYS = {"major_brand", "minor_version", "compatible_brands", "encoder"}  # set by the muxer itself
LOCATION_WORD = "location"  # location, location-eng, com.apple.quicktime.location.ISO6709: never kept
AUDIO_LEAD = 0.5  # seconds of audio muxed ahead of the video, so the file interleaves well
FALLBACK_AUDIO_CODEC = "aac"
# Audio codecs players take from MP4/MOV. The muxer accepts more (Vorbis, say), but such a
# file plays silent or not at all; those streams are re-encoded like any the muxer refuses.
PLAYABLE_AUDIO = {
    "mp4": {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"},
    "mov": {"aac", "mp3", "alac", "ac3", "eac3"},  # and uncompressed PCM
}
QUEUED_FRAMES = 4  # frames waiting for the encoding thread; bounds memory and latency
MPEG_RANGE = 1  # AVCOL_RANGE_MPEG: OpenCV's BGR->I420 gives limited-range YUV


def output_name(name: str, video: bool, settings: dict[str, Any]) -> str:
    """The name output.media_writer gives input ``name`` below output_dir: an image keeps it,
    a video takes the container's suffix. The writer and a job's plan share this rule."""
    if not video:
        return name
    return PurePosixPath(name).with_suffix(CONTAINERS[settings["container"]][1]).as_posix()


@dataclass(frozen=True)
class EncoderSettings:
    """How output.media_writer encodes video (see media_writer.yml)."""

    video_codec: str = "libx264"
    crf: int = 18
    preset: str | None = "veryfast"
    container: str = "mp4"
    keep_metadata: bool = False

    @property
    def suffix(self) -> str:
        return CONTAINERS[self.container][1]

    @property
    def format_name(self) -> str:
        return CONTAINERS[self.container][0]


@functools.lru_cache(maxsize=16)  # settings that encoded once do again: a batch worker checks per file
def check_settings(settings: EncoderSettings) -> None:
    """Encode one tiny frame in memory, so a bad codec, preset or container fails before the first frame."""
    av = load_av()
    try:
        with av.open(io.BytesIO(), "w", format=settings.format_name) as trial:
            stream = _add_video_stream(trial, settings, 64, 64, Fraction(1, 25), 25.0)
            frame = av.VideoFrame.from_ndarray(np.zeros((96, 64), np.uint8), format="yuv420p")
            frame.pts, frame.time_base = 0, Fraction(1, 25)
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                trial.mux(packet)
    except (ValueError, av.error.FFmpegError) as err:
        raise ConfigError(
            f"output.media_writer cannot encode video_codec '{settings.video_codec}' "
            f"(crf {settings.crf}, preset {settings.preset!r}) into a {settings.container} file "
            f"({_reason(err)}): use video_codec libx264 (default), libx265 or mpeg4, and a preset "
            "such as veryfast, or preset: null"
        ) from None


def _add_video_stream(
    out: Any, settings: EncoderSettings, width: int, height: int, time_base: Fraction, fps: float
) -> Any:
    av = load_av()
    codec = av.codec.Codec(settings.video_codec, "w")  # UnknownCodecError is a ValueError
    if codec.type != "video":
        raise ValueError(f"'{settings.video_codec}' is not a video encoder")
    rate = Fraction(fps).limit_denominator(1001) if fps > 0 else None
    stream = out.add_stream(settings.video_codec, rate=rate)
    stream.width, stream.height = width, height
    formats = [fmt.name for fmt in codec.video_formats or []]
    stream.pix_fmt = "yuv420p" if not formats or "yuv420p" in formats else formats[0]
    stream.time_base = time_base
    stream.codec_context.time_base = time_base
    stream.codec_context.thread_type = "AUTO"  # x264 then uses frame threads, not slices
    stream.codec_context.thread_count = 0
    names = {option.name for option in stream.codec_context.supported_options.private}
    options = {}
    if "crf" in names:
        options["crf"] = str(settings.crf)
    else:  # encoders without CRF (mpeg4, mjpeg ...): the nearest fixed quantiser
        quantiser = max(2, min(31, round(settings.crf / 6)))
        stream.codec_context.qmin = stream.codec_context.qmax = quantiser
    if settings.preset and "preset" in names:
        options["preset"] = settings.preset
    stream.options = options
    return stream


class VideoWriter:
    """One output video file. ``write`` every frame, then ``finish`` (or ``abort``)."""

    def __init__(
        self,
        path: Path,
        settings: EncoderSettings,
        size: tuple[int, int],
        *,
        time_base: Fraction,
        fps: float,
        source: Path | None = None,
        color_tags: dict[str, Any] | None = None,
        sample_aspect_ratio: Fraction | None = None,
        background: bool = True,
        label: str | None = None,
    ) -> None:
        """``label`` names the file in messages (the final name, not the hidden temporary one)."""
        av = load_av()
        label = label or path.name
        width, height = size
        self.size = (width + width % 2, height + height % 2)  # 4:2:0 needs even sides
        if self.size != size:
            logger.warning("%s: %dx%d frames are padded to %dx%d (H.264 4:2:0 needs even sides)",
                           label, width, height, *self.size)
        options = {"movflags": "+faststart"} if settings.container in ("mp4", "mov") else {}
        self._path = path
        self._failure: BaseException | None = None  # raised by the encoding thread
        self._discard = False  # abort: the thread drops what is still queued
        self._queue: queue.Queue[tuple[np.ndarray, int, int | None] | None] = queue.Queue(QUEUED_FRAMES)
        self._thread: threading.Thread | None = None
        self._out = av.open(str(path), "w", format=settings.format_name, options=options)
        self._source: Any = None
        try:
            self._source = av.open(str(source), metadata_errors="ignore") if source else None
            if settings.keep_metadata and self._source is not None:
                self._out.metadata.update(_safe_tags(self._source.metadata, MUXER_KEYS))
            self._video = _add_video_stream(self._out, settings, *self.size, time_base, fps)
            if settings.keep_metadata and self._source is not None:
                original = main_video_stream(self._source)
                self._video.metadata.update(_safe_tags(original.metadata) if original is not None else {})
            context = self._video.codec_context
            for name, value in (color_tags or {}).items():
                setattr(context, name, value)
            context.color_range = MPEG_RANGE
            if sample_aspect_ratio and sample_aspect_ratio != 1:
                context.sample_aspect_ratio = sample_aspect_ratio
            self._audio = _AudioCopy(self._source, self._out, settings) if self._source else None
            self._out.start_encoding()
        except BaseException:
            self.abort()
            raise
        self._time_base = time_base
        self._step = max(1, round(1 / (fps * time_base))) if fps > 0 else 1
        self._last_pts: int | None = None
        self.frames = 0
        if background:
            self._thread = threading.Thread(
                target=self._encode_queued, name=f"encode {label}", daemon=True
            )
            self._thread.start()

    def write(self, image: np.ndarray, pts: int | None = None, duration: int | None = None) -> None:
        """Encode one BGR frame shown at ``pts`` (time-base units) for ``duration``."""
        import cv2

        self._raise_failure()
        if pts is None:
            pts = 0 if self._last_pts is None else self._last_pts + self._step
        elif self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # the encoder needs strictly increasing times
        width, height = self.size
        if image.shape[1] != width or image.shape[0] != height:
            image = _fit(image, width, height)
        item = (cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), pts, duration)
        self._last_pts = pts
        self._end = pts + (duration or self._step)
        self.frames += 1
        if self._thread is None:
            self._encode(*item)
            return
        while True:  # never wait forever on a thread that has stopped
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                self._raise_failure()

    def _encode(self, yuv: np.ndarray, pts: int, duration: int | None) -> None:
        av = load_av()
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts, frame.time_base = pts, self._time_base
        if duration:
            frame.duration = duration
        self._out.mux(self._video.encode(frame))
        if self._audio is not None:
            self._audio.copy_until(float(pts * self._time_base) + AUDIO_LEAD)

    def _encode_queued(self) -> None:
        """The encoding thread: queued frames in order until None; after a failure, or
        when aborting, it only empties the queue."""
        while (item := self._queue.get()) is not None:
            if self._failure is None and not self._discard:
                try:
                    self._encode(*item)
                except BaseException as err:  # noqa: BLE001 - handed to the writing thread
                    self._failure = err

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _drain(self) -> None:
        """Wait until the encoding thread has handled every queued frame, and stop it."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def finish(self, whole_audio: bool = True) -> None:
        """Flush the encoder, copy the remaining audio and close the file.

        ``whole_audio`` False (the run stopped early) copies audio only up to the end
        of the last frame written.
        """
        try:
            self._drain()
            self._raise_failure()
            self._out.mux(self._video.encode(None))
            if self._audio is not None:
                end = None if whole_audio or self._last_pts is None else float(self._end * self._time_base)
                self._audio.copy_until(end)
                self._audio.flush()
        finally:
            self._close()

    def abort(self) -> None:
        """Close and delete the file, fast: no encoder flush, no trailer worth the name.

        Unlinking first makes MP4's faststart pass (a rewrite of the whole file) fail at
        once instead of delaying a Ctrl-C by as long as the file is large.
        """
        self._path.unlink(missing_ok=True)
        self._discard = True
        try:
            self._drain()
            self._close()
        except Exception:  # the file is thrown away anyway
            logger.debug("closing an aborted video failed", exc_info=True)

    def _close(self) -> None:
        try:
            self._out.close()
        finally:
            if self._source is not None:
                self._source.close()


def _safe_tags(tags: Any, also_dropped: set[str] | frozenset[str] = frozenset()) -> dict[str, str]:
    """Tags worth keeping with keep_metadata: never a location, nor what the muxer writes itself."""
    return {key: value for key, value in dict(tags).items()
            if key not in also_dropped and LOCATION_WORD not in key.lower()}


def _fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pad an odd-sided frame by one pixel, or resize a frame whose size changed mid-file."""
    import cv2

    h, w = image.shape[:2]
    if (width - w, height - h) in ((0, 0), (1, 0), (0, 1), (1, 1)):
        return cv2.copyMakeBorder(image, 0, height - h, 0, width - w, cv2.BORDER_REPLICATE)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


class _AudioCopy:
    """The source's audio streams, packet by packet, into the output.

    Packets are copied unchanged when the container can hold the codec; otherwise
    (say ADPCM from an AVI into MP4) that stream is re-encoded to AAC, with a warning.
    """

    def __init__(self, source: Any, out: Any, settings: EncoderSettings) -> None:
        self._targets: dict[int, Any] = {}
        self._transcode: set[int] = set()
        self._pending: Any = None
        self._packets: Any = None
        streams = list(source.streams.audio)
        for stream in streams:
            if _can_copy(stream, settings):
                target = out.add_stream_from_template(stream)
            else:
                logger.warning(
                    "%s: its %s audio does not play from a %s file; it is re-encoded to AAC "
                    "(set output.media_writer.container: mkv to keep it unchanged)",
                    Path(source.name).name, stream.codec_context.name, settings.container,
                )
                target = out.add_stream(FALLBACK_AUDIO_CODEC, rate=stream.codec_context.sample_rate or 48000)
                self._transcode.add(stream.index)
            metadata = _safe_tags(stream.metadata) if settings.keep_metadata else {}
            if stream.language:
                metadata["language"] = stream.language
            target.metadata.clear()
            target.metadata.update(metadata)
            self._targets[stream.index] = target
        if streams:
            self._packets = iter(source.demux(*streams))

    def copy_until(self, seconds: float | None) -> None:
        """Mux every audio packet that starts before ``seconds`` (None: all that is left)."""
        av = load_av()
        while self._packets is not None:
            packet = self._pending
            if packet is None:
                try:
                    packet = next(self._packets, None)
                except av.error.FFmpegError as err:
                    logger.warning("the audio stops early: the source cannot be read on (%s)", _reason(err))
                    packet = None
                if packet is None:
                    self._packets = None
                    return
            when = packet.pts if packet.pts is not None else packet.dts
            if seconds is not None and when is not None and float(when * packet.time_base) > seconds:
                self._pending = packet
                return
            self._pending = None
            self._mux(packet)

    def _mux(self, packet: Any) -> None:
        index = packet.stream.index
        target = self._targets[index]
        if index in self._transcode:
            for frame in packet.decode():
                target.container.mux(target.encode(frame))
        elif packet.size:  # empty packets only flush decoders
            packet.stream = target
            target.container.mux(packet)

    def flush(self) -> None:
        for index in self._transcode:
            target = self._targets[index]
            target.container.mux(target.encode(None))


def _can_copy(stream: Any, settings: EncoderSettings) -> bool:
    av = load_av()
    codec = stream.codec_context.name
    playable = PLAYABLE_AUDIO.get(settings.container)
    if playable is not None and codec not in playable and not (settings.container == "mov"
                                                               and codec.startswith("pcm_")):
        return False
    format_name = settings.format_name
    try:
        with av.open(io.BytesIO(), "w", format=format_name) as trial:
            trial.add_stream_from_template(stream)
            trial.start_encoding()
    except (ValueError, av.error.FFmpegError):
        return False
    return True


def _reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err)
