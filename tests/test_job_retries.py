"""Jobs retry the files whose worker was lost (killed, hung, its Ray node gone), up to
engine.max_retries times, and never retry a damaged file. Every attempt is a manifest line."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from facepriv.custom_nodes import set_custom_nodes_dir

from conftest import error_lines, run_cli
from test_scale_out import (
    ENGINES,
    FAULT_ARGS,
    assert_each_done_once,
    digests,
    make_small_job,
    manifest_lines,
    with_fault,
    write_config,
)

VICTIM = "clips/egoblur_gen2_test_face_video.mp4"  # 14 frames; the first file a lone worker takes
NODE_MEMORY = 100 * 2**20  # each Ray node's object store: results are small
JOB_SECONDS = 600  # a generous bound for a job in a thread to end by itself


@pytest.fixture()
def small_job(tmp_path, faces_dir, videos_dir):
    return make_small_job(tmp_path, faces_dir, videos_dir)


def serial_outputs(source: Path, root: Path) -> dict[str, str]:
    """What a serial run writes for ``source`` (the small job's copy config)."""
    config = write_config(root / "serial.yml", source, root / "serial")
    result = run_cli("run", "--config_path", str(config), cwd=root)
    assert result.returncode == 0, result.stderr
    return digests(root / "serial")


def attempts(output: Path, name: str) -> list[tuple[str, int]]:
    """(status, attempt) of each manifest line of input ``name``, "started" lines included."""
    return [(line["status"], line["attempt"]) for line in manifest_lines(output, started=True)
            if line["name"] == name]


def outcome(output: Path, name: str) -> dict:
    """The last manifest line of input ``name``."""
    return [line for line in manifest_lines(output) if line["name"] == name][-1]


def with_engine(config: Path, **settings: object) -> None:
    lines = "".join(f"  {key}: {value}\n" for key, value in settings.items())
    config.write_text(config.read_text() + "engine:\n" + lines)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_worker_killed_mid_clip_is_replaced_and_the_clip_retried(small_job, tmp_path, engine):
    source, config, output = small_job
    with_fault(config, kill_on=VICTIM, once_marker_dir=tmp_path / "once")  # SIGKILL after frame 1, once
    result = run_cli("run", "--config_path", str(config), *engine, *FAULT_ARGS, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_each_done_once(output, source)
    assert digests(output) == serial_outputs(source, tmp_path)
    assert attempts(output, VICTIM) == [("started", 1), ("retried", 1), ("started", 2), ("done", 2)]
    retried = next(line for line in manifest_lines(output) if line["status"] == "retried")
    assert ("SIGKILL" if "ray" not in engine else "Ray worker died") in retried["error"], retried
    assert retried["output"] is None
    assert "5 file(s) done, 0 failed, 1 attempt(s) retried" in result.stderr


def test_a_hung_worker_is_stopped_and_its_file_retried(small_job, tmp_path):
    source, config, output = small_job
    with_engine(config, stall_seconds=10)  # not 3: a loaded box can flush an encoder for 3 s
    with_fault(config, hang_on=VICTIM, once_marker_dir=tmp_path / "once")
    result = run_cli("run", "--config_path", str(config), "--workers", "2", *FAULT_ARGS, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_each_done_once(output, source)
    assert attempts(output, VICTIM) == [("started", 1), ("retried", 1), ("started", 2), ("done", 2)]
    retried = next(line for line in manifest_lines(output) if line["status"] == "retried")
    assert "10 s without progress" in retried["error"], retried


def test_a_file_that_kills_every_worker_fails_after_max_retries(small_job, tmp_path):
    source, config, output = small_job
    with_engine(config, max_retries=1)
    with_fault(config, kill_on=VICTIM)  # every attempt
    result = run_cli("run", "--config_path", str(config), "--workers", "2", *FAULT_ARGS, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert error_lines(result.stderr)[-1].startswith("error: 1 input(s) could not be processed")
    assert attempts(output, VICTIM) == [("started", 1), ("retried", 1), ("started", 2), ("failed", 2)]
    failed = outcome(output, VICTIM)
    assert "SIGKILL" in failed["error"] and "attempt 2 of 2" in failed["error"], failed
    others = [line for line in manifest_lines(output) if line["name"] != VICTIM]
    assert len(others) == 4 and all(line["status"] == "done" for line in others)


def test_a_damaged_file_fails_at_once_without_retries(small_job, tmp_path):
    source, config, output = small_job
    (source / "photos" / "broken.jpg").write_bytes(b"not a jpeg at all")
    result = run_cli("run", "--config_path", str(config), "--workers", "2", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert attempts(output, "photos/broken.jpg") == [("started", 1), ("failed", 1)]
    assert "damaged" in outcome(output, "photos/broken.jpg")["error"]
    assert not [line for line in manifest_lines(output) if line["status"] == "retried"]
    assert "0 attempt(s) retried" in result.stderr


def test_each_attempt_is_recorded_and_the_bar_shows_retries(tmp_path, monkeypatch):
    """The job's side of a lost worker: a retried line per attempt, the next attempt may
    replace an output its dead worker committed, and the last allowed attempt fails."""
    import io

    from tqdm import tqdm

    from facepriv.batch import job
    from facepriv.batch.manifest import MANIFEST_NAME, Manifest
    from facepriv.batch.worker import FileResult, FileTask

    monkeypatch.setattr(job.reading, "progress_bar",
                        lambda total, *args: tqdm(total=total, file=io.StringIO()))
    final = tmp_path / "out" / "a.jpg"
    final.parent.mkdir()
    progress = job._Progress(Manifest(final.parent / MANIFEST_NAME), {"a.jpg": final}, max_retries=1)
    progress.open(1)
    task = FileTask(str(tmp_path / "a.jpg"), "a.jpg", 1, 1)
    progress(FileResult(task, "started"))
    final.write_bytes(b"x")  # committed, then the worker was killed before it could say so
    again = progress.lost(task, "the worker process died (killed by SIGKILL) while processing it")
    assert again == FileTask(task.path, task.name, 1, 1, overwrite=True, attempt=2)
    assert "1 retried" in progress._bar.postfix
    progress(FileResult(again, "started"))
    assert progress.lost(again, "the worker process died (killed by SIGKILL) while processing it") is None
    progress.close()
    assert (progress.done, progress.retried, len(progress.failed)) == (0, 1, 1)
    assert attempts(final.parent, "a.jpg") == [("started", 1), ("retried", 1), ("started", 2), ("failed", 2)]
    assert "attempt 2 of 2" in outcome(final.parent, "a.jpg")["error"]


# --------------------------------------------------------------------------- a Ray cluster losing a node


@pytest.fixture()
def ray_cluster():
    """A Ray cluster in this process: a head without CPUs (only the driver connects there),
    so actors run on the worker nodes the test adds and removes."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "object_store_memory": NODE_MEMORY, "include_dashboard": False})
    try:
        yield ray, cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        set_custom_nodes_dir(None)  # api.run chose tests/custom_nodes in this process


def start_job(ray, cluster, config: Path) -> tuple[threading.Thread, list[BaseException]]:
    """The job on the cluster, in a thread so the test can add and remove nodes meanwhile."""
    from facepriv import api

    ray.init(address=cluster.address, logging_level="warning")
    errors: list[BaseException] = []

    def job() -> None:
        try:
            api.run(config, engine="ray", workers=2, custom_nodes_dir=FAULT_ARGS[1])
        except BaseException as err:  # noqa: BLE001 - the test reports it
            errors.append(err)

    thread = threading.Thread(target=job, daemon=True)
    thread.start()
    return thread, errors


def wait_until_started(output: Path, name: str, thread: threading.Thread) -> None:
    """Until the manifest shows ``name`` sent to a worker (the job stopping first fails)."""
    deadline = time.monotonic() + JOB_SECONDS
    while not any(line["name"] == name for line in manifest_lines(output, started=True)):
        assert thread.is_alive() and time.monotonic() < deadline, "the job ended before the file started"
        time.sleep(0.5)


@pytest.mark.slow
def test_a_lost_ray_node_is_replaced_and_its_file_retried(small_job, tmp_path, ray_cluster):
    ray, cluster = ray_cluster
    source, config, output = small_job
    serial = serial_outputs(source, tmp_path)
    with_fault(config, hang_on=VICTIM, once_marker_dir=tmp_path / "once")  # hangs on its first attempt
    doomed = cluster.add_node(num_cpus=1, object_store_memory=NODE_MEMORY)
    thread, errors = start_job(ray, cluster, config)
    wait_until_started(output, VICTIM, thread)  # on the doomed node: the only one with a CPU
    cluster.add_node(num_cpus=1, object_store_memory=NODE_MEMORY)
    cluster.remove_node(doomed, allow_graceful=False)  # as a reclaimed spot instance goes
    thread.join(JOB_SECONDS)
    assert not thread.is_alive(), "the job did not end"
    assert errors == []
    assert_each_done_once(output, source)
    assert digests(output) == serial
    assert attempts(output, VICTIM) == [("started", 1), ("retried", 1), ("started", 2), ("done", 2)]


@pytest.mark.slow
def test_a_job_whose_last_ray_node_is_lost_ends_with_one_line(small_job, tmp_path, ray_cluster):
    from facepriv.errors import FaceprivError

    ray, cluster = ray_cluster
    source, config, output = small_job
    # The victim hangs on every attempt here; retries enough that it is never spent.
    with_fault(config, hang_on=VICTIM)
    with_engine(config, stall_seconds=20, max_retries=20)
    doomed = cluster.add_node(num_cpus=1, object_store_memory=NODE_MEMORY)
    thread, errors = start_job(ray, cluster, config)
    wait_until_started(output, VICTIM, thread)
    cluster.remove_node(doomed, allow_graceful=False)
    thread.join(JOB_SECONDS)
    assert not thread.is_alive(), "the job did not end"
    assert len(errors) == 1 and isinstance(errors[0], FaceprivError), errors
    message = str(errors[0])
    assert "\n" not in message and message.startswith("no Ray node is left"), message
    assert "5 file(s) were not processed" in message, message
    assert not [line for line in manifest_lines(output) if line["status"] == "done"]
