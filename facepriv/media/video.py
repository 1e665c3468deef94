"""Reading video files through FFmpeg's libraries (PyAV).

Why not OpenCV's VideoCapture: it hides each frame's presentation time (variable frame
rate is lost), ignores the display rotation of phone videos (faces arrive sideways and
are missed), cannot tell a truncated file from its end, and gives no access to the
audio that the writer must copy. PyAV gives all of that, and with a reused colour
converter and frame-threaded decoding it reads faster than VideoCapture.

Privacy rule: a frame that did not decode cleanly is never handed on. Once a frame has
been shown, a damaged or truncated packet ends the file with :class:`DamagedVideo`; the
caller reports it and writers discard what they wrote for that file. Before the first
clean frame, undecodable packets are skipped (a recording cut in the middle of a group
of pictures starts like that).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from facepriv.errors import MediaError
from facepriv.media.reading import DEFAULT_MAX_MEGAPIXELS, pixel_limit_reason

MAX_SOURCE_FPS = 240.0  # containers sometimes report nonsense such as 90000
JPEG_RANGE = 2  # AVCOL_RANGE_JPEG: full-range YUV


def load_av() -> Any:
    """Import PyAV, after OpenCV.

    PyAV's wheels bundle their own libxcb; loaded first, it makes OpenCV's Qt windows
    (output.screen) hang forever (PyAV issues #978, #1050). OpenCV first is safe.
    """
    import cv2  # noqa: F401, I001  (this order on purpose: no import sorting here)
    import av

    return av


class DamagedVideo(Exception):
    """The file stopped decoding cleanly part-way through (truncated or corrupt)."""


class UnreadableVideo(MediaError):
    """The file does not open as a video; ``reason`` says why without naming the file."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot read video '{path}': {reason}")
        self.reason = reason


@dataclass
class DecodedFrame:
    image: np.ndarray  # H x W x 3 BGR uint8, rotated upright
    pts: int | None
    duration: int | None


def _rotate_code(rotation: int) -> int | None:
    """The cv2.rotate code that shows a frame as its display matrix asks.

    PyAV reports the counter-clockwise angle of the display matrix (a phone held
    upright usually records -90: turn the stored frame 90 degrees clockwise).
    """
    import cv2

    angle = round(rotation / 90) * 90 % 360
    return {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180,
            270: cv2.ROTATE_90_CLOCKWISE}.get(angle)


