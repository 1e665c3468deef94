"""The run plan and what nodes declare about themselves for jobs (``job:`` in their YAML)."""

from __future__ import annotations

from pathlib import Path

import pytest

from facepriv.batch import job
from facepriv.config import RunConfig, node_specs
from facepriv.custom_nodes import set_custom_nodes_dir
from facepriv.declarations import JobDeclaration, parse_job_block
from facepriv.errors import ConfigError
from facepriv.plan import make_plan, output_paths


@pytest.fixture(autouse=True)
def _no_custom_dir():
    yield
    set_custom_nodes_dir(None)


def test_shipped_nodes_declare_their_part_in_jobs():
    specs = node_specs()
    assert not specs["output.screen"].job.runs_in_jobs and specs["output.screen"].job.reason
    assert not specs["output.csv_writer"].job.runs_in_jobs
    assert specs["input.visual"].job.reads_files == {"source": "source", "recursive": "recursive"}
    assert specs["input.tracks"].job.reads_files["files"] == "facepriv.tracks_file:planned_files"
    assert specs["output.media_writer"].job.writes_files["output_dir"] == "output_dir"
    assert specs["model.mtcnn"].job.thread_keys == ("tf_intra_op_threads", "tf_inter_op_threads")
    assert all(spec.job.kept_per_worker for name, spec in specs.items() if name.startswith("model."))
    assert not any(spec.job.kept_per_worker for name, spec in specs.items() if not name.startswith("model."))


def test_omitted_job_block_means_runs_in_jobs_and_not_kept():
    assert parse_job_block("custom_nodes.model.x", None) == JobDeclaration()
    with pytest.raises(ConfigError, match="'job:' must be a mapping"):
        parse_job_block("custom_nodes.dabble.x", {"runs_in_job": False})
    with pytest.raises(ConfigError, match="writes_files"):
        parse_job_block("custom_nodes.output.x", {"writes_files": {"output_dir": "d"}})
    with pytest.raises(ConfigError, match="reads_files:' must map source"):
        parse_job_block("custom_nodes.input.x", {"reads_files": {"recursive": "r"}})
    with pytest.raises(ConfigError, match="may map recursive, files"):
        parse_job_block("custom_nodes.input.x", {"reads_files": {"source": "s", "folder": "f"}})


def test_a_reader_lists_its_files_by_its_own_rule(tmp_path, sample_video):
    """Without ``files:`` a reader's source is expanded as input.visual's; with it, by its function."""
    plain = parse_job_block("custom_nodes.input.x", {"reads_files": {"source": "where"}})
    assert plain.files_rule()({"where": str(sample_video)}) == ([(sample_video, sample_video.name)], True)
    own = parse_job_block("custom_nodes.input.y", {"reads_files": {
        "source": "where", "files": "facepriv.tracks_file:planned_files"}})
    with pytest.raises(ConfigError, match="names no tracks file"):
        own.files_rule()({"source": []})


def test_writer_and_plan_name_outputs_alike(tmp_path):
    plan = make_plan(RunConfig([("input.visual", {"source": str(tmp_path)}),
                                ("output.media_writer", {"output_dir": str(tmp_path / "out"),
                                                         "container": "mkv"})]))
    pairs = [(Path("a/clip.avi"), "a/clip.avi"), (Path("b.jpg"), "b.jpg")]
    finals = output_paths(pairs, plan.writer())
    assert finals == {"a/clip.avi": tmp_path / "out" / "a" / "clip.mkv", "b.jpg": tmp_path / "out" / "b.jpg"}


def test_custom_node_declaring_no_jobs_is_refused_by_a_job(tmp_path):
    folder = tmp_path / "src" / "custom_nodes"
    (folder / "configs" / "output").mkdir(parents=True)
    (folder / "configs" / "output" / "window.yml").write_text(
        "input: [img]\noutput: [none]\njob:\n  runs_in_jobs: false\n  reason: shows a window\n",
        encoding="utf-8")
    (folder / "output").mkdir()
    (folder / "output" / "window.py").write_text("", encoding="utf-8")
    set_custom_nodes_dir(folder)
    plan = make_plan(RunConfig([("input.visual", {"source": str(tmp_path)}),
                                ("custom_nodes.output.window", {}),
                                ("output.media_writer", {"output_dir": str(tmp_path / "out")})]))
    with pytest.raises(ConfigError, match="custom_nodes.output.window shows a window, so it cannot run"):
        job._check_pipeline(plan)
