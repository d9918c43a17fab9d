"""Multi-rank behaviour under horovodrun (Gloo and MPI), mpirun and an mpi4py sub-communicator.

Every launch has a time limit; each rank writes a JSON report that the tests compare. Which
collectives ran is read from the backend's own record: Horovod's timeline (Gloo launches) and the
MPI backend's call log, not fe_dist's counters.
"""

import json
import time
from pathlib import Path

import numpy as np
import pytest

from backend_records import (assert_mpi_log_reduces_only_active_models,
                             assert_timeline_reduces_only_active_models)
from conftest import launch, read_reports

pytestmark = pytest.mark.multirank

BATCHES = [32, 33, 33]
TRAINED = [["a"], ["b"], ["a"]]


def _probe(tmp_path_factory, name, launcher, np_, env=None, args=()):
    """Run the probe; under horovodrun --gloo rank 0 also writes Horovod's timeline to
    <out>/timeline.json (cheap: a few hundred events)."""
    out = tmp_path_factory.mktemp(name)
    if launcher == "gloo":
        env = {**(env or {}), "HOROVOD_TIMELINE": str(out / "timeline.json")}
    proc = launch(["probe.py", *args], out, np=np_, launcher=launcher, env=env, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return read_reports(out, np_), proc, out


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return _probe(tmp_path_factory, "single", "python", 1)[0][0]


@pytest.fixture(scope="module")
def gloo(tmp_path_factory):
    """(reports, process, output directory) of the probe on 2 ranks under Gloo."""
    return _probe(tmp_path_factory, "gloo", "gloo", 2)


def _assert_same_weights(reference, report):
    for name in ("a", "b"):
        for w_ref, w in zip(reference["weights"][name], report["weights"][name]):
            np.testing.assert_allclose(np.array(w), np.array(w_ref), rtol=1e-5, atol=1e-6,
                                       err_msg=f"model {name}")


def _assert_backend_reduced_only_active_models(reports: list[dict], out: Path) -> None:
    """From the backend's own record: each step reduced exactly the active model's gradients."""
    if reports[0]["backend"] == "horovod":
        assert_timeline_reduces_only_active_models(out / "timeline.json", reports[0])
    else:
        for report in reports:
            assert_mpi_log_reduces_only_active_models(report)


def _assert_trains_like_one_process(reports: list[dict], single: dict, out: Path) -> None:
    """Identical weights on every rank, equal to one process; each step reduced exactly the
    active model's gradients (as the backend recorded it)."""
    assert reports[0]["checksums"] == reports[1]["checksums"]
    for report in reports:
        _assert_same_weights(single, report)
    _assert_backend_reduced_only_active_models(reports, out)


def _assert_eval_matches_numpy(report: dict) -> None:
    """Each epoch's eval loss and accuracy equal the probe's numpy figures over the whole eval
    set (201 samples, split 101/100 over 2 ranks, eval batches of 17 or 16): a skipped or doubled
    sample moves the accuracy (0 < correct < 201) and, unless the two losses happen to match,
    the loss."""
    records = report["summary"]["records"]
    assert len(report["eval_reference"]) == len(records)
    for record, ref in zip(records, report["eval_reference"]):
        assert 0 < ref["correct"] < 201, ref  # else accuracy cannot see a skipped sample
        assert record["eval_metrics"]["ce_accuracy"] == pytest.approx(ref["accuracy"], abs=1e-9)
        assert record["eval_metrics"]["ce"] == pytest.approx(ref["ce"], rel=1e-5)
    # Estimator.test() after training: the whole 101-sample test split (shares 51/50 in
    # batches of 5 and 4), equal to numpy on every sample with the final weights.
    ref = report["test_reference"]
    assert 0 < ref["correct"] < 101, ref
    assert report["test_metrics"]["ce_accuracy"] == pytest.approx(ref["accuracy"], abs=1e-9)
    assert report["test_metrics"]["ce"] == pytest.approx(ref["ce"], rel=1e-5)


def test_two_ranks_equal_one_process_on_the_global_batch(single, gloo):
    reports, _, _ = gloo
    assert [r["size"] for r in reports] == [2, 2] and single["size"] == 1
    assert [r["backend"] for r in reports] == ["horovod", "horovod"]
    for report in reports:  # even batch (epoch 0) and odd batch (epochs 1, 2)
        _assert_same_weights(single, report)
    for rec_1, rec_2 in zip(single["summary"]["records"], reports[0]["summary"]["records"]):
        assert rec_2["steps"] == rec_1["steps"]
        assert rec_2["train_loss"]["ce"] == pytest.approx(rec_1["train_loss"]["ce"], rel=1e-5)
        assert rec_2["eval_metrics"]["ce_accuracy"] == pytest.approx(
            rec_1["eval_metrics"]["ce_accuracy"], abs=1e-9)


def test_every_rank_holds_identical_weights_after_every_epoch(gloo):
    reports, _, _ = gloo
    assert len(reports[0]["checksums"]) == len(BATCHES) + 1
    assert reports[0]["checksums"] == reports[1]["checksums"]


def test_every_rank_returns_the_same_records(gloo):
    reports, proc, _ = gloo
    assert reports[0]["summary"]["records"] == reports[1]["summary"]["records"]
    records = reports[0]["summary"]["records"]
    assert [r["global_batch"] for r in records] == BATCHES
    assert [r["per_rank_batch"] for r in records] == [[16, 16], [17, 16], [17, 16]]
    assert [r["trained_models"] for r in records] == TRAINED
    assert all(r["world_size"] == 2 for r in records)
    # Rank 0 logs, rank 1 is quiet.
    assert "[0]<stdout>:epoch 0" in proc.stdout and "[1]<stdout>:epoch" not in proc.stdout


def test_inactive_model_is_untouched_and_joins_no_collective(gloo):
    reports, _, out = gloo
    checksums = reports[0]["checksums"]
    for epoch, trained in enumerate(TRAINED):
        for name in ("a", "b"):
            changed = checksums[epoch][name] != checksums[epoch + 1][name]
            assert changed == (name in trained), (epoch, name)
    # What Horovod ran: 18 steps x 4 tensors of a, then of b, then of a; nothing else reduced.
    assert_timeline_reduces_only_active_models(out / "timeline.json", reports[0])


def test_eval_covers_the_whole_eval_set_on_one_and_two_ranks(single, gloo):
    _assert_eval_matches_numpy(single)
    for report in gloo[0]:
        _assert_eval_matches_numpy(report)


def test_sharding_covers_each_epoch_without_overlap(gloo):
    reports, _, _ = gloo
    n = 600
    for epoch, batch in enumerate(BATCHES):
        per_rank = [r["coverage"][epoch] for r in reports]
        assert len(per_rank[0]) == len(per_rank[1]) == n // batch  # same step count
        seen = []
        for step in range(n // batch):
            chunks = [per_rank[r][step] for r in range(2)]
            assert sorted(len(c) for c in chunks) == sorted([batch - batch // 2, batch // 2])
            seen += chunks[0] + chunks[1]
        assert len(seen) == len(set(seen)) == (n // batch) * batch
        assert set(seen) <= set(range(n))


@pytest.mark.parametrize("launcher,env,backend", [
    ("mpi", {}, "mpi"),  # an MPI launch on CPU ranks: fe_dist's MPI backend by default
    ("mpirun", {"FE_DIST_BACKEND": "horovod"}, "horovod"),  # Horovod's MPI controller
])
def test_mpi_launchers_train_the_same(tmp_path_factory, single, launcher, env, backend):
    reports, _, _ = _probe(tmp_path_factory, launcher, launcher, 2, env)
    assert [r["size"] for r in reports] == [2, 2]
    assert [r["backend"] for r in reports] == [backend, backend]
    assert reports[0]["checksums"] == reports[1]["checksums"]
    for report in reports:
        _assert_same_weights(single, report)
        _assert_eval_matches_numpy(report)
    if backend == "mpi":
        for report in reports:
            assert_mpi_log_reduces_only_active_models(report)


def test_mpi_backend_without_horovod_trains_the_same(tmp_path_factory, single):
    # mpirun without FE_DIST_BACKEND: the MPI backend by default.
    reports, _, out = _probe(tmp_path_factory, "mpirun-auto", "mpirun", 2)
    assert [r["backend"] for r in reports] == ["mpi", "mpi"]
    _assert_trains_like_one_process(reports, single, out)


def test_gradient_accumulation_on_two_ranks_equals_one_process(tmp_path_factory, single):
    reports, _, out = _probe(tmp_path_factory, "accumulate", "gloo", 2,
                             args=["--max-rank-batch", "5"])
    records = reports[0]["summary"]["records"]
    # 16 per rank -> 5+5+5+1, 17 -> 5+5+5+2: four micro-batches, one allreduce per step.
    assert [r["micro_batches"] for r in records] == [4, 4, 4]
    assert [r["steps"] for r in records] == [r["steps"] for r in single["summary"]["records"]]
    _assert_trains_like_one_process(reports, single, out)


def test_per_tensor_allreduce_on_two_ranks_equals_one_process(tmp_path_factory, single):
    reports, _, out = _probe(tmp_path_factory, "per_tensor", "gloo", 2,
                             args=["--allreduce", "per_tensor"])
    _assert_trains_like_one_process(reports, single, out)


@pytest.mark.parametrize("backend", ["mpi", "horovod"])
def test_mpi4py_sub_communicator(tmp_path, single, backend):
    proc = launch(["subcomm.py"], tmp_path, np=3, launcher="mpirun",
                  env={"FE_DIST_BACKEND": backend})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reports = read_reports(tmp_path, 2)
    assert not (tmp_path / "rank2.json").exists()
    assert [r["size"] for r in reports] == [2, 2]
    assert [r["backend"] for r in reports] == [backend, backend]
    assert reports[0]["checksums"] == reports[1]["checksums"]
    _assert_same_weights(single, reports[0])


@pytest.mark.parametrize("case,kind,words", [
    ("plan", "DistributedError", ["epoch 1", "'global_batch'", "rank 0 has 64"]),
    ("data", "DistributedError", ["'data'['train']['samples'] differs", "rank 0 has 200",
                                  "this rank has 199"]),
    ("content", "DistributedError", ["the 'train' data differs", "other content",
                                     "data fingerprint", "copy of the data", "on host"]),
    ("batch", "ConfigError", ["Epoch 1", "global batch size 1", "2 ranks"]),
    ("key", "ConfigError", ["Epoch 1", "'missing'", "Scale"]),
])
def test_bad_input_fails_fast_on_every_rank(tmp_path, case, kind, words):
    start = time.monotonic()
    proc = launch(["mismatch.py", "--case", case], tmp_path, np=2, launcher="gloo", timeout=90)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    for report in read_reports(tmp_path, 2):
        assert report["error"] == kind, report
        for word in words:
            assert word in report["message"], (word, report["message"])
    assert elapsed < 60


def test_seed_tutorial_on_two_ranks(tmp_path):
    summary_path = tmp_path / "summary.json"
    proc = launch(["../../launch/tutorial8_scheduler.py", "--summary", str(summary_path)],
                  None, np=2, launcher="gloo", timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = json.loads(summary_path.read_text())["records"]
    assert [r["per_rank_batch"] for r in records] == [[16, 16], [32, 32], [64, 64]]
    assert [r["trained_models"] for r in records] == [["model1"], ["model2"], ["model1"]]
    assert records[-1]["eval_metrics"]["my_loss_accuracy"] >= 0.90
