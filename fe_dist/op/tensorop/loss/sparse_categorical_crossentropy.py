"""`SparseCategoricalCrossentropy`: cross-entropy against integer labels."""

from __future__ import annotations

from typing import Iterable, Sequence

import keras
import tensorflow as tf

from fe_dist.op.tensorop.loss.loss import LossOp


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
        y_true = tf.reshape(tf.cast(y_true, tf.int64), [-1])
        loss = keras.losses.sparse_categorical_crossentropy(
            y_true, tf.cast(y_pred, tf.float32), from_logits=self.from_logits)
        return tf.cast(loss, tf.float32)

    def per_sample_metrics(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> dict[str, tf.Tensor]:
        y_true = tf.reshape(tf.cast(y_true, tf.int64), [-1])
        correct = tf.equal(tf.argmax(y_pred, axis=-1), y_true)
        return {"accuracy": tf.cast(correct, tf.float32)}
