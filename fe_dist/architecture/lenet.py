"""LeNet, as in FastEstimator."""

from __future__ import annotations

import keras
from keras import layers


def LeNet(input_shape: tuple[int, int, int] = (28, 28, 1), classes: int = 10) -> keras.Model:
    """A LeNet-style CNN: three 3×3 convolutions (32, 64, 64), two max-pools, a 64-unit dense
    layer and a softmax over ``classes``.

    Args:
        input_shape: (height, width, channels) of the images.
        classes: Number of output classes.
    """
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Conv2D(32, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(classes, activation="softmax"),
    ])
