"""The seed tutorial (FastEstimator tutorial 8) on one process: schedule, isolation, accuracy,
trace reuse."""

import hashlib
import importlib.util

import numpy as np
import pytest

from conftest import REPO


def _checksum(model):
    h = hashlib.sha1()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def seed_run():
    spec = importlib.util.spec_from_file_location("tutorial8",
                                                  REPO / "launch" / "tutorial8_scheduler.py")
    tutorial = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tutorial)
    est = tutorial.get_estimator()
    models = est.network.models
    checksums = [{name: _checksum(m) for name, m in models.items()}]
    est.on_epoch_end = lambda record: checksums.append(
        {name: _checksum(m) for name, m in models.items()})
    summary = est.fit()
    return est, summary, checksums


def test_schedule_from_records(seed_run):
    _, summary, _ = seed_run
    expected = [(32, "(30, 30)", "Minmax", ["model1"]),
                (64, "(32, 32)", "Minmax", ["model2"]),
                (128, "(30, 30)", "Scale", ["model1"])]
    assert len(summary.records) == 3
    for record, (batch, size, norm, models) in zip(summary.records, expected):
        assert record.global_batch == batch
        assert record.per_rank_batch == [batch]
        assert record.world_size == 1
        assert record.trained_models == models
        assert record.steps == 4000 // batch
        resize, normalize = record.pipeline_ops
        assert resize.startswith("Resize(") and f"size={size}" in resize
        assert normalize.startswith(f"{norm}(")
        assert record.seconds > 0 and record.samples_per_sec > 0
        assert set(record.eval_metrics) == {"my_loss", "my_loss_accuracy"}


def test_only_the_scheduled_model_changes(seed_run):
    _, summary, checksums = seed_run
    for epoch, record in enumerate(summary.records):
        before, after = checksums[epoch], checksums[epoch + 1]
        for name in ("model1", "model2"):
            changed = before[name] != after[name]
            assert changed == (name in record.trained_models), (epoch, name)


def test_accuracy_after_three_epochs(seed_run):
    _, summary, _ = seed_run
    assert summary.records[-1].eval_metrics["my_loss_accuracy"] >= 0.90


def test_one_trace_per_signature(seed_run):
    est, summary, _ = seed_run
    counts = est.network.trace_counts
    assert all(c == 1 for c in counts.values()), counts
    # train: (model1, 30x30) for epochs 0 and 2 (batch 32 and 128 share one trace: the batch
    # axis is unknown), (model2, 32x32); eval: 30x30, 32x32
    assert len(counts) == 4
    assert summary.trace_count == 4


def test_allreduce_accounting_matches_active_model(seed_run):
    est, summary, _ = seed_run
    for record in summary.records:
        (name,) = record.trained_models
        variables = est.network.models[name].trainable_variables
        assert record.allreduced_tensors_per_step == len(variables)
        assert record.allreduced_bytes_per_step == sum(
            int(np.prod(v.shape)) * 4 for v in variables)
