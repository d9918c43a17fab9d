"""History files and plot: metrics on their own panels, arrays (a confusion matrix) in the JSON
only."""

import csv
import json

import numpy as np

import fe_dist as fe
from fe_dist import history
from fe_dist.summary import EpochRecord


def _record(epoch, batch):
    return EpochRecord(
        epoch=epoch, global_batch=batch, per_rank_batch=[batch // 2] * 2, world_size=2,
        trained_models=["m"], steps=4, train_samples=4 * batch,
        train_loss={"ce": 2.3 - epoch, "kd": 40.0 - epoch},
        eval_metrics={"ce": 2.1 - epoch, "kd": 38.0 - epoch, "accuracy": 0.4 + 0.2 * epoch,
                      "confusion_matrix": np.eye(3, dtype=int) * (epoch + 1)},
        seconds=1.0, samples_per_sec=4.0 * batch, eval_seconds=0.1, pipeline_ops=[],
        network_ops=[], allreduced_tensors_per_step=2.0, allreduced_bytes_per_step=8.0,
        timeline={})


def test_history_gives_each_metric_its_panel_and_keeps_arrays_out_of_csv_and_plots(tmp_path):
    fe.distributed.get_context()  # pins the rank before TensorBoard starts TensorFlow's runtime
    records = [_record(0, 16), _record(1, 32)]
    history.write(tmp_path, records, [0, 1])
    with open(tmp_path / "history.csv") as f:
        header = next(csv.reader(f))
    assert {"train_ce", "train_kd", "eval_ce", "eval_kd", "eval_accuracy"} <= set(header)
    assert "eval_confusion_matrix" not in header
    rows = json.loads((tmp_path / "history.json").read_text())["records"]
    assert rows[1]["eval_confusion_matrix"] == (np.eye(3, dtype=int) * 2).tolist()
    assert (tmp_path / "history.png").stat().st_size > 1000

    fig = history.figure(records, [0, 1])
    lines = {ax.get_title(): sorted(line.get_label() for line in ax.get_lines()
                                    if not line.get_label().startswith("_"))
             for ax in fig.axes}
    # Losses of different scale and the accuracy never share an axis; train and eval of one
    # loss do.
    assert lines == {"loss ce": ["eval ce", "train ce"], "loss kd": ["eval kd", "train kd"],
                     "eval accuracy": ["eval accuracy"], "throughput (samples/s)": ["samples/s"]}

    board = history.TensorBoard(tmp_path / "tb")
    for record in records:
        board.write(record)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
