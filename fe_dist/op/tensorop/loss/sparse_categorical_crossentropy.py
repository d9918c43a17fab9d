"""`SparseCategoricalCrossentropy`: cross-entropy against integer labels."""

from __future__ import annotations

from typing import Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf

from fe_dist.errors import ConfigError
from fe_dist.op.tensorop.loss.loss import LossOp, check_label_shapes

# A trace-time helper without tensor-dependent Python control flow: AutoGraph's conversion
# of it changed nothing and cost time at every start-up (benchmarks/first_step.py).
_static_helper = tf.autograph.experimental.do_not_convert


class SparseCategoricalCrossentropy(LossOp):
    """Cross-entropy between integer labels and class probabilities (or logits).

    In eval it also reports accuracy (argmax of the prediction equals the label).

    Args:
        inputs: (label key, prediction key).
        outputs: The loss key.
        mode: "train", "eval" or None for both.
        from_logits: True when the prediction is logits rather than probabilities.
    """

    def __init__(self, inputs: Sequence[str], outputs: str,
                 mode: str | Iterable[str] | None = None, from_logits: bool = False) -> None:
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)
        self.from_logits = from_logits

    def per_sample_loss(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        y_true = self._labels(y_true, y_pred)
        loss = keras.losses.sparse_categorical_crossentropy(
            y_true, tf.cast(y_pred, tf.float32), from_logits=self.from_logits)
        return tf.cast(loss, tf.float32)

    def check_data(self, y_true: np.ndarray, classes: int | None) -> None:
        """Before training: the labels in the data are class indices in [0, classes)."""
        key = self.inputs[0]
        if not (np.issubdtype(y_true.dtype, np.integer) or np.issubdtype(y_true.dtype,
                                                                         np.floating)):
            raise ConfigError(f"{self}: labels {key!r} are {y_true.dtype}, not class indices. "
                              "Map them to ints 0..classes-1 first (keep the mapping to read "
                              "predictions back).")
        if np.issubdtype(y_true.dtype, np.floating) and not np.all(np.mod(y_true, 1) == 0):
            raise ConfigError(f"{self}: labels {key!r} are {y_true.dtype} with fractional "
                              f"values (e.g. {y_true[np.mod(y_true, 1) != 0].flat[0]!r}); they "
                              "would be truncated to ints. Sparse labels are class indices: "
                              "use ints, or a loss for continuous targets.")
        if y_true.size and (y_true.min() < 0 or (classes is not None and y_true.max() >= classes)):
            raise ConfigError(f"{self}: labels {key!r} range over [{y_true.min()}, "
                              f"{y_true.max()}] but the prediction has {classes} classes "
                              f"(valid labels 0..{classes - 1 if classes else '?'}). Give the "
                              "model one output per class, or fix the labels.")

    @_static_helper
    def _labels(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        """``y_true`` as int64 class indices, checked as the step runs (labels made by ops
        cannot be checked before training): integral, and within the prediction's classes."""
        key = self.inputs[0]
        if not (y_true.dtype.is_integer or y_true.dtype.is_floating):
            raise ConfigError(f"{self}: labels {key!r} are {y_true.dtype.name}, not class "
                              "indices. Map them to ints 0..classes-1 first.")
        check_label_shapes(self, y_true, y_pred, sparse=True)
        checks = []
        if y_true.dtype.is_floating:
            checks.append(tf.debugging.assert_equal(
                y_true, tf.round(y_true),
                message=f"{self}: labels {key!r} have fractional values (truncation would "
                        "change them); use int class indices"))
        labels = tf.reshape(tf.cast(y_true, tf.int64), [-1])
        classes = tf.cast(tf.shape(y_pred)[-1], tf.int64)
        checks.append(tf.debugging.assert_non_negative(
            labels, message=f"{self}: labels {key!r} are negative; use 0..classes-1"))
        checks.append(tf.debugging.assert_less(
            labels, classes, message=f"{self}: labels {key!r} reach the number of classes of "
                                     "the prediction; use 0..classes-1 or more outputs"))
        with tf.control_dependencies(checks):
            return tf.identity(labels)

    @_static_helper
    def per_sample_metrics(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> dict[str, tf.Tensor]:
        y_true = self._labels(y_true, y_pred)
        correct = tf.equal(tf.argmax(y_pred, axis=-1), y_true)
        return {"accuracy": tf.cast(correct, tf.float32)}
