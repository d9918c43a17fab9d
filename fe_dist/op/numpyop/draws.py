"""`Draws`: the per-sample random numbers of one batch, keyed on (seed, mode, epoch, sample).

Every random number an augmentation uses is a pure function of the Estimator's seed, the mode,
the epoch, the sample's position in the epoch's *global* order (step * global batch + its place
in that global batch; for eval, its index in the eval set), the op's place in the op list, and
the draw's number. Nothing depends on the rank or on how many ranks there are, so:

- two runs with the same seed draw the same augmentations (with or without
  ``enable_deterministic``: the key is the Estimator's seed, like the shuffle);
- different ranks draw different augmentations, because they hold different positions;
- one process and N ranks augment every sample of a global batch identically, so augmentation
  keeps "N ranks = one process" (up to float rounding of the gradient sums);
- each epoch draws new numbers: the epoch key is a variable the pipeline assigns every epoch,
  as it assigns the epoch's sample indices, since the dataset of a schedule phase is built once
  and reused.

The numbers come from a counter-based hash (Wellons' "lowbias32" integer mixer) evaluated on
whole batches in uint32 arithmetic: vectorised, stateless and the same on every platform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

_TAG = 0xA06  # separates augmentation streams from the shuffle and Dropout streams
_MODE_TAGS = {"train": 1, "eval": 2, "test": 3}
_GOLDEN = 0x9E3779B9


def epoch_key(seed: int, mode: str, epoch: int) -> int:
    """The 32-bit key of all draws of ``mode`` in ``epoch`` (the same on every rank)."""
    keys = [int(seed) & 0xFFFFFFFF, _TAG, _MODE_TAGS.get(mode, 9), int(epoch)]
    return int(np.random.SeedSequence(keys).generate_state(1, np.uint32)[0])


def _u32(value: int) -> tf.Tensor:
    return tf.constant(value & 0xFFFFFFFF, tf.uint32)


def mix(x: tf.Tensor) -> tf.Tensor:
    """A bijective avalanche of uint32 values (lowbias32)."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _u32(16)))
    x = x * _u32(0x7FEB352D)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _u32(15)))
    x = x * _u32(0x846CA68B)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _u32(16)))


@dataclass(frozen=True)
class Draws:
    """Random numbers for each sample of a batch.

    Attributes:
        key: uint32 scalar: the epoch key mixed with the op's stream.
        positions: int64 ``[batch]``: each sample's position in the epoch's global order.
    """

    key: tf.Tensor
    positions: tf.Tensor

    @staticmethod
    def for_batch(epoch_key: tf.Tensor, first: tf.Tensor, batch: tf.Tensor) -> "Draws":
        """Draws for a batch of ``batch`` samples at global positions ``first, first + 1, ...``."""
        positions = tf.cast(first, tf.int64) + tf.range(tf.cast(batch, tf.int64))
        return Draws(tf.cast(epoch_key, tf.uint32), positions)

    def stream(self, index: int) -> "Draws":
        """An independent stream for the op (or inner op) at ``index``."""
        return Draws(mix(tf.bitwise.bitwise_xor(self.key, mix(_u32(index * _GOLDEN + 1)))),
                     self.positions)

    def bits(self, n: int) -> tf.Tensor:
        """uint32 ``[batch, n]``: ``n`` independent 32-bit draws per sample."""
        # Few ops on purpose: at small batches the cost of an augmentation is mostly the
        # number of TensorFlow ops it runs, not their size.
        low = tf.cast(tf.bitwise.bitwise_and(self.positions, 0xFFFFFFFF), tf.uint32)
        high = tf.cast(tf.bitwise.right_shift(self.positions, 32), tf.uint32)
        per_sample = mix(tf.bitwise.bitwise_xor(mix(tf.bitwise.bitwise_xor(low, self.key)), high))
        counters = tf.constant([(i * _GOLDEN) & 0xFFFFFFFF for i in range(n)], tf.uint32)
        return mix(per_sample[:, None] + counters[None, :])

    def uniform(self, n: int) -> tf.Tensor:
        """float32 ``[batch, n]`` in [0, 1) (24-bit resolution)."""
        top = tf.cast(tf.bitwise.right_shift(self.bits(n), _u32(8)), tf.float32)
        return top * (1.0 / (1 << 24))

    def integers(self, n: int, low: tf.Tensor | int, high: tf.Tensor | int) -> tf.Tensor:
        """int32 ``[batch, n]`` uniform in [low, high] (inclusive; ``high`` may be a tensor of
        shape ``[batch, 1]`` or ``[batch, n]``)."""
        low = tf.cast(low, tf.float32)
        span = tf.cast(high, tf.float32) - low + 1.0
        return tf.cast(tf.floor(low + self.uniform(n) * span), tf.int32)

    def seeds(self) -> tf.Tensor:
        """int64 ``[batch]``: one seed per sample, for a numpy Generator."""
        return tf.cast(self.bits(1)[:, 0], tf.int64)
