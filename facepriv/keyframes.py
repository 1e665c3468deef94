"""Key-frame detection: run the face detector on some video frames and decide the rest.

Detection is most of a run's time, yet consecutive frames mostly hold the same faces in
nearly the same places. With ``detect_every`` n > 1, a video's frames wait in a queue
while a background thread detects every n-th one (and the first and last of each file,
and both sides of every abrupt change of picture, such as a cut). Between two detected
frames the faces are decided by comparing their detections:

* **they agree** (every face of one matches a face of the other, overlapping by at least
  ``min_iou``): the frames between get each face's box moved linearly from one to the
  other, with the lower of its two scores (with a ``report_score``, a face just under the
  detector's threshold on one frame, in the same place, still matches: see ``compare``).
  A faint box (scoring under ``faint_score``) found on one of the two only does not make
  them disagree: the detector's false boxes
  come and go at low scores, and detecting again for each would cost most of the time
  saved. Such a box is kept, where it was found, on every frame between (hiding more);
* **they disagree** (a face appeared, vanished or moved more than that): the frame
  halfway between is detected too, and both halves are decided the same way, down to
  detecting every frame of a stretch where faces come and go.

So a face that is on screen at any detected frame is found on every frame between it and
the next detected frame that agrees, and a face must come and go entirely between two
agreeing detected frames, fewer than n frames apart, to be missed. The detector thread
runs while the main thread decodes, tracks, draws and encodes: on two cores, detection
overlaps the rest of the run. Frames leave in order; photos and live frames are detected
each on its own (a live frame cannot wait for later ones).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from facepriv.camera_motion import IDENTITY, CameraMotion, next_to_scene
from facepriv.geometry import iou_matrix, match_boxes, normalise_boxes, pixel_boxes, transform_boxes

Detections = tuple[np.ndarray, np.ndarray, np.ndarray]  # (N x 4 pixel boxes, N scores, N labels)
# Thumbnails of consecutive frames of one shot correlate at 0.6 or more, across a cut at
# 0.38 or less (camera_motion.py's calibration): below this the picture changed abruptly,
# and both frames are detected. Not when either frame is flat (a fade through black): its
# thumbnail is noise, and the stretch's own comparison finds the faces that come with the
# next picture.
ABRUPT_CHANGE = 0.6
# The camera's motion, estimated, turns and scales boxes a little on every frame; the frames
# between two detected ones follow it only if it matches their faces clearly better.
SCENE_MARGIN = 0.1


@dataclass
class _Frame:
    pool: dict[str, Any]
    chain: object | None  # frames of one video file share it; None: decided on its own
    to_scene: np.ndarray  # normalised frame coordinates -> the shot's first frame's (camera motion)
    job: Future[Detections] | None = None
    result: Detections | None = None  # the faces handed on
    found: Detections | None = None  # a detected frame's boxes down to the match score, for comparing

    @property
    def decided(self) -> bool:
        return self.result is not None

    @property
    def detected(self) -> bool:
        return self.job is not None


class KeyFrameDetector:
    """Frames in, frames out in the same order, each with its face boxes decided.

    ``detect(image, pool)`` returns pixel boxes, scores and labels and handles its own
    errors; it runs on one background thread. Should it raise all the same, the frame gets
    ``whole_frame(image)`` (boxes over the whole frame), for privacy.
    """

    def __init__(
        self,
        detect: Callable[[np.ndarray, dict[str, Any]], Detections],
        whole_frame: Callable[[np.ndarray], Detections],
        every: int,
        min_iou: float,
        faint_score: float = 0.0,
        report_score: float = 0.0,
    ) -> None:
        self._detect, self._whole_frame = detect, whole_frame
        self.every, self.min_iou, self.faint_score = every, min_iou, faint_score
        self.report_score = report_score
        self.max_waiting = 3 * every + 2  # the next key frame is detected while a stretch is decided
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facepriv-detect")
        self._frames: deque[_Frame] = deque()
        self._chain: object | None = None
        self._anchor: _Frame | None = None  # the last detected frame handed on
        self._since_key = 0
        self._motion = CameraMotion()
        self._to_scene = IDENTITY
        self._recent_faces = np.zeros((0, 4))  # normalised boxes of the newest detected frame

    # ------------------------------------------------------------------ frames in
    def add(self, pool: dict[str, Any], chain: object | None) -> None:
        """Queue a frame; ``chain`` identifies its video file (None: decide it on its own).

        A video frame's camera motion since the frame before is put in the pool under
        ``camera_motion`` (a ``MotionStep``), so that a tracker after this node need not
        estimate it again."""
        if chain is None or chain is not self._chain:
            self.end_chain()
            self._motion, self._to_scene = CameraMotion(), IDENTITY
        step = None
        if chain is not None:
            step = self._motion.update(pool["img"])
            self._motion.avoid(self._recent_faces)
            pool["camera_motion"] = step
            self._to_scene = next_to_scene(self._to_scene, step)
        frame = _Frame(pool, chain, self._to_scene)
        if chain is None or chain is not self._chain or self._since_key + 1 >= self.every:
            self._submit(frame)
            self._since_key = 0
        elif step is not None and not step.flat and (step.cut or step.resemblance < ABRUPT_CHANGE):
            if self._frames and not self._frames[-1].detected:
                self._submit(self._frames[-1])
            self._submit(frame)
            self._since_key = 0
        else:
            self._since_key += 1
        self._chain = chain
        self._frames.append(frame)

    def end_chain(self) -> None:
        """The current file ended: its last frame is detected, so its last stretch is decided."""
        if self._frames and not self._frames[-1].detected:
            self._submit(self._frames[-1])
        self._chain = None

    # ------------------------------------------------------------------ frames out
    def ready(self) -> bool:
        self._decide()
        return bool(self._frames) and self._frames[0].decided

    def full(self) -> bool:
        return len(self._frames) >= self.max_waiting

    def __len__(self) -> int:
        return len(self._frames)

    def pop(self, wait: bool) -> tuple[dict[str, Any], Detections] | None:
        """The oldest frame and its faces once decided; with ``wait``, waits for them."""
        while not self.ready():
            if not wait or not self._frames:
                return None
            if not self._wait_for_oldest_job():  # the newest frames wait for a key frame
                self._submit(self._frames[-1])
        frame = self._frames.popleft()
        if frame.detected:
            self._anchor = frame
        assert frame.result is not None
        return frame.pool, frame.result

    def clear(self) -> None:
        """Forget every waiting frame (a run that stopped early); detections under way are dropped."""
        for frame in self._frames:
            if frame.job is not None:
                frame.job.cancel()
        self._frames.clear()
        self._chain = self._anchor = None
        self._since_key = 0
        self._motion, self._to_scene = CameraMotion(), IDENTITY

    def close(self) -> None:
        self.clear()
        self._executor.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ deciding
    def _submit(self, frame: _Frame) -> None:
        frame.job = self._executor.submit(self._detect, frame.pool["img"], frame.pool)

    def _collect(self, frame: _Frame) -> bool:
        """Whether the frame's detection is in (moving it to ``result``)."""
        if frame.result is None and frame.job is not None and frame.job.done():
            if frame.job.exception() is None:
                frame.found = frame.job.result()
            else:
                frame.found = self._whole_frame(frame.pool["img"])
            reported = frame.found[1] >= self.report_score
            frame.result = tuple(part[reported] for part in frame.found)  # type: ignore[assignment]
            height, width = frame.pool["img"].shape[:2]
            self._recent_faces = normalise_boxes(frame.result[0], width, height)
        return frame.result is not None and frame.job is not None

    def _wait_for_oldest_job(self) -> bool:
        """Wait for the oldest detection still running; False when none is."""
        for frame in self._frames:
            if frame.job is not None and not frame.job.done():
                try:
                    frame.job.result()
                except Exception:  # noqa: BLE001, S110 - _collect masks the frame
                    pass
                return True
        return False

    def _decide(self) -> None:
        """Decide the stretches between consecutive detected frames whose results are in.

        Indices are positions in the queue; the frame handed on last, if it was detected,
        sits at -1, since the frames after it may still wait for the next detection."""
        start, start_index = self._anchor, -1
        for index, frame in enumerate(self._frames):
            if frame.job is None:
                continue
            if not self._collect(frame):
                return  # frames are decided oldest first; this one is still being detected
            if start is not None and index - start_index > 1 and start.chain is frame.chain:
                self._decide_between(start, start_index, index)
            start, start_index = frame, index

    def _decide_between(self, first: _Frame, start: int, end: int) -> None:
        """Compare the faces of two detected frames in the picture and where the camera's
        motion puts them in the scene (the first frame of the shot), so that a pan or a zoom
        is no disagreement. Frames between follow whichever matches the faces better: the
        scene when the camera moved, the picture when it did not (an estimate of the camera's
        motion taken from a big waving arm drifts, and the masks would grow with it)."""
        last = self._frames[end]
        assert first.found is not None and last.found is not None
        if self._frames[end - 1].decided:
            return  # decided on an earlier call
        # Weak boxes (keyframe_match_share) match in the picture only: carried along the
        # estimated camera motion through pans and zooms they strayed off the faces.
        in_picture = compare(first.found, last.found, self.min_iou, self.faint_score, self.report_score)
        in_scene = compare(_in_scene(first), _in_scene(last), self.min_iou, self.faint_score)
        if in_picture is None and in_scene is None:
            self._submit(self._frames[(start + end) // 2])
            return
        if in_picture is not None and in_scene is not None:  # the scene if it explains the faces better
            scene_better = in_scene.overlap > in_picture.overlap + SCENE_MARGIN
            in_picture, in_scene = (None, in_scene) if scene_better else (in_picture, None)
        for index in range(start + 1, end):
            frame, share = self._frames[index], (index - start) / (end - start)
            if in_picture is not None:
                frame.result = in_picture.at(share)
                continue
            assert in_scene is not None
            boxes, scores, labels = in_scene.at(share)
            moved = transform_boxes(np.linalg.inv(frame.to_scene), boxes)
            height, width = frame.pool["img"].shape[:2]
            frame.result = (pixel_boxes(moved, width, height), scores, labels)


@dataclass
class Stretch:
    """How the faces of two detected frames relate, once they agree: the boxes of the
    frames between, at any share of the way from the first to the second."""

    first: Detections
    second: Detections
    pairs: list[tuple[int, int]]  # (row in first, row in second): the same face
    faint_first: list[int]  # faint boxes of the first frame only, kept as they are
    faint_second: list[int]
    overlap: float = 1.0  # mean IoU of the matched faces: how well the comparison explains them

    def at(self, share: float) -> Detections:
        (boxes_a, scores_a, labels_a), (boxes_b, scores_b, labels_b) = self.first, self.second
        rows_a, rows_b = [a for a, _ in self.pairs], [b for _, b in self.pairs]
        moved = (1 - share) * boxes_a[rows_a] + share * boxes_b[rows_b]
        boxes = np.vstack([moved.reshape(-1, 4), boxes_a[self.faint_first], boxes_b[self.faint_second]])
        scores = np.concatenate([np.minimum(scores_a[rows_a], scores_b[rows_b]),
                                 scores_a[self.faint_first], scores_b[self.faint_second]])
        labels = np.concatenate([labels_a[rows_a], labels_a[self.faint_first], labels_b[self.faint_second]])
        return boxes.astype(np.float32), scores.astype(np.float32), labels


def compare(first: Detections, second: Detections, min_iou: float, faint_score: float,
            report_score: float = 0.0) -> Stretch | None:
    """The faces of two detected frames matched one to one (same label, overlapping by
    ``min_iou`` or more, best overlap first), or None when they disagree: a box of either
    frame scoring ``faint_score`` or more is left without a match.

    Boxes scoring under ``report_score`` (the detector's threshold; the frames were detected
    lower) only match: a face scoring above it on one frame and just under it on the other
    is the same face, kept on the frames between (hysteresis: a face near the threshold
    flickers across it). Matched on neither side above it, or left without a match, such a
    box is dropped."""
    (boxes_a, scores_a, labels_a), (boxes_b, scores_b, labels_b) = first, second
    pairs = match_boxes(boxes_a, labels_a, boxes_b, labels_b, min_iou)
    matched = iou_matrix(boxes_a, boxes_b)
    mean_overlap = float(np.mean([matched[a, b] for a, b in pairs])) if pairs else 1.0
    paired_a, paired_b = {a for a, _ in pairs}, {b for _, b in pairs}
    only_a = [a for a in range(len(boxes_a)) if a not in paired_a and scores_a[a] >= report_score]
    only_b = [b for b in range(len(boxes_b)) if b not in paired_b and scores_b[b] >= report_score]
    if any(scores_a[only_a] >= faint_score) or any(scores_b[only_b] >= faint_score):
        return None
    reported = [(a, b) for a, b in pairs if max(scores_a[a], scores_b[b]) >= report_score]
    return Stretch(first, second, reported, only_a, only_b, mean_overlap)


def _in_scene(frame: _Frame) -> Detections:
    """A detected frame's boxes (those it hands on) in normalised scene coordinates."""
    assert frame.result is not None
    boxes, scores, labels = frame.result
    height, width = frame.pool["img"].shape[:2]
    return transform_boxes(frame.to_scene, normalise_boxes(boxes, width, height)), scores, labels
