"""draw.mosaic_bbox: pixelate every face."""

from __future__ import annotations

import cv2
import numpy as np

from facepriv.masking import MaskingNode


class Node(MaskingNode):
    """Each hidden region becomes ``mosaic_level`` x ``mosaic_level`` flat, area-averaged cells."""

    def hide(self, region: np.ndarray, face_width: float, face_height: float) -> np.ndarray:
        cells_x = min(self.mosaic_level, region.shape[1])
        cells_y = min(self.mosaic_level, region.shape[0])
        small = cv2.resize(region, (cells_x, cells_y), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (region.shape[1], region.shape[0]), interpolation=cv2.INTER_NEAREST)
