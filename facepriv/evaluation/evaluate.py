"""``facepriv eval``: run a config's model and draw nodes on annotated photos and report
what they let through, per face-size bucket."""

from __future__ import annotations

import json
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facepriv.config import RunConfig, load_run_config
from facepriv.custom_nodes import node_type
from facepriv.errors import ConfigError, MediaError
from facepriv.evaluation.metrics import (
    SIZE_BUCKETS,
    collateral_pixels,
    face_similarity,
    is_leak,
    match_detections,
    size_bucket,
)
from facepriv.media.reading import FrameInfo, MediaItem, read_image
from facepriv.runner import Pipeline

IOU_THRESHOLDS = (0.5, 0.3)
EVALUATED_TYPES = ("model", "draw", "dabble")
FACE_LABEL = "face"  # the label face detectors give their boxes
FED_KEYS = ("img", "filename", "pipeline_end", "saved_video_fps", "frame_info")  # what eval feeds
OnImage = Callable[[dict[str, Any], np.ndarray, np.ndarray | None], None]  # (entry, input, output)


@dataclass
class Tally:
    """Counts for one size bucket (or overall)."""

    faces: int = 0
    leaked: int = 0
    found: dict[float, int] = field(default_factory=lambda: dict.fromkeys(IOU_THRESHOLDS, 0))
    true_positives: dict[float, int] = field(default_factory=lambda: dict.fromkeys(IOU_THRESHOLDS, 0))
    false_positives: dict[float, int] = field(default_factory=lambda: dict.fromkeys(IOU_THRESHOLDS, 0))

    def figures(self) -> dict[str, Any]:
        def share(part: int, whole: int) -> float | None:
            return round(100.0 * part / whole, 2) if whole else None

        result: dict[str, Any] = {"faces": self.faces}
        for t in IOU_THRESHOLDS:
            result[f"recall@{t}"] = share(self.found[t], self.faces)
            detections = self.true_positives[t] + self.false_positives[t]
            result[f"precision@{t}"] = share(self.true_positives[t], detections)
        result["leak_rate"] = share(self.leaked, self.faces)
        return result


def load_annotations(path: str | Path) -> tuple[Path, list[dict[str, Any]]]:
    """Read a face-boxes-v1 annotation file; images are relative to its folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"annotation file '{path}' does not exist: pass --annotations FILE")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        images = data["images"]
        for entry in images:
            entry["file"], entry["faces"]  # noqa: B018 - the keys every entry needs
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            f"annotation file '{path}' is not in the face-boxes-v1 format: it needs "
            "'images': [{'file': ..., 'faces': [[x1, y1, x2, y2], ...]}]"
        ) from None
    return path.parent, images


def build_eval_nodes(run_config: RunConfig) -> list[Any]:
    """The config's model, draw and dabble nodes (input and output nodes are not used)."""
    from facepriv.api import build_nodes

    kept = [(n, o) for n, o in run_config.nodes if node_type(n) in EVALUATED_TYPES]
    if not any(node_type(name) == "model" for name, _ in kept):
        raise ConfigError("the config has no model node to evaluate: add e.g. model.mtcnn")
    return build_nodes(RunConfig(nodes=kept), provided=FED_KEYS)


def evaluate(
    config_path: str | Path,
    annotations_path: str | Path,
    progress: bool | None = None,
    on_image: OnImage | None = None,
) -> dict[str, Any]:
    """Run the evaluation and return the report as a JSON-ready dict.

    ``on_image(entry, input_image, output_image)`` is called for every image, for callers
    that want to look at the outputs themselves (a review tool, an independent check).
    The report lists every leaked face (``leaked_faces``, most similar first), so that a
    user can look at the faces their settings let through before changing them.
    """
    from tqdm import tqdm

    root, images = load_annotations(annotations_path)
    nodes = build_eval_nodes(load_run_config(config_path))
    scorer = _Scorer(on_image)
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=len(images), desc="eval", unit="image", disable=not show, file=sys.stderr)
    source = _Photos(root, images)
    # The photos go through the runner as a run's would: frames a node holds come out later,
    # and every node is released however the run ends.
    try:
        summary = Pipeline([source, *nodes, _Collect(source, scorer, bar.update)]).run()
    finally:
        bar.close()
    seconds = sum(summary.node_seconds[node.node_name] for node in nodes)
    return {
        "config": str(config_path),
        "annotations": str(annotations_path),
        "images": len(images),
        "size_measure": "box height in pixels",
        "buckets": {name: tally.figures() for name, tally in scorer.buckets.items()},
        "overall": scorer.overall.figures(),
        "collateral": (round(100.0 * scorer.changed_pixels / scorer.total_pixels, 2)
                       if scorer.total_pixels else None),
        "ms_per_image": round(1000.0 * seconds / len(images), 1) if images else None,
        "leaked_faces": sorted(scorer.leaked_faces, key=lambda face: -face["ssim"]),
    }


class _Photos:
    """First node of an eval pipeline: the annotated photos, as input.visual would give them."""

    node_name = "eval.photos"
    inputs = ["none"]
    outputs = list(FED_KEYS)

    def __init__(self, root: Path, images: list[dict[str, Any]]) -> None:
        self.failed_items: list[str] = []
        self._root = root
        self._images = iter(images)
        self.sent: deque[tuple[dict[str, Any], np.ndarray]] = deque()  # not collected yet, in order

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        entry = next(self._images, None)
        if entry is None:
            return {"pipeline_end": True}
        path = self._root / entry["file"]
        image = read_image(path)
        if image is None:
            raise MediaError(f"cannot read image '{path}' listed in the annotations")
        self.sent.append((entry, image))
        item = MediaItem(path, path.name, "image", fps=1.0)
        return {"img": image.copy(), "filename": path.name, "pipeline_end": False, "saved_video_fps": 1.0,
                "frame_info": FrameInfo(item, 0)}

    def release(self, completed: bool = True) -> None:
        """Nothing to free."""


