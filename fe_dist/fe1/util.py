"""FastEstimator 1.x's ``fe.util``: to_number."""

from __future__ import annotations

from typing import Any

import numpy as np


def to_number(data: Any) -> np.ndarray:
    """``data`` (a TensorFlow tensor or variable, a numpy array, a list or a number) as a
    numpy array, as FastEstimator's ``to_number``."""
    if hasattr(data, "numpy"):
        data = data.numpy()
    return np.array(data)


__all__ = ["to_number"]
