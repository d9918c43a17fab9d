"""Models a user op calls itself, outside any ModelOp: broadcast from rank 0, checkpointed and
restored, or refused before training when they cannot work."""

import keras
import numpy as np
import pytest

import fe_dist as fe
from conftest import launch, read_reports
from fe_dist import checkpoint, helper_models
from fe_dist.errors import ConfigError
from fe_dist.op.tensorop import TensorOp
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.schedule import Scheduler
from test_console import NOISE


class Apply(TensorOp):
    def __init__(self, inputs, outputs, model, training=False, mode=None):
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)
        self.model, self.training = model, training

    def forward(self, data, state):
        return self.model(data, training=self.training)


def _features(batchnorm=False):
    fe.distributed.get_context()  # pins the rank before Keras starts TensorFlow's runtime
    layers = [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(16)]
    return keras.Sequential(layers + ([keras.layers.BatchNormalization()] if batchnorm else []))


def _estimator(helper_op, epochs=1, ckpt=None):
    student = fe.build(lambda: keras.Sequential([keras.Input((16,)), keras.layers.Dense(10)]),
                       model_name="student", loss_name="ce")
    rng = np.random.default_rng(0)
    data = {"train": {"x": rng.random((32, 8, 8, 1), dtype=np.float32),
                      "y": rng.integers(0, 10, 32)}}
    network = fe.Network([helper_op, ModelOp(inputs="f", model=student, outputs="p"),
                          SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce",
                                                        from_logits=True)])
    return fe.Estimator(pipeline=fe.Pipeline(data=data, batch_size=16), network=network,
                        epochs=epochs, checkpoint_dir=ckpt, verbose=False)


def test_helper_models_are_broadcast_checkpointed_and_restored_on_two_ranks(tmp_path):
    result = launch(["helper_models.py"], tmp_path, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    r0, r1 = read_reports(tmp_path, 2)
    assert r0["initial"] != r1["initial"]  # each rank built its own random helpers
    for r in (r0, r1):
        assert r["fitted"] == r0["initial"]  # rank 0's, unchanged by training
        assert r["resumed_initial"] != r0["initial"]  # the resumed program built new ones
        assert r["resumed"] == r0["initial"]  # restored from the checkpoint
    assert r0["student"] == r1["student"] and r0["resumed_student"] == r1["resumed_student"]
    # TensorFlow imported before fe_dist, 2 ranks: no C++ start-up lines from the ranks.
    ranks = [line for line in (result.stdout + result.stderr).splitlines()
             if line.startswith(("[0]", "[1]"))]
    assert not [line for line in ranks if NOISE.search(line)], "\n".join(ranks)


def test_helper_model_is_checkpointed_and_restored_on_one_process(tmp_path):
    helper = _features()
    _estimator(Scheduler({0: Apply("x", "f", model=helper)}), ckpt=tmp_path).fit()
    saved = [w.copy() for w in helper.get_weights()]
    other = _features()
    est = _estimator(Scheduler({0: Apply("x", "f", model=other)}), epochs=2,
                     ckpt=tmp_path)
    assert not all(np.array_equal(a, b) for a, b in zip(saved, other.get_weights()))
    est.fit(resume=True)
    assert all(np.array_equal(a, b) for a, b in zip(saved, other.get_weights()))
    meta, arrays = checkpoint.load(tmp_path)
    assert "helper:network.ops[0]<0>.model/0" in arrays


def test_helpers_are_named_by_where_they_are_held_and_found_in_nested_containers():
    feat, emb = _features(), _features()
    op = Apply("x", "f", model=[{"a": feat}, (emb, feat)])
    est = _estimator(Scheduler({0: op}))
    found = helper_models.find(est.pipeline, est.network)
    assert [(h.name, h.model) for h in found] == [
        ("network.ops[0]<0>.model[0]['a']", feat), ("network.ops[0]<0>.model[1][0]", emb)]


def test_a_model_built_with_fe_build_that_no_modelop_runs_is_refused():
    teacher = fe.build(_features, model_name="teacher", loss_name="kd")
    est = _estimator(Apply("x", "f", model=teacher))
    with pytest.raises(ConfigError, match=r"network.ops\[0\].model \(op Apply.*holds model "
                                          r"'teacher', made by fe.build.*no ModelOp runs it.*"
                                          r"trainable=False"):
        est.fit()


def test_a_helper_model_that_the_op_updates_itself_is_refused():
    helper = _features(batchnorm=True)
    before = [w.copy() for w in helper.get_weights()]
    est = _estimator(Apply("x", "f", model=helper, training=True))
    with pytest.raises(ConfigError, match=r"network.ops\[0\].model \(op Apply.*updates its "
                                          r"variable '.*moving_mean'.*training=False"):
        est.fit()
    assert all(np.array_equal(a, b) for a, b in zip(before, helper.get_weights()))
