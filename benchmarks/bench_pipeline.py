"""Benchmark facepriv's video path against OpenCV's VideoCapture + VideoWriter.

Default (I/O) mode: decode + encode of a real 1280x720 H.264 clip (made once by scaling
the frames of samples/peekingduck_wave.mp4, unless --clip is given), side by side in one
run. The variants run interleaved, round after round, and the medians are reported, so
a busy machine slows them alike:

* ``opencv``: cv2.VideoCapture -> cv2.VideoWriter (mp4v, i.e. MPEG-4 Part 2), the path
  PeekingDuck's output.media_writer takes;
* ``facepriv mpeg4``: input.visual -> output.media_writer through the runner, with the
  same encoder as OpenCV (video_codec mpeg4): the cost of the I/O path itself;
* ``facepriv default``: the same with the default settings (libx264, crf 18, veryfast):
  H.264 does more work per frame for smaller, better files; ``ultrafast`` trades size
  for speed;
* reading alone: cv2.VideoCapture against input.visual.

Each variant's output size and PSNR against the source frames are printed too, since
speed means little without them.

--full runs the whole anonymising pipeline (input.visual -> model -> draw.mosaic_bbox ->
output.media_writer) on the clip for --full_frames frames, once per model of --models
(model.mtcnn and model.centerface by default), and prints the time per node (the
runner's RunSummary.node_seconds) and the peak RSS.

    python benchmarks/bench_pipeline.py                 # I/O, 300 frames, 5 rounds
    python benchmarks/bench_pipeline.py --full          # whole pipeline, 300 frames
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2  # before PyAV (see facepriv.media.video.load_av)
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facepriv.media.video import load_av  # noqa: E402
from facepriv.nodes.input.visual import Node as VisualInput  # noqa: E402
from facepriv.nodes.output.media_writer import Node as MediaWriter  # noqa: E402
from facepriv.runner import Pipeline  # noqa: E402

SAMPLE = REPO / "samples" / "peekingduck_wave.mp4"
SIZE = (1280, 720)


def make_clip(target: Path) -> Path:
    """A 1280x720 H.264 clip from the real sample's frames (scaled up, 29.97 fps)."""
    av = load_av()
    with av.open(str(SAMPLE)) as src, av.open(str(target), "w") as out:
        stream = out.add_stream("libx264", rate=src.streams.video[0].average_rate)
        stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for frame in src.decode(video=0):
            image = cv2.resize(frame.to_ndarray(format="bgr24"), SIZE, interpolation=cv2.INTER_CUBIC)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        out.mux(stream.encode(None))
    return target


# --------------------------------------------------------------------------- the variants


def opencv_copy(clip: Path, out_dir: Path, frames: int) -> tuple[int, Path]:
    capture = cv2.VideoCapture(str(clip))
    fps = capture.get(cv2.CAP_PROP_FPS)
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    target = out_dir / "opencv.mp4"
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    count = 0
    while count < frames:
        ok, image = capture.read()
        if not ok:
            break
        writer.write(image)
        count += 1
    writer.release()
    capture.release()
    return count, target


def opencv_read(clip: Path, out_dir: Path, frames: int) -> tuple[int, Path | None]:
    capture = cv2.VideoCapture(str(clip))
    count = 0
    while count < frames and capture.read()[0]:
        count += 1
    capture.release()
    return count, None


def facepriv_copy(**writer: object) -> Callable[[Path, Path, int], tuple[int, Path]]:
    def run(clip: Path, out_dir: Path, frames: int) -> tuple[int, Path]:
        folder = out_dir / ("_".join(f"{k}-{v}" for k, v in writer.items()) or "default")
        nodes = [
            VisualInput(source=str(clip), frames_log_freq=0),
            MediaWriter(output_dir=str(folder), overwrite=True, **writer),
        ]
        summary = Pipeline(nodes).run(num_iter=frames)
        return summary.iterations, folder / clip.with_suffix(".mp4").name

    return run


def facepriv_read(clip: Path, out_dir: Path, frames: int) -> tuple[int, Path | None]:
    summary = Pipeline([VisualInput(source=str(clip), frames_log_freq=0)]).run(num_iter=frames)
    return summary.iterations, None


def psnr(clip: Path, output: Path, frames: int) -> float:
    """Mean PSNR (dB) of the output's frames against the clip's, over the first ``frames``."""
    av = load_av()
    with av.open(str(clip)) as a, av.open(str(output)) as b:
        values = []
        for left, right in zip(a.decode(video=0), b.decode(video=0), strict=False):
            x = left.to_ndarray(format="bgr24").astype(np.float64)
            y = right.to_ndarray(format="bgr24").astype(np.float64)
            mse = np.mean((x - y) ** 2)
            values.append(99.0 if mse == 0 else 10 * np.log10(255**2 / mse))
            if len(values) >= frames:
                break
    return float(np.mean(values))


