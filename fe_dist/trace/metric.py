"""Metric traces over the whole eval (or test) set, on any number of ranks.

Each rank accumulates additive statistics of its own shard (correct counts, a confusion matrix)
in ``on_batch_end``; ``on_epoch_end`` sums them over ranks and computes the metric once from the
totals, so the value equals a single-process computation over the whole set (per-rank metric
values are never averaged). `AUC` has no additive statistic: it gathers every rank's scores.

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


def _true_classes(y_true: Any) -> np.ndarray:
    """Class indices from class indices of any shape or one-hot rows (argmax)."""
    y_true = np.asarray(y_true)
    if y_true.ndim > 1 and y_true.shape[-1] > 1:
        y_true = np.argmax(y_true, axis=-1)
    y_true = y_true.reshape(-1)
    classes = y_true.astype(np.int64)
    if not np.array_equal(classes, y_true):
        raise ValueError(f"labels must be class indices (or one-hot rows), got {y_true[:5]}...")
    return classes


def to_labels(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """(true class indices, predicted class indices, number of classes the prediction has;
    2 for a binary prediction)."""
    y_true, y_pred = _true_classes(y_true), np.asarray(y_pred)
    if y_pred.ndim > 1 and y_pred.shape[-1] > 1:
        classes = y_pred.shape[-1]
        y_pred = np.argmax(y_pred, axis=-1)
    else:
        classes = 2
        y_pred = (y_pred > 0.5).astype(np.int64)
    return y_true, y_pred.reshape(-1).astype(np.int64), classes


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
    """Precision, tp / (tp + fp), over the whole set.

    As FastEstimator (which calls scikit-learn with ``average='binary'`` for a binary prediction
    and ``average=None`` otherwise): by default a binary prediction gives the score of class 1
    and a multi-class one the per-class scores (an array, recorded as a list); ``average``
    "micro", "macro" or "weighted" gives one number instead. A class with no predicted (or no
    true) sample scores 0.

    Args:
        true_key: The key of the labels (class indices or one-hot).
        pred_key: The key of the predictions (scores per class, or one probability).
        mode: The modes it runs in.
        output_name: The key it writes (default "precision").
        average: None, "binary", "micro", "macro" or "weighted" (see above).
    """

    _default_name = "precision"

    @staticmethod
    def _ratio(tp: Any, predicted: Any, actual: Any) -> Any:
        return _divide(tp, predicted)


class Recall(_ClassificationMetric):
    """Recall, tp / (tp + fn), over the whole set.

    As FastEstimator (which calls scikit-learn with ``average='binary'`` for a binary prediction
    and ``average=None`` otherwise): by default a binary prediction gives the score of class 1
    and a multi-class one the per-class scores (an array, recorded as a list); ``average``
    "micro", "macro" or "weighted" gives one number instead. A class with no predicted (or no
    true) sample scores 0.

    Args:
        true_key: The key of the labels (class indices or one-hot).
        pred_key: The key of the predictions (scores per class, or one probability).
        mode: The modes it runs in.
        output_name: The key it writes (default "recall").
        average: None, "binary", "micro", "macro" or "weighted" (see above).
    """

    _default_name = "recall"

    @staticmethod
    def _ratio(tp: Any, predicted: Any, actual: Any) -> Any:
        return _divide(tp, actual)


class F1Score(_ClassificationMetric):
    """F1, 2 tp / (2 tp + fp + fn), over the whole set.

    As FastEstimator (which calls scikit-learn with ``average='binary'`` for a binary prediction
    and ``average=None`` otherwise): by default a binary prediction gives the score of class 1
    and a multi-class one the per-class scores (an array, recorded as a list); ``average``
    "micro", "macro" or "weighted" gives one number instead. A class with no predicted (or no
    true) sample scores 0.

    Args:
        true_key: The key of the labels (class indices or one-hot).
        pred_key: The key of the predictions (scores per class, or one probability).
        mode: The modes it runs in.
        output_name: The key it writes (default "f1_score").
        average: None, "binary", "micro", "macro" or "weighted" (see above).
    """

    _default_name = "f1_score"

    @staticmethod
    def _ratio(tp: Any, predicted: Any, actual: Any) -> Any:
        return _divide(2 * np.asarray(tp), np.asarray(predicted) + np.asarray(actual))


def _scores(y_pred: Any) -> np.ndarray:
    """The scores AUC ranks, shape (n, columns): a binary prediction's probability of class 1
    (column 1 of two, or its only column) as one column, else the per-class scores."""
    y_pred = np.asarray(y_pred)
    if y_pred.ndim > 1 and y_pred.shape[-1] > 2:
        return y_pred.reshape(-1, y_pred.shape[-1])
    if y_pred.ndim > 1 and y_pred.shape[-1] == 2:
        return y_pred.reshape(-1, 2)[:, 1:]
    return y_pred.reshape(-1, 1)


def _pair_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for the samples marked ``positive`` against the
    others: the fraction of (positive, negative) pairs ranked right, a tie counting half
    (Mann-Whitney U / (n_pos * n_neg)), from the rank sum of the positives."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    # Twice the average 1-based rank of each distinct score: integers, so the rank sum is exact
    # and the same whatever order the ranks' samples were concatenated in.
    twice_rank = 2 * np.cumsum(counts) - counts + 1
    twice_sum = int(twice_rank[inverse.reshape(-1)[positive]].sum())
    return (twice_sum - n_pos * (n_pos + 1)) / (2 * n_pos * n_neg)


def roc_auc(y_true: Any, y_pred: Any, average: str = "macro") -> float:
    """ROC AUC of predictions, exact (rank-based, ties counting half), in plain numpy.

    Args:
        y_true: Class indices (n,) (or (n, 1)), or one-hot rows (n, C).
        y_pred: Scores: (n,) or (n, 1) a binary probability of class 1; (n, 2) binary, column 1
            is class 1's score; (n, C) with C > 2 per-class scores (probabilities, as
            scikit-learn asks: each column is ranked as given).
        average: For C > 2 classes, one-vs-rest AUCs averaged "macro" (unweighted mean) or
            "weighted" (by each class's number of samples), as scikit-learn's
            ``roc_auc_score(multi_class="ovr")``. Ignored for a binary prediction.

    Returns:
        The AUC, a float in [0, 1].

    Raises:
        ValueError: A label outside the prediction's classes, a non-finite score, or a class
            with no sample (or only samples of one class, for a binary prediction): its
            one-vs-rest AUC is undefined, and scikit-learn raises too.
    """
    labels, scores = _true_classes(y_true), _scores(y_pred)
    if labels.size != scores.shape[0]:
        raise ValueError(f"{labels.size} labels but {scores.shape[0]} predictions.")
    if not np.all(np.isfinite(scores)):
        raise ValueError("the predictions hold a NaN or infinite score.")
    columns = scores.shape[1]
    classes = 2 if columns == 1 else columns
    bad = labels[(labels < 0) | (labels >= classes)]
    if bad.size:
        raise ValueError(f"label {int(bad[0])} is outside the prediction's {classes} classes.")
    present = np.bincount(labels, minlength=classes)
    if columns == 1:
        if present.min() == 0:
            raise ValueError(f"only class {int(np.argmax(present))} occurs in the labels, so the "
                             "binary ROC AUC is undefined (both classes must occur).")
        return _pair_auc(labels == 1, scores[:, 0])
    absent = np.flatnonzero(present == 0)
    if absent.size:
        raise ValueError(f"class {int(absent[0])} (of {classes}) has no sample, so its "
                         "one-vs-rest ROC AUC is undefined (every class must occur).")
    aucs = np.array([_pair_auc(labels == c, scores[:, c]) for c in range(classes)])
    if average == "weighted":
        return float(np.sum(aucs * present) / labels.size)
    return float(np.mean(aucs))


class AUC(Trace):
    """Area under the ROC curve over the whole set, exact, the same on every rank.

    AUC ranks every sample's score against every other's, so it cannot be added up from
    per-rank counts (nor averaged from per-rank AUCs): each rank keeps its shard's scores and
    labels during the epoch, and ``on_epoch_end`` gathers all of them on every rank
    (``system.gather``) and computes the AUC of the whole set with `roc_auc` (rank-based
    Mann-Whitney formula, a tie counting half). It equals a single-process computation over the
    same set (the rank sums are exact integers, so the ranks' order does not matter).

    Binary predictions ((n,), (n, 1) a probability of class 1, or (n, 2) whose column 1 is
    ranked): the AUC of class 1. Multi-class predictions (n, C), C > 2: the one-vs-rest AUC of
    each class (its column ranked as given, so give probabilities or any per-column monotone
    score), averaged unweighted ("macro", the default) or by class size ("weighted"), as
    scikit-learn's ``roc_auc_score(multi_class="ovr", average=...)``. Labels are class indices
    or one-hot rows (multi-label indicators are not supported).

    A class with no sample in the whole set (or a binary set of one class) has no AUC: the
    trace raises ValueError at that epoch's end on every rank, as scikit-learn and
    FastEstimator's AUCScore do (make sure the eval/test split holds every class).

    Memory: each rank keeps one score per sample per class (one per sample for a binary
    prediction; in the prediction's dtype) and one int64 label per sample of its shard during
    the epoch; at ``on_epoch_end`` every rank briefly holds the whole set's, e.g. about 0.5 MB
    for 10,000 samples of 10 float32 classes.

    Args:
        true_key: Key of the labels.
        pred_key: Key of the predicted scores.
        mode: Modes to run in (FastEstimator's default: eval and test).
        output_name: The metric's name in the record.
        average: "macro" or "weighted" (multi-class only).
        multi_class: "ovr" only (FastEstimator's AUCScore argument; one-vs-one is not
            implemented).
    """

    def __init__(self, true_key: str, pred_key: str,
                 mode: str | Iterable[str] | None = ("eval", "test"),
                 output_name: str = "auc", average: str = "macro",
                 multi_class: str = "ovr") -> None:
        super().__init__(inputs=(true_key, pred_key), outputs=output_name, mode=mode)
        if average not in ("macro", "weighted"):
            raise ConfigError(f"AUC: average must be 'macro' or 'weighted', got {average!r}.")
        if multi_class != "ovr":
            raise ConfigError(f"AUC: multi_class must be 'ovr' (one-vs-rest), got "
                              f"{multi_class!r}; one-vs-one is not implemented.")
        self.average = average
        self.labels: list[np.ndarray] = []  # this rank's labels and scores, batch by batch
        self.scores: list[np.ndarray] = []

    def on_epoch_begin(self, data: Data) -> None:
        self.labels, self.scores = [], []

    def on_batch_end(self, data: Data) -> None:
        labels, scores = _true_classes(data[self.inputs[0]]), _scores(data[self.inputs[1]])
        if self.scores and scores.shape[1] != self.scores[0].shape[1]:
            raise ValueError(f"AUC: {self.inputs[1]!r} has {scores.shape[1]} score column(s) "
                             f"in this batch, {self.scores[0].shape[1]} before.")
        self.labels.append(labels)
        self.scores.append(scores)

    def on_epoch_end(self, data: Data) -> None:
        local = ((np.concatenate(self.labels), np.concatenate(self.scores)) if self.scores
                 else None)  # a rank may have had no batch of a tiny set
        parts = [p for p in self.system.gather(local) if p is not None]
        self.labels, self.scores = [], []  # free the memory before the next epoch
        if not parts:
            raise ValueError(f"AUC: no batch reached this trace (keys {self.inputs}).")
        if len({p[1].shape[1] for p in parts}) > 1:
            raise ValueError(f"AUC: the ranks' {self.inputs[1]!r} have different numbers of "
                             f"score columns: {[p[1].shape[1] for p in parts]}.")
        labels = np.concatenate([p[0] for p in parts])
        scores = np.concatenate([p[1] for p in parts])
        try:
            auc = roc_auc(labels, scores, average=self.average)
        except ValueError as err:
            raise ValueError(f"AUC (keys {self.inputs}) over the whole {self.system.mode} set "
                             f"({labels.size} samples): {err}") from None
        data.write_with_log(self.outputs[0], auc)


AUCScore = AUC  # FastEstimator's name (fastestimator.trace.metric.AUCScore)
"""FastEstimator's name for `AUC` (the same class)."""

__all__ = ["AUC", "AUCScore", "Accuracy", "ConfusionMatrix", "F1Score", "Precision", "Recall",
           "roc_auc"]
