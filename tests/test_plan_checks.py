"""What keeps every rank on one program: seeded streams read alike on every rank, the plan
holds the settings that make ranks diverge or hang (optimizer hyperparameters, learning rates,
allreduce settings), a stream shorter than planned, a Keras LR schedule together with
fe_dist's, augmentation keys under a fused first Resize, and a warm-up longer than the run.

One-process cases emulate rank 1 by setting the context's rank; the 2-rank launch runs
tests/programs/planchecks.py once for every multi-rank case."""

from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

import fe_dist as fe
from fe_dist import checkpoint
from fe_dist.dataset import LabeledDirDataset, TFDataset
from fe_dist.distributed import get_context
from fe_dist.errors import ConfigError
from fe_dist.op.numpyop.univariate import Cutout
from fe_dist.op.tensorop import Resize, TensorOp
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.schedule import LRSchedule, build_plan, first_difference
from fe_dist.trace.adapt import LRScheduler
from conftest import REPO, launch, read_reports

get_context()  # pin the threads before the tests make tensors


def _model(optimizer="sgd", lr=None, name="m"):
    keras.utils.set_random_seed(1)
    return fe.build(lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]),
                    model_name=name, optimizer=optimizer, loss_name="ce", lr=lr)


def _network(model, **kwargs):
    return fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                       SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce",
                                                     from_logits=True)], **kwargs)


def _arrays(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(n, 4)).astype(np.float32), "y": rng.integers(0, 3, n),
            "id": np.arange(n)}


def _stream(n=64, shuffle_seed=None, length=None):
    ds = tf.data.Dataset.from_tensor_slices(_arrays(n))
    if shuffle_seed is not None:
        ds = ds.shuffle(n, seed=shuffle_seed)
    return ds if length is None else ds.filter(lambda e: True)  # unknown length


def _plan(pipeline, network, epochs=2, traces=None):
    return build_plan(pipeline, network, epochs, 1, 0, True, None, traces)


# -- item 3: seeded streams ------------------------------------------------------------------------
class _Noise(TensorOp):
    def forward(self, data, state):
        return data + tf.random.uniform(tf.shape(data))


def test_rank_one_reads_seeded_streams_in_rank_zero_order_and_draws_its_own_noise(monkeypatch):
    """Under enable_deterministic, ds.shuffle(seed=7) and list_files(seed=3) give rank 1 rank
    0's order (TensorFlow's global seed is the same on every rank), while a random op in the
    pipeline still draws other numbers on rank 1 than on rank 0."""
    ctx = get_context()
    seen = []
    for rank in (0, 1, 0):
        monkeypatch.setattr(ctx, "rank", rank)
        fe.enable_deterministic(5)
        shuffled = _stream(shuffle_seed=7)
        files = tf.data.Dataset.list_files(str(REPO / "fe_dist" / "*.py"), seed=3)
        pipeline = fe.Pipeline({"train": {"x": np.zeros((8, 4), np.float32)}}, batch_size=8,
                               ops=[_Noise(inputs="x", outputs="x")])
        noise = next(iter(pipeline.get_train_dataset(0, 8, SimpleNamespace(
            size=1, rank=0, threads=1))))["x"].numpy()
        seen.append(([int(e["id"]) for e in shuffled], [f.numpy() for f in files], noise))
    monkeypatch.setattr(ctx, "rank", 0)
    (ids0, files0, noise0), (ids1, files1, noise1), (_, _, noise0_again) = seen
    assert ids1 == ids0 and files1 == files0
    assert not np.allclose(noise1, noise0)  # each rank its own stream ...
    np.testing.assert_array_equal(noise0_again, noise0)  # ... reproducibly


def test_streams_in_other_orders_disagree_in_the_plan_naming_the_split():
    model = _model()
    plans = [_plan(fe.Pipeline({"train": _stream(shuffle_seed=seed), "eval": _arrays(16)},
                               batch_size=16), _network(model)) for seed in (7, 7, 8)]
    assert first_difference(plans[0], plans[1]) is None
    diff = first_difference(plans[0], plans[2])
    assert diff is not None and "'train' stream" in diff and "seed" in diff, diff


# -- item 6: settings that make ranks diverge, in the plan ------------------------------------------
def _sgd(lr=0.1, momentum=0.9):
    return lambda: keras.optimizers.SGD(lr, momentum=momentum)


def _variant(optimizer=_sgd(), lr=None, **net):
    """A small program; each test changes one setting (what one rank would do otherwise)."""
    pipeline = fe.Pipeline({"train": _arrays()}, batch_size=16)
    return _plan(pipeline, _network(_model(optimizer, lr), **net))


