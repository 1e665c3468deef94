"""face-tracks-v1 files as output.tracks writes them and render and review read them.

The ground-truth format of ``facepriv eval --video`` (``facepriv.evaluation.gt_video``):
``frames[i].faces`` lists ``[x1, y1, x2, y2, track]`` in pixels of a ``size`` [width,
height] frame, one entry per frame of the input, so a reviewed file is also an annotation
file. output.tracks adds per box its ``scores`` and ``held`` (kept by dabble.persist_bbox
without a detection), and per file its ``source`` (the input), ``name`` (its output name),
``kind``, ``output`` (what output.media_writer wrote, if it ran), ``nodes`` (the draw and
writer nodes of that run, which review renders with) and ``keep`` (tracks left visible).
A reviewer adds boxes under new track ids; their ids are listed in ``added``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from facepriv.errors import ConfigError, MediaError
from facepriv.evaluation.gt_video import TRACKS_FORMAT, load_face_tracks
from facepriv.media.outputs import write_text_atomically

SUFFIX = ".tracks.json"


def pixel_box(box: np.ndarray, width: int, height: int) -> list[float]:
    """A normalised box in pixels at 0.1 px, rounded outwards (a mask never shrinks)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return [math.floor(x1 * width * 10) / 10, math.floor(y1 * height * 10) / 10,
            math.ceil(x2 * width * 10) / 10, math.ceil(y2 * height * 10) / 10]


def load_tracks(path: str | Path) -> dict[str, Any]:
    """A tracks file checked for rendering: its source exists, its lists line up."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"tracks file '{path}' does not exist: pass a {SUFFIX} written by output.tracks")
    try:
        data = load_face_tracks(path)
    except ConfigError as err:
        raise ConfigError(str(err).replace("annotations", "tracks file", 1)) from None
    size, source = data.get("size"), data.get("source")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise ConfigError(f"tracks file '{path}' needs 'size': [width, height] in pixels")
    if not isinstance(source, str) or not source:
        raise ConfigError(f"tracks file '{path}' names no 'source': it was not written by output.tracks")
    if not Path(source).is_file():
        raise MediaError(f"the source of tracks file '{path}', '{source}', does not exist: "
                         "put the input back where it was, or fix 'source' in the file")
    keep = data.get("keep", [])
    if not isinstance(keep, list) or not all(isinstance(k, int) for k in keep):
        raise ConfigError(f"tracks file '{path}': 'keep' must list track ids (whole numbers)")
    data.setdefault("keep", [])
    data.setdefault("added", [])
    data.setdefault("name", Path(source).name)
    return data


def hidden_boxes(data: dict[str, Any], index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame ``index``'s normalised boxes, scores and track ids to hide: every box whose
    track is not in ``keep`` (a box with an unreadable track id is hidden too)."""
    width, height = data["size"]
    frame = data["frames"][index]
    keep = set(data["keep"])
    scores = frame.get("scores") or []
    chosen = [(face[:4], scores[i] if i < len(scores) else 1.0, face[4])
              for i, face in enumerate(frame.get("faces", [])) if face[4] not in keep]
    boxes = np.array([box for box, _, _ in chosen], dtype=np.float64).reshape(-1, 4)
    boxes = (boxes / np.array([width, height, width, height])).astype(np.float32)
    return (boxes, np.array([s for _, s, _ in chosen], dtype=np.float32),
            np.array([int(t) if isinstance(t, int) else -1 for _, _, t in chosen], dtype=np.int64))


def save_tracks(path: Path, data: dict[str, Any]) -> Path:
    """Write a tracks file atomically: one frame a line, so a diff shows what a review changed."""
    lines = ["{"] + [f" {json.dumps(key)}: {json.dumps(value)}," for key, value in data.items()
                     if key not in ("format", "frames")]
    frames = ",\n".join(json.dumps(frame, separators=(",", ":")) for frame in data.get("frames", []))
    text = "\n".join([*lines, f' "format": "{TRACKS_FORMAT}",', ' "frames": [', frames, "]}", ""])
    return write_text_atomically(path, text)
