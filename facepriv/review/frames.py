"""Frames of an input or output for the review page, and a drawn box carried through a shot.

Frames are decoded with facepriv's own reader (the frames and indices ``run`` and
``render`` see) and encoded as JPEG with OpenCV, one at a time: a page asks for the frame
it shows. Stepping forward decodes on from where the reader is; stepping back reopens
the file. A small cache keeps the frames last asked for.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from facepriv.camera_motion import CameraMotion
from facepriv.geometry import transform_boxes
from facepriv.media import reading
from facepriv.media.video import VideoReader

CACHED_FRAMES = 48
JPEG_QUALITY = 85
FOLLOW_WIDTH = 320  # frames are shrunk to this width to follow the camera (CameraMotion's own scale)


class FrameSource:
    """Random access to the frames of one image or video file, thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._frames: Iterator[np.ndarray] | None = None
        self._position = 0  # index of the frame ``_frames`` yields next
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def frame(self, index: int) -> np.ndarray | None:
        """Frame ``index`` as BGR, or None past the end."""
        with self._lock:
            if index in self._cache:
                self._cache.move_to_end(index)
                return self._cache[index]
            image = self._decode(index)
            if image is not None:
                self._cache[index] = image
                while len(self._cache) > CACHED_FRAMES:
                    self._cache.popitem(last=False)
            return image

    def jpeg(self, index: int) -> bytes | None:
        image = self.frame(index)
        if image is None:
            return None
        return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes()

    def small_frames(self, first: int, last: int) -> list[np.ndarray]:
        """Frames ``first`` to ``last`` (inclusive, fewer at the end of the file), in order,
        shrunk to the width the camera's motion is measured at (memory stays small)."""
        found = []
        for index in range(max(first, 0), last + 1):
            image = self.frame(index)
            if image is None:
                break
            found.append(_small(image))
        return found

    def forget(self) -> None:
        """The file was replaced (a render): decode it again."""
        with self._lock:
            self._close()
            self._cache.clear()

    def _decode(self, index: int) -> np.ndarray | None:
        if index < 0:
            return None
        if reading.is_image(self.path):
            return reading.read_image(self.path) if index == 0 else None
        if self._frames is None or index < self._position:
            self._close()
            self._frames = (decoded.image for decoded in VideoReader(self.path).frames())
            self._position = 0
        for image in self._frames:
            self._position += 1
            if self._position - 1 == index:
                return reading.to_bgr(image)
        self._close()
        return None

    def _close(self) -> None:
        if self._frames is not None:
            self._frames.close()  # type: ignore[attr-defined]
        self._frames, self._position = None, 0


def follow_box(frames: list[np.ndarray], start: int, box: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Carry a normalised box drawn on ``frames[start]`` to the other frames of the list.

    The box moves with the picture (the camera's pans, zooms and shake, as CameraMotion
    measures them outside the box), not with the person in it: draw it large enough for
    their movement. It stops at a cut, forward and backward, since the next shot shows
    something else. Returns (position in ``frames``, box) pairs, ``start`` included.
    """
    carried = [(start, np.asarray(box, dtype=np.float64))]
    for step in (1, -1):
        motion = CameraMotion()
        current = np.asarray(box, dtype=np.float64).reshape(1, 4)
        motion.update(frames[start])
        motion.avoid(current)
        index = start + step
        while 0 <= index < len(frames):
            moved = motion.update(frames[index])
            if moved.cut:
                break
            current = transform_boxes(moved.matrix, current)
            motion.avoid(current)
            carried.append((index, current[0]))
            index += step
    return sorted(carried, key=lambda pair: pair[0])


def _small(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    if width <= FOLLOW_WIDTH:
        return image
    size = (FOLLOW_WIDTH, max(8, round(height * FOLLOW_WIDTH / width)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
