"""draw.legend: show pipeline values such as fps on the frame."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from facepriv.errors import ConfigError
from facepriv.node import AbstractNode

MARGIN = 10
WHITE = (255, 255, 255)


def _format(key: str, value: Any) -> str:
    if isinstance(value, float):
        return f"{key.upper()}: {value:.2f}"
    if isinstance(value, (list, tuple, np.ndarray)):
        return f"{key.upper()}: {len(value)}"
    return f"{key.upper()}: {value}"


class Node(AbstractNode):
    """Draws one line per key of ``show`` over a translucent dark box."""

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        missing = [key for key in self.show if key not in inputs]
        if missing:
            raise ConfigError(
                f"draw.legend.show names {', '.join(missing)}, which no earlier node "
                f"produces (available: {', '.join(sorted(inputs))}): add the node or fix the key"
            )
        image = inputs["img"]
        lines = [_format(key, inputs[key]) for key in self.show]
        scale, thickness = self.font["size"], self.font["thickness"]
        sizes = [cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness) for line in lines]
        line_height = max(h + base for (_, h), base in sizes) + MARGIN
        box_w = max(w for (w, _), _ in sizes) + 2 * MARGIN
        box_h = line_height * len(lines) + MARGIN
        top = 0 if self.position == "top" else max(image.shape[0] - box_h, 0)
        box = image[top : top + box_h, 0:box_w]
        box[:] = cv2.addWeighted(box, 1 - self.box_opacity, np.zeros_like(box), self.box_opacity, 0)
        for index, line in enumerate(lines):
            y = top + (index + 1) * line_height
            cv2.putText(image, line, (MARGIN, y), cv2.FONT_HERSHEY_SIMPLEX, scale, WHITE, thickness)
        return {"img": image}
