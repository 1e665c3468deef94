"""Image metadata on output: none by default, the input's on request, never a face.

OpenCV's encoders write pixels only (no EXIF, XMP, GPS or ICC), so an output encoded
from the frame is clean by construction. ``read_image`` has already turned the pixels
upright from the EXIF orientation, so a clean output displays like the input.

With ``keep_metadata`` the input's EXIF, XMP and ICC profile are copied into the output
(JPEG and PNG) with two corrections: the EXIF orientation is reset to 1 (the pixels are
already upright), and every preview image embedded in the metadata (the EXIF thumbnail,
maker-note previews, XMP thumbnails) is blanked, since it shows the faces unmasked.
"""

from __future__ import annotations

import logging
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from facepriv.errors import MediaError

logger = logging.getLogger("facepriv.image_metadata")

EXIF_HEADER = b"Exif\x00\x00"
XMP_HEADERS = (b"http://ns.adobe.com/xap/1.0/\x00", b"http://ns.adobe.com/xmp/extension/\x00")
ICC_HEADER = b"ICC_PROFILE\x00"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_KEPT_CHUNKS = {b"eXIf", b"iCCP", b"tEXt", b"zTXt", b"iTXt"}
ORIENTATION_TAG = 0x0112
XMP_THUMBNAILS = re.compile(rb"<(\w+:Thumbnails)\b.*?</\1>", re.DOTALL)
_warned_formats: set[str] = set()


def encode_image(image: np.ndarray, suffix: str, source: Path | None, keep_metadata: bool) -> bytes:
    """The bytes of an output image in the format ``suffix`` names."""
    import cv2

    ok, data = cv2.imencode(suffix, image)
    if not ok:
        raise MediaError(f"cannot encode an image as {suffix}: write it as .jpg or .png instead")
    encoded = data.tobytes()
    if not keep_metadata or source is None:
        return encoded
    try:
        original = source.read_bytes()
    except OSError:
        return encoded
    return copy_metadata(original, encoded, source.name)


def copy_metadata(original: bytes, encoded: bytes, name: str = "") -> bytes:
    """``encoded`` with the metadata of ``original`` (same format) put back, made safe."""
    if original.startswith(b"\xff\xd8") and encoded.startswith(b"\xff\xd8"):
        return _copy_jpeg(original, encoded)
    if original.startswith(PNG_SIGNATURE) and encoded.startswith(PNG_SIGNATURE):
        return _copy_png(original, encoded)
    kind = Path(name).suffix.lower()
    if kind not in _warned_formats:
        _warned_formats.add(kind)
        logger.warning("keep_metadata works for JPEG and PNG only: %s images are written without it", kind)
    return encoded


