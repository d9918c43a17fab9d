"""BatchNorm models on several ranks: every rank holds the same model after every epoch, and the
synchronised layer makes 2 ranks train like one process."""

import numpy as np
import pytest

from conftest import launch, read_reports

pytestmark = pytest.mark.multirank


def _run(tmp_path_factory, name, launcher, np_, *args, env=None):
    out = tmp_path_factory.mktemp(name)
    proc = launch(["batchnorm.py", *args], out, np=np_, launcher=launcher, env=env, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return read_reports(out, np_)


@pytest.fixture(scope="module")
def single_sync(tmp_path_factory):
    return _run(tmp_path_factory, "single", "python", 1, "--sync")[0]


def test_plain_batchnorm_ranks_hold_identical_models_after_every_epoch(tmp_path_factory):
    reports = _run(tmp_path_factory, "plain", "gloo", 2)
    assert len(reports[0]["checksums"]) == 3
    # Every variable, the moving mean and variance included, bit for bit on both ranks.
    assert reports[0]["checksums"] == reports[1]["checksums"]
    assert reports[0]["variables"] == reports[1]["variables"]
    assert reports[0]["records"] == reports[1]["records"] or all(
        a["eval_metrics"] == b["eval_metrics"]
        for a, b in zip(reports[0]["records"], reports[1]["records"]))


@pytest.mark.parametrize("launcher", ["gloo", "mpirun"])
def test_sync_batchnorm_on_two_ranks_equals_one_process(tmp_path_factory, single_sync,
                                                         launcher):
    reports = _run(tmp_path_factory, f"sync_{launcher}", launcher, 2, "--sync")
    assert [r["backend"] for r in reports] == (["horovod"] * 2 if launcher == "gloo"
                                               else ["mpi"] * 2)
    assert reports[0]["checksums"] == reports[1]["checksums"]
    for report in reports:
        for path, expected in single_sync["variables"].items():
            np.testing.assert_allclose(np.array(report["variables"][path]), np.array(expected),
                                       rtol=1e-5, atol=1e-5, err_msg=path)
    for rec_1, rec_2 in zip(single_sync["records"], reports[0]["records"]):
        assert rec_2["train_loss"]["ce"] == pytest.approx(rec_1["train_loss"]["ce"], rel=1e-5)
