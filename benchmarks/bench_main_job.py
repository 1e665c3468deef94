"""The main job's whole run against the decode + encode ceiling (issue 15's measure).

On a 1280x720 clip (the sample scaled up, as bench_pipeline.py makes it, unless --clip is
given), two pipelines run interleaved, round after round, and the medians are compared, so
a busy machine slows them alike:

* ``io``: input.visual -> output.media_writer with the main job's writer settings: what
  decoding and encoding alone cost, the ceiling;
* ``main``: ``configs/anonymize_video.yml`` as it is (model.centerface, dabble.persist_bbox,
  dabble.fps, draw.fill_bbox, output.media_writer), its source and output swapped;
* ``every<n>`` for each ``--detect_every n``: the main job with model.centerface's
  ``detect_every`` set to n (1 is the exact path: every frame detected).

Each run is a fresh pipeline (models loaded outside the timed part) over --frames frames.
It prints the wall time and frames per second of each and the ratio main / io, and the
milliseconds per frame inside each node of the main job (RunSummary.node_seconds).

    python benchmarks/bench_main_job.py [--frames 240] [--rounds 3] [--clip CLIP] [--detect_every 1 4 8]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_pipeline import REPO, make_clip  # same clip as the pipeline benchmark

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
        overrides["model.centerface"] = {"detect_every": int(variant[len("every"):])}
    return build_nodes(config, overrides)


def run_once(variant: str, clip: Path, work: Path, frames: int) -> tuple[float, dict[str, float], int]:
    nodes = pipeline_nodes(variant, clip, work / variant)
    start = time.perf_counter()
    summary = Pipeline(nodes).run(num_iter=frames)
    return time.perf_counter() - start, dict(summary.node_seconds), summary.iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=None, help="a video (default: the sample at 1280x720)")
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--detect_every", type=int, nargs="*", default=[],
                        help="also run the main job with these detect_every values")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        clip = args.clip or make_clip(work / "clip.mp4")
        walls: dict[str, list[float]] = {"io": [], "main": []}
        walls.update({f"every{every}": [] for every in args.detect_every})
        node_ms: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for variant in walls:
                seconds, per_node, frames = run_once(variant, clip, work, args.frames)
                walls[variant].append(seconds)
                if variant == "main":
                    for name, spent in per_node.items():
                        node_ms.setdefault(name, []).append(1000 * spent / max(frames, 1))
    medians = {variant: statistics.median(values) for variant, values in walls.items()}
    print(f"{clip.name}: {frames} frames, {args.rounds} interleaved rounds, medians")
    for variant, seconds in medians.items():
        ratio = f"  {seconds / medians['io']:5.2f}x io" if variant != "io" else ""
        print(f"  {variant:<8}{seconds:7.2f} s  {frames / seconds:6.1f} frames/s{ratio}")
    print(f"  main / io = {medians['main'] / medians['io']:.2f}x (issue 15 asks for <= 2.0x)")
    print("  main job, ms per frame inside each node:")
    for name, values in node_ms.items():
        print(f"    {name:<24}{statistics.median(values):7.2f}")


if __name__ == "__main__":
    main()
