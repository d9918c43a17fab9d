"""Traces: FastEstimator's hooks into the epoch loop, rank-aware.

``fe_dist.trace.Trace`` is the base class; ``fe_dist.trace.metric`` (Accuracy, AUC,
F1Score, Precision, Recall, ConfusionMatrix), ``fe_dist.trace.io`` (BestModelSaver) and
``fe_dist.trace.adapt`` (EarlyStopping, LRScheduler) hold the ready-made ones.
"""

from fe_dist.trace.trace import Data, System, Trace

__all__ = ["Data", "System", "Trace"]
