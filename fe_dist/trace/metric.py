"""Metric traces over the whole eval (or test) set, on any number of ranks.

Each rank accumulates additive statistics of its own shard (correct counts, a confusion matrix)
in ``on_batch_end``; ``on_epoch_end`` sums them over ranks and computes the metric once from the
totals, so the value equals a single-process computation over the whole set (per-rank metric
values are never averaged).

Labels: ``y_true`` holds class indices (or one-hot rows); ``y_pred`` holds per-class scores
(argmax is the predicted class) or, with one column or none, a binary probability (> 0.5 is
class 1), as FastEstimator reads them.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from fe_dist.errors import ConfigError
from fe_dist.trace.trace import Data, Trace

_AVERAGES = (None, "binary", "micro", "macro", "weighted")


def to_labels(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """(true class indices, predicted class indices, number of classes the prediction has;
    2 for a binary prediction)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim > 1 and y_true.shape[-1] > 1:
        y_true = np.argmax(y_true, axis=-1)
    if y_pred.ndim > 1 and y_pred.shape[-1] > 1:
        classes = y_pred.shape[-1]
        y_pred = np.argmax(y_pred, axis=-1)
    else:
        classes = 2
        y_pred = (y_pred > 0.5).astype(np.int64)
    return y_true.reshape(-1).astype(np.int64), y_pred.reshape(-1).astype(np.int64), classes


class Accuracy(Trace):
    """The fraction of samples whose predicted class is the true one, over the whole set.

    Args:
        true_key: Key of the labels.
        pred_key: Key of the predictions.
        mode: Modes to run in (FastEstimator's default: eval and test).
        output_name: The metric's name in the record.
    """

    def __init__(self, true_key: str, pred_key: str,
                 mode: str | Iterable[str] | None = ("eval", "test"),
                 output_name: str = "accuracy") -> None:
        super().__init__(inputs=(true_key, pred_key), outputs=output_name, mode=mode)
        self.counts = np.zeros(2, np.int64)  # this rank's (correct, total) this epoch

    def on_epoch_begin(self, data: Data) -> None:
        self.counts = np.zeros(2, np.int64)

    def on_batch_end(self, data: Data) -> None:
        y_true, y_pred, _ = to_labels(data[self.inputs[0]], data[self.inputs[1]])
        self.counts += (int(np.sum(y_true == y_pred)), y_true.size)

    def on_epoch_end(self, data: Data) -> None:
        correct, total = self.system.sum_over_ranks(self.counts)
        data.write_with_log(self.outputs[0], float(correct / total) if total else 0.0)


class ConfusionMatrix(Trace):
    """The confusion matrix over the whole set: entry [i, j] counts samples of true class i
    predicted as j (scikit-learn's layout), recorded as nested lists.

    Args:
        true_key: Key of the labels.
        pred_key: Key of the predictions.
        num_classes: Number of classes.
        mode: Modes to run in.
        output_name: The metric's name in the record.
    """

    def __init__(self, true_key: str, pred_key: str, num_classes: int,
                 mode: str | Iterable[str] | None = ("eval", "test"),
                 output_name: str = "confusion_matrix") -> None:
        super().__init__(inputs=(true_key, pred_key), outputs=output_name, mode=mode)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(f"ConfusionMatrix: num_classes must be an int >= 2, got "
                              f"{num_classes!r}.")
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def on_epoch_begin(self, data: Data) -> None:
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def on_batch_end(self, data: Data) -> None:
        y_true, y_pred, _ = to_labels(data[self.inputs[0]], data[self.inputs[1]])
        _add_counts(self.matrix, y_true, y_pred, self)

    def on_epoch_end(self, data: Data) -> None:
        data.write_with_log(self.outputs[0], self.system.sum_over_ranks(self.matrix))


def _add_counts(matrix: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray,
                trace: Trace) -> None:
    n = matrix.shape[0]
    for name, labels in (("label", y_true), ("prediction", y_pred)):
        bad = labels[(labels < 0) | (labels >= n)]
        if bad.size:
            raise ValueError(f"{type(trace).__name__}: {name} {int(bad[0])} is outside the "
                             f"{n} classes (keys {trace.inputs}).")
    np.add.at(matrix, (y_true, y_pred), 1)


