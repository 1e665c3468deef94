"""How the picture moved between two video frames, and where one shot cuts to the next.

A mask held for a face the detector missed must move with that face. When the camera
pans or zooms, the whole picture moves, and a box left where the face was, or moved on
with the face's last velocity, drifts onto walls. So each frame is compared with the one
before: corners are followed with pyramidal Lucas-Kanade optical flow on a small grey
copy of the frame and a similarity transform (shift, zoom, a little rotation) is fitted
to them robustly (RANSAC), which the tracker applies to every box it holds.

A hard cut is a frame whose corners mostly cannot be followed from the frame before AND
whose thumbnail no longer resembles the one before; either sign alone also comes from
blur, fast motion or a textureless wall. After a cut nothing is held over and nothing is
back-filled across it. Transforms work on normalised [0, 1] coordinates, like the boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facepriv.geometry import grow_boxes
from facepriv.masking import pixel_regions

WORK_WIDTH = 320  # the frame is looked at this wide: enough for the camera's motion, ~2 ms a frame
MAX_CORNERS = 160
MIN_CORNERS = 12  # fewer than this to follow: the motion is unknown (taken as none), not a cut
FACE_MARGIN = 1.5
THUMBNAIL = (32, 18)  # compared as a whole: a new shot rarely resembles the last one at this size
FLAT_CONTRAST = 3.0  # grey levels (standard deviation of the small grey frame): nothing to compare


@dataclass(frozen=True)
class MotionStep:
    """The previous frame's normalised coordinates to this frame's (3x3), and whether a cut lies between."""

    matrix: np.ndarray
    cut: bool
    followed: float  # share of the corners the fitted motion explains (1.0 when nothing to follow)
    resemblance: float  # correlation of the two frames' thumbnails (1.0 for the first frame)
    # One of the two frames has almost no contrast (a fade through black, a blank frame): its
    # thumbnail is noise, and a low resemblance says nothing about a change of picture.
    flat: bool = False


IDENTITY = np.eye(3)


def next_to_scene(previous: np.ndarray | None, step: MotionStep | None) -> np.ndarray:
    """A frame's transform to its shot's first frame (normalised coordinates), from the
    previous frame's (None: this frame starts the video) and the motion since: a cut
    starts a new shot, no motion (None) keeps the picture still."""
    if previous is None or (step is not None and step.cut):
        return IDENTITY
    return previous if step is None else previous @ np.linalg.inv(step.matrix)


class CameraMotion:
    """Feed frames in order; each call says how the picture moved since the last one."""

    def __init__(self, cut_followed: float = 0.15, cut_resemblance: float = 0.5) -> None:
        # Measured on 5 generated clips (35 cuts) and 5 real ones: at cuts at most 6 % of the
        # corners are followed and thumbnails correlate at most 0.38; elsewhere at least 9 %
        # are followed and thumbnails correlate at least 0.60, never both low at once.
        self.cut_followed, self.cut_resemblance = cut_followed, cut_resemblance
        self._grey: np.ndarray | None = None
        self._corners: np.ndarray | None = None
        self._thumbnail: np.ndarray | None = None
        self._flat = False  # the last frame had almost no contrast

    def update(self, image: np.ndarray) -> MotionStep:
        """How the picture moved since the last frame; call ``avoid`` next."""
        grey = _small_grey(image)
        tiny = thumbnail(grey)
        flat = float(grey.std()) < FLAT_CONTRAST
        if self._grey is None or self._thumbnail is None:
            step = MotionStep(IDENTITY, cut=False, followed=1.0, resemblance=1.0, flat=flat)
        elif self._grey.shape != grey.shape:
            step = MotionStep(IDENTITY, cut=True, followed=0.0, resemblance=0.0)  # the frame size changed
        else:
            resemblance = float((self._thumbnail * tiny).sum())
            followed, matrix = self._follow(self._grey, grey, self._corners)
            cut = followed < self.cut_followed and resemblance < self.cut_resemblance
            step = MotionStep(IDENTITY if cut else matrix, cut, followed, resemblance, flat or self._flat)
        self._grey, self._thumbnail, self._corners, self._flat = grey, tiny, None, flat
        return step

    def avoid(self, faces: np.ndarray) -> None:
        """Pick the corners to follow into the next frame outside ``faces`` (normalised boxes
        of the faces found or held in the last frame): a face that walks or turns must not be
        taken for the camera."""
        if self._grey is not None:
            self._corners = _corners(self._grey, faces)

    def _follow(self, before: np.ndarray, after: np.ndarray,
                corners: np.ndarray | None) -> tuple[float, np.ndarray]:
        """(share of corners the motion explains, the motion); identity when it cannot be trusted."""
        if corners is None:  # no faces to avoid were given
            corners = _corners(before, None)
        if corners is None or len(corners) < MIN_CORNERS:
            return 1.0, IDENTITY  # nothing to follow (a wall, the dark): no sign of a cut either
        moved, status, _ = cv2.calcOpticalFlowPyrLK(before, after, corners, None, winSize=(21, 21),
                                                     maxLevel=3)
        found = status.reshape(-1).astype(bool)
        if found.sum() < MIN_CORNERS:
            return 0.0, IDENTITY
        fitted, inliers = cv2.estimateAffinePartial2D(
            corners[found], moved[found], method=cv2.RANSAC, ransacReprojThreshold=1.5,
            maxIters=200, confidence=0.99)
        if fitted is None:
            return 0.0, IDENTITY
        followed = float(inliers.sum()) / len(corners)
        if followed < self.cut_followed:
            return followed, IDENTITY  # too few corners agree to trust the fit
        return followed, _normalised(fitted, before.shape[1], before.shape[0])


def _small_grey(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    scale = min(1.0, WORK_WIDTH / max(width, 1))
    size = (max(int(round(width * scale)), 8), max(int(round(height * scale)), 8))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else image
    return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small


def _corners(grey: np.ndarray, faces: np.ndarray | None) -> np.ndarray | None:
    """Corners outside the faces; all corners when faces fill the frame (a close-up)."""
    mask = _background(grey.shape, faces)
    corners = cv2.goodFeaturesToTrack(grey, MAX_CORNERS, qualityLevel=0.01, minDistance=7, blockSize=7,
                                      mask=mask)
    if mask is not None and (corners is None or len(corners) < 2 * MIN_CORNERS):
        corners = cv2.goodFeaturesToTrack(grey, MAX_CORNERS, qualityLevel=0.01, minDistance=7, blockSize=7)
    return corners


def _background(shape: tuple[int, ...], faces: np.ndarray | None) -> np.ndarray | None:
    """A mask of the frame without the faces (grown 1.5x, hair and shoulders move with them)."""
    if faces is None or len(faces) == 0:
        return None
    height, width = shape[:2]
    mask = np.full((height, width), 255, dtype=np.uint8)
    for x1, y1, x2, y2 in pixel_regions(grow_boxes(faces, FACE_MARGIN), width, height):
        mask[y1:y2, x1:x2] = 0
    return mask


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A tiny grey, zero-mean, unit-norm copy of a grey or BGR image: the dot product of
    two is their correlation."""
    tiny = cv2.resize(image, THUMBNAIL, interpolation=cv2.INTER_AREA)
    if tiny.ndim == 3:
        tiny = cv2.cvtColor(np.ascontiguousarray(tiny[:, :, :3]), cv2.COLOR_BGR2GRAY)
    tiny = tiny.astype(np.float32)
    tiny -= tiny.mean()
    return tiny / (float(np.linalg.norm(tiny)) + 1e-6)


def _normalised(fitted: np.ndarray, width: int, height: int) -> np.ndarray:
    """A pixel-space 2x3 transform as a 3x3 one on normalised coordinates."""
    pixels = np.vstack([fitted, [0.0, 0.0, 1.0]])
    to_pixels = np.diag([float(width), float(height), 1.0])
    return np.linalg.inv(to_pixels) @ pixels @ to_pixels
