"""model.mtcnn against the stock mtcnn package: speed, agreement, memory, retracing.

    python benchmarks/bench_mtcnn.py              # speed + agreement (about 10 minutes)
    python benchmarks/bench_mtcnn.py --quick      # fewer frames and runs (about 3 minutes)
    python benchmarks/bench_mtcnn.py --memory     # 5,000 mixed-size frames: RSS and retracing

Frames are real: evenly spaced frames of the sample videos (samples/ and
../shared/data/videos) resized to 640x480, 1280x720 and 1920x1080, and the photos of
../shared/data/faces at their own sizes. Every detector runs with PeekingDuck's settings
(min_size 40, scale 0.709, thresholds 0.6 / 0.7 / 0.7, score 0.7):

* ``stock``: ``mtcnn.MTCNN().detect_faces`` as shipped, what a user of the package gets.
  At min_face_size 40 its pyramid runs below P-Net's 12 px window, so on most frames it
  raises or silently returns nothing (counted as "failed" / "no face" below).
* ``stock-fixed``: the same call with the package's pyramid cut to the levels P-Net can
  read (the monkeypatch tests/test_model_mtcnn.py uses). Agreement is measured against it.
* ``ours``: facepriv's model.mtcnn node on the BGR frame, as a pipeline calls it.
* ``ours-defaults``: the node at its own defaults (thresholds 0.2 / 0.2 / 0.2, score 0.2).

Timing is interleaved (each frame goes through every detector in turn) and repeated; the
table shows the median milliseconds per frame over all runs and frames. Numbers on a
shared 2-core machine are noisy: compare ratios, and re-run to confirm.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("FACEPRIV_SHARED_DATA", REPO.parent / "shared" / "data"))
VIDEOS = [REPO / "samples" / "peekingduck_wave.mp4"] + sorted(
    p for p in (SHARED / "videos").glob("*")
    if p.suffix in (".mp4", ".avi") and p.name != "peekingduck_wave.mp4"
)
SIZES = ((640, 480), (1280, 720), (1920, 1080))
PEEKINGDUCK = dict(min_face_size=40, scale_factor=0.709, threshold_pnet=0.6, threshold_rnet=0.7,
                   threshold_onet=0.7)
SCORE = 0.7
IOU = 0.9

Detector = Callable[[np.ndarray], np.ndarray]  # BGR frame -> N x 4 boxes x1, y1, x2, y2


# ---------------------------------------------------------------------- frames
def video_frames(per_video: int) -> list[np.ndarray]:
    """``per_video`` evenly spaced BGR frames of each sample video that exists."""
    frames = []
    for path in VIDEOS:
        if not path.exists():
            continue
        capture = cv2.VideoCapture(str(path))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        for i in range(per_video):
            capture.set(cv2.CAP_PROP_POS_FRAMES, int((i + 0.5) * count / per_video))
            ok, frame = capture.read()
            if ok:
                frames.append(frame)
        capture.release()
    if not frames:
        sys.exit("no sample video found: samples/peekingduck_wave.mp4 is part of the repository")
    return frames


def photos(limit: int | None) -> list[np.ndarray]:
    index = SHARED / "faces" / "annotations.json"
    if not index.exists():
        print(f"({index} absent: photos skipped)")
        return []
    entries = json.loads(index.read_text())["images"][:limit]
    return [cv2.imread(str(SHARED / "faces" / e["file"])) for e in entries]


# ---------------------------------------------------------------------- detectors
def node_threads(args: argparse.Namespace) -> dict[str, int]:
    if not args.threads:
        return {}
    intra, inter = (int(v) for v in args.threads.split(","))
    return {"tf_intra_op_threads": intra, "tf_inter_op_threads": inter}


def build_detectors(args: argparse.Namespace) -> dict[str, Detector]:
    # Ours first: the node sets TensorFlow's thread pools before anything runs, and the
    # stock package then runs in the same pools, as it would in the same pipeline.
    from facepriv.nodes.model.mtcnn import Node

    threads = node_threads(args)
    ours = Node(network_thresholds=[0.6, 0.7, 0.7], score_threshold=SCORE, **threads)
    defaults = Node(**threads)
    from mtcnn import MTCNN

    stock = MTCNN()

    def run_stock(frame: np.ndarray) -> np.ndarray:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        try:
            found = stock.detect_faces(rgb, box_format="xyxy", output_type="numpy", **PEEKINGDUCK)
        except Exception:  # noqa: BLE001 - the package's own failure at min_face_size 40
            return None  # type: ignore[return-value]
        found = np.asarray(found).reshape(-1, 16) if len(found) else np.zeros((0, 16))
        return found[found[:, 5] >= SCORE, 1:5]

    def run_fixed(frame: np.ndarray) -> np.ndarray:
        with stock_pyramid_cut_at_12_px():
            return run_stock(frame)

    return {
        "stock": run_stock,
        "stock-fixed": run_fixed,
        "ours": lambda frame: ours.detect(frame)[0],
        "ours-defaults": lambda frame: defaults.detect(frame)[0],
    }


@contextlib.contextmanager
def stock_pyramid_cut_at_12_px() -> Iterator[None]:
    """Keep only the package's own pyramid levels that P-Net can read (>= 12 px)."""
    import mtcnn.stages.stage_pnet as stage_pnet

    package_pyramid = stage_pnet.build_scale_pyramid

    def readable_levels(width, height, min_face_size, scale_factor, min_size=12):  # noqa: ANN001
        scales = package_pyramid(width, height, min_face_size, scale_factor, min_size)
        return scales[(min(width, height) * scales).astype(int) >= 12]

    stage_pnet.build_scale_pyramid = readable_levels
    try:
        yield
    finally:
        stage_pnet.build_scale_pyramid = package_pyramid


