"""input.visual: frames from a webcam, image, video, folder or stream.

Everything that can be checked before the first frame is (the source exists, a single
image decodes, a video or camera opens). Inside a folder, a file that cannot be read
is logged, skipped and counted, and the run goes on.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facepriv import media
from facepriv.errors import ConfigError, MediaError
from facepriv.node import AbstractNode

MAX_SOURCE_FPS = 240.0  # containers sometimes report nonsense such as 90000


@dataclass
class Frame:
    image: np.ndarray
    filename: str
    fps: float


class Node(AbstractNode):
    """Reads frames one per tick; sets ``pipeline_end`` when the source is exhausted."""

    def __init__(self, config: dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._capture: Any = None
        self._is_live = False
        self._items = self._resolve_source(self.source)
        self._last = ("", float(self.saved_video_fps))
        frames = self._frames()
        self._reader = _ThreadedReader(frames, self._is_live, self.buffering) if self.threading else None
        self._frames_iter = self._reader if self._reader else frames

    # ------------------------------------------------------------------ source checks
    def _resolve_source(self, source: int | str) -> list[Path]:
        if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
            self._is_live = True
            self._open_capture(int(source), f"webcam {source}")
            return []
        if media.is_stream_url(source):
            self._is_live = True
            self._open_capture(source, f"stream {source}")
            return []
        path = Path(source).expanduser()
        if not path.exists():
            raise ConfigError(
                f"input.visual.source '{source}' does not exist: give an existing image, "
                "video or folder, a webcam index such as 0, or an http/rtsp URL"
            )
        if path.is_dir():
            items = media.list_media(path)
            if not items:
                raise MediaError(
                    f"folder '{path}' holds no images or videos: supported are "
                    f"{', '.join(media.IMAGE_EXTENSIONS + media.VIDEO_EXTENSIONS)}"
                )
            self._root = path
            return items
        if not (media.is_image(path) or media.is_video(path)):
            raise MediaError(
                f"'{path}' is not a supported image or video: use one of "
                f"{', '.join(media.IMAGE_EXTENSIONS + media.VIDEO_EXTENSIONS)}"
            )
        if media.is_image(path) and media.read_image(path) is None:
            raise MediaError(f"cannot read image '{path}': the file is damaged or not an image")
        if media.is_video(path):
            capture = _open_video(path)
            if capture is None:
                raise MediaError(
                    f"cannot read video '{path}': the file is damaged or its codec is unsupported"
                )
            capture.release()
        self._root = path.parent
        return [path]

    def _open_capture(self, target: int | str, label: str) -> None:
        import cv2

        capture = cv2.VideoCapture(target)
        if not capture.isOpened():
            capture.release()
            raise MediaError(
                f"cannot open {label}: check that it is connected and not used by another "
                "program, or set input.visual.source to a file or folder"
            )
        self._capture = capture

    # ------------------------------------------------------------------ frame sources
    def _frames(self) -> Iterator[Frame]:
        if self._capture is not None:
            yield from self._live_frames()
            return
        for path in self._items:
            name = path.relative_to(self._root).as_posix()
            if media.is_image(path):
                image = media.read_image(path)
                if image is None:
                    self._skip(path, "the file is damaged or not an image")
                    continue
                yield Frame(image, name, float(self.saved_video_fps))
            else:
                yield from self._video_frames(path, name)

    def _live_frames(self) -> Iterator[Frame]:
        import cv2

        kind = "stream" if isinstance(self.source, str) and not self.source.isdigit() else "webcam"
        name = f"{kind}_{time.strftime('%Y%m%d-%H%M%S')}.mp4"
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        fps = fps if 0 < fps <= MAX_SOURCE_FPS else float(self.saved_video_fps)
        while True:
            ok, image = self._capture.read()
            if not ok:
                return
            yield Frame(image, name, fps)

    def _video_frames(self, path: Path, name: str) -> Iterator[Frame]:
        import cv2

        capture = _open_video(path)
        if capture is None:
            self._skip(path, "the file is damaged or its codec is unsupported")
            return
        try:
            fps = capture.get(cv2.CAP_PROP_FPS)
            fps = fps if 0 < fps <= MAX_SOURCE_FPS else float(self.saved_video_fps)
            total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            count = 0
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                count += 1
                if self.frames_log_freq and count % self.frames_log_freq == 0:
                    done = f" of {total} ({100 * count // total}%)" if total > 0 else ""
                    self.logger.info("%s: %d frames read%s", name, count, done)
                yield Frame(image, name, fps)
            if count == 0:
                self._skip(path, "no frame could be decoded")
        finally:
            capture.release()

    def _skip(self, path: Path, reason: str) -> None:
        self.logger.error("skipping '%s': %s", path, reason)
        self.failed_items.append(f"{path}: {reason}")

    # ------------------------------------------------------------------ node contract
    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        frame = next(self._frames_iter, None)
        if frame is None:
            filename, fps = self._last
            return {"img": None, "filename": filename, "pipeline_end": True, "saved_video_fps": fps}
        image = media.to_bgr(frame.image)
        if self.resize["do_resizing"]:
            import cv2

            image = cv2.resize(image, (self.resize["width"], self.resize["height"]))
        if self.mirror_image:
            image = np.ascontiguousarray(image[:, ::-1])
        self._last = (frame.filename, frame.fps)
        return {
            "img": image,
            "filename": frame.filename,
            "pipeline_end": False,
            "saved_video_fps": frame.fps,
        }

    def release(self, completed: bool = True) -> None:
        if self._reader is not None:
            self._reader.stop()
        if self._capture is not None:
            self._capture.release()
            self._capture = None


def _open_video(path: Path) -> Any:
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        return None
    return capture


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
