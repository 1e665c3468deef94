"""output.csv_writer: a CSV of chosen data values, one row per logging interval."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import numpy as np

from facepriv.errors import ConfigError, MediaError
from facepriv.media.outputs import AtomicOutput, ensure_writable_dir, write_errors_reported
from facepriv.node import AbstractNode


def _cell(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return np.round(value.astype(np.float64), 4).tolist() if value.dtype.kind == "f" else value.tolist()
    return value


class Node(AbstractNode):
    """Writes ``Time`` plus the tracked keys; the file appears complete at the end."""

    def __init__(self, config: dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        path = Path(self.file_path)
        if path.suffix.lower() != ".csv":
            raise ConfigError(
                f"output.csv_writer.file_path '{path}' must end in .csv: rename it, e.g. stats.csv"
            )
        ensure_writable_dir(path.parent, "output.csv_writer.file_path's folder")
        stamped = path.with_name(f"{path.stem}_{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}")
        self._output = AtomicOutput(stamped)
        self._handle = self._output.temp_path.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._handle)
        self._writer.writerow(["Time", *self.stats_to_track])
        self._last_row = -float("inf")

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        if inputs.get("pipeline_end"):
            return {}
        missing = [key for key in self.stats_to_track if key not in inputs]
        if missing:
            raise ConfigError(
                f"output.csv_writer.stats_to_track names {', '.join(missing)}, which no earlier "
                f"node produces (available: {', '.join(sorted(inputs))}): fix the key"
            )
        now = time.time()
        if now - self._last_row >= self.logging_interval:
            stamp = time.strftime("%H:%M:%S", time.localtime(now))
            with write_errors_reported(self._output.final_path):
                self._writer.writerow([stamp, *(_cell(inputs[key]) for key in self.stats_to_track)])
            self._last_row = now
        return {}

    def release(self, completed: bool = True) -> None:
        if self._handle.closed:
            return
        try:
            with write_errors_reported(self._output.final_path):
                self._handle.close()
                if completed:
                    self.logger.info("wrote %s", self._output.commit())
                    return
        except MediaError as err:  # reported with the run's other failures
            self.failed_items.append(str(err))
        self._output.discard()