class _Collect:
    """Last node of an eval pipeline: scores each photo's outputs as they come out."""

    node_name = "eval.collect"
    inputs = ["all", "pipeline_end"]
    outputs: list[str] = []

    def __init__(self, source: _Photos, scorer: _Scorer, done: Callable[[], Any]) -> None:
        self.failed_items: list[str] = []
        self._source, self._scorer, self._done = source, scorer, done

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        if not inputs.get("pipeline_end"):
            entry, image = self._source.sent.popleft()
            self._scorer.add(entry, image, inputs)
            self._done()
        return {}

    def release(self, completed: bool = True) -> None:
        """Nothing to free."""


class _Scorer:
    """The tallies of an evaluation, one photo's outputs at a time."""

    def __init__(self, on_image: OnImage | None) -> None:
        self.buckets = {name: Tally() for name, _, _ in SIZE_BUCKETS}
        self.overall = Tally()
        self.changed_pixels = self.total_pixels = 0
        self.leaked_faces: list[dict[str, Any]] = []
        self._on_image = on_image

    def add(self, entry: dict[str, Any], image: np.ndarray, data: dict[str, Any]) -> None:
        """Count the faces of ``entry`` found, missed and left visible in ``data``."""
        buckets, overall = self.buckets, self.overall
        faces = np.asarray(entry["faces"], dtype=np.float64).reshape(-1, 4)
        ignore = np.asarray(entry.get("ignore", []), dtype=np.float64).reshape(-1, 4)
        output = data.get("img")
        if self._on_image is not None:
            self._on_image(entry, image, output)
        detections = np.asarray(data.get("bboxes", np.zeros((0, 4))), dtype=np.float64).reshape(-1, 4)
        detections = detections * np.array([image.shape[1], image.shape[0]] * 2)
        scores = np.asarray(data.get("bbox_scores", np.ones(len(detections))), dtype=np.float64)
        labels = np.asarray(data.get("bbox_labels", [])).astype(str).reshape(-1)
        if len(labels) == len(detections):  # a second detector's plates are no face detections
            is_face = labels == FACE_LABEL
            detections, scores = detections[is_face], scores[is_face]
        heights = faces[:, 3] - faces[:, 1]
        for t in IOU_THRESHOLDS:
            matching = match_detections(faces, ignore, detections, scores, t)
            if t == min(IOU_THRESHOLDS):
                detected = list(matching.face_found)  # any detection matched it, for the leak list
            for face_index, found in enumerate(matching.face_found):
                for tally in (buckets[size_bucket(heights[face_index])], overall):
                    tally.found[t] += int(found)
            for det_index, kind in enumerate(matching.detection_kind):
                if kind == "ignored":
                    continue
                face = matching.detection_face[det_index]
                box = detections[det_index]
                height = heights[face] if face >= 0 else box[3] - box[1]
                for tally in (buckets[size_bucket(height)], overall):
                    if kind == "tp":
                        tally.true_positives[t] += 1
                    else:
                        tally.false_positives[t] += 1
        for face_index, box in enumerate(faces):
            similarity = face_similarity(image, output, box)
            leaked = is_leak(similarity)
            for tally in (buckets[size_bucket(heights[face_index])], overall):
                tally.faces += 1
                tally.leaked += int(leaked)
            if leaked:
                self.leaked_faces.append({
                    "file": entry["file"], "box": [round(float(v), 1) for v in box],
                    "height": round(float(heights[face_index]), 1), "ssim": round(float(similarity), 3),
                    "detected": bool(detected[face_index]),
                })
        changed, total = collateral_pixels(image, output, np.vstack([faces, ignore]))
        self.changed_pixels += changed
        self.total_pixels += total


def format_report(report: dict[str, Any], worst: int = 10) -> str:
    """The report as a fixed-width table (percentages), then the ``worst`` leaked faces."""
    columns = ["faces", *(f"{m}@{t}" for m in ("recall", "precision") for t in IOU_THRESHOLDS),
               "leak_rate"]
    header = f"{'size (px)':<10}" + "".join(f"{c:>15}" for c in columns)
    lines = [header, "-" * len(header)]
    rows = [*report["buckets"].items(), ("all", report["overall"])]
    for name, figures in rows:
        cells = [
            f"{figures[c]:>15}" if c == "faces"
            else f"{'-':>15}" if figures[c] is None else f"{figures[c]:>14.1f}%"
            for c in columns
        ]
        lines.append(f"{name:<10}" + "".join(cells))
    lines.append(
        f"collateral: {report['collateral']}% of non-face pixels changed; "
        f"{report['ms_per_image']} ms per image; {report['images']} images"
    )
    leaked = report["leaked_faces"]
    if leaked and worst:
        shown = leaked[:worst]
        lines.append(f"faces left visible ({len(shown)} of {len(leaked)}, most similar first; "
                     f"'missed': no detection at IoU {min(IOU_THRESHOLDS)}):")
        for face in shown:
            box = ", ".join(f"{v:g}" for v in face["box"])
            state = "detected" if face["detected"] else "missed"
            lines.append(f"  {face['file']}  [{box}]  {face['height']:g} px  "
                         f"SSIM {face['ssim']:.2f}  {state}")
    return "\n".join(lines)
