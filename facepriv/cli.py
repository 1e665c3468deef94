"""The ``facepriv`` command: a thin click layer over :mod:`facepriv.api`.

Nothing here imports TensorFlow or OpenCV, so ``--help``, ``nodes`` and ``init`` are
instant. Errors a user can fix print one line on stderr and exit non-zero (2 for
config and usage errors); they never show a traceback.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import signal
import sys
from pathlib import Path

import click

from facepriv import __version__
from facepriv.batch.engines import ENGINES
from facepriv.errors import ConfigError, FaceprivError

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

STARTER_CONFIG = """\
# facepriv run config. Run it with: facepriv run --config_path {name}
# List nodes and their settings with: facepriv nodes
nodes:
- input.visual:
    source: 0              # webcam index, or an image, video, folder or http/rtsp URL
- model.centerface:        # or model.mtcnn: about twice as fast, no face under 20 px
    detect_resolution: 832 # long side the detector sees; null = full size, finds smaller faces
- dabble.persist_bbox      # keeps a face masked through frames where the detector misses it
- draw.fill_bbox:          # or draw.mosaic_bbox (mask_scale 1.5 suits CenterFace), draw.blur_bbox
    mask_scale: 1.3        # how far the fill reaches beyond the face box
- output.screen            # press q to stop
# To write files instead of showing them, replace output.screen with:
# - output.media_writer:
#     output_dir: output
"""


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


def _config_path_option(help_text: str):  # noqa: ANN202 - a click decorator
    return click.option(
        "--config_path",
        default="pipeline_config.yml",
        show_default=True,
        type=click.Path(dir_okay=False),
        help=help_text,
    )


def _log_level_option(default: str):  # noqa: ANN202 - a click decorator
    return click.option(
        "--log_level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        default=default,
        show_default=True,
    )


def _job_options(what: str):  # noqa: ANN202 - a click decorator
    """--workers, --engine, --address and --force: the same job for run and render."""
    options = [
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help=f"Spread {what} over N processes, as a resumable job."),
        click.option("--engine", type=click.Choice(list(ENGINES)), default=None,
                     help="Where a job's workers run: local processes, or Ray actors (needs facepriv[ray])."),
        click.option("--address", default=None,
                     help="Ray cluster to use with --engine ray: auto or ray://host:port."),
        click.option("--force", is_flag=True,
                     help="Redo every file of a job, even those its manifest shows done."),
    ]

    def decorate(command):  # noqa: ANN001, ANN202
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


_custom_nodes_dir_option = click.option(
    "--custom_nodes_dir", default=None, type=click.Path(file_okay=False),
    help="Folder of custom nodes (<type>/<name>.py, configs/<type>/<name>.yml)  [default: src/custom_nodes].",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="facepriv")
def cli() -> None:
    """Find faces in images, videos and camera feeds, and hide them."""


@cli.command()
@_config_path_option("Run config (YAML) listing the nodes of the pipeline.")
@click.option(
    "--node_config",
    default=None,
    help='Settings laid over the run config, e.g. \'{"input.visual": {"source": "a.mp4"}}\'.',
)
@click.option(
    "--num_iter", type=click.IntRange(min=1), default=None, help="Stop after N frames."
)
@_job_options("the files of a file or folder source")
@_custom_nodes_dir_option
@_log_level_option("info")
def run(
    config_path: str, node_config: str | None, num_iter: int | None, workers: int | None,
    engine: str | None, address: str | None, force: bool, custom_nodes_dir: str | None, log_level: str,
) -> None:
    """Run the pipeline described by a run config."""
    _setup_logging(log_level)
    signal.signal(signal.SIGTERM, _stop_like_ctrl_c)
    _quiet_media_libraries(log_level)
    from facepriv import api

    api.run(config_path, node_config=node_config, num_iter=num_iter, engine=engine, workers=workers,
            address=address, force=force, custom_nodes_dir=custom_nodes_dir)


def _stop_like_ctrl_c(signum: int, frame: object) -> None:
    """SIGTERM (kill, a service manager, a container stopping) ends a run as Ctrl-C does:
    unfinished outputs are discarded, and the exit code is 130."""
    raise KeyboardInterrupt


@cli.command()
@_config_path_option("Run config whose draw and output nodes render the files (its input, model and "
                     "dabble nodes are not used).")
@click.option(
    "--tracks", "tracks", multiple=True, required=True, type=click.Path(dir_okay=False),
    help="A <name>.tracks.json written by output.tracks (and perhaps reviewed); repeat for more.",
)
@click.option(
    "--node_config", default=None,
    help='Settings laid over the run config, e.g. \'{"output.media_writer": {"output_dir": "reviewed"}}\'.',
)
@_job_options("the tracks files")
@_custom_nodes_dir_option
@_log_level_option("info")
def render(config_path: str, tracks: tuple[str, ...], node_config: str | None, workers: int | None,
           engine: str | None, address: str | None, force: bool, custom_nodes_dir: str | None,
           log_level: str) -> None:
    """Render inputs again with the boxes of their tracks files, without detection: tracks in
    the file's keep list stay visible, boxes added to it are hidden."""
    _setup_logging(log_level)
    signal.signal(signal.SIGTERM, _stop_like_ctrl_c)
    _quiet_media_libraries(log_level)
    from facepriv import api

    api.render(list(tracks), config_path, node_config, engine=engine, workers=workers, address=address,
               force=force, custom_nodes_dir=custom_nodes_dir)


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--port", type=click.IntRange(min=0, max=65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: a free one).")
@click.option("--no-browser", "no_browser", is_flag=True, help="Print the page's address only.")
@click.option("--config_path", default=None, type=click.Path(dir_okay=False),
              help="Run config whose draw and output nodes 'render' uses  [default: the nodes recorded in "
              "each tracks file, those of the run that wrote it].")