# ---------------------------------------------------------------------- measures
def matched(a: np.ndarray, b: np.ndarray) -> int:
    """How many boxes of a some box of b overlaps with IoU >= 0.9."""
    from facepriv.evaluation.metrics import iou_matrix

    if len(a) == 0 or len(b) == 0:
        return 0
    return int((iou_matrix(a, b).max(axis=1) >= IOU).sum())


def bench(name: str, frames: list[np.ndarray], detectors: dict[str, Detector], runs: int,
          order: str = "frame") -> None:
    """Interleaved timing over ``runs`` passes; agreement of ours with stock-fixed.

    ``order`` "frame": each frame goes through every detector in turn; "block": in each
    pass every detector runs over all the frames in turn, as one detector runs frame after
    frame in a pipeline (its caches and threads stay warm between frames).
    """
    for frame in frames[:2]:  # warm every graph and the package's eager paths
        for detect in detectors.values():
            detect(frame)
    times: dict[str, list[float]] = {key: [] for key in detectors}
    cpu: dict[str, list[float]] = {key: [] for key in detectors}
    boxes: dict[str, list[np.ndarray]] = {key: [] for key in detectors}
    if order == "frame":
        schedule = [(index, key) for index in range(len(frames)) for key in detectors]
    else:
        schedule = [(index, key) for key in detectors for index in range(len(frames))]
    for run in range(runs):
        for index, key in schedule:
            start, start_cpu = time.perf_counter(), time.process_time()
            found = detectors[key](frames[index])
            times[key].append(time.perf_counter() - start)
            cpu[key].append(time.process_time() - start_cpu)
            if run == 0:
                boxes[key].append(found)
    ms = {key: 1000 * float(np.median(values)) for key, values in times.items()}
    cpu_ms = {key: 1000 * float(np.median(values)) for key, values in cpu.items()}
    failed = sum(found is None for found in boxes["stock"])
    stock_faces = sum(len(found) for found in boxes["stock"] if found is not None)
    fixed, ours = boxes["stock-fixed"], boxes["ours"]
    fixed_total, ours_total = sum(map(len, fixed)), sum(map(len, ours))
    fixed_hit = sum(matched(f, o) for f, o in zip(fixed, ours, strict=True))
    ours_hit = sum(matched(o, f) for f, o in zip(fixed, ours, strict=True))
    print(
        f"{name:>11} {len(frames):>4} {ms['stock']:>8.1f} {ms['stock-fixed']:>8.1f} "
        f"{ms['ours']:>7.1f} {ms['ours'] / ms['stock']:>7.3f} {ms['ours'] / ms['stock-fixed']:>7.3f} "
        f"{ms['ours-defaults']:>9.1f} {cpu_ms['stock']:>7.1f} {cpu_ms['ours']:>6.1f} "
        f"{cpu_ms['ours'] / cpu_ms['stock']:>6.3f}   {failed:>3} fail {stock_faces:>3} faces | "
        f"{_share(fixed_hit, fixed_total)} of {fixed_total:>3}  "
        f"{_share(ours_hit, ours_total)} of {ours_total:>3}",
        flush=True,
    )


def _share(hit: int, total: int) -> str:
    return f"{100 * hit / total:6.1f} %" if total else "     - "


