"""Traces that change training: `EarlyStopping` and `LRScheduler`."""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable

import keras

from fe_dist.build import info
from fe_dist.errors import ConfigError
from fe_dist.schedule import LRSchedule
from fe_dist.trace.trace import Data, Trace


class EarlyStopping(Trace):
    """Stop training when the monitored eval metric stops improving (FastEstimator's logic).

    An epoch improves when the metric beats the best so far by more than ``min_delta``;
    otherwise a wait counter grows, and once it reaches ``patience`` training stops after that
    epoch. The decision is collective: every rank decides from the same eval metrics (gathered
    over the whole eval set), and fe_dist checks that every rank took the same decision, so all
    ranks stop after the same epoch and return the same records. The wait counter and best value
    are kept in checkpoints (a resumed run continues counting).

    Args:
        monitor: An eval metric: a loss key, a loss metric or a trace output.
        min_delta: The smallest change that counts as an improvement.
        patience: Epochs without improvement before stopping (0: stop at the first).
        compare: "min" or "max": which direction is better.
        baseline: A value to beat; None starts from the first epoch's value.
    """

    def __init__(self, monitor: str = "loss", min_delta: float = 0.0, patience: int = 0,
                 compare: str = "min", baseline: float | None = None) -> None:
        super().__init__(mode="eval")
        if compare not in ("min", "max"):
            raise ConfigError(f"EarlyStopping: compare must be 'min' or 'max', got {compare!r}.")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ConfigError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}.")
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = patience
        self.compare = compare
        self.baseline = baseline
        self.wait = 0
        self.best = self._start()
        self.stopped_epoch: int | None = None

    def _start(self) -> float:
        if self.baseline is not None:
            return float(self.baseline)
        return math.inf if self.compare == "min" else -math.inf

    def on_epoch_end(self, data: Data) -> None:
        current = float(data[self.monitor])
        if self.compare == "min":
            improved = current + self.min_delta < self.best
        else:
            improved = current - self.min_delta > self.best
        if improved:
            self.best, self.wait = current, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.system.stop_training = True
            self.system.stop_reason = (f"EarlyStopping: {self.monitor} has not improved on "
                                       f"{self.best:.6g} for {self.wait} epoch(s)")
            self.stopped_epoch = self.system.epoch_idx

    def get_state(self) -> dict[str, Any]:
        return {"wait": self.wait, "best": self.best, "stopped_epoch": self.stopped_epoch}

    def set_state(self, state: dict[str, Any]) -> None:
        self.wait, self.best = int(state["wait"]), float(state["best"])
        self.stopped_epoch = state["stopped_epoch"]


class _ByName:
    """An ``LRSchedule`` base ``(epoch, step) -> lr`` calling ``lr_fn`` with the one argument it
    names."""

    def __init__(self, lr_fn: Callable[..., float], argument: str, first: int = 0) -> None:
        self.lr_fn, self.argument, self.first = lr_fn, argument, first

    def __call__(self, epoch: int, step: int) -> float:
        # ``first``: 1 under fe_dist.fe1, whose lr_fn sees FastEstimator's epochs and steps
        # counted from 1 (the step about to run); the engine's count from 0.
        value = epoch if self.argument == "epoch" else step
        return self.lr_fn(**{self.argument: value + self.first})


class LRScheduler(Trace):
    """Set ``model``'s learning rate from ``lr_fn`` (FastEstimator's LRScheduler).

    ``lr_fn`` takes one argument, named ``step`` or ``epoch`` (read by name, as in
    FastEstimator). fe_dist counts both from 0: ``epoch`` is the epoch (FastEstimator 1.x counts
    from 1) and ``step`` the optimizer updates before this one since the run began (0 for the
    first update; FastEstimator counts from 1). It is installed as the model's
    `fe_dist.schedule.LRSchedule` when the Estimator is made, so it sets the rate before each
    step like ``fe.build(lr=...)`` and shows in ``EpochRecord.learning_rates``; a model that
    already has an lr schedule is refused.

    Args:
        model: A model of the Network.
        lr_fn: ``lr_fn(step)`` or ``lr_fn(epoch)`` -> learning rate.
    """

    first_epoch = 0  # what lr_fn's first epoch and step are called: 1 under fe_dist.fe1

    def __init__(self, model: keras.Model, lr_fn: Callable[..., float]) -> None:
        super().__init__(mode="train")
        info(model)
        try:
            names = list(inspect.signature(lr_fn).parameters)
        except (TypeError, ValueError):
            names = []
        if names not in (["step"], ["epoch"]):
            raise ConfigError(f"LRScheduler({model.model_name!r}): lr_fn must take one argument "
                              f"named 'step' or 'epoch', got parameters {names}. Example: "
                              "lr_fn=lambda step: 1e-3 * 0.99 ** step.")
        self.model = model
        self.lr_fn = lr_fn
        self.schedule = LRSchedule(_ByName(lr_fn, names[0], self.first_epoch))

    @staticmethod
    def installed(schedule: Any) -> bool:
        """Whether ``schedule`` (a model's `LRSchedule`) came from an LRScheduler."""
        return isinstance(schedule.base, _ByName)

    def install(self) -> None:
        """Make ``lr_fn`` the model's learning-rate schedule (once)."""
        current = self.model.fe_dist.lr_schedule
        if current is self.schedule:
            return
        if current is not None:
            raise ConfigError(f"LRScheduler: model {self.model.model_name!r} already has a "
                              f"learning-rate schedule ({current!r}, from fe.build(lr=...) or "
                              "another LRScheduler). Give it one of the two.")
        self.model.fe_dist.lr_schedule = self.schedule


__all__ = ["EarlyStopping", "LRScheduler"]
