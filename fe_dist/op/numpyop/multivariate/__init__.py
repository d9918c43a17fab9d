"""Per-sample geometric ops that move an image and its masks together (FastEstimator's
``fe.op.numpyop.multivariate``)."""

from fe_dist.op.numpyop.multivariate.horizontal_flip import HorizontalFlip
from fe_dist.op.numpyop.multivariate.pad_if_needed import PadIfNeeded
from fe_dist.op.numpyop.multivariate.random_crop import RandomCrop
from fe_dist.op.numpyop.multivariate.rotate import Rotate
from fe_dist.op.numpyop.multivariate.vertical_flip import VerticalFlip

__all__ = ["HorizontalFlip", "PadIfNeeded", "RandomCrop", "Rotate", "VerticalFlip"]
