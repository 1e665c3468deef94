"""draw.blur_bbox: blur every face."""

from __future__ import annotations

import cv2
import numpy as np

from facepriv.masking import MaskingNode


class Node(MaskingNode):
    """Averages each hidden region with a square kernel, inside the region only (pixels
    outside never bleed in or out). The kernel grows with the face, so a large face is
    not merely softened by a kernel sized for a small one."""

    def kernel_size(self, face_width: float, face_height: float) -> int:
        relative = self.blur_strength * max(face_width, face_height)
        return max(int(round(relative)), self.blur_kernel_size, 1)

    def hide(self, region: np.ndarray, face_width: float, face_height: float) -> np.ndarray:
        size = self.kernel_size(face_width, face_height)
        return cv2.blur(region, (size, size))
