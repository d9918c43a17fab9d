"""FastEstimator 1.x's ``fe.trace``: the Trace base (``system.epoch_idx``,
``system.global_step`` and ``system.batch_idx`` count from 1 here) and the ready-made traces."""

from fe_dist.fe1.trace import adapt, io, metric
from fe_dist.trace.trace import Data, System, Trace

__all__ = ["Data", "System", "Trace", "adapt", "io", "metric"]
