"""Run state: what a rank must hold to continue a run, and the one way it is taken and put back.

The checkpoint (written after every epoch, read by ``fit(resume=True)``), the elastic rollback
(`Context.run_elastic` snapshots at each commit and restores after a failure) and the start-state
broadcast (every rank adopts rank 0's state before training and after an elastic reset) all go
through `RunState`, so what one of them restores the others do too.

A run continues only from an epoch boundary. There every optimizer step has been applied, so the
gradient accumulators (``Estimator(max_rank_batch=...)``) are empty: a state holds none, and
putting one back empties them. Whether a trace stopped the run is the last record's
``stopped_training``, so it travels with the records.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import numpy as np

from fe_dist import checkpoint, helper_models
from fe_dist.build import state_variables
from fe_dist.distributed import Context
from fe_dist.network import Network
from fe_dist.schedule import Plan
from fe_dist.summary import EpochRecord
from fe_dist.trace.runner import Traces


@dataclasses.dataclass
class RunState:
    """What a rank must hold to continue a run after its last finished epoch.

    Attributes:
        records: The records of the epochs trained so far; the next epoch is their count.
        began: The traces' on_begin has run.
        traces: Each trace's state (`Traces.get_state`); None: left as the traces hold it.
        variables: Host copies of each model's variables and its optimizers'
            (`fe_dist.build.state_variables`), by model name; None in the live state, whose
            variables are the models' own.
        noise: The gradient noise scale's moving averages (`NoiseScale.get_state`) under an
            `AdaptiveBatch`, else None; None in the live state, whose averages are the
            network's own. (The batch decisions are in the records.)
    """

    records: list[EpochRecord] = dataclasses.field(default_factory=list)
    began: bool = False
    traces: list[dict[str, Any]] | None = None
    variables: dict[str, list[np.ndarray]] | None = None
    noise: list[float] | None = None

    @property
    def stopped(self) -> bool:
        """A trace (e.g. EarlyStopping) stopped the run after its last epoch."""
        return bool(self.records) and self.records[-1].stopped_training

    @property
    def next_epoch(self) -> int:
        """The epoch to train next."""
        return len(self.records)


def capture(live: RunState, network: Network, traces: Traces) -> RunState:
    """A host copy of this rank's state: ``live``'s records and began, the models' and
    optimizers' variables and the traces' state."""
    return RunState(records=list(live.records), began=live.began, traces=traces.get_state(),
                    noise=network.noise.get_state() if network.noise is not None else None,
                    variables={name: [np.array(v.numpy()) for v in state_variables(model)]
                               for name, model in sorted(network.models.items())})


def restore(saved: RunState, network: Network, traces: Traces) -> RunState:
    """Put ``saved`` back into this rank's models, optimizers and traces and empty the gradient
    accumulators; return the live state to continue from."""
    if saved.variables is not None:
        for name, model in sorted(network.models.items()):
            for var, value in zip(state_variables(model), saved.variables[name]):
                var.assign(value)
    network.clear_accumulators()
    if saved.noise is not None and network.noise is not None:
        network.noise.set_state(saved.noise)
    if saved.traces is not None:
        traces.set_state(saved.traces)
    return RunState(records=list(saved.records), began=saved.began)


def broadcast(ctx: Context, live: RunState, network: Network,
              helpers: list[helper_models.HelperModel], traces: Traces) -> RunState:
    """Give every rank rank 0's state: the models' and optimizers' variables, the weights of
    the models ops hold (``helpers``), the records, began and the traces' state. Every rank
    runs the same collectives, whenever it joined; returns the live state to continue from."""
    if ctx.size == 1:
        return live
    broadcast_weights(ctx, network, helpers)
    records, began, trace_state, noise = ctx.broadcast_object(
        ([dataclasses.asdict(r) for r in live.records], live.began,
         traces.get_state() if traces else None,
         network.noise.get_state() if network.noise is not None else None)
        if ctx.is_chief else None, name="fe.run_state")
    if traces:
        traces.set_state(trace_state)
    if noise is not None:
        network.noise.set_state(noise)
    return RunState(records=[EpochRecord(**r) for r in records], began=began)


def broadcast_weights(ctx: Context, network: Network,
                      helpers: list[helper_models.HelperModel]) -> None:
    """Give every rank rank 0's model and optimizer variables and the weights of the models
    ops hold (``helpers``)."""
    if ctx.size == 1:
        return
    for name, model in sorted(network.models.items()):
        variables = state_variables(model)
        ctx.broadcast_variables(variables, [f"fe.init.{name}.{i}" for i in range(len(variables))])
    # Models the user's ops call themselves: never trained, but each rank may have built its
    # own random weights.
    helper_models.broadcast(ctx, helpers)


def resume(directory: str | os.PathLike, plan: Plan, network: Network,
           helpers: list[helper_models.HelperModel], traces: Traces,
           log: Callable[[str], None],
           follow: Callable[[list[EpochRecord]], Plan] | None = None) -> RunState | None:
    """On rank 0: put the state of the checkpoint in ``directory`` back (the start-state
    broadcast then hands it to every rank) and return it, after checking that ``plan`` trains
    its epochs as it did; None when there is no checkpoint. ``follow`` (an `AdaptiveBatch`
    run) turns the saved records into the plan their batch decisions make, which is then the
    one checked."""
    file = checkpoint.path(directory)
    loaded = checkpoint.load(directory)
    if loaded is None:
        log(f"no checkpoint at {file}; starting at epoch 0")
        return None
    meta, arrays = loaded
    records = [EpochRecord(**r) for r in meta["records"]]
    if follow is not None:
        plan = follow(records)
    checkpoint.check_compatible(meta["plan"], plan, meta["epoch"] + 1, file)
    saved = RunState(records=records,
                     traces=meta.get("traces", []), noise=meta.get("noise"),
                     variables=checkpoint.model_values(network.models, arrays, file))
    checkpoint.restore_helpers(helpers, arrays, file)
    live = restore(saved, network, traces)
    log(f"resuming after epoch {meta['epoch']} from {file}")
    return live


def save(directory: str | os.PathLike, state: RunState, plan: Plan,
         helpers: list[helper_models.HelperModel]) -> None:
    """Write ``state`` (a `capture`) as the checkpoint after its last epoch, with ``plan`` and
    the weights of the models ops hold (``helpers``)."""
    checkpoint.save(directory, state.variables or {}, state.records[-1].epoch, plan,
                    [dataclasses.asdict(r) for r in state.records], helpers, state.traces,
                    state.noise)
