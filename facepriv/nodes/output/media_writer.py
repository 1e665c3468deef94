"""output.media_writer: anonymised images and videos, written atomically.

An image is written in the input's format, without metadata unless ``keep_metadata``.
A video is encoded through PyAV (``facepriv.media.video_writer``): each frame keeps its
source timestamp and the source's audio is copied unchanged. Outputs mirror the
input's path below the source folder, are written to a temporary file renamed when
complete, never replace their input, and replace an existing output only if
``overwrite``. A video whose input turned out damaged part-way is discarded.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facepriv.errors import MediaError
from facepriv.media import reading
from facepriv.media.image_metadata import encode_image
from facepriv.media.outputs import (
    AtomicOutput,
    UnwritableName,
    check_replaceable,
    ensure_writable_dir,
    inside_output_dir,
    name_errors,
    write_errors_reported,
)
from facepriv.media.reading import FrameInfo, MediaItem
from facepriv.media.video import load_av
from facepriv.media.video_writer import EncoderSettings, VideoWriter, check_settings, output_name
from facepriv.node import AbstractNode

if TYPE_CHECKING:
    from facepriv.batch.serial import SerialJournal


@dataclass
class _OpenVideo:
    key: Any  # the MediaItem (or, without frame_info, the filename) being written
    item: MediaItem | None
    output: AtomicOutput
    writer: VideoWriter


class Node(AbstractNode):
    """Writes each frame it receives; closes a video when its input changes or at the end."""

    def __init__(
        self, config: dict[str, Any] | None = None, *, journal: SerialJournal | None = None, **overrides: Any
    ) -> None:
        """``journal``: a serial run's manifest (``facepriv.batch.serial``), told of each output."""
        super().__init__(config, **overrides)
        self._journal = journal
        self._dir = ensure_writable_dir(Path(self.output_dir), "output.media_writer.output_dir")
        self._settings = EncoderSettings(
            self.video_codec, self.crf, self.preset, self.container, self.keep_metadata
        )
        check_settings(self._settings)
        self._video: _OpenVideo | None = None
        self._failed_key: Any = None  # the input whose output could not be created: its frames are dropped
        self.written: list[Path] = []

    # ------------------------------------------------------------------ node contract
    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        if inputs.get("pipeline_end"):
            self._close_video(finished=True)
            return {}
        image: np.ndarray = inputs["img"]
        info: FrameInfo | None = inputs.get("frame_info")
        filename = info.item.name if info else (inputs.get("filename") or "output.mp4")
        is_image = info.item.kind == "image" if info else reading.is_image(filename)
        source = info.item.path if info else None
        if is_image:
            self._close_video(finished=True)
            try:
                self._write_image(filename, image, source)
            except UnwritableName as err:
                self._fail_file(source or filename, filename, err)
            return {}
        key = info.item if info else filename
        if key is self._failed_key:
            return {}
        if self._video is None or self._video.key != key:
            self._close_video(finished=True)
            try:
                self._open_video(filename, image, info, float(inputs.get("saved_video_fps") or 10))
            except UnwritableName as err:
                self._failed_key = key
                self._fail_file(source or filename, filename, err)
                return {}
        with _writing(self._video.output.final_path):
            if info is not None:
                self._video.writer.write(image, info.pts, info.duration)
            else:
                self._video.writer.write(image)
        return {}

    def release(self, completed: bool = True) -> None:
        # Stopped early (num_iter) but not interrupted: keep what was written, with the
        # audio up to the last frame. Interrupted or failed: discard.
        self._close_video(finished=False, keep=completed)

    # ------------------------------------------------------------------ paths
    def _output_path(self, name: str, source: Path | None, input_name: str) -> Path:
        """Where input ``input_name`` (read from ``source``) is written as ``name``."""
        relative = inside_output_dir(name)
        path = self._dir / relative
        with name_errors(path):
            exists = path.exists()
        if exists:
            if path in self.written:
                raise MediaError(
                    f"two inputs would both be written as '{path}' (say clip.avi and clip.mp4): "
                    "rename one, or write them to different output_dirs"
                )
            ours = self._journal is not None and self._journal.may_replace(input_name)
            check_replaceable(path, source, self.overwrite or ours)
        if self._journal is not None:
            self._journal.started(input_name)
        return path

    # ------------------------------------------------------------------ images
    def _write_image(self, filename: str, image: np.ndarray, source: Path | None) -> None:
        path = self._output_path(output_name(filename, False, self.config), source, filename)
        data = encode_image(image, path.suffix, source, self.keep_metadata)
        output = AtomicOutput(path)
        try:
            with _writing(path):
                output.temp_path.write_bytes(data)
                self.written.append(output.commit())
        except BaseException:
            output.discard()
            raise
        if self._journal is not None:
            self._journal.finished(filename, path, 1)

    # ------------------------------------------------------------------ videos
    def _open_video(self, filename: str, image: np.ndarray, info: FrameInfo | None, fps: float) -> None:
        item = info.item if info else None
        source = item.path if item is not None and item.kind == "video" else None
        path = self._output_path(output_name(filename, True, self.config), source, filename)
        if info is not None and info.time_base is not None:
            time_base, fps = info.time_base, item.fps or fps
        else:  # no timestamps (a caller without input.visual): a constant rate
            time_base = 1 / Fraction(fps).limit_denominator(1001)
        output = AtomicOutput(path)
        try:
            writer = VideoWriter(
                output.temp_path, self._settings, (image.shape[1], image.shape[0]),
                time_base=time_base, fps=fps, source=source, label=path.name,
                color_tags=item.color_tags if item is not None else None,
                sample_aspect_ratio=item.sample_aspect_ratio if item is not None else None,
            )
        except BaseException as err:
            output.discard()
            if isinstance(err, Exception) and not isinstance(err, MediaError):
                reason = str(err).replace(str(output.temp_path), str(path))  # name the user's file
                raise MediaError(f"cannot write video '{path}' ({reason}): check output.media_writer's "
                                 "video_codec and container") from None
            raise
        self._video = _OpenVideo(info.item if info else filename, item, output, writer)

    def _close_video(self, finished: bool, keep: bool = True) -> None:
        video, self._video = self._video, None
        if video is None:
            return
        failed = video.item.failed if video.item is not None else None
        if not keep or failed:
            video.writer.abort()
            video.output.discard()
            if failed:
                self.logger.warning("no output for '%s': its input is damaged", video.item.name)
                if self._journal is not None:
                    self._journal.finished(video.item.name, None, video.writer.frames, error=failed)
            return
        try:
            with _writing(video.output.final_path):
                video.writer.finish(whole_audio=finished)
        except BaseException:
            video.output.discard()
            raise
        try:
            self.written.append(video.output.commit())
        except UnwritableName as err:
            video.output.discard()
            label = video.item.path if video.item is not None else video.key
            self._fail_file(label, video.item.name if video.item is not None else str(video.key), err)
            return
        except BaseException:
            video.output.discard()
            raise
        self.logger.info("wrote %s (%d frames)", video.output.final_path, video.writer.frames)
        if self._journal is not None and finished and video.item is not None:  # whole: done
            self._journal.finished(video.item.name, video.output.final_path, video.writer.frames)

    def _fail_file(self, label: Any, input_name: str, err: UnwritableName) -> None:
        """This input gets no output; the run goes on and ends with exit code 1."""
        self.logger.error("no output for '%s': %s", label, err.reason)
        self.failed_items.append(f"{label}: {err.reason}")
        if self._journal is not None:
            self._journal.finished(input_name, None, 0, error=err.reason)



def _writing(path: Path) -> Any:
    """Failed writes of this file, PyAV's included, as one clear MediaError."""
    return write_errors_reported(path, load_av().error.FFmpegError)
