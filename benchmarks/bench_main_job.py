"""The main job's whole run against the decode + encode ceiling (issue 15's measure).

On a 1280x720 clip (the sample scaled up, as bench_pipeline.py makes it, unless --clip is
given), two pipelines run interleaved, round after round, and the medians are compared, so
a busy machine slows them alike:

* ``io``: input.visual -> output.media_writer with the main job's writer settings: what
  decoding and encoding alone cost, the ceiling;
* ``main``: ``configs/anonymize_video.yml`` as it is (model.centerface, dabble.persist_bbox,
  dabble.fps, draw.fill_bbox, output.media_writer), its source and output swapped;
* ``every<n>`` for each ``--detect_every n``: the main job with model.centerface's
  ``detect_every`` set to n (1 is the exact path: every frame detected); ``n:s`` also sets
  ``keyframe_faint_score`` to s, and ``n:s:m`` ``keyframe_match_share`` to m.

Each run is a fresh pipeline (models loaded outside the timed part) over the clip's first
--frames frames, to its end.
It prints the wall time and frames per second of each and the ratio main / io, and the
milliseconds per frame inside each node of the main job (RunSummary.node_seconds).

    python benchmarks/bench_main_job.py [--frames 240] [--rounds 3] [--clip CLIP] [--detect_every 1 4 8]
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_pipeline import REPO, load_av, make_clip  # same clip as the pipeline benchmark

sys.path.insert(0, str(REPO))

from facepriv.api import build_nodes  # noqa: E402
from facepriv.config import RunConfig, load_run_config  # noqa: E402
from facepriv.runner import Pipeline  # noqa: E402

MAIN_JOB = REPO / "configs" / "anonymize_video.yml"


def pipeline_nodes(variant: str, clip: Path, out_dir: Path) -> list:
    config = load_run_config(MAIN_JOB)
    writer = next(over for name, over in config.nodes if name == "output.media_writer")
    overrides = {"input.visual": {"source": str(clip), "frames_log_freq": 0},
                 "output.media_writer": {**writer, "output_dir": str(out_dir), "overwrite": True}}
    if variant == "io":
        config = RunConfig(nodes=[("input.visual", {}), ("output.media_writer", {})])
    elif variant.startswith("every"):
        every, faint, share = (variant[len("every"):].split(":") + ["", ""])[:3]
        overrides["model.centerface"] = {"detect_every": int(every),
                                         **({"keyframe_faint_score": float(faint)} if faint else {}),
                                         **({"keyframe_match_share": float(share)} if share else {})}
    return build_nodes(config, overrides)


def first_frames(clip: Path, frames: int, target: Path) -> Path:
    """The clip's first ``frames`` frames as a clip of their own (H.264, CRF 18): every run
    goes to the end of its input, so that the frames a lookahead holds are all counted."""
    av = load_av()
    with av.open(str(clip)) as src, av.open(str(target), "w") as out:
        source = src.streams.video[0]
        stream = out.add_stream("libx264", rate=source.average_rate)
        stream.width, stream.height, stream.pix_fmt = source.width, source.height, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for index, frame in enumerate(src.decode(video=0)):
            if index == frames:
                break
            image = frame.to_ndarray(format="bgr24")
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        out.mux(stream.encode(None))
    return target


@dataclass
class Run:
    wall: float  # seconds
    cpu: float  # seconds of CPU in every thread: steadier than wall time on a busy machine
    node_ms: dict[str, float]  # per frame out, in the runner's thread
    frames: int
    detected: int | None  # frames the face detector ran on


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_once(variant: str, clip: Path, work: Path) -> Run:
    nodes = pipeline_nodes(variant, clip, work / variant)
    start, cpu = time.perf_counter(), cpu_seconds()
    summary = Pipeline(nodes).run()
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    out = max(summary.iterations, 1)
    node_ms = {name: 1000 * spent / out for name, spent in summary.node_seconds.items()}
    detected = next((node.frames_detected for node in nodes if hasattr(node, "frames_detected")), None)
    return Run(wall, cpu, node_ms, summary.iterations, detected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=None, help="a video (default: the sample at 1280x720)")
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--detect_every", nargs="*", default=[],
                        help="also run the main job with these detect_every values (N, or N:S to set "
                             "keyframe_faint_score S too, N:S:M keyframe_match_share M)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        clip = first_frames(args.clip or make_clip(work / "clip.mp4"), args.frames, work / "bench.mp4")
        runs: dict[str, list[Run]] = {"io": [], "main": []}
        runs.update({f"every{every}": [] for every in args.detect_every})
        for _ in range(args.rounds):
            for variant, done in runs.items():
                done.append(run_once(variant, clip, work))
    frames = runs["io"][0].frames
    io_wall = statistics.median(run.wall for run in runs["io"])
    io_cpu = statistics.median(run.cpu for run in runs["io"])
    print(f"{(args.clip or clip).name}: {frames} frames, {args.rounds} interleaved rounds, medians")
    print(f"  {'variant':<8}{'wall s':>8}{'fps':>7}{'x io':>7}{'cpu s':>8}{'x io':>7}  detected")
    for variant, done in runs.items():
        wall = statistics.median(run.wall for run in done)
        cpu = statistics.median(run.cpu for run in done)
        detected = done[0].detected
        share = f"{detected}/{done[0].frames}" if detected is not None else "-"
        print(f"  {variant:<8}{wall:8.2f}{frames / wall:7.1f}{wall / io_wall:7.2f}"
              f"{cpu:8.2f}{cpu / io_cpu:7.2f}  {share}")
    main_wall = statistics.median(run.wall for run in runs["main"])
    print(f"  main / io = {main_wall / io_wall:.2f}x wall (issue 15 asks for <= 2.0x)")
    print("  main job, ms per frame inside each node (the runner's thread):")
    for name in runs["main"][0].node_ms:
        print(f"    {name:<24}{statistics.median(run.node_ms[name] for run in runs['main']):7.2f}")


if __name__ == "__main__":
    main()
