"""FastEstimator 1.x's ``fe.op.numpyop.univariate``: per-sample ops on one key each."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import tensorflow as tf

from fe_dist.errors import ConfigError
from fe_dist.op.numpyop.numpyop import BatchOp, per_input
from fe_dist.op.numpyop.univariate.coarse_dropout import CoarseDropout
from fe_dist.op.numpyop.univariate.cutout import Cutout
from fe_dist.op.numpyop.univariate.onehot import Onehot


class ExpandDims(BatchOp):
    """Add an axis of size 1 to each sample at ``axis`` (FastEstimator's ExpandDims: a grey
    image (28, 28) becomes (28, 28, 1)).

    Args:
        inputs: Key(s) to expand.
        outputs: Key(s) to write, one per input.
        mode: Modes to run in (None: every mode).
        axis: The new axis, in the sample's own axes (-1: last).
    """

    def __init__(self, inputs: str | Sequence[str], outputs: str | Sequence[str],
                 mode: str | Iterable[str] | None = None, axis: int = -1) -> None:
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ConfigError(f"ExpandDims: axis must be an int, got {axis!r}.")
        self.axis = axis

    def forward_batch(self, data: tf.Tensor | list[tf.Tensor],
                      state: dict[str, Any]) -> tf.Tensor | list[tf.Tensor]:
        # The batch axis comes first: a sample axis >= 0 moves one place right.
        axis = self.axis + 1 if self.axis >= 0 else self.axis
        return per_input(lambda x: tf.expand_dims(x, axis), data)


class Minmax(BatchOp):
    """Scale each sample to [0, 1] by its own min and max: ``(x - min) / max(max - min,
    epsilon)``, float32 (FastEstimator's NumpyOp Minmax).

    Args:
        inputs: Key(s) to scale.
        outputs: Key(s) to write, one per input.
        mode: Modes to run in (None: every mode).
        epsilon: Floor of the denominator (a constant sample maps to 0).
    """

    def __init__(self, inputs: str | Sequence[str], outputs: str | Sequence[str],
                 mode: str | Iterable[str] | None = None, epsilon: float = 1e-7) -> None:
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)
        self.epsilon = epsilon

    def forward_batch(self, data: tf.Tensor | list[tf.Tensor],
                      state: dict[str, Any]) -> tf.Tensor | list[tf.Tensor]:
        def minmax(x: tf.Tensor) -> tf.Tensor:
            x = tf.cast(x, tf.float32)
            axes = list(range(1, x.shape.rank))
            lo = tf.reduce_min(x, axis=axes, keepdims=True)
            hi = tf.reduce_max(x, axis=axes, keepdims=True)
            return (x - lo) / tf.maximum(hi - lo, self.epsilon)
        return per_input(minmax, data)


class Normalize(BatchOp):
    """``(x - mean * max_pixel_value) / (std * max_pixel_value)``, float32, per channel
    (FastEstimator's Normalize; its defaults are ImageNet's statistics).

    Args:
        inputs: Key(s) to normalise.
        outputs: Key(s) to write, one per input.
        mode: Modes to run in (None: every mode).
        mean: Per-channel mean, in units of ``max_pixel_value`` (a float for every channel).
        std: Per-channel standard deviation, likewise.
        max_pixel_value: The largest pixel value (255 for uint8 images).
    """

    def __init__(self, inputs: str | Sequence[str], outputs: str | Sequence[str],
                 mode: str | Iterable[str] | None = None,
                 mean: float | Sequence[float] = (0.485, 0.456, 0.406),
                 std: float | Sequence[float] = (0.229, 0.224, 0.225),
                 max_pixel_value: float = 255.0) -> None:
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)
        self.mean, self.std, self.max_pixel_value = mean, std, max_pixel_value

    def forward_batch(self, data: tf.Tensor | list[tf.Tensor],
                      state: dict[str, Any]) -> tf.Tensor | list[tf.Tensor]:
        mean = tf.constant(self.mean, tf.float32) * self.max_pixel_value
        std = tf.constant(self.std, tf.float32) * self.max_pixel_value
        return per_input(lambda x: (tf.cast(x, tf.float32) - mean) / std, data)


__all__ = ["CoarseDropout", "Cutout", "ExpandDims", "Minmax", "Normalize", "Onehot"]
