"""Face tracks across video frames, so a mask outlives a detector's blink.

Detections are associated frame by frame (overlap with each track's predicted box, then,
for faces that moved further than they are wide, centre distance). A track's box at a
frame without its detection is then read off its history:

- between two detections of the track: interpolated (the gap is filled both ways);
- after its last detection, for up to ``hold_frames``: moved on with its recent motion;
- before its first detection, for up to ``backfill_frames``: moved back with its first
  motion (a face is masked a little before the detector first caught it).

Only tracks detected on at least ``min_detections`` frames persist: at low thresholds a
detector's false boxes flicker on single frames, and holding each of them would hide (and
cost) far more than the faces. A face found on two frames even far apart (within
``hold_frames``) qualifies, and with lookahead the gap between them is filled too.

Such boxes grow while no detection confirms them, because the estimate gets less sure.
Boxes are in normalised [0, 1] x1, y1, x2, y2 coordinates; overlap and relative
distances do not depend on the frame's aspect ratio in that space.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

import numpy as np

VELOCITY_SPAN = 5  # detections used to estimate a track's motion


@dataclass(frozen=True)
class TrackSettings:
    """How long masks persist and how tracks are joined up."""

    hold_frames: int = 15
    backfill_frames: int = 10
    min_detections: int = 2  # a one-frame detection is mostly a false one: not held
    growth_per_frame: float = 0.05
    max_growth: float = 1.5
    min_iou: float = 0.2
    max_jump: float = 1.5  # centre distance, in face sizes, a face may move between detections


@dataclass
class Track:
    """The detections of one face: frame indices ascending, boxes and scores alongside."""

    times: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def add(self, time: int, box: np.ndarray, score: float) -> None:
        self.times.append(time)
        self.boxes.append(np.asarray(box, dtype=np.float64))
        self.scores.append(float(score))

    def velocity(self, at_end: bool = True) -> np.ndarray:
        """Motion of the box centre per frame over the last (or first) few detections.

        Only the centre moves: extrapolated sizes can turn boxes inside out, and the
        growth of held masks covers a face coming closer.
        """
        if len(self.times) < 2:
            return np.zeros(4)
        first, last = (-min(VELOCITY_SPAN, len(self.times)), -1) if at_end \
            else (0, min(VELOCITY_SPAN, len(self.times)) - 1)
        span = self.times[last] - self.times[first]
        if not span:
            return np.zeros(4)
        shift = _centre(self.boxes[last]) - _centre(self.boxes[first])
        return np.tile(shift / span, 2)

    def predict(self, time: int) -> np.ndarray:
        return self.boxes[-1] + self.velocity() * (time - self.times[-1])

    def box_at(self, time: int, settings: TrackSettings) -> tuple[np.ndarray, float] | None:
        """The track's mask at a frame where it was not detected, or None if it has none."""
        if len(self.times) < settings.min_detections:
            return None
        index = bisect_left(self.times, time)
        if index < len(self.times) and self.times[index] == time:
            return None  # detected there: the detection itself is the mask
        if 0 < index < len(self.times):
            before, after = self.times[index - 1], self.times[index]
            weight = (time - before) / (after - before)
            box = (1 - weight) * self.boxes[index - 1] + weight * self.boxes[index]
            distance = min(time - before, after - time)
            score = min(self.scores[index - 1], self.scores[index])
        elif index == len(self.times) and time - self.times[-1] <= settings.hold_frames:
            box, distance, score = self.predict(time), time - self.times[-1], self.scores[-1]
        elif index == 0 and self.times[0] - time <= settings.backfill_frames:
            distance = self.times[0] - time
            box = self.boxes[0] - self.velocity(at_end=False) * distance
            score = self.scores[0]
        else:
            return None
        scale = min(settings.max_growth, 1.0 + settings.growth_per_frame * distance)
        return scale_box(box, scale), score

    def forget_before(self, time: int) -> None:
        """Drop detections older than ``time``, keeping what motion estimates need."""
        keep_from = min(bisect_left(self.times, time), max(0, len(self.times) - VELOCITY_SPAN))
        if keep_from:
            del self.times[:keep_from], self.boxes[:keep_from], self.scores[:keep_from]


