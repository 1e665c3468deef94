"""``facepriv eval --video CLIP --annotations CLIP.json``: a pipeline against ground truth.

The annotations give every face's box and identity (track) on every frame (format
face-tracks-v1, as ``../shared/tools/make_gtvideo.py`` and ``output.tracks`` write it), so
nothing has to be guessed by a reference detector: each output frame is scored against
its input frame with the leak measure, and masks where no face is near are counted too.
Per clip (faces of ``min_face_size`` px or more unless said otherwise):

- leak rate, overall and per height bucket (every bucket, small faces included);
- leaked frames: frames with at least one leaked face;
- flicker leaks: leaked faces whose own track was hidden on the frame before or after
  (the defect persistence exists for);
- collateral: pixels outside the faces and ignore boxes changed by more than 24 levels;
- spurious: the same outside every face and ignore box grown 1.6x: masks where no face
  is near (false detections, masks drifting after a face or carried across a cut).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from facepriv.errors import ConfigError
from facepriv.evaluation.metrics import (
    SIZE_BUCKETS,
    changed_pixels,
    collateral_pixels,
    face_similarity,
    is_leak,
    size_bucket,
)
from facepriv.geometry import grow_boxes

SPURIOUS_REACH = 1.6  # ground-truth boxes grown this much around their centre count as "near a face"
TRACKS_FORMAT = "face-tracks-v1"


def load_face_tracks(path: str | Path) -> dict[str, Any]:
    """Read a face-tracks-v1 file, checking what the measures rely on."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"annotations '{path}' do not exist: pass the clip's face-tracks-v1 JSON"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(
            f"annotations '{path}' cannot be read as JSON ({err}): pass a face-tracks-v1 file"
        ) from None
    frames = data.get("frames") if isinstance(data, dict) else None
    if not isinstance(frames, list) or data.get("format") != TRACKS_FORMAT:
        raise ConfigError(
            f"annotations '{path}' are not {TRACKS_FORMAT} (a 'format' and a 'frames' list): "
            "pass the JSON written beside the clip"
        )
    for index, frame in enumerate(data["frames"]):
        faces = frame.get("faces", []) if isinstance(frame, dict) else None
        if not isinstance(faces, list) or any(not isinstance(f, list) or len(f) != 5 for f in faces):
            raise ConfigError(
                f"annotations '{path}': frame {index} needs 'faces' as [x1, y1, x2, y2, track] lists"
            )
    return data


class GroundTruthCheck:
    """Pipeline end node: scores each output frame against the clip's annotations."""

    node_name, inputs, outputs = "eval.ground_truth", ["all", "pipeline_end"], []

    def __init__(self, annotations: dict[str, Any], min_face_size: int) -> None:
        self.annotations, self.min_face_size = annotations["frames"], min_face_size
        self.failed_items: list[str] = []
        self.frames_seen = 0
        self.frame_size: tuple[int, int] | None = None
        # per frame: {track: (leaked, counted)}; per frame: worst similarity and pixels
        self.track_states: list[dict[int, tuple[bool, bool]]] = []
        self.frame_rows: list[dict[str, Any]] = []
        self.buckets = {name: [0, 0] for name, _, _ in SIZE_BUCKETS}  # faces, leaked
        self.collateral = [0, 0]
        self.spurious = [0, 0]

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        if inputs.get("pipeline_end"):
            return {}
        original, output = inputs["eval_original"], inputs["img"]
        info = inputs.get("frame_info")
        index = self.frames_seen
        self.frames_seen += 1
        self.frame_size = (original.shape[1], original.shape[0])
        if index >= len(self.annotations):
            return {}  # reported as a length mismatch at the end
        frame = self.annotations[index]
        faces = np.array([f[:4] for f in frame.get("faces", [])], dtype=np.float64).reshape(-1, 4)
        tracks = [int(f[4]) for f in frame.get("faces", [])]
        ignore = np.asarray(frame.get("ignore", []), dtype=np.float64).reshape(-1, 4)
        states: dict[int, tuple[bool, bool]] = {}
        worst, leaked_here = None, 0
        for box, track in zip(faces, tracks, strict=True):
            similarity = face_similarity(original, output, box)
            if similarity is None:
                continue
            leaked, height = is_leak(similarity), box[3] - box[1]
            counted = height >= self.min_face_size
            bucket = self.buckets[size_bucket(height)]
            bucket[0] += 1
            bucket[1] += leaked
            states[track] = (leaked, counted)
            if counted:
                leaked_here += leaked
                if worst is None or similarity > worst[0]:
                    worst = (similarity, box)
        self.track_states.append(states)
        protected = np.vstack([faces, ignore])
        moved = changed_pixels(original, output)  # compared once, counted twice
        changed, total = collateral_pixels(original, output, protected, moved)
        near_faces = grow_boxes(protected, SPURIOUS_REACH)
        far_changed, far_total = collateral_pixels(original, output, near_faces, moved)
        self.collateral[0] += changed
        self.collateral[1] += total
        self.spurious[0] += far_changed
        self.spurious[1] += far_total
        self.frame_rows.append({
            "frame": index,
            "time": None if info is None or info.seconds is None else round(info.seconds, 3),
            "leaked": leaked_here,
            "worst_ssim": None if worst is None else round(worst[0], 3),
            "worst_box": None if worst is None else [round(float(v), 1) for v in worst[1]],
            "spurious": round(100.0 * far_changed / far_total, 2) if far_total else 0.0,
        })
        return {}

    def flicker_leaks(self) -> int:
        """Leaked (counted) faces whose track was present and hidden on a neighbouring frame."""
        count = 0
        for t, states in enumerate(self.track_states):
            for track, (leaked, counted) in states.items():
                if not (leaked and counted):
                    continue
                neighbours = [self.track_states[u].get(track) for u in (t - 1, t + 1)
                              if 0 <= u < len(self.track_states)]
                count += any(state is not None and not state[0] for state in neighbours)
        return count

    def release(self, completed: bool = True) -> None:
        """Nothing to free."""


