"""`Traces`: the Estimator's traces, resolved per epoch and mode, and their hooks run on every
rank with an agreement at the end of each epoch-level hook."""

from __future__ import annotations

import numbers
from typing import Any, Sequence

import numpy as np

from fe_dist.distributed.context import mark_raised_on_every_rank
from fe_dist.errors import ConfigError, DistributedError
from fe_dist.schedule import BaseScheduler, all_values, get_current_items, scheduled_list
from fe_dist.summary import plain
from fe_dist.trace.adapt import LRScheduler
from fe_dist.trace.trace import BATCH_HOOKS, Data, System, Trace, _failure, _Hook, overrides


class Traces:
    """The traces of an Estimator: each entry a `Trace` or a Scheduler of traces.

    Args:
        items: What ``Estimator(traces=...)`` got.
    """

    def __init__(self,
                 items: Trace | BaseScheduler | Sequence[Trace | BaseScheduler] | None) -> None:
        self.items = scheduled_list(items, Trace, "Estimator traces",
                                    "fe_dist.trace traces (e.g. Accuracy)")
        for item in self.items:
            if isinstance(item, LRScheduler):
                item.install()  # now, before the plan: the model's lr schedule is part of it
            elif any(isinstance(t, LRScheduler) for t in all_values(item)):
                raise ConfigError("An LRScheduler cannot be in a Scheduler: its lr_fn already "
                                  "gives the rate by epoch or step. Give it to traces directly.")
        self.all: list[Trace] = []  # every trace object, once, in order (names collectives)
        for item in self.items:
            for value in all_values(item):
                if not any(value is t for t in self.all):
                    self.all.append(value)
        self._pending: dict[int, tuple[BaseException, str]] = {}  # batch-hook errors

    def __bool__(self) -> bool:
        return bool(self.items)

    def active(self, epoch: int, mode: str) -> list[Trace]:
        """Traces active at ``epoch`` in ``mode``, in order."""
        return get_current_items(self.items, epoch, mode)

    def keep(self, epoch: int, mode: str) -> tuple[str, ...]:
        """Keys the steps of ``epoch`` in ``mode`` return for the traces' on_batch_end: every
        active trace's inputs but those an earlier active trace writes (`from_traces`), which
        no step produces; the reader finds them in its on_epoch_end data."""
        keys = set()
        for trace, written in zip(self.active(epoch, mode), self.from_traces(epoch, mode)):
            keys.update(k for k in trace.inputs if k not in written)
        return tuple(sorted(keys))

    def from_traces(self, epoch: int, mode: str) -> list[set[str]]:
        """For each trace active at ``epoch`` in ``mode``, in order: the keys the traces before
        it write (their ``outputs``), which it may read in on_epoch_end as in FastEstimator
        (a CustomF1Score reading "precision" and "recall")."""
        written: set[str] = set()
        result = []
        for trace in self.active(epoch, mode):
            result.append(set(written))
            written.update(trace.outputs)
        return result

    def signatures(self, epoch: int) -> list[str]:
        """Signatures of the traces active at ``epoch`` (any mode), for the run plan."""
        return [t.signature() for t in get_current_items(self.items, epoch)]

    def attach(self, system: System) -> None:
        """Give every trace the run's `System`."""
        for trace in self.all:
            trace.system = system

    def get_state(self) -> list[dict[str, Any]]:
        """Each trace's `Trace.get_state`, with its signature, for the checkpoint."""
        return [{"trace": t.signature(), "state": plain(t.get_state())} for t in self.all]

    def set_state(self, saved: list[dict[str, Any]] | None) -> None:
        """Give each trace the state saved for the trace with its signature (in order); a
        trace the checkpoint does not know (one added for epochs after it) starts afresh."""
        unmatched = list(self.all)
        for entry in saved or []:
            trace = next((t for t in unmatched if t.signature() == entry["trace"]), None)
            if trace is not None:
                unmatched.remove(trace)
                trace.set_state(entry["state"])

    # -- hooks ------------------------------------------------------------------------------------
    def run_epoch_hook(self, hook: str, traces: list[Trace], data: Data,
                       system: System) -> dict[str, Any]:
        """Run ``hook`` of each of ``traces`` in order, on every rank, each followed by an
        agreement: an exception on any rank (here, or kept from this phase's batch hooks)
        raises on every rank; values written with ``write_with_log`` and ``stop_training``
        must be the same everywhere. Returns what was written with log."""
        for trace in traces:
            batch_hooks = hook == "on_epoch_end" and any(overrides(trace, h) for h in BATCH_HOOKS)
            if overrides(trace, hook) or batch_hooks:
                self._agreed(trace, hook, data, system)
        return dict(data.logged)

    def run_batch_hook(self, hook: str, traces: list[Trace], data: Data) -> None:
        """Run ``hook`` of each of ``traces`` on this rank; an exception is kept and raised on
        every rank at the phase's on_epoch_end (a batch hook runs no collective)."""
        for trace in traces:
            if id(trace) in self._pending or not overrides(trace, hook):
                continue
            try:
                getattr(trace, hook)(data)
            except Exception as err:  # noqa: BLE001 - raised at the agreement of on_epoch_end
                self._pending[id(trace)] = (err, hook)

    def _agreed(self, trace: Trace, hook: str, data: Data, system: System) -> None:
        index = next(i for i, t in enumerate(self.all) if t is trace)
        current = system._hook = _Hook(trace=type(trace).__name__, index=index, name=hook)
        before = dict(data.logged)
        stop_before = system.stop_training
        error, where = self._pending.pop(id(trace), (None, hook))
        try:
            if error is None:
                try:
                    getattr(trace, hook)(data)
                except Exception as err:  # noqa: BLE001 - agreed below
                    error = err
            if current.failure is not None:  # every rank learnt it in a collective already
                raise current.failure
            written = {k: v for k, v in data.logged.items()
                       if k not in before or before[k] is not v}
            if error is not None:
                report = ("error", (type(error).__name__, f"{error} (in {where}, epoch "
                                    f"{system.epoch_idx}, {system.mode})"))
            else:
                report = ("done", (written, system.stop_training))
            gathered = system._ctx.allgather_object(report, name=system._name(current))
            if error is not None:
                raise mark_raised_on_every_rank(error)
            failure = _failure(gathered, current)
            if failure is not None:
                raise failure
            _check_same(gathered, current, stop_before)
        finally:
            system._hook = None


