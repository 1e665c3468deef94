"""Test-only faults: the worker running a chosen file dies (SIGKILL) or hangs.

Why it exists: jobs must survive a worker lost in the middle of a file (tests/test_scale_out.py,
tests/test_job_retries.py). The package keeps no test hook; tests put this node in the run
config and pass ``--custom_nodes_dir tests/custom_nodes``, so a real crash or hang happens
inside a real worker, wherever the job runs it (local process or Ray actor).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from facepriv.node import AbstractNode

HANG_SECONDS = 3600


class Node(AbstractNode):
    """After ``after_frames`` frames of the file ``kill_on`` (or ``hang_on``), SIGKILL the
    process (or sleep an hour); with ``once_marker_dir``, only the first time for that file."""

    kill_on: str | None
    hang_on: str | None
    once_marker_dir: str | None
    after_frames: int

    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._item: object = None
        self._frames = 0

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        item = inputs["frame_info"].item
        if item is not self._item:
            self._item, self._frames = item, 0
        self._frames += 1
        if self._frames != self.after_frames:
            return {}
        if _names(item, self.kill_on) and self._first_time(item.name):
            os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
        if _names(item, self.hang_on) and self._first_time(item.name):
            time.sleep(HANG_SECONDS)
        return {}

    def _first_time(self, name: str) -> bool:
        """True without a marker folder; else whether this call made the file's marker."""
        if self.once_marker_dir is None:
            return True
        marker = Path(self.once_marker_dir) / name.replace("/", "__")
        marker.parent.mkdir(parents=True, exist_ok=True)
        try:
            marker.open("x").close()
        except FileExistsError:
            return False
        return True


def _names(item: Any, wanted: str | None) -> bool:
    """Whether ``wanted`` is the file's output name or a suffix of its path."""
    if wanted is None:
        return False
    path = item.path.as_posix() if item.path is not None else ""
    return wanted in (item.name, path) or path.endswith("/" + wanted)
