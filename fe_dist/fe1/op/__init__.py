"""FastEstimator 1.x's ``fe.op``."""

from fe_dist.fe1.op import numpyop, tensorop

__all__ = ["numpyop", "tensorop"]
