"""Resuming what users actually resume: other rank counts, longer runs, capped eval batches."""

from pathlib import Path

import numpy as np
import pytest

import fe_dist as fe
from fe_dist import checkpoint
from fe_dist.errors import ConfigError
from fe_dist.schedule import LRSchedule, Scheduler, build_plan, first_difference
from conftest import launch, read_reports
from test_errors import data, estimator, tiny

FILE = Path("ckpt/fe_dist_checkpoint.npz")


def _model(lr=None):
    model = fe.build(tiny(), model_name="m", loss_name="ce", lr=lr)
    model.set_weights([np.random.default_rng(i).normal(size=w.shape).astype("float32") * 0.1
                       for i, w in enumerate(model.get_weights())])
    return model


def _estimator(epochs, batch=Scheduler({0: 16, 3: 32}), ckpt=None, cap=None, lr=None, n_eval=0):
    d = data(n=96)
    if n_eval:
        d["eval"] = data(n=n_eval)["train"]
    est = estimator(batch_size=batch, model=_model(lr), epochs=epochs, d=d)
    est.checkpoint_dir, est.max_rank_batch = ckpt, cap
    return est


def _plan(world_size, cap, batch=33, epochs=2):
    est = _estimator(epochs, batch=batch, cap=cap)
    return build_plan(est.pipeline, est.network, epochs, world_size, 0, True, cap)


def test_resume_on_other_rank_counts_and_caps_when_micro_batches_differ():
    saved = _plan(world_size=2, cap=8)  # 17 per rank: 3 micro-batches
    assert saved.epochs[0].micro_batches == 3
    for world_size, cap in ((1, 8), (3, 8), (1, None), (2, 4)):
        current = _plan(world_size, cap)
        assert current.epochs[0].micro_batches != 3 or world_size == 2
        checkpoint.check_compatible(saved.to_dict(), current, 2, FILE)


def test_checkpoint_message_names_the_checkpoint_and_this_program():
    with pytest.raises(ConfigError, match=r"epoch 0, 'global_batch' differs: the checkpoint has "
                                          r"33, this program has 32\. Resume with"):
        checkpoint.check_compatible(_plan(2, None).to_dict(), _plan(2, None, batch=32), 2, FILE)
    # The ranks' plan agreement keeps its own labels.
    assert "rank 0 has 33, this rank has 32" in first_difference(_plan(2, None),
                                                                 _plan(2, None, batch=32))


def test_eval_batches_are_capped_by_max_rank_batch():
    results = {}
    for cap in (None, 8):
        est = _estimator(1, batch=32, cap=cap, n_eval=37)
        sizes = []
        make_step = est.network.get_eval_step

        def get_eval_step(*args, make_step=make_step, sizes=sizes):
            return _Recording(make_step(*args), sizes)

        est.network.get_eval_step = get_eval_step
        results[cap] = est.fit().records[0].eval_metrics, sizes
    assert results[None][1] == [32, 5]
    assert results[8][1] == [8, 8, 8, 8, 5]
    for key, value in results[None][0].items():
        assert results[8][0][key] == pytest.approx(value, rel=1e-5)


class _Recording:
    """An eval step that records the batch size of every call."""

    def __init__(self, step, sizes):
        self.step, self.sizes = step, sizes

    def __call__(self, batch):
        self.sizes.append(int(batch["x"].shape[0]))
        return self.step(batch)

    def get_concrete_function(self, *specs):
        return self.step.get_concrete_function(*specs)


def test_resume_with_more_epochs_extends_the_run(tmp_path):
    # The checkpointed run of 2 epochs never reached the batch change at epoch 3.
    first = _estimator(2, ckpt=tmp_path).fit()
    assert first.signature_epochs == [0]
    resumed_est = _estimator(5, ckpt=tmp_path)
    resumed = resumed_est.fit(resume=True)
    full_est = _estimator(5)
    full = full_est.fit()
    assert resumed.signature_epochs == full.signature_epochs == [0, 3]
    assert [r.epoch for r in resumed.records] == [0, 1, 2, 3, 4]
    assert [r.global_batch for r in resumed.records] == [16, 16, 16, 32, 32]
    for a, b in zip(resumed_est.network.models["m"].get_weights(),
                    full_est.network.models["m"].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)

    # Resuming a finished run of as many epochs trains nothing and returns its records.
    again_est = _estimator(5, ckpt=tmp_path)
    again = again_est.fit(resume=True)
    assert [r.epoch for r in again.records] == [0, 1, 2, 3, 4]
    for a, b in zip(again_est.network.models["m"].get_weights(),
                    resumed_est.network.models["m"].get_weights()):
        np.testing.assert_array_equal(a, b)

    with pytest.raises(ConfigError, match=r"has already trained 5 epochs, but this Estimator has "
                                          r"epochs=3.*Set epochs to 5 or more"):
        _estimator(3, ckpt=tmp_path).fit(resume=True)

    # fit() without resume starts over and would replace the checkpoint: it says so.
    with pytest.warns(UserWarning, match="holds a checkpoint; fit.. starts at epoch 0 and "
                                         "replaces it.*fit.resume=True. continues it"):
        _estimator(1, ckpt=tmp_path).fit()


