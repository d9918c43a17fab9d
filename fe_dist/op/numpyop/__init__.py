"""Per-sample ops of the Pipeline (FastEstimator's ``fe.op.numpyop``): your own `NumpyOp`
(numpy, one sample at a time) and built-in augmentations that run vectorised over batches,
every random draw keyed on (seed, mode, epoch, sample) (see `fe_dist.op.numpyop.draws`)."""

from fe_dist.op.numpyop.draws import Draws
from fe_dist.op.numpyop.numpyop import NumpyOp

__all__ = ["Draws", "NumpyOp"]
