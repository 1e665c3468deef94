"""The files under review: tracks files found in a folder, their inputs and outputs, edits.

Only files a review may show are ever opened: each tracks file's input (its ``source``)
and output (its ``output``, if it lies inside the reviewed folder). Pages name a file by
its position in the list, never by a path, so a request cannot reach another file.
Edits (keep, added boxes) stay in memory until ``save`` writes the tracks file atomically.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facepriv.errors import ConfigError, FaceprivError
from facepriv.review.frames import FrameSource, follow_box
from facepriv.tracks_file import SUFFIX, load_tracks, pixel_box, save_tracks

LOW_SCORE = 0.5  # a detection below this is worth a look
SHORT_TRACK = 10  # a track on fewer frames is worth a look (a false box, or a face barely seen)
THUMB_HEIGHT = 96
MAX_FOLLOW = 300  # frames a drawn box is carried forward or backward at most


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` (links resolved) lies inside ``folder``."""
    try:
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))
    except OSError:
        return False


@dataclass
class ReviewFile:
    """One tracks file, its input and its output."""

    path: Path
    data: dict[str, Any]
    folder: Path
    dirty: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.input = FrameSource(Path(self.data["source"]))
        output = self.data.get("output")
        self.output = FrameSource(Path(output)) if output and inside(Path(output), self.folder) \
            and Path(output).is_file() else None

    # ------------------------------------------------------------------ what the page shows
    def summary(self) -> dict[str, Any]:
        """Tracks, per-frame boxes and the frames worth a look."""
        with self.lock:  # not while add_box appends to the frames
            return self._summary()

    def _summary(self) -> dict[str, Any]:
        frames = self.data["frames"]
        tracks: dict[int, dict[str, Any]] = {}
        boxes, markers, last_count = [], [], None
        for index, frame in enumerate(frames):
            scores, held = frame.get("scores") or [], frame.get("held") or []
            here = []
            reasons = set()
            for i, face in enumerate(frame.get("faces", [])):
                track, score = int(face[4]), float(scores[i]) if i < len(scores) else 1.0
                is_held = bool(held[i]) if i < len(held) else False
                entry = tracks.setdefault(track, {"id": track, "first": index, "last": index, "frames": 0,
                                                  "best": -1.0, "best_frame": index, "held": 0})
                entry["last"], entry["frames"] = index, entry["frames"] + 1
                entry["held"] += is_held
                if score > entry["best"]:
                    entry["best"], entry["best_frame"] = score, index
                here.append([*face[:4], track])
                if score < LOW_SCORE and track not in self.data["added"]:
                    reasons.add("low score")
                if is_held:
                    reasons.add("held mask")
            count = len(here)
            if last_count is not None and count != last_count:
                reasons.add("face count changes")
            last_count = count
            boxes.append(here)
            if reasons:
                markers.append({"frame": index, "reasons": sorted(reasons)})
        for entry in tracks.values():
            entry["short"] = entry["frames"] < SHORT_TRACK and len(frames) >= SHORT_TRACK
            entry["added"] = entry["id"] in self.data["added"]
            if entry["short"]:
                markers.append({"frame": entry["first"], "reasons": [f"short track {entry['id']}"]})
        markers.sort(key=lambda marker: marker["frame"])
        return {
            "name": self.data["name"], "frames": len(frames), "size": self.data["size"],
            "fps": self.data.get("fps") or 25, "has_output": self.output is not None,
            "keep": sorted(self.data["keep"]), "tracks": sorted(tracks.values(), key=lambda t: t["id"]),
            "boxes": boxes, "markers": markers, "dirty": self.dirty,
        }

    def thumbnail(self, track: int) -> bytes | None:
        """The track's face at its best-scored frame, cropped from the input, as JPEG."""
        for entry in self.summary()["tracks"]:
            if entry["id"] == track:
                break
        else:
            return None
        frame = self.data["frames"][entry["best_frame"]]
        box = next(face for face in frame["faces"] if int(face[4]) == track)
        image = self.input.frame(entry["best_frame"])
        if image is None:
            return None
        height, width = image.shape[:2]
        x1, y1, x2, y2 = (int(round(v)) for v in box[:4])
        pad_x, pad_y = (x2 - x1) // 4, (y2 - y1) // 4
        crop = image[max(0, y1 - pad_y):min(height, y2 + pad_y), max(0, x1 - pad_x):min(width, x2 + pad_x)]
        if crop.size == 0:
            return None
        scale = THUMB_HEIGHT / crop.shape[0]
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), THUMB_HEIGHT))
        return cv2.imencode(".jpg", crop)[1].tobytes()

    # ------------------------------------------------------------------ edits
    def set_keep(self, track: int, keep: bool) -> list[int]:
        with self.lock:
            kept = set(self.data["keep"])
            kept.add(track) if keep else kept.discard(track)
            self.data["keep"], self.dirty = sorted(kept), True
            return self.data["keep"]

    def add_box(self, frame: int, box: list[float], back: int, forward: int) -> dict[str, Any]:
        """Hide a region the detector missed: ``box`` (pixels) drawn on ``frame``, carried
        ``back`` frames backward and ``forward`` frames forward within the shot, as a new track."""
        frames = self.data["frames"]
        width, height = self.data["size"]
        if not 0 <= frame < len(frames):
            raise ConfigError(f"frame {frame} is not in this file (0 to {len(frames) - 1})")
        (x1, x2), (y1, y2) = sorted((box[0], box[2])), sorted((box[1], box[3]))
        if x2 - x1 < 2 or y2 - y1 < 2:
            raise ConfigError("the box is too small: drag across the face")
        back, forward = (max(0, min(MAX_FOLLOW, int(n))) for n in (back, forward))
        first, last = max(0, frame - back), min(len(frames) - 1, frame + forward)
        normalised = np.array([x1 / width, y1 / height, x2 / width, y2 / height])
        small = self.input.small_frames(first, last)
        carried = follow_box(small, frame - first, normalised) if small else [(frame - first, normalised)]
        with self.lock:
            track = 1 + max([int(face[4]) for f in frames for face in f.get("faces", [])], default=-1)
            for position, moved in carried:
                entry = frames[first + position]
                entry.setdefault("faces", []).append([*pixel_box(np.clip(moved, 0, 1), width, height), track])
                entry.setdefault("scores", []).append(1.0)
                entry.setdefault("held", []).append(False)
            self.data["added"] = sorted({*self.data["added"], track})
            self.dirty = True
        indices = [first + position for position, _ in carried]
        return {"track": track, "first": min(indices), "last": max(indices)}

    def remove_added(self, track: int) -> list[int]:
        """Take back a box added in review (a slip of the mouse): every box of that track goes.
        Tracks the detector found are never removed here: a reviewer keeps them visible."""
        with self.lock:
            if track not in self.data["added"]:
                raise ConfigError(f"track {track} was not added in review: only added boxes can be removed "
                                  "(tick 'keep visible' to show a detected face)")
            for frame in self.data["frames"]:
                faces = frame.get("faces", [])
                gone = [i for i, face in enumerate(faces) if int(face[4]) == track]
                for key in ("faces", "scores", "held"):
                    values = frame.get(key)
                    if values:
                        frame[key] = [value for i, value in enumerate(values) if i not in gone]
            self.data["added"] = [t for t in self.data["added"] if t != track]
            self.data["keep"] = [t for t in self.data["keep"] if t != track]
            self.dirty = True
            return self.data["added"]

    def save(self) -> Path:
        with self.lock:
            save_tracks(self.path, self.data)
            self.dirty = False
        return self.path


class Library:
    """Every ``*.tracks.json`` below the reviewed folder whose input exists."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise ConfigError(f"'{folder}' is not a folder: pass the output_dir of a run with output.tracks")
        self.folder = folder.resolve()
        self.files: list[ReviewFile] = []
        self.skipped: list[str] = []
        for path in sorted(self.folder.rglob(f"*{SUFFIX}")):
            try:
                self.files.append(ReviewFile(path, load_tracks(path), self.folder))
            except FaceprivError as err:  # reported on the console
                self.skipped.append(str(err))
        if not self.files:
            reason = f" ({self.skipped[0]})" if self.skipped else ""
            raise ConfigError(f"no usable {SUFFIX} file in '{folder}'{reason}: run a pipeline with "
                              "output.tracks writing there first")

    def get(self, index: str) -> ReviewFile | None:
        """The file at position ``index`` (as the page names it), or None."""
        if not index.isdigit() or int(index) >= len(self.files):
            return None
        return self.files[int(index)]
