"""dabble.fps: frames per second of the whole pipeline, measured between ticks."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from facepriv.node import AbstractNode

DAMPING_WINDOW = 10


class Node(AbstractNode):
    """Times consecutive ticks; on ``pipeline_end`` logs the run's average rate."""

    def __init__(self, config: dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._previous: float | None = None
        self._started: float | None = None
        self._recent: deque[float] = deque(maxlen=DAMPING_WINDOW)
        self._frames = 0

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        now = time.perf_counter()
        if inputs.get("pipeline_end"):
            if self.fps_log_display and self._started is not None and self._frames > 1:
                average = (self._frames - 1) / (self._previous - self._started)
                self.logger.info("average FPS over %d frames: %.2f", self._frames, average)
            return {"fps": self.average_fps()}
        if self._previous is None:
            self._started = now
        else:
            self._recent.append(now - self._previous)
        self._previous = now
        self._frames += 1
        fps = self.average_fps() if self.dampen_fps else self._instant_fps()
        if self.fps_log_display and self._frames % self.fps_log_freq == 0:
            self.logger.info("FPS: %.2f", fps)
        return {"fps": fps}

    def _instant_fps(self) -> float:
        return 1.0 / self._recent[-1] if self._recent and self._recent[-1] > 0 else 0.0

    def average_fps(self) -> float:
        total = sum(self._recent)
        return len(self._recent) / total if total > 0 else 0.0
