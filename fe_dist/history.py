"""Per-epoch history on disk: CSV, JSON, a PNG plot with schedule changes marked, and
TensorBoard scalars. Written by rank 0. Train-mode traces' values (``train_metrics``) get the
"train_" prefix of the train losses.

Values that are not one number (a confusion matrix in ``eval_metrics``) are written to the JSON
only: the CSV's columns, the plot and TensorBoard's scalars take numbers.
"""

from __future__ import annotations

import csv
import json
import numbers
from pathlib import Path
from typing import Any

import numpy as np

from fe_dist.summary import EpochRecord, plain


def is_scalar(value: Any) -> bool:
    """True for one number (a float, an int, a 0-d array); False for lists and arrays such as a
    confusion matrix, which go to history.json only."""
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Number):
        return True
    return isinstance(value, (np.ndarray, np.generic)) and np.ndim(value) == 0 and \
        np.issubdtype(np.asarray(value).dtype, np.number)


def flatten(record: EpochRecord, scalars_only: bool = True) -> dict[str, Any]:
    """One row: losses and metrics as their own columns. With ``scalars_only`` (the CSV) a
    value that is not one number (a confusion matrix) is left out; otherwise it is kept as
    nested lists (the JSON)."""
    row: dict[str, Any] = {
        "epoch": record.epoch, "global_batch": record.global_batch,
        "per_rank_batch": "/".join(str(b) for b in record.per_rank_batch),
        "world_size": record.world_size, "trained_models": "+".join(record.trained_models),
        "steps": record.steps, "seconds": round(record.seconds, 4),
        "samples_per_sec": round(record.samples_per_sec, 2),
    }
    if record.noise_scale is not None:
        row["noise_scale"] = record.noise_scale
    for prefix, values in (("train", record.train_loss), ("train", record.train_metrics),
                           ("eval", record.eval_metrics), ("lr", record.learning_rates)):
        for k, v in values.items():
            if is_scalar(v):
                row[f"{prefix}_{k}"] = float(v) if isinstance(v, (np.generic, np.ndarray)) else v
            elif not scalars_only:
                row[f"{prefix}_{k}"] = plain(v)
    return row


def write(directory: str | Path, records: list[EpochRecord], signature_epochs: list[int]) -> None:
    """Write ``history.csv``, ``history.json`` and ``history.png`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rows = [flatten(r) for r in records]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(directory / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    (directory / "history.json").write_text(json.dumps(
        {"signature_epochs": signature_epochs,
         "records": [flatten(r, scalars_only=False) for r in records]}, indent=1))
    plot(directory / "history.png", records, signature_epochs)


def write_test(directory: str | Path, epoch: int, samples: int,
               metrics: dict[str, Any]) -> None:
    """Write ``test.json`` into ``directory``: `Estimator.test`'s metrics (arrays as nested
    lists), the epoch whose schedule it ran and the number of test samples."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "test.json").write_text(json.dumps(
        {"epoch": epoch, "samples": samples, "metrics": plain(metrics)}, indent=1))


def panels(records: list[EpochRecord]) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """What `figure` draws: (title, [(label, "train"|"eval", key), ...]) per panel. Each loss
    key gets its own panel with its train and eval curves; every other scalar metric its own
    (an accuracy in [0, 1] and a loss of 2.3 on one axis would flatten the accuracy), with
    its train curve (a train-mode trace's value) and eval curve where they exist."""
    losses = sorted({k for r in records for k in r.train_loss})
    metrics = sorted({k for r in records for k, v in r.eval_metrics.items() if is_scalar(v)})
    trained = sorted({k for r in records for k, v in r.train_metrics.items() if is_scalar(v)}
                     - set(losses))
    result = []
    for key in losses:
        curves = [(f"train {key}", "train", key)]
        if key in metrics:
            curves.append((f"eval {key}", "eval", key))
        result.append((f"loss {key}", curves))
    for key in sorted((set(metrics) | set(trained)) - set(losses)):
        curves = [(f"{split} {key}", split, key) for split, keys in
                  (("train", trained), ("eval", metrics)) if key in keys]
        result.append((" / ".join(label for label, _, _ in curves), curves))
    return result


def _value(record: EpochRecord, split: str, key: str) -> Any:
    """A curve's value at ``record`` (None if absent): a train loss, else a train trace's
    value, or an eval metric."""
    if split == "train":
        return record.train_loss.get(key, record.train_metrics.get(key))
    return record.eval_metrics.get(key)


def figure(records: list[EpochRecord], signature_epochs: list[int]) -> Any:
    """The history plot (a matplotlib Figure): one panel per loss (train and eval together),
    one per other scalar eval metric, and samples/s; dotted lines where the schedule
    changes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r.epoch for r in records]
    content = panels(records)
    count = len(content) + 1  # + throughput
    cols = min(3, count)
    rows = -(-count // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(4.7 * cols, 3.6 * rows), squeeze=False)
    axes = list(grid.flat)
    for extra in axes[count:]:
        extra.remove()
    for ax, (title, curves) in zip(axes, content):
        for label, split, key in curves:
            values = [_value(r, split, key) for r in records]
            ax.plot(epochs, [float(v) if v is not None and is_scalar(v) else float("nan")
                             for v in values], "o-" if split == "train" else "s--", label=label)
        ax.set_title(title)
    speed = axes[len(content)]
    speed.plot(epochs, [r.samples_per_sec for r in records], "o-", label="samples/s")
    speed.set_title("throughput (samples/s)")
    for r in records:
        speed.annotate(f"B={r.global_batch}", (r.epoch, r.samples_per_sec), fontsize=7,
                       textcoords="offset points", xytext=(0, 5), ha="center")
    for ax in axes[:count]:
        for e in signature_epochs[1:]:
            ax.axvline(e - 0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("epoch (dotted: schedule change)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot(path: str | Path, records: list[EpochRecord], signature_epochs: list[int]) -> None:
    """Save `figure` as a PNG."""
    import matplotlib.pyplot as plt

    fig = figure(records, signature_epochs)
    fig.savefig(path, dpi=100)
    plt.close(fig)


class TensorBoard:
    """Per-epoch scalars for TensorBoard (rank 0): losses, eval metrics, samples/s, batch, LR
    (values that are not one number are left out)."""

    def __init__(self, logdir: str | Path) -> None:
        import tensorflow as tf

        self._tf = tf
        self._writer = tf.summary.create_file_writer(str(logdir))

    def write(self, record: EpochRecord) -> None:
        scalars = {f"train/{k}": v for k, v in record.train_metrics.items()}
        scalars.update({f"train/{k}": v for k, v in record.train_loss.items()})
        scalars.update({f"eval/{k}": v for k, v in record.eval_metrics.items()})
        scalars.update({f"lr/{k}": v for k, v in record.learning_rates.items()})
        # A confusion matrix or other array is no scalar: it is in history.json.
        scalars = {k: v for k, v in scalars.items() if is_scalar(v)}
        scalars.update({"speed/samples_per_sec": record.samples_per_sec,
                        "schedule/global_batch": record.global_batch})
        if record.noise_scale is not None:
            scalars["schedule/noise_scale"] = record.noise_scale
        with self._writer.as_default():
            for name, value in scalars.items():
                self._tf.summary.scalar(name, value, step=record.epoch)
        self._writer.flush()