def bench_io(clip: Path, frames: int, rounds: int, work: Path) -> None:
    variants: dict[str, Callable[[Path, Path, int], tuple[int, Path | None]]] = {
        "read: opencv VideoCapture": opencv_read,
        "read: facepriv input.visual": facepriv_read,
        "copy: opencv Capture+Writer mp4v": opencv_copy,
        "copy: facepriv video_codec mpeg4": facepriv_copy(video_codec="mpeg4", preset=None),
        "copy: facepriv default libx264": facepriv_copy(),
        "copy: facepriv libx264 ultrafast": facepriv_copy(preset="ultrafast"),
    }
    speeds: dict[str, list[float]] = {name: [] for name in variants}
    outputs: dict[str, Path | None] = {}
    for round_number in range(rounds + 1):  # round 0 warms caches and is not counted
        for name, run in variants.items():
            started = time.perf_counter()
            count, outputs[name] = run(clip, work, frames)
            elapsed = time.perf_counter() - started
            if round_number:
                speeds[name].append(count / elapsed)
        if round_number:
            print(f"  round {round_number}/{rounds}: "
                  + ", ".join(f"{speeds[n][-1]:.0f}" for n in variants), flush=True)

    medians = {name: statistics.median(values) for name, values in speeds.items()}
    baselines = {"read": "read: opencv VideoCapture", "copy": "copy: opencv Capture+Writer mp4v"}
    capture = cv2.VideoCapture(str(clip))
    size = f"{capture.get(cv2.CAP_PROP_FRAME_WIDTH):.0f}x{capture.get(cv2.CAP_PROP_FRAME_HEIGHT):.0f}"
    capture.release()
    print(f"\n{frames} frames of {clip.name} ({size}), median of {rounds} interleaved rounds")
    print(f"{'variant':36} {'frames/s':>9} {'vs opencv':>10} {'size MB':>8} {'PSNR dB':>8}")
    for name in variants:
        base = medians[baselines[name.split(":")[0]]]
        output = outputs[name]
        megabytes = f"{output.stat().st_size / 1e6:8.2f}" if output else f"{'':8}"
        quality = f"{psnr(clip, output, 60):8.1f}" if output else f"{'':8}"
        print(f"{name:36} {medians[name]:9.1f} {medians[name] / base:9.2f}x {megabytes} {quality}")


# --------------------------------------------------------------------------- the full pipeline


def bench_full(clip: Path, frames: int, work: Path, model: str) -> None:
    from facepriv.api import build_nodes
    from facepriv.config import parse_run_config

    print(f"\nmodel: {model}")
    config = parse_run_config({"nodes": [
        {"input.visual": {"source": str(clip), "frames_log_freq": 0}},
        model,
        "draw.mosaic_bbox",
        {"output.media_writer": {"output_dir": str(work / "full"), "overwrite": True}},
    ]}, "bench")
    built = time.perf_counter()
    nodes = build_nodes(config)
    setup = time.perf_counter() - built
    cpu_before = _cpu_seconds()
    summary = Pipeline(nodes).run(num_iter=frames)
    cpu = _cpu_seconds() - cpu_before
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    busy = sum(summary.node_seconds.values())
    count = max(summary.iterations, 1)
    print(f"\nfull pipeline: {summary.iterations} frames of {clip.name} in {summary.seconds:.1f} s "
          f"({summary.iterations / summary.seconds:.2f} frames/s; building the nodes took {setup:.1f} s)")
    for name, seconds in summary.node_seconds.items():
        per_frame = 1000 * seconds / count
        print(f"  {name:22} {seconds:7.2f} s {100 * seconds / busy:5.1f} %  {per_frame:7.1f} ms/frame")
    rest = summary.seconds - busy
    print(f"  {'outside the nodes':22} {rest:7.2f} s         (runner; release: the encoder's last frames)")
    print("  (output.media_writer's time is the YUV conversion and hand-over: x264 encodes in its "
          "own threads,\n   alongside the next frames' nodes)")
    print(f"  CPU, all threads: {1000 * cpu / count:.1f} ms/frame "
          f"({cpu / summary.seconds:.2f} cores busy on average); peak RSS {peak_mb:.0f} MB; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--clip", type=Path, help="video to use (default: a 1280x720 clip made from the sample)")
    add("--frames", type=int, default=300, help="frames per I/O run (default 300)")
    add("--rounds", type=int, default=5, help="interleaved rounds for the medians (default 5)")
    add("--full", action="store_true", help="run the whole pipeline instead")
    add("--models", nargs="+", default=["model.mtcnn", "model.centerface"],
        help="model nodes for --full, one pipeline each (default: model.mtcnn model.centerface)")
    add("--full_frames", type=int, default=300, help="frames for --full (default 300)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    work = Path(tempfile.mkdtemp(prefix="facepriv-bench-"))
    try:
        clip = args.clip or make_clip(work / "wave_1280x720.mp4")
        if args.full:
            for model in args.models:
                bench_full(clip, args.full_frames, work, model)
        else:
            bench_io(clip, args.frames, args.rounds, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
