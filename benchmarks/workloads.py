"""Benchmark workloads: progressive schedules whose batch size and resolution change by epoch.

- ``lenet``: the seed's LeNet on MNIST (the bundled sample) at 28, 30 and 32 px, one model per
  resolution as in the seed tutorial; small and communication-heavy.
- ``resnet``: a small ResNet (stride-2 stem, three stages of two residual blocks, global average
  pooling) on synthetic 3-channel images at 64, 96 and 128 px; one model for every resolution;
  compute-bound.

Each phase runs ``EPOCHS_PER_PHASE`` epochs (environment ``FE_BENCH_EPOCHS``, default 2); the
first warms up, the last is timed (the knob benchmark takes the median of all but the first).
"""

from __future__ import annotations

import os

import numpy as np

EPOCHS_PER_PHASE = int(os.environ.get("FE_BENCH_EPOCHS", 2))

WORKLOADS = {
    "lenet": {"phases": [(32, 28), (64, 30), (128, 32)], "samples": 4000, "channels": 1},
    "resnet": {"phases": [(32, 64), (32, 96), (64, 128)], "samples": 768, "channels": 3},
}
# The small-model case of the allreduce tuning (benchmarks/allreduce_knobs.py): LeNet at 32 px,
# global batch 64 (32 per rank on 2 ranks), and 256 for accumulation in micro-batches of 32.
WORKLOADS["lenet64"] = {"phases": [(64, 32)], "samples": 4000, "channels": 1}
WORKLOADS["lenet256"] = {"phases": [(256, 32)], "samples": 4096, "channels": 1}
TINY = {
    "lenet": {"phases": [(16, 28), (32, 32)], "samples": 256, "channels": 1},
    "resnet": {"phases": [(8, 32), (16, 48)], "samples": 64, "channels": 3},
    "lenet64": {"phases": [(16, 32)], "samples": 256, "channels": 1},
    "lenet256": {"phases": [(64, 32)], "samples": 256, "channels": 1},
}


def spec(name: str, tiny: bool = False) -> dict:
    """The phases [(global batch, image size)], sample count and channels of a workload."""
    return (TINY if tiny else WORKLOADS)[name]


def load_data(name: str, tiny: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, H, W, C) and int labels; the same on every rank and every run."""
    s = spec(name, tiny)
    if name.startswith("lenet"):
        from fe_dist.dataset import mnist
        (x, y), _ = mnist.load_data()
        x = np.concatenate([x, x])[:s["samples"]]  # lenet256 takes 4096 = 16 full batches
        y = np.concatenate([y, y])[:s["samples"]]
        return x[..., None], y.astype(np.int64)
    rng = np.random.default_rng(0)
    size = max(p[1] for p in s["phases"])
    x = rng.integers(0, 256, (s["samples"], size, size, s["channels"]), dtype=np.uint8)
    return x, rng.integers(0, 10, s["samples"]).astype(np.int64)


def model_key(name: str, size: int) -> str:
    """Which model a phase trains: one per resolution for lenet, one for all for resnet."""
    return f"lenet{size}" if name.startswith("lenet") else "resnet"


def make_model(name: str, size: int):
    """The Keras model of a phase."""
    import keras

    keras.utils.set_random_seed(1)
    if name.startswith("lenet"):
        from fe_dist.architecture import LeNet
        return LeNet(input_shape=(size, size, 1))
    return small_resnet()


def small_resnet(channels: int = 3, classes: int = 10, widths=(16, 32, 64)):
    """A ResNet-style CNN for any input resolution."""
    import keras
    from keras import layers

    inputs = keras.Input((None, None, channels))
    x = layers.Conv2D(widths[0], 3, strides=2, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    for stage, width in enumerate(widths):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            shortcut = x
            y = layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False)(x)
            y = layers.BatchNormalization()(y)
            y = layers.ReLU()(y)
            y = layers.Conv2D(width, 3, padding="same", use_bias=False)(y)
            y = layers.BatchNormalization()(y)
            if stride != 1 or shortcut.shape[-1] != width:
                shortcut = layers.Conv2D(width, 1, strides=stride, use_bias=False)(shortcut)
            x = layers.ReLU()(layers.Add()([y, shortcut]))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(classes, activation="softmax")(x))


def preprocess(x, size: int):
    """The pipeline ops of a phase as plain TensorFlow (for the baselines): resize, then 1/255."""
    import tensorflow as tf

    return tf.image.resize(x, (size, size)) * (1.0 / 255)
