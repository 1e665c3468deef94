"""``facepriv eval``: run a config's model and draw nodes on annotated photos and report
what they let through, per face-size bucket."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facepriv.config import RunConfig, load_run_config
from facepriv.errors import ConfigError, MediaError
from facepriv.evaluation.metrics import (
    SIZE_BUCKETS,
    collateral_pixels,
    face_similarity,
    is_leak,
    match_detections,
    size_bucket,
)
from facepriv.media import FrameInfo, MediaItem, read_image
from facepriv.runner import merge_outputs

IOU_THRESHOLDS = (0.5, 0.3)
EVALUATED_TYPES = ("model", "draw", "dabble")
FACE_LABEL = "face"  # the label face detectors give their boxes
FED_KEYS = ("img", "filename", "pipeline_end", "saved_video_fps", "frame_info")  # what eval feeds


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

    kept = [(n, o) for n, o in run_config.nodes if n.split(".")[0] in EVALUATED_TYPES]
    if not any(name.startswith("model.") for name, _ in kept):
        raise ConfigError("the config has no model node to evaluate: add e.g. model.mtcnn")
    return build_nodes(RunConfig(nodes=kept), provided=FED_KEYS)


def evaluate(
    config_path: str | Path,
    annotations_path: str | Path,
    progress: bool | None = None,
    on_image: Callable[[dict[str, Any], np.ndarray, np.ndarray | None], None] | None = None,
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
    buckets = {name: Tally() for name, _, _ in SIZE_BUCKETS}
    overall = Tally()
    changed_pixels = total_pixels = 0
    leaked_faces: list[dict[str, Any]] = []
    seconds = 0.0
    show = sys.stderr.isatty() if progress is None else progress
    for entry in tqdm(images, desc="eval", unit="image", disable=not show, file=sys.stderr):
        image = read_image(root / entry["file"])
        if image is None:
            raise MediaError(f"cannot read image '{root / entry['file']}' listed in the annotations")
        faces = np.asarray(entry["faces"], dtype=np.float64).reshape(-1, 4)
        ignore = np.asarray(entry.get("ignore", []), dtype=np.float64).reshape(-1, 4)
        started = time.perf_counter()
        data = _run_nodes(nodes, image.copy(), root / entry["file"])
        seconds += time.perf_counter() - started
        output = data.get("img")
        if on_image is not None:
            on_image(entry, image, output)
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
                leaked_faces.append({
                    "file": entry["file"], "box": [round(float(v), 1) for v in box],
                    "height": round(float(heights[face_index]), 1), "ssim": round(float(similarity), 3),
                    "detected": bool(detected[face_index]),
                })
        changed, total = collateral_pixels(image, output, np.vstack([faces, ignore]))
        changed_pixels += changed
        total_pixels += total
    for node in nodes:
        node.release()
    return {
        "config": str(config_path),
        "annotations": str(annotations_path),
        "images": len(images),
        "size_measure": "box height in pixels",
        "buckets": {name: tally.figures() for name, tally in buckets.items()},
        "overall": overall.figures(),
        "collateral": round(100.0 * changed_pixels / total_pixels, 2) if total_pixels else None,
        "ms_per_image": round(1000.0 * seconds / len(images), 1) if images else None,
        "leaked_faces": sorted(leaked_faces, key=lambda face: -face["ssim"]),
    }


def _run_nodes(nodes: list[Any], image: np.ndarray, path: Path) -> dict[str, Any]:
    """The pool input.visual would give for this photo, through the evaluated nodes."""
    item = MediaItem(path, path.name, "image", fps=1.0)
    data: dict[str, Any] = {
        "img": image, "filename": path.name, "pipeline_end": False, "saved_video_fps": 1.0,
        "frame_info": FrameInfo(item, 0),
    }
    for node in nodes:
        outputs = node.run(data if "all" in node.inputs else {k: data[k] for k in node.inputs})
        merge_outputs(data, outputs, getattr(node, "appends", ()))
    return data


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
