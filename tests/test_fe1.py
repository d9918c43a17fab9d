"""fe_dist.fe1: FastEstimator 1.x programs on the one engine.

FastEstimator's own scheduler tests (test/PR_test/unit_test/schedule/ and
integration_test/schedule/test_schedule.py of fastestimator/fastestimator), rewritten: their
facts and expected values against the fe1 flavour. Then the numbering translation (a 1-based
program runs the epochs FastEstimator means, the seed's 0-based one is unchanged), the refusal of
programs mixing the two, the FE 1.x names against Keras and numpy oracles, and the ports in
launch/ on one process and on 2 ranks (one launch each, tests/programs/fe1_ports.py).
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import fe_dist as fe_seed
import fe_dist.fe1 as fe
from conftest import launch, read_reports
from fe_dist.errors import ConfigError
from fe_dist.fe1.architecture.tensorflow import LeNet, ResNet9
from fe_dist.fe1.dataset import NumpyDataset
from fe_dist.fe1.op.numpyop.univariate import ExpandDims, Minmax, Normalize
from fe_dist.fe1.op.tensorop.loss import CrossEntropy
from fe_dist.fe1.op.tensorop.model import ModelOp, UpdateOp
from fe_dist.fe1.schedule import (EpochScheduler, RepeatScheduler, cosine_decay, get_current_items,
                                  get_signature_epochs)
from fe_dist.fe1.trace import Trace
from fe_dist.fe1.trace.adapt import LRScheduler
from fe_dist.fe1.trace.io import ModelSaver
from fe_dist.fe1.util import to_number
from fe_dist.schedule import Scheduler


# -- FastEstimator's scheduler tests ---------------------------------------------------------------
def test_fe_epoch_scheduler():
    scheduler = EpochScheduler({1: "a", 3: "b", 4: None, 100: "c"})
    assert scheduler.get_current_value(2) == "a"
    assert scheduler.get_all_values() == ["a", "b", None, "c"]
    assert scheduler._get_last_key(3) == 3
    # The docstring's example.
    assert [scheduler.get_current_value(e) for e in (1, 2, 3, 4, 99, 100)] == \
        ["a", "a", "b", None, None, "c"]


def test_fe_repeat_scheduler():
    scheduler = RepeatScheduler([1, 2, 2])
    assert scheduler.get_current_value(epoch=2) == 2
    assert scheduler.get_all_values() == [1, 2, 2]
    # The docstring's example: epochs count from 1.
    s = RepeatScheduler(["a", "b", "c"])
    assert [s.get_current_value(epoch=e) for e in range(1, 6)] == ["a", "b", "c", "a", "b"]


def test_fe_get_current_items_and_signature_epochs():
    scheduler = RepeatScheduler(["a", "b", "c", "c"])
    epoch_scheduler = EpochScheduler({1: "a", 2: "b", 30: None})
    assert get_current_items(items=[scheduler], run_modes="train", epoch=None) == \
        ["a", "b", "c", "c"]
    assert get_current_items(items=[scheduler], run_modes="train", epoch=2) == ["b"]
    # FastEstimator's meaning: the first epoch of each combination not seen before.
    assert get_signature_epochs([scheduler, epoch_scheduler], total_epochs=50, mode="train") == \
        [1, 2, 3, 5, 30, 31, 33]


def test_fe_cosine_decay():
    assert cosine_decay(time=5, cycle_length=10, init_lr=0.01, min_lr=0.0) == 0.005
    assert math.isclose(cosine_decay(time=1001, cycle_length=1000, init_lr=0.01, min_lr=0.0),
                        0.01, rel_tol=1e-3)
    assert cosine_decay(5, cycle_length=10, init_lr=0.01, min_lr=0.0, cycle_multiplier=2) == 0.005
    assert cosine_decay(10, cycle_length=10, init_lr=0.01, min_lr=0.0, cycle_multiplier=2) == 0.0
    # The values t07's lr_fn gives at step 1 and at the end of a 1875-step cycle.
    assert math.isclose(cosine_decay(1, 1875, 1e-3), 1e-6 + (1e-3 - 1e-6) / 2 *
                        (1 + math.cos(math.pi / 1875)))
    assert math.isclose(cosine_decay(1875, 1875, 1e-3), 1e-6)
    assert cosine_decay(1876, 1875, 1e-3) == cosine_decay(1, 1875, 1e-3)  # the next cycle


# -- the numbering translation ---------------------------------------------------------------------
def _data(n=64, classes=4, shape=(8, 8)):
    rng = np.random.default_rng(0)
    return {"x": rng.integers(0, 256, (n, *shape), dtype=np.uint8),
            "y": rng.integers(0, classes, n)}


def _tiny(classes=4, regularizer=None):
    return lambda: keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                     keras.layers.Dense(classes, activation="softmax",
                                                        kernel_regularizer=regularizer)])


def _fe1_program(batch_size, epochs=3, update=None, traces=None, optimizer="adam", name=None,
                 **estimator):
    model = fe.build(model_fn=_tiny(), optimizer_fn=optimizer, model_name=name)
    pipeline = fe.Pipeline(train_data=NumpyDataset(_data()), eval_data=NumpyDataset(_data(32)),
                           batch_size=batch_size,
                           ops=[ExpandDims(inputs="x", outputs="x"),
                                Minmax(inputs="x", outputs="x")])
    network = fe.Network(ops=[ModelOp(model=model, inputs="x", outputs="y_pred"),
                              CrossEntropy(inputs=("y_pred", "y"), outputs="ce"),
                              update or UpdateOp(model=model, loss_name="ce")])
    return model, fe.Estimator(pipeline=pipeline, network=network, epochs=epochs,
                               traces=traces, log_steps=None, **estimator)


class _Seen(Trace):
    """Records what FastEstimator's System tells a trace."""

    def __init__(self):
        super().__init__(mode="train")
        self.epochs, self.begin, self.end = [], [], []

    def on_epoch_begin(self, data):
        self.epochs.append(self.system.epoch_idx)
        self.total = (self.system.total_epochs, self.system.num_devices)

    def on_batch_begin(self, data):
        self.begin.append((self.system.global_step, self.system.batch_idx))

    def on_batch_end(self, data):
        self.end.append((self.system.global_step, self.system.batch_idx))


