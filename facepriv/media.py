"""Small media helpers shared by the input, output and eval code."""

from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv")
STREAM_PREFIXES = ("http://", "https://", "rtsp://", "rtmp://")


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def is_stream_url(source: str) -> bool:
    return source.lower().startswith(STREAM_PREFIXES)


def list_media(folder: Path) -> list[Path]:
    """Images and videos in a folder (not recursive), sorted by name."""
    return sorted(
        path for path in folder.iterdir()
        if path.is_file() and not path.name.startswith(".") and (is_image(path) or is_video(path))
    )


def read_image(path: str | Path) -> np.ndarray | None:
    """Read an image as 3-channel BGR uint8 (EXIF orientation applied); None if unreadable.

    Reads bytes first so paths that OpenCV's C++ API cannot open (non-ASCII names)
    still work.
    """
    import cv2

    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def to_bgr(image: np.ndarray) -> np.ndarray:
    """Grey or 4-channel frames to 3-channel BGR, so every node sees one layout."""
    import cv2

    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image
