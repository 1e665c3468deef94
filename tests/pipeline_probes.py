"""Test nodes around a pipeline: composed frames in, everything that comes out kept."""

from __future__ import annotations

from typing import Any

import numpy as np

from facepriv.media.reading import FrameInfo, MediaItem


class Frames:
    """A source node over composed frames, stamped as one video."""

    node_name, inputs, outputs = "input.frames", ["none"], ["img", "frame_info", "pipeline_end"]

    def __init__(self, frames: list[np.ndarray], name: str = "composed.mp4", fps: float = 30.0) -> None:
        self.frames, self.index = frames, 0
        self.item = MediaItem(None, name, "video", fps=fps)
        self.failed_items: list[str] = []

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        if self.index == len(self.frames):
            return {"img": None, "frame_info": None, "pipeline_end": True}
        self.index += 1
        return {"img": self.frames[self.index - 1], "frame_info": FrameInfo(self.item, self.index - 1),
                "pipeline_end": False}

    def release(self, completed: bool = True) -> None:
        """Nothing to free."""


class Collect:
    """Keeps what reaches the end of the pipeline, by frame index."""

    node_name, inputs, outputs = "output.collect", ["all"], []

    def __init__(self) -> None:
        self.frames: dict[int, dict[str, Any]] = {}
        self.order: list[int] = []
        self.failed_items: list[str] = []

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        if not inputs.get("pipeline_end"):
            index = inputs["frame_info"].index
            self.order.append(index)
            self.frames[index] = dict(inputs)
        return {}

    def release(self, completed: bool = True) -> None:
        """Nothing to free."""
