"""FastEstimator 1.x's ``fe.dataset.data.mnist``, without the download."""

from __future__ import annotations

import os

from fe_dist.dataset import mnist as _mnist
from fe_dist.fe1.dataset.numpy_dataset import NumpyDataset


def load_data(image_key: str = "x", label_key: str = "y",
              path: str | os.PathLike | None = None) -> tuple[NumpyDataset, NumpyDataset]:
    """MNIST as (train, eval) `NumpyDataset` s of uint8 28x28 images and int labels, as
    FastEstimator's ``load_data`` returns them.

    Args:
        image_key: The image key.
        label_key: The label key.
        path: A local ``mnist.npz`` (Keras' layout: x_train, y_train, x_test, y_test); None
            loads the 5,000-digit sample bundled with fe_dist (4,000 train, 1,000 eval). Nothing
            is downloaded, unlike FastEstimator (60,000 / 10,000).
    """
    (x_train, y_train), (x_eval, y_eval) = _mnist.load_data(path)
    return (NumpyDataset({image_key: x_train, label_key: y_train}, "mnist train"),
            NumpyDataset({image_key: x_eval, label_key: y_eval}, "mnist eval"))
