"""The smaller hostile inputs of issue 16: config bombs, what a folder holds besides photos
and videos, audio MP4 players cannot play, and messages that must name the user's files."""

from __future__ import annotations

import av
import pytest

from conftest import error_lines, run_cli
from hostile_media import h264_clip, jpeg_bytes, photo, run_measured, writer_config
from test_bad_inputs import q, run_args, tree_hashes

MB = 1 << 20


def alias_bomb(levels: int = 9) -> str:
    """YAML that expands to 10**levels list entries from a few hundred bytes."""
    lines = ["      a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"      a{level}: &a{level} [{refs}]")
    return "\n".join(lines)


def test_a_yaml_alias_bomb_in_a_setting_of_the_wrong_type_is_one_short_line(tmp_path):
    """Before: 6 GB and a MemoryError traceback (2.1 GB and 33 s under a 3 GB cap)."""
    (tmp_path / "tiny.jpg").write_bytes(jpeg_bytes(photo(16, 16)))
    config = tmp_path / "bomb.yml"
    config.write_text(f"nodes:\n- input.visual:\n    source: {q(tmp_path / 'tiny.jpg')}\n"
                      f"    mirror_image:\n{alias_bomb()}\n- output.media_writer\n", encoding="utf-8")
    assert config.stat().st_size < 1000
    result, peak = run_measured(run_args(str(config)), tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (line,) = error_lines(result.stderr)
    assert line.startswith("error: input.visual.mirror_image = {'a0': ['x'") and "expected bool" in line
    assert len(line) < 250
    assert peak < 300 * MB, f"{peak / MB:.0f} MB"


@pytest.mark.parametrize("where", ["config", "node_config"])
def test_50000_deep_nesting_is_one_line(where, tmp_path):
    """Before: a RecursionError traceback."""
    deep = "[" * 50000 + "]" * 50000
    if where == "config":
        config = tmp_path / "deep.yml"
        config.write_text(f"nodes:\n- input.visual:\n    source: {deep}\n", encoding="utf-8")
        args, expected = run_args(str(config)), "nests too deeply to read"
    else:
        config = tmp_path / "ok.yml"
        config.write_text("nodes:\n- input.visual\n", encoding="utf-8")
        args = run_args(str(config), "--node_config", '{"input.visual": {"source": ' + deep + "}}")
        expected = "is not a valid mapping"
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (line,) = error_lines(result.stderr)
    assert line.startswith("error: ") and expected in line and len(line) < 400, line


def test_what_a_folder_holds_besides_photos_and_videos_is_said(tmp_path):
    """Before: sub-folders, HEIC, extension-less files and broken links were left out
    without a word, even at debug level."""
    folder = tmp_path / "in"
    (folder / "holiday").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(jpeg_bytes(photo()))
    (folder / "holiday" / "b.jpg").write_bytes(jpeg_bytes(photo()))
    (folder / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (folder / "README").write_text("no extension\n", encoding="utf-8")
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    before = tree_hashes(folder)

    config = writer_config(tmp_path, folder)
    default = run_cli("run", "--config_path", config, "--log_level", "info", cwd=tmp_path)
    assert default.returncode == 0 and error_lines(default.stderr) == [], default.stderr
    assert "1 sub-folder(s) not read (holiday): set input.visual.recursive: true" in default.stderr
    assert "1 file(s) in formats facepriv cannot read are left out (phone.heic)" in default.stderr
    assert "1 broken link(s) left out (gone.jpg)" in default.stderr
    assert [p.name for p in (tmp_path / "out").iterdir() if p.suffix == ".jpg"] == ["a.jpg"]

    debug = run_cli("run", "--config_path", config, "--log_level", "debug", cwd=tmp_path)
    assert debug.returncode == 0, debug.stderr
    assert f"'{folder / 'README'}' is not an image or video facepriv reads: left out" in debug.stderr
    assert tree_hashes(folder) == before


def test_vorbis_audio_is_not_copied_into_mp4_without_a_word(tmp_path):
    """Before: Vorbis was copied into the MP4 silently; most players then play no sound."""
    source = h264_clip(tmp_path / "clip.mkv", 64, 48, frames=10, audio="vorbis")
    result = run_cli("run", "--config_path", writer_config(tmp_path, source), "--log_level", "warning",
                     cwd=tmp_path)
    assert result.returncode == 0 and error_lines(result.stderr) == [], result.stderr
    assert "clip.mkv: its vorbis audio does not play from a mp4 file; it is re-encoded to AAC" \
        in result.stderr
    with av.open(str(tmp_path / "out" / "clip.mp4")) as output:
        assert [stream.codec_context.name for stream in output.streams.audio] == ["aac"]


def test_messages_name_the_output_not_the_hidden_temporary_file(tmp_path):
    """Before: '.odd.eez8bbbl.partial.mp4: 161x121 frames are padded ...'."""
    source = tmp_path / "odd.mkv"
    with av.open(str(source), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 161, 121, "yuv420p"
        for index in range(3):
            frame = av.VideoFrame.from_ndarray(photo(161, 121, seed=index), format="bgr24")
            frame.pts = index
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    result = run_cli("run", "--config_path", writer_config(tmp_path, source), "--log_level", "warning",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "odd.mp4: 161x121 frames are padded to 162x122" in result.stderr
    assert ".partial" not in result.stderr and ".fp-" not in result.stderr
