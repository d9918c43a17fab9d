"""What users write, on many ranks: fp16 compression on the MPI backend, a failure on one rank
only, and long phases (eval) under a short stall timeout.

Every launch has a time limit.
"""

import collections

import numpy as np
import pytest

from conftest import launch, read_reports

pytestmark = pytest.mark.multirank


def _ok(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_fp16_compression_on_the_mpi_backend_sends_float16(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    _ok(launch(["probe.py", "--compression", "fp16"], one, np=1, launcher="python"))
    _ok(launch(["probe.py", "--compression", "fp16"], two, np=2, launcher="mpirun",
               env={"FE_DIST_BACKEND": "mpi"}))
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
    # What MPI executed: one float16 buffer per step, the active model's parameters, 2 bytes each.
    steps = sum(r["steps"] for r in reports[0]["summary"]["records"])
    params = {2490}  # both probe models: 144*16 + 16 + 16*10 + 10
    calls = collections.Counter(tuple(c) for c in reports[0]["allreduce_log"])
    assert calls == collections.Counter({("float16", n, 2 * n): steps for n in params}), calls
