"""Small media helpers shared by the input, output and eval code.

Also the two records that travel with every frame from ``input.visual`` to the writers
(``MediaItem``, ``FrameInfo``) and the expansion of a ``source`` setting (path, folder,
glob or list) into input files. Nothing heavy is imported at module level.
"""

from __future__ import annotations

import glob
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from facepriv.errors import ConfigError, MediaError
from facepriv.settings import brief

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv")
STREAM_PREFIXES = ("http://", "https://", "rtsp://", "rtmp://")
# Photo and video formats a folder may hold that facepriv cannot read: left out, with a warning.
UNREADABLE_MEDIA = (".heic", ".heif", ".avif", ".gif", ".jxl", ".dng", ".cr2", ".cr3", ".nef", ".arw",
                    ".3gp", ".mts", ".m2ts", ".flv", ".ogv", ".vob", ".mxf")
GLOB_CHARS = frozenset("*?[")
logger = logging.getLogger("facepriv.media")
# input.visual.max_megapixels: no image or video frame above this is decoded. 8K video is 33 MP.
DEFAULT_MAX_MEGAPIXELS = 50.0
BYTES_PER_PIXEL_ON_DISK = 8  # the most an uncompressed file stores (16-bit RGBA TIFF)


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def is_media(path: Path) -> bool:
    return is_image(path) or is_video(path)


def is_stream_url(source: str) -> bool:
    return source.lower().startswith(STREAM_PREFIXES)


def is_live_source(source: Any) -> bool:
    """A webcam index or a stream URL: frames that arrive, not files that can be planned."""
    text = source if isinstance(source, str) else ""
    return isinstance(source, int) or text.isdigit() or is_stream_url(text)


def supported_list() -> str:
    return ", ".join(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)


def list_media(folder: Path, recursive: bool = False) -> list[Path]:
    """Images and videos in a folder, sorted by relative path; hidden entries are left out.

    Whatever else is left out is said: sub-folders not read, files in formats facepriv
    cannot read (HEIC ...) and broken links at info or warning level, the rest at debug.
    """
    found, left_out = [], LeftOut()
    for path in folder.rglob("*") if recursive else folder.iterdir():
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            logger.debug("'%s' is hidden: left out", path)
        elif path.is_dir():
            if not recursive:
                left_out.folders.append(relative.as_posix())
        elif path.is_symlink() and not path.exists():
            left_out.broken_links.append(relative.as_posix())
        elif path.is_file() and is_media(path):
            found.append(path)
        elif path.suffix.lower() in UNREADABLE_MEDIA:
            left_out.unreadable.append(relative.as_posix())
        else:
            logger.debug("'%s' is not an image or video facepriv reads: left out", path)
    left_out.report(folder)
    return sorted(found, key=lambda path: path.relative_to(folder).as_posix())


@dataclass
class LeftOut:
    """What a folder holds besides the files it gives: said once per kind, with examples."""

    folders: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    broken_links: list[str] = field(default_factory=list)

    def report(self, folder: Path) -> None:
        if self.folders:
            logger.info("'%s': %d sub-folder(s) not read (%s): set input.visual.recursive: true to "
                        "read them", folder, len(self.folders), _examples(self.folders))
        if self.unreadable:
            logger.warning("'%s': %d file(s) in formats facepriv cannot read are left out (%s): "
                           "convert them to JPEG, PNG or MP4", folder, len(self.unreadable),
                           _examples(self.unreadable))
        if self.broken_links:
            logger.warning("'%s': %d broken link(s) left out (%s)", folder, len(self.broken_links),
                           _examples(self.broken_links))


def _examples(names: list[str], shown: int = 3) -> str:
    names = sorted(names)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


# --------------------------------------------------------------------------- what travels with a frame


@dataclass(eq=False)
class MediaItem:
    """One input of a run: every frame read from it carries the same object.

    ``failed`` is set by the reader when the file turns out to be damaged after some of
    its frames were already handed on; writers then discard what they wrote for it.
    """

    path: Path | None  # None for webcams and streams
    name: str  # the output's path relative to output_dir (posix), before any suffix change
    kind: str  # "image", "video" or "live"
    fps: float = 0.0
    frame_count: int = 0  # 0 when the container does not say
    sample_aspect_ratio: Fraction | None = None
    color_tags: dict[str, Any] = field(default_factory=dict)  # colourspace etc. for the encoder
    failed: str | None = None
    # Decodes the file again, yielding (pts, frame) exactly as the reader first handed them
    # on: lets a node look at a whole video before rendering it without holding its frames.
    replay: Callable[[], Iterator[tuple[int | None, Any]]] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class FrameInfo:
    """Where a frame came from and when it is shown: lets writers keep timing and audio."""

    item: MediaItem
    index: int
    pts: int | None = None  # presentation time in ``time_base`` units
    time_base: Fraction | None = None
    duration: int | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.pts is None or self.time_base is None else float(self.pts * self.time_base)


# --------------------------------------------------------------------------- the source setting