class _ClassificationMetric(Trace):
    """Precision, recall or F1 from the confusion matrix summed over ranks.

    As FastEstimator (which calls scikit-learn with ``average='binary'`` for a binary prediction
    and ``average=None`` otherwise): by default a binary prediction gives the score of class 1
    and a multi-class one the per-class scores (an array, recorded as a list); ``average``
    "micro", "macro" or "weighted" gives one number instead. A class with no predicted (or no
    true) sample scores 0.
    """

    _default_name = ""

    def __init__(self, true_key: str, pred_key: str,
                 mode: str | Iterable[str] | None = ("eval", "test"),
                 output_name: str | None = None, average: str | None = None) -> None:
        super().__init__(inputs=(true_key, pred_key), outputs=output_name or self._default_name,
                         mode=mode)
        if average not in _AVERAGES:
            raise ConfigError(f"{type(self).__name__}: average must be one of {_AVERAGES}, got "
                              f"{average!r}.")
        self.average = average
        self.matrix: np.ndarray | None = None

    def on_epoch_begin(self, data: Data) -> None:
        self.matrix = None

    def on_batch_end(self, data: Data) -> None:
        y_true, y_pred, classes = to_labels(data[self.inputs[0]], data[self.inputs[1]])
        if self.matrix is None:
            self.matrix = np.zeros((classes, classes), np.int64)
        _add_counts(self.matrix, y_true, y_pred, self)

    def on_epoch_end(self, data: Data) -> None:
        # Gathered, not summed: a rank with no batch has no matrix (its class count unknown).
        parts = [m for m in self.system.gather(self.matrix) if m is not None]
        if not parts:
            raise ValueError(f"{type(self).__name__}: no batch reached this trace this epoch.")
        matrix = sum(parts[1:], parts[0].copy())
        data.write_with_log(self.outputs[0], self.score(matrix))

    def score(self, matrix: np.ndarray) -> float | np.ndarray:
        """The metric of the confusion matrix ``matrix`` (rows: true class)."""
        tp = np.diag(matrix).astype(np.float64)
        predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
        average = self.average or ("binary" if matrix.shape[0] == 2 else None)
        if average == "micro":
            return float(self._ratio(tp.sum(), predicted.sum(), actual.sum()))
        per_class = self._ratio(tp, predicted.astype(np.float64), actual.astype(np.float64))
        if average == "binary":
            return float(per_class[1])
        if average == "macro":
            return float(per_class.mean())
        if average == "weighted":
            return float((per_class * actual).sum() / actual.sum()) if actual.sum() else 0.0
        return per_class

    @staticmethod
    def _ratio(tp: Any, predicted: Any, actual: Any) -> Any:
        raise NotImplementedError


def _divide(numerator: Any, denominator: Any) -> Any:
    numerator, denominator = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator),
                     where=denominator > 0)


class Precision(_ClassificationMetric):
    __doc__ = ("Precision, tp / (tp + fp), over the whole set.\n\n"
               + _ClassificationMetric.__doc__.split("\n\n", 1)[1])
    _default_name = "precision"

    @staticmethod
    def _ratio(tp: Any, predicted: Any, actual: Any) -> Any:
        return _divide(tp, predicted)


class Recall(_ClassificationMetric):
    __doc__ = ("Recall, tp / (tp + fn), over the whole set.\n\n"
               + _ClassificationMetric.__doc__.split("\n\n", 1)[1])
    _default_name = "recall"

    @staticmethod
    def _ratio(tp: Any, predicted: Any, actual: Any) -> Any:
        return _divide(tp, actual)


class F1Score(_ClassificationMetric):
    __doc__ = ("F1, 2 tp / (2 tp + fp + fn), over the whole set.\n\n"
               + _ClassificationMetric.__doc__.split("\n\n", 1)[1])
    _default_name = "f1_score"

    @staticmethod
    def _ratio(tp: Any, predicted: Any, actual: Any) -> Any:
        return _divide(2 * np.asarray(tp), np.asarray(predicted) + np.asarray(actual))


__all__ = ["Accuracy", "ConfusionMatrix", "F1Score", "Precision", "Recall"]