def speed_and_agreement(args: argparse.Namespace) -> None:
    detectors = build_detectors(args)
    frames = video_frames(args.frames_per_video)
    print(f"{len(frames)} video frames from {sum(p.exists() for p in VIDEOS)} videos; "
          f"{args.runs} interleaved runs ({args.order} order); TensorFlow threads: {_threads()}; {_load()}")
    print("ms per frame (median); ratio = ours / stock; cpu = CPU ms of all threads (median), "
          "cpu-r = ours / stock;\nagreement at IoU >= 0.9 against stock-fixed")
    print(f"{'frames':>11} {'n':>4} {'stock':>8} {'st-fixed':>8} {'ours':>7} {'ratio':>7} "
          f"{'r-fixed':>7} {'ours-dflt':>9} {'cpu-st':>7} {'cpu':>6} {'cpu-r':>6}   stock as shipped"
          f"     | stock-fixed found by ours, ours found by stock-fixed")
    for width, height in SIZES:
        sized = [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames]
        bench(f"{width}x{height}", sized, detectors, args.runs, args.order)
    pictures = photos(args.photos)
    if pictures:
        bench("photos", pictures, detectors, 1, args.order)
    print(_load())


def _load() -> str:
    """The 1-minute load average: other jobs on this shared box slow every column."""
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


def _threads() -> str:
    import tensorflow as tf

    threading = tf.config.threading
    return (f"intra-op {threading.get_intra_op_parallelism_threads()}, "
            f"inter-op {threading.get_inter_op_parallelism_threads()} (0 = TensorFlow's default)")


# ---------------------------------------------------------------------- memory
def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MB, from /proc/self/status."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def memory(args: argparse.Namespace) -> None:
    """Cycle real frames of mixed sizes through the node; RSS growth and retracing."""
    from facepriv.nodes.model.mtcnn import Node

    warnings: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "retrac" in record.getMessage().lower():
                warnings.append(record.getMessage())

    logging.getLogger().addHandler(Catch())
    logging.getLogger("tensorflow").addHandler(Catch())
    node = Node(**node_threads(args))
    base = video_frames(3)
    sizes = [(640, 480), (1280, 720), (320, 240), (1920, 1080), (710, 540), (500, 333)]
    frames = [cv2.resize(f, s, interpolation=cv2.INTER_AREA) for f in base for s in sizes]
    frames += [f[: 100 + 37 * i, : 150 + 53 * i] for i, f in enumerate(base)]  # odd crops
    print(f"{args.frames} frames cycling {len(frames)} real frames of "
          f"{len({f.shape for f in frames})} sizes through model.mtcnn (defaults)")
    start = time.perf_counter()
    for i in range(args.frames):
        node.run({"img": frames[i % len(frames)]})
        if i + 1 == 100:
            after_100 = rss_mb()
            print(f"after   100 frames: RSS {after_100[0]:7.1f} MB, peak {after_100[1]:7.1f} MB")
        elif (i + 1) % 1000 == 0:
            now = rss_mb()
            print(f"after {i + 1:>5} frames: RSS {now[0]:7.1f} MB, peak {now[1]:7.1f} MB "
                  f"({(time.perf_counter() - start) / (i + 1) * 1000:.1f} ms a frame)", flush=True)
    end = rss_mb()
    print(f"peak RSS growth after the first 100 frames: {end[1] - after_100[1]:+.1f} MB "
          f"(limit +50 MB); current RSS growth {end[0] - after_100[0]:+.1f} MB")
    print(f"graph tracings (P-, R-, O-Net): {node.cascade.tracing_counts()} (1 each = no retracing); "
          f"retracing warnings: {len(warnings)}; frames failed: {node.frames_failed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 frames a video, 2 runs, 60 photos")
    parser.add_argument("--frames-per-video", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3, help="interleaved timing passes")
    parser.add_argument("--order", choices=["frame", "block"], default="frame",
                        help="frame: each frame through every detector in turn; block: each "
                        "detector through all frames in turn, as in a pipeline")
    parser.add_argument("--photos", type=int, default=None, help="first N photos (default all)")
    parser.add_argument("--memory", action="store_true", help="run the memory/retracing check")
    parser.add_argument("--frames", type=int, default=5000, help="frames for --memory")
    parser.add_argument("--threads", help="INTRA,INTER TensorFlow threads (default: the node's)")
    args = parser.parse_args()
    if args.quick:
        args.frames_per_video, args.runs, args.photos = 2, 2, args.photos or 60
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.memory:
        memory(args)
    else:
        speed_and_agreement(args)


if __name__ == "__main__":
    main()
