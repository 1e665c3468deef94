"""What following the camera costs dabble.persist_bbox per frame, beside the detector.

On 1280x720 frames (../shared/data/videos/pan_dev.mp4 when it is there: pans, zooms and
cuts; else the sample clip scaled up, as bench_pipeline.py makes it), decoded once into
memory, three things run interleaved round after round on the same frames, and the
medians of milliseconds per frame are compared:

* ``motion``: CameraMotion.update + avoid (corners outside the frame's faces), what the
  persistence node adds per frame;
* ``detector``: model.centerface at the main job's settings (832 px): the reference the
  cost is measured against;
* ``decode``: the clip decoded by input.visual, for scale.

    python benchmarks/bench_camera_motion.py [--frames 240] [--rounds 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_pipeline import REPO, make_clip  # same clip as the pipeline benchmark

sys.path.insert(0, str(REPO))

from facepriv.camera_motion import CameraMotion  # noqa: E402
from facepriv.node import build_node  # noqa: E402

SHARED_DATA = Path(os.environ.get("FACEPRIV_SHARED_DATA", REPO.parent / "shared" / "data"))
PAN_DEV = SHARED_DATA / "videos" / "pan_dev.mp4"


def decode(clip: Path, frames: int) -> tuple[list, float]:
    source = build_node("input.visual", {"source": str(clip)})
    images, start = [], time.perf_counter()
    while len(images) < frames:
        out = source.run({})
        if out["pipeline_end"]:
            break
        images.append(out["img"])
    seconds = time.perf_counter() - start
    source.release()
    return images, seconds / max(len(images), 1)


def motion_ms(images: list, faces: list) -> float:
    motion = CameraMotion()
    start = time.perf_counter()
    for image, boxes in zip(images, faces, strict=True):
        motion.update(image)
        motion.avoid(boxes)
    return 1000 * (time.perf_counter() - start) / len(images)


def detector_ms(detector, images: list) -> tuple[float, list]:
    faces, start = [], time.perf_counter()
    for image in images:
        faces.append(detector.run({"img": image})["bboxes"])
    return 1000 * (time.perf_counter() - start) / len(images), faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=None,
                        help="a video (default: pan_dev or the scaled sample)")
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        clip = args.clip or (PAN_DEV if PAN_DEV.is_file() else make_clip(Path(folder) / "clip.mp4"))
        detector = build_node("model.centerface", {"score_threshold": 0.1})
        results: dict[str, list[float]] = {"motion": [], "detector": [], "decode": []}
        for _ in range(args.rounds):
            images, decode_seconds = decode(clip, args.frames)
            results["decode"].append(1000 * decode_seconds)
            seconds, faces = detector_ms(detector, images)
            results["detector"].append(seconds)
            results["motion"].append(motion_ms(images, faces))
    height, width = images[0].shape[:2]
    print(f"{clip.name}: {len(images)} frames of {width}x{height}, {args.rounds} rounds, medians")
    medians = {name: statistics.median(values) for name, values in results.items()}
    for name, value in medians.items():
        print(f"  {name:<9}{value:8.2f} ms a frame")
    print(f"  motion / detector = {medians['motion'] / medians['detector']:.3f}, "
          f"motion / decode = {medians['motion'] / medians['decode']:.2f}")


if __name__ == "__main__":
    main()
