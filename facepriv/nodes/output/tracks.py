"""output.tracks: the boxes a run hid, per input file, for review and re-rendering.

One face-tracks-v1 file per input (``facepriv.tracks_file``), written atomically when
the file ends, like output.audit_log's records; an interrupted run or a damaged input
writes none, and running again keeps the boxes a reviewer added to the last file. The file
records what ``facepriv render`` needs to render the input again without detection: the
source, each frame's boxes in pixels with their track ids, and the draw and writer nodes
of this run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from facepriv import __version__
from facepriv.config import node_spec
from facepriv.custom_nodes import node_type
from facepriv.media.outputs import ensure_writable_dir
from facepriv.media.reading import MediaItem
from facepriv.per_file import PerFileWriter, sidecar_path
from facepriv.plan import PlannedNode, output_dir_of, output_paths
from facepriv.tracks_file import SUFFIX, carry_review, pixel_box, save_tracks


class Node(PerFileWriter):
    """Collects each frame's boxes; writes ``<output_dir>/<input name>.tracks.json`` per file."""

    def __init__(self, config: dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._dir = ensure_writable_dir(Path(self.output_dir), "output.tracks.output_dir")
        self._frames: list[dict[str, Any]] = []
        self._size: tuple[int, int] = (0, 0)
        self._next_id = 0  # track ids for boxes that came without one

    def start_file(self, item: MediaItem) -> None:
        self._frames, self._next_id = [], 0

    def add_frame(self, item: MediaItem, inputs: dict[str, Any]) -> None:
        height, width = inputs["img"].shape[:2]
        self._size = (width, height)
        boxes = np.asarray(inputs["bboxes"], dtype=np.float64).reshape(-1, 4)
        count = len(boxes)
        tracks = inputs.get("bbox_tracks")
        if tracks is None or len(tracks) != count:  # no tracker: every box is its own track
            tracks = np.arange(self._next_id, self._next_id + count)
        self._next_id = max(self._next_id, int(np.max(tracks, initial=-1)) + 1)
        held = inputs.get("bbox_held")
        held = np.zeros(count, dtype=bool) if held is None or len(held) != count else np.asarray(held)
        scores = np.asarray(inputs["bbox_scores"], dtype=np.float64).reshape(-1)
        self._frames.append({
            "faces": [[*pixel_box(box, width, height), int(track)]
                      for box, track in zip(boxes, tracks, strict=True)],
            "scores": [round(float(score), 3) for score in scores],
            "held": [bool(flag) for flag in held],
        })

    def finish_file(self, item: MediaItem) -> None:
        frames, self._frames = self._frames, []
        if item.failed or item.path is None or not frames:
            return  # no output for a damaged input; a live source has nothing to render again
        data = {
            "source": os.path.abspath(item.path),
            "name": item.name,
            "kind": item.kind,
            "fps": item.fps,
            "size": list(self._size),
            "output": self._output_of(item),
            "keep": [],
            "added": [],
            "nodes": self._render_nodes(),
            "facepriv_version": __version__,
            "frames": frames,
        }
        path = sidecar_path(self._dir, item, SUFFIX)
        for note in carry_review(path, data):  # a reviewed file is never simply overwritten
            self.logger.warning(note)
        self.logger.info("wrote %s", save_tracks(path, data))

    def _render_nodes(self) -> list[dict[str, Any]]:
        """The draw nodes and the writer of this run, output_dir made absolute: what review
        renders a reviewed file with."""
        writer = self._writer()
        chosen = []
        for name, settings in self.run_settings:
            if writer is not None and name == writer.name:
                assert writer.spec.job.writes_files is not None
                key = writer.spec.job.writes_files["output_dir"]
                settings = {**settings, key: str(output_dir_of(writer))}
            elif node_type(name) != "draw":
                continue
            chosen.append({"node": name, "settings": dict(settings)})
        return chosen

    def _output_of(self, item: MediaItem) -> str | None:
        """Where the run's writer (output.media_writer) wrote this input, if one ran."""
        writer = self._writer()
        if writer is None:
            return None
        return str(output_paths([(item.path, item.name)], writer)[item.name])

    def _writer(self) -> PlannedNode | None:
        """The node of this run that writes one output per input (``job: writes_files``)."""
        for name, settings in self.run_settings:
            spec = node_spec(name)
            if spec.job.writes_files:
                return PlannedNode(name, settings, spec)
        return None
