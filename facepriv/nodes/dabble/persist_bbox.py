"""dabble.persist_bbox: face (and plate...) masks that persist across detection gaps.

A detector that misses a face for one frame in thirty publishes that face. This node
tracks faces (``facepriv.tracking``), following the camera's motion and cuts
(``facepriv.camera_motion``), and adds a box for every face that persists in a frame
without its detection; ``bbox_held`` marks those boxes and ``bbox_tracks`` gives each box
its track id (unique within a video; output.tracks writes them). Each label is tracked on
its own and a held box keeps its label.

To fill a gap from both sides, or mask a face before its first detection, a frame must
wait for later ones. Video frames therefore wait (``lookahead: window``, a bounded
number of frames in memory) or the whole file is looked at first and its frames decoded
again for rendering (``lookahead: file``, boxes only in memory). Waiting frames are
handed on through the runner's hold/``pending`` protocol, in order, before the next file
starts. Images, live sources and frames without ``frame_info`` are decided at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from facepriv.camera_motion import CameraMotion
from facepriv.media.reading import MediaItem
from facepriv.node import AbstractNode
from facepriv.runner import HeldFrame
from facepriv.tracking import FaceTracks, Track, TrackSettings


@dataclass
class _Waiting:
    time: int
    pool: dict[str, Any]
    item: MediaItem | None
    tracks: FaceTracks | None
    shape: tuple[int, ...]
    owners: list[Track]  # the track of each detection


class Node(AbstractNode):
    """Adds held, interpolated and back-filled face boxes; hands frames on in order."""

    def __init__(self, config: dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.settings = TrackSettings(
            hold_frames=self.hold_frames, backfill_frames=self.backfill_frames,
            min_detections=self.min_detections, confirm_score=self.confirm_score,
            confirm_frames=self.confirm_frames,
            predict_frames=self.predict_frames,
            growth_per_frame=self.growth_per_frame, max_growth=self.max_growth,
            min_iou=self.min_iou, max_jump=self.max_jump,
        )
        self._motion: CameraMotion | None = None
        self._waiting: deque[_Waiting] = deque()
        self._item: MediaItem | None = None
        self._tracks: FaceTracks | None = None
        self._newest = -1
        self._end: dict[str, Any] | None = None
        self._replay: Iterator[tuple[int | None, np.ndarray]] | None = None
        self._replay_item: MediaItem | None = None

    # ------------------------------------------------------------------ node contract
    def run(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        if not inputs:  # the runner asks for a waiting frame
            return self._hand_on()
        if inputs.get("pipeline_end"):
            if not self._waiting:
                return {}
            self._end = dict(inputs)
            return None
        self._take(dict(inputs))
        return self._hand_on()

    def pending(self) -> bool:
        if self._waiting:
            return self._ready(self._waiting[0])
        return self._end is not None

    def release(self, completed: bool = True) -> None:
        self._close_replay()
        self._waiting.clear()

    # ------------------------------------------------------------------ frames in
    def _take(self, pool: dict[str, Any]) -> None:
        info = pool.get("frame_info")
        item = info.item if info is not None else None
        if item is None or item is not self._item:
            self._item = item
            tracked = item is not None and item.kind in ("video", "live")  # a photo is one frame
            self._tracks = FaceTracks(self.settings) if tracked else None
            self._motion = CameraMotion() if tracked and self.camera_motion else None
        time = info.index if info is not None else 0
        self._newest = time
        image = pool["img"]
        owners: list[Track] = []
        if self._tracks is not None:
            # A detector on key frames has followed the camera already (model.centerface detect_every).
            shared = pool.get("camera_motion") if self._motion is not None else None
            motion = shared or (self._motion.update(image) if self._motion is not None else None)
            owners = self._tracks.add(time, pool["bboxes"], pool["bbox_scores"], motion,
                                      labels=pool.get("bbox_labels"))
            if self._motion is not None and shared is None:
                held, _, _ = self._tracks.masks_at(time)
                self._motion.avoid(np.vstack([np.reshape(pool["bboxes"], (-1, 4)), held]))
        if self._delay(item) == float("inf"):
            pool["img"] = None  # decoded again when the frame is handed on
        self._waiting.append(_Waiting(time, pool, item, self._tracks, image.shape, owners))

    def _delay(self, item: MediaItem | None) -> float:
        if item is None or item.kind != "video" or self.lookahead == "none":
            return 0
        if self.lookahead == "file" and item.replay is not None:
            return float("inf")
        return max(self.hold_frames, self.backfill_frames, self.window_frames)

    def _ready(self, waiting: _Waiting) -> bool:
        if self._end is not None or waiting.item is not self._item:
            return True
        return self._newest - waiting.time >= self._delay(waiting.item)

    # ------------------------------------------------------------------ frames out
    def _hand_on(self) -> dict[str, Any] | None:
        if self._waiting and self._ready(self._waiting[0]):
            return self._finish(self._waiting.popleft())
        if not self._waiting and self._end is not None:
            end, self._end = self._end, None
            return end
        return None

    def _finish(self, waiting: _Waiting) -> dict[str, Any]:
        pool = waiting.pool
        boxes = np.asarray(pool["bboxes"], dtype=np.float32).reshape(-1, 4)
        labels, scores = np.asarray(pool["bbox_labels"]), np.asarray(pool["bbox_scores"], dtype=np.float32)
        # A photo's (or an untracked frame's) boxes are each their own track.
        ids = np.array([track.id for track in waiting.owners] if waiting.owners else range(len(boxes)),
                       dtype=np.int64)
        if waiting.owners and self.drop_unconfirmed and self._delay(waiting.item) > 0:
            kept = np.array([score >= self.confirm_score or track.confirmed(self.settings)
                             for score, track in zip(scores, waiting.owners, strict=True)], dtype=bool)
            boxes, labels, scores, ids = boxes[kept], labels[kept], scores[kept], ids[kept]
        held = np.zeros(len(boxes), dtype=bool)
        if waiting.tracks is not None:
            extra, extra_scores, extra_labels, extra_ids = waiting.tracks.held_at(waiting.time)
            if len(extra):
                boxes = np.vstack([boxes, np.clip(extra, 0.0, 1.0).astype(np.float32)])
                labels = np.concatenate([labels, extra_labels])  # a held plate stays a plate
                scores = np.concatenate([scores, extra_scores])
                held = np.concatenate([held, np.ones(len(extra), dtype=bool)])
                ids = np.concatenate([ids, extra_ids])
            waiting.tracks.forget_before(waiting.time + 1)
        if pool["img"] is None:
            pool["img"] = self._replayed(waiting)
        pool.update(bboxes=boxes, bbox_labels=labels, bbox_scores=scores, bbox_held=held, bbox_tracks=ids)
        return HeldFrame(pool)  # the whole pool of its own frame, which may not be the tick's

    def _replayed(self, waiting: _Waiting) -> np.ndarray:
        """The frame decoded again; if the file does not decode the same, the item fails."""
        item, info = waiting.item, waiting.pool["frame_info"]
        assert item is not None and item.replay is not None
        if self._replay_item is not item:
            self._close_replay()
            self._replay, self._replay_item = item.replay(), item
        try:
            pts, image = next(self._replay)  # type: ignore[arg-type]
        except StopIteration:
            pts, image, reason = None, None, "it decoded differently the second time (fewer frames)"
        except Exception as err:  # noqa: BLE001 - any decoder failure fails the file, not the run
            pts, image, reason = None, None, f"decoding it again failed ({type(err).__name__}: {err})"
        else:
            reason = "" if pts == info.pts and image.shape == waiting.shape else \
                "it decoded differently the second time"
        if reason:
            if item.failed is None:
                item.failed = f"{reason}: its output is discarded"
                self.logger.error("'%s': %s", item.path, item.failed)
                self.failed_items.append(f"{item.path}: {item.failed}")
            return np.zeros(waiting.shape, dtype=np.uint8)
        return image

    def _close_replay(self) -> None:
        if self._replay is not None:
            self._replay.close()  # type: ignore[attr-defined]
        self._replay, self._replay_item = None, None
