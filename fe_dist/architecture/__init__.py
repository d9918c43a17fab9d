"""Model architectures."""

from fe_dist.architecture.lenet import LeNet

__all__ = ["LeNet"]
