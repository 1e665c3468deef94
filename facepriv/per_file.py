"""Where one input file ends and the next begins, for nodes that write one record per file.

The contract output.media_writer follows: every frame carries ``frame_info`` whose
``item`` is the same object for all frames of one input; a new item (or ``pipeline_end``)
means the last file is complete. Frames without ``frame_info`` (a caller feeding images
itself) belong to no file. Sidecar outputs (``<name>.audit.json``, ``<name>.tracks.json``)
mirror the input's name below output_dir, as the media outputs do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facepriv.media.outputs import inside_output_dir
from facepriv.media.reading import MediaItem
from facepriv.node import AbstractNode


class FileBoundary:
    """Follows the input file of each frame; ``step`` says when one has ended."""

    def __init__(self) -> None:
        self.item: MediaItem | None = None

    def step(self, inputs: dict[str, Any]) -> MediaItem | None:
        """The file that ended before this frame (None if the same file goes on), after
        which ``item`` is this frame's file (None at the end or without frame_info)."""
        info = inputs.get("frame_info")
        item = None if inputs.get("pipeline_end") or info is None else info.item
        if item is self.item:
            return None
        ended, self.item = self.item, item
        return ended

    def end(self) -> MediaItem | None:
        """The file in progress when the run stops (its last frame was seen), if any."""
        ended, self.item = self.item, None
        return ended


class PerFileWriter(AbstractNode):
    """Base of output nodes that write one record per input file once the file is complete
    (output.audit_log, output.tracks); an interrupted run writes none for its last file."""

    def __init__(self, config: dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._files = FileBoundary()

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        before = self._files.item
        ended = self._files.step(inputs)
        if ended is not None:
            self.finish_file(ended)
        item = self._files.item
        if item is not None:
            if item is not before:
                self.start_file(item)
            self.add_frame(item, inputs)
        return {}

    def release(self, completed: bool = True) -> None:
        item = self._files.end()
        if completed and item is not None:
            self.finish_file(item)

    def start_file(self, item: MediaItem) -> None:
        """A new input file begins."""

    def add_frame(self, item: MediaItem, inputs: dict[str, Any]) -> None:
        """One frame of ``item``."""
        raise NotImplementedError

    def finish_file(self, item: MediaItem) -> None:
        """``item``'s last frame was seen: write its record."""
        raise NotImplementedError


def sidecar_path(output_dir: Path, item: MediaItem, suffix: str) -> Path:
    """``<output_dir>/<input's name><suffix>``: never outside output_dir."""
    return output_dir / f"{inside_output_dir(item.name)}{suffix}"
