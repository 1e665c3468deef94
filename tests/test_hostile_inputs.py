"""Hostile and unlucky inputs (issue 16): photos that hide their unmasked original in
metadata, images and videos that declare a huge size, and names at the file system's limit.

Every input is built here, small on disk; runs go through ``python -m facepriv`` as a
user's would, and check the exit code, the one ``error:`` line, that no traceback leaks,
that the inputs are unchanged and that nothing is left under a final or hidden name.
"""

from __future__ import annotations

import base64

import pytest

from facepriv.image_metadata import exif_ifd0, jpeg_segments, png_chunks, read_exif

from conftest import error_lines, run_cli
from hostile_media import jpeg_bytes, photo, png_with_hidden_originals, portrait_photo_with_hidden_originals
from test_bad_inputs import q, tree_hashes

GPS_IFD, MAKE, EXIF_IFD = 0x8825, 0x010F, 0x8769


def writer_config(tmp_path, source, *writer_lines: str, visual_lines: tuple[str, ...] = ()) -> str:
    """A run config input.visual(source) -> output.media_writer(tmp_path/out)."""
    lines = ["nodes:", "- input.visual:", f"    source: {q(source)}", *visual_lines,
             "- output.media_writer:", f"    output_dir: {q(tmp_path / 'out')}", *writer_lines]
    config = tmp_path / "config.yml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(config)


def run_ok(config: str, cwd) -> None:
    result = run_cli("run", "--config_path", config, "--log_level", "warning", cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert error_lines(result.stderr) == [], result.stderr


# --------------------------------------------------------------------------- metadata


@pytest.mark.parametrize("kind", ["jpg", "png"])
def test_keep_metadata_never_keeps_an_embedded_picture(kind, tmp_path):
    image = photo()
    build = portrait_photo_with_hidden_originals if kind == "jpg" else png_with_hidden_originals
    source = tmp_path / "in" / f"portrait.{kind}"
    source.parent.mkdir()
    source.write_bytes(build(image))
    before = tree_hashes(source.parent)
    run_ok(writer_config(tmp_path, source, "    keep_metadata: true"), tmp_path)
    assert tree_hashes(source.parent) == before

    output = (tmp_path / "out" / source.name).read_bytes()
    hidden = jpeg_bytes(image)
    for needle in (hidden[:64], hidden[-64:], base64.b64encode(hidden)[:64], hidden.hex()[:64].encode()):
        assert needle not in output  # not the picture, raw, base64 or hex
    for word in (b"GImage", b"GDepth", b"xmpmeta", b"8BIM", b"FPXR", b"MPF\x00", b"Raw profile"):
        assert word not in output, word
    assert output.count(b"\xff\xd8\xff") == (1 if kind == "jpg" else 0)  # no JPEG but the output itself
    tags = exif_ifd0(read_exif(output))
    assert tags[MAKE] == b"FaceCam\x00" and GPS_IFD not in tags  # camera kept, location not
    if kind == "jpg":
        assert output.endswith(b"\xff\xd9") and output.count(b"\xff\xd9") == 1  # nothing after the image
        app_segments = [payload[:4] for marker, payload in jpeg_segments(output) if 0xE1 <= marker <= 0xEF]
        assert app_segments == [b"Exif"]
    else:
        texts = [payload for chunk, payload in png_chunks(output) if chunk in (b"tEXt", b"zTXt", b"iTXt")]
        assert texts == [b"Author\x00J. Doe"]  # a short comment survives, long ones do not
