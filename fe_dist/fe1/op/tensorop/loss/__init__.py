"""FastEstimator 1.x's ``fe.op.tensorop.loss``: CrossEntropy."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf

from fe_dist.errors import ConfigError
from fe_dist.op.tensorop.loss.loss import LossOp, check_label_shapes

FORMS = ("binary", "categorical", "sparse")


class CrossEntropy(LossOp):
    """Cross-entropy with FastEstimator 1.x's inputs ``(y_pred, y_true)`` and its choice of form.

    With ``form=None`` the form follows the shapes, as FastEstimator decides: predictions of
    shape [batch, classes > 1] with labels [batch, classes > 1] are "categorical" (one-hot or
    smoothed rows), with other labels "sparse" (class indices); any other prediction is
    "binary" (one probability per sample). fe_dist keeps one loss per sample and averages it
    over the global batch itself, which is FastEstimator's ``average_loss=True`` mean, so
    ``average_loss`` only says what the loss key holds in FastEstimator (fe_dist's key always
    holds per-sample values). Eval reports the mean loss under the output key (accuracy comes
    from the ``Accuracy`` trace, as in FastEstimator).

    Args:
        inputs: (prediction key, label key).
        outputs: The loss key.
        mode: Modes to run in (None: every mode).
        from_logits: Whether the predictions are logits.
        average_loss: Accepted for FastEstimator programs (see above).
        form: "binary", "categorical", "sparse" or None (inferred).
    """

    def __init__(self, inputs: Sequence[str], outputs: str,
                 mode: str | Iterable[str] | None = None, from_logits: bool = False,
                 average_loss: bool = True, form: str | None = None) -> None:
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)
        if form not in (None, *FORMS):
            raise ConfigError(f"CrossEntropy: form must be one of {FORMS} or None, got {form!r}.")
        self.from_logits, self.average_loss, self.form = from_logits, average_loss, form

    def forward(self, data: list[tf.Tensor], state: dict[str, Any]) -> tf.Tensor:
        y_pred, y_true = data
        return self.per_sample_loss(y_true, y_pred)

    def form_of(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> str:
        """The form used for these shapes."""
        if self.form is not None:
            return self.form
        if y_pred.shape.rank == 2 and (y_pred.shape[-1] or 0) > 1:
            if y_true.shape.rank == 2 and (y_true.shape[-1] or 0) > 1:
                return "categorical"
            return "sparse"
        return "binary"

    def per_sample_loss(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        form = self.form_of(y_true, y_pred)
        y_pred = tf.cast(y_pred, tf.float32)
        if form == "categorical":
            check_label_shapes(self, y_true, y_pred, sparse=False)
            loss = keras.losses.categorical_crossentropy(tf.cast(y_true, tf.float32), y_pred,
                                                         from_logits=self.from_logits)
        elif form == "sparse":
            labels = tf.reshape(tf.cast(y_true, tf.int64), [-1])
            loss = keras.losses.sparse_categorical_crossentropy(labels, y_pred,
                                                                from_logits=self.from_logits)
        else:
            batch = tf.shape(y_pred)[0]
            loss = keras.losses.binary_crossentropy(
                tf.reshape(tf.cast(y_true, tf.float32), [batch, -1]),
                tf.reshape(y_pred, [batch, -1]), from_logits=self.from_logits)
        return tf.cast(loss, tf.float32)

    def check_data(self, y_true: np.ndarray, classes: int | None) -> None:
        """Nothing before training: the engine reads the first input as the labels, which
        here is the prediction key (checks happen as the step is traced)."""


__all__ = ["CrossEntropy"]