def _percent(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def clip_report(video: str, check: GroundTruthCheck, failed: list[str], worst: int) -> dict[str, Any]:
    """The measures of one clip, as the JSON report lists them."""
    if check.frames_seen != len(check.annotations):
        raise ConfigError(
            f"'{video}' decodes to {check.frames_seen} frame(s) but its annotations list "
            f"{len(check.annotations)}: pass the annotations written for this clip"
        )
    faces = sum(1 for states in check.track_states for _, counted in states.values() if counted)
    leaked = sum(1 for states in check.track_states for leak, counted in states.values() if counted and leak)
    rows = check.frame_rows
    leaked_rows = sorted((r for r in rows if r["leaked"]), key=lambda r: -r["worst_ssim"])
    spurious_rows = sorted((r for r in rows if r["spurious"] > 0), key=lambda r: -r["spurious"])
    return {
        "video": str(video),
        "frames": check.frames_seen,
        "faces": faces,
        "faces_leaked": leaked,
        "leak_rate": _percent(leaked, faces),
        "by_size": {name: {"faces": n, "leaked": k, "leak_rate": _percent(k, n)}
                    for name, (n, k) in check.buckets.items()},
        "frames_leaked": sum(1 for r in rows if r["leaked"]),
        "flicker_leaks": check.flicker_leaks(),
        "collateral": _percent(*check.collateral),
        "spurious": _percent(*check.spurious),
        "worst_frames": leaked_rows[:worst],
        "most_spurious_frames": spurious_rows[:worst],
        "failed": failed,
    }


def format_gt_report(report: dict[str, Any]) -> str:
    """One line per clip, then its leak buckets and the frames worth a look."""
    settings = report["settings"]
    lines = [
        f"{'video':<32}{'frames':>8}{'faces':>8}{'leaked':>8}{'leak rate':>11}{'leaked frames':>15}"
        f"{'flicker':>9}{'collateral':>12}{'spurious':>10}"
    ]

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}%"

    for clip in report["videos"]:
        lines.append(
            f"{Path(clip['video']).name:<32}{clip['frames']:>8}{clip['faces']:>8}{clip['faces_leaked']:>8}"
            f"{pct(clip['leak_rate']):>11}{clip['frames_leaked']:>15}{clip['flicker_leaks']:>9}"
            f"{pct(clip['collateral']):>12}{pct(clip['spurious']):>10}"
        )
        lines.append("    by height: " + ", ".join(
            f"{name} px {bucket['leaked']}/{bucket['faces']}" for name, bucket in clip["by_size"].items()))
        for frame in clip["worst_frames"]:
            when = "" if frame["time"] is None else f" at {frame['time']:.3f} s"
            lines.append(f"    leaked: frame {frame['frame']}{when}, SSIM {frame['worst_ssim']:.2f}, "
                         f"box {frame['worst_box']}")
        for frame in clip["most_spurious_frames"]:
            when = "" if frame["time"] is None else f" at {frame['time']:.3f} s"
            lines.append(f"    spurious: frame {frame['frame']}{when}, {frame['spurious']:.2f}% of the "
                         "frame changed away from every face")
    lines.append(
        f"{report['faces_leaked']} of {report['faces']} ground-truth face(s) of "
        f"{settings['min_face_size']} px "
        f"or more leaked (SSIM >= {settings['leak_ssim']}); spurious = changes beyond {SPURIOUS_REACH}x "
        "every face box"
    )
    return "\n".join(lines)