def expand_sources(source: str | list[Any], recursive: bool) -> tuple[list[tuple[Path, str]], bool]:
    """Turn a path, folder, glob or list of them into (file, output name) pairs.

    Returns the pairs and whether the source names exactly one file (its errors are
    then reported before the first frame instead of being skipped and counted).
    Output names are relative to the folder or glob root, so writers can mirror them.
    """
    entries = source if isinstance(source, list) else [source]
    if not entries:
        raise ConfigError("input.visual.source is an empty list: list at least one image, video or folder")
    pairs: list[tuple[Path, str]] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise ConfigError(
                f"input.visual.source list entry {brief(entry)} is not a path: a list may only hold "
                "file, folder or glob paths (use a single webcam index on its own)"
            )
        pairs.extend(_expand_one(entry, recursive))
    seen: dict[str, Path] = {}
    for path, name in pairs:
        if name in seen and seen[name] != path:
            raise ConfigError(
                f"inputs '{seen[name]}' and '{path}' would both be written as '{name}': "
                "list their common parent folder instead, or rename one"
            )
        seen[name] = path
    unique = list(dict.fromkeys(pairs))
    single = isinstance(source, str) and len(unique) == 1 and not _has_magic(source) \
        and Path(source).expanduser().is_file()
    return unique, single


def _has_magic(text: str) -> bool:
    return any(char in GLOB_CHARS for char in text)


def _expand_one(entry: str, recursive: bool) -> list[tuple[Path, str]]:
    path = Path(entry).expanduser()
    if path.is_dir():
        files = list_media(path, recursive)
        if not files:
            deeper = "" if recursive else " (set input.visual.recursive: true to look in sub-folders)"
            raise MediaError(
                f"folder '{path}' holds no images or videos{deeper}: supported are {supported_list()}"
            )
        return [(file, file.relative_to(path).as_posix()) for file in files]
    if path.is_file():
        if not is_media(path):
            raise MediaError(f"'{path}' is not a supported image or video: use one of {supported_list()}")
        return [(path, path.name)]
    if _has_magic(entry):
        root = _glob_root(path)
        matches = sorted(
            Path(found) for found in glob.glob(str(path), recursive=recursive or "**" in entry)
        )
        files = [found for found in matches if found.is_file() and is_media(found)]
        if not files:
            raise MediaError(
                f"input.visual.source pattern '{entry}' matches no images or videos: "
                f"check the pattern (supported are {supported_list()})"
            )
        return [(file, _relative_name(file, root)) for file in files]
    raise ConfigError(
        f"input.visual.source '{entry}' does not exist: give an existing image, video or folder, "
        "a glob such as 'videos/*.mp4', a webcam index such as 0, or an http/rtsp URL"
    )


def _glob_root(pattern: Path) -> Path:
    """The folder part of a glob before its first wildcard: output names start below it."""
    parts = []
    for part in pattern.parts:
        if _has_magic(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _relative_name(file: Path, root: Path) -> str:
    try:
        return file.relative_to(root).as_posix()
    except ValueError:
        return file.name


# --------------------------------------------------------------------------- pixels


class ImageRefused(MediaError):
    """An image that is not decoded: it declares more pixels than allowed, or its file is far
    larger than the picture it declares."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot read image '{path}': {reason}")
        self.reason = reason


def pixel_limit_reason(width: int, height: int, max_megapixels: float, what: str = "it is") -> str | None:
    """Why a picture of width x height is refused (None if it is within the limit)."""
    if width * height <= max_megapixels * 1e6:
        return None
    return (
        f"{what} {width}x{height} pixels ({width * height / 1e6:.1f} MP), above "
        f"input.visual.max_megapixels ({max_megapixels:g}): shrink it first, or raise that setting "
        "if this machine has the memory"
    )


def read_image(path: str | Path, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> np.ndarray | None:
    """Read an image as 3-channel BGR uint8 (EXIF orientation applied); None if unreadable.

    Its declared size is checked from the header first (``ImageRefused`` above
    ``max_megapixels``): the decoder would allocate the whole picture before decoding a
    row. Reads bytes first so paths that OpenCV's C++ API cannot open (non-ASCII names)
    still work.
    """
    import cv2

    from facepriv.media.image_header import HEADER_BYTES, image_size

    path = Path(path)
    try:
        with open(path, "rb") as handle:
            size = image_size(handle.read(HEADER_BYTES))
            if size is None:
                return None
            reason = pixel_limit_reason(*size, max_megapixels)
            largest = BYTES_PER_PIXEL_ON_DISK * size[0] * size[1] + 16 * HEADER_BYTES
            if reason is None and os.fstat(handle.fileno()).st_size > largest:
                reason = "the file is far larger than the picture it declares: it is damaged or not an image"
            if reason is not None:
                raise ImageRefused(path, reason)
            handle.seek(0)
            data = np.frombuffer(handle.read(), dtype=np.uint8)
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


# --------------------------------------------------------------------------- progress


_bars_shown = True


def hide_progress_bars() -> None:
    """Worker processes of a batch job call this: only the job's parent draws a bar.

    Their bars also get a thread lock instead of tqdm's process-shared one, which a
    killed worker would leave for the resource tracker to warn about.
    """
    import threading

    from tqdm import tqdm

    global _bars_shown
    _bars_shown = False
    tqdm.set_lock(threading.RLock())


def progress_bar(total: int | None, desc: str, unit: str, position: int = 0, leave: bool = True) -> Any:
    """A tqdm bar on stderr, shown only when stderr is a terminal.

    Piped or redirected output never gets carriage-return noise, and stdout is never
    touched. A disabled bar costs next to nothing per update.
    """
    from tqdm import tqdm

    columns = _stderr_columns()
    return tqdm(
        total=total or None, desc=desc, unit=unit, position=position, leave=leave,
        file=sys.stderr, disable=columns is None or not _bars_shown,
        dynamic_ncols=bool(columns), ncols=None if columns else 80,  # a terminal of unknown width
    )


def _stderr_columns() -> int | None:
    """The width of the terminal stderr writes to (0 if unknown), or None if not a terminal."""
    try:
        if sys.stderr is None or not sys.stderr.isatty():
            return None
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return None
