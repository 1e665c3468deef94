"""input.visual: frames from a webcam, image, video, folder, glob, list of paths or stream.

Everything that can be checked before the first frame is (the source exists, a single
image decodes, a single video opens, a camera opens). When the source names several
files, one that cannot be read is logged, skipped and counted, and the run goes on.
Video files are decoded with PyAV (see ``facepriv.media.video``): each frame keeps its
presentation time and is turned upright, and a damaged file never lets a half-decoded
frame out.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from facepriv.errors import MediaError
from facepriv.media import reading
from facepriv.media.reading import FrameInfo, MediaItem
from facepriv.media.video import MAX_SOURCE_FPS, DamagedVideo, UnreadableVideo, VideoReader, probe_video
from facepriv.node import AbstractNode

LIVE_TIME_BASE = Fraction(1, 1000)  # webcam frames are stamped in measured milliseconds
NO_FIRST_FRAME = {
    "webcam": "it opened but gave no frame: check that no other program uses it",
    "stream": (
        "it opened but gave no frame. An MP4 file whose index is at its end (not 'faststart') "
        "can only be read from a server that answers range requests: download the file and give "
        "its path as input.visual.source, or re-export it with faststart"
    ),
}


@dataclass
class Frame:
    image: np.ndarray
    info: FrameInfo


class Node(AbstractNode):
    """Reads frames one per tick; sets ``pipeline_end`` when the source is exhausted."""

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        *,
        items: list[tuple[Path, str]] | None = None,
        single: bool = False,
        **overrides: Any,
    ) -> None:
        """``items``, (file, output name) pairs, replace what ``source`` expands to: a batch
        worker (``facepriv.batch``) reads one file of a folder under its name in the folder,
        a serial run that resumes the files not done yet. ``single``: the source names that
        one file, whose problems are then errors before the first frame."""
        super().__init__(config, **overrides)
        self._capture: Any = None
        self._first_frame: tuple[np.ndarray, float] | None = None
        self._live_name = ""
        if items is None:
            self._items = self._resolve_source(self.source)
        else:
            self._items = list(items)
            if single and self._items:
                self._check_single_file(self._items[0][0])
        self._last = ("", float(self.saved_video_fps))
        self._bars: list[Any] = []
        frames = self._frames()
        live = self._capture is not None
        self._reader = _ThreadedReader(frames, live, self.buffering) if self.threading else None
        self._frames_iter: Iterator[Frame] = self._reader if self._reader else frames

    # ------------------------------------------------------------------ source checks
    def _resolve_source(self, source: int | str | list[str]) -> list[tuple[Path, str]]:
        if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
            self._open_capture(int(source), f"webcam {source}", "webcam")
            return []
        if isinstance(source, str) and reading.is_stream_url(source):
            self._open_capture(source, f"stream {source}", "stream")
            return []
        items, single = reading.expand_sources(source, self.recursive)
        if single:
            self._check_single_file(items[0][0])
        return items

    def _check_single_file(self, path: Path) -> None:
        """The only file of the source: its problems are errors, reported before the first frame."""
        if reading.is_image(path) and reading.read_image(path, self.max_megapixels) is None:
            raise MediaError(f"cannot read image '{path}': the file is damaged or not an image")
        if reading.is_video(path):
            probe_video(path, self.max_megapixels)

    def _open_capture(self, target: int | str, label: str, kind: str) -> None:
        import cv2

        capture = cv2.VideoCapture(target)
        if not capture.isOpened():
            capture.release()
            raise MediaError(
                f"cannot open {label}: check that it is connected and not used by another "
                "program, or set input.visual.source to a file or folder"
            )
        size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        too_large = reading.pixel_limit_reason(*size, self.max_megapixels, "its frames are")
        ok, image = (False, None) if too_large else capture.read()
        if not ok:  # a run that reads nothing must not end as if it had succeeded
            capture.release()
            raise MediaError(f"cannot use {label}: {too_large or NO_FIRST_FRAME[kind]}")
        self._first_frame = (image, time.monotonic())
        self._capture = capture
        self._live_name = f"{kind}_{time.strftime('%Y%m%d-%H%M%S')}.mp4"

    # ------------------------------------------------------------------ frame sources
    def _frames(self) -> Iterator[Frame]:
        if self._capture is not None:
            yield from self._live_frames()
            return
        files = reading.progress_bar(len(self._items), "files", "file") if len(self._items) > 1 else None
        if files is not None:
            self._bars.append(files)
        try:
            for path, name in self._items:
                if reading.is_image(path):
                    image, reason = self._read_image(path)
                    if image is None:
                        self._skip(MediaItem(path, name, "image"), reason)
                    else:
                        item = MediaItem(path, name, "image", fps=float(self.saved_video_fps))
                        yield Frame(image, FrameInfo(item, 0))
                else:
                    yield from self._video_frames(path, name, position=1 if files is not None else 0)
                if files is not None:
                    files.update()
        finally:
            if files is not None:
                files.close()

    def _read_image(self, path: Path) -> tuple[np.ndarray | None, str]:
        """The image, or None and why not."""
        try:
            image = reading.read_image(path, self.max_megapixels)
        except reading.ImageRefused as err:
            return None, err.reason
        return image, "the file is damaged or not an image"

    def _live_frames(self) -> Iterator[Frame]:
        import cv2

        fps = self._capture.get(cv2.CAP_PROP_FPS)
        fps = fps if 0 < fps <= MAX_SOURCE_FPS else float(self.saved_video_fps)
        item = MediaItem(None, self._live_name, "live", fps=fps)
        image, started = self._first_frame  # read when the source was checked
        now = started
        index = 0
        while True:
            # Measured capture times: the recording plays at real speed whatever the
            # camera's nominal rate and however slow the pipeline was.
            pts = round((now - started) / LIVE_TIME_BASE)
            yield Frame(image, FrameInfo(item, index, pts, LIVE_TIME_BASE))
            index += 1
            ok, image = self._capture.read()
            if not ok:
                return
            now = time.monotonic()

    def _video_frames(self, path: Path, name: str, position: int) -> Iterator[Frame]:
        try:
            reader = VideoReader(path, self.max_megapixels)
        except UnreadableVideo as err:
            self._skip(MediaItem(path, name, "video"), err.reason)
            return
        item = MediaItem(
            path, name, "video", fps=reader.fps or float(self.saved_video_fps),
            frame_count=reader.frame_count,
            sample_aspect_ratio=None if self.resize["do_resizing"] else reader.sample_aspect_ratio,
            color_tags=reader.color_tags(),
            replay=lambda: self._replay(path),
        )
        bar = reading.progress_bar(reader.frame_count, name, "frame", position=position, leave=position == 0)
        self._bars.append(bar)
        count = 0
        try:
            for decoded in reader.frames():
                count += 1
                bar.update()
                if self.frames_log_freq and count % self.frames_log_freq == 0:
                    total = reader.frame_count
                    done = f" of {total} ({min(100, 100 * count // total)}%)" if total > 0 else ""
                    self.logger.info("%s: %d frames read%s", name, count, done)
                info = FrameInfo(item, count - 1, decoded.pts, reader.time_base, decoded.duration)
                yield Frame(decoded.image, info)
        except DamagedVideo as err:
            written = "; what was written for it is discarded" if count else ""
            self._skip(item, f"{err}{written}: repair or re-export it")
        finally:
            reader.close()
            bar.close()
            self._bars.remove(bar)

    def _replay(self, path: Path) -> Iterator[tuple[int | None, np.ndarray]]:
        reader = VideoReader(path, self.max_megapixels)
        try:
            for decoded in reader.frames():
                yield decoded.pts, self._prepare(decoded.image)
        finally:
            reader.close()

    def _skip(self, item: MediaItem, reason: str) -> None:
        item.failed = reason
        self.logger.error("skipping '%s': %s", item.path, reason)
        self.failed_items.append(f"{item.path}: {reason}")

    # ------------------------------------------------------------------ node contract
    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        frame = next(self._frames_iter, None)
        if frame is None:
            filename, fps = self._last
            return {"img": None, "filename": filename, "pipeline_end": True,
                    "saved_video_fps": fps, "frame_info": None}
        image = self._prepare(frame.image)
        item = frame.info.item
        self._last = (item.name, item.fps)
        return {
            "img": image,
            "filename": item.name,
            "pipeline_end": False,
            "saved_video_fps": item.fps,
            "frame_info": frame.info,
        }

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        image = reading.to_bgr(image)
        if self.resize["do_resizing"]:
            import cv2

            image = cv2.resize(image, (self.resize["width"], self.resize["height"]))
        if self.mirror_image:
            image = np.ascontiguousarray(image[:, ::-1])
        return image

    def release(self, completed: bool = True) -> None:
        if self._reader is not None:
            self._reader.stop()
        else:
            self._frames_iter.close()  # type: ignore[attr-defined]  # closes an open video
        for bar in list(self._bars):
            bar.close()
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class _ThreadedReader:
    """Reads frames in a background thread.

    Live sources without buffering keep only the newest frame (a slow pipeline shows
    the present, not a growing backlog); files and buffered sources lose nothing.
    """

    def __init__(self, frames: Iterator[Frame], live: bool, buffering: bool) -> None:
        self._latest_only = live and not buffering
        self._queue: queue.Queue[Frame | None] = queue.Queue(maxsize=1 if self._latest_only else 64)
        self._stopped = threading.Event()
        self._frames = frames
        self._thread = threading.Thread(target=self._pump, name="facepriv-reader", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            for frame in self._frames:
                if self._stopped.is_set():
                    return
                self._put(frame)
        finally:
            self._frames.close()  # type: ignore[attr-defined]  # runs the generator's cleanup here
            self._put(None)

    def _put(self, item: Frame | None) -> None:
        while not self._stopped.is_set():
            if self._latest_only and item is not None:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    pass
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> _ThreadedReader:
        return self

    def __next__(self) -> Frame:
        item = self._queue.get()
        if item is None:
            self._queue.put(None)  # stay exhausted on later calls
            raise StopIteration
        return item

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=2)