def _check_same(gathered: list[tuple[str, Any]], hook: _Hook, stop_before: bool) -> None:
    """Raise on every rank (each sees the same gathered reports) unless the ranks wrote the
    same values and took the same stop decision."""
    written = [w for _, (w, _) in gathered]
    for key in written[0]:
        values = [w.get(key) for w in written]
        if not all(_same(values[0], v) for v in values[1:]):
            raise mark_raised_on_every_rank(DistributedError(
                f"{hook.trace}.{hook.name} wrote different values of {key!r} on the ranks "
                f"({values}). A logged value must be the same on every rank: combine the ranks' "
                "statistics with system.sum_over_ranks or system.gather first."))
    stops = [s for _, (_, s) in gathered]
    if len(set(stops)) > 1:
        raise mark_raised_on_every_rank(DistributedError(
            f"{hook.trace}.{hook.name} set stop_training differently on the ranks ({stops}); "
            f"every rank must stop after the same epoch (it was {stop_before} before). Decide "
            "from values that are the same on every rank, or broadcast rank 0's decision."))


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))
    except (TypeError, ValueError):
        return bool(a == b)


def record_values(logged: dict[str, Any]) -> dict[str, Any]:
    """What traces wrote, for `EpochRecord.eval_metrics` (or ``train_metrics``): numbers as
    floats, arrays (a confusion matrix, per-class scores) as nested lists."""
    values = {}
    for key, value in logged.items():
        if isinstance(value, numbers.Number) or (np.ndim(value) == 0 and
                                                 np.asarray(value).dtype.kind in "biuf"):
            values[key] = float(value)
        else:
            values[key] = plain(np.asarray(value)) if not isinstance(value, str) else value
    return values
