"""`Scheduler`: a value that changes at given epochs."""

from __future__ import annotations

import warnings
from typing import Any, Generic, Iterable, TypeVar

from fe_dist.errors import ConfigError

T = TypeVar("T")


class BaseScheduler(Generic[T]):
    """A value that depends on the epoch. Subclasses define `get_current_value`.

    Attributes:
        first_epoch: The number its own ``get_current_value`` gives the run's first epoch: 0
            for fe_dist's schedulers, 1 for FastEstimator 1.x's (`fe_dist.fe1.schedule`). The
            engine counts epochs from 0 and reads every scheduler through `value_at`, so both
            kinds mean what their authors wrote; a program mixing them is refused
            (`check_numbering`).
    """

    first_epoch: int = 0

    def value_at(self, run_epoch: int) -> T | None:
        """The value at the run's epoch ``run_epoch`` (counted from 0, as the engine counts)."""
        return self.get_current_value(run_epoch + self.first_epoch)

    def run_values(self) -> list[T]:
        """Every value the run may use (None left out)."""
        return [v for v in self.get_all_values() if v is not None]

    def get_current_value(self, epoch: int) -> T | None:
        """The value in force at ``epoch`` (None switches a scheduled op off)."""
        raise NotImplementedError

    def get_all_values(self) -> list[T]:
        """Every value that is not None."""
        raise NotImplementedError


class Scheduler(BaseScheduler[T]):
    """A value that changes by epoch.

    The value given for key ``k`` holds from epoch ``k`` until the next key. Epochs count from 0.
    Before the first key the value is None, and a None value switches a scheduled op off.

    Args:
        epoch_dict: ``{epoch: value}`` with non-negative int epochs and at least one value that is
            not None.

    Examples:
        >>> bs = Scheduler({0: 32, 2: 64})
        >>> [bs.get_current_value(e) for e in range(4)]
        [32, 32, 64, 64]
    """

    def __init__(self, epoch_dict: dict[int, T | None]) -> None:
        if not isinstance(epoch_dict, dict) or not epoch_dict:
            raise ConfigError(
                f"Scheduler needs a non-empty dict {{epoch: value}}, got {epoch_dict!r}. "
                "Example: Scheduler({0: 32, 2: 64}).")
        for key in epoch_dict:
            if isinstance(key, bool) or not isinstance(key, int) or key < 0:
                raise ConfigError(
                    f"Scheduler key {key!r} is not an epoch: keys must be non-negative ints "
                    f"(epochs count from 0). Got keys {list(epoch_dict)}.")
        if all(value is None for value in epoch_dict.values()):
            raise ConfigError(
                f"Scheduler {epoch_dict!r} has only None values, so it never does anything. "
                "Give at least one epoch a value, or remove the Scheduler.")
        self.epoch_dict: dict[int, T | None] = dict(sorted(epoch_dict.items()))
        self.keys: list[int] = list(self.epoch_dict)

    def get_current_value(self, epoch: int) -> T | None:
        """The value in force at ``epoch`` (None before the first key)."""
        current = None
        for key, value in self.epoch_dict.items():
            if key > epoch:
                break
            current = value
        return current

    def get_all_values(self) -> list[T]:
        """Every value that is not None, in key order."""
        return [v for v in self.epoch_dict.values() if v is not None]

    def __repr__(self) -> str:
        return f"Scheduler({self.epoch_dict!r})"


class EpochScheduler(Scheduler[T]):
    """FastEstimator 1.x's name for `Scheduler`: a value that changes at given epochs.

    Same semantics as `Scheduler`, so a FastEstimator program keeps its ``EpochScheduler``.
    One difference from FastEstimator 1.x: epochs count from **0** here (FastEstimator 1.x
    counts from 1). ``EpochScheduler({1: a, 3: b})`` in FastEstimator starts ``a`` in the first
    epoch; here it starts ``a`` in the second epoch (epoch 1), and epoch 0 has no value (None:
    a scheduled op is off). Subtract 1 from each key when porting a FastEstimator 1.x program.

    Examples:
        >>> bs = EpochScheduler({0: 32, 2: 64})
        >>> [bs.get_current_value(e) for e in range(4)]
        [32, 32, 64, 64]
    """

    def __init__(self, epoch_dict: dict[int, T | None]) -> None:
        super().__init__(epoch_dict)
        if self.keys[0] == 1:
            # The likeliest cause is a FastEstimator 1.x program ported as is: its first epoch
            # is 1, so here epoch 0 would silently run without the value.
            warnings.warn(f"EpochScheduler({self.epoch_dict!r}) starts at epoch 1: fe_dist counts "
                          "epochs from 0, so epoch 0 has no value (an op is off, a batch size is "
                          "missing). FastEstimator 1.x counts from 1: subtract 1 from each key, "
                          "or import fe_dist.fe1 for the whole program (its EpochScheduler "
                          "counts from 1).", stacklevel=2)

    def __repr__(self) -> str:
        return f"EpochScheduler({self.epoch_dict!r})"


