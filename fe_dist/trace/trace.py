"""`Trace`: FastEstimator's hooks into the epoch loop, run on every rank.

A trace sees this rank's shard of each batch (``on_batch_end``) and combines what it needs across
ranks at the end of the epoch through the small collectives of `System` (``sum_over_ranks``,
``gather``, ``broadcast``). Every epoch-level hook ends in an agreement: an exception on one rank
raises on every rank, and the values written with ``write_with_log`` and the stop decision are
checked to be the same everywhere.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Sequence

import numpy as np

from fe_dist.distributed import Context
from fe_dist.distributed.context import mark_raised_on_every_rank
from fe_dist.errors import ConfigError, DistributedError
from fe_dist.op.op import Described, set_keys

# Hooks that may call the collective helpers; each ends in an agreement of every rank.
EPOCH_HOOKS = ("on_begin", "on_epoch_begin", "on_epoch_end", "on_end")
BATCH_HOOKS = ("on_batch_begin", "on_batch_end")


class Data(dict):
    """The keys a hook sees, as in FastEstimator.

    In ``on_batch_end``: this rank's numpy values of the keys the active traces list in
    ``inputs`` (its own shard of the global batch), but not the keys earlier traces write. In
    ``on_epoch_end``: the epoch's metrics so far (eval losses and loss metrics over the whole
    eval set, and what earlier traces of the mode wrote).
    """

    def __init__(self, values: dict[str, Any] | None = None) -> None:
        super().__init__(values or {})
        self.logged: dict[str, Any] = {}

    def write_with_log(self, key: str, value: Any) -> None:
        """Put ``value`` in the epoch's record (``EpochRecord.eval_metrics``, or
        ``train_metrics`` in train mode; an array as nested lists) and in ``data`` for later
        traces. It must be the same on every rank (checked at
        the end of the hook)."""
        self[key] = value
        self.logged[key] = value

    def write_without_log(self, key: str, value: Any) -> None:
        """Put ``value`` in ``data`` for later traces only."""
        self[key] = value


@dataclasses.dataclass
class _Hook:
    """The hook running now: names its collectives, in call order."""

    trace: str
    index: int
    name: str
    calls: int = 0
    failure: BaseException | None = None  # a collective already told every rank of a failure


class System:
    """The run as a trace sees it (``trace.system``), and collectives for trace authors.

    Attributes:
        epoch_idx: The epoch, counted from ``first_epoch``: 0 (fe_dist), or 1 in a
            FastEstimator 1.x program (`fe_dist.fe1`).
        global_step: Optimizer steps completed since the run began (on_batch_end of the run's
            first step sees 1, as FastEstimator's step counting from 1). Under `fe_dist.fe1`
            on_batch_begin sees the step about to run (1 for the first), as in FastEstimator.
        batch_idx: The batch within the epoch and mode, from ``first_epoch`` (FastEstimator
            1.x: from 1), set before each batch's hooks.
        first_epoch: 0, or 1 under `fe_dist.fe1`.
        total_epochs: The epochs the Estimator was asked for (FastEstimator's name).
        num_devices: The number of ranks (FastEstimator's name for the devices training).
        mode: "train", "eval" or "test".
        rank, world_size, is_chief: This process's rank, the number of ranks, rank == 0.
        stop_training: Set True in an eval ``on_epoch_end`` to stop after this epoch; it must be
            the same on every rank (checked).
        stop_reason: Why, in words; rank 0 prints it after the epoch's line.
    """

    def __init__(self, ctx: Context, first_epoch: int = 0, total_epochs: int = 0) -> None:
        self._ctx = ctx
        self.first_epoch = first_epoch
        self.total_epochs = total_epochs
        self.num_devices = ctx.size
        self.epoch_idx = first_epoch
        self.global_step = 0
        self.batch_idx = first_epoch
        self.mode = "train"
        self.rank = ctx.rank
        self.world_size = ctx.size
        self.is_chief = ctx.is_chief
        self.stop_training = False
        self.stop_reason = ""
        self._hook: _Hook | None = None

    def unwatched(self, what: str) -> Any:
        """A context manager that pauses the stall watchdog on this rank while a slow local
        task runs (rank 0 writing a large model file, say), as fe_dist does for checkpoints;
        the other ranks wait for it in the hook's closing agreement."""
        return self._ctx.unwatched(what)

    # -- collectives for trace authors ----------------------------------------------------------
    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank. Call it from an
        epoch-level hook, the same number of times on every rank."""
        return self._exchange(obj)

    def sum_over_ranks(self, array: Any) -> np.ndarray:
        """The element-wise sum over ranks of ``array`` (same shape on every rank), summed in
        rank order so every rank gets the same bits."""
        values = self._exchange(np.asarray(array))
        shapes = {v.shape for v in values}
        if len(shapes) != 1:
            raise DistributedError(f"{self._hook.trace}: sum_over_ranks got arrays of different "
                                   f"shapes on the ranks: {[v.shape for v in values]}.")
        total = values[0].copy()
        for value in values[1:]:
            total = total + value
        return total

    def broadcast(self, obj: Any, root: int = 0) -> Any:
        """Rank ``root``'s ``obj`` on every rank."""
        return self._exchange(obj if self.rank == root else None)[root]

    def _exchange(self, payload: Any) -> list[Any]:
        hook = self._hook
        if hook is None:
            raise ConfigError("Trace collectives (system.gather, sum_over_ranks, broadcast) can "
                              f"only be called from {', '.join(EPOCH_HOOKS)}: every rank runs "
                              "those together. Accumulate in on_batch_end and combine at "
                              "on_epoch_end.")
        if hook.failure is not None:  # the other ranks have left this hook already
            raise hook.failure
        gathered = self._ctx.allgather_object(("value", payload), name=self._name(hook))
        failure = _failure(gathered, hook)
        if failure is not None:
            hook.failure = failure
            raise failure
        return [p for _, p in gathered]

    def _name(self, hook: _Hook) -> str:
        name = f"fe.trace.{hook.index}.{hook.name}.{hook.calls}"
        hook.calls += 1
        return name


def _failure(gathered: list[tuple[str, Any]], hook: _Hook) -> BaseException | None:
    """The error every rank raises when a collective of a hook finds another rank elsewhere: it
    failed (it reports its error), or it finished the hook with fewer collectives."""
    for rank, (tag, payload) in enumerate(gathered):
        if tag == "error":
            kind, message = payload
            cls = ConfigError if kind == ConfigError.__name__ else DistributedError
            return mark_raised_on_every_rank(
                cls(f"[rank {rank} failed in {hook.trace}.{hook.name}] {kind}: {message}"))
    tags = {tag for tag, _ in gathered}
    if len(tags) > 1:
        calls = ["more" if tag == "value" else "fewer" for tag, _ in gathered]
        return mark_raised_on_every_rank(DistributedError(
            f"{hook.trace}.{hook.name} called the trace collectives a different number of times "
            f"on the ranks (per rank: {calls}). Call system.gather / sum_over_ranks / broadcast "
            "the same number of times on every rank."))
    return None


class Trace(Described):
    """Code that runs at points of the epoch loop, on every rank (FastEstimator's Trace).

    Hooks, each given a `Data`: ``on_begin`` (start of fit/test), ``on_epoch_begin``,
    ``on_batch_begin``, ``on_batch_end`` (this rank's shard of the batch: numpy values of the
    keys in ``inputs``), ``on_epoch_end``, ``on_end``. Epoch-level hooks run on every rank
    together and may combine values across ranks with ``self.system``'s collectives; batch hooks
    run on this rank alone (an exception there is raised on every rank at the epoch's end).

    The constructor arguments are recorded (as for ops), so the trace is part of the run plan:
    ranks holding other traces fail before training. Override `get_state`/`set_state` to keep
    state in checkpoints.

    Args:
        inputs: Keys read in ``on_batch_end`` (data or network outputs of that mode), or in
            ``on_epoch_end`` (outputs of earlier traces of that mode, as FastEstimator's
            trace communication; not in ``on_batch_end``'s data).
        outputs: Keys written with ``write_with_log``.
        mode: "train", "eval", "test", a list of them, "!train" (every mode but train) or None
            for every mode.
    """

    system: System

    def __init__(self, inputs: str | Sequence[str] | None = None,
                 outputs: str | Sequence[str] | None = None,
                 mode: str | Iterable[str] | None = None) -> None:
        set_keys(self, inputs, outputs, mode)

    def on_begin(self, data: Data) -> None:
        """Start of fit() (or test()), on every rank."""

    def on_epoch_begin(self, data: Data) -> None:
        """Start of each epoch's phase of ``system.mode``, on every rank."""

    def on_batch_begin(self, data: Data) -> None:
        """Before each step, on every rank (no batch keys yet)."""

    def on_batch_end(self, data: Data) -> None:
        """After each step, on every rank, with this rank's shard of the batch."""

    def on_epoch_end(self, data: Data) -> None:
        """End of each epoch's phase of ``system.mode``, on every rank; in eval and test with
        the metrics over the whole set."""

    def on_end(self, data: Data) -> None:
        """End of fit() (or test()), on every rank."""

    def get_state(self) -> dict[str, Any]:
        """What to keep in checkpoints (JSON-ready: numbers, strings, lists, dicts)."""
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what `get_state` returned (on every rank, at fit(resume=True))."""


def overrides(trace: Trace, hook: str) -> bool:
    """Whether ``trace``'s class defines ``hook`` (else it is skipped, with no agreement)."""
    return getattr(type(trace), hook) is not getattr(Trace, hook)
