"""The benchmark workloads: models, data and the two schedules (fixed, progressive) of each.

- ``resnet50``: `keras.applications.ResNet50` (``weights=None``, its ImageNet top: average
  pooling and a 1000-way softmax) on synthetic ImageNet-shaped data (random uint8 RGB images,
  1000 classes). Fixed: ``image_size`` px (224 by default). Progressive: 128 → 160 → 192 px at
  224 (scaled with ``image_size``), the batch growing 1 → 1.5 → 2 times the base as the images
  shrink less (FFCV's ResNet-50 recipe ramps the resolution; the batch growth keeps small
  images from under-filling a device). One model for every resolution.
- ``cifar_resnet``: a ResNet for CIFAR-shaped data (32 px RGB, 10 classes; stride-2 stem, three
  stages of two residual blocks, 16/32/64 channels), synthetic. Progressive: 24 → 28 → 32 px.
- ``lenet``: the seed tutorial's LeNet on the bundled MNIST sample, one model per resolution as
  in the seed. Progressive: 28 → 30 → 32 px with batch 1x → 2x → 4x (the seed's ramp).

Every phase runs one epoch. ``steps`` is the step count of the phase with the largest global
batch (the data holds ``steps`` x that batch samples); phases with smaller batches take more
steps over the same data. Nothing here imports Horovod: the hand-written reference loop
(`fe_dist.distributed.reference`) builds the same models and data from these functions.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from fe_dist.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class WorkloadSpec:
    """What a workload trains on.

    Attributes:
        name: The ``--workload`` name.
        title: How tables name it.
        default_size: The fixed schedule's image size when ``--image-size`` is not given.
        channels: Image channels.
        classes: Label classes.
        ramp: The progressive schedule's image sizes as fractions of the fixed size.
        batch_growth: The progressive schedule's batch of each phase, as a factor of the base.
        min_size: The smallest image the model takes.
        model_per_size: One model per resolution (a fixed-input model such as LeNet).
        size_step: Progressive sizes are rounded to a multiple of this.
    """

    name: str
    title: str
    default_size: int
    channels: int
    classes: int
    ramp: tuple[float, ...]
    batch_growth: tuple[float, ...]
    min_size: int
    model_per_size: bool = False
    size_step: int = 1


WORKLOADS: dict[str, WorkloadSpec] = {
    "resnet50": WorkloadSpec("resnet50", "ResNet-50 (synthetic ImageNet-shaped)", 224, 3, 1000,
                             (128 / 224, 160 / 224, 192 / 224), (1.0, 1.5, 2.0), 32,
                             size_step=8),
    "cifar_resnet": WorkloadSpec("cifar_resnet", "CIFAR ResNet (synthetic CIFAR-shaped)", 32, 3,
                                 10, (24 / 32, 28 / 32, 1.0), (1.0, 1.5, 2.0), 16),
    "lenet": WorkloadSpec("lenet", "LeNet (seed, MNIST sample)", 28, 1, 10,
                          (1.0, 30 / 28, 32 / 28), (1.0, 2.0, 4.0), 22, model_per_size=True),
}
SCHEDULES = ("fixed", "progressive")
SCALINGS = ("weak", "strong")


@dataclasses.dataclass(frozen=True)
class Phase:
    """One schedule phase: its image size and batch over all ranks."""

    image_size: int
    global_batch: int


@dataclasses.dataclass(frozen=True)
class BenchProgram:
    """A workload under one schedule, at one world size.

    Attributes:
        workload: The workload.
        schedule: "fixed" or "progressive".
        phases: The phases, one epoch each.
        samples: Samples in the (synthetic or repeated) training data.
        warmup: Steps at the start of each phase left out of the timing.
    """

    workload: WorkloadSpec
    schedule: str
    phases: tuple[Phase, ...]
    samples: int
    warmup: int

    def model_key(self, image_size: int) -> str:
        """The model a phase at ``image_size`` trains."""
        w = self.workload
        return f"{w.name}{image_size}" if w.model_per_size else w.name

    @property
    def max_size(self) -> int:
        return max(p.image_size for p in self.phases)


def get_workload(name: str) -> WorkloadSpec:
    """The workload called ``name``, or a ConfigError naming the choices."""
    if name not in WORKLOADS:
        raise ConfigError(f"fe-bench: unknown workload {name!r}; choose from "
                          f"{', '.join(WORKLOADS)}.")
    return WORKLOADS[name]


def _round_size(size: float, step: int, minimum: int) -> int:
    return max(minimum, int(round(size / step)) * step)


def program(workload: str, schedule: str, scaling: str, world_size: int, batch: int,
            steps: int, image_size: int | None = None, warmup: int = 2) -> BenchProgram:
    """The program one run trains.

    Args:
        workload: A name of `WORKLOADS`.
        schedule: "fixed" or "progressive".
        scaling: "weak" (``batch`` per rank, the global batch grows with the ranks) or "strong"
            (``batch`` over all ranks).
        world_size: Ranks.
        batch: The base batch (per rank or global, by ``scaling``).
        steps: Steps of the phase with the largest global batch.
        image_size: The fixed schedule's image size (default: the workload's).
        warmup: Steps of each phase not timed.
    """
    w = get_workload(workload)
    if schedule not in SCHEDULES:
        raise ConfigError(f"fe-bench: unknown schedule {schedule!r}; choose from {SCHEDULES}.")
    if scaling not in SCALINGS:
        raise ConfigError(f"fe-bench: unknown scaling {scaling!r}; choose from {SCALINGS}.")
    size = image_size or w.default_size
    if size < w.min_size:
        raise ConfigError(f"fe-bench: --image-size {size} is too small for {workload} (at least "
                          f"{w.min_size}).")
    if batch < 1 or steps < 1:
        raise ConfigError(f"fe-bench: --batch and --steps must be positive, got {batch}, "
                          f"{steps}.")
    base = batch * world_size if scaling == "weak" else batch
    if base < world_size:
        raise ConfigError(f"fe-bench: strong scaling with global batch {base} on {world_size} "
                          "ranks leaves a rank without samples; raise --batch.")
    if schedule == "fixed":
        phases = (Phase(size, base),)
    else:
        phases = tuple(Phase(_round_size(size * f, w.size_step, w.min_size), max(1, int(round(base * g))))
                       for f, g in zip(w.ramp, w.batch_growth))
    if warmup >= min(steps, 1 + steps // 2) and steps > 1:
        warmup = steps // 2
    largest = max(p.global_batch for p in phases)
    return BenchProgram(w, schedule, phases, samples=steps * largest,
                        warmup=min(warmup, steps - 1))


def load_data(prog: BenchProgram) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, H, W, C) at the program's largest size and int64 labels: the same on
    every rank and every run."""
    w, n, size = prog.workload, prog.samples, prog.max_size
    if w.name == "lenet":
        from fe_dist.dataset import mnist
        (x, y), _ = mnist.load_data()
        reps = -(-n // len(x))
        x = np.concatenate([x] * reps)[:n][..., None]
        y = np.concatenate([y] * reps)[:n].astype(np.int64)
        if x.shape[1] != size:  # the stored images are 28 px; a phase's Resize scales them
            import tensorflow as tf
            x = tf.cast(tf.image.resize(x, (size, size)), tf.uint8).numpy()
        return x, y
    nbytes = n * size * size * w.channels
    if nbytes > 4e9:
        raise ConfigError(f"fe-bench: {n} synthetic {size} px images need {nbytes / 1e9:.1f} GB "
                          "per rank; lower --steps or --batch.")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, size, size, w.channels), dtype=np.uint8)
    return x, rng.integers(0, w.classes, n).astype(np.int64)


