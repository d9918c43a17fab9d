"""Checkpoint and resume, rank failures and stalls without hangs, determinism."""

import time

import numpy as np
import pytest

from conftest import discovery, launch, read_reports
from fe_dist import checkpoint

pytestmark = pytest.mark.multirank


def _run(tmp_path_factory, name, np_, launcher, *args, ckpt=None, expect=0, timeout=180,
         env=None):
    out = tmp_path_factory.mktemp(name)
    cmd = ["reliability.py", *args] + (["--ckpt", str(ckpt)] if ckpt else [])
    start = time.monotonic()
    proc = launch(cmd, out, np=np_, launcher=launcher, timeout=timeout, env=env)
    elapsed = time.monotonic() - start
    if expect == 0:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    else:
        assert proc.returncode != 0, proc.stdout[-3000:]
    return out, proc, elapsed


def _same(report_a, report_b):
    assert report_a["records"] == report_b["records"]
    for name in report_a["weights"]:
        for wa, wb in zip(report_a["weights"][name], report_b["weights"][name]):
            np.testing.assert_array_equal(np.array(wa), np.array(wb), err_msg=name)


@pytest.mark.parametrize("launcher,np_", [("python", 1), ("gloo", 2)])
def test_deterministic_and_resumed_runs_match(tmp_path_factory, launcher, np_):
    full_a, _, _ = _run(tmp_path_factory, "full_a", np_, launcher)
    full_b, _, _ = _run(tmp_path_factory, "full_b", np_, launcher)
    ckpt = tmp_path_factory.mktemp("ckpt")
    _run(tmp_path_factory, "stopped", np_, launcher, "--stop-after", "1", ckpt=ckpt, expect=3)
    meta, _ = checkpoint.load(ckpt)
    assert meta["epoch"] == 1
    resumed, proc, _ = _run(tmp_path_factory, "resumed", np_, launcher, "--resume", ckpt=ckpt)
    assert "resuming after epoch 1" in proc.stdout
    a, b, r = (read_reports(d, np_) for d in (full_a, full_b, resumed))
    for rank in range(np_):
        _same(a[rank], b[rank])   # enable_deterministic: identical runs
        _same(a[rank], r[rank])   # interrupted after epoch 1 and resumed = uninterrupted
    # The resumed epoch 2 follows its schedule: model "a" at global batch 33.
    assert r[0]["records"][2]["trained_models"] == ["a"]
    assert r[0]["records"][2]["global_batch"] == 33


def test_killed_rank_ends_the_job_and_the_run_resumes(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("ckpt_kill")
    _, proc, elapsed = _run(tmp_path_factory, "killed", 2, "gloo", "--kill-rank", "1",
                            "--kill-delay", "0.3", "--n-train", "4000", ckpt=ckpt, expect=1,
                            timeout=120)
    assert elapsed < 60, elapsed
    meta, _ = checkpoint.load(ckpt)  # the last complete checkpoint is intact
    assert meta["epoch"] == 0
    resumed, proc, _ = _run(tmp_path_factory, "after_kill", 2, "gloo", "--resume",
                            "--n-train", "4000", ckpt=ckpt)
    assert "resuming after epoch 0" in proc.stdout
    reports = read_reports(resumed, 2)
    assert [r["epoch"] for r in reports[0]["records"]] == [0, 1, 2]
    assert reports[0]["weights"] == reports[1]["weights"]


@pytest.mark.parametrize("launcher", ["gloo", "mpi"])
def test_stall_ends_the_job_with_a_message(tmp_path_factory, launcher):
    _, proc, elapsed = _run(tmp_path_factory, f"stall_{launcher}", 2, launcher,
                            "--stall-rank", "1", expect=1, timeout=120,
                            env={"FE_DIST_STALL_TIMEOUT": "6"})
    assert elapsed < 60, elapsed
    output = proc.stdout + proc.stderr
    assert "fe_dist: stall: rank 0 of 2 made no progress" in output
    # Rank 0 waits where every rank reports how its on_epoch_end went.
    assert "rank 0 of 2 made no progress" in output
    assert "epoch 0, waiting for the other ranks' on_epoch_end" in output
    assert "rank 1 of 2 made no progress" in output and "on_epoch_end callback" in output


def test_elastic_shrinks_on_failure_and_grows_back(tmp_path):
    hosts, discover = discovery(tmp_path, "localhost:1\n127.0.0.1:1\n")
    out = tmp_path / "out"
    out.mkdir()
    proc = launch(["elastic.py", "--hosts-file", str(hosts)], out, np=2, launcher="gloo",
                  timeout=240, launcher_args=[
                      "--min-np", "1", "--max-np", "2", "--network-interface", "lo",
                      "--blacklist-cooldown-range", "1", "2",
                      "--host-discovery-script", str(discover)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reports = read_reports(out, 2)
    sizes = [r["world_size"] for r in reports[0]["records"]]
    assert len(sizes) == 8 and sizes[0] == 2 and 1 in sizes and sizes[-1] == 2, sizes
    for record in reports[0]["records"]:  # global batch kept, per-rank batch recomputed
        expected = {1: [record["global_batch"]], 2: [17, 16] if record["global_batch"] == 33
                    else [16, 16]}[record["world_size"]]
        assert record["per_rank_batch"] == expected
    assert reports[0]["records"] == reports[1]["records"]  # the returning rank was synced
    assert reports[0]["weights"] == reports[1]["weights"]
