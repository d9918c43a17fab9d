"""`LossOp`: the base of loss ops."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import tensorflow as tf

from fe_dist.errors import ConfigError
from fe_dist.op.tensorop.tensorop import TensorOp


class LossOp(TensorOp):
    """Writes one loss value per sample (a vector of length batch) to its output key.

    fe_dist, not the loss op, reduces the per-sample values: each rank sums its samples and divides
    by the global batch size, so the allreduced gradient equals that of one process.

    Args:
        inputs: (y_true key, y_pred key).
        outputs: The loss key; a model built with this ``loss_name`` trains on it.
        mode: "train", "eval" or None for both.
    """

    def __init__(self, inputs: Sequence[str], outputs: str,
                 mode: str | Iterable[str] | None = None) -> None:
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)
        if len(self.inputs) != 2 or len(self.outputs) != 1:
            raise ConfigError(f"{type(self).__name__}: inputs must be (y_true, y_pred) and outputs "
                              f"one loss key, got inputs={self.inputs!r}, outputs={self.outputs!r}.")

    def forward(self, data: list[tf.Tensor], state: dict[str, Any]) -> tf.Tensor:
        y_true, y_pred = data
        return self.per_sample_loss(y_true, y_pred)

    def per_sample_loss(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        """One float32 loss per sample."""
        raise NotImplementedError

    def check_data(self, y_true: np.ndarray, classes: int | None) -> None:
        """Check the targets before training, when ``y_true`` comes straight from the data;
        ``classes`` is the prediction's last dimension when known. Raise a ConfigError naming
        the key and the fix."""

    def per_sample_metrics(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> dict[str, tf.Tensor]:
        """Eval metrics, one float32 value per sample each; averaged over the eval set."""
        return {}