@_log_level_option("warning")
def review(directory: str, port: int, no_browser: bool, config_path: str | None, log_level: str) -> None:
    """Review the outputs in DIRECTORY (with their <name>.tracks.json): step through them,
    keep tracks visible, hide what was missed, save and render (needs facepriv[review])."""
    _setup_logging(log_level)
    _quiet_media_libraries(log_level)
    from facepriv.review import serve

    serve(Path(directory), port=port, open_browser=not no_browser, config_path=config_path)


def _quiet_media_libraries(log_level: str) -> None:
    if log_level.lower() != "debug":
        # OpenCV and FFmpeg print their own warnings on stderr (a missing camera gives ten
        # lines); facepriv reports those problems itself, in one line.
        os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


@cli.command(name="eval")
@_config_path_option("Run config whose model and draw nodes are evaluated.")
@click.option(
    "--annotations", "annotations", multiple=True,
    type=click.Path(dir_okay=False),
    help="Annotated photos (face-boxes-v1 JSON, images relative to it); with --video, the "
    "clip's ground truth (face-tracks-v1 JSON, one per --video, in the same order).",
)
@click.option(
    "--video", "videos", multiple=True, type=click.Path(dir_okay=False),
    help="Instead of photos: a video to run the whole pipeline on (repeat for more); a "
    "reference detector looks for faces left visible in its output frames.",
)
@click.option(
    "--reference", default="model.centerface", show_default=True,
    help="With --video: the model node that finds faces in the input frames "
    "(model.centerface or model.mtcnn; both come with facepriv).",
)
@click.option(
    "--reference_config", default=None,
    help="With --video: settings for the reference, e.g. '{\"score_threshold\": 0.5}' "
    "(default: permissive settings).",
)
@click.option(
    "--min_face_size", type=click.IntRange(min=1), default=20, show_default=True,
    help="With --video: ignore reference faces smaller than this many pixels high.",
)
@click.option(
    "--worst", type=click.IntRange(min=0), default=10, show_default=True,
    help="How many of the worst frames to list per video, or of the faces left visible on photos.",
)
@click.option(
    "--confirm/--no-confirm", default=True, show_default=True,
    help="With --video: count a reference face only if the reference also finds it on the "
    "frame before or after (drops one-frame false detections).",
)
@click.option(
    "--output", default=None, type=click.Path(dir_okay=False), help="Also write the report as JSON."
)
@_log_level_option("warning")
def evaluate(config_path: str, annotations: tuple[str, ...], videos: tuple[str, ...], reference: str,
             reference_config: str | None, min_face_size: int, worst: int, confirm: bool,
             output: str | None, log_level: str) -> None:
    """Measure a config on annotated photos (recall, precision, leak rate, collateral), on
    videos against their ground truth (leaks, flicker, spurious masks), or on videos with a
    reference detector (frames whose output still shows a face)."""
    _setup_logging(log_level)
    if not annotations and not videos:
        raise ConfigError("pass --annotations FILE (photos) or --video FILE (videos, with or without "
                          "--annotations)")
    if videos:
        from facepriv.evaluation.video_eval import evaluate_videos, format_video_report

        report = evaluate_videos(config_path, list(videos), reference, reference_config,
                                 min_face_size=min_face_size, worst=worst, confirm=confirm,
                                 annotations=list(annotations) or None)
        if annotations:
            from facepriv.evaluation.gt_video import format_gt_report

            click.echo(format_gt_report(report))
        else:
            click.echo(format_video_report(report))
    else:
        if len(annotations) > 1:
            raise ConfigError("photos take one --annotations file: merge the files or run eval per file")
        from facepriv.evaluation.evaluate import evaluate as run_eval
        from facepriv.evaluation.evaluate import format_report

        report = run_eval(config_path, annotations[0])
        click.echo(format_report(report, worst=worst))
    if output:
        from facepriv.media.outputs import write_text_atomically

        write_text_atomically(Path(output), json.dumps(report, indent=2) + "\n")
        click.echo(f"report written to {output}")


