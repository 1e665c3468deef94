"""One render at a time in a background thread, with progress the page polls.

The render is ``facepriv.api.render`` on the saved tracks file, with the draw and writer
nodes the file recorded (those of the run that wrote it) or those of the ``--config_path``
given to review. Its output replaces the output under review (``overwrite`` is set): the
reviewer asked for exactly that, and the writer still replaces it atomically.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from facepriv.config import load_run_config
from facepriv.errors import ConfigError, FaceprivError
from facepriv.review.library import ReviewFile

logger = logging.getLogger("facepriv.review")


class RenderJob:
    """The state of the last render: idle, running, done or failed."""

    def __init__(self, config_path: str | None = None) -> None:
        self._config_path = config_path
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {"state": "idle", "done": 0, "total": 0, "error": None, "file": None}
        self._thread: threading.Thread | None = None

    def status(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._state)

    def start(self, item: ReviewFile) -> bool:
        """Start rendering ``item``; False if a render is already running."""
        with self._lock:
            if self._state["state"] == "running":
                return False
            self._state = {"state": "running", "done": 0, "total": len(item.data["frames"]), "error": None,
                           "file": item.data["name"]}
        self._thread = threading.Thread(target=self._run, args=(item,), name="facepriv-render", daemon=True)
        self._thread.start()
        return True

    def wait(self, timeout: float | None = None) -> None:
        """For tests and shutdown: wait for the running render."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _nodes(self, item: ReviewFile) -> list[tuple[str, dict[str, Any]]]:
        if self._config_path is not None:
            nodes = load_run_config(self._config_path).nodes
        else:
            nodes = [(entry["node"], dict(entry["settings"])) for entry in item.data.get("nodes", [])]
        if not any(name == "output.media_writer" for name, _ in nodes):
            raise ConfigError("the run that wrote this tracks file had no output.media_writer: start review "
                              "with --config_path naming a config with draw and writer nodes")
        return [(name, {**settings, "overwrite": True} if name == "output.media_writer" else settings)
                for name, settings in nodes]

    def _progress(self, done: int, total: int) -> None:
        with self._lock:
            self._state.update(done=done, total=total)

    def _run(self, item: ReviewFile) -> None:
        from facepriv import api

        try:
            api.render([item.path], nodes=self._nodes(item), progress=self._progress)
        except FaceprivError as err:
            self._finish("failed", str(err))
            return
        except Exception as err:  # noqa: BLE001 - shown on the page; the server goes on
            logger.exception("render of %s failed", item.path)
            self._finish("failed", f"{type(err).__name__}: {err}")
            return
        finally:
            if item.output is not None:
                item.output.forget()
        self._finish("done", None)

    def _finish(self, state: str, error: str | None) -> None:
        with self._lock:
            self._state.update(state=state, error=error)
