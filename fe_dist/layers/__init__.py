"""Keras layers that know about the ranks of a run."""

from fe_dist.layers.sync_batch_normalization import SyncBatchNormalization

__all__ = ["SyncBatchNormalization"]
