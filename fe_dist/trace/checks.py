"""Checks of the traces before training (run by `fe_dist.preflight` on every rank), so a trace
reading a key nobody writes fails in the first seconds, not at the end of the first epoch."""

from __future__ import annotations

from typing import Any, Iterable

from fe_dist.errors import ConfigError
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.schedule import all_values
from fe_dist.trace.runner import Traces


def check_trace_models(traces: Traces, network: Any) -> None:
    """Raise if a trace is given a model (``trace.model``) that the Network does not run."""
    for trace in traces.all:
        model = getattr(trace, "model", None)
        if model is not None and network.models.get(model.model_name) is not model:
            raise ConfigError(
                f"{type(trace).__name__}: model {model.model_name!r} is not in the Network "
                f"(its models: {sorted(network.models)}). Give the trace a model that a ModelOp "
                "of the Network runs.")


def check_trace_keys(traces: Traces, network: Any, epoch: int, mode: str,
                     keys: Iterable[str], metrics: Iterable[str] | None) -> None:
    """Raise if a trace active at ``epoch`` in ``mode`` reads a key nobody produces then
    (``keys``: data and network outputs; or an earlier active trace's outputs, which it sees in
    on_epoch_end; a later trace's output is refused, naming the order), or monitors an epoch
    metric that neither the loss ops (``metrics``: the eval step's losses and loss metrics;
    None in train mode) nor an earlier trace writes."""
    keys = set(keys)
    active = traces.active(epoch, mode)
    for i, (trace, written) in enumerate(zip(active, traces.from_traces(epoch, mode))):
        for key in trace.inputs:
            if key in keys or key in written:  # written: an earlier trace's output
                continue
            later = next((t for t in active[i + 1:] if key in t.outputs), None)
            if later is not None:
                raise ConfigError(
                    f"Epoch {epoch} ({mode}): trace {type(trace).__name__} reads key {key!r}, "
                    f"which the later trace {type(later).__name__} writes: traces run in the "
                    f"order given. Move {type(trace).__name__} after {type(later).__name__} in "
                    "Estimator(traces=[...]).")
            model = _model_writing(network, key)
            if model is not None:
                raise ConfigError(
                    f"Epoch {epoch} ({mode}): trace {type(trace).__name__} reads key {key!r}, "
                    f"which model {model!r}'s ModelOp writes, but that ModelOp is not active at "
                    f"epoch {epoch} in {mode} mode. Schedule the trace with the model (a "
                    "Scheduler with the same epochs), or read the key of the model active then.")
            raise ConfigError(
                f"Epoch {epoch} ({mode}): trace {type(trace).__name__} reads key {key!r}, which "
                f"neither the data nor a network op produces then (keys then: {sorted(keys)}). "
                "Fix the trace's key.")
    if mode == "train":
        # Train-mode traces' values share the "train_" history columns with the train losses.
        losses = {m.fe_dist.loss_name for m in network.trained_models(epoch)}
        for trace in traces.active(epoch, mode):
            clash = sorted(set(trace.outputs) & losses)
            if clash:
                raise ConfigError(
                    f"Epoch {epoch} (train): trace {type(trace).__name__} writes {clash[0]!r}, "
                    "which is already a training loss then. Give the trace another output name "
                    "(e.g. output_name=...).")
    if metrics is None:
        return
    produced = set(metrics)
    for trace in traces.active(epoch, mode):
        clash = sorted(set(trace.outputs) & set(metrics))
        if clash:
            raise ConfigError(
                f"Epoch {epoch} ({mode}): trace {type(trace).__name__} writes {clash[0]!r}, which "
                f"is already a loss or loss metric then. Give the trace another output name "
                "(e.g. output_name=...).")
        monitor = getattr(trace, "monitor", None)
        if monitor is not None and monitor not in produced:
            raise ConfigError(
                f"Epoch {epoch} ({mode}): {type(trace).__name__} monitors {monitor!r}, which no "
                f"loss, loss metric or earlier trace produces in {mode} then (metrics then: "
                f"{sorted(produced)}). Monitor one of those, or put the trace that writes it "
                "before this one.")
        produced.update(trace.outputs)


def _model_writing(network: Any, key: str) -> str | None:
    """The model whose ModelOp writes ``key`` in some epoch or mode, if any."""
    for item in network.ops:
        for op in all_values(item):
            if isinstance(op, ModelOp) and key in op.outputs:
                return op.model.model_name
    return None
