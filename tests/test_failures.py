"""What users write, on many ranks: fp16 compression on the MPI backend, a failure on one rank
only, and long phases (eval) under a short stall timeout.

Every launch has a time limit.
"""

import time

import numpy as np
import pytest

from backend_records import assert_mpi_log_reduces_only_active_models
from conftest import launch, read_reports

pytestmark = pytest.mark.multirank


def _ok(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_fp16_compression_on_the_mpi_backend_sends_float16(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    # Model b 8 wide (a: 16), so the MPI log tells the two models' gradient buffers apart.
    args = ["probe.py", "--compression", "fp16", "--b-hidden", "8"]
    _ok(launch(args, one, np=1, launcher="python"))
    _ok(launch(args, two, np=2, launcher="mpirun", env={"FE_DIST_BACKEND": "mpi"}))
    (single,), reports = read_reports(one, 1), read_reports(two, 2)
    assert [r["backend"] for r in reports] == ["mpi", "mpi"]
    assert reports[0]["checksums"] == reports[1]["checksums"]
    # One process casts to float16 and back; two ranks also round the float16 sum: weights
    # agree to float16 rounding of the gradients, not bit for bit.
    for report in reports:
        for name in ("a", "b"):
            for w_ref, w in zip(single["weights"][name], report["weights"][name]):
                np.testing.assert_allclose(np.array(w), np.array(w_ref), rtol=0, atol=5e-4,
                                           err_msg=f"model {name}")
    # What MPI executed, in order: one float16 buffer per step of the active model's parameters
    # (a: 144*16 + 16 + 16*10 + 10 = 2490, b: 144*8 + 8 + 8*10 + 10 = 1250), 2 bytes each.
    counts = {n: sum(int(np.prod(s)) for s in shapes)
              for n, shapes in reports[0]["trainable_shapes"].items()}
    assert counts == {"a": 2490, "b": 1250}
    for report in reports:
        assert_mpi_log_reduces_only_active_models(report, dtype="float16")


# launcher, launch() settings: the three ways to run fe_dist under MPI, and Gloo.
LAUNCHERS = {
    "gloo": ("gloo", {}),
    "mpi-backend": ("mpirun", {"FE_DIST_BACKEND": "mpi"}),
    "mpi-horovod": ("mpirun", {"FE_DIST_BACKEND": "horovod"}),
}


def _fail(tmp_path, launcher, *args):
    """Run failures.py with a failure on rank 1; (output, seconds from the failure to the end
    of the job)."""
    kind, env = LAUNCHERS[launcher]
    proc = launch(["failures.py", *args], tmp_path, np=2, launcher=kind, timeout=150, env=env)
    end = time.time()
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    assert (tmp_path / "failed_at.txt").exists(), output[-3000:]  # it failed where meant to
    return output, end - float((tmp_path / "failed_at.txt").read_text())


@pytest.mark.parametrize("launcher", ["gloo", "mpi-backend", "mpi-horovod"])
def test_train_step_failure_on_one_rank_ends_the_job(tmp_path, launcher):
    output, seconds = _fail(tmp_path, launcher, "--fail-step-rank", "1", "--fail-step", "5")
    # Not the 300 s stall watchdog: the failing rank ends the job itself (measured from the
    # failure, as two TensorFlow start-ups on a loaded 2-core machine take a while).
    assert seconds < 30, seconds
    assert "fe_dist: rank 1 failed: Traceback" in output
    assert "RankFault: train batch 5 failed on rank 1" in output
    assert "fe_dist: stall" not in output


@pytest.mark.parametrize("launcher", ["gloo", "mpi-backend"])
def test_on_epoch_end_failure_on_one_rank_raises_on_every_rank(tmp_path, launcher):
    output, seconds = _fail(tmp_path, launcher, "--fail-callback-rank", "1")
    assert seconds < 30, seconds
    # Agreed like the checks: rank 1 raises its own error, rank 0 one that names rank 1.
    assert "RankFault: on_epoch_end failed on rank 1" in output
    assert ("DistributedError: [rank 1 failed the on_epoch_end check] on_epoch_end failed on "
            "rank 1") in output
    assert "fe_dist: stall" not in output


def test_eval_longer_than_the_stall_timeout_survives(tmp_path):
    # ~7 eval batches per rank per epoch at 1.5 s: each eval outlasts the 8 s timeout, but
    # every batch is shorter.
    proc = launch(["failures.py", "--slow-eval", "1.5"], tmp_path, np=2, launcher="gloo",
                  timeout=180, env={"FE_DIST_STALL_TIMEOUT": "8"})
    _ok(proc)
    reports = read_reports(tmp_path, 2)
    assert all(r["eval_seconds"] > 8 for r in reports[0]["records"]), reports[0]["records"]
