"""Benchmark ``facepriv run --workers N`` against a serial run, on real photos.

Both run the command a user runs (``python -m facepriv run``) on the first --photos
photos of ../shared/data/faces/images (read from there, written to a temporary folder)
with the default pipeline: input.visual -> model.mtcnn -> draw.mosaic_bbox ->
output.media_writer. The two take turns, round after round; medians are reported.

Two throughputs, in photos per second:

* ``end to end``: the whole command's wall time, process start and TensorFlow and
  model loading included (about 5 s in each process, in parallel for the workers);
* ``processing``: from the first photo started to the last one written, loading left
  out. For the serial run that is the runner's own time ("run finished: ... in X s");
  for the job it is taken from the manifest (each line's finish time and duration).

The outputs of the two runs are compared byte for byte.

    python benchmarks/bench_workers.py                  # 200 photos, 2 workers, 1 round
    python benchmarks/bench_workers.py --rounds 3
    python benchmarks/bench_workers.py --threads 1,2    # the workers' TensorFlow threads (intra,inter)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FACES = Path(os.environ.get("FACEPRIV_SHARED_DATA", REPO.parent / "shared" / "data")) / "faces" / "images"
PIPELINE = """\
nodes:
- input.visual:
    source: {source}
- model.mtcnn
- draw.mosaic_bbox
- output.media_writer:
    output_dir: {output}
"""
RUN_FINISHED = re.compile(r"run finished: \d+ frame\(s\) in ([\d.]+) s")


def run(photos: list[Path], output: Path, workers: int | None, threads: str | None) -> tuple[float, float]:
    """One ``facepriv run`` over ``photos`` into ``output``: (wall seconds, processing seconds)."""
    config = output.with_suffix(".yml")
    config.write_text(PIPELINE.format(source=json.dumps([str(p) for p in photos]), output=output))
    command = [sys.executable, "-m", "facepriv", "run", "--config_path", str(config)]
    if workers:
        command += ["--workers", str(workers)]
    if threads:
        intra, inter = (int(n) for n in threads.split(","))
        command += ["--node_config", json.dumps(
            {"model.mtcnn": {"tf_intra_op_threads": intra, "tf_inter_op_threads": inter}})]
    started = time.perf_counter()
    done = subprocess.run(command, check=True, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if not workers:
        return wall, float(RUN_FINISHED.search(done.stderr).group(1))
    lines = (output / "facepriv-manifest.jsonl").read_text().splitlines()
    records = [record for record in map(json.loads, lines) if record["status"] != "started"]
    ends = [datetime.fromisoformat(record["finished"]) for record in records]
    starts = [end - timedelta(seconds=record["seconds"]) for end, record in zip(ends, records, strict=True)]
    return wall, (max(ends) - min(starts)).total_seconds()


def digests(folder: Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in folder.iterdir() if path.suffix != ".jsonl"
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", default=None, help="intra,inter TensorFlow threads of each worker")
    args = parser.parse_args()
    if not FACES.is_dir():
        sys.exit(f"{FACES} is absent: the benchmark needs the shared evaluation photos")
    photos = sorted(p for p in FACES.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    photos = photos[: args.photos]
    times: dict[str, list[tuple[float, float]]] = {"serial": [], "workers": []}
    with tempfile.TemporaryDirectory(prefix="bench_workers_") as tmp:
        for number in range(args.rounds):
            for label, workers in (("serial", None), ("workers", args.workers)):
                output = Path(tmp) / f"{label}{number}"
                wall, processing = run(photos, output, workers, args.threads if workers else None)
                times[label].append((wall, processing))
                print(f"round {number + 1} {label:8s} wall {wall:5.1f} s, processing {processing:5.1f} s",
                      flush=True)
            same = digests(Path(tmp) / f"serial{number}") == digests(Path(tmp) / f"workers{number}")
            print(f"round {number + 1} outputs identical: {same}", flush=True)
    print(f"\n{len(photos)} photos, {os.cpu_count()} cores, median of {args.rounds} round(s), photos/s:")
    print(f"{'':14s} {'end to end':>10s} {'processing':>10s}")
    rates = {}
    for label, name in (("serial", "serial"), ("workers", f"--workers {args.workers}")):
        wall = statistics.median(t[0] for t in times[label])
        processing = statistics.median(t[1] for t in times[label])
        rates[label] = (len(photos) / wall, len(photos) / processing)
        print(f"{name:14s} {rates[label][0]:10.2f} {rates[label][1]:10.2f}")
    ratio = [w / s for w, s in zip(rates["workers"], rates["serial"], strict=True)]
    print(f"{'ratio':14s} {ratio[0]:9.2f}x {ratio[1]:9.2f}x")


if __name__ == "__main__":
    main()
