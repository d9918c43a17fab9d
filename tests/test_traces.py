"""Traces: hooks, metrics over the whole eval set, BestModelSaver, EarlyStopping, LRScheduler,
trace state in checkpoints, the checks before training, and the agreement of the ranks at the end
of each epoch-level hook. One 2-rank launch (tests/programs/traces.py) checks them on uneven
eval shares against a single-process numpy computation."""

import dataclasses
import json
import re

import keras
import numpy as np
import pytest

import fe_dist as fe
from conftest import launch, read_reports
from fe_dist.errors import ConfigError, DistributedError
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.schedule import Scheduler, first_difference
from fe_dist.trace import Data, System, Trace
from fe_dist.trace.adapt import EarlyStopping, LRScheduler
from fe_dist.trace.io import BestModelSaver
from fe_dist.trace.metric import Accuracy, ConfusionMatrix, F1Score, Precision, Recall
from fe_dist.trace.runner import Traces


def _data(n_train=96, n_eval=37, n_test=29):
    rng = np.random.default_rng(5)
    split = lambda n: {"x": rng.random((n, 8, 8, 1), dtype=np.float32),  # noqa: E731
                       "y": rng.integers(0, 4, n)}
    return {"train": split(n_train), "eval": split(n_eval), "test": split(n_test)}


def _model(name="m", lr=None):
    keras.utils.set_random_seed(1)
    return fe.build(lambda: keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                              keras.layers.Dense(4, activation="softmax")]),
                    model_name=name, optimizer=lambda: keras.optimizers.SGD(0.5),
                    loss_name="ce", lr=lr)


