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
import os
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


def planned_files(settings: dict[str, Any]) -> tuple[list[tuple[Path, str]], bool]:
    """input.tracks' files for a run or a job (``job: reads_files: files``): (tracks file,
    output name) pairs, and whether there is one. Every file is checked first."""
    source = settings["source"]
    paths = source if isinstance(source, list) else [source]
    if not paths:
        raise ConfigError("input.tracks.source names no tracks file: pass at least one")
    pairs: list[tuple[Path, str]] = []
    inputs: dict[str, Path] = {}
    for entry in paths:
        path = Path(entry)
        data = load_tracks(path)
        key = os.path.abspath(data["source"])
        if key in inputs:
            raise ConfigError(f"tracks files '{inputs[key]}' and '{path}' name the same input '{key}': "
                              "pass one of them")
        inputs[key] = path
        pairs.append((path, data["name"]))
    return pairs, len(pairs) == 1


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


def carry_review(path: Path, data: dict[str, Any]) -> list[str]:
    """Before ``data`` replaces the tracks file at ``path``: the boxes a reviewer added to it
    (its ``added`` tracks) go into ``data`` under new ids, frame by frame, so that running the
    pipeline again never shows what a reviewer hid. ``keep`` is not carried (track ids change
    from run to run: the faces are hidden again until reviewed). A file whose frames do not
    line up with ``data``'s is copied to ``<path>.previous`` instead. Returns what was done,
    for the log."""
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(old, dict) or old.get("source") != data.get("source"):
        return []
    added = {int(t) for t in old.get("added", []) if isinstance(t, int)}
    notes = []
    if old.get("keep"):
        notes.append(f"the {len(old['keep'])} track(s) kept visible in '{path}' are hidden again: "
                     "track ids change from run to run; review the file again")
    if not added:
        return notes
    old_frames, frames = old.get("frames", []), data.get("frames", [])
    if not isinstance(old_frames, list) or len(old_frames) != len(frames):
        backup = path.with_name(path.name + ".previous")
        backup.write_bytes(path.read_bytes())
        return [*notes, f"'{path}' held boxes added in review for another cut of the input: "
                        f"kept as '{backup}'"]
    used = [face[4] for frame in frames for face in frame.get("faces", [])]
    first_free = max(used, default=-1) + 1
    renamed = {track: first_free + index for index, track in enumerate(sorted(added))}
    for frame, old_frame in zip(frames, old_frames, strict=True):
        for face in old_frame.get("faces", []) if isinstance(old_frame, dict) else []:
            if isinstance(face, list) and len(face) == 5 and face[4] in renamed:
                frame.setdefault("faces", []).append([*face[:4], renamed[face[4]]])
                frame.setdefault("scores", []).append(1.0)
                frame.setdefault("held", []).append(False)
    data["added"] = sorted(renamed.values())
    return [*notes, f"{len(renamed)} track(s) added in review to '{path}' carried into the new file"]