def test_fe1_schedules_count_from_one_and_traces_see_it():
    """EpochScheduler({1: 16, 3: 32}) trains epochs 1-2 at 16 and epoch 3 at 32, as in
    FastEstimator; the engine's records keep epochs 0..2. Traces see epoch_idx, global_step
    (the step about to run, in on_batch_begin) and batch_idx from 1; lr_fn(epoch) sees 1, 2, 3."""
    seen = _Seen()
    model = fe.build(model_fn=_tiny(), optimizer_fn="sgd", model_name="counted")
    lr = LRScheduler(model=model, lr_fn=lambda epoch: 0.1 * epoch)
    pipeline = fe.Pipeline(train_data=NumpyDataset(_data()), batch_size=EpochScheduler(
        {1: 16, 3: 32}), ops=[ExpandDims(inputs="x", outputs="x")], drop_last=True)
    network = fe.Network(ops=[ModelOp(model=model, inputs="x", outputs="y_pred"),
                              CrossEntropy(inputs=("y_pred", "y"), outputs="ce"),
                              UpdateOp(model=model, loss_name="ce")])
    summary = fe.Estimator(pipeline=pipeline, network=network, epochs=3, traces=[seen, lr],
                           log_steps=None).fit()
    assert [r.epoch for r in summary.records] == [0, 1, 2]
    assert [r.global_batch for r in summary.records] == [16, 16, 32]
    assert [r.steps for r in summary.records] == [4, 4, 2]
    assert seen.epochs == [1, 2, 3]
    assert seen.total == (3, 1)
    assert seen.begin == [(1, 1), (2, 2), (3, 3), (4, 4), (5, 1), (6, 2), (7, 3), (8, 4),
                          (9, 1), (10, 2)]
    assert seen.end == seen.begin
    assert [r.learning_rates["counted"] for r in summary.records] == pytest.approx([0.1, 0.2, 0.3])


