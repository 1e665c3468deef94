"""draw.fill_bbox: cover every face with a solid colour.

Mosaic and blur keep some information that deblurring and super-resolution models can
partly recover; a solid fill keeps none.
"""

from __future__ import annotations

import numpy as np

from facepriv.masking import MaskingNode


class Node(MaskingNode):
    """Paints each hidden region with ``fill_color`` (BGR)."""

    def hide(self, region: np.ndarray, face_width: float, face_height: float) -> np.ndarray:
        return np.broadcast_to(np.asarray(self.fill_color, dtype=region.dtype), region.shape)