def test_resume_refuses_a_changed_epoch_that_was_trained(tmp_path):
    _estimator(2, ckpt=tmp_path).fit()
    with pytest.raises(ConfigError, match=r"epoch 1, 'global_batch' differs: the checkpoint has "
                                          r"16, this program has 32.*epochs 0 to 1"):
        _estimator(4, batch=Scheduler({0: 16, 1: 32}), ckpt=tmp_path).fit(resume=True)


def test_resume_refuses_a_run_whose_warmup_spans_the_trained_epochs_otherwise(tmp_path):
    # Warm-up over 3 epochs of 6 steps: 18 steps. A 4-epoch run stops after epoch 1 (its
    # checkpoint is written); resumed with a larger batch from epoch 2 on, the warm-up would
    # span 15 steps, so the rates of the trained epochs would not be the resumed run's.
    # (A warm-up of more epochs than the run has is refused outright: test_plan_checks.)
    def stop(record):
        if record.epoch == 1:
            raise RuntimeError("the job ends")

    first = _estimator(4, batch=16, ckpt=tmp_path, lr=LRSchedule(0.01, warmup_epochs=3))
    first.on_epoch_end = stop
    with pytest.raises(RuntimeError, match="the job ends"):
        first.fit()
    with pytest.raises(ConfigError, match=r"'lr_warmup_steps'\['m'\] differs: the checkpoint "
                                          r"has 18, this program has 15"):
        _estimator(4, batch=Scheduler({0: 16, 2: 32}), ckpt=tmp_path,
                   lr=LRSchedule(0.01, warmup_epochs=3)).fit(resume=True)
    # A warm-up within the trained epochs is the same in any longer run.
    _estimator(2, batch=16, ckpt=tmp_path / "b", lr=LRSchedule(0.01, warmup_epochs=1)).fit()
    summary = _estimator(4, batch=16, ckpt=tmp_path / "b",
                         lr=LRSchedule(0.01, warmup_epochs=1)).fit(resume=True)
    assert len(summary.records) == 4


@pytest.mark.multirank
def test_run_stopped_on_two_ranks_resumes_on_one_with_micro_batches(tmp_path):
    """Epoch 0 (batch 32) on 2 ranks: 16 per rank, 2 micro-batches of 8; then epochs 1 and 2
    (batch 33) on one rank: 5 micro-batches. The checkpoint planned 3 for those on 2 ranks."""
    ckpt = tmp_path / "ckpt"
    runs = {}
    for name, launcher, np_, args, code in (
            ("stopped", "gloo", 2, ["--stop-after", "0", "--ckpt", str(ckpt)], False),
            ("resumed", "python", 1, ["--resume", "--ckpt", str(ckpt)], True),
            ("full", "python", 1, [], True)):
        out = runs[name] = tmp_path / name
        out.mkdir()
        proc = launch(["reliability.py", "--max-rank-batch", "8", *args], out, np=np_,
                      launcher=launcher, timeout=120)
        assert (proc.returncode == 0) == code, proc.stdout[-3000:] + proc.stderr[-3000:]
        if name == "resumed":
            assert "resuming after epoch 0" in proc.stdout
    resumed, full = read_reports(runs["resumed"], 1)[0], read_reports(runs["full"], 1)[0]
    assert [(r["world_size"], r["micro_batches"]) for r in resumed["records"]] == \
        [(2, 2), (1, 5), (1, 5)]
    for name, weights in full["weights"].items():
        for got, want in zip(resumed["weights"][name], weights):
            np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-5, atol=1e-6)
