"""Per-sample ops on one key (FastEstimator's ``fe.op.numpyop.univariate``)."""

from fe_dist.op.numpyop.univariate.coarse_dropout import CoarseDropout
from fe_dist.op.numpyop.univariate.cutout import Cutout
from fe_dist.op.numpyop.univariate.onehot import Onehot

__all__ = ["CoarseDropout", "Cutout", "Onehot"]