def test_seed_scheduler_keeps_its_meaning():
    """The seed's Scheduler still counts from 0: {0: 16, 2: 32} is 16, 16, 32 (and traces see
    epoch_idx from 0, global_step as steps completed)."""
    seen = _Seen()
    model = fe_seed.build(model_def=_tiny(), model_name="seed", loss_name="ce")
    data = _data()
    pipeline = fe_seed.Pipeline(data={"train": {"x": data["x"][..., None], "y": data["y"]}},
                                batch_size=Scheduler({0: 16, 2: 32}))
    from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
    from fe_dist.op.tensorop.model import ModelOp as SeedModelOp
    network = fe_seed.Network(ops=[SeedModelOp(inputs="x", model=model, outputs="y_pred"),
                                   SparseCategoricalCrossentropy(inputs=("y", "y_pred"),
                                                                 outputs="ce")])
    summary = fe_seed.Estimator(pipeline=pipeline, network=network, epochs=3, traces=[seen],
                                verbose=False).fit()
    assert [r.global_batch for r in summary.records] == [16, 16, 32]
    assert seen.epochs == [0, 1, 2]
    assert seen.begin[:2] == [(0, 0), (1, 1)] and seen.end[:2] == [(1, 0), (2, 1)]


def test_update_op_trains_only_while_scheduled_and_optimizer_switch():
    """An UpdateOp scheduled from epoch 2 leaves the model untouched in epoch 1 (bit for bit);
    EpochScheduler({1: "adam", 2: "sgd"}) switches to SGD at its own default rate 0.01."""
    model = fe.build(model_fn=_tiny(), optimizer_fn=EpochScheduler({1: "adam", 2: "sgd"}),
                     model_name="late")
    before = [w.copy() for w in model.get_weights()]
    weights = []
    update = EpochScheduler({2: UpdateOp(model=model, loss_name="ce")})
    pipeline = fe.Pipeline(train_data=NumpyDataset(_data()), batch_size=16,
                           ops=[ExpandDims(inputs="x", outputs="x")])
    network = fe.Network(ops=[ModelOp(model=model, inputs="x", outputs="y_pred"),
                              CrossEntropy(inputs=("y_pred", "y"), outputs="ce"), update])
    est = fe.Estimator(pipeline=pipeline, network=network, epochs=2, log_steps=None,
                       on_epoch_end=lambda r: weights.append(model.get_weights()))
    summary = est.fit()
    assert [r.trained_models for r in summary.records] == [[], ["late"]]
    assert all(np.array_equal(a, b) for a, b in zip(before, weights[0]))
    assert not all(np.array_equal(a, b) for a, b in zip(before, weights[1]))
    assert est.plan.epochs[1].optimizers["late"].startswith("SGD")
    assert est.final_lrs == {"late_lr": pytest.approx(0.01)}


