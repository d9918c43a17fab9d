"""`LossOp`: the base of loss ops."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import tensorflow as tf

from fe_dist.errors import ConfigError
from fe_dist.op.tensorop.tensorop import TensorOp

# A trace-time helper without tensor-dependent Python control flow: AutoGraph's conversion
# of it changed nothing and cost time at every start-up (benchmarks/first_step.py).
_static_helper = tf.autograph.experimental.do_not_convert


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


@_static_helper
def check_label_shapes(op: LossOp, y_true: tf.Tensor, y_pred: tf.Tensor, sparse: bool) -> None:
    """While the step is traced: the labels and predictions of a classification loss have the
    shapes it needs (class indices [batch] or [batch, 1] when ``sparse``, else one row per
    sample as wide as the prediction; predictions [batch, classes]). Swapped inputs (the order
    of FastEstimator's CrossEntropy is (y_pred, y_true)) and one-hot labels given to a sparse
    loss fail here with what to change, not with Keras' shape error."""
    true_shape, pred_shape = y_true.shape, y_pred.shape
    if true_shape.rank is None or pred_shape.rank is None:
        return
    label_key, pred_key = op.inputs
    wide = lambda shape: shape.rank >= 2 and shape[-1] not in (None, 1)  # noqa: E731
    problem = None
    if pred_shape.rank < 2 and wide(true_shape):
        problem = (f"the inputs look swapped: {type(op).__name__} takes (labels, predictions), "
                   f"but {label_key!r} has shape {true_shape.as_list()} and {pred_key!r} "
                   f"{pred_shape.as_list()}. Give inputs=({pred_key!r}, {label_key!r}) "
                   "(FastEstimator's CrossEntropy takes (predictions, labels))")
    elif pred_shape.rank < 2:
        problem = (f"predictions {pred_key!r} have shape {pred_shape.as_list()}; a "
                   "classification loss needs one score per class, [batch, classes]")
    elif sparse and wide(true_shape):
        problem = (f"labels {label_key!r} have shape {true_shape.as_list()}, one row per sample "
                   "(one-hot?), but a sparse loss takes class indices [batch]. Use "
                   "CategoricalCrossentropy for one-hot labels (e.g. after Onehot), or give "
                   "the class indices")
    elif not sparse and (true_shape.rank != pred_shape.rank or (
            true_shape[-1] is not None and pred_shape[-1] is not None
            and true_shape[-1] != pred_shape[-1])):
        problem = (f"labels {label_key!r} have shape {true_shape.as_list()} but predictions "
                   f"{pred_key!r} {pred_shape.as_list()}; one-hot labels need one column per "
                   "class (Onehot(num_classes=...)), or use SparseCategoricalCrossentropy for "
                   "class indices")
    if problem:
        raise ConfigError(f"{op}: {problem}.")
