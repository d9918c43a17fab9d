"""`EpochRecord` and `Summary`: what `Estimator.fit` returns, the same on every rank."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import numpy as np


@dataclasses.dataclass
class EpochRecord:
    """One epoch of a run.

    Attributes:
        epoch: Epoch number, from 0.
        global_batch: Samples per optimizer step over all ranks.
        per_rank_batch: Each rank's share of the global batch, in rank order.
        world_size: Number of ranks.
        trained_models: Names of the models updated this epoch.
        steps: Optimizer steps (the same on every rank).
        train_samples: Samples trained on over all ranks (steps × global batch).
        train_loss: Mean per-sample training loss, per loss key, over all ranks.
        eval_metrics: Eval loss(es) and metrics over the whole eval set: numbers, and the
            arrays traces write (a confusion matrix, per-class scores) as nested lists.
        seconds: Wall time of the training part of the epoch (slowest rank).
        samples_per_sec: train_samples / seconds.
        eval_seconds: Wall time of the eval part (slowest rank).
        pipeline_ops: Signatures of the train pipeline ops active this epoch.
        network_ops: Signatures of the train network ops active this epoch.
        allreduced_tensors_per_step: Gradient tensors each rank allreduced per step.
        allreduced_bytes_per_step: Gradient bytes each rank allreduced per step.
        timeline: Rank 0's seconds since fit() began at: train_start, first_step_end (after the
            first step has finished), train_end, eval_end.
        learning_rates: The learning rate of each model with an `LRSchedule` at the epoch's
            last step.
        micro_batches: Micro-batches accumulated per optimizer step (1: no accumulation), on the
            rank with the most samples.
        skipped_samples: Unreadable samples skipped over all ranks (train and eval), with a
            source's ``skip_bad=True``; the steps still ran on every rank.
        stopped_training: A trace (e.g. EarlyStopping) stopped training after this epoch; a
            resumed run then trains no further.
        train_metrics: What train-mode traces wrote with ``write_with_log`` (e.g.
            ``Accuracy(..., mode="train")``), kept apart from ``eval_metrics`` as in
            FastEstimator, so one key may have a train and an eval value.
        noise_scale: With an `AdaptiveBatch`: the trained models' gradient noise scale
            ``B_noise`` as smoothed by the end of this epoch (None while there is no estimate),
            from which the next epoch's global batch was chosen.
    """

    epoch: int
    global_batch: int
    per_rank_batch: list[int]
    world_size: int
    trained_models: list[str]
    steps: int
    train_samples: int
    train_loss: dict[str, float]
    eval_metrics: dict[str, Any]
    seconds: float
    samples_per_sec: float
    eval_seconds: float
    pipeline_ops: list[str]
    network_ops: list[str]
    allreduced_tensors_per_step: float
    allreduced_bytes_per_step: float
    timeline: dict[str, float]
    learning_rates: dict[str, float] = dataclasses.field(default_factory=dict)
    micro_batches: int = 1
    skipped_samples: int = 0
    stopped_training: bool = False
    # Last, with a default: records saved before it existed still load.
    train_metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    noise_scale: float | None = None

    def log_line(self, first_epoch: int = 0) -> str:
        """The console line for this epoch, numbered from ``first_epoch`` (1 under
        `fe_dist.fe1`, as FastEstimator 1.x numbers epochs; the record keeps 0-based)."""
        per_rank = "/".join(str(b) for b in sorted(set(self.per_rank_batch), reverse=True))
        losses = " ".join(f"{k}={v:.4f}" for k, v in self.train_loss.items())
        # Arrays (a confusion matrix from a trace) are in the record and history.json, not here.
        evals = " ".join(f"{k}={v:.4f}" for k, v in self.eval_metrics.items()
                         if isinstance(v, float))
        trained = " ".join(f"{k}={v:.4f}" for k, v in self.train_metrics.items()
                           if isinstance(v, float))
        trained = f" | train {trained}" if trained else ""
        models = ",".join(self.trained_models) or "-"
        accumulation = f" in {self.micro_batches} micro-batches" if self.micro_batches > 1 else ""
        return (f"epoch {self.epoch + first_epoch}: train {models} | batch {self.global_batch} "
                f"global, "
                f"{per_rank} per rank{accumulation} x {self.world_size} | {self.steps} steps | "
                f"loss {losses or '-'}{trained} | eval {evals or '-'} | {self.seconds:.2f} s, "
                f"{self.samples_per_sec:.0f} samples/s{_noise(self.noise_scale)}")


def _noise(noise_scale: float | None) -> str:
    return "" if noise_scale is None else f" | B_noise {noise_scale:.1f}"


@dataclasses.dataclass
class Summary:
    """The records of a run, one per epoch, and what the run was."""

    records: list[EpochRecord]
    backend: str
    world_size: int
    signature_epochs: list[int]
    total_seconds: float
    trace_count: int

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready)."""
        return dataclasses.asdict(self)

    def to_json(self, path: str | None = None) -> str:
        """The summary as JSON; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            with open(path, "w") as f:
                f.write(text)
        return text

    def __getitem__(self, epoch: int) -> EpochRecord:
        return self.records[epoch]

    def __len__(self) -> int:
        return len(self.records)


def schedule_table(plan: Any, first_epoch: int = 0) -> str:
    """One row per signature epoch: batch, per-rank batch, ops, trained models, eval; epochs
    numbered from ``first_epoch``."""
    traces = any(e.traces for e in plan.epochs)  # a column only when the run has traces
    rows = [("epochs", "global batch", "per rank", "pipeline ops", "network ops", "trains",
             "eval", *(["traces"] if traces else []))]
    bounds = [*plan.signature_epochs, len(plan.epochs)]
    for start, stop in zip(bounds, bounds[1:]):
        e = plan.epochs[start]
        rows.append((
            f"{start + first_epoch}" if stop - start == 1 else
            f"{start + first_epoch}-{stop - 1 + first_epoch}",
            str(e.global_batch), "/".join(str(b) for b in sorted(set(e.per_rank_batch),
                                                                   reverse=True)),
            ", ".join(_short(op) for op in e.pipeline_train_ops) or "-",
            ", ".join(_short(op) for op in e.network_train_ops) or "-",
            ", ".join(f"{m} ({o.split('#')[0]})" for m, o in e.optimizers.items()) or "-",
            "yes" if e.evaluate else "no",
            *([", ".join(t.split("(", 1)[0] for t in e.traces) or "-"] if traces else [])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _short(signature: str) -> str:
    """'Resize(inputs=('x',), ..., size=(30, 30), ...)' -> 'Resize[(30, 30)]' style names;
    a ModelOp by its model's name: 'ModelOp[model1]'."""
    name = signature.split("(", 1)[0]
    if "numpy_op=" in signature or "numpy_ops=" in signature:  # Sometimes, OneOf: what they wrap
        inner = signature.split("numpy_op", 1)[1]
        wrapped = "|".join(re.findall(r"(?:=|\(|, )([A-Z]\w*)\(inputs=", inner))
        prob = re.search(r"prob=([0-9.e-]+)\)$", signature)
        return f"{name}[{wrapped}{' ' + prob.group(1) if prob else ''}]"
    model = re.search(r"model=model\('([^']*)'\)", signature)
    if model:
        return f"{name}[{model.group(1)}]"
    for key in ("size=", "scalar="):
        if key in signature:
            value = signature.split(key, 1)[1]
            value = value[:value.index(")") + 1] if value.startswith("(") else \
                value.split(",")[0].rstrip(")")
            value = value.strip(chr(39))
            try:
                value = f"{float(value):g}"
            except ValueError:
                pass
            return f"{name}[{value}]"
    return name


def plain(value: Any) -> Any:
    """``value`` with numpy numbers and arrays as Python numbers and lists (JSON-ready)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