def _by_epoch(epoch, step):
    return 0.1 if epoch == 0 else 0.05


def _by_epoch_other(epoch, step):
    return 0.1 if epoch == 0 else 0.02


@pytest.mark.parametrize("reference,changed,words", [
    ({}, {"optimizer": _sgd(momentum=0.5)},
     "epoch 0, 'optimizer_settings'['m']['momentum'] differs: rank 0 has 0.9, this rank has 0.5"),
    ({}, {"optimizer": _sgd(lr=0.2)}, "'optimizer_settings'['m']['learning_rate'] differs"),
    ({"lr": 0.1}, {"lr": 0.2},
     "epoch 0, 'learning_rates'['m'][0] differs: rank 0 has 0.1, this rank has 0.2"),
    ({"lr": _by_epoch}, {"lr": _by_epoch_other},
     "epoch 1, 'learning_rates'['m'][0] differs: rank 0 has 0.05, this rank has 0.02"),
    ({}, {"gradient_compression": "fp16"},
     "'network'['gradient_compression'] differs: rank 0 has None, this rank has 'fp16'"),
    ({}, {"allreduce": "per_tensor"},
     "'network'['allreduce'] differs: rank 0 has 'grouped', this rank has 'per_tensor'"),
])
def test_plan_names_a_setting_one_rank_has_otherwise(reference, changed, words):
    plan = _variant(**reference)
    assert first_difference(plan, _variant(**reference)) is None  # Keras' auto-names aside
    diff = first_difference(plan, _variant(**changed))
    assert diff is not None and words in diff, diff


def test_plan_holds_a_keras_schedule_config_without_the_optimizer_name():
    def adam(decay):
        return lambda: keras.optimizers.Adam(
            keras.optimizers.schedules.ExponentialDecay(0.1, 10, decay))
    plans = [_plan(fe.Pipeline({"train": _arrays()}, batch_size=16),
                   _network(_model(adam(decay)))) for decay in (0.9, 0.9, 0.5)]
    assert first_difference(plans[0], plans[1]) is None
    diff = first_difference(plans[0], plans[2])
    assert diff is not None and "['decay_rate'] differs" in diff, diff


def test_resume_compares_the_trained_epochs_optimizer_settings_and_reads_older_plans():
    saved = _variant().to_dict()
    file = Path("ckpt/fe_dist_checkpoint.npz")
    with pytest.raises(ConfigError, match=r"epoch 0, 'optimizer_settings'\['m'\]\['momentum'\] "
                                          r"differs: the checkpoint has 0.9, this program has "
                                          r"0.5"):
        checkpoint.check_compatible(saved, _variant(_sgd(momentum=0.5)), 1, file)
    # How gradients travel may change on resume (as the number of ranks may).
    checkpoint.check_compatible(saved, _variant(gradient_compression="fp16"), 2, file)
    # A checkpoint written before these settings were planned still resumes.
    old = {k: v for k, v in saved.items() if k != "network"}
    old["epochs"] = [{k: v for k, v in e.items()
                      if k not in ("optimizer_settings", "learning_rates")}
                     for e in saved["epochs"]]
    checkpoint.check_compatible(old, _variant(), 2, file)


def test_a_plan_agreed_again_after_training_set_a_rate_holds_the_rate_as_built():
    """fe_dist sets optimizers' own rates as it trains (an AdaptiveBatch's lr_rule); a plan
    agreed again later (an elastic reset, where a joining rank has a fresh optimizer) must not
    hold the rate set since."""
    model = _model(_sgd())
    pipeline = fe.Pipeline({"train": _arrays()}, batch_size=16)
    before = _plan(pipeline, _network(model))
    model.fe_dist.optimizers[0].learning_rate = 0.05
    assert first_difference(before, _plan(pipeline, _network(model))) is None


# -- item 7: a stream shorter than planned ------------------------------------------------------------
def _estimator(train, eval_data=None, epochs=1, optimizer="sgd", lr=None, traces=None):
    model = _model(optimizer, lr)
    data = {"train": train, **({"eval": eval_data} if eval_data is not None else {})}
    return fe.Estimator(fe.Pipeline(data, batch_size=16), _network(model), epochs=epochs,
                        verbose=False, traces=traces(model) if traces else None)


