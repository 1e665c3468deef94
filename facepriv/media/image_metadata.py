"""Image metadata on output: none by default, on request only what cannot hold a picture.

OpenCV's encoders write pixels only (no EXIF, XMP, GPS or ICC), so an output encoded
from the frame is clean by construction. ``read_image`` has already turned the pixels
upright from the EXIF orientation, so a clean output displays like the input.

``keep_metadata`` copies back only what cannot carry a picture of the faces or the place:
the ICC profile, and EXIF rebuilt from its camera tags (make, model, dates, exposure,
artist, copyright ...) with the orientation reset to 1. Everything else is dropped, since
each of these can hold the unmasked photo or the location: XMP (phone portrait photos keep
the whole original in extended XMP, ``GImage:Data``, and a depth map in ``GDepth:Data``),
the EXIF thumbnail (IFD1), maker notes (camera previews), the GPS block, MPF secondary
images, Photoshop/IPTC (APP13, with its thumbnail), FlashPix (APP2), any EXIF value over
MAX_VALUE_BYTES and, in PNG, XMP and "Raw profile" text chunks and text over that size.
"""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import numpy as np

from facepriv.errors import MediaError

logger = logging.getLogger("facepriv.image_metadata")

EXIF_HEADER = b"Exif\x00\x00"
ICC_HEADER = b"ICC_PROFILE\x00"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_TEXT_CHUNKS = {b"tEXt", b"zTXt", b"iTXt"}
# Text chunks whose keyword says they hold XMP, EXIF or IPTC blocks (ImageMagick, exiftool).
PNG_BLOCK_KEYWORDS = (b"XML:com.adobe.xmp", b"Raw profile type")
# A value this short cannot hold a recognisable picture; longer ones are dropped.
MAX_VALUE_BYTES = 256
ORIENTATION_TAG = 0x0112
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
    """``encoded`` with the safe part of the metadata of ``original`` (same format) put back."""
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
            exif = clean_exif(payload[len(EXIF_HEADER):])
            if exif is None:
                continue
            payload = EXIF_HEADER + exif
        elif not (marker == 0xE2 and payload.startswith(ICC_HEADER)):
            continue  # XMP, MPF, FlashPix, Photoshop/IPTC, maker segments: dropped
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
        if kind == b"eXIf":
            exif = clean_exif(payload)
            if exif is None:
                continue
            payload = exif
        elif kind in PNG_TEXT_CHUNKS:
            if len(payload) > MAX_VALUE_BYTES or payload.startswith(PNG_BLOCK_KEYWORDS):
                continue
        elif kind != b"iCCP":
            continue
        kept.append(_png_chunk(kind, payload))
    ihdr_end = len(PNG_SIGNATURE) + 12 + 13  # the IHDR chunk always comes first
    return encoded[:ihdr_end] + b"".join(kept) + encoded[ihdr_end:]


# --------------------------------------------------------------------------- EXIF (TIFF structure)


# Sub-IFDs kept: the Exif IFD and its Interoperability IFD. Not GPS (0x8825), not IFD1.
SUB_IFDS = {0x8769, 0xA005}
# Tags whose values point at or hold image data, previews or other blocks.
DROPPED_TAGS = {
    0x0111, 0x0117, 0x0144, 0x0145, 0x0201, 0x0202,  # strips, tiles, JPEG thumbnail
    0x014A, 0x8825, 0x927C,  # SubIFDs, GPS, MakerNote
    0x02BC, 0x83BB, 0x8649, 0x8773, 0xC4A5, 0xEA1C,  # XMP, IPTC, Photoshop, ICC, PrintIM, padding
}
TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}
Entry = tuple[int, int, int, bytes]  # tag, type, count, value bytes


def clean_exif(tiff: bytes) -> bytes | None:
    """EXIF rebuilt from IFD0 and the Exif IFD's own short values, Orientation set to 1.

    Rebuilding (rather than blanking in place) leaves nothing behind that no kept tag
    points at: the thumbnail, maker-note previews and the GPS block are simply not
    written. None if the block does not parse (it is then dropped whole).
    """
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    order = "<" if tiff[:2] == b"II" else ">"
    try:
        tree = _read_tree(tiff, order, struct.unpack(f"{order}I", tiff[4:8])[0], depth=0)
    except (struct.error, ValueError):
        return None
    entries, children = tree
    upright = struct.pack(f"{order}H", 1) + b"\x00\x00"  # the pixels are upright already
    entries = [(tag, kind, count, upright if tag == ORIENTATION_TAG and kind == 3 else value)
               for tag, kind, count, value in entries]
    return tiff[:4] + struct.pack(f"{order}I", 8) + _write_tree((entries, children), order, 8)


def _read_tree(tiff: bytes, order: str, offset: int, depth: int) -> tuple[list[Entry], dict[int, tuple]]:
    """The kept entries of the IFD at ``offset`` and its kept sub-IFDs, by pointer tag."""
    if depth > 2 or offset < 8 or offset + 2 > len(tiff):
        raise ValueError("bad IFD offset")
    entries: list[Entry] = []
    children: dict[int, tuple] = {}
    for index in range(struct.unpack(f"{order}H", tiff[offset:offset + 2])[0]):
        at = offset + 2 + 12 * index
        tag, kind, count = struct.unpack(f"{order}HHI", tiff[at:at + 8])
        size = TYPE_SIZES.get(kind, 0) * count
        if tag in SUB_IFDS and kind in (4, 13) and count == 1:
            child = struct.unpack(f"{order}I", tiff[at + 8:at + 12])[0]
            children[tag] = _read_tree(tiff, order, child, depth + 1)
        elif tag not in DROPPED_TAGS and 0 < size <= MAX_VALUE_BYTES:
            where = at + 8 if size <= 4 else struct.unpack(f"{order}I", tiff[at + 8:at + 12])[0]
            value = tiff[where:where + size]
            if len(value) == size:
                entries.append((tag, kind, count, value))
    return entries, children


def _tree_size(tree: tuple[list[Entry], dict[int, tuple]]) -> int:
    entries, children = tree
    values = sum(len(value) + len(value) % 2 for _, _, _, value in entries if len(value) > 4)
    own = 2 + 12 * (len(entries) + len(children)) + 4 + values
    return own + sum(_tree_size(child) for child in children.values())


def _write_tree(tree: tuple[list[Entry], dict[int, tuple]], order: str, start: int) -> bytes:
    """The IFD at ``start``, its values, then its sub-IFDs, with every offset made right."""
    entries, children = tree
    count = len(entries) + len(children)
    values_at = start + 2 + 12 * count + 4
    rows: list[tuple[int, bytes]] = []
    values = b""
    for tag, kind, number, value in entries:
        if len(value) <= 4:
            rows.append((tag, struct.pack(f"{order}HHI", tag, kind, number) + value.ljust(4, b"\x00")))
        else:
            rows.append((tag, struct.pack(f"{order}HHII", tag, kind, number, values_at + len(values))))
            values += value + b"\x00" * (len(value) % 2)
    child_at = values_at + len(values)
    blobs = b""
    for tag, child in sorted(children.items()):
        rows.append((tag, struct.pack(f"{order}HHII", tag, 4, 1, child_at + len(blobs))))
        blobs += _write_tree(child, order, child_at + len(blobs))
    table = b"".join(row for _, row in sorted(rows))
    return struct.pack(f"{order}H", count) + table + struct.pack(f"{order}I", 0) + values + blobs


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
