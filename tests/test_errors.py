"""Bad input: a clear error naming the thing and the fix, raised before training starts."""

import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import fe_dist as fe
from conftest import REPO
from fe_dist.errors import ConfigError
from fe_dist.op.tensorop import Resize, Scale
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.schedule import Scheduler


def tiny(shape=(8, 8, 1)):
    return lambda: keras.Sequential([keras.Input(shape), keras.layers.Flatten(),
                                     keras.layers.Dense(10, activation="softmax")])


def data(n=64, shape=(8, 8, 1)):
    rng = np.random.default_rng(0)
    return {"train": {"x": rng.random((n, *shape), dtype=np.float32),
                      "y": rng.integers(0, 10, n)}}


def estimator(batch_size=16, pipe_ops=(), net_ops=None, model=None, epochs=2, d=None):
    model = model or fe.build(tiny(), model_name="m", loss_name="ce")
    if net_ops is None:
        net_ops = [ModelOp(inputs="x", model=model, outputs="p"),
                   SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")]
    pipeline = fe.Pipeline(data=d or data(), batch_size=batch_size, ops=list(pipe_ops))
    return fe.Estimator(pipeline=pipeline, network=fe.Network(net_ops), epochs=epochs,
                        verbose=False)


@pytest.mark.parametrize("batch,words", [
    (0, "Epoch 0: batch size 0 is not a positive int"),
    (2.5, "batch size 2.5"),
    (Scheduler({1: 8}), "Epoch 0: no batch size is scheduled"),
    (Scheduler({0: 8, 1: -4}), "Epoch 1: batch size -4"),
    (1000, "larger than the 64 training samples"),
])
def test_bad_batch_size(batch, words):
    with pytest.raises(ConfigError, match=words):
        estimator(batch_size=batch).fit()


def test_no_train_data():
    with pytest.raises(ConfigError, match="needs a 'train' split"):
        fe.Pipeline(data={"eval": data()["train"]}, batch_size=8)


def test_arrays_of_different_lengths():
    bad = {"train": {"x": np.zeros((10, 2)), "y": np.zeros(9)}}
    with pytest.raises(ConfigError, match=r"data\['train'\] arrays have different lengths"):
        fe.Pipeline(data=bad, batch_size=8)


def test_op_reading_a_missing_key_names_op_key_and_epoch():
    ops = [Scheduler({0: Scale(inputs="x", scalar=1.0, outputs="x"),
                      1: Scale(inputs="image", scalar=1.0, outputs="x")})]
    with pytest.raises(ConfigError, match=r"Epoch 1 \(train\): pipeline op Scale.*'image'"):
        estimator(pipe_ops=ops).fit()


def test_model_input_shape_mismatch_names_epoch_and_model():
    ops = [Scheduler({0: Resize(inputs="x", size=(8, 8), outputs="x"),
                      1: Resize(inputs="x", size=(10, 10), outputs="x")})]
    with pytest.raises(ConfigError,
                       match=r"Epoch 1 \(train\): model 'm' expects input shape \(8, 8, 1\)"):
        estimator(pipe_ops=ops).fit()


def test_loss_name_no_op_produces():
    model = fe.build(tiny(), model_name="m", loss_name="my_loss")
    net_ops = [ModelOp(inputs="x", model=model, outputs="p"),
               SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")]
    with pytest.raises(ConfigError, match="model 'm' trains on loss_name 'my_loss'"):
        estimator(net_ops=net_ops, model=model).fit()


def test_a_mistake_in_epoch_40_fails_before_training():
    model = fe.build(tiny(), model_name="m", loss_name="ce")
    before = [w.copy() for w in model.get_weights()]
    ops = [Scheduler({0: Resize(inputs="x", size=(8, 8), outputs="x"),
                      40: Resize(inputs="x", size=(9, 9), outputs="x")})]
    start = time.monotonic()
    with pytest.raises(ConfigError, match="Epoch 40"):
        estimator(pipe_ops=ops, model=model, epochs=41).fit()
    assert time.monotonic() - start < 30
    for w0, w1 in zip(before, model.get_weights()):
        np.testing.assert_array_equal(w0, w1)  # not one step was taken


def test_modelop_needs_a_built_model():
    with pytest.raises(ConfigError, match="not made by fe_dist.build"):
        ModelOp(inputs="x", model=tiny()(), outputs="p")


def test_duplicate_model_names():
    a = fe.build(tiny(), model_name="same")
    b = fe.build(tiny(), model_name="same")
    with pytest.raises(ConfigError, match="Two different models are named 'same'"):
        fe.Network([ModelOp(inputs="x", model=a, outputs="p"),
                    ModelOp(inputs="x", model=b, outputs="q")])


def test_unknown_optimizer():
    with pytest.raises(ConfigError, match="unknown optimizer 'adamm'"):
        fe.build(tiny(), model_name="m", optimizer="adamm")


def test_runs_without_horovod_installed():
    """Fallback mode needs only TensorFlow and numpy: horovod made unimportable."""
    code = (
        "import sys; sys.modules['horovod'] = None\n"
        "sys.path.insert(0, 'tests'); import test_errors as t, fe_dist as fe\n"
        "s = t.estimator(epochs=1).fit()\n"
        "assert fe.distributed.get_context().backend == 'local'\n"
        "assert s.records[0].steps == 4, s.records\n"
        "print('fallback ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={"FE_DIST_BACKEND": "auto", "PATH": "/usr/bin:/bin",
                                            "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0 and "fallback ok" in proc.stdout, proc.stderr[-2000:]


def test_watchdog_prints_where_then_exits_after_the_grace_period():
    """A stalled rank says where it is, then waits so the ranks it stalls can say so too."""
    from fe_dist.distributed.watchdog import EXIT_CODE, grace_seconds
    code = (
        "import time\n"
        "from fe_dist.distributed.watchdog import Watchdog\n"
        "w = Watchdog(1, 2, timeout=1.0)\n"
        "w.progress('epoch 3, train step 7 (gradient allreduce)'); w.arm(True)\n"
        "time.sleep(60)\n")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    elapsed = time.monotonic() - start
    assert proc.returncode == EXIT_CODE, proc.stderr
    assert "rank 1 of 2 made no progress" in proc.stderr
    assert "epoch 3, train step 7 (gradient allreduce)" in proc.stderr
    assert elapsed >= 1.0 + grace_seconds(1.0), elapsed


def test_pipeline_autotune_must_be_a_bool():
    with pytest.raises(ConfigError, match="Pipeline autotune must be True or False, got 'yes'"):
        fe.Pipeline(data=data(), batch_size=16, autotune="yes")