class VideoReader:
    """One video file: its facts (fps, frame count, time base) and its decoded frames."""

    def __init__(self, path: Path, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> None:
        """Opens the file and checks its frame size before anything is decoded: the decoder
        allocates its frames from the size the stream declares."""
        av = load_av()
        self.path = path
        self.max_megapixels = max_megapixels
        try:
            # max_pixels: FFmpeg's own probe and decoder refuse larger frames before allocating them.
            self._container = av.open(str(path), mode="r", metadata_errors="ignore",
                                      options={"max_pixels": str(int(max_megapixels * 1e6))})
        except (av.error.FFmpegError, OSError, UnicodeDecodeError):
            raise UnreadableVideo(path, "the file is damaged or its codec is unsupported") from None
        self.stream = main_video_stream(self._container)
        if self.stream is None:
            self._container.close()
            raise UnreadableVideo(path, "it holds no video stream (audio only?)")
        context = self.stream.codec_context
        too_large = pixel_limit_reason(context.width or 0, context.height or 0, max_megapixels,
                                       "its frames are")
        if too_large is not None:
            self._container.close()
            raise UnreadableVideo(path, too_large)
        context.options = {"max_pixels": str(int(max_megapixels * 1e6))}  # a size change part-way
        self.stream.thread_type = "AUTO"  # frame threads: decoding is no bottleneck
        self.time_base: Fraction = self.stream.time_base or Fraction(1, 90000)
        rate = self.stream.average_rate or self.stream.guessed_rate or self.stream.base_rate
        self.fps = float(rate) if rate and 0 < float(rate) <= MAX_SOURCE_FPS else 0.0
        self.frame_count = max(int(self.stream.frames or 0), 0)
        sar = self.stream.sample_aspect_ratio
        self.sample_aspect_ratio = Fraction(sar) if sar and sar.numerator > 0 else None
        self._converter: Any = None

    def frames(self) -> Iterator[DecodedFrame]:
        """Decoded frames in display order; raises DamagedVideo where the file breaks."""
        av = load_av()
        self._converter = av.video.reformatter.VideoReformatter()  # one swscale context per file
        step = self._frame_step()
        last_pts: int | None = None
        count = 0
        try:
            for packet in self._container.demux(self.stream):
                if packet.is_corrupt:
                    raise DamagedVideo(self._where(packet.pts, count, "is truncated or damaged"))
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError as err:
                    context = self.stream.codec_context  # max_pixels refuses a size change part-way
                    too_large = self._grown_too_large(context.width, context.height)
                    if too_large is not None:
                        raise DamagedVideo(self._where(packet.pts, count, too_large)) from None
                    if count == 0:  # a recording cut mid-GOP: nothing shown yet, wait for a key frame
                        continue
                    reason = f"does not decode ({_reason(err)})"
                    raise DamagedVideo(self._where(packet.pts, count, reason)) from None
                for frame in decoded:
                    too_large = self._grown_too_large(frame.width, frame.height)
                    if too_large is not None:  # a stream may change size part-way
                        raise DamagedVideo(self._where(frame.pts, count, too_large))
                    if frame.is_corrupt:
                        if count == 0:
                            continue
                        raise DamagedVideo(self._where(frame.pts, count, "has a corrupt frame"))
                    pts = frame.pts
                    if pts is None:  # some AVI and raw streams: continue the last timestamp
                        pts = 0 if last_pts is None else last_pts + step
                    last_pts = pts
                    count += 1
                    yield DecodedFrame(self._to_bgr(frame), pts, frame.duration or None)
        except av.error.FFmpegError as err:  # demuxing failed: a read error or broken container
            raise DamagedVideo(self._where(last_pts, count, f"cannot be read on ({_reason(err)})")) from None
        if count == 0:
            raise DamagedVideo("no frame could be decoded")

    def _grown_too_large(self, width: int | None, height: int | None) -> str | None:
        return pixel_limit_reason(width or 0, height or 0, self.max_megapixels, "changes to frames of")

    def _to_bgr(self, frame: Any) -> np.ndarray:
        # The writer converts back with OpenCV's BT.601 BGR->I420. Converting 8-bit 4:2:0
        # with its exact inverse keeps the YUV values of unmasked pixels through the round
        # trip, and the output carries the source's colour tags: it displays as the input
        # did. Other layouts (full range, 10 bit, 4:2:2 ...) go through swscale.
        import cv2

        if frame.format.name == "yuv420p" and frame.color_range != JPEG_RANGE and not (
            frame.width % 2 or frame.height % 2
        ):
            image = cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2BGR_I420)
        else:
            image = np.ascontiguousarray(self._converter.reformat(
                frame, format="bgr24", src_colorspace="ITU601", src_color_range=frame.color_range,
            ).to_ndarray())
        code = _rotate_code(frame.rotation) if frame.rotation else None
        return image if code is None else cv2.rotate(image, code)

    def _frame_step(self) -> int:
        if self.fps:
            return max(1, round(1 / (self.fps * self.time_base)))
        return 1

    def _where(self, pts: int | None, count: int, what: str) -> str:
        at = f"at {float(pts * self.time_base):.2f} s, " if pts is not None else ""
        total = f" of {self.frame_count}" if self.frame_count else ""
        return f"the video {what} ({at}after frame {count}{total})"

    def color_tags(self) -> dict[str, Any]:
        """The source's colour description, for the writer to copy."""
        context = self.stream.codec_context
        return {
            name: getattr(context, name)
            for name in ("colorspace", "color_primaries", "color_trc")
            if getattr(context, name, None) is not None
        }

    def close(self) -> None:
        self._container.close()


def main_video_stream(container: Any) -> Any:
    """The largest video stream, wherever it is (video is not always stream 0), or None."""
    streams = container.streams.video
    if not streams:
        return None
    return max(streams, key=lambda s: (s.codec_context.width or 0) * (s.codec_context.height or 0))


def _reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err)


def probe_video(path: Path, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> None:
    """Fail before the first frame if a single video source cannot be opened."""
    VideoReader(path, max_megapixels).close()
