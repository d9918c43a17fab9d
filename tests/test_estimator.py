"""Epoch loop details: compiled steps reused across epochs, summary output, data loading."""

import json

import numpy as np
import pytest

from fe_dist.dataset import mnist
from fe_dist.errors import ConfigError
from fe_dist.schedule import Scheduler
from test_errors import data, estimator


def test_steps_and_pipelines_are_reused_between_schedule_changes():
    d = {"train": data()["train"], "eval": data(n=20)["train"]}
    est = estimator(batch_size=Scheduler({0: 16, 2: 32}), epochs=5, d=d)
    summary = est.fit()
    assert [r.steps for r in summary.records] == [4, 4, 2, 2, 2]
    # The phases differ only in batch size, and steps are traced with the batch axis unknown:
    # one train and one eval trace for 5 epochs (was one train trace per batch size).
    assert sorted(est.network.trace_counts.values()) == [1, 1]
    assert len(est.pipeline._train) == 2  # one tf.data pipeline per schedule phase
    assert summary.signature_epochs == [0, 2]


def test_summary_is_json_and_same_shape_as_records(tmp_path):
    summary = estimator(epochs=2).fit()
    path = tmp_path / "s.json"
    summary.to_json(str(path))
    loaded = json.loads(path.read_text())
    assert [r["epoch"] for r in loaded["records"]] == [0, 1]
    assert loaded["records"][0]["world_size"] == 1
    assert "epoch 1: train m | batch 16 global" in summary.records[1].log_line()


def _numpy_eval(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """Mean cross-entropy and correct count of the one-Dense softmax model (test_errors.tiny)
    on all of (x, y), in float64 numpy: no fe_dist code, no sharding, no batching."""
    kernel, bias = (w.astype(np.float64) for w in weights)
    logits = x.reshape(len(x), -1).astype(np.float64) @ kernel + bias
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return float(-np.log(probs[np.arange(len(y)), y]).mean()), int((probs.argmax(1) == y).sum())


def test_eval_covers_the_whole_eval_set():
    # 37 eval samples in per-rank batches of 16 (16 + 16 + 5), each with its own input and
    # label, so a skipped or doubled sample changes the loss (per-sample losses differ) and the
    # accuracy (whenever 0 < correct < 37).
    rng = np.random.default_rng(1)
    d = {"train": data()["train"],
         "eval": {"x": rng.random((37, 8, 8, 1), dtype=np.float32), "y": rng.integers(0, 10, 37)}}
    est = estimator(d=d, epochs=1)
    summary = est.fit()
    ce, correct = _numpy_eval(est.network.models["m"].get_weights(), d["eval"]["x"],
                              d["eval"]["y"])
    assert 0 < correct < 37
    metrics = summary.records[0].eval_metrics
    assert metrics["ce_accuracy"] == pytest.approx(correct / 37, abs=1e-9)
    assert metrics["ce"] == pytest.approx(ce, rel=1e-5)
    # The same figures over 2 ranks: tests/test_multirank.py
    # test_eval_covers_the_whole_eval_set_on_one_and_two_ranks.


def test_bundled_mnist_sample():
    (x, y), (xe, ye) = mnist.load_data()
    assert x.shape == (4000, 28, 28) and xe.shape == (1000, 28, 28)
    assert x.dtype == np.uint8 and set(np.unique(y)) == set(range(10))


def test_mnist_from_a_local_path(tmp_path):
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=np.ones((5, 28, 28), np.uint8), y_train=np.arange(5),
             x_test=np.zeros((3, 28, 28), np.uint8), y_test=np.arange(3))
    (x, y), (xe, ye) = mnist.load_data(path)
    assert x.shape == (5, 28, 28) and ye.tolist() == [0, 1, 2]
    with pytest.raises(ConfigError, match="does not exist"):
        mnist.load_data(tmp_path / "nope.npz")


@pytest.mark.parametrize("autotune", [False, True])
def test_pipeline_parallelism_is_fixed_unless_autotune_is_asked_for(autotune):
    import fe_dist as fe
    from fe_dist.op.tensorop import Scale
    pipeline = fe.Pipeline(data={**data(), "eval": data()["train"]}, batch_size=16,
                           autotune=autotune,
                           ops=[Scale(inputs="x", scalar=2.0, outputs="x")])
    for ds in (pipeline.get_train_dataset(0, 16), pipeline.get_train_dataset(0, 16, micro_batch=5),
               pipeline.get_eval_dataset(0, 16)):
        options = ds.options()
        assert options.autotune.enabled is autotune
        assert options.threading.private_threadpool_size == \
            max(fe.distributed.get_context().threads, 1)
    batch = next(iter(pipeline.get_train_dataset(0, 16)))
    assert batch["x"].shape[0] == 16
