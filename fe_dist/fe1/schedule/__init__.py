"""FastEstimator 1.x's schedules: epochs (and steps) count from 1.

``EpochScheduler({1: a, 3: b})`` gives ``a`` in the run's first two epochs, as in FastEstimator
1.x. The engine counts from 0 and reads these through `BaseScheduler.value_at`, so the same
objects drive fe_dist's plan; fe_dist's own `fe_dist.schedule.Scheduler` (from 0) is refused in a
FastEstimator 1.x program, and these in an fe_dist one.
"""

from __future__ import annotations

from typing import Any, Iterable

from fe_dist.build import optimizer_at
from fe_dist.errors import ConfigError
from fe_dist.fe1.schedule.lr_schedule import cosine_decay
from fe_dist.schedule import scheduler as _engine
from fe_dist.schedule.scheduler import BaseScheduler as Scheduler
from fe_dist.trace.adapt import LRScheduler as _LRScheduler


class EpochScheduler(_engine.Scheduler):
    """A value that changes at given epochs, epochs counted from 1 (FastEstimator 1.x).

    The value given for key ``k`` holds from epoch ``k`` until the next key; before the first
    key the value is None (a scheduled op is off).

    Args:
        epoch_dict: ``{epoch: value}``, int epochs >= 1.

    Examples:
        >>> s = EpochScheduler({1: "a", 3: "b", 4: None, 100: "c"})
        >>> [s.get_current_value(e) for e in (1, 2, 3, 4, 99, 100)]
        ['a', 'a', 'b', None, None, 'c']
    """

    first_epoch = 1

    def __init__(self, epoch_dict: dict[int, Any]) -> None:
        super().__init__(epoch_dict)
        if self.keys[0] < 1:
            raise ConfigError(
                f"EpochScheduler({self.epoch_dict!r}): key {self.keys[0]} is not an epoch of a "
                "FastEstimator 1.x program (fe_dist.fe1), whose epochs count from 1. Add 1 to "
                "each key, or use fe_dist.schedule.Scheduler (epochs from 0) with fe_dist's own "
                "Pipeline, Network and Estimator.")

    def get_all_values(self) -> list[Any]:
        """Every value in key order, None included (as FastEstimator returns them)."""
        return list(self.epoch_dict.values())

    def _get_last_key(self, epoch: int) -> int | None:
        """The largest key <= ``epoch``, or None."""
        keys = [k for k in self.keys if k <= epoch]
        return keys[-1] if keys else None

    def __repr__(self) -> str:
        return f"fe1.EpochScheduler({self.epoch_dict!r})"


class RepeatScheduler(_engine.RepeatScheduler):
    """A list of values that repeats by epoch, epochs counted from 1: epoch e takes
    ``repeat_list[(e - 1) % len]`` (FastEstimator 1.x).

    Examples:
        >>> s = RepeatScheduler(["a", "b", "c"])
        >>> [s.get_current_value(e) for e in range(1, 6)]
        ['a', 'b', 'c', 'a', 'b']
    """

    first_epoch = 1

    def get_current_value(self, epoch: int) -> Any:
        return self.repeat_list[(epoch - 1) % len(self.repeat_list)]

    def get_all_values(self) -> list[Any]:
        """The list, None included (as FastEstimator returns it)."""
        return list(self.repeat_list)

    def __repr__(self) -> str:
        return f"fe1.RepeatScheduler({self.repeat_list!r})"


def get_current_items(items: Iterable[Any], run_modes: str | Iterable[str] | None = None,
                      epoch: int | None = None) -> list[Any]:
    """The items to run in ``run_modes`` at ``epoch`` (from 1), FastEstimator 1.x's way:
    Schedulers resolved (every value when ``epoch`` is None), falsy values (None) dropped, and
    items whose ``mode`` matches none of ``run_modes`` dropped (None: every mode)."""
    modes = [run_modes] if isinstance(run_modes, str) else list(run_modes or [])
    selected = []
    for item in items:
        if isinstance(item, Scheduler):
            values = item.get_all_values() if epoch is None else [item.get_current_value(epoch)]
        else:
            values = [item]
        for value in values:
            if not value:
                continue
            own = getattr(value, "mode", None)
            if not modes or not own or any(_engine._mode_matches(own, m) for m in modes):
                selected.append(value)
    return selected


def get_signature_epochs(items: list[Any], total_epochs: int,
                         mode: str | None = None) -> list[int]:
    """FastEstimator 1.x's signature epochs: the first epoch (from 1 to ``total_epochs``) of
    each combination of active items not seen in an earlier epoch. (fe_dist's plan uses every
    epoch where something changes instead: `fe_dist.schedule.get_signature_epochs`.)"""
    seen: list[list[Any]] = []
    epochs = []
    for epoch in range(1, total_epochs + 1):
        config = get_current_items(items, run_modes=mode, epoch=epoch)
        if config not in seen:
            seen.append(config)
            epochs.append(epoch)
    return epochs


class LRScheduler(_LRScheduler):
    """FastEstimator 1.x's LRScheduler: ``lr_fn(step)`` sees the step about to run counted from
    1, ``lr_fn(epoch)`` the epoch from 1 (set at its start), as in FastEstimator.

    As FastEstimator logs the rate at step 1 and every ``log_steps`` (100 by default) steps,
    ``step_lrs`` keeps the rate in force at those steps, ``{step: lr}``.

    Args:
        model: A model of the Network.
        lr_fn: ``lr_fn(step)`` or ``lr_fn(epoch)`` -> learning rate.
    """

    first_epoch = 1
    log_steps = 100

    def __init__(self, model: Any, lr_fn: Any) -> None:
        super().__init__(model, lr_fn)
        self.step_lrs: dict[int, float] = {}

    def on_batch_end(self, data: Any) -> None:
        step = self.system.global_step
        if step == 1 or step % self.log_steps == 0:
            epoch = self.system.epoch_idx - self.system.first_epoch
            self.step_lrs[step] = float(optimizer_at(self.model, epoch).learning_rate.numpy())


__all__ = ["EpochScheduler", "LRScheduler", "RepeatScheduler", "Scheduler", "cosine_decay",
           "get_current_items", "get_signature_epochs"]
