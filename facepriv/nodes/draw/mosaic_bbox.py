"""draw.mosaic_bbox: pixelate every face box."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from facepriv.masking import hide_regions
from facepriv.node import AbstractNode


class Node(AbstractNode):
    """Each box becomes ``mosaic_level`` x ``mosaic_level`` flat cells (area-averaged)."""

    def _pixelate(self, region: np.ndarray) -> np.ndarray:
        cells = min(self.mosaic_level, region.shape[0], region.shape[1])
        small = cv2.resize(region, (cells, cells), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (region.shape[1], region.shape[0]), interpolation=cv2.INTER_NEAREST)

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"img": hide_regions(inputs["img"], inputs["bboxes"], self._pixelate)}
