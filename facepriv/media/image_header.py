"""The pixel size an image file declares, read from its header without decoding it.

A decoder allocates the whole picture as soon as it has read the header: a 2.6 MB PNG
that declares 30000 x 30000 pixels costs gigabytes before the first row is decoded. So
the size is read here first, for every format input.visual accepts (JPEG, PNG, BMP,
TIFF, WebP, told apart by their first bytes, not their names), and a picture above the
limit is refused before OpenCV sees it. A header that does not parse is a damaged file.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

# JPEG start-of-frame markers: baseline, progressive, lossless, arithmetic ... (not DHT C4, JPG C8, DAC CC)
JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
JPEG_NO_LENGTH = {0x01, *range(0xD0, 0xD9)}  # TEM, RST0-7, SOI
HEADER_BYTES = 1 << 20  # enough for any header; a JPEG's frame header may follow large metadata


def image_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) declared by an image's first bytes, or None if they do not parse."""
    for magic, reader in _READERS:
        if head.startswith(magic):
            try:
                size = reader(head)
            except (struct.error, IndexError):
                return None
            return size if size and size[0] > 0 and size[1] > 0 else None
    return None


def _png(head: bytes) -> tuple[int, int] | None:
    if head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


def _jpeg(head: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in JPEG_NO_LENGTH:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before them
            return None
        if marker in JPEG_SOF:
            height, width = struct.unpack(">HH", head[pos + 5:pos + 9])
            return width, height
        pos += 2 + struct.unpack(">H", head[pos + 2:pos + 4])[0]
    return None


def _bmp(head: bytes) -> tuple[int, int] | None:
    if struct.unpack("<I", head[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER
        return struct.unpack("<HH", head[18:22])
    width, height = struct.unpack("<ii", head[18:26])
    return abs(width), abs(height)  # a negative height means top-down rows


def _tiff(head: bytes) -> tuple[int, int] | None:
    order = "<" if head[:2] == b"II" else ">"
    offset = struct.unpack(f"{order}I", head[4:8])[0]
    found: dict[int, int] = {}
    for index in range(struct.unpack(f"{order}H", head[offset:offset + 2])[0]):
        at = offset + 2 + 12 * index
        tag, kind = struct.unpack(f"{order}HH", head[at:at + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            code, end = ("H", at + 10) if kind == 3 else ("I", at + 12)
            found[tag] = struct.unpack(order + code, head[at + 8:end])[0]
    return (found[256], found[257]) if len(found) == 2 else None


def _webp(head: bytes) -> tuple[int, int] | None:
    if head[8:12] != b"WEBP":
        return None
    chunk = head[12:16]
    if chunk == b"VP8X":  # extended: 24-bit canvas size minus one
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    if chunk == b"VP8L":  # lossless: 14-bit sizes minus one, after a signature byte
        bits = int.from_bytes(head[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 ":  # lossy: after a 3-byte frame tag and the start code 9d 01 2a
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


_READERS: list[tuple[bytes, Callable[[bytes], tuple[int, int] | None]]] = [
    (b"\x89PNG\r\n\x1a\n", _png), (b"\xff\xd8", _jpeg), (b"BM", _bmp),
    (b"II*\x00", _tiff), (b"MM\x00*", _tiff), (b"RIFF", _webp),
]
