"""Per-epoch history on disk: CSV, JSON, a PNG plot with schedule changes marked, and
TensorBoard scalars. Written by rank 0."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from fe_dist.summary import EpochRecord


def flatten(record: EpochRecord) -> dict[str, Any]:
    """One CSV row: scalars only, losses and metrics as their own columns."""
    row: dict[str, Any] = {
        "epoch": record.epoch, "global_batch": record.global_batch,
        "per_rank_batch": "/".join(str(b) for b in record.per_rank_batch),
        "world_size": record.world_size, "trained_models": "+".join(record.trained_models),
        "steps": record.steps, "seconds": round(record.seconds, 4),
        "samples_per_sec": round(record.samples_per_sec, 2),
    }
    row.update({f"train_{k}": v for k, v in record.train_loss.items()})
    row.update({f"eval_{k}": v for k, v in record.eval_metrics.items()})
    row.update({f"lr_{k}": v for k, v in record.learning_rates.items()})
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
        {"signature_epochs": signature_epochs, "records": rows}, indent=1))
    plot(directory / "history.png", records, signature_epochs)


def plot(path: str | Path, records: list[EpochRecord], signature_epochs: list[int]) -> None:
    """Loss, eval metrics and samples/s against epoch; dashed lines where the schedule changes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r.epoch for r in records]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for key in sorted({k for r in records for k in r.train_loss}):
        axes[0].plot(epochs, [r.train_loss.get(key) for r in records], "o-", label=f"train {key}")
    for key in sorted({k for r in records for k in r.eval_metrics}):
        ax = axes[1] if "acc" in key else axes[0]
        ax.plot(epochs, [r.eval_metrics.get(key) for r in records], "s--", label=f"eval {key}")
    axes[2].plot(epochs, [r.samples_per_sec for r in records], "o-", label="samples/s")
    titles = ("loss", "eval metrics", "throughput (samples/s)")
    for ax, title in zip(axes, titles):
        for e in signature_epochs[1:]:
            ax.axvline(e - 0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_title(title)
        ax.set_xlabel("epoch (dotted: schedule change)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    for r in records:
        axes[2].annotate(f"B={r.global_batch}", (r.epoch, r.samples_per_sec), fontsize=7,
                         textcoords="offset points", xytext=(0, 5), ha="center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class TensorBoard:
    """Per-epoch scalars for TensorBoard (rank 0): losses, eval metrics, samples/s, batch, LR."""

    def __init__(self, logdir: str | Path) -> None:
        import tensorflow as tf

        self._tf = tf
        self._writer = tf.summary.create_file_writer(str(logdir))

    def write(self, record: EpochRecord) -> None:
        scalars = {f"train/{k}": v for k, v in record.train_loss.items()}
        scalars.update({f"eval/{k}": v for k, v in record.eval_metrics.items()})
        scalars.update({f"lr/{k}": v for k, v in record.learning_rates.items()})
        scalars.update({"speed/samples_per_sec": record.samples_per_sec,
                        "schedule/global_batch": record.global_batch})
        with self._writer.as_default():
            for name, value in scalars.items():
                self._tf.summary.scalar(name, value, step=record.epoch)
        self._writer.flush()