class RepeatScheduler(BaseScheduler[T]):
    """A list of values that repeats by epoch: epoch e takes ``repeat_list[e % len]``.

    Args:
        repeat_list: The values of one cycle; None switches a scheduled op off for that epoch.

    Examples:
        >>> s = RepeatScheduler([32, 64])
        >>> [s.get_current_value(e) for e in range(5)]
        [32, 64, 32, 64, 32]
    """

    def __init__(self, repeat_list: list[T | None]) -> None:
        if not isinstance(repeat_list, (list, tuple)) or not repeat_list:
            raise ConfigError(f"RepeatScheduler needs a non-empty list of values, got "
                              f"{repeat_list!r}. Example: RepeatScheduler([32, 64]).")
        if all(value is None for value in repeat_list):
            raise ConfigError(f"RepeatScheduler {list(repeat_list)!r} has only None values, so it "
                              "never does anything. Give at least one value.")
        self.repeat_list: list[T | None] = list(repeat_list)

    def get_current_value(self, epoch: int) -> T | None:
        return self.repeat_list[epoch % len(self.repeat_list)]

    def get_all_values(self) -> list[T]:
        return [v for v in self.repeat_list if v is not None]

    def __repr__(self) -> str:
        return f"RepeatScheduler({self.repeat_list!r})"


def all_values(item: Any) -> list[Any]:
    """Every value ``item`` takes: a scheduler's values (None left out), or the item itself."""
    return item.run_values() if isinstance(item, BaseScheduler) else [item]


def scheduled_list(items: Any, kind: type, owner: str, example: str) -> list[Any]:
    """``items`` (ops or traces) as a list, each a ``kind`` or a Scheduler of them; one item
    alone is a list of one, as FastEstimator takes it (``ops=Minmax(...)``). Otherwise a
    ConfigError naming the entry, e.g. "Pipeline ops[1] is 3, not an Op"."""
    items = [items] if isinstance(items, (kind, BaseScheduler)) else list(items or [])
    for i, item in enumerate(items):
        for value in all_values(item):
            if not isinstance(value, kind):
                raise ConfigError(f"{owner}[{i}] is {value!r}, not {_article(kind.__name__)}. "
                                  f"Give {example} or Schedulers of them.")
    return items


def _article(noun: str) -> str:
    return f"{'an' if noun[0] in 'AEIOU' else 'a'} {noun}"


def resolve(item: Any, epoch: int) -> Any:
    """The value of ``item`` at the run's ``epoch`` (from 0): a scheduler's value then
    (`BaseScheduler.value_at`), or the item itself."""
    return item.value_at(epoch) if isinstance(item, BaseScheduler) else item


def get_current_items(items: Iterable[Any], epoch: int, mode: str | None = None) -> list[Any]:
    """The items active at ``epoch``: Schedulers resolved, None dropped, and (when ``mode`` is
    given) items whose own ``mode`` excludes it dropped."""
    active = []
    for item in items:
        value = resolve(item, epoch)
        if value is None:
            continue
        if mode is not None and not _mode_matches(getattr(value, "mode", None), mode):
            continue
        active.append(value)
    return active


def _mode_matches(op_mode: str | Iterable[str] | None, mode: str) -> bool:
    if op_mode is None:
        return True
    if isinstance(op_mode, str):
        return op_mode[1:] != mode if op_mode.startswith("!") else op_mode == mode
    return mode in op_mode


def get_signature_epochs(items: Iterable[Any], total_epochs: int) -> list[int]:
    """Epochs below ``total_epochs`` at which any of ``items`` changes value: 0, and every epoch
    whose value differs from the epoch before. Between two signature epochs nothing scheduled
    changes."""
    schedulers = [item for item in items if isinstance(item, BaseScheduler)]
    epochs = [0]
    for epoch in range(1, total_epochs):
        if any(_changed(s.value_at(epoch - 1), s.value_at(epoch))
               for s in schedulers):
            epochs.append(epoch)
    return epochs


def check_numbering(items: dict[str, Any], first_epoch: int, program: str, fix: str) -> None:
    """Refuse a program whose schedulers count epochs differently: every `BaseScheduler` among
    ``items`` ({description: item}; dict and list values are searched) must count from
    ``first_epoch``. A ConfigError names the first that does not, e.g. a 0-based
    ``Scheduler`` in a FastEstimator 1.x Pipeline, where ``{1: a}`` would mean another epoch."""
    for where, item in items.items():
        found = _schedulers(item)
        for scheduler in found:
            if scheduler.first_epoch != first_epoch:
                raise ConfigError(
                    f"{where}: {scheduler!r} counts epochs from {scheduler.first_epoch}, but "
                    f"this is {program}, which counts from {first_epoch}. The two numberings "
                    f"do not mix. {fix}")


def _schedulers(item: Any) -> list[BaseScheduler]:
    if isinstance(item, BaseScheduler):
        inner = getattr(item, "specs", None)  # fe.build's optimizer schedule wraps the user's
        return [inner] if isinstance(inner, BaseScheduler) else [item]
    if isinstance(item, dict):
        return [s for v in item.values() for s in _schedulers(v)]
    if isinstance(item, (list, tuple)):
        return [s for v in item for s in _schedulers(v)]
    return []


def _changed(before: Any, after: Any) -> bool:
    if before is after:
        return False
    try:
        return bool(before != after)
    except (TypeError, ValueError):  # values whose comparison is not a plain bool
        return True
