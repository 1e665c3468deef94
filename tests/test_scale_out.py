"""Jobs spread over processes (``--workers``, ``--engine ray``): same outputs as a serial
run, a manifest that lets a stopped job resume, and failures that cost one file only."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from facepriv.batch.manifest import MANIFEST_NAME, Manifest
from facepriv.batch.worker import FileResult, FileTask

from conftest import error_lines, run_cli

CLIPS = {"peekingduck_humans_mot_nofaces.mp4": 24, "egoblur_gen2_test_face_video.mp4": 14}
# The command-line arguments of each engine; the Ray one starts (and stops) a local Ray.
ENGINES = [
    pytest.param(("--workers", "2"), id="local"),
    pytest.param(("--engine", "ray", "--workers", "2"), id="ray", marks=pytest.mark.skipif(
        importlib.util.find_spec("ray") is None, reason="the ray extra is not installed")),
]
ANONYMIZE = "- model.mtcnn\n- draw.mosaic_bbox\n"
# The test fault node (kills or hangs the worker on a chosen file) lives in this folder,
# passed to jobs with FAULT_ARGS: facepriv itself has no test hook.
CUSTOM_NODES = Path(__file__).parent / "custom_nodes"
FAULT_ARGS = ("--custom_nodes_dir", str(CUSTOM_NODES))


def make_source(root: Path, faces_dir: Path, videos_dir: Path, photos: int) -> Path:
    """photos/ (a few from each set of ../shared/data/faces) and clips/ (two short clips), copied."""
    source = root / "src"
    (source / "photos").mkdir(parents=True)
    (source / "clips").mkdir()
    sets = sorted(path for path in (faces_dir / "images").iterdir() if path.is_dir())
    chosen = [photo for folder in sets for photo in sorted(folder.iterdir())[: -(-photos // len(sets))]]
    for photo in chosen[:photos]:
        shutil.copy(photo, source / "photos" / photo.name)
    for clip in CLIPS:
        shutil.copy(videos_dir / clip, source / "clips" / clip)
    return source


def write_config(path: Path, source: Path, output: Path, middle: str = "", engine: str = "") -> Path:
    path.write_text(
        f"nodes:\n- input.visual:\n    source: {source}\n    recursive: true\n{middle}"
        f"- output.media_writer:\n    output_dir: {output}\n{engine}"
    )
    return path


def with_fault(config: Path, **settings: object) -> None:
    """Put custom_nodes.dabble.fault (tests/custom_nodes) in ``config``, just before its
    writer, so it runs on every frame of every file."""
    lines = "".join(f"    {key}: {json.dumps(str(value))}\n" for key, value in settings.items())
    writer = "- output.media_writer:"
    assert config.read_text().count(writer) == 1
    config.write_text(config.read_text().replace(writer, f"- custom_nodes.dabble.fault:\n{lines}{writer}"))


def digests(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` but the manifest, by relative path."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*")) if path.is_file() and path.name != MANIFEST_NAME
    }


def manifest_lines(output: Path, started: bool = False) -> list[dict]:
    """The manifest's outcome lines (and its "started" lines if ``started``)."""
    path = output / MANIFEST_NAME
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [line for line in lines if started or line["status"] != "started"]


def assert_consistent(output: Path, source: Path) -> list[dict]:
    """No temporary file is left, every output has a done line and every done line an output."""
    assert not [p for p in output.rglob(".*") if ".partial" in p.name]
    lines = manifest_lines(output)
    done = {line["output"] for line in lines if line["status"] == "done"}
    assert done == set(digests(output)), "outputs and done lines differ"
    for line in lines:
        assert Path(line["input"]).is_relative_to(source)
        assert (line["output"] is None) == (line["status"] != "done")
    return lines


def assert_each_done_once(output: Path, source: Path) -> None:
    done = [line["input"] for line in assert_consistent(output, source) if line["status"] == "done"]
    inputs = sorted(str(p) for p in source.rglob("*") if p.is_file())
    assert sorted(done) == inputs, "every input must be done exactly once"


# --------------------------------------------------------------------------- identical outputs


