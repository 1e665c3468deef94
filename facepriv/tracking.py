"""Face tracks across video frames, so a mask outlives a detector's blink.

Boxes are kept in the coordinates of their shot's first frame ("scene" coordinates):
each frame's camera motion (``facepriv.camera_motion``) carries the frame into them, so
a face that stands still while the camera pans or zooms stands still there too, and a
held mask, drawn back in the frame's coordinates, stays on the face instead of drifting
onto the wall. A cut starts a new shot: no track crosses it, nothing is held into the
next shot or back-filled into the last.

Detections are associated frame by frame (overlap with each track's predicted box, then,
for faces that moved further than they are wide, centre distance). A track's box at a
frame without its detection is then read off its history:

- between two detections of the track: interpolated (the gap is filled both ways);
- after its last detection, for up to ``hold_frames``: moved on with the face's own
  recent motion for at most ``predict_frames``, then left where it got to;
- before its first detection, for up to ``backfill_frames``: moved back likewise.

Only confirmed tracks persist: detected on at least ``min_detections`` frames, and once
at ``confirm_score`` or more or on ``confirm_frames`` frames. At low thresholds a
detector's false boxes flicker at low scores on a frame or two; holding each would paint
masks where no face is. A face is then sustained by detections at the detector's own
threshold (hysteresis); a face that only ever scores low (small, turned away) is
confirmed by being found again and again in the same place of the scene.

Held boxes grow while no detection confirms them (the estimate gets less sure), never
past ``max_growth``, and are dropped once mostly outside the frame.

Each label (``face``, a second detector's ``plate``...) is tracked on its own: a track only
takes detections of its own label, so a face track never absorbs a plate box passing in
front of it, and a held box keeps its track's label.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

import numpy as np

from facepriv.camera_motion import MotionStep, next_to_scene
from facepriv.geometry import grow_boxes, iou_matrix, share_inside_unit_square, transform_boxes

VELOCITY_SPAN = 5  # detections used to estimate a track's motion
MIN_VISIBLE = 0.25  # a held box with less of its area inside the frame is dropped
DEFAULT_LABEL = "face"  # of detections given without labels


@dataclass(frozen=True)
class TrackSettings:
    """How long masks persist and how tracks are joined up."""

    hold_frames: int = 15
    backfill_frames: int = 10
    min_detections: int = 2  # a one-frame detection is mostly a false one: not held
    confirm_score: float = 0.5
    confirm_frames: int = 12
    predict_frames: int = 5
    growth_per_frame: float = 0.02
    max_growth: float = 1.2
    min_iou: float = 0.2
    max_jump: float = 1.5  # centre distance, in face sizes, a face may move between detections


@dataclass
class Track:
    """The detections of one face in one shot: frame indices ascending, scene boxes and scores alongside."""

    shot: int  # the frame its shot starts at
    label: str = DEFAULT_LABEL  # the label of every detection it takes
    id: int = 0  # unique within its video: what output.tracks and render call the track
    times: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    best_score: float = 0.0
    detections: int = 0  # including those forgotten

    def add(self, time: int, box: np.ndarray, score: float) -> None:
        self.times.append(time)
        self.boxes.append(np.asarray(box, dtype=np.float64))
        self.scores.append(float(score))
        self.best_score = max(self.best_score, float(score))
        self.detections += 1

    def confirmed(self, settings: TrackSettings) -> bool:
        if self.detections < settings.min_detections:
            return False
        return self.best_score >= settings.confirm_score or self.detections >= settings.confirm_frames

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

    def predict(self, time: int, predict_frames: int) -> np.ndarray:
        return self.boxes[-1] + self.velocity() * min(time - self.times[-1], predict_frames)

    def box_at(self, time: int, settings: TrackSettings, shot_end: float) -> tuple[np.ndarray, float] | None:
        """The track's scene box at a frame where it was not detected, or None if it has none."""
        if not self.confirmed(settings) or not self.shot <= time < shot_end:
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
            distance = time - self.times[-1]
            box, score = self.predict(time, settings.predict_frames), self.scores[-1]
        elif index == 0 and self.times[0] - time <= settings.backfill_frames:
            distance = self.times[0] - time
            box = self.boxes[0] - self.velocity(at_end=False) * min(distance, settings.predict_frames)
            score = self.scores[0]
        else:
            return None
        scale = min(settings.max_growth, 1.0 + settings.growth_per_frame * distance)
        return grow_boxes(box, scale)[0], score

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
        self.shot_starts: list[int] = []
        self._to_scene: dict[int, np.ndarray] = {}  # frame -> (frame coords -> scene coords)
        self._newest: int | None = None
        self._next_id = 0  # track ids are never reused within a video

    def add(self, time: int, boxes: np.ndarray, scores: np.ndarray,
            motion: MotionStep | None = None, labels: np.ndarray | None = None) -> list[Track]:
        """Associate one frame's detections (frames must come in order) with the tracks of
        their label; returns each detection's track.

        ``motion`` is how the picture moved since the previous frame (None: not at all);
        ``labels`` holds each detection's label (None: all ``face``).
        """
        if self._newest is None or (motion is not None and motion.cut):
            self.shot_starts.append(time)
        previous = None if self._newest is None else self._to_scene[self._newest]
        to_scene = next_to_scene(previous, motion)
        self._to_scene[time], self._newest = to_scene, time
        shot = self.shot_starts[-1]
        scene_boxes = transform_boxes(to_scene, boxes)
        reach = self.settings.hold_frames + 1
        live = [t for t in self.tracks if t.shot == shot and time - t.times[-1] <= reach]
        names = _labels(labels, len(scene_boxes))
        owners: dict[int, Track] = {}
        for label in dict.fromkeys(names):
            same = [index for index, name in enumerate(names) if name == label]
            mine = [t for t in live if t.label == label]
            predicted = np.array([t.predict(time, self.settings.predict_frames) for t in mine]).reshape(-1, 4)
            for track_index, box_index in associate(predicted, scene_boxes[same], self.settings):
                owners[same[box_index]] = mine[track_index]
        for box_index in range(len(scene_boxes)):
            if box_index not in owners:
                owners[box_index] = Track(shot, label=names[box_index], id=self._next_id)
                self._next_id += 1
                self.tracks.append(owners[box_index])
            owners[box_index].add(time, scene_boxes[box_index], scores[box_index])
        return [owners[box_index] for box_index in range(len(scene_boxes))]

    def masks_at(self, time: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes (in the frame's coordinates), scores and labels of tracks that were not
        detected at ``time`` but persist there."""
        boxes, scores, labels, _ = self.held_at(time)
        return boxes, scores, labels

    def held_at(self, time: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``masks_at`` plus each box's track id (output.tracks writes them, render keeps
        a track visible by its id)."""
        if time not in self._to_scene:
            return (np.zeros((0, 4)), np.zeros(0, dtype=np.float32), np.zeros(0, dtype=str),
                    np.zeros(0, dtype=np.int64))
        found = [(track, *held) for track in self.tracks
                 if (held := track.box_at(time, self.settings, self._shot_end(track.shot)))]
        scene = np.array([box for _, box, _ in found], dtype=np.float64).reshape(-1, 4)
        boxes = transform_boxes(np.linalg.inv(self._to_scene[time]), scene)
        visible = share_inside_unit_square(boxes) >= MIN_VISIBLE
        scores = np.array([score for _, _, score in found], dtype=np.float32)
        labels = np.array([track.label for track, _, _ in found], dtype=str)
        ids = np.array([track.id for track, _, _ in found], dtype=np.int64)
        return boxes[visible], scores[visible], labels[visible], ids[visible]

    def _shot_end(self, shot: int) -> float:
        index = bisect_right(self.shot_starts, shot)
        return self.shot_starts[index] if index < len(self.shot_starts) else float("inf")

    def forget_before(self, time: int) -> None:
        """Free what frames before ``time`` needed (their masks were already handed on)."""
        reach = max(self.settings.hold_frames, self.settings.backfill_frames) + 1
        self.tracks = [t for t in self.tracks if t.times[-1] + reach >= time]
        for track in self.tracks:
            track.forget_before(time - reach)
        for old in [t for t in self._to_scene if t < time and t != self._newest]:
            del self._to_scene[old]
        current = bisect_right(self.shot_starts, time) - 1
        if current > 0:
            live_shots = {t.shot for t in self.tracks}
            keep_from = min([current] + [self.shot_starts.index(s) for s in live_shots])
            del self.shot_starts[:keep_from]


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


def _labels(labels: np.ndarray | None, count: int) -> list[str]:
    """Each detection's label as a string; all ``face`` without labels (or without one each)."""
    if labels is None or np.size(labels) != count:
        return [DEFAULT_LABEL] * count
    return [str(label) for label in np.asarray(labels).reshape(-1)]


def _centre(box: np.ndarray) -> np.ndarray:
    return (box[:2] + box[2:]) / 2