# --------------------------------------------------------------------------- JPEG


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, payload) of each segment before the image data."""
    segments, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xDA or marker == 0xD9:  # start of scan / end of image
            break
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        segments.append((marker, data[pos + 4:pos + 2 + length]))
        pos += 2 + length
    return segments


def _copy_jpeg(original: bytes, encoded: bytes) -> bytes:
    kept = []
    for marker, payload in jpeg_segments(original):
        if marker == 0xE1 and payload.startswith(EXIF_HEADER):
            payload = EXIF_HEADER + clean_exif(payload[len(EXIF_HEADER):])
        elif marker == 0xE1 and payload.startswith(XMP_HEADERS):
            payload = XMP_THUMBNAILS.sub(b"", payload)
        elif not (marker == 0xE2 and payload.startswith(ICC_HEADER)):
            continue
        kept.append(b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload)
    insert_at = 2
    segments = jpeg_segments(encoded)
    if segments and segments[0][0] == 0xE0:  # after OpenCV's JFIF header
        insert_at += 4 + len(segments[0][1])
    return encoded[:insert_at] + b"".join(kept) + encoded[insert_at:]


# --------------------------------------------------------------------------- PNG


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunks.append((kind, data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return chunks


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _copy_png(original: bytes, encoded: bytes) -> bytes:
    kept = []
    for kind, payload in png_chunks(original):
        if kind not in PNG_KEPT_CHUNKS:
            continue
        if kind == b"eXIf":
            payload = clean_exif(payload)
        elif kind == b"iTXt":
            payload = XMP_THUMBNAILS.sub(b"", payload)
        kept.append(_png_chunk(kind, payload))
    ihdr_end = len(PNG_SIGNATURE) + 12 + 13  # the IHDR chunk always comes first
    return encoded[:ihdr_end] + b"".join(kept) + encoded[ihdr_end:]


# --------------------------------------------------------------------------- EXIF (TIFF structure)


def clean_exif(tiff: bytes) -> bytes:
    """EXIF with Orientation set to 1 and every embedded JPEG (thumbnail, previews) blanked.

    Offsets stay valid, so readers still parse the rest; the preview bytes are zeros.
    """
    data = bytearray(tiff)
    start = data.find(b"\xff\xd8\xff")
    while start != -1:
        end = data.find(b"\xff\xd9", start + 3)
        end = len(data) if end == -1 else end + 2
        data[start:end] = bytes(end - start)
        start = data.find(b"\xff\xd8\xff", end)
    entry = _ifd0_entry(bytes(data), ORIENTATION_TAG)
    if entry is not None:
        order = "<" if data[:2] == b"II" else ">"
        data[entry + 8:entry + 10] = struct.pack(f"{order}H", 1)
    return bytes(data)


def _ifd0_entry(tiff: bytes, tag: int) -> int | None:
    """Byte offset of ``tag``'s 12-byte entry in IFD0, or None."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    order = "<" if tiff[:2] == b"II" else ">"
    offset = struct.unpack(f"{order}I", tiff[4:8])[0]
    if offset + 2 > len(tiff):
        return None
    count = struct.unpack(f"{order}H", tiff[offset:offset + 2])[0]
    for index in range(count):
        entry = offset + 2 + 12 * index
        if entry + 12 > len(tiff):
            return None
        if struct.unpack(f"{order}H", tiff[entry:entry + 2])[0] == tag:
            return entry
    return None


def exif_ifd0(tiff: bytes) -> dict[int, int | bytes]:
    """IFD0 tags of an EXIF block: SHORT/LONG values as ints, others as raw bytes.

    Enough to check for GPS (0x8825), Make (0x010F), Model (0x0110) and Orientation.
    """
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return {}
    order = "<" if tiff[:2] == b"II" else ">"
    offset = struct.unpack(f"{order}I", tiff[4:8])[0]
    count = struct.unpack(f"{order}H", tiff[offset:offset + 2])[0]
    sizes = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 9: 4, 10: 8}
    tags: dict[int, int | bytes] = {}
    for index in range(count):
        entry = offset + 2 + 12 * index
        tag, kind, number = struct.unpack(f"{order}HHI", tiff[entry:entry + 8])
        size = sizes.get(kind, 1) * number
        where = entry + 8 if size <= 4 else struct.unpack(f"{order}I", tiff[entry + 8:entry + 12])[0]
        raw = tiff[where:where + size]
        if kind == 3 and number == 1:
            tags[tag] = struct.unpack(f"{order}H", raw[:2])[0]
        elif kind == 4 and number == 1:
            tags[tag] = struct.unpack(f"{order}I", raw[:4])[0]
        else:
            tags[tag] = raw
    return tags


def read_exif(data: bytes) -> bytes | None:
    """The EXIF (TIFF) block of a JPEG or PNG file, or None if it has none."""
    if data.startswith(b"\xff\xd8"):
        for marker, payload in jpeg_segments(data):
            if marker == 0xE1 and payload.startswith(EXIF_HEADER):
                return payload[len(EXIF_HEADER):]
    elif data.startswith(PNG_SIGNATURE):
        for kind, payload in png_chunks(data):
            if kind == b"eXIf":
                return payload
    return None