def _estimator(traces, epochs=2, model=None, net_ops=None, **kwargs):
    model = model or _model()
    net_ops = net_ops or [ModelOp(inputs="x", model=model, outputs="p"),
                          SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")]
    pipeline = fe.Pipeline(data=_data(), batch_size={"train": 16, "eval": 16, "test": 8})
    return fe.Estimator(pipeline=pipeline, network=fe.Network(net_ops), epochs=epochs,
                        verbose=False, traces=traces, **kwargs)


def numpy_scores(y, pred, classes):
    """Accuracy, confusion matrix and per-class precision/recall/F1, in plain numpy."""
    cm = np.zeros((classes, classes), np.int64)
    for t, p in zip(y, pred):
        cm[t, p] += 1
    tp = np.diag(cm).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.nan_to_num(tp / cm.sum(axis=0))
        recall = np.nan_to_num(tp / cm.sum(axis=1))
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    return {"accuracy": float((y == pred).mean()), "confusion_matrix": cm,
            "precision": precision, "recall": recall, "f1_score": f1}


def test_metrics_equal_numpy_on_the_whole_eval_and_test_sets():
    traces = [Accuracy("y", "p"), Precision("y", "p"), Recall("y", "p"), F1Score("y", "p"),
              F1Score("y", "p", output_name="f1_macro", average="macro"),
              ConfusionMatrix("y", "p", num_classes=4)]
    est = _estimator(traces, epochs=1)
    record = est.fit().records[0]
    model, data = est.network.models["m"], _data()
    for mode, metrics in (("eval", record.eval_metrics), ("test", est.test())):
        pred = np.argmax(model(data[mode]["x"]).numpy(), axis=-1)
        want = numpy_scores(data[mode]["y"], pred, 4)
        assert metrics["accuracy"] == pytest.approx(want["accuracy"], abs=1e-12)
        assert metrics["accuracy"] == pytest.approx(metrics["ce_accuracy"], abs=1e-6)
        np.testing.assert_array_equal(metrics["confusion_matrix"], want["confusion_matrix"])
        for key in ("precision", "recall", "f1_score"):
            np.testing.assert_allclose(metrics[key], want[key], atol=1e-12)
        assert metrics["f1_macro"] == pytest.approx(want["f1_score"].mean(), abs=1e-12)
    assert "precision" not in record.log_line()  # arrays are in the record, not the log line


class Recorder(Trace):
    """Records every hook call: (hook, mode, epoch, global step, keys seen)."""

    def __init__(self, inputs=("p",), mode=None):
        super().__init__(inputs=inputs, mode=mode)
        self.calls = []

    def _note(self, hook, data):
        s = self.system
        self.calls.append((hook, s.mode, s.epoch_idx, s.global_step, sorted(data)))

    def on_begin(self, data): self._note("on_begin", data)
    def on_epoch_begin(self, data): self._note("on_epoch_begin", data)
    def on_batch_end(self, data): self._note("on_batch_end", data)
    def on_end(self, data): self._note("on_end", data)

    def on_epoch_end(self, data):
        self._note("on_epoch_end", data)
        data.write_with_log(f"seen_{self.system.mode}", float(self.system.epoch_idx))


def test_hooks_run_in_fastestimator_order_with_only_the_keys_asked_for():
    rec = Recorder()
    summary = _estimator([rec], epochs=2).fit()
    calls = rec.calls
    assert calls[0] == ("on_begin", "train", 0, 0, []) and calls[-1][0] == "on_end"
    epoch0 = [c[:4] for c in calls[1:] if c[2] == 0]
    steps = 96 // 16
    assert epoch0 == ([("on_epoch_begin", "train", 0, 0)]
                      + [("on_batch_end", "train", 0, s) for s in range(1, steps + 1)]
                      + [("on_epoch_end", "train", 0, steps), ("on_epoch_begin", "eval", 0, steps)]
                      + [("on_batch_end", "eval", 0, steps)] * 3  # 37 eval samples, batch 16
                      + [("on_epoch_end", "eval", 0, steps)])
    assert {tuple(c[4]) for c in calls if c[0] == "on_batch_end"} == {("p",)}
    # The eval on_epoch_end sees the losses over the whole eval set.
    assert [c[4] for c in calls if c[0] == "on_epoch_end" and c[1] == "eval"][0] == \
        ["ce", "ce_accuracy"]
    assert summary.records[1].train_metrics["seen_train"] == 1.0  # train values apart
    assert summary.records[1].eval_metrics["seen_eval"] == 1.0


class CustomF1Score(Trace):
    """FastEstimator's "trace communication" tutorial trace: F1 from what the Precision and
    Recall traces before it wrote."""

    def __init__(self, mode="eval"):
        super().__init__(inputs=("precision", "recall"), outputs="custom_f1", mode=mode)
        self.batch_keys = set()

    def on_batch_end(self, data):
        self.batch_keys.update(data)

    def on_epoch_end(self, data):
        p, r = np.asarray(data["precision"]), np.asarray(data["recall"])
        with np.errstate(invalid="ignore", divide="ignore"):
            data.write_with_log(self.outputs[0], np.nan_to_num(2 * p * r / (p + r)))


def test_a_trace_reads_what_earlier_traces_wrote():
    custom = CustomF1Score()
    est = _estimator([Precision("y", "p"), Recall("y", "p"), custom, F1Score("y", "p")],
                     epochs=1)
    # Not asked of the compiled step: no step produces "precision".
    assert est.traces.keep(0, "eval") == ("p", "y")
    record = est.fit().records[0]
    np.testing.assert_allclose(record.eval_metrics["custom_f1"], record.eval_metrics["f1_score"],
                               atol=1e-12)
    assert custom.batch_keys == {"p", "y"}  # on_batch_end has batch keys only


def test_train_trace_values_are_kept_apart_from_eval_values():
    from fe_dist import history
    from fe_dist.summary import EpochRecord

    est = _estimator([Accuracy("y", "p", mode="train"), Accuracy("y", "p"),
                      Accuracy("y", "p", output_name="train_only", mode="train")], epochs=1)
    record = est.fit().records[0]
    model, data = est.network.models["m"], _data()
    pred = np.argmax(model(data["eval"]["x"]).numpy(), axis=-1)
    assert record.eval_metrics["accuracy"] == pytest.approx(float((pred == data["eval"]["y"])
                                                                  .mean()), abs=1e-12)
    assert set(record.train_metrics) == {"accuracy", "train_only"}
    assert record.train_metrics["accuracy"] == record.train_metrics["train_only"]
    assert "train_only" not in record.eval_metrics
    line = record.log_line()
    assert (f"| train accuracy={record.train_metrics['accuracy']:.4f} "
            f"train_only={record.train_metrics['train_only']:.4f} | eval ") in line
    row = history.flatten(record)
    assert row["train_accuracy"] == record.train_metrics["accuracy"]
    assert row["eval_accuracy"] == record.eval_metrics["accuracy"]
    assert ("train accuracy / eval accuracy", [("train accuracy", "train", "accuracy"),
                                               ("eval accuracy", "eval", "accuracy")]) \
        in history.panels([record])
    old = {k: v for k, v in dataclasses.asdict(record).items() if k != "train_metrics"}
    assert EpochRecord(**old).train_metrics == {}  # records saved before the field still load


def test_best_model_saver_early_stopping_and_their_state_in_the_checkpoint(tmp_path):
    def traces(model):
        return [BestModelSaver(model, tmp_path / "best", monitor="ce"),
                EarlyStopping(monitor="ce", baseline=0.0, patience=2)]  # never improves

    model = _model()
    est = _estimator(traces(model), epochs=1, model=model, checkpoint_dir=tmp_path / "ckpt")
    first = est.fit().records
    assert (tmp_path / "best" / "m_best_ce.weights.h5").exists()
    assert first[0].eval_metrics["min_ce"] == first[0].eval_metrics["ce"]
    assert first[0].eval_metrics["since_best_ce"] == 0
    # Resumed for up to 6 epochs: the restored wait counter (1) reaches patience 2 after
    # epoch 1; a fresh one would train until epoch 2.
    model = _model()
    est = _estimator(traces(model), epochs=6, model=model, checkpoint_dir=tmp_path / "ckpt")
    records = est.fit(resume=True).records
    assert [r.epoch for r in records] == [0, 1]
    saver, stopper = est.traces.all
    assert stopper.wait == 2 and stopper.stopped_epoch == 1
    ce = [r.eval_metrics["ce"] for r in records]
    assert records[1].eval_metrics["min_ce"] == min(ce)  # the best carried over the resume
    assert saver.best == min(ce) and saver.best_epoch == int(np.argmin(ce))


def test_a_stopped_run_stays_stopped_and_tests_with_the_last_trained_schedule(tmp_path):
    """After EarlyStopping, test() uses the schedule of the last epoch trained (here the only
    one running model "a"), and fit(resume=True) trains no further epoch."""
    def program():
        a, b = _model("a"), _model("b")
        ops = [Scheduler({0: ModelOp(inputs="x", model=a, outputs="p"),
                          1: ModelOp(inputs="x", model=b, outputs="p")}),
               SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")]
        return _estimator([EarlyStopping(monitor="ce", baseline=0.0)], epochs=3, model=a,
                          net_ops=ops, checkpoint_dir=tmp_path)  # stops after epoch 0

    est = program()
    records = est.fit().records
    assert [r.epoch for r in records] == [0] and records[0].stopped_training
    b_before = [w.copy() for w in est.network.models["b"].get_weights()]
    tested = est.test()
    test = _data()["test"]

    def test_ce(name):
        probs = est.network.models[name](test["x"]).numpy().astype(np.float64)
        return float(-np.log(probs[np.arange(len(test["y"])), test["y"]]).mean())

    assert tested["ce"] == pytest.approx(test_ce("a"), rel=1e-5)
    assert abs(test_ce("b") - test_ce("a")) > 1e-3  # b (the planned last epoch's) differs
    resumed = program()
    assert [r.epoch for r in resumed.fit(resume=True).records] == [0]
    for w, w0 in zip(resumed.network.models["b"].get_weights(), b_before):
        np.testing.assert_array_equal(w, w0)  # b (epochs 1-2) never trained


def test_lr_scheduler_sets_the_rate_by_epoch_or_step():
    model = _model()
    summary = _estimator([LRScheduler(model, lambda epoch: 0.1 * (epoch + 1))], epochs=2,
                         model=model).fit()
    assert [r.learning_rates["m"] for r in summary.records] == pytest.approx([0.1, 0.2])
    model = _model()
    summary = _estimator([LRScheduler(model, lambda step: 0.01 * step)], epochs=1,
                         model=model).fit()
    assert summary.records[0].learning_rates["m"] == pytest.approx(0.05)  # last of 6 steps
    with pytest.raises(ConfigError, match="already has a learning-rate schedule"):
        model = _model(lr=0.1)
        _estimator([LRScheduler(model, lambda epoch: 0.1)], model=model)
    with pytest.raises(ConfigError, match="named 'step' or 'epoch'"):
        LRScheduler(_model(), lambda e: 0.1)


@pytest.mark.parametrize("make,words", [
    (lambda m, b: [Accuracy("y", "nope")], "Epoch 0 (eval): trace Accuracy reads key 'nope', "
                                           "which neither the data nor a network op"),
    (lambda m, b: [EarlyStopping(monitor="acc")], "EarlyStopping monitors 'acc', which no loss"),
    (lambda m, b: [EarlyStopping(monitor="accuracy"), Accuracy("y", "p")],
     "or earlier trace produces"),
    (lambda m, b: [Accuracy("y", "pb")], "Epoch 0 (eval): trace Accuracy reads key 'pb', which "
                                         "model 'b''s ModelOp writes, but that ModelOp is not "
                                         "active at epoch 0"),
    (lambda m, b: [BestModelSaver(_model("other"), "/tmp/x")], "model 'other' is not in the "
                                                                "Network"),
    (lambda m, b: ["accuracy"], "traces[0] is 'accuracy', not a Trace"),
    (lambda m, b: [Accuracy("y", "p", output_name="ce")], "trace Accuracy writes 'ce', which is "
                                                          "already a loss or loss metric"),
    (lambda m, b: [CustomF1Score(), Precision("y", "p"), Recall("y", "p")],
     "trace CustomF1Score reads key 'precision', which the later trace Precision writes: traces "
     "run in the order given. Move CustomF1Score after Precision"),
    (lambda m, b: [Accuracy("y", "p", output_name="ce", mode="train")],
     "Epoch 0 (train): trace Accuracy writes 'ce', which is already a training loss"),
    (lambda m, b: [Accuracy("y", "p", mode="train"), EarlyStopping(monitor="accuracy")],
     "EarlyStopping monitors 'accuracy', which no loss"),
    (lambda m, b: [Scheduler({1: LRScheduler(m, lambda epoch: 0.1)})],
     "An LRScheduler cannot be in a Scheduler"),
])
def test_bad_traces_fail_before_training(make, words):
    m, b = _model("m"), _model("b")
    net_ops = [ModelOp(inputs="x", model=m, outputs="p"),
               Scheduler({1: ModelOp(inputs="x", model=b, outputs="pb", mode="eval")}),
               SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")]
    with pytest.raises(ConfigError, match=re.escape(words)):
        est = _estimator(make(m, b), model=m, net_ops=net_ops)
        est.fit()


def test_traces_are_part_of_the_plan():
    plans = [_estimator([EarlyStopping("ce", patience=p)]) for p in (1, 2)]
    for est in plans:
        est.fit()
    diff = first_difference(plans[0].plan, plans[1].plan)
    assert "epoch 0, 'traces'[0] differs" in diff and "patience=1" in diff


def test_each_rank_may_give_its_own_save_dir(tmp_path):
    """FastEstimator programs pass save_dir=tempfile.mkdtemp(): another directory on every
    rank. Only rank 0 writes there, so it is no part of the plan the ranks compare; any other
    difference is named by trace and argument, not by the whole list of traces."""
    def plan(save_dir, patience=2):
        model = _model()
        est = _estimator([Accuracy("y", "p"), BestModelSaver(model, save_dir, monitor="ce"),
                          EarlyStopping("ce", patience=patience)], model=model)
        est.fit()
        return est.plan

    one = plan(tmp_path / "rank0")
    assert first_difference(one, plan(tmp_path / "rank1")) is None
    diff = first_difference(one, plan(tmp_path / "rank0", patience=3))
    assert diff.startswith("epoch 0, 'traces'[2] differs: rank 0 has \"EarlyStopping(…patience=2")
    assert "Accuracy" not in diff and "BestModelSaver" not in diff


class _TwoRanks:
    """A context whose other rank (1) answers each allgather with ``other(name, payload)``."""

    backend, rank, size, is_chief = "fake", 0, 2, True

    def __init__(self, other):
        self.other = other

    def allgather_object(self, obj, name):
        return [obj, self.other(name, obj)]

    def progress(self, where):
        pass


def _run(trace, other, hook="on_epoch_end"):
    traces = Traces([trace])
    system = System(_TwoRanks(other))
    traces.attach(system)
    return traces.run_epoch_hook(hook, [trace], Data({"ce": 1.0}), system)


class _Summing(Trace):
    def on_epoch_end(self, data):
        total = self.system.sum_over_ranks(np.array([3, 1]))
        data.write_with_log("total", float(total[0]))


def test_the_ranks_agree_at_the_end_of_each_hook():
    # Every rank summed and wrote the same value: fine.
    assert _run(_Summing(), lambda n, p: p) == {"total": 6.0}
    # Rank 1 failed before its collective: rank 0 raises too (no hang), naming rank 1.
    with pytest.raises(ConfigError, match=r"\[rank 1 failed in _Summing.on_epoch_end\] "
                                          "ConfigError: bad"):
        _run(_Summing(), lambda n, p: ("error", ("ConfigError", "bad")))
    # Rank 1 wrote another value.
    with pytest.raises(DistributedError, match="wrote different values of 'total'"):
        _run(_Summing(), lambda n, p: ("done", ({"total": 7.0}, False)) if p[0] == "done" else p)
    # Rank 1 decided to stop, rank 0 not.
    with pytest.raises(DistributedError, match="set stop_training differently"):
        _run(EarlyStopping("ce", patience=5), lambda n, p: ("done", ({}, True)))
    # Rank 1 finished its hook with fewer collectives.
    with pytest.raises(DistributedError, match="a different number of times"):
        _run(_Summing(), lambda n, p: ("done", ({}, False)))


def test_a_batch_hook_error_is_raised_at_the_epoch_end_agreement():
    class Failing(Trace):
        def on_batch_end(self, data):
            raise ValueError("broken batch")

    with pytest.raises(ValueError, match="broken batch"):
        _estimator([Failing(inputs="p")], epochs=1).fit()


TRACES_TIMEOUT = 240


@pytest.mark.parametrize("launcher,backend", [("gloo", "horovod"), ("mpi", "mpi")])
def test_traces_on_two_ranks(tmp_path, launcher, backend):
    """2 ranks (Horovod over Gloo; fe_dist's MPI backend under horovodrun --mpi), 201 eval
    samples (uneven shares 101/100): every rank's metrics, AUC included (gathered scores),
    equal a numpy computation over the whole eval set (and test set); EarlyStopping stops both
    ranks after the same epoch; BestModelSaver writes from rank 0 only; trace state survives a
    resume, and a resume of the stopped run stays stopped on both; a trace failing on one rank
    raises on both."""
    out = tmp_path / "out"
    out.mkdir()
    result = launch(["traces.py", "--dir", str(tmp_path)], out, launcher=launcher,
                    timeout=TRACES_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    reports = read_reports(out, 2)
    for rank, report in enumerate(reports):
        assert report["backend"] == backend
        first, resumed = report["first"], report["resumed"]
        # EarlyStopping (baseline never beaten, patience 3): epochs 0-1 in the first run,
        # wait restored as 2, so the resumed run stops after epoch 2 (of 6) on every rank.
        assert [r["epoch"] for r in first] == [0, 1]
        assert [r["epoch"] for r in resumed] == [0, 1, 2]
        assert report["stopper"] == {"wait": 3, "stopped_epoch": 2}
        # Resuming the stopped run trains nothing, on every rank (it hung: rank 1 trained on).
        assert report["stopped_again"] == {"epochs": [0, 1, 2], "same_weights": True}
        for record, ref in zip(resumed, report["reference"]):
            metrics = arrays = record["eval_metrics"]
            assert metrics["accuracy"] == pytest.approx(ref["accuracy"], abs=1e-12)
            np.testing.assert_array_equal(arrays["confusion_matrix"], ref["confusion_matrix"])
            for key in ("precision", "recall", "f1_score"):
                np.testing.assert_allclose(arrays[key], ref[key], atol=1e-12)
            assert metrics["auc"] == pytest.approx(ref["auc"], abs=1e-12)
        # Rank 0 alone writes the best model, once per improvement (over both runs).
        improvements = sum(r["eval_metrics"]["since_best_ce"] == 0 for r in resumed)
        assert improvements >= 2
        assert report["saves"] == (improvements if rank == 0 else 0)
        # Estimator.test() runs the metric traces on the whole test split (shares 51/50).
        test, ref = report["test"], report["test_reference"]
        assert test["accuracy"] == pytest.approx(ref["accuracy"], abs=1e-12)
        np.testing.assert_array_equal(test["confusion_matrix"], ref["confusion_matrix"])
        np.testing.assert_allclose(test["f1_score"], ref["f1_score"], atol=1e-12)
        assert test["auc"] == pytest.approx(ref["auc"], abs=1e-12)
        # A trace failing on rank 1 alone raises on both ranks (rank 0 waited in a sum).
        assert report["failure"] == ("DistributedError: [rank 1 failed in FailsOnRank1."
                                     "on_epoch_end] ValueError: trace failure on rank 1 (in "
                                     "on_epoch_end, epoch 0, train)" if rank == 0 else
                                     "ValueError: trace failure on rank 1")
    assert reports[0]["resumed"] == reports[1]["resumed"]  # the same records everywhere
    assert (tmp_path / "best" / "a_best_ce.weights.h5").exists()


def test_launch_example_on_two_ranks(tmp_path):
    """launch/mnist_traces_augment.py as a user runs it (horovodrun -np 2): batch growth,
    augmentation from epoch 2, accuracy/F1/confusion matrix over the whole eval set, the best
    model saved, early stopping, a per-step learning rate, then test()."""
    summary_path, best = tmp_path / "summary.json", tmp_path / "best"
    proc = launch(["../../launch/mnist_traces_augment.py", "--summary", str(summary_path),
                   "--save-dir", str(best)], None, np=2, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    records = summary["records"]
    grows = [[16, 16]] * 2 + [[32, 32]] * 2 + [[64, 64]] * 2  # global 32, 64, 128
    assert [r["per_rank_batch"] for r in records] == grows[:len(records)]
    assert all("Sometimes" in " ".join(r["pipeline_ops"]) for r in records[2:])
    assert not any("Sometimes" in " ".join(r["pipeline_ops"]) for r in records[:2])
    for r in records:
        cm = np.array(r["eval_metrics"]["confusion_matrix"])
        assert cm.sum() == 500  # the whole eval set, both ranks' shares
        assert r["eval_metrics"]["accuracy"] == pytest.approx(np.trace(cm) / 500, abs=1e-9)
        assert r["eval_metrics"]["accuracy"] == r["eval_metrics"]["ce_accuracy"]
        assert 0 < r["learning_rates"]["lenet"] <= 1e-3
    assert records[-1]["learning_rates"]["lenet"] < records[0]["learning_rates"]["lenet"]
    assert records[-1]["stopped_training"] == (len(records) < 6)
    if records[-1]["stopped_training"]:  # said after the epoch's own line, with the reason
        last, out = records[-1]["epoch"], proc.stdout
        assert out.index(f"epoch {last}: train") < out.index(
            f"fe_dist: stopping after epoch {last}: EarlyStopping: accuracy has not improved")
    assert list(best.glob("lenet_best_ce*")), list(best.iterdir())
    assert summary["test"]["accuracy"] > 0.8 and "f1_score" in summary["test"]


def test_a_slow_best_model_write_is_not_a_stall(tmp_path):
    """Rank 0 writing the best model for longer than the stall timeout (a large model, a slow
    disk) does not end the job: the write and the other ranks' wait for it are unwatched, as a
    checkpoint's are."""
    proc = launch(["slow_saver.py", "--delay", "7"], tmp_path, np=2, timeout=120,
                  env={"FE_DIST_STALL_TIMEOUT": "4"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reports = read_reports(tmp_path, 2)
    assert reports[0]["records"] == reports[1]["records"]
    assert list((tmp_path / "best").glob("m_best_ce*"))


def test_the_schedule_table_shows_scheduled_traces():
    """A schedule change of traces alone gives its own row, which says what changed."""
    from fe_dist.summary import schedule_table
    est = _estimator([Accuracy("y", "p"), Scheduler({1: EarlyStopping("ce", patience=5)})])
    est.fit()
    rows = schedule_table(est.plan).splitlines()
    assert rows[0].split()[-1] == "traces" and len(rows) == 3
    assert rows[1].endswith("Accuracy") and rows[2].endswith("Accuracy, EarlyStopping")


def test_after_an_early_stop_the_test_schedule_is_checked_before_it_runs():
    """test() runs the schedule of the epoch an early stop ended on, which the checks before
    training (made for the planned last epoch) did not cover: a mismatch there is a
    ConfigError naming epoch and mode, raised on every rank together."""
    from fe_dist.op.tensorop import Resize
    model = _model()
    pipeline = fe.Pipeline(data=_data(), batch_size={"train": 16, "test": 8},
                           ops=[Scheduler({0: Resize(inputs="x", size=(6, 6), outputs="x",
                                                     mode="test"), 1: None})])
    est = fe.Estimator(pipeline=pipeline,
                       network=fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                                           SparseCategoricalCrossentropy(inputs=("y", "p"),
                                                                         outputs="ce")]),
                       epochs=3, verbose=False,
                       traces=[EarlyStopping(monitor="ce", baseline=0.0)])  # stops after 0
    assert [r.epoch for r in est.fit().records] == [0]
    with pytest.raises(ConfigError, match=r"Epoch 0 \(test\): model 'm' expects input shape"):
        est.test()
