"""FastEstimator 1.x's ``fe.op.numpyop``: per-sample pipeline ops, FastEstimator's names (the
ops are also importable from here, as older FastEstimator 1.x programs do)."""

from fe_dist.fe1.op.numpyop import meta, multivariate, univariate
from fe_dist.fe1.op.numpyop.meta import OneOf, Sometimes
from fe_dist.fe1.op.numpyop.multivariate import (HorizontalFlip, PadIfNeeded, RandomCrop, Rotate,
                                                 VerticalFlip)
from fe_dist.fe1.op.numpyop.univariate import (CoarseDropout, Cutout, ExpandDims, Minmax,
                                               Normalize, Onehot)
from fe_dist.op.numpyop import NumpyOp

__all__ = ["CoarseDropout", "Cutout", "ExpandDims", "HorizontalFlip", "Minmax", "Normalize",
           "NumpyOp", "OneOf", "Onehot", "PadIfNeeded", "RandomCrop", "Rotate", "Sometimes",
           "VerticalFlip", "meta", "multivariate", "univariate"]
