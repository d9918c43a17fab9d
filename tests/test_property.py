"""Property-based: random schedules and data sizes either train or fail before training with a
ConfigError; none hangs or crashes with a traceback from inside TensorFlow."""

import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import PROGRAMS, launch, read_reports

sys.path.insert(0, str(PROGRAMS))
from cases import run_case  # noqa: E402


def schedules(values):
    return st.dictionaries(st.integers(-1, 3), values, max_size=3)


CASES = st.fixed_dictionaries({
    "samples": st.integers(1, 50),
    "batch": st.one_of(st.integers(-2, 60), st.none(), st.floats(0.5, 8.5),
                       schedules(st.one_of(st.none(), st.integers(-1, 60)))),
    "epochs": st.integers(0, 2),
    "resize": schedules(st.one_of(st.none(), st.sampled_from([6, 8, 10]))),
    "norm": schedules(st.one_of(st.none(), st.sampled_from(["minmax", "scale"]))),
})


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(CASES)
def test_random_programs_train_or_fail_clearly(case):
    outcome = run_case(case)
    assert outcome == "ok" or outcome.startswith("ConfigError: ")
    if outcome != "ok":
        message = outcome.lower()
        assert any(word in message for word in ("epoch", "scheduler", "batch")), outcome


@pytest.mark.multirank
def test_random_programs_on_two_ranks(tmp_path):
    proc = launch(["cases.py", "--cases", "6"], tmp_path, np=2, launcher="gloo", timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reports = read_reports(tmp_path, 2)
    assert reports[0]["outcomes"] == reports[1]["outcomes"]  # every rank agrees, none hangs
    outcomes = reports[0]["outcomes"]
    assert outcomes[0].startswith("ConfigError") and "smaller than the 2 ranks" in outcomes[0]
    assert outcomes[1] == "ok"
    assert all(o == "ok" or o.startswith("ConfigError: ") for o in outcomes)
