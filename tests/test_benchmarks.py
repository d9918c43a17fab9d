"""Smoke test: every benchmark runs in its tiny mode and writes its figures (no timing asserts)."""

import json
import subprocess
import sys

from conftest import REPO


def test_benchmarks_tiny(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--tiny",
                           "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "scaling.png").stat().st_size > 1000
    assert "| lenet |" in (tmp_path / "results.md").read_text()
    for name in ("lenet", "resnet"):
        rows = results["workloads"][name]["phases"]
        assert len(rows) == 2
        for row in rows:
            for key in ("fe_np1", "fe_np2", "hvd_np2", "mwms_np2"):
                assert row[key] > 0, (name, key)
            # Communication accounting: exactly the active model's gradients, every step.
            assert row["bytes_match"], row
            assert row["allreduced_bytes_per_step_fp16"] == row["gradient_bytes"] / 2
        assert set(results["workloads"][name]["projection"]["cpu_thread"])
    assert results["seed_transitions"][0]["schedule_changes"] is True


def test_allreduce_knobs_tiny(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "allreduce_knobs.py"),
                           "--tiny", "--repeats", "1", "--out", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads((tmp_path / "allreduce_knobs.json").read_text())
    assert len(rows) == 16 and rows[0]["of_bound"] == 1.0
    assert all(r["samples_per_sec"] > 0 for r in rows)
    assert "accumulation k=4" in (tmp_path / "allreduce_knobs.md").read_text()
