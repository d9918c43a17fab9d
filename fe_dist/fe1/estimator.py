"""FastEstimator 1.x's Estimator: epochs, steps and ``batch_idx`` counted from 1."""

from __future__ import annotations

from typing import Any

from fe_dist.build import optimizer_at
from fe_dist.distributed import get_context
from fe_dist.errors import ConfigError
from fe_dist.estimator import Estimator as _Estimator
from fe_dist.network import Network
from fe_dist.pipeline import Pipeline
from fe_dist.summary import Summary


class Estimator(_Estimator):
    """Train a FastEstimator 1.x program on fe_dist's engine, on one process or N ranks.

    The same epoch loop as `fe_dist.Estimator`; what differs is the numbering: fe1
    schedulers, traces (``system.epoch_idx``, ``system.global_step``, ``system.batch_idx``)
    and ``LRScheduler``'s ``lr_fn`` see epochs and steps from 1, as FastEstimator 1.x counts
    them. The records (`fe_dist.Summary`) keep fe_dist's epochs from 0 (``epoch`` 0 is
    FastEstimator's epoch 1). Pipeline and Network must be fe1's; anything counting from 0 is
    refused.

    Args:
        pipeline: An fe1 `Pipeline`.
        network: An fe1 `Network`.
        epochs: Number of epochs.
        train_steps_per_epoch: Optimizer steps per epoch: fewer than one pass over the training
            set cuts the epoch short, more extends it (the data repeats, reshuffled each pass),
            as in FastEstimator. None: every full global batch once.
        eval_steps_per_epoch: Not supported (None only): fe_dist evaluates the whole eval set.
        max_train_steps_per_epoch: FastEstimator 1.0's name: at most this many steps (a cap).
        traces: Traces, each may be scheduled by an fe1 scheduler.
        log_steps: None turns the console off (FastEstimator's meaning); any other value logs
            one line per epoch on rank 0 (fe_dist gathers losses once per epoch, not every
            ``log_steps`` steps).
        monitor_names: Accepted for FastEstimator programs; fe_dist's epoch line shows every
            loss key.
        **kwargs: `fe_dist.Estimator`'s own options (seed, checkpoint_dir, max_rank_batch,
            history_dir, ...).
    """

    first_epoch = 1

    def __init__(self, pipeline: Pipeline, network: Network, epochs: int,
                 train_steps_per_epoch: int | None = None,
                 eval_steps_per_epoch: int | None = None, traces: Any = None,
                 log_steps: int | None = 100, monitor_names: Any = None,
                 max_train_steps_per_epoch: int | None = None, **kwargs: Any) -> None:
        if eval_steps_per_epoch is not None:
            raise ConfigError(f"fe1.Estimator(eval_steps_per_epoch={eval_steps_per_epoch!r}) is "
                              "not supported by fe_dist: every eval covers the whole eval set "
                              "(sharded over the ranks). Give a smaller eval set (split()).")
        for name, value in (("train_steps_per_epoch", train_steps_per_epoch),
                            ("max_train_steps_per_epoch", max_train_steps_per_epoch)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ConfigError(f"fe1.Estimator: {name} must be a positive int or None, got "
                                  f"{value!r}.")
        if train_steps_per_epoch is not None and max_train_steps_per_epoch is not None:
            raise ConfigError("fe1.Estimator: give train_steps_per_epoch or "
                              "max_train_steps_per_epoch, not both.")
        pipeline.steps_per_epoch = train_steps_per_epoch
        pipeline.max_steps_per_epoch = max_train_steps_per_epoch
        kwargs.setdefault("verbose", log_steps is not None)
        super().__init__(pipeline=pipeline, network=network, epochs=epochs, traces=traces,
                         **kwargs)
        self.log_steps = log_steps
        self.monitor_names = monitor_names
        self.final_lrs: dict[str, float] = {}

    @property
    def is_chief(self) -> bool:
        """Whether this process is rank 0 (writes files, prints)."""
        return get_context().is_chief

    def fit(self, resume: bool = False) -> Summary:
        """Train as `fe_dist.Estimator.fit`; then, as FastEstimator's closing line, each model's
        learning rate at the end (``final_lrs``, ``{model_name}_lr``: the rate of the optimizer
        in force in the last epoch, e.g. SGD's own 0.01 after a switch from Adam)."""
        summary = super().fit(resume=resume)
        last = len(summary.records) - 1
        self.final_lrs = {f"{name}_lr": float(optimizer_at(model, last).learning_rate.numpy())
                          for name, model in self.network.models.items()}
        if self.verbose and self.is_chief:
            print("FastEstimator-Finish: " + "; ".join(f"{k}: {v:.6g}"
                                                       for k, v in self.final_lrs.items()),
                  flush=True)
        return summary
