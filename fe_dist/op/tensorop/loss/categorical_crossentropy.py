"""`CategoricalCrossentropy`: cross-entropy against one-hot (or smoothed) label rows."""

from __future__ import annotations

from typing import Iterable, Sequence

import keras
import tensorflow as tf

from fe_dist.op.tensorop.loss.loss import LossOp, check_label_shapes


class CategoricalCrossentropy(LossOp):
    """Cross-entropy between label rows (one-hot, or smoothed as `Onehot(label_smoothing=...)`
    makes them) and class probabilities (or logits).

    In eval it also reports accuracy (argmax of the prediction equals argmax of the label).

    Args:
        inputs: (label key, prediction key); labels of shape [batch, classes].
        outputs: The loss key.
        mode: "train", "eval", "test", a list of them, or None for every mode.
        from_logits: True when the prediction is logits rather than probabilities.
    """

    def __init__(self, inputs: Sequence[str], outputs: str,
                 mode: str | Iterable[str] | None = None, from_logits: bool = False) -> None:
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)
        self.from_logits = from_logits

    def per_sample_loss(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        check_label_shapes(self, y_true, y_pred, sparse=False)
        loss = keras.losses.categorical_crossentropy(
            tf.cast(y_true, tf.float32), tf.cast(y_pred, tf.float32),
            from_logits=self.from_logits)
        return tf.cast(loss, tf.float32)

    def per_sample_metrics(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> dict[str, tf.Tensor]:
        correct = tf.equal(tf.argmax(y_pred, axis=-1), tf.argmax(y_true, axis=-1))
        return {"accuracy": tf.cast(correct, tf.float32)}
