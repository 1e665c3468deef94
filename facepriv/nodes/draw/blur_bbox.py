"""draw.blur_bbox: blur every face box."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from facepriv.masking import hide_regions
from facepriv.node import AbstractNode


class Node(AbstractNode):
    """Averages each box with a ``blur_kernel_size`` square kernel, inside the box only
    (pixels outside a box never bleed in or out)."""

    def _blur(self, region: np.ndarray) -> np.ndarray:
        return cv2.blur(region, (self.blur_kernel_size, self.blur_kernel_size))

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"img": hide_regions(inputs["img"], inputs["bboxes"], self._blur)}
