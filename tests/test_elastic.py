"""Elastic runs: a failure before the first commit rolls back, a scale-down re-plans.

Both runs use micro-batches (max_rank_batch=8), so a plan left at the old number of ranks would
also train wrongly (a wrong count of micro-batches per optimizer step), not only mis-report.
"""

import numpy as np
import pytest

from conftest import discovery, launch, read_reports

pytestmark = pytest.mark.multirank

PROGRAM = ["elastic.py", "--epochs", "3", "--n-train", "1200", "--max-rank-batch", "8"]


def _elastic(tmp_path, scenario, cooldown):
    hosts, discover = discovery(tmp_path, "localhost:1\n127.0.0.1:1\n")
    out = tmp_path / "out"
    out.mkdir()
    proc = launch([*PROGRAM, "--scenario", scenario, "--hosts-file", str(hosts)], out, np=2,
                  launcher="gloo", timeout=180, launcher_args=[
                      "--min-np", "1", "--max-np", "2", "--network-interface", "lo",
                      *(["--blacklist-cooldown-range", "1", "2"] if cooldown else []),
                      "--host-discovery-script", str(discover)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, read_reports(out, 1)[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same program, uninterrupted, on one plain process (the same global batches)."""
    out = tmp_path_factory.mktemp("elastic_reference")
    proc = launch([*PROGRAM, "--scenario", "reference", "--hosts-file", "unused"], out,
                  launcher="python", timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return read_reports(out, 1)[0]


def _same_weights(report, reference):
    for name, weights in reference["weights"].items():
        for got, want in zip(report["weights"][name], weights):
            np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-5, atol=1e-6,
                                       err_msg=name)


def _records_match_sizes(records):
    for record in records:  # per-rank batch and micro-batches follow the world size
        size, batch = record["world_size"], record["global_batch"]
        expected = [batch] if size == 1 else [batch - batch // 2, batch // 2]
        assert record["per_rank_batch"] == expected, record
        assert record["micro_batches"] == -(-expected[0] // 8), record
        assert record["steps"] == 1200 // batch, record


def test_failure_in_epoch_0_rolls_back_to_the_start_state(tmp_path, reference):
    proc, report = _elastic(tmp_path, "kill-epoch0", cooldown=False)
    records = report["records"]
    # The survivor redid epoch 0 from the synced start state, alone.
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert [r["world_size"] for r in records] == [1, 1, 1], proc.stdout[-2000:]
    _records_match_sizes(records)
    _same_weights(report, reference)


def test_hosts_removed_without_failure_replan_for_the_new_size(tmp_path, reference):
    proc, report = _elastic(tmp_path, "scale-down", cooldown=True)
    records = report["records"]
    sizes = [r["world_size"] for r in records]  # the discovery may notice a commit late
    assert sizes[0] == 2 and sizes[-1] == 1, (sizes, proc.stdout[-2000:])
    _records_match_sizes(records)
    _same_weights(report, reference)
