"""The Python API behind the CLI: build a pipeline from a run config and run it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from facepriv.batch.engines import ENGINES
from facepriv.config import RunConfig, engine_settings, load_run_config, parse_node_config
from facepriv.custom_nodes import node_type, set_custom_nodes_dir
from facepriv.errors import ConfigError, RunFailure
from facepriv.node import AbstractNode, build_node, load_node_class
from facepriv.plan import make_plan
from facepriv.runner import Pipeline, RunSummary

logger = logging.getLogger("facepriv")


def resolve_nodes(
    run_config: RunConfig,
    node_config: dict[str, dict[str, Any]] | None = None,
    provided: Sequence[str] = (),
) -> list[tuple[str, dict[str, Any]]]:
    """Every node's final settings, checked without building anything (``facepriv.plan``)."""
    return make_plan(run_config, node_config, provided).settings()


def build_nodes(
    run_config: RunConfig,
    node_config: dict[str, dict[str, Any]] | None = None,
    provided: Sequence[str] = (),
    extras: dict[str, dict[str, Any]] | None = None,
) -> list[AbstractNode]:
    """Instantiate the nodes of a run config, ``node_config`` laid over each; ``extras``
    holds constructor arguments by node name (what a serial run's session adds).

    If building one node fails, the ones already built are released (a camera opened
    by input.visual must not stay open because model.mtcnn had a bad setting).
    """
    # Every setting is checked before any node opens a camera or loads a model.
    settings = resolve_nodes(run_config, node_config, provided)
    nodes: list[AbstractNode] = []
    try:
        for name, merged in settings:
            if extras and name in extras:
                nodes.append(load_node_class(name)(merged, **extras[name]))
            else:
                nodes.append(build_node(name, merged))
    except BaseException:
        for node in nodes:
            node.release(completed=False)
        raise
    for node in nodes:
        node.run_settings = settings
    return nodes


def run(
    config_path: str | Path = "pipeline_config.yml",
    node_config: str | dict[str, dict[str, Any]] | None = None,
    num_iter: int | None = None,
    *,
    engine: str | None = None,
    workers: int | None = None,
    address: str | None = None,
    force: bool = False,
    custom_nodes_dir: str | Path | None = None,
) -> RunSummary:
    """Run the pipeline a config file describes; raise RunFailure if inputs failed.

    ``engine``, ``workers`` and ``address`` override the run config's ``engine:``
    settings; with workers or the ray engine the files are spread over processes as a
    resumable job (``facepriv.batch``), and ``force`` redoes files already done.
    ``custom_nodes_dir`` holds ``custom_nodes.<type>.<name>`` nodes (default: ``src/custom_nodes``).
    """
    set_custom_nodes_dir(custom_nodes_dir)
    run_config = load_run_config(config_path)
    overrides = parse_node_config(node_config) if isinstance(node_config, str) else node_config
    summary = _execute(run_config, overrides, _engine_choice(engine, workers, address), force=force,
                       num_iter=num_iter)
    return _finished(summary)


def _engine_choice(engine: str | None, workers: int | None, address: str | None) -> dict[str, Any]:
    """The engine settings given on the command line, laid over the run config's."""
    chosen = {key: value for key, value in
              {"name": engine, "workers": workers, "address": address}.items() if value is not None}
    if engine in ENGINES:  # a Ray address in the run config does not apply to another engine
        chosen.update({key: None for entry in ENGINES.values() for key in entry.own_keys
                       if key not in ENGINES[engine].own_keys and key not in chosen})
    return chosen


def _execute(
    run_config: RunConfig,
    overrides: dict[str, dict[str, Any]] | None,
    engine_choice: dict[str, Any],
    *,
    force: bool = False,
    num_iter: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RunSummary:
    """One run: a job spread over processes when the engine settings ask for workers or Ray,
    else serial. ``progress(done, total)`` follows a serial run whose first node counts
    ``frames_out`` of ``total_frames`` (input.tracks); a job draws its own bar."""
    settings = engine_settings(run_config.engine, engine_choice)
    if settings["workers"] is not None or settings["name"] != "local":
        from facepriv.batch.job import run_job

        return run_job(run_config, overrides, settings, force=force, num_iter=num_iter)
    if force:
        raise ConfigError("--force redoes the files of a job: use it with --workers or --engine ray")
    from facepriv.batch.serial import serial_session

    with serial_session(make_plan(run_config, overrides)) as extras:
        nodes = build_nodes(run_config, overrides, extras=extras)

        def tick() -> None:
            if progress is not None:
                progress(nodes[0].frames_out, nodes[0].total_frames)  # type: ignore[attr-defined]

        return Pipeline(nodes).run(num_iter=num_iter, on_tick=tick)


def _finished(summary: RunSummary, verb: str = "run") -> RunSummary:
    """Log the run's end; raise RunFailure naming the inputs that could not be processed."""
    logger.info("%s finished: %d frame(s) in %.1f s", verb, summary.iterations, summary.seconds)
    if summary.failed_items:
        for item in summary.failed_items:
            logger.error("not processed: %s", item)
        raise RunFailure(
            f"{len(summary.failed_items)} input(s) could not be processed (listed above): "
            "fix or remove them and run again"
        )
    return summary


RENDER_SKIPS = ("output.tracks",)  # it would write the file being rendered again, keep list lost


def render(
    tracks: Sequence[str | Path],
    config_path: str | Path | None = None,
    node_config: str | dict[str, dict[str, Any]] | None = None,
    *,
    nodes: list[tuple[str, dict[str, Any]]] | None = None,
    progress: Callable[[int, int], None] | None = None,
    engine: str | None = None,
    workers: int | None = None,
    address: str | None = None,
    force: bool = False,
    custom_nodes_dir: str | Path | None = None,
) -> RunSummary:
    """Render the inputs of tracks files (output.tracks) again with the boxes of the files.

    No model or dabble node runs: input.tracks hands on each frame with the file's boxes
    (tracks in ``keep`` left out, boxes a reviewer added included), then the draw and output
    nodes of ``config_path`` (or ``nodes``, as a tracks file records them) run as in
    ``run``, serial or as a job over ``workers`` / Ray (the config's ``engine:`` applies).
    The manifest in output_dir keys each file by its tracks file: one saved again after a
    review is rendered again, an unchanged one is skipped. ``progress(done, total)`` is
    called after every frame of a serial render.
    """
    if not tracks:
        raise ConfigError("render needs at least one tracks file: pass --tracks FILE")
    set_custom_nodes_dir(custom_nodes_dir)
    if nodes is None:
        if config_path is None:
            raise ConfigError("render needs a run config for its draw and output nodes: pass --config_path")
        given = load_run_config(config_path)
    else:
        given = RunConfig(nodes)
    chosen = [(name, settings) for name, settings in given.nodes
              if node_type(name) in ("draw", "output") and name not in RENDER_SKIPS]
    if not any(node_type(name) == "draw" for name, _ in chosen):
        raise ConfigError("the render config has no draw node to hide the faces with: add one such as "
                          "draw.fill_bbox")
    if not any(node_type(name) == "output" for name, _ in chosen):
        raise ConfigError("the render config has no output node: add output.media_writer")
    run_config = RunConfig([("input.tracks", {"source": [str(path) for path in tracks]}), *chosen],
                           given.engine)
    overrides = parse_node_config(node_config) if isinstance(node_config, str) else node_config
    summary = _execute(run_config, overrides, _engine_choice(engine, workers, address), force=force,
                       progress=progress)
    return _finished(summary, "render")
