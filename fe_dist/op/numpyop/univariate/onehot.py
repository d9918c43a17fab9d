"""`Onehot`: class indices to one-hot vectors."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import tensorflow as tf

from fe_dist.errors import ConfigError
from fe_dist.op.numpyop.numpyop import BatchOp, per_input


class Onehot(BatchOp):
    """Turn integer class labels into float32 one-hot vectors of ``num_classes``, optionally
    smoothed: ``onehot * (1 - label_smoothing) + label_smoothing / num_classes``.

    Args:
        inputs: Label key(s): integer class indices, per-sample shape () or (1,).
        outputs: Key(s) to write, one per input.
        num_classes: Number of classes.
        label_smoothing: In [0, 1).
        mode: "train", "eval", a list of them, or None for every mode.
    """

    def __init__(self, inputs: str | Sequence[str], outputs: str | Sequence[str],
                 num_classes: int, label_smoothing: float = 0.0,
                 mode: str | Iterable[str] | None = None) -> None:
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ConfigError(f"Onehot: num_classes must be a positive int, got "
                              f"{num_classes!r}.")
        if not 0 <= label_smoothing < 1:
            raise ConfigError(f"Onehot: label_smoothing must be in [0, 1), got "
                              f"{label_smoothing!r}.")
        self.num_classes, self.label_smoothing = num_classes, float(label_smoothing)

    def forward_batch(self, data: tf.Tensor | list[tf.Tensor],
                      state: dict[str, Any]) -> tf.Tensor | list[tf.Tensor]:
        def onehot(y: tf.Tensor) -> tf.Tensor:
            y = tf.reshape(y, [-1])
            message = f"{self}: a label is outside [0, num_classes={self.num_classes})"
            with tf.control_dependencies([
                    tf.debugging.assert_less(y, tf.cast(self.num_classes, y.dtype), message),
                    tf.debugging.assert_greater_equal(y, tf.cast(0, y.dtype), message)]):
                y = tf.identity(y)
            out = tf.one_hot(y, self.num_classes, dtype=tf.float32)
            return out * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes
        return per_input(onehot, data)

    def check_spec(self, specs: list[tf.TensorSpec]) -> str | None:
        for key, spec in zip(self.inputs, specs):
            per_sample = tuple(spec.shape.as_list()[1:]) if spec.shape.rank else None
            if not spec.dtype.is_integer:
                return (f"key {key!r} has dtype {spec.dtype.name}; Onehot needs integer class "
                        "indices. Apply it to the label key, or store labels as integers.")
            if per_sample not in ((), (1,)):
                return (f"key {key!r} has per-sample shape {per_sample}; Onehot needs one class "
                        "index per sample (shape () or (1,)).")
        return None

    def check_data(self, key: str, values: np.ndarray) -> str | None:
        if not np.issubdtype(values.dtype, np.integer) or values.size == 0:
            return None  # check_spec names the dtype
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= self.num_classes:
            return (f"key {key!r} holds labels from {low} to {high}, outside [0, "
                    f"num_classes={self.num_classes}). Set num_classes to the number of "
                    "classes, or fix the labels.")
        return None
