"""Progressive-training extras: RepeatScheduler, learning rates that follow the batch, scheduled
optimizers / eval / callbacks, the schedule table, history files, progress bar, mixed precision
and fp16 gradient compression."""

import io
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import fe_dist as fe
from fe_dist import sharding
from fe_dist.errors import ConfigError
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.progress import Progress
from fe_dist.schedule import LRSchedule, RepeatScheduler, Scheduler, get_signature_epochs
from fe_dist.summary import schedule_table
from test_errors import data, estimator, tiny


def test_repeat_scheduler():
    s = RepeatScheduler([32, 64, None])
    assert [s.get_current_value(e) for e in range(7)] == [32, 64, None, 32, 64, None, 32]
    assert get_signature_epochs([s], 7) == list(range(7))
    assert get_signature_epochs([RepeatScheduler([8, 8])], 5) == [0]
    with pytest.raises(ConfigError, match="only None"):
        RepeatScheduler([None])
    with pytest.raises(ConfigError, match="non-empty list"):
        RepeatScheduler([])


def test_lr_schedule_values():
    lr = LRSchedule(0.1, reference_batch=32)
    assert lr.value(epoch=0, step=0, global_batch=32) == pytest.approx(0.1)
    assert lr.value(epoch=3, step=99, global_batch=128) == pytest.approx(0.4)
    warm = LRSchedule(0.1, warmup_steps=4)
    assert [warm.value(0, s, 32, 4) for s in range(6)] == pytest.approx(
        [0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
    by_epoch = LRSchedule(Scheduler({0: 0.1, 2: 0.01}))
    assert [by_epoch.value(e, 0, 32) for e in range(4)] == pytest.approx([0.1, 0.1, 0.01, 0.01])
    by_step = LRSchedule(lambda epoch, step: 1.0 / (step + 1))
    assert by_step.value(0, 9, 32) == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="warmup_steps or warmup_epochs"):
        LRSchedule(0.1, warmup_steps=2, warmup_epochs=1)
    with pytest.raises(ConfigError, match="reference_batch"):
        LRSchedule(0.1, reference_batch=0)


def test_learning_rate_mistakes_fail_before_training():
    model = fe.build(tiny(), model_name="m", loss_name="ce", lr=Scheduler({1: 0.1}))
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ConfigError, match="Epoch 0: the learning-rate Scheduler has no value"):
        estimator(model=model, epochs=2).fit()
    bad = fe.build(tiny(), model_name="m2", loss_name="ce",
                   lr=lambda epoch, step: 1 / (1 - epoch))
    with pytest.raises(ConfigError, match="Epoch 1: the learning rate of model 'm2' failed"):
        estimator(model=bad, epochs=2).fit()
    for w0, w1 in zip(before, model.get_weights()):
        np.testing.assert_array_equal(w0, w1)


def test_learning_rate_applied_at_every_step_matches_a_hand_loop():
    """SGD with a scaled, warmed-up LR over a batch change, against a hand-written loop that
    applies the expected LR at each step: same weights."""
    d = data(n=48)
    lr = LRSchedule(0.5, reference_batch=8, warmup_steps=5)
    model = fe.build(tiny(), model_name="m", loss_name="ce", lr=lr,
                     optimizer=lambda: keras.optimizers.SGD(1.0))
    start = [w.copy() for w in model.get_weights()]
    est = estimator(batch_size=Scheduler({0: 8, 1: 16}), model=model, epochs=2, d=d)
    summary = est.fit()

    ref = tiny()()
    ref.set_weights(start)
    step, expected_last = 0, {}
    for epoch, batch in ((0, 8), (1, 16)):
        for idx in sharding.train_indices(48, batch, 1, 0, seed=0, epoch=epoch):
            rate = 0.5 * (batch / 8) * min(1.0, (step + 1) / 5)
            x, y = d["train"]["x"][idx], d["train"]["y"][idx]
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(
                    y, ref(x, training=True))) / batch
            for var, grad in zip(ref.trainable_variables,
                                 tape.gradient(loss, ref.trainable_variables)):
                var.assign_sub(rate * grad)
            step += 1
        expected_last[epoch] = rate
    for got, want in zip(model.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for record in summary.records:
        assert record.learning_rates["m"] == pytest.approx(expected_last[record.epoch])


def test_scheduled_optimizer_eval_and_callback():
    model = fe.build(tiny(), model_name="m", loss_name="ce",
                     optimizer=Scheduler({0: "adam", 1: "sgd"}))
    adam, sgd = model.fe_dist.optimizers
    seen = []
    d = {"train": data()["train"], "eval": data(n=10)["train"]}
    est = estimator(model=model, epochs=3, d=d)
    est.evaluate = RepeatScheduler([False, True])
    est.on_epoch_end = Scheduler({0: None, 1: lambda r: seen.append(r.epoch)})
    summary = est.fit()
    assert int(adam.iterations) == 4 and int(sgd.iterations) == 8  # 4 steps an epoch
    assert [bool(r.eval_metrics) for r in summary.records] == [False, True, False]
    assert seen == [1, 2]
    assert summary.signature_epochs == [0, 1, 2]  # optimizer and eval changes count
    table = schedule_table(est.plan)
    assert "m (Adam)" in table and "m (SGD)" in table and "eval" in table
    assert "ModelOp[m]" in table  # the model's whole name (was cut to "ModelOp[model('m]")


def test_history_files_and_tensorboard(tmp_path):
    est = estimator(batch_size=Scheduler({0: 8, 1: 16}), epochs=2)
    est.history_dir = tmp_path / "history"
    est.tensorboard_dir = tmp_path / "tb"
    est.fit()
    rows = json.loads((tmp_path / "history" / "history.json").read_text())
    assert [r["global_batch"] for r in rows["records"]] == [8, 16]
    assert rows["signature_epochs"] == [0, 1]
    csv_lines = (tmp_path / "history" / "history.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,global_batch") and len(csv_lines) == 3
    assert (tmp_path / "history" / "history.png").stat().st_size > 1000
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_progress_bar_only_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty, log = Tty(), io.StringIO()
    for stream in (tty, log):
        bar = Progress(stream, interval=0)
        bar.update(epoch=3, step=5, steps=10)
        bar.clear()
    assert "epoch 3 [" in tty.getvalue() and "5/10 steps" in tty.getvalue()
    assert log.getvalue() == ""


def test_mixed_precision_trains_with_loss_scaling():
    model = fe.build(tiny(), model_name="m", loss_name="ce", mixed_precision=True)
    assert isinstance(model.fe_dist.optimizers[0], keras.optimizers.LossScaleOptimizer)
    assert model.layers[-1].compute_dtype == "float16"
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    summary = estimator(model=model, epochs=1).fit()
    assert np.isfinite(summary.records[0].train_loss["ce"])
    with pytest.raises(ConfigError, match="mixed_precision"):
        fe.build(tiny(), model_name="m2", mixed_precision="int8")


def test_fp16_compression_halves_the_allreduced_bytes():
    model = fe.build(tiny(), model_name="m", loss_name="ce")
    net = fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                      SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")],
                     gradient_compression="fp16")
    est = fe.Estimator(pipeline=fe.Pipeline(data=data(), batch_size=16), network=net,
                       epochs=1, verbose=False)
    record = est.fit().records[0]
    full = sum(int(np.prod(v.shape)) * 4 for v in model.trainable_variables)
    assert record.allreduced_bytes_per_step == full / 2
    with pytest.raises(ConfigError, match="gradient_compression"):
        fe.Network([ModelOp(inputs="x", model=model, outputs="p")], gradient_compression="int8")


