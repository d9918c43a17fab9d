"""Learning-rate functions of FastEstimator 1.x (times counted from 1)."""

from __future__ import annotations

import math

from fe_dist.errors import ConfigError


def cosine_decay(time: int, cycle_length: int, init_lr: float, min_lr: float = 1e-6,
                 start: int = 1, cycle_multiplier: int = 1, warmup: bool = False) -> float:
    """Cosine decay with restarts (SGDR), FastEstimator 1.x's ``cosine_decay``.

    Before ``start`` the rate is ``init_lr`` (or rises linearly from 0 with ``warmup``). From
    ``start`` on, each cycle runs half a cosine from ``init_lr`` at its first time down to
    ``min_lr`` at its last; the next cycle is ``cycle_multiplier`` times as long.

    Args:
        time: The step or epoch, from 1 (`LRScheduler` gives FastEstimator's numbering).
        cycle_length: Length of the first cycle.
        init_lr: The rate at the start of each cycle.
        min_lr: The rate at the end of each cycle.
        start: The time the first cycle starts.
        cycle_multiplier: Growth of the cycle length per cycle (an int >= 1).
        warmup: Rise linearly from 0 to ``init_lr`` before ``start``.

    Examples:
        >>> cosine_decay(5, cycle_length=10, init_lr=0.01, min_lr=0.0)
        0.005
    """
    if time < start:
        return init_lr * time / start if warmup else init_lr
    if cycle_multiplier < 1:
        raise ConfigError(f"cosine_decay: cycle_multiplier must be at least 1, got "
                          f"{cycle_multiplier!r}.")
    elapsed = time - start + 1  # the first time of the schedule is 1 into its first cycle
    if cycle_multiplier == 1:
        cycle = math.ceil(elapsed / cycle_length) - 1
        before = cycle * cycle_length
    else:
        # Cycles 0..k-1 span cycle_length * (m^k - 1) / (m - 1): solve for the cycle holding
        # ``elapsed``.
        cycle = math.ceil(math.log(elapsed * (cycle_multiplier - 1) / cycle_length + 1)
                          / math.log(cycle_multiplier)) - 1
        before = cycle_length * (cycle_multiplier ** cycle - 1) / (cycle_multiplier - 1)
    length = cycle_length * cycle_multiplier ** cycle
    fraction = (elapsed - before) / length
    return (init_lr - min_lr) / 2 * math.cos(fraction * math.pi) + (init_lr + min_lr) / 2
