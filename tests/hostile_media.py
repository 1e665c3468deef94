"""Builders of hostile and odd inputs for the tests: small on disk, built in the test.

Bombs declare a huge size in their header but hold only a few bytes of image data, so
building them costs nothing and only a reader that trusts the header pays.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from conftest import error_lines, run_cli
from test_bad_inputs import q, run_args

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
XMP_MAIN = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_EXTENSION = b"http://ns.adobe.com/xmp/extension/\x00"


# --------------------------------------------------------------------------- images


def photo(width: int = 96, height: int = 64, seed: int = 0) -> np.ndarray:
    """A BGR picture with some texture (flat pictures compress to nothing)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (height, width, 3), dtype=np.uint8)


def jpeg_bytes(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height RGB pixels; its data is a few rows of zeros."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(bytes((1 + 3 * width) * 4), 9)
    return PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")


def jpeg_bomb(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header (SOF0) is rewritten to declare width x height."""
    data = bytearray(jpeg_bytes(photo(16, 16)))
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def app_segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def with_segments(jpeg: bytes, *segments: bytes) -> bytes:
    """``jpeg`` with ``segments`` inserted right after its start-of-image marker."""
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def tiff_ifd(entries: list[tuple[int, int, int, bytes]], start: int, next_ifd: int = 0) -> bytes:
    """A little-endian IFD at ``start`` (its out-of-line values follow it)."""
    table, values = b"", b""
    data_at = start + 2 + 12 * len(entries) + 4
    for tag, kind, count, value in entries:
        if len(value) <= 4:
            table += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\x00")
        else:
            table += struct.pack("<HHII", tag, kind, count, data_at + len(values))
            values += value + b"\x00" * (len(value) % 2)
    return struct.pack("<H", len(entries)) + table + struct.pack("<I", next_ifd) + values


def exif_with_thumbnails(thumbnail: bytes) -> bytes:
    """EXIF (TIFF) with a Make tag, a GPS position, a maker note holding ``thumbnail`` and
    an IFD1 thumbnail: every place a camera hides a preview."""
    make = b"FaceCam\x00"
    ifd0_size = 2 + 12 * 4 + 4 + len(make)
    exif_at = 8 + ifd0_size
    exif_ifd = tiff_ifd([(0x927C, 7, len(thumbnail), thumbnail)], exif_at)
    gps_at = exif_at + len(exif_ifd)
    gps_ifd = tiff_ifd([(0x0001, 2, 2, b"N\x00"), (0x0002, 5, 3, struct.pack("<6I", 43, 1, 28, 1, 2, 1))],
                       gps_at)
    ifd1_at = gps_at + len(gps_ifd)
    ifd0 = tiff_ifd([
        (0x010F, 2, len(make), make), (0x0112, 3, 1, struct.pack("<H", 6)),
        (0x8769, 4, 1, struct.pack("<I", exif_at)), (0x8825, 4, 1, struct.pack("<I", gps_at)),
    ], 8, next_ifd=ifd1_at)
    thumb_at = ifd1_at + 2 + 12 * 2 + 4
    ifd1 = tiff_ifd([(0x0201, 4, 1, struct.pack("<I", thumb_at)),
                     (0x0202, 4, 1, struct.pack("<I", len(thumbnail)))], ifd1_at)
    return b"II*\x00" + struct.pack("<I", 8) + ifd0 + exif_ifd + gps_ifd + ifd1 + thumbnail


def portrait_photo_with_hidden_originals(image: np.ndarray) -> bytes:
    """A phone "portrait mode" JPEG: the unmasked original in extended XMP (GImage:Data),
    a depth map (GDepth:Data), an EXIF thumbnail and maker-note preview, a Photoshop/IPTC
    preview (APP13), a FlashPix stream (APP2) and an MPF secondary image after the end."""
    original = jpeg_bytes(image)
    encoded = base64.b64encode(original)
    guid = b"0123456789ABCDEF0123456789ABCDEF"
    main = XMP_MAIN + (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description xmlns:xmpNote="http://ns.adobe.com/xmp/note/" xmpNote:HasExtendedXMP="' + guid
        + b'" xmlns:GDepth="http://ns.google.com/photos/1.0/depthmap/" GDepth:Data="' + encoded
        + b'"/></rdf:RDF></x:xmpmeta>'
    )
    extended = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><GImage:Data>' + encoded + b"</GImage:Data></x:xmpmeta>"
    chunks = [extended[i:i + 60000] for i in range(0, len(extended), 60000)]
    extension_segments = [
        app_segment(0xE1, XMP_EXTENSION + guid + struct.pack(">II", len(extended), 60000 * i) + chunk)
        for i, chunk in enumerate(chunks)
    ]
    thumbnail_resource = b"8BIM" + struct.pack(">HHI", 0x040C, 0, len(original)) + original
    photoshop = b"Photoshop 3.0\x00" + thumbnail_resource
    flashpix = b"FPXR\x00\x00" + original[:2000]
    mpf = b"MPF\x00" + b"II*\x00" + struct.pack("<I", 8) + b"\x00" * 16
    return with_segments(
        jpeg_bytes(image),
        app_segment(0xE1, b"Exif\x00\x00" + exif_with_thumbnails(original)),
        app_segment(0xE1, main), *extension_segments,
        app_segment(0xE2, mpf), app_segment(0xE2, flashpix), app_segment(0xED, photoshop),
    ) + original  # MPF: the secondary image follows the primary one


# --------------------------------------------------------------------------- videos


def h264_clip(path: Path, width: int, height: int, frames: int = 2, faststart: bool = True,
              audio: str | None = None, noise: bool = False) -> Path:
    """A real H.264 clip of black frames (of random noise: a large file), optionally with a
    sine of ``audio`` codec."""
    import av

    options = {"movflags": "+faststart"} if faststart and path.suffix in (".mp4", ".mov") else {}
    with av.open(str(path), "w", options=options) as out:
        video = out.add_stream("libx264", rate=10, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream(audio, rate=44100, options={"strict": "experimental"}) if audio else None
        rng = np.random.default_rng(0)
        for index in range(frames):
            planes = rng.integers(0, 255, (height * 3 // 2, width), np.uint8) if noise \
                else np.zeros((height * 3 // 2, width), np.uint8)
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts = index
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            samples = (np.sin(np.arange(44100 * frames // 10) / 20) * 0.3).astype(np.float32)[None, :]
            chunk = sound.codec_context.frame_size or 1024
            for start in range(0, samples.shape[1], chunk):
                frame = av.AudioFrame.from_ndarray(samples[:, start:start + chunk].copy(), format="fltp",
                                                   layout="mono")
                frame.sample_rate, frame.pts = 44100, start
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
    return path


# --------------------------------------------------------------------------- serving and running


@contextlib.contextmanager
def http_server(directory: Path, handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``directory`` on the loopback interface while the block runs; yields its URL."""
    serve = functools.partial(handler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), serve)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def writer_config(tmp_path, source, *writer_lines: str, visual_lines: tuple[str, ...] = ()) -> str:
    """A run config input.visual(source) -> output.media_writer(tmp_path/out)."""
    lines = ["nodes:", "- input.visual:", f"    source: {q(source)}", *visual_lines,
             "- output.media_writer:", f"    output_dir: {q(tmp_path / 'out')}", *writer_lines]
    config = tmp_path / "config.yml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(config)


def run_ok(config: str, cwd) -> None:
    """Run ``config`` as a user does; it must succeed without an error line."""
    result = run_cli(*run_args(config), cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert error_lines(result.stderr) == [], result.stderr


def run_measured(args: list[str], cwd: Path, timeout: float = 300) -> tuple[subprocess.CompletedProcess, int]:
    """Run ``facepriv`` in a child process; return it and the child's peak memory in bytes.

    The peak is read by the child itself: VmHWM of its own address space, which starts anew
    at exec. (ru_maxrss does not: Linux carries it over from the forked parent, so a child of a
    pytest process that has loaded TensorFlow would report that process's 1 GB.)
    """
    script = (
        "import resource, sys\n"
        "from facepriv.cli import main\n"
        "def peak_kb():\n"
        "    try:\n"
        "        with open('/proc/self/status') as status:\n"
        "            return int(next(l for l in status if l.startswith('VmHWM:')).split()[1])\n"
        "    except (OSError, StopIteration):\n"
        "        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n    main(sys.argv[1:])\n"
        "finally:\n"
        "    sys.stderr.write(f'\\nPEAK_KB {peak_kb()}\\n')\n"
    )
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                            cwd=cwd, timeout=timeout)
    marker = [line for line in result.stderr.splitlines() if line.startswith("PEAK_KB ")]
    assert marker, result.stderr
    result.stderr = "\n".join(line for line in result.stderr.splitlines() if not line.startswith("PEAK_KB "))
    return result, int(marker[-1].split()[1]) * 1024



def png_with_hidden_originals(image: np.ndarray) -> bytes:
    """A PNG carrying the unmasked picture in every metadata place PNG writers use: XMP
    (iTXt) with GImage:Data, an ImageMagick "Raw profile type exif" text chunk and an
    eXIf chunk, both with a JPEG thumbnail, and a long comment."""
    original = jpeg_bytes(image)
    ok, png = cv2.imencode(".png", image)
    assert ok
    xmp = b"XML:com.adobe.xmp\x00\x00\x00\x00\x00<x:xmpmeta><GImage:Data>" + base64.b64encode(original) \
        + b"</GImage:Data></x:xmpmeta>"
    exif = exif_with_thumbnails(original)
    raw_profile = b"Raw profile type exif\x00\x00" + zlib.compress(b"\nexif\n" + exif.hex().encode())
    comment = b"Comment\x00" + base64.b64encode(original)
    chunks = png_chunk(b"iTXt", xmp) + png_chunk(b"zTXt", raw_profile) + png_chunk(b"eXIf", exif) \
        + png_chunk(b"tEXt", comment) + png_chunk(b"tEXt", b"Author\x00J. Doe")
    data = png.tobytes()
    return data[:33] + chunks + data[33:]


def h264_clip_in_child(path: Path, width: int, height: int, frames: int = 2) -> Path:
    """``h264_clip`` run in a child process: encoding a huge frame takes about 1 GB, which
    the test process should not keep."""
    code = f"from hostile_media import h264_clip; h264_clip(Path({str(path)!r}), {width}, {height}, {frames})"
    subprocess.run([sys.executable, "-c", "from pathlib import Path; " + code], check=True,
                   cwd=Path(__file__).parent, timeout=300)
    return path


def growing_clip(path: Path, small: tuple[int, int, int], large: tuple[int, int, int]) -> Path:
    """An MPEG-TS clip whose H.264 stream changes from ``small`` to ``large`` (width, height,
    frames) part-way: the container and the first seconds declare only the small size."""
    import av

    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = small[0], small[1], "yuv420p"
        pts = 0
        for width, height, frames in (small, large):
            encoder = av.CodecContext.create("libx264", "w")
            encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
            encoder.time_base, encoder.framerate = Fraction(1, 10), 10
            encoder.options = {"preset": "ultrafast"}
            pictures = [np.zeros((height * 3 // 2, width), np.uint8)] * frames
            for index, planes in enumerate([*pictures, None]):
                frame = None
                if planes is not None:
                    frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
                    frame.pts = index
                for packet in encoder.encode(frame):
                    packet.stream, packet.time_base = stream, Fraction(1, 10)
                    packet.pts = packet.dts = pts
                    pts += 1
                    out.mux(packet)
    return path