def make_model(prog: BenchProgram, image_size: int) -> Any:
    """The Keras model a phase at ``image_size`` trains (the same start weights on every rank
    and in every variant: seeded)."""
    import keras

    keras.utils.set_random_seed(1)
    w = prog.workload
    if w.name == "lenet":
        from fe_dist.architecture import LeNet
        return LeNet(input_shape=(image_size, image_size, 1), classes=w.classes)
    if w.name == "cifar_resnet":
        return cifar_resnet(w.channels, w.classes)
    # ImageNet's top as include_top=True builds it; include_top=True wants a fixed input size.
    base = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg",
                                       input_shape=(None, None, w.channels))
    out = keras.layers.Dense(w.classes, activation="softmax", name="predictions")(base.output)
    return keras.Model(base.input, out, name="resnet50")


def make_optimizer() -> Any:
    """SGD with momentum, as Horovod's synthetic benchmark trains."""
    import keras

    return keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)


def cifar_resnet(channels: int = 3, classes: int = 10, widths: tuple[int, ...] = (16, 32, 64)):
    """A ResNet for CIFAR-sized images (any input resolution)."""
    import keras
    from keras import layers

    inputs = keras.Input((None, None, channels))
    x = layers.Conv2D(widths[0], 3, strides=2, padding="same", use_bias=False)(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    for stage, width in enumerate(widths):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            shortcut = x
            y = layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False)(x)
            y = layers.ReLU()(layers.BatchNormalization()(y))
            y = layers.BatchNormalization()(layers.Conv2D(width, 3, padding="same",
                                                          use_bias=False)(y))
            if stride != 1 or shortcut.shape[-1] != width:
                shortcut = layers.Conv2D(width, 1, strides=stride, use_bias=False)(shortcut)
            x = layers.ReLU()(layers.Add()([y, shortcut]))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(classes, activation="softmax")(x))


def preprocess(x: Any, image_size: int, stored_size: int) -> Any:
    """A phase's input ops as plain TensorFlow (for the reference loop): the same as the
    fe_dist program's Resize (only when the size changes) and 1/255 scaling."""
    import tensorflow as tf

    x = tf.cast(x, tf.float32)
    if image_size != stored_size:
        x = tf.image.resize(x, (image_size, image_size))
    return x * (1.0 / 255)


def rank_share(global_batch: int, size: int, rank: int) -> tuple[int, int]:
    """(start, count) of ``rank``'s chunk of a global batch, as fe_dist splits it."""
    counts = [global_batch // size + (1 if r < global_batch % size else 0) for r in range(size)]
    return sum(counts[:rank]), counts[rank]
