"""Smoke test: the allreduce-knob benchmark runs in its tiny mode and writes its figures (no
timing asserts). fe-bench's smoke runs are in test_bench.py."""

import json
import subprocess
import sys

from conftest import REPO


def test_allreduce_knobs_tiny(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "allreduce_knobs.py"),
                           "--tiny", "--repeats", "1", "--out", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads((tmp_path / "allreduce_knobs.json").read_text())
    assert len(rows) == 16 and rows[0]["of_bound"] == 1.0
    assert all(r["samples_per_sec"] > 0 for r in rows)
    assert "accumulation k=4" in (tmp_path / "allreduce_knobs.md").read_text()