def test_a_stream_shorter_than_num_samples_raises_naming_split_and_counts():
    with pytest.raises(ConfigError, match=r"'train' stream ended after 40 samples, but the plan "
                                          r"has num_samples=64"):
        _estimator(TFDataset(_stream(40, length="unknown"), num_samples=64)).fit()
    with pytest.raises(ConfigError, match=r"'eval' stream ended after 20 samples, but the plan "
                                          r"has num_samples=32"):
        _estimator(_arrays(), TFDataset(_stream(20, length="unknown"), num_samples=32)).fit()
    # A known length says so at once.
    with pytest.raises(ConfigError, match=r"num_samples=64 .* holds 40"):
        TFDataset(_stream(40), num_samples=64)


# -- item 8: a Keras LearningRateSchedule with fe_dist's learning rate ------------------------------
def test_a_keras_lr_schedule_with_fe_lr_or_lr_scheduler_is_refused_before_training():
    def keras_schedule():
        return keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9))

    with pytest.raises(ConfigError, match=r"model 'm'.*ExponentialDecay.*fe.build\(lr=\.\.\.\)"
                                          r".*[Dd]rop one"):
        _estimator(_arrays(), optimizer=keras_schedule, lr=0.1).fit()
    with pytest.raises(ConfigError, match=r"model 'm'.*ExponentialDecay.*LRScheduler"):
        _estimator(_arrays(), optimizer=keras_schedule,
                   traces=lambda m: [LRScheduler(m, lambda epoch: 0.1)]).fit()


# -- item 10: augmentation keys with a fused Resize; warm-up longer than the run ---------------------
def _write_folder(root, x):
    for i, image in enumerate(x):
        path = root / f"c{i % 2}" / f"{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tf.io.encode_png(image).numpy())


def test_a_folder_with_a_fused_first_resize_augments_as_arrays_do(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (16, 12, 12, 1), np.uint8)
    _write_folder(tmp_path, x)
    folder = LabeledDirDataset(tmp_path)
    order = [int(Path(f).stem) for f in folder.files]
    arrays = {"x": x[order], "y": folder.column("y")}
    ctx = SimpleNamespace(size=1, rank=0, threads=1)
    batches = []
    for source in (folder, arrays):
        pipeline = fe.Pipeline({"train": source}, batch_size=8, ops=[
            Resize(inputs="x", size=(12, 12), outputs="x"),
            Cutout(inputs="x", outputs="x", size=6)])
        batches.append([b["x"].numpy() for b in pipeline.get_train_dataset(0, 8, ctx)])
    assert pipeline._load_plan(folder, pipeline.get_ops(0, "train"), "train", ctx,
                               8)[0].first_op is not None  # the folder fused the Resize
    np.testing.assert_array_equal(np.concatenate(batches[0]), np.concatenate(batches[1]))


def test_warmup_epochs_longer_than_the_run_is_refused():
    with pytest.raises(ConfigError, match=r"model 'm'.*warmup_epochs=3.*epochs=2.*warmup_steps"):
        _estimator(_arrays(), epochs=2, lr=LRSchedule(0.1, warmup_epochs=3)).fit()
    _estimator(_arrays(), epochs=2, lr=LRSchedule(0.1, warmup_epochs=2)).fit()


# -- 2 ranks: one launch for the seeded stream, the plan settings and a rank's short stream ---------
@pytest.mark.multirank
def test_two_ranks_read_one_seeded_stream_agree_on_settings_and_end_on_a_short_stream(tmp_path):
    proc = launch(["planchecks.py"], tmp_path, np=2, launcher="gloo", timeout=420,
                  env={"FE_DIST_STALL_TIMEOUT": "90"})
    reports = read_reports(tmp_path, 2)
    # A seeded shuffle: every rank takes its chunk of the same global batches, so the epoch
    # trains every sample once.
    ids = sorted(i for r in reports for i in r["ids"])
    assert ids == list(range(64)), ids
    assert reports[0]["weights"] == reports[1]["weights"]
    for case, words in [("stream", "'train' stream"), ("momentum", "['momentum']"),
                        ("lr", "'learning_rates'['m']"),
                        ("fp16", "['gradient_compression']"), ("per_tensor", "['allreduce']")]:
        for report in reports:
            error = report["errors"][case]
            assert error is not None and error[0] == "DistributedError" and words in error[1], \
                (case, report["rank"], error)
    # Last: rank 1's stream ends two steps early. That rank alone fails (the other waits in the
    # step's allreduce), so it ends the job at once, naming the split and the counts.
    assert proc.returncode != 0
    assert "'train' stream ended after 96 samples, but the plan has num_samples=128" in \
        proc.stdout + proc.stderr, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "stall" not in proc.stderr

