"""FastEstimator 1.x's Pipeline: ``train_data=``, ``eval_data=``, ``test_data=``."""

from __future__ import annotations

import numbers
import warnings
from typing import Any

from fe_dist.distributed import get_context
from fe_dist.errors import ConfigError
from fe_dist.pipeline import Pipeline as _Pipeline
from fe_dist.schedule import BaseScheduler, all_values


class Pipeline(_Pipeline):
    """Data, global batch size and pipeline ops of a FastEstimator 1.x program (epochs from 1).

    ``batch_size`` is the **global** batch size, as FastEstimator 1.x documents it for several
    devices: the samples of one optimizer step over all ranks. Everything else is
    `fe_dist.Pipeline` (same engine, same sharding).

    Args:
        train_data: The training set: an fe1 `NumpyDataset`, another fe_dist source, a dict of
            arrays or a ``tf.data.Dataset`` of dicts with a known length.
        eval_data: The eval set (optional).
        test_data: The test set (optional), read by ``Estimator.test()``.
        batch_size: An int, an fe1 ``EpochScheduler`` / ``RepeatScheduler`` of ints, or a
            per-mode dict as in `fe_dist.Pipeline`.
        ops: Pipeline ops (NumpyOps and TensorOps), each may be scheduled.
        num_process: FastEstimator's worker count; fe_dist sizes its ``tf.data`` threads per
            rank itself (accepted, unused).
        drop_last: False (FastEstimator's default) trains the epoch's last, partial global
            batch as one more step, its loss averaged over its own samples, as FastEstimator
            does. It is dropped (with a warning) where it has fewer samples than ranks, the
            training data is a stream, or under ``max_rank_batch`` or ``train_steps_per_epoch``.
        pad_value: Not supported (None only).
        collate_fn: Not supported (None only).
        autotune: As `fe_dist.Pipeline`.
    """

    first_epoch = 1

    def __init__(self, train_data: Any = None, eval_data: Any = None, test_data: Any = None,
                 batch_size: Any = None, ops: Any = None, num_process: int | None = None,
                 drop_last: bool = False, pad_value: Any = None, collate_fn: Any = None,
                 autotune: bool = False) -> None:
        if train_data is None:
            raise ConfigError("fe1.Pipeline needs train_data (a dataset), e.g. "
                              "Pipeline(train_data=train_data, eval_data=eval_data, ...).")
        splits = {"train": train_data, "eval": eval_data, "test": test_data}
        for mode, split in splits.items():
            if isinstance(split, BaseScheduler):
                raise ConfigError(f"fe1.Pipeline: {mode}_data is scheduled ({split!r}); fe_dist "
                                  "trains on one data set per split. Give one data set, or "
                                  "schedule the ops that differ.")
        if batch_size is None:
            raise ConfigError("fe1.Pipeline: give batch_size (the global batch size); fe_dist "
                              "batches the data itself, so pre-batched data is not supported.")
        if pad_value is not None or collate_fn is not None:
            raise ConfigError("fe1.Pipeline: pad_value and collate_fn are not supported by "
                              "fe_dist (every sample of a batch has one shape).")
        super().__init__(data={m: s for m, s in splits.items() if s is not None},
                         batch_size=batch_size, ops=ops, autotune=autotune)
        self.drop_last = drop_last
        self.keep_last = not drop_last
        if not drop_last:
            self._warn_partial()

    def _warn_partial(self) -> None:
        """Warn where the last partial batch cannot be kept: fewer samples than ranks (a rank
        would train on none) or a stream source."""
        n, size = self.num_samples("train"), get_context().size
        values = all_values(self.batch_size)
        batches = sorted({int(b) for b in values if isinstance(b, numbers.Integral)})
        stream = not self.data["train"].random_access
        left = {b: n % b for b in batches if n % b and (stream or n % b < size)}
        if left:
            warnings.warn(
                f"fe1.Pipeline: FastEstimator 1.x trains the last partial batch of each epoch "
                f"(drop_last=False); here it is dropped where "
                + ("the training data is a stream" if stream else
                   f"it has fewer samples than the {size} ranks")
                + f": of the {n} training samples, "
                + ", ".join(f"{r} at batch size {b}" for b, r in left.items())
                + " are left out of each epoch. Pass drop_last=True to say you expect it.",
                stacklevel=3)
