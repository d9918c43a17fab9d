"""FastEstimator 1.x's ``fe.trace.metric``: fe_dist's metric traces (same names and keys)."""

from fe_dist.trace.metric import AUC, Accuracy, ConfusionMatrix, F1Score, Precision, Recall

__all__ = ["AUC", "Accuracy", "ConfusionMatrix", "F1Score", "Precision", "Recall"]