def test_update_op_with_regularizer_equals_keras_fit():
    """One SGD step of an fe1 program (UpdateOp on CrossEntropy; the model has an L2 kernel
    regularizer) equals Keras' model.fit on the same global batch: FastEstimator's UpdateOp adds
    model.losses, and so does the engine."""
    data = _data(32)
    x = (data["x"].astype(np.float32) / 255.0)[..., None]
    reg = keras.regularizers.L2(0.05)
    keras.utils.set_random_seed(3)
    oracle = _tiny(regularizer=reg)()
    start = oracle.get_weights()
    oracle.compile(optimizer=keras.optimizers.SGD(0.5),
                   loss=keras.losses.SparseCategoricalCrossentropy())
    oracle.fit(x, data["y"], batch_size=32, epochs=1, shuffle=False, verbose=0)

    def model_fn():
        m = _tiny(regularizer=reg)()
        m.set_weights(start)
        return m
    model = fe.build(model_fn=model_fn, optimizer_fn=lambda: keras.optimizers.SGD(0.5),
                     model_name="regularized")
    pipeline = fe.Pipeline(train_data=NumpyDataset({"x": x, "y": data["y"]}), batch_size=32)
    network = fe.Network(ops=[ModelOp(model=model, inputs="x", outputs="y_pred"),
                              CrossEntropy(inputs=("y_pred", "y"), outputs="ce"),
                              UpdateOp(model=model, loss_name="ce")])
    fe.Estimator(pipeline=pipeline, network=network, epochs=1, log_steps=None).fit()
    for ours, theirs in zip(model.get_weights(), oracle.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_last_partial_batch_trains_as_keras_fit():
    """drop_last=False (FastEstimator's default): 40 samples at batch 16 train 3 steps (16, 16,
    8), the last averaged over its 8 samples, exactly as Keras' fit does on the same order."""
    from fe_dist import sharding
    data = _data(40)
    x = (data["x"].astype(np.float32) / 255.0)[..., None]
    keras.utils.set_random_seed(4)
    oracle = _tiny()()
    start = oracle.get_weights()
    oracle.compile(optimizer=keras.optimizers.SGD(0.5),
                   loss=keras.losses.SparseCategoricalCrossentropy())
    order = sharding.epoch_permutation(40, 0, 0)
    oracle.fit(x[order], data["y"][order], batch_size=16, epochs=1, shuffle=False, verbose=0)

    def model_fn():
        m = _tiny()()
        m.set_weights(start)
        return m
    model = fe.build(model_fn=model_fn, optimizer_fn=lambda: keras.optimizers.SGD(0.5),
                     model_name="partial")
    seen = _Seen()
    pipeline = fe.Pipeline(train_data=NumpyDataset({"x": x, "y": data["y"]}), batch_size=16)
    network = fe.Network(ops=[ModelOp(model=model, inputs="x", outputs="y_pred"),
                              CrossEntropy(inputs=("y_pred", "y"), outputs="ce"),
                              UpdateOp(model=model, loss_name="ce")])
    summary = fe.Estimator(pipeline=pipeline, network=network, epochs=1, traces=seen,
                           log_steps=None).fit()
    assert summary.records[0].steps == 3 and summary.records[0].train_samples == 40
    assert seen.begin == [(1, 1), (2, 2), (3, 3)]
    for ours, theirs in zip(model.get_weights(), oracle.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    _, kept = _fe1_program(12, epochs=1, name="kept")  # 64 = 5 x 12 + 4
    assert kept.fit().records[0].steps == 6


def test_train_steps_per_epoch_cuts_short_and_extends():
    _, short = _fe1_program(16, epochs=2, train_steps_per_epoch=2, name="short")
    assert [r.steps for r in short.fit().records] == [2, 2]
    _, long = _fe1_program(16, epochs=1, train_steps_per_epoch=9, name="long")  # 64 samples
    assert [r.steps for r in long.fit().records] == [9]
    _, capped = _fe1_program(16, epochs=1, max_train_steps_per_epoch=9, name="capped")
    assert [r.steps for r in capped.fit().records] == [4]


def test_model_saver_writes_after_the_epochs_fastestimator_does(tmp_path):
    model = fe.build(model_fn=_tiny(), optimizer_fn="adam", model_name="saved")
    saver = ModelSaver(model=model, save_dir=tmp_path, frequency=2)
    pipeline = fe.Pipeline(train_data=NumpyDataset(_data()), batch_size=16,
                           ops=[ExpandDims(inputs="x", outputs="x")])
    network = fe.Network(ops=[ModelOp(model=model, inputs="x", outputs="y_pred"),
                              CrossEntropy(inputs=("y_pred", "y"), outputs="ce"),
                              UpdateOp(model=model, loss_name="ce")])
    fe.Estimator(pipeline=pipeline, network=network, epochs=5, traces=saver,
                 log_steps=None).fit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved_epoch_2.weights.h5",
                                                          "saved_epoch_4.weights.h5"]


# -- programs mixing the numberings are refused ----------------------------------------------------
def test_seed_scheduler_in_fe1_program_refused():
    with pytest.raises(ConfigError, match=r"Pipeline batch_size: Scheduler\(\{0: 16.*counts "
                                          r"epochs from 0.*FastEstimator 1\.x program"):
        _fe1_program(Scheduler({0: 16, 2: 32}), name="mixed1")


def test_fe1_scheduler_in_seed_program_refused():
    model = fe_seed.build(model_def=_tiny(), model_name="mixed2", loss_name="ce")
    data = _data()
    from fe_dist.op.tensorop import Minmax as SeedMinmax
    from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
    from fe_dist.op.tensorop.model import ModelOp as SeedModelOp
    pipeline = fe_seed.Pipeline(data={"train": {"x": data["x"][..., None], "y": data["y"]}},
                                batch_size=16,
                                ops=[EpochScheduler({1: SeedMinmax(inputs="x", outputs="x")})])
    network = fe_seed.Network(ops=[SeedModelOp(inputs="x", model=model, outputs="y_pred"),
                                   SparseCategoricalCrossentropy(inputs=("y", "y_pred"),
                                                                 outputs="ce")])
    with pytest.raises(ConfigError, match=r"Pipeline ops\[0\]: fe1\.EpochScheduler.*counts "
                                          r"epochs from 1.*fe_dist program.*import fe_dist\.fe1"):
        fe_seed.Estimator(pipeline=pipeline, network=network, epochs=2)
    fe1_pipeline = fe.Pipeline(train_data=NumpyDataset({"x": data["x"][..., None],
                                                        "y": data["y"]}), batch_size=16)
    with pytest.raises(ConfigError, match=r"the Pipeline \(fe_dist\.fe1\.pipeline\.Pipeline\) "
                                          r"counts epochs from 1"):
        fe_seed.Estimator(pipeline=fe1_pipeline, network=network, epochs=2)


def test_seed_lr_scheduler_and_optimizer_schedule_in_fe1_program_refused():
    from fe_dist.trace.adapt import LRScheduler as SeedLRScheduler
    model = fe.build(model_fn=_tiny(), optimizer_fn="adam", model_name="mixed3")
    with pytest.raises(ConfigError, match=r"LRScheduler.*counts epochs and steps from 0"):
        _fe1_program(16, traces=SeedLRScheduler(model=model, lr_fn=lambda step: 0.1),
                     name="mixed4")
    with pytest.raises(ConfigError, match=r"model 'mixed5' optimizer: Scheduler"):
        _fe1_program(16, optimizer=Scheduler({0: "adam", 1: "sgd"}), name="mixed5")


def test_fe1_epoch_scheduler_from_zero_refused():
    with pytest.raises(ConfigError, match=r"key 0 is not an epoch of a FastEstimator 1\.x"):
        EpochScheduler({0: "a", 2: "b"})


# -- FE 1.x names against oracles ------------------------------------------------------------------
def test_cross_entropy_forms_match_keras():
    rng = np.random.default_rng(1)
    probs = tf.nn.softmax(rng.normal(size=(6, 4))).numpy().astype(np.float32)
    labels = rng.integers(0, 4, 6)
    ce = CrossEntropy(inputs=("y_pred", "y"), outputs="ce")
    np.testing.assert_allclose(ce.forward([tf.constant(probs), tf.constant(labels)], {}),
                               keras.losses.sparse_categorical_crossentropy(labels, probs),
                               rtol=1e-6)
    onehot = np.eye(4, dtype=np.float32)[labels] * 0.8 + 0.05
    np.testing.assert_allclose(ce.forward([tf.constant(probs), tf.constant(onehot)], {}),
                               keras.losses.categorical_crossentropy(onehot, probs), rtol=1e-6)
    p = rng.random((6, 1)).astype(np.float32)
    t = rng.integers(0, 2, (6, 1))
    np.testing.assert_allclose(ce.forward([tf.constant(p), tf.constant(t)], {}),
                               keras.losses.binary_crossentropy(t.astype(np.float32), p),
                               rtol=1e-6)
    assert ce.form_of(tf.constant(onehot), tf.constant(probs)) == "categorical"
    assert ce.form_of(tf.constant(labels), tf.constant(probs)) == "sparse"
    assert ce.form_of(tf.constant(t), tf.constant(p)) == "binary"


def test_numpy_ops_follow_fastestimator_formulas():
    x = np.random.default_rng(2).integers(0, 256, (3, 5, 5, 3), dtype=np.uint8)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
    got = Normalize(inputs="x", outputs="x", mean=mean, std=std).forward_batch(tf.constant(x), {})
    np.testing.assert_allclose(got, (x - np.array(mean) * 255) / (np.array(std) * 255),
                               rtol=1e-5)
    got = Minmax(inputs="x", outputs="x").forward_batch(tf.constant(x), {})
    lo, hi = x.min(axis=(1, 2, 3), keepdims=True), x.max(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(got, (x - lo) / (hi - lo), rtol=1e-6)
    grey = x[..., 0]
    assert ExpandDims(inputs="x", outputs="x").forward(grey[0], {}).shape == (5, 5, 1)
    assert ExpandDims(inputs="x", outputs="x", axis=0).forward(grey[0], {}).shape == (1, 5, 5)
    assert ExpandDims(inputs="x", outputs="x").forward_batch(tf.constant(grey), {}).shape == \
        (3, 5, 5, 1)


def test_numpy_dataset_split():
    ds = NumpyDataset({"x": np.arange(100), "y": np.arange(100) * 2})
    test = ds.split(0.25)
    a, b = NumpyDataset({"x": np.arange(10)}).split(3, 2)
    assert (len(ds), len(test), len(a), len(b)) == (75, 25, 3, 2)
    assert set(ds.data["x"]).isdisjoint(test.data["x"])
    assert set(ds.data["x"]) | set(test.data["x"]) == set(range(100))
    np.testing.assert_array_equal(test.data["y"], test.data["x"] * 2)
    again = NumpyDataset({"x": np.arange(100), "y": np.arange(100) * 2}).split(0.25)
    np.testing.assert_array_equal(again.data["x"], test.data["x"])  # the same on every rank
    with pytest.raises(ConfigError, match="leaving none"):
        NumpyDataset({"x": np.arange(4)}).split(4)


def test_architectures_have_fastestimator_structure():
    lenet = LeNet()
    assert lenet.output_shape == (None, 10)
    assert [type(layer).__name__ for layer in lenet.layers] == [
        "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Conv2D", "Flatten", "Dense", "Dense"]
    resnet = ResNet9()
    kinds = [type(layer).__name__ for layer in resnet.layers]
    assert resnet.output_shape == (None, 10)
    assert (kinds.count("Conv2D"), kinds.count("BatchNormalization"), kinds.count("Add"),
            kinds.count("MaxPooling2D")) == (8, 8, 2, 3)
    assert [layer.filters for layer in resnet.layers if kinds[resnet.layers.index(layer)] ==
            "Conv2D"] == [64, 128, 128, 128, 256, 512, 512, 512]
    # Parameters: convolutions (3x3 kernels + biases), BatchNorm (4 per channel), the dense layer.
    convs = [(3, 64), (64, 128), (128, 128), (128, 128), (128, 256), (256, 512), (512, 512),
             (512, 512)]
    expected = sum(9 * i * o + o for i, o in convs) + sum(4 * o for _, o in convs) + 512 * 10 + 10
    assert resnet.count_params() == expected


def test_to_number():
    np.testing.assert_array_equal(to_number(tf.constant([1.5, 2.0])), [1.5, 2.0])
    assert to_number(3).item() == 3


def test_merge_grad_and_unsupported_arguments_refused():
    model = fe.build(model_fn=_tiny(), optimizer_fn="adam", model_name="merge")
    with pytest.raises(ConfigError, match=r"merge_grad=4.*max_rank_batch"):
        UpdateOp(model=model, loss_name="ce", merge_grad=4)
    with pytest.raises(ConfigError, match="eval_steps_per_epoch"):
        _fe1_program(16, eval_steps_per_epoch=3, name="evalsteps")
    with pytest.raises(ConfigError, match="train_data is scheduled|scheduled"):
        fe.Pipeline(train_data=EpochScheduler({1: NumpyDataset(_data())}), batch_size=8)


def test_partial_last_batch_warns_where_dropped():
    stream = tf.data.Dataset.from_tensor_slices(_data()).apply(
        tf.data.experimental.assert_cardinality(64))
    with pytest.warns(UserWarning, match=r"a stream: of the 64 training samples, 4 at batch "
                                         r"size 12"):
        fe.Pipeline(train_data=stream, batch_size=12)


# -- the ports on one process and on 2 ranks -----------------------------------------------------
@pytest.fixture(scope="module")
def ports(tmp_path_factory):
    """One plain-process run and one 2-rank run of every port (reduced size)."""
    runs = {}
    for np_, launcher in ((1, "python"), (2, "gloo")):
        out = tmp_path_factory.mktemp(f"fe1_ports_{np_}")
        result = launch(["fe1_ports.py"], out, np=np_, launcher=launcher, timeout=900)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
        runs[np_] = read_reports(out, np_)
    return runs


def test_ports_run_with_fastestimator_values(ports):
    one, two = ports[1][0], ports[2]
    for report in [one, *two]:
        t05 = report["t05"]
        assert [r["global_batch"] for r in t05["records"]] == [32, 64, 32]  # RepeatScheduler
        # 250 samples: the last partial batch is one more step, as in FastEstimator.
        assert [r["steps"] for r in t05["records"]] == [8, 4, 8]
        assert [r["steps"] for r in report["mnist_tf"]["records"]] == [8, 8]
        assert [r["trained_models"] for r in t05["records"]] == [["m1"], ["m1"], ["m2"]]
        assert [e["m1"].split("#")[0] if "m1" in e else e["m2"].split("#")[0]
                for e in t05["optimizers"]] == ["Adam", "SGD", "Adam"]
        assert t05["final_lrs"] == {"m1_lr": pytest.approx(0.01), "m2_lr": pytest.approx(0.001)}
        t07 = report["t07"]
        assert [r["learning_rates"]["LeNet"] for r in t07["epoch_wise"]] == \
            pytest.approx([0.001, 0.00095, 0.0009])
        cycle = t07["cycle"]
        assert t07["step_lrs"]["1"] == pytest.approx(np.float32(cosine_decay(1, cycle, 1e-3)))
        assert t07["cosine"][0]["learning_rates"]["LeNet"] == pytest.approx(1e-6)
        assert t07["cosine"][1]["learning_rates"]["LeNet"] == pytest.approx(1e-6)
        assert report["t04"]["monitor_seen"] == [[1, 1, 1], [2, 2, 1], [3, 1, 2], [4, 2, 2]]
        assert "f2_score" in report["t04"]["fbeta"][0]["eval_metrics"]
        assert "accuracy" in report["mnist_tf"]["records"][-1]["eval_metrics"]
        assert "accuracy" in report["mnist_tf"]["test"]
        assert len(report["cifar10_fast"]["records"]) == 1
    # Rank 0 writes the files, where FastEstimator writes them; the other rank's folder is empty.
    assert one["t05"]["files"] == two[0]["t05"]["files"] == ["m1_epoch_2.weights.h5",
                                                             "m2_epoch_3.weights.h5"]
    assert two[1]["t05"]["files"] == []
    assert two[0]["mnist_tf"]["files"] == ["model_best_accuracy.weights.h5"]
    # Every rank reports the same run (the same records, metrics and numbering on each). The
    # ports seed nothing, as FastEstimator's programs: 1 process and 2 ranks start from other
    # random weights, so only their plans are compared.
    for name in ("mnist_tf", "t05", "t04"):
        assert two[0][name] == {**two[1][name], "files": two[0][name].get("files")} \
            if "files" in two[0][name] else two[0][name] == two[1][name]
    for name, key in (("mnist_tf", "records"), ("t05", "records"), ("t04", "monitor")):
        assert [(r["steps"], r["global_batch"], r["trained_models"]) for r in one[name][key]] == \
            [(r["steps"], r["global_batch"], r["trained_models"]) for r in two[0][name][key]]
