"""output.media_writer: anonymised images and videos, written atomically.

An image is written in the input's format; frames of a video go into one video file
per input (an .mp4 for webcams and streams). Each output is written to a temporary file
and renamed when complete, and an existing output is refused unless ``overwrite``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facepriv import media
from facepriv.errors import MediaError
from facepriv.node import AbstractNode
from facepriv.outputs import AtomicOutput, ensure_writable_dir

FOURCC_BY_SUFFIX = {".avi": "MJPG", ".mkv": "mp4v", ".mov": "mp4v"}
VIDEO_FALLBACK_SUFFIX = ".mp4"


class Node(AbstractNode):
    """Writes each frame it receives; closes a video when its filename changes or at the end."""

    def __init__(self, config: dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._dir = ensure_writable_dir(Path(self.output_dir), "output.media_writer.output_dir")
        self._video: cv2.VideoWriter | None = None
        self._video_output: AtomicOutput | None = None
        self._video_name: str | None = None
        self.written: list[Path] = []

    def _output_path(self, filename: str) -> Path:
        path = self._dir / filename
        if media.is_video(path) and path.suffix.lower() not in (".mp4", *FOURCC_BY_SUFFIX):
            path = path.with_suffix(VIDEO_FALLBACK_SUFFIX)
        if path.exists() and not self.overwrite:
            raise MediaError(
                f"output '{path}' already exists: delete it, choose another output_dir, "
                "or set output.media_writer.overwrite: true"
            )
        return path

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        filename = inputs.get("filename") or "output.mp4"
        if inputs.get("pipeline_end"):
            self._close_video(commit=True)
            return {}
        image = inputs["img"]
        if media.is_image(filename):
            self._close_video(commit=True)
            self._write_image(self._output_path(filename), image)
        else:
            if filename != self._video_name:
                self._close_video(commit=True)
                self._open_video(filename, image, float(inputs.get("saved_video_fps") or 10))
            self._video.write(image)
        return {}

    def _write_image(self, path: Path, image: np.ndarray) -> None:
        output = AtomicOutput(path)
        try:
            ok, data = cv2.imencode(path.suffix, image)
            if not ok:
                raise MediaError(f"cannot encode '{path.name}' as {path.suffix}")
            output.temp_path.write_bytes(data.tobytes())
            self.written.append(output.commit())
        except BaseException:
            output.discard()
            raise

    def _open_video(self, filename: str, image: np.ndarray, fps: float) -> None:
        path = self._output_path(filename)
        fourcc = FOURCC_BY_SUFFIX.get(path.suffix.lower(), "mp4v")
        output = AtomicOutput(path)
        writer = cv2.VideoWriter(
            str(output.temp_path), cv2.VideoWriter_fourcc(*fourcc), fps,
            (image.shape[1], image.shape[0]),
        )
        if not writer.isOpened():
            output.discard()
            raise MediaError(f"cannot open a video writer for '{path}' ({fourcc} at {fps} fps)")
        self._video, self._video_output, self._video_name = writer, output, filename

    def _close_video(self, commit: bool) -> None:
        if self._video is None:
            return
        self._video.release()
        if commit:
            self.written.append(self._video_output.commit())
            self.logger.info("wrote %s", self._video_output.final_path)
        else:
            self._video_output.discard()
        self._video = self._video_output = self._video_name = None

    def release(self, completed: bool = True) -> None:
        self._close_video(commit=completed)
