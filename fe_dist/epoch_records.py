"""Epoch records: each rank's report of an epoch, the record gathered from every rank's report,
and the files rank 0 writes after each epoch (checkpoint, history, TensorBoard)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterable

import tensorflow as tf

from fe_dist import history, run_state
from fe_dist.distributed import Context
from fe_dist.errors import DistributedError
from fe_dist.helper_models import HelperModel
from fe_dist.network import Network
from fe_dist.schedule import EpochPlan, Plan
from fe_dist.summary import EpochRecord
from fe_dist.trace.runner import Traces


@dataclasses.dataclass
class RankReport:
    """One rank's part of an epoch, gathered from every rank into the epoch's `EpochRecord`.

    Attributes:
        steps: Optimizer steps this rank ran.
        train: This rank's training loss sums, per loss key.
        eval: This rank's eval loss and metric sums, and "count" (samples).
        train_seconds: Wall time of the training part.
        eval_seconds: Wall time of the eval part (0 without eval).
        reduced: (tensors, bytes) this rank handed to gradient collectives in the epoch.
        skipped: Unreadable samples this rank skipped (train and eval).
        timeline: Seconds since fit() began at each point (`EpochRecord.timeline`).
        learning_rates: The scheduled learning rate of each model at the last step.
        noise: The noise scale's moving averages after the epoch (`NoiseScale.get_state`)
            under an `AdaptiveBatch`: the same on every rank by construction, compared anyway
            because the next epoch's batch is decided from them.
    """

    steps: int = 0
    train: dict[str, float] = dataclasses.field(default_factory=dict)
    eval: dict[str, float] = dataclasses.field(default_factory=dict)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    reduced: tuple[int, int] = (0, 0)
    skipped: int = 0
    timeline: dict[str, float] = dataclasses.field(default_factory=dict)
    learning_rates: dict[str, float] = dataclasses.field(default_factory=dict)
    noise: list[float] | None = None


def make_record(entry: EpochPlan, reports: list[RankReport], ctx: Context) -> EpochRecord:
    """The epoch's record from every rank's report (in rank order): losses over all ranks'
    samples, eval metrics over the whole eval set, the slowest rank's times."""
    steps = {r.steps for r in reports}
    if len(steps) != 1:  # impossible by construction; say so loudly rather than mis-report
        raise DistributedError(f"Epoch {entry.epoch}: ranks ran different step counts "
                               f"{[r.steps for r in reports]}.")
    steps = steps.pop()
    if any(r.noise != reports[0].noise for r in reports):
        raise DistributedError(f"Epoch {entry.epoch}: the ranks measured different gradient noise "
                               f"scales {[r.noise for r in reports]}, so they would choose "
                               "different batches. Every rank must run the same program.")
    train = sum_dicts(r.train for r in reports)
    evals = sum_dicts(r.eval for r in reports)
    # fe_dist.fe1 trains the last, partial global batch as one more step (EpochPlan.last_batch).
    samples = steps * entry.global_batch - (
        entry.global_batch - entry.last_batch if entry.last_batch else 0)
    count = evals.pop("count", 0.0)
    seconds = max(r.train_seconds for r in reports)
    tensors, nbytes = reports[ctx.rank].reduced
    return EpochRecord(
        epoch=entry.epoch, global_batch=entry.global_batch,
        per_rank_batch=entry.per_rank_batch, world_size=ctx.size,
        trained_models=entry.trained_models, steps=steps, train_samples=samples,
        train_loss={k: v / samples for k, v in train.items()} if samples else {},
        eval_metrics={k: v / count for k, v in evals.items()} if count else {},
        seconds=seconds, samples_per_sec=samples / seconds if seconds > 0 else 0.0,
        eval_seconds=max(r.eval_seconds for r in reports),
        pipeline_ops=entry.pipeline_train_ops, network_ops=entry.network_train_ops,
        allreduced_tensors_per_step=tensors / steps if steps else 0.0,
        allreduced_bytes_per_step=nbytes / steps if steps else 0.0,
        timeline=reports[0].timeline, learning_rates=reports[0].learning_rates,
        micro_batches=entry.micro_batches, skipped_samples=sum(r.skipped for r in reports))


class EpochOutputs:
    """The files rank 0 writes after each epoch: the checkpoint (the run state), the history
    and TensorBoard scalars; each directory None writes nothing there."""

    def __init__(self, checkpoint_dir: str | os.PathLike | None,
                 history_dir: str | os.PathLike | None,
                 tensorboard_dir: str | os.PathLike | None) -> None:
        self.checkpoint_dir = checkpoint_dir
        self.history_dir = history_dir
        self.tensorboard_dir = tensorboard_dir
        self._tensorboard: history.TensorBoard | None = None

    def write(self, live: run_state.RunState, network: Network, traces: Traces, plan: Plan,
              helpers: list[HelperModel]) -> None:
        """Write the files after the last epoch of ``live`` (the run state, whose variables
        are the models' own)."""
        if self.checkpoint_dir is not None:
            run_state.save(self.checkpoint_dir, run_state.capture(live, network, traces), plan,
                           helpers)
        if self.history_dir is not None:
            history.write(self.history_dir, live.records, plan.signature_epochs)
        if self.tensorboard_dir is not None:
            if self._tensorboard is None:
                self._tensorboard = history.TensorBoard(self.tensorboard_dir)
            self._tensorboard.write(live.records[-1])


def add(outputs: list[dict[str, tf.Tensor]]) -> dict[str, float]:
    """The sums over steps of each key of the steps' outputs."""
    if not outputs:
        return {}
    return {k: float(tf.add_n([o[k] for o in outputs]).numpy()) for k in outputs[0]}


def sum_dicts(dicts: Iterable[dict[str, Any]]) -> dict[str, float]:
    """The sums of each key over ``dicts``."""
    total: dict[str, float] = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0.0) + v
    return total
