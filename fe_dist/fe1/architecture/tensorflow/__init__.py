"""FastEstimator 1.x's ``fe.architecture.tensorflow``: LeNet and ResNet9 (fe_dist's own Keras 3
code, with FastEstimator's layer structure)."""

from __future__ import annotations

import keras
from keras import layers

from fe_dist.architecture.lenet import LeNet
from fe_dist.errors import ConfigError


def ResNet9(input_size: tuple[int, int, int] = (32, 32, 3), classes: int = 10) -> keras.Model:
    """The 9-layer ResNet of cifar10-fast (D. Page), as FastEstimator builds it: a 64-channel
    prep convolution; blocks of 128 (with a residual of two convolutions), 256 and 512 (with
    a residual) channels, each a 3x3 convolution, 2x2 max-pool, BatchNormalization (momentum
    0.8) and LeakyReLU (slope 0.1); global max-pool, a dense layer of ``classes`` and a
    float32 softmax.

    Args:
        input_size: (height, width, channels), height and width at least 16.
        classes: Number of outputs.
    """
    if len(input_size) != 3:
        raise ConfigError(f"ResNet9: input_size must be (height, width, channels), got "
                          f"{input_size!r}.")
    if input_size[0] < 16 or input_size[1] < 16:
        raise ConfigError(f"ResNet9: height and width must be at least 16, got {input_size!r}.")
    inp = layers.Input(shape=input_size)
    x = _conv_bn(inp, 64, pool=False)
    x = _conv_bn(x, 128, pool=True)
    x = layers.Add()([x, _residual(x, 128)])
    x = _conv_bn(x, 256, pool=True)
    x = _conv_bn(x, 512, pool=True)
    x = layers.Add()([x, _residual(x, 512)])
    x = layers.GlobalMaxPool2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(classes)(x)
    x = layers.Activation("softmax", dtype="float32")(x)
    return keras.Model(inputs=inp, outputs=x)


def _conv_bn(x: keras.KerasTensor, channels: int, pool: bool) -> keras.KerasTensor:
    x = layers.Conv2D(channels, 3, padding="same")(x)
    if pool:
        x = layers.MaxPool2D()(x)
    x = layers.BatchNormalization(momentum=0.8)(x)
    return layers.LeakyReLU(negative_slope=0.1)(x)


def _residual(x: keras.KerasTensor, channels: int) -> keras.KerasTensor:
    """Two (convolution, BatchNormalization, LeakyReLU) units."""
    return _conv_bn(_conv_bn(x, channels, pool=False), channels, pool=False)


__all__ = ["LeNet", "ResNet9"]