@cli.command()
@click.argument("node_type", required=False)
@_custom_nodes_dir_option
def nodes(node_type: str | None, custom_nodes_dir: str | None) -> None:
    """List nodes (optionally of one TYPE) with their settings and defaults, custom nodes
    (src/custom_nodes, or --custom_nodes_dir) after facepriv's own."""
    from facepriv.config import node_spec
    from facepriv.custom_nodes import custom_node_names, set_custom_nodes_dir
    from facepriv.specs import NODE_TYPES, node_specs

    if node_type is not None and node_type not in NODE_TYPES:
        close = difflib.get_close_matches(node_type, NODE_TYPES, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(
            f"unknown node type '{node_type}': {hint}choose one of {', '.join(NODE_TYPES)}"
        )
    set_custom_nodes_dir(custom_nodes_dir)
    for name in [*node_specs(), *custom_node_names()]:
        if node_type and name.split(".")[-2] != node_type:
            continue
        spec = node_spec(name)
        click.echo(f"{name}: {spec.description.splitlines()[0] if spec.description else ''}".rstrip())
        click.echo(f"    in: {', '.join(spec.inputs) or 'none'}  out: {', '.join(spec.outputs) or 'none'}")
        for key, default in spec.defaults().items():
            click.echo(f"    {key}: {default!r}")


@cli.command()
@_config_path_option("Where to write the starter run config.")
def init(config_path: str) -> None:
    """Write a starter run config (never overwrites an existing file) and make
    src/custom_nodes/ for your own nodes (see create-node)."""
    from facepriv.scaffold import make_custom_nodes_dir

    path = Path(config_path)
    if path.exists():
        raise ConfigError(
            f"'{path}' already exists and was left unchanged: pass another --config_path"
        )
    try:
        with path.open("x", encoding="utf-8") as handle:
            handle.write(STARTER_CONFIG.format(name=path))
    except OSError as err:
        raise ConfigError(f"cannot write '{path}': {err.strerror}") from None
    folder = make_custom_nodes_dir(Path.cwd())
    click.echo(f"wrote {path}: edit 'source', then run: facepriv run --config_path {path}")
    click.echo(f"custom nodes go in {folder.relative_to(Path.cwd())}: see 'facepriv create-node'")


def _checked(check: str):  # noqa: ANN202 - a click callback
    """A click callback that validates with facepriv.custom_nodes.check_new_node, so a bad
    prompt answer is asked again and a bad flag fails in one line."""

    def callback(ctx: click.Context, param: click.Parameter, value: str) -> str:
        from facepriv.custom_nodes import check_new_node

        try:
            check_new_node(*((value, "x") if check == "type" else ("input", value)))
        except ConfigError as err:
            raise click.BadParameter(str(err)) from None
        return value

    return callback


@cli.command(name="create-node")
@click.option("--node_type", prompt="Node type (input, model, dabble, draw, output)",
              callback=_checked("type"), help="input, model, dabble, draw or output.")
@click.option("--node_name", prompt="Node name", callback=_checked("name"),
              help="A Python identifier, e.g. count_faces.")
def create_node(node_type: str, node_name: str) -> None:
    """Write a pass-through custom node, its config and a test, as PeekingDuck's create-node
    does (never overwrites); use it in a run config as custom_nodes.<type>.<name>."""
    from facepriv.scaffold import create_node as write_node

    for path in write_node(Path.cwd(), node_type, node_name):
        click.echo(f"wrote {path.relative_to(Path.cwd())}")
    click.echo(f"add '- custom_nodes.{node_type}.{node_name}' to a run config's nodes")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn user errors into one line and an exit code."""
    try:
        code = cli.main(args=argv, prog_name="facepriv", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.UsageError as err:
        command = err.ctx.command_path if err.ctx else "facepriv"
        click.echo(f"error: {err.format_message()} (see '{command} --help')", err=True)
        sys.exit(2)
    except click.ClickException as err:
        click.echo(f"error: {err.format_message()}", err=True)
        sys.exit(err.exit_code)
    except FaceprivError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("interrupted: unfinished outputs were discarded", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
