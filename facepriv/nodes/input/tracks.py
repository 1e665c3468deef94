"""input.tracks: an input again, with the boxes a tracks file gives it instead of detections.

Frames are read by input.visual (built inside this node with the files the tracks files
name, under the output names they had), so timing, rotation, damaged files and audio are
handled as in ``facepriv run``. Each frame gets the boxes of its entry in the tracks file,
except those of tracks in ``keep``. An input that decodes to more or fewer frames than its
file lists fails (its output is discarded): the boxes would not match the frames. Frames
past the list are hidden whole.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from facepriv.media.reading import MediaItem
from facepriv.node import AbstractNode, load_node_class
from facepriv.per_file import FileBoundary
from facepriv.tracks_file import hidden_boxes, load_tracks, planned_files

WHOLE_FRAME = np.array([[0.0, 0.0, 1.0, 1.0]], dtype=np.float32)


class Node(AbstractNode):
    """Frames of the tracks files' inputs, in order, with the boxes to hide."""

    def __init__(self, config: dict[str, Any] | None = None, *, items: list[tuple[Path, str]] | None = None,
                 single: bool | None = None, **overrides: Any) -> None:
        """``items``: the (tracks file, output name) pairs of this run, as a job or a serial
        run's resume hands them (default: every file of ``source``)."""
        super().__init__(config, **overrides)
        if items is None:
            items, single = planned_files({"source": self.source})
        self._tracks: dict[str, dict[str, Any]] = {}
        inputs: list[tuple[Path, str]] = []
        for path, name in items:
            data = load_tracks(path)
            key = os.path.abspath(data["source"])
            self._tracks[key] = data
            inputs.append((Path(key), name))
        self.total_frames = sum(len(data["frames"]) for data in self._tracks.values())
        self.frames_out = 0
        settings = {"source": [str(path) for path, _ in inputs], "max_megapixels": self.max_megapixels,
                    "frames_log_freq": self.frames_log_freq}
        self._reader = load_node_class("input.visual")(
            settings, items=inputs, single=bool(single))
        self.failed_items = self._reader.failed_items  # one list: the run reports both nodes' failures
        self._files = FileBoundary()
        self._seen = 0  # frames of the current file

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        pool = self._reader.run({})
        ended = self._files.step(pool)
        if ended is not None:
            self._check_length(ended)
        if pool["pipeline_end"]:
            return {**pool, **_boxes(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                                     np.zeros(0, np.int64))}
        info = pool["frame_info"]
        data = self._tracks[os.path.abspath(info.item.path)]
        self._seen = info.index + 1
        self.frames_out += 1
        if info.index < len(data["frames"]):
            return {**pool, **_boxes(*hidden_boxes(data, info.index))}
        self._fail(info.item, "it decodes to more frames than its tracks file lists")
        return {**pool, **_boxes(WHOLE_FRAME, np.ones(1, np.float32), np.full(1, -1, np.int64))}

    def _check_length(self, item: MediaItem) -> None:
        listed = len(self._tracks[os.path.abspath(item.path)]["frames"])
        if self._seen < listed and not item.failed:
            self._fail(item, f"it decodes to {self._seen} frame(s) but its tracks file lists {listed}")

    def _fail(self, item: MediaItem, reason: str) -> None:
        if item.failed is None:
            item.failed = f"{reason}: pass the tracks file written for this input; its output is discarded"
            self.logger.error("'%s': %s", item.path, item.failed)
            self.failed_items.append(f"{item.path}: {item.failed}")

    def release(self, completed: bool = True) -> None:
        self._reader.release(completed)


def _boxes(boxes: np.ndarray, scores: np.ndarray, tracks: np.ndarray) -> dict[str, Any]:
    return {"bboxes": boxes, "bbox_scores": scores, "bbox_tracks": tracks,
            "bbox_labels": np.array(["face"] * len(boxes)), "bbox_held": np.zeros(len(boxes), dtype=bool)}
