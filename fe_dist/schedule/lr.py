"""`LRSchedule`: learning rates that follow the batch size, warm up, and change by epoch or step.

Goyal et al. (2017): when the global batch grows k-fold, multiply the learning rate by k, and
warm it up gradually from a small value so early training stays stable.
"""

from __future__ import annotations

import numbers
from typing import Callable

from fe_dist.errors import ConfigError
from fe_dist.schedule.scheduler import BaseScheduler

LRValue = float | BaseScheduler | Callable[[int, int], float]


class LRSchedule:
    """The learning rate of a model at every step.

    ``lr(epoch, step) = base(epoch, step) × scale × warmup``, where

    - ``base`` is a float, a Scheduler of floats (by epoch), or a function ``f(epoch, step)`` of
      the epoch and the global step (optimizer updates since the run began);
    - ``scale`` is ``global_batch / reference_batch`` when ``reference_batch`` is given (linear
      scaling: recomputed at every schedule change of the batch size), else 1;
    - ``warmup`` rises linearly from ``1 / warmup_steps`` to 1 over the first ``warmup_steps``
      steps (or over ``warmup_epochs`` epochs) of the run, else 1.

    Args:
        base: The learning rate at the reference batch size.
        reference_batch: The global batch size ``base`` was tuned for; None turns scaling off.
        warmup_steps: Linear warm-up length in steps.
        warmup_epochs: Linear warm-up length in epochs (step-wise inside them); give at most one
            of the two.

    Examples:
        >>> LRSchedule(1e-3, reference_batch=32).value(epoch=2, step=500, global_batch=128)
        0.004
    """

    def __init__(self, base: LRValue, reference_batch: int | None = None,
                 warmup_steps: int = 0, warmup_epochs: int = 0) -> None:
        if not (isinstance(base, (numbers.Real, BaseScheduler)) or callable(base)):
            raise ConfigError(f"LRSchedule: base must be a float, a Scheduler of floats or a "
                              f"function (epoch, step) -> float, got {base!r}.")
        if reference_batch is not None and (isinstance(reference_batch, bool) or not isinstance(
                reference_batch, numbers.Integral) or reference_batch < 1):
            raise ConfigError(f"LRSchedule: reference_batch must be a positive int, got "
                              f"{reference_batch!r}.")
        for name, value in (("warmup_steps", warmup_steps), ("warmup_epochs", warmup_epochs)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ConfigError(f"LRSchedule: {name} must be a non-negative int, got {value!r}.")
        if warmup_steps and warmup_epochs:
            raise ConfigError("LRSchedule: give warmup_steps or warmup_epochs, not both.")
        self.base = base
        self.reference_batch = reference_batch
        self.warmup_steps = warmup_steps
        self.warmup_epochs = warmup_epochs

    def value(self, epoch: int, step: int, global_batch: int, warmup_total: int = 0) -> float:
        """The learning rate of the update at global ``step`` (0-based) in ``epoch``.

        Args:
            epoch: The epoch.
            step: Optimizer updates before this one, since the run began.
            global_batch: The epoch's global batch size.
            warmup_total: Warm-up length in steps (`warmup_length`); 0 for none.
        """
        if isinstance(self.base, BaseScheduler):
            base = self.base.value_at(epoch)
            if base is None:
                raise ConfigError(f"Epoch {epoch}: the learning-rate Scheduler has no value; "
                                  "give it one at epoch 0.")
        elif callable(self.base):
            base = self.base(epoch, step)
        else:
            base = self.base
        scale = global_batch / self.reference_batch if self.reference_batch else 1.0
        warm = min(1.0, (step + 1) / warmup_total) if warmup_total else 1.0
        return float(base) * scale * warm

    def __repr__(self) -> str:
        return (f"LRSchedule(base={self.base!r}, reference_batch={self.reference_batch}, "
                f"warmup_steps={self.warmup_steps}, warmup_epochs={self.warmup_epochs})")


def warmup_length(schedule: LRSchedule, steps_by_epoch: list[int]) -> int:
    """Warm-up length in steps of a run whose epochs have ``steps_by_epoch`` steps."""
    if schedule.warmup_steps:
        return schedule.warmup_steps
    return sum(steps_by_epoch[:schedule.warmup_epochs])
