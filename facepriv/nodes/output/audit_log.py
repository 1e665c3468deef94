"""output.audit_log: what was done to each file, for the people who must answer for it.

One JSON record per input file, written when the file is finished (atomically, like
every output): frames, faces masked, masks held without a detection (from
``dabble.persist_bbox``'s ``bbox_held``), the file's failure if any, and the settings of
every node of the run. An interrupted run writes no record for the file it was on.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from facepriv import __version__
from facepriv.media.outputs import ensure_writable_dir, write_text_atomically
from facepriv.media.reading import MediaItem
from facepriv.per_file import PerFileWriter, sidecar_path


class Node(PerFileWriter):
    """Counts per file and writes ``<output_dir>/<input name>.audit.json`` when it ends."""

    def __init__(self, config: dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._dir = ensure_writable_dir(Path(self.output_dir), "output.audit_log.output_dir")
        self._counts: dict[str, Any] = {}

    def start_file(self, item: MediaItem) -> None:
        self._counts = _new_counts()

    def add_frame(self, item: MediaItem, inputs: dict[str, Any]) -> None:
        faces = len(np.asarray(inputs["bboxes"]).reshape(-1, 4))
        held = int(np.count_nonzero(inputs.get("bbox_held", ())))
        counts = self._counts
        counts["frames"] += 1
        counts["frames_with_faces"] += int(faces > 0)
        counts["faces_masked"] += faces
        counts["masks_held"] += held
        labels = inputs.get("bbox_labels")  # boxes of a second detector (plates...) by label
        if labels is not None and len(labels) == faces:
            for label in np.asarray(labels).astype(str).tolist():
                counts["masked_by_label"][label] = counts["masked_by_label"].get(label, 0) + 1
        counts["frames_with_held_masks"] += int(held > 0)

    def finish_file(self, item: MediaItem) -> None:
        record = {
            "input": str(item.path) if item.path is not None else item.name,
            "kind": item.kind,
            "status": "failed" if item.failed else "done",
            "error": item.failed,
            **self._counts,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "facepriv_version": __version__,
            "nodes": [{"node": node, "settings": _jsonable(conf)} for node, conf in self.run_settings],
        }
        path = sidecar_path(self._dir, item, ".audit.json")
        write_text_atomically(path, json.dumps(record, indent=2) + "\n")
        self.logger.info("wrote %s", path)


def _new_counts() -> dict[str, Any]:
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "frames": 0, "frames_with_faces": 0, "faces_masked": 0,
        "masks_held": 0, "frames_with_held_masks": 0, "masked_by_label": {},
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)