@pytest.fixture(scope="module")
def anonymized(tmp_path_factory, faces_dir, videos_dir):
    """Ten photos and two clips, and what a serial run writes for them."""
    root = tmp_path_factory.mktemp("scale_out")
    source = make_source(root, faces_dir, videos_dir, photos=10)
    config = write_config(root / "serial.yml", source, root / "serial", ANONYMIZE)
    result = run_cli("run", "--config_path", str(config), cwd=root)
    assert result.returncode == 0, result.stderr
    assert_each_done_once(root / "serial", source)  # a serial run keeps the same manifest
    return root, source, digests(root / "serial")


def check_job_output(output: Path, source: Path, serial: dict[str, str]) -> None:
    assert digests(output) == serial
    lines = assert_consistent(output, source)
    assert len(lines) == len(serial) and all(line["status"] == "done" for line in lines)
    for line in lines:
        name = Path(line["name"]).name
        assert line["frames"] == CLIPS.get(name, 1), line
        assert line["error"] is None and line["seconds"] > 0
    assert all(line["faces"] > 0 for line in lines if line["name"].startswith("photos/"))


@pytest.mark.slow
def test_two_workers_write_what_a_serial_run_writes(anonymized):
    root, source, serial = anonymized
    config = write_config(root / "workers.yml", source, root / "workers", ANONYMIZE)
    result = run_cli("run", "--config_path", str(config), "--workers", "2", cwd=root)
    assert result.returncode == 0, result.stderr
    assert "2 local worker(s)" in result.stderr
    check_job_output(root / "workers", source, serial)


@pytest.mark.slow
def test_ray_engine_writes_what_a_serial_run_writes(anonymized):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    from facepriv import api

    root, source, serial = anonymized
    engine = "engine:\n  name: ray\n  workers: 2\n"  # set in the run config this time
    config = write_config(root / "ray.yml", source, root / "ray", ANONYMIZE, engine)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    try:
        api.run(config)
    finally:
        ray.shutdown()
    check_job_output(root / "ray", source, serial)


# --------------------------------------------------------------------------- resuming


def make_small_job(root: Path, faces_dir: Path, videos_dir: Path) -> tuple[Path, Path, Path]:
    """Three photos and two clips, and a config that copies them (no model: quick workers)."""
    source = make_source(root, faces_dir, videos_dir, photos=3)
    return source, write_config(root / "copy.yml", source, root / "out"), root / "out"


@pytest.fixture()
def small_job(tmp_path, faces_dir, videos_dir):
    return make_small_job(tmp_path, faces_dir, videos_dir)


