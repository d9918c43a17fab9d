"""`AdaptiveBatch`: the decision rule, the settings refused before training, and a run whose
batches follow the measured noise scale, resumed with the same decisions."""

import keras
import numpy as np
import pytest

import fe_dist as fe
from fe_dist.errors import ConfigError
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.schedule import AdaptiveBatch, LRSchedule, Scheduler, build_plan


def test_ladder_and_decisions():
    a = AdaptiveBatch(initial=32, maximum=1024, minimum=8)
    assert a.sizes == [8, 16, 32, 64, 128, 256, 512, 1024]
    assert a.get_current_value(0) == 32
    assert a.decide(0, 70.0) == 64  # nearest in ratio
    assert a.decide(1, 5000.0) == 1024  # capped by maximum
    assert a.decide(2, 3.0) == 512  # never shrinks by more than max_shrink=2 at once
    assert a.decide(3, None) == 512  # no estimate yet: keep the batch
    assert [a.get_current_value(e) for e in range(6)] == [32, 64, 1024, 512, 512, 512]
    assert AdaptiveBatch(32, 512, target=0.5).decide(0, 256.0) == 128


def test_lr_rules():
    linear = AdaptiveBatch(32, 512, lr_rule="linear")
    linear.decide(0, 128.0)
    assert linear.lr_factor(1) == pytest.approx(128 / 32)
    ada = AdaptiveBatch(32, 512, lr_rule="adascale")
    ada.decide(0, 128.0)
    # (B_noise/initial + 1) / (B_noise/batch + 1): between 1 and batch/initial.
    assert ada.lr_factor(1) == pytest.approx((128 / 32 + 1) / (128 / 128 + 1))
    assert ada.lr_factor(0) == 1.0


