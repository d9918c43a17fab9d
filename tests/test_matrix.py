"""Every backend x option on 2 ranks equals one process (issue 10, item 12).

Backends: Horovod with Gloo, Horovod with its MPI controller, fe_dist's MPI backend (the
single-process reference is the local backend). Options, each trained 2 epochs in the same launch
(tests/programs/matrix.py): defaults, fp16 gradient compression, accumulation with an uneven
last micro-batch, per-tensor allreduce, mixed precision, a synchronised BatchNorm model.
"""

import numpy as np
import pytest

from conftest import launch, read_reports

pytestmark = pytest.mark.multirank

# (rtol, atol) against one process. fp16 compression rounds each rank's partial sum to float16
# (one process rounds the whole sum), and mixed precision computes in float16: both differ from
# one process by float16 rounding, not by a wrong update.
TOLERANCE = {"fp16": (2e-3, 5e-4), "mixed_precision": (2e-3, 5e-4)}
DEFAULT_TOLERANCE = (1e-4, 2e-5)
LAUNCHES = {  # name: (launcher, env, backend, controller)
    "gloo": ("gloo", {}, "horovod", "gloo"),
    "horovod_mpi": ("mpirun", {"FE_DIST_BACKEND": "horovod"}, "horovod", "mpi"),
    "mpi": ("mpirun", {}, "mpi", "mpi4py"),
}


def _launch(tmp_path_factory, name, launcher, np_, env=None):
    out = tmp_path_factory.mktemp(f"matrix_{name}")
    proc = launch(["matrix.py"], out, np=np_, launcher=launcher, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return read_reports(out, np_)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    (report,) = _launch(tmp_path_factory, "single", "python", 1)
    return report


@pytest.mark.parametrize("name", list(LAUNCHES))
def test_every_option_on_two_ranks_equals_one_process(tmp_path_factory, single, name):
    launcher, env, backend, controller = LAUNCHES[name]
    reports = _launch(tmp_path_factory, name, launcher, 2, env)
    assert [(r["backend"], r["controller"]) for r in reports] == [(backend, controller)] * 2
    for config, reference in single["results"].items():
        rtol, atol = TOLERANCE.get(config, DEFAULT_TOLERANCE)
        ranks = [r["results"][config] for r in reports]
        assert ranks[0]["checksum"] == ranks[1]["checksum"], config  # one model on every rank
        for path, expected in reference["variables"].items():
            np.testing.assert_allclose(np.array(ranks[0]["variables"][path]), np.array(expected),
                                       rtol=rtol, atol=atol, err_msg=f"{name} {config} {path}")
        for rec_1, rec_2 in zip(reference["records"], ranks[0]["records"]):
            assert rec_2["steps"] == rec_1["steps"]
            assert rec_2["train_loss"]["ce"] == pytest.approx(rec_1["train_loss"]["ce"], rel=rtol)
            assert rec_2["eval_metrics"]["ce"] == pytest.approx(rec_1["eval_metrics"]["ce"],
                                                                rel=rtol)
    records = reports[0]["results"]["accumulation"]["records"]
    assert [r["micro_batches"] for r in records] == [4, 4]  # 16/17 per rank in micro-batches of 5
    if backend == "mpi":  # what MPI itself was handed: float16 only under fp16 compression
        dtypes = {c: set(r["allreduce_dtypes"]) for c, r in reports[0]["results"].items()}
        assert dtypes["fp16"] == {"float16"}
        assert dtypes["defaults"] == dtypes["accumulation"] == {"float32"}