@pytest.mark.slow
def test_rerun_skips_done_files_redoes_changed_ones_and_force_redoes_all(small_job, tmp_path):
    source, config, output = small_job
    first = run_cli("run", "--config_path", str(config), "--workers", "2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert_each_done_once(output, source)
    stamps = {path: path.stat().st_mtime_ns for path in output.rglob("*") if path.is_file()}

    again = run_cli("run", "--config_path", str(config), "--workers", "2", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "5 done before" in again.stderr
    assert {path: path.stat().st_mtime_ns for path in output.rglob("*") if path.is_file()} == stamps

    photos = sorted((source / "photos").iterdir())
    shutil.copy(photos[1], photos[0])  # the input changed: its output is redone and replaced
    before = digests(output)
    changed = run_cli("run", "--config_path", str(config), "--workers", "2", cwd=tmp_path)
    assert changed.returncode == 0, changed.stderr
    lines = manifest_lines(output)
    assert len(lines) == 6 and lines[-1]["input"] == str(photos[0]) and lines[-1]["status"] == "done"
    name = f"photos/{photos[0].name}"
    assert {k: v for k, v in digests(output).items() if before[k] != v} == {name: digests(output)[name]}

    forced = run_cli("run", "--config_path", str(config), "--workers", "1", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    lines = manifest_lines(output)
    assert len(lines) == 11 and all(line["status"] == "done" for line in lines[6:])
    assert_consistent(output, source)


@pytest.mark.slow
def test_damaged_files_fail_alone_and_are_retried(small_job, tmp_path, videos_dir):
    source, config, output = small_job
    (source / "photos" / "broken.jpg").write_bytes(b"not a jpeg at all")
    clip = (videos_dir / "egoblur_gen2_test_face_video.mp4").read_bytes()
    (source / "clips" / "truncated.mp4").write_bytes(clip[: len(clip) // 3])
    result = run_cli("run", "--config_path", str(config), "--workers", "2", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert error_lines(result.stderr)[-1].startswith("error: 2 input(s) could not be processed")
    lines = {Path(line["input"]).name: line for line in assert_consistent(output, source)}
    assert len(lines) == 7
    failed = {name for name, line in lines.items() if line["status"] == "failed"}
    assert failed == {"broken.jpg", "truncated.mp4"}
    assert "damaged" in lines["broken.jpg"]["error"]
    assert lines["truncated.mp4"]["error"]

    retry = run_cli("run", "--config_path", str(config), "--workers", "2", cwd=tmp_path)
    assert retry.returncode == 1
    retried = [Path(line["input"]).name for line in manifest_lines(output)[7:]]
    assert sorted(retried) == ["broken.jpg", "truncated.mp4"]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_killed_worker_loses_only_its_file(small_job, tmp_path, engine):
    """Without retries (tests/test_job_retries.py has them) the file fails alone."""
    source, config, output = small_job
    config.write_text(config.read_text() + "engine:\n  max_retries: 0\n")
    # SIGKILL after the clip's first frame; only the first time, so the rerun completes it
    with_fault(config, kill_on="clips/egoblur_gen2_test_face_video.mp4", once_marker_dir=tmp_path / "once")
    result = run_cli("run", "--config_path", str(config), *engine, *FAULT_ARGS, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = {line["name"]: line for line in assert_consistent(output, source)}
    killed = lines.pop("clips/egoblur_gen2_test_face_video.mp4")
    reason = "SIGKILL" if "ray" not in engine else "worker died"
    assert killed["status"] == "failed" and reason in killed["error"], killed
    assert "attempt 1 of 1" in killed["error"] and killed["attempt"] == 1
    assert len(lines) == 4 and all(line["status"] == "done" for line in lines.values())

    rerun = run_cli("run", "--config_path", str(config), *engine, *FAULT_ARGS, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert_each_done_once(output, source)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_a_hung_worker_is_stopped_and_loses_only_its_file(small_job, tmp_path, engine):
    source, config, output = small_job
    # 10 s: a loaded 2-core machine can spend 3 s flushing a 2560x1920 clip's encoder
    # without a tick, which must not count as a hang
    config.write_text(config.read_text() + "engine:\n  stall_seconds: 10\n  max_retries: 0\n")
    hung_name = "clips/egoblur_gen2_test_face_video.mp4"
    # that file's worker sleeps after one frame; only the first time, so the rerun completes it
    with_fault(config, hang_on=hung_name, once_marker_dir=tmp_path / "once")
    result = run_cli("run", "--config_path", str(config), *engine, *FAULT_ARGS, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "showed no progress for 10 s" in result.stderr
    lines = {line["name"]: line for line in assert_consistent(output, source)}
    hung = lines.pop(hung_name)
    assert hung["status"] == "failed" and "10 s without progress" in hung["error"], hung
    assert len(lines) == 4 and all(line["status"] == "done" for line in lines.values())

    rerun = run_cli("run", "--config_path", str(config), *engine, *FAULT_ARGS, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert_each_done_once(output, source)


@pytest.mark.slow
def test_a_file_the_parent_died_before_recording_is_redone_not_refused(small_job, tmp_path):
    """Killed outright (SIGKILL, power cut) after a worker committed a file but before the
    parent wrote its line, a job leaves that file's "started" line last: the next run redoes
    it over its output. An output that existed before the file was started is not the
    job's own and is never replaced."""
    source, config, output = small_job
    first = run_cli("run", "--config_path", str(config), "--workers", "2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    records = manifest_lines(output, started=True)
    assert [line["status"] for line in records].count("started") == 5
    assert all(line["output_existed"] is False for line in records if line["status"] == "started")
    victim = next(line for line in records if line["status"] == "done" and line["name"].startswith("photos/"))
    manifest = output / MANIFEST_NAME

    def rewrite(existed: bool) -> None:
        kept = [line for line in records if line["input"] != victim["input"]]
        mine = [line for line in records if line["input"] == victim["input"]]
        started = next(line for line in mine if line["status"] == "started")
        kept.append({**started, "output_existed": existed})
        manifest.write_text("".join(json.dumps(line) + "\n" for line in kept))

    rewrite(existed=False)
    stamp = (output / victim["output"]).stat().st_mtime_ns
    rerun = run_cli("run", "--config_path", str(config), "--workers", "2", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "4 done before" in rerun.stderr
    assert_each_done_once(output, source)
    assert (output / victim["output"]).stat().st_mtime_ns != stamp  # redone

    rewrite(existed=True)
    stamp = (output / victim["output"]).stat().st_mtime_ns
    refused = run_cli("run", "--config_path", str(config), "--workers", "2", cwd=tmp_path)
    assert refused.returncode == 1, refused.stderr
    last = manifest_lines(output)[-1]
    assert last["input"] == victim["input"] and last["status"] == "failed"
    assert "already exists" in last["error"]
    assert (output / victim["output"]).stat().st_mtime_ns == stamp


def test_a_manifest_that_cannot_be_written_is_one_clear_error(tmp_path):
    """A full disk (here: a file size limit, EFBIG) while appending stops the job with one
    line; the part of the line that got out is ignored by the next run."""
    import resource

    from facepriv.errors import MediaError

    task = FileTask(str(tmp_path / "in.jpg"), "photo.jpg", 10, 20)
    manifest = Manifest(tmp_path / MANIFEST_NAME)
    manifest.start(task, output_exists=False)
    size = (tmp_path / MANIFEST_NAME).stat().st_size
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 40, hard))
    try:
        with pytest.raises(MediaError, match="cannot write the job manifest .*free space"):
            manifest.append(FileResult(task, "failed", error="x" * 200))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        manifest.close()
    again = Manifest(tmp_path / MANIFEST_NAME)
    assert again.records[task.path]["status"] == "started"


def test_an_output_written_for_an_earlier_version_stays_the_jobs_after_a_failure(tmp_path):
    """done, then the input changed and its retry failed: the output there is still this
    job's, so the next retry may replace it."""
    output = tmp_path / "photo.jpg"
    output.write_bytes(b"x")
    task = FileTask(str(tmp_path / "in.jpg"), "photo.jpg", 10, 20)
    manifest = Manifest(tmp_path / MANIFEST_NAME)
    manifest.start(task, output_exists=False)
    manifest.append(FileResult(task, "done", str(output), 1, 2, 0.5))
    changed = FileTask(task.path, task.name, 11, 21, overwrite=True)
    manifest.start(changed, output_exists=True)
    manifest.append(FileResult(changed, "failed", error="damaged"))
    manifest.close()
    again = Manifest(tmp_path / MANIFEST_NAME)
    assert not again.is_done(changed) and again.wrote(task.path, output)
    assert not again.wrote(task.path, tmp_path / "other.jpg")
    again.start(FileTask(str(tmp_path / "new.jpg"), "new.jpg", 1, 1), output_exists=True)
    (tmp_path / "new.jpg.out").write_bytes(b"y")
    assert not again.wrote(str(tmp_path / "new.jpg"), tmp_path / "new.jpg.out")  # was there before
    again.close()


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_an_interrupted_job_is_consistent_and_resumes(small_job, tmp_path, sample_video, engine):
    source, config, output = small_job
    # Ctrl-C when a worker has read 100 of the 517 frames of a_long.mp4 (it logs that).
    shutil.copy(sample_video, source / "clips" / "a_long.mp4")
    (source / "clips" / "egoblur_gen2_test_face_video.mp4").unlink()  # a large clip: time
    process = subprocess.Popen(
        [sys.executable, "-m", "facepriv", "run", "--config_path", str(config), *engine],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    seen = []
    for line in process.stderr:
        seen.append(line)
        if "clips/a_long.mp4: 100 frames read" in line:
            break
    with contextlib.suppress(ProcessLookupError):  # already ended: the exit code says how
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in a terminal: the parent and its workers
    stderr = "".join(seen) + process.communicate(timeout=120)[1]
    assert process.returncode == 130, stderr
    assert error_lines(stderr)[-1] == "interrupted: unfinished outputs were discarded"
    lines = assert_consistent(output, source)
    assert "clips/a_long.mp4" not in {line["name"] for line in lines}

    rerun = run_cli("run", "--config_path", str(config), *engine, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert_each_done_once(output, source)


# --------------------------------------------------------------------------- errors and the manifest


def with_screen(text: str) -> str:
    return text.replace("- output.media_writer:", "- output.screen\n- output.media_writer:")


def with_webcam(text: str) -> str:
    return text.replace("source: ", "source: 0  # was ")


@pytest.mark.parametrize(
    ("args", "edit", "fragment"),
    [
        (["--workers", "0"], None, "--workers"),
        (["--engine", "spark"], None, "--engine"),
        (["--address", "auto"], None, "only used by the ray engine"),
        (["--force"], None, "--force"),
        (["--workers", "2", "--num_iter", "5"], None, "--num_iter"),
        ([], lambda text: text + "engine:\n  workers: 0\n", "engine.workers"),
        ([], lambda text: text + "engine:\n  wrkers: 2\n", "unknown key 'engine.wrkers'"),
        (["--workers", "2"], lambda text: text + "engine:\n  stall_seconds: 0\n", "engine.stall_seconds"),
        (["--workers", "2"], lambda text: text + "engine:\n  max_retries: -1\n", "engine.max_retries"),
        (["--workers", "2"], with_screen, "output.screen"),
        (["--workers", "2"], with_webcam, "webcam or stream"),
    ],
    ids=["workers-0", "unknown-engine", "address-without-ray", "force-without-job", "num-iter",
         "config-workers-0", "config-typo", "stall-0", "retries-negative", "screen", "webcam"],
)
def test_job_mistakes_are_one_line(tmp_path, sample_video, args, edit, fragment):
    config = write_config(tmp_path / "c.yml", sample_video, tmp_path / "out")
    if edit is not None:
        config.write_text(edit(config.read_text()))
    result = run_cli("run", "--config_path", str(config), *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert not (tmp_path / "out" / MANIFEST_NAME).exists()


def test_ray_engine_without_ray_says_how_to_install_it(tmp_path, sample_video):
    config = write_config(tmp_path / "c.yml", sample_video, tmp_path / "out")
    script = (
        "import sys; sys.modules['ray'] = None\n"  # as if the extra were not installed
        "from facepriv.cli import main\n"
        f"main(['run', '--config_path', {str(config)!r}, '--engine', 'ray'])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        "error: --engine ray needs Ray, which is not installed: pip install 'facepriv[ray]'"
    ]


def test_a_second_job_on_the_same_output_dir_stops_at_once(tmp_path, sample_video):
    """While a job holds its output_dir (here: this test holds the manifest's lock), another
    job there stops with one line and writes nothing; once the lock is free it runs."""
    from facepriv.batch.manifest import manifest_lock

    config = write_config(tmp_path / "c.yml", sample_video, tmp_path / "out")
    (tmp_path / "out").mkdir()
    with manifest_lock(tmp_path / "out" / MANIFEST_NAME):
        result = run_cli("run", "--config_path", str(config), "--workers", "2", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert error_lines(result.stderr) == [
            f"error: another facepriv run is writing to '{tmp_path / 'out'}' (its manifest "
            f"{MANIFEST_NAME} is locked): wait for that run to end, or give this one another output_dir"
        ]
        assert [p.name for p in (tmp_path / "out").iterdir()] == [MANIFEST_NAME]
        assert manifest_lines(tmp_path / "out") == []
    result = run_cli("run", "--config_path", str(config), "--workers", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [line["status"] for line in manifest_lines(tmp_path / "out")] == ["done"]


def test_manifest_ignores_a_line_cut_short_and_appends_after_it(tmp_path):
    output = tmp_path / "photo.jpg"
    output.write_bytes(b"x")
    task = FileTask(str(tmp_path / "in.jpg"), "photo.jpg", 10, 20)
    manifest = Manifest(tmp_path / MANIFEST_NAME)
    manifest.append(FileResult(task, "done", str(output), 1, 2, 0.5))
    manifest.close()
    with open(tmp_path / MANIFEST_NAME, "a") as handle:
        handle.write('{"input": "/cut/short", "sta')  # a crash in the middle of a line
    again = Manifest(tmp_path / MANIFEST_NAME)
    assert again.is_done(task) and again.wrote(task.path, output)
    assert not again.is_done(FileTask(task.path, task.name, 11, 20))  # the input changed size
    again.append(FileResult(task, "failed", error="boom"))
    again.close()
    lines = (tmp_path / MANIFEST_NAME).read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["status"] == "failed"
    assert not Manifest(tmp_path / MANIFEST_NAME).is_done(task)  # the last line wins
    output.unlink()
    assert not again.wrote(task.path, output)
