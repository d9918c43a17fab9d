"""FastEstimator 1.x programs on fe_dist: ``import fe_dist.fe1 as fe``.

The modules mirror ``fastestimator``'s (``fe_dist.fe1.op.tensorop.model.UpdateOp`` is
``fastestimator.op.tensorop.model.UpdateOp``), and their names mean what FastEstimator 1.x
means: epochs, steps and ``batch_idx`` count from 1, ``fe.build(model_fn=, optimizer_fn=)``
with ``UpdateOp``, ``CrossEntropy(inputs=("y_pred", "y"))``, ``Pipeline(train_data=, ...)``.
It is a translation layer over fe_dist's one engine (the same plan, sharding, collectives and
checks), not a second one; fe_dist's own API (epochs from 0) stays as it is, and a program
mixing the two numberings is refused before training (docs/porting.md).
"""

from fe_dist.fe1 import architecture, backend, dataset, op, schedule, trace, util
from fe_dist.fe1.build import build
from fe_dist.fe1.estimator import Estimator
from fe_dist.fe1.network import Network
from fe_dist.fe1.pipeline import Pipeline

__all__ = ["Estimator", "Network", "Pipeline", "architecture", "backend", "build", "dataset", "op",
           "schedule", "trace", "util"]