def test_progressive_example_smoke(tmp_path):
    import subprocess
    import sys

    from conftest import REPO
    proc = subprocess.run([sys.executable, str(REPO / "launch" / "progressive_batch_lr.py"),
                           "--epochs", "3", "--target", "0.3", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "comparison.json").read_text())
    assert set(result) == {"target", "progressive", "baseline"}
    assert (tmp_path / "progressive" / "history.png").exists()
    assert "to eval accuracy 0.3" in proc.stdout


def test_adam_state_continues_across_a_pause_as_if_the_paused_epoch_did_not_exist():
    """Model a trains in epochs 0 and 2, b in epoch 1. a's weights and Adam state (iterations,
    m, v) must equal a plain Keras loop that applies a fresh Adam to a's batches of epochs 0 and
    2 only, in fe_dist's deterministic order (sharding.train_indices)."""
    n, batch, seed = 48, 16, 0
    d = data(n=n)
    adam = lambda: keras.optimizers.Adam(0.01)  # noqa: E731 - large enough to move weights
    a = fe.build(tiny(), model_name="a", loss_name="ce", optimizer=adam)
    b = fe.build(tiny(), model_name="b", loss_name="ce", optimizer=adam)
    start = [w.copy() for w in a.get_weights()]
    network = fe.Network([Scheduler({0: ModelOp(inputs="x", model=a, outputs="p"),
                                     1: ModelOp(inputs="x", model=b, outputs="p"),
                                     2: ModelOp(inputs="x", model=a, outputs="p")}),
                          SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    fe.Estimator(pipeline=fe.Pipeline(data=d, batch_size=batch), network=network, epochs=3,
                 seed=seed, evaluate=False, verbose=False).fit()

    ref = tiny()()
    ref.set_weights(start)
    ref_opt = adam()
    ref_opt.build(ref.trainable_variables)
    for epoch in (0, 2):  # epoch 1 does not exist for a
        for idx in sharding.train_indices(n, batch, 1, 0, seed=seed, epoch=epoch):
            x, y = d["train"]["x"][idx], d["train"]["y"][idx]
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                    y, ref(x, training=True)))
            grads = tape.gradient(loss, ref.trainable_variables)
            ref_opt.apply_gradients(zip(grads, ref.trainable_variables))

    (opt,) = a.fe_dist.optimizers
    assert int(opt.iterations) == int(ref_opt.iterations) == 6
    assert int(b.fe_dist.optimizers[0].iterations) == 3
    for got, want in zip(a.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # Same variable order (iterations, learning rate, then m and v per weight) on both sides.
    def roles(o: keras.optimizers.Optimizer) -> list[list[str]]:
        return [v.path.split("/")[-1].split("_")[-2:] for v in o.variables]  # "kernel_momentum"

    assert roles(opt) == roles(ref_opt) and len(opt.variables) == 6
    for got, want in zip(opt.variables, ref_opt.variables):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-7,
                                   err_msg=got.path)
