"""What dabble.persist_bbox costs in the whole file-to-file pipeline.

On the same 1280x720 clip as bench_pipeline.py (the real sample's frames scaled up,
one face), three pipelines run interleaved, round after round, and the medians are
compared, so a busy machine slows them alike:

* ``without``: input.visual -> model -> draw.mosaic_bbox -> output.media_writer;
* ``window``: the same with dabble.persist_bbox before the draw node (the default
  lookahead: frames wait in memory for max(hold_frames, backfill_frames) later ones);
* ``file``: dabble.persist_bbox with ``lookahead: file`` (boxes of the whole clip first,
  then every frame decoded a second time for rendering).

It prints frames per second, the overhead against ``without`` and the milliseconds per
frame spent inside each node (RunSummary.node_seconds): the persistence node's own cost
is disturbed less by load on the machine than wall time.

    python benchmarks/bench_persistence.py [--rounds 2] [--model model.mtcnn]
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

from facepriv.node import build_node  # noqa: E402
from facepriv.runner import Pipeline  # noqa: E402

VARIANTS = {"without": None, "window": {"lookahead": "window"}, "file": {"lookahead": "file"}}


def run_once(clip: Path, out_dir: Path, frames: int | None, model: str,
             persist: dict | None) -> tuple[int, float, dict[str, float]]:
    """Frames written, wall seconds of one run and each node's own seconds."""
    nodes = [build_node("input.visual", {"source": str(clip)}), build_node(model)]
    if persist is not None:
        nodes.append(build_node("dabble.persist_bbox", persist))
    nodes += [build_node("draw.mosaic_bbox"),
              build_node("output.media_writer", {"output_dir": str(out_dir), "overwrite": True})]
    started = time.perf_counter()
    summary = Pipeline(nodes).run(num_iter=frames)
    wall = time.perf_counter() - started
    return summary.iterations, wall, summary.node_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # The whole clip: the file variant looks at all of it before rendering the first frame.
    parser.add_argument("--frames", type=int, default=None, help="stop after N frames (default: all)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="model.mtcnn")
    parser.add_argument("--clip", type=Path, default=None, help="a 1280x720 clip (made if absent)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = args.clip or make_clip(work / "clip720.mp4")
        run_once(clip, work / "warm", 5, args.model, None)  # load the model, warm caches
        walls: dict[str, list[float]] = {name: [] for name in VARIANTS}
        own: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
        for _ in range(args.rounds):
            for name, persist in VARIANTS.items():
                count, wall, node = run_once(clip, work / name, args.frames, args.model, persist)
                walls[name].append(wall)
                own[name].append(node)
    base = statistics.median(walls["without"])
    nodes = list(own["window"][0])
    print(f"{count} frames of 1280x720, {args.model}, median of {args.rounds} interleaved rounds")
    print(f"{'variant':<10}{'fps':>8}{'vs without':>12}" + "".join(f"{n.split('.')[1]:>14}" for n in nodes))
    for name in VARIANTS:
        wall = statistics.median(walls[name])
        shares = [statistics.median(run.get(node, 0.0) for run in own[name]) / count * 1000 for node in nodes]
        print(f"{name:<10}{count / wall:>8.2f}{100 * (wall / base - 1):>+11.1f}%"
              + "".join(f"{ms:>11.2f} ms" for ms in shares))
    print("(per-node columns: milliseconds per frame inside that node)")

if __name__ == "__main__":
    main()
