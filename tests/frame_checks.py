"""Pixel checks shared by the render and review tests: SSIM (numpy/cv2) and frame reading."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def ssim(first: np.ndarray, second: np.ndarray) -> float:
    """Mean structural similarity of two BGR crops (grey, 11x11 Gaussian window, sigma 1.5)."""
    a = cv2.cvtColor(first, cv2.COLOR_BGR2GRAY).astype(np.float64)
    b = cv2.cvtColor(second, cv2.COLOR_BGR2GRAY).astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (11, 11), 1.5)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    covariance = blur(a * b) - mu_a * mu_b
    numerator = (2 * mu_a * mu_b + c1) * (2 * covariance + c2)
    score = numerator / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(score.mean())


def read_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a video, as BGR."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def crop(image: np.ndarray, box: list[float]) -> np.ndarray:
    x1, y1, x2, y2 = (int(round(v)) for v in box[:4])
    return image[max(y1, 0):y2, max(x1, 0):x2]