@pytest.mark.parametrize("kwargs,words", [
    (dict(initial=64, maximum=32), "maximum=32 is smaller than initial=64"),
    (dict(initial=0, maximum=32), "initial must be a positive int"),
    (dict(initial=32, maximum=64, minimum=64), "minimum=64 is larger than initial=32"),
    (dict(initial=32, maximum=64, lr_rule="sqrt"), "lr_rule must be one of"),
    (dict(initial=32, maximum=64, max_shrink=0.5), "max_shrink must be a number >= 1"),
])
def test_bad_settings_are_refused(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        AdaptiveBatch(**kwargs)


def _data(n=256):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype("float32")
    return {"train": {"x": x, "y": (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1)}}


def _estimator(batch, epochs=4, checkpoint_dir=None, lr=None, n=256):
    keras.utils.set_random_seed(1)
    model = fe.build(lambda: keras.Sequential([keras.Input((6,)),
                                               keras.layers.Dense(3, activation="softmax")]),
                     model_name="m", loss_name="ce", lr=lr,
                     optimizer=lambda: keras.optimizers.SGD(0.1))
    network = fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                          SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    pipeline = fe.Pipeline(data=_data(n), batch_size=batch)
    return fe.Estimator(pipeline=pipeline, network=network, epochs=epochs, seed=2,
                        verbose=False, checkpoint_dir=checkpoint_dir), model


def test_settings_the_data_or_the_program_cannot_fill_are_refused_before_training():
    est, _ = _estimator(AdaptiveBatch(8, 512))
    with pytest.raises(ConfigError, match="maximum=512 is larger than the 256 training samples"):
        est.fit()
    est, _ = _estimator(AdaptiveBatch(2, 64, minimum=1))
    with pytest.raises(ConfigError, match="smallest batch 1 is below 2"):
        est.fit()
    with pytest.raises(ConfigError, match="AdaptiveBatch is inside a Scheduler"):
        _estimator(Scheduler({0: AdaptiveBatch(8, 64)}))
    with pytest.raises(ConfigError, match="reference_batch=8\\) and the AdaptiveBatch's "
                                          "lr_rule='linear'"):
        _estimator(AdaptiveBatch(8, 64, lr_rule="linear"), lr=LRSchedule(0.1, reference_batch=8))
    est, _ = _estimator(AdaptiveBatch(8, 64))
    plan = build_plan(est.pipeline, est.network, 4, 1, 0)
    assert plan.adaptive_batch["maximum"] == 64  # the settings every rank agrees on


def test_the_run_follows_its_decisions_and_a_resume_repeats_them(tmp_path):
    adaptive = AdaptiveBatch(initial=8, maximum=128, lr_rule="linear")
    est, model = _estimator(adaptive)
    whole = est.fit().records
    batches = [r.global_batch for r in whole]
    assert batches[0] == 8 and len(set(batches)) > 1, batches  # it did choose
    reference = AdaptiveBatch(initial=8, maximum=128)  # the rule, fed the recorded estimates
    for before, after in zip(whole, whole[1:]):
        assert after.global_batch == reference.decide(before.epoch, before.noise_scale)
        assert after.steps == 256 // after.global_batch
        # lr_rule="linear": the optimizer's own 0.1 times batch / initial.
        assert after.learning_rates["m"] == pytest.approx(0.1 * after.global_batch / 8)
    assert all(r.noise_scale is not None and r.noise_scale > 0 for r in whole)
    weights = model.get_weights()

    first, _ = _estimator(AdaptiveBatch(initial=8, maximum=128, lr_rule="linear"), epochs=2,
                          checkpoint_dir=tmp_path)
    first.fit()
    rest, resumed_model = _estimator(AdaptiveBatch(initial=8, maximum=128, lr_rule="linear"),
                                     checkpoint_dir=tmp_path)
    resumed = rest.fit(resume=True).records
    assert [r.global_batch for r in resumed] == batches
    for a, b in zip(resumed, whole):
        assert a.noise_scale == pytest.approx(b.noise_scale, rel=1e-6)
    for a, b in zip(resumed_model.get_weights(), weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.multirank
def test_one_process_and_two_ranks_choose_the_same_batches(tmp_path):
    """2 ranks measure on their shares what one process measures on its two half-batches, so
    both choose the same batches (and train to the same weights); a run checkpointed on 2 ranks
    and resumed on 1 continues with the same decisions."""
    from conftest import launch, read_reports
    from programs.adaptive import estimator, report

    proc = launch(["adaptive.py"], tmp_path, np=2, launcher="gloo", timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = read_reports(tmp_path, 2)
    est, model = estimator(4)
    single = report(est.fit(), model)
    assert len(set(single["batches"])) > 1, single["batches"]  # it did choose
    est, model = estimator(4, checkpoint_dir=tmp_path / "ckpt")
    resumed = report(est.fit(resume=True), model)
    for got in (*ranks, resumed):
        assert got["batches"] == single["batches"]
        np.testing.assert_allclose(got["noise"], single["noise"], rtol=1e-4)
        for rate, want in zip(got["rates"], single["rates"]):
            assert rate["m"] == pytest.approx(want["m"], rel=1e-4)
        for w, want in zip(got["weights"], single["weights"]):
            np.testing.assert_allclose(np.array(w), np.array(want), rtol=1e-4, atol=1e-5)
    assert ranks[0]["per_rank"][0] == [4, 4]


def test_an_elastic_rollback_repeats_the_decisions(monkeypatch):
    """A failure after epoch 1's decision (in its on_epoch_end) rolls back to epoch 0's commit
    (emulated elastic loop, as tests/test_run_state.py does): the redone epoch 1 measures from
    the moving averages of that commit, not with epoch 1 counted twice, and the run makes the
    uninterrupted run's decisions."""
    from test_run_state import InjectedFailure, _elastic_loop

    want = _estimator(AdaptiveBatch(initial=8, maximum=128))[0].fit().records
    failures = []
    monkeypatch.setattr(fe.distributed.get_context(), "run_elastic", _elastic_loop(failures))
    est, _ = _estimator(AdaptiveBatch(initial=8, maximum=128))
    armed = [True]

    def on_epoch_end(record):
        if record.epoch == 1 and armed[0]:
            armed[0] = False
            raise InjectedFailure("lost a rank after the decision")

    est.on_epoch_end = on_epoch_end
    got = est.fit().records
    assert failures == ["recovered"]
    assert [r.global_batch for r in got] == [r.global_batch for r in want]
    assert [r.noise_scale for r in got] == pytest.approx([r.noise_scale for r in want],
                                                         rel=1e-6)
