"""`AdaptiveBatch`: a global batch size the run chooses, epoch by epoch, from the gradient noise
scale it measures (`fe_dist.noise_scale`).

The largest batch that still trains efficiently (the "critical batch") is about the gradient
noise scale ``B_noise = tr(Σ) / |G|²``, which grows as training proceeds (McCandlish et al.
2018). At each epoch end the run takes the size on its ladder nearest to ``target × B_noise``,
never shrinking by more than ``max_shrink`` at once, within ``[minimum, maximum]``. The estimate
comes from reduced values only, so every rank takes the same decision by construction; the
per-rank batches and micro-batches are rebuilt as at any schedule change.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from fe_dist.errors import ConfigError
from fe_dist.schedule.scheduler import BaseScheduler

LR_RULES = (None, "linear", "adascale")


class AdaptiveBatch(BaseScheduler[int]):
    """A global batch size chosen at each epoch end from the measured gradient noise scale.

    Use it wherever a batch `Scheduler` goes: ``Pipeline(batch_size=AdaptiveBatch(32, 1024))``
    (or as the "train" entry of a per-mode dict).

    Args:
        initial: The first epoch's global batch.
        maximum: The largest global batch it may choose.
        minimum: The smallest (default: ``initial``).
        target: Aim at ``target × B_noise`` (1.0: the critical batch itself).
        max_shrink: Never shrink by more than this factor at one epoch end.
        smoothing: Decay per optimizer step of the moving averages of ``|G|²`` and ``tr(Σ)``.
        lr_rule: How the learning rate follows the batch: None (it does not), "linear" (the
            rate times ``batch / initial``, Goyal et al.), or "adascale" (times AdaScale's gain
            ratio ``(B_noise/initial + 1) / (B_noise/batch + 1)``, between 1 and
            ``batch / initial``; Johnson et al. 2020). It multiplies the model's own rate or its
            `LRSchedule`/`LRScheduler` value (warm-up included).

    The sizes it chooses from are ``initial × 2**k`` (k may be negative) within
    ``[minimum, maximum]``, so only a few distinct steps are ever compiled.
    """

    def __init__(self, initial: int, maximum: int, minimum: int | None = None,
                 target: float = 1.0, max_shrink: float = 2.0, smoothing: float = 0.95,
                 lr_rule: str | None = None) -> None:
        minimum = initial if minimum is None else minimum
        for name, value in (("initial", initial), ("maximum", maximum), ("minimum", minimum)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ConfigError(f"AdaptiveBatch: {name} must be a positive int (a global batch "
                                  f"size), got {value!r}.")
        if maximum < initial:
            raise ConfigError(f"AdaptiveBatch: maximum={maximum} is smaller than "
                              f"initial={initial}. Give a maximum of at least the initial batch.")
        if minimum > initial:
            raise ConfigError(f"AdaptiveBatch: minimum={minimum} is larger than "
                              f"initial={initial}. Give a minimum of at most the initial batch.")
        if not (isinstance(target, numbers.Real) and target > 0):
            raise ConfigError(f"AdaptiveBatch: target must be a positive number, got {target!r}.")
        if not (isinstance(max_shrink, numbers.Real) and max_shrink >= 1):
            raise ConfigError(f"AdaptiveBatch: max_shrink must be a number >= 1 (1: never "
                              f"shrink), got {max_shrink!r}.")
        if not (isinstance(smoothing, numbers.Real) and 0 <= smoothing < 1):
            raise ConfigError(f"AdaptiveBatch: smoothing must be in [0, 1), got {smoothing!r}.")
        if lr_rule not in LR_RULES:
            raise ConfigError(f"AdaptiveBatch: lr_rule must be one of {list(LR_RULES)}, got "
                              f"{lr_rule!r}.")
        self.initial, self.maximum, self.minimum = int(initial), int(maximum), int(minimum)
        self.target, self.max_shrink = float(target), float(max_shrink)
        self.smoothing, self.lr_rule = float(smoothing), lr_rule
        self.sizes = _ladder(self.initial, self.minimum, self.maximum)
        self.decisions: dict[int, int] = {}  # epoch -> the batch decided for it (from epoch 1)
        self.noise_scales: dict[int, float | None] = {}  # epoch -> B_noise at its end

    def get_current_value(self, epoch: int) -> int:
        """The batch of ``epoch``: decided, or (for epochs not decided yet) the latest decision."""
        decided = [e for e in self.decisions if e <= epoch]
        return self.decisions[max(decided)] if decided else self.initial

    def get_all_values(self) -> list[int]:
        """Every size it may choose."""
        return list(self.sizes)

    def config(self) -> dict[str, Any]:
        """Its settings, for the plan every rank agrees on."""
        return {"initial": self.initial, "maximum": self.maximum, "minimum": self.minimum,
                "target": self.target, "max_shrink": self.max_shrink,
                "smoothing": self.smoothing, "lr_rule": self.lr_rule}

    def decide(self, epoch: int, noise_scale: float | None) -> int:
        """Record the noise scale measured by the end of ``epoch`` and choose epoch + 1's batch:
        the size nearest (in ratio) to ``target × noise_scale``, at least the current batch /
        ``max_shrink``; the current batch while there is no estimate."""
        current = self.get_current_value(epoch)
        self.noise_scales[epoch] = noise_scale
        if noise_scale is None or not math.isfinite(noise_scale) or noise_scale <= 0:
            chosen = current
        else:
            goal = self.target * noise_scale
            floor = current / self.max_shrink
            allowed = [s for s in self.sizes if s >= floor - 1e-9] or [self.sizes[-1]]
            chosen = min(allowed, key=lambda s: (abs(math.log(s / goal)), s))
        self.decisions[epoch + 1] = chosen
        return chosen

    def lr_factor(self, epoch: int) -> float:
        """The learning-rate multiplier of ``epoch`` under ``lr_rule`` (1.0 without one)."""
        batch = self.get_current_value(epoch)
        if self.lr_rule == "linear":
            return batch / self.initial
        if self.lr_rule == "adascale":
            noise = self.noise_scales.get(epoch - 1)
            if noise is None or noise <= 0:
                return 1.0
            return (noise / self.initial + 1.0) / (noise / batch + 1.0)
        return 1.0

    def take_decisions(self, decisions: dict[int, int]) -> None:
        """Hold ``decisions`` (epoch -> batch) and forget every measurement: the run rebuilds
        them from its records (a resume, a rollback, a joining rank) or starts anew (empty)."""
        self.decisions = {int(k): int(v) for k, v in decisions.items()}
        self.noise_scales = {}

    def __repr__(self) -> str:
        return f"AdaptiveBatch({', '.join(f'{k}={v!r}' for k, v in self.config().items())})"


def _ladder(initial: int, minimum: int, maximum: int) -> list[int]:
    """``initial × 2**k`` within [minimum, maximum], ascending."""
    sizes = {initial}
    size = initial
    while size * 2 <= maximum:
        size *= 2
        sizes.add(size)
    size = initial
    while size % 2 == 0 and size // 2 >= minimum:
        size //= 2
        sizes.add(size)
    return sorted(sizes)