class FaceTracks:
    """The tracks of one video: detections go in frame by frame, masks come out per frame."""

    def __init__(self, settings: TrackSettings) -> None:
        self.settings = settings
        self.tracks: list[Track] = []

    def add(self, time: int, boxes: np.ndarray, scores: np.ndarray) -> None:
        """Associate one frame's detections (frames must come in order) with the tracks."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        live = [t for t in self.tracks if time - t.times[-1] <= self.settings.hold_frames + 1]
        predicted = np.array([t.predict(time) for t in live]).reshape(-1, 4)
        pairs = associate(predicted, boxes, self.settings)
        matched = set()
        for track_index, box_index in pairs:
            live[track_index].add(time, boxes[box_index], scores[box_index])
            matched.add(box_index)
        for box_index in range(len(boxes)):
            if box_index not in matched:
                track = Track()
                track.add(time, boxes[box_index], scores[box_index])
                self.tracks.append(track)

    def masks_at(self, time: int) -> tuple[np.ndarray, np.ndarray]:
        """Boxes and scores of tracks that were not detected at ``time`` but persist there."""
        found = [held for track in self.tracks if (held := track.box_at(time, self.settings))]
        boxes = np.array([box for box, _ in found], dtype=np.float64).reshape(-1, 4)
        return boxes, np.array([score for _, score in found], dtype=np.float32)

    def forget_before(self, time: int) -> None:
        """Free what frames before ``time`` needed (their masks were already handed on)."""
        reach = max(self.settings.hold_frames, self.settings.backfill_frames) + 1
        self.tracks = [t for t in self.tracks if t.times[-1] + reach >= time]
        for track in self.tracks:
            track.forget_before(time - reach)


def associate(tracks: np.ndarray, detections: np.ndarray, settings: TrackSettings) -> list[tuple[int, int]]:
    """Greedy (track, detection) pairs: by overlap first, then by centre distance."""
    if len(tracks) == 0 or len(detections) == 0:
        return []
    pairs: list[tuple[int, int]] = []
    free_tracks, free_boxes = set(range(len(tracks))), set(range(len(detections)))
    overlap = iou_matrix(tracks, detections)
    for flat in np.argsort(-overlap, axis=None, kind="stable"):
        i, j = divmod(int(flat), len(detections))
        if overlap[i, j] < settings.min_iou:
            break
        if i in free_tracks and j in free_boxes:
            pairs.append((i, j))
            free_tracks.discard(i)
            free_boxes.discard(j)
    if not free_tracks or not free_boxes:
        return pairs
    distance = _relative_distance(tracks, detections)
    for flat in np.argsort(distance, axis=None, kind="stable"):
        i, j = divmod(int(flat), len(detections))
        if distance[i, j] > settings.max_jump:
            break
        if i in free_tracks and j in free_boxes:
            pairs.append((i, j))
            free_tracks.discard(i)
            free_boxes.discard(j)
    return pairs


def iou_matrix(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``first`` with every box of ``second``."""
    top_left = np.maximum(first[:, None, :2], second[None, :, :2])
    bottom_right = np.minimum(first[:, None, 2:], second[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_first = np.prod(first[:, 2:] - first[:, :2], axis=1)
    area_second = np.prod(second[:, 2:] - second[:, :2], axis=1)
    union = area_first[:, None] + area_second[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _relative_distance(tracks: np.ndarray, detections: np.ndarray) -> np.ndarray:
    """Centre distance in track sizes; infinite where the sizes differ more than 2x."""
    centre_t = (tracks[:, :2] + tracks[:, 2:]) / 2
    centre_d = (detections[:, :2] + detections[:, 2:]) / 2
    size_t = np.maximum(tracks[:, 2:] - tracks[:, :2], 1e-6)
    size_d = np.maximum(detections[:, 2:] - detections[:, :2], 1e-6)
    offset = np.abs(centre_t[:, None, :] - centre_d[None, :, :]) / size_t[:, None, :]
    distance = offset.max(axis=2)
    ratio = size_d[None, :, :] / size_t[:, None, :]
    similar = np.all((ratio > 0.5) & (ratio < 2.0), axis=2)
    return np.where(similar, distance, np.inf)


def _centre(box: np.ndarray) -> np.ndarray:
    return (box[:2] + box[2:]) / 2


def scale_box(box: np.ndarray, scale: float) -> np.ndarray:
    """Grow a box by ``scale`` about its centre."""
    centre, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) / 2 * scale
    return np.concatenate([centre - half, centre + half])
