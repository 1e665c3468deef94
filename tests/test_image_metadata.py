"""Photo metadata on real camera JPEGs (../shared/data/exif_samples): stripped by default,
kept on request, and the picture always displays the way the input did."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from facepriv.media.image_metadata import exif_ifd0, jpeg_segments, png_chunks, read_exif
from facepriv.nodes.input.visual import Node as VisualInput
from facepriv.nodes.output.media_writer import Node as MediaWriter
from facepriv.runner import Pipeline

SAMPLES = ["DSCN0010_gps.jpg", "Canon_40D.jpg", "portrait_6_orientation.jpg"]
GPS_IFD, MAKE, MODEL, ORIENTATION = 0x8825, 0x010F, 0x0110, 0x0112
CAMERA_WORDS = (b"NIKON", b"COOLPIX", b"Canon", b"EOS 40D", b"GIMP", b"Nikon Transfer")


def anonymize(source: Path, out_dir: Path, **writer) -> None:
    nodes = [VisualInput(source=str(source)), MediaWriter(output_dir=str(out_dir), **writer)]
    summary = Pipeline(nodes).run()
    assert summary.failed_items == []


def displayed(data: bytes) -> np.ndarray:
    """The picture as a viewer shows it (EXIF orientation applied)."""
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def stored(data: bytes) -> np.ndarray:
    """The pixels as stored, orientation ignored."""
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)


@pytest.mark.parametrize("name", SAMPLES)
def test_metadata_is_stripped_by_default(name, exif_dir, tmp_path):
    original = (exif_dir / name).read_bytes()
    assert read_exif(original) is not None
    anonymize(exif_dir / name, tmp_path)
    output = (tmp_path / name).read_bytes()
    assert output[:3] == b"\xff\xd8\xff"  # still a JPEG, as the input
    assert read_exif(output) is None
    app_segments = [hex(marker) for marker, _ in jpeg_segments(output) if 0xE1 <= marker <= 0xEF]
    assert app_segments == []  # no EXIF, XMP, ICC, IPTC or maker segments at all
    for word in CAMERA_WORDS + (b"GPS", b"xmp", b"Exif"):
        assert word not in output
    assert displayed(output).shape == displayed(original).shape


def test_orientation_is_applied_so_the_output_displays_like_the_input(exif_dir, tmp_path):
    original = (exif_dir / "portrait_6_orientation.jpg").read_bytes()
    assert stored(original).shape == (450, 600, 3) and displayed(original).shape == (600, 450, 3)
    anonymize(exif_dir / "portrait_6_orientation.jpg", tmp_path)
    output = (tmp_path / "portrait_6_orientation.jpg").read_bytes()
    # 450 wide, 600 high, however it is read: upright pixels and no orientation tag
    assert stored(output).shape == displayed(output).shape == (600, 450, 3)
    assert np.abs(displayed(output).astype(int) - displayed(original).astype(int)).mean() < 3


@pytest.mark.parametrize("name", SAMPLES)
def test_keep_metadata_keeps_camera_tags_with_orientation_reset_and_no_thumbnail(name, exif_dir, tmp_path):
    original = (exif_dir / name).read_bytes()
    anonymize(exif_dir / name, tmp_path, keep_metadata=True)
    output = (tmp_path / name).read_bytes()
    before, after = exif_ifd0(read_exif(original)), exif_ifd0(read_exif(output))
    assert set(after) == set(before) - {GPS_IFD}
    for tag in (MAKE, MODEL):
        assert after.get(tag) == before.get(tag)
    assert after[ORIENTATION] == 1  # the pixels are already upright
    assert stored(output).shape == displayed(output).shape == displayed(original).shape
    # The EXIF thumbnail shows the unmasked photo: it must not survive.
    assert b"\xff\xd8\xff" not in read_exif(output)
    kinds = {payload[:4] for marker, payload in jpeg_segments(output) if marker in (0xE1, 0xE2)}
    wanted = {payload[:4] for marker, payload in jpeg_segments(original)
              if marker in (0xE1, 0xE2) and payload[:4] in (b"Exif", b"ICC_")}
    assert kinds == wanted  # EXIF and the ICC profile; never XMP (it can hold the original)


def test_gps_position_is_never_kept(exif_dir, tmp_path):
    source = exif_dir / "DSCN0010_gps.jpg"
    assert GPS_IFD in exif_ifd0(read_exif(source.read_bytes()))
    anonymize(source, tmp_path / "kept", keep_metadata=True)
    kept = (tmp_path / "kept" / source.name).read_bytes()
    assert GPS_IFD not in exif_ifd0(read_exif(kept)) and b"GPS" not in kept
    anonymize(source, tmp_path / "plain")
    assert read_exif((tmp_path / "plain" / source.name).read_bytes()) is None


def _png_with_exif(exif_dir: Path, target: Path) -> bytes:
    """A PNG of the portrait's stored pixels carrying its real EXIF (orientation 6) in eXIf."""
    original = (exif_dir / "portrait_6_orientation.jpg").read_bytes()
    ok, png = cv2.imencode(".png", stored(original))
    tiff = read_exif(original)
    chunk = struct.pack(">I", len(tiff)) + b"eXIf" + tiff + struct.pack(">I", zlib.crc32(b"eXIf" + tiff))
    data = png.tobytes()
    data = data[:33] + chunk + data[33:]  # right after IHDR
    target.write_bytes(data)
    return data


def test_png_metadata_follows_the_same_rules(exif_dir, tmp_path):
    source = tmp_path / "in" / "portrait.png"
    source.parent.mkdir()
    original = _png_with_exif(exif_dir, source)
    assert displayed(original).shape == (600, 450, 3)

    anonymize(source, tmp_path / "plain")
    plain = (tmp_path / "plain" / "portrait.png").read_bytes()
    assert [kind for kind, _ in png_chunks(plain) if kind not in (b"IHDR", b"IDAT", b"IEND")] == []
    assert stored(plain).shape == (600, 450, 3)

    anonymize(source, tmp_path / "kept", keep_metadata=True)
    kept = (tmp_path / "kept" / "portrait.png").read_bytes()
    assert exif_ifd0(read_exif(kept))[ORIENTATION] == 1
    assert stored(kept).shape == displayed(kept).shape == (600, 450, 3)


def test_face_photo_png_loses_its_exif_chunk(faces_dir, tmp_path):
    source = faces_dir / "images" / "facemask" / "maksssksksss107.png"
    assert b"eXIf" in [kind for kind, _ in png_chunks(source.read_bytes())]
    shutil.copy(source, tmp_path / "mask.png")
    anonymize(tmp_path / "mask.png", tmp_path / "out")
    written = (tmp_path / "out" / "mask.png").read_bytes()
    assert all(kind in (b"IHDR", b"IDAT", b"IEND") for kind, _ in png_chunks(written))
