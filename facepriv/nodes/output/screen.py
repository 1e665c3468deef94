"""output.screen: show frames in a window.

Without a display, OpenCV's GUI backend aborts the whole process, so the display is
checked before the first frame and a missing one is a clear error instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from facepriv.errors import MediaError
from facepriv.node import AbstractNode

NO_DISPLAY_FIX = (
    "run it on a desktop session, under a virtual display (xvfb-run facepriv run ...), "
    "or replace output.screen with output.media_writer"
)


def check_display() -> None:
    """Raise MediaError if no X11 or Wayland display can be reached (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        return
    if os.environ.get("WAYLAND_DISPLAY"):
        return
    display = os.environ.get("DISPLAY", "")
    if not display:
        raise MediaError(f"output.screen needs a display, but DISPLAY is not set: {NO_DISPLAY_FIX}")
    host, _, number = display.partition(":")
    if host in ("", "unix"):
        socket = Path("/tmp/.X11-unix") / f"X{number.split('.')[0]}"
        if not socket.exists():
            raise MediaError(
                f"output.screen cannot reach display '{display}' (no X server is listening): "
                f"{NO_DISPLAY_FIX}"
            )


class Node(AbstractNode):
    """Shows each frame; ``pipeline_end`` becomes True when the user presses q."""

    def __init__(self, config: dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        check_display()
        import cv2

        self._cv2 = cv2
        cv2.namedWindow(self.window_name, cv2.WINDOW_NORMAL)
        cv2.moveWindow(self.window_name, self.window_loc["x"], self.window_loc["y"])
        self._open = True

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        cv2 = self._cv2
        image = inputs["img"]
        if self.window_size["do_resizing"]:
            image = cv2.resize(image, (self.window_size["width"], self.window_size["height"]))
        cv2.imshow(self.window_name, image)
        pressed = cv2.waitKey(1) & 0xFF
        return {"pipeline_end": pressed == ord("q")}

    def release(self, completed: bool = True) -> None:
        if self._open:
            self._cv2.destroyWindow(self.window_name)
            self._cv2.waitKey(1)
            self._open = False
