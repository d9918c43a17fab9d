"""File-backed data on 2 ranks (horovodrun --gloo): equal to one process on in-memory arrays."""

import json

import numpy as np
import pytest

from conftest import launch, read_reports

pytestmark = pytest.mark.multirank


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from fe_dist.dataset import mnist
    root = tmp_path_factory.mktemp("mnist_png")
    mnist.export_png(root, limit=400)
    return root


def test_folder_on_two_ranks_equals_arrays_on_one_process(folder, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    proc = launch(["folder.py", "--folder", str(folder), "--source", "arrays"], one, np=1,
                  launcher="python", timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    proc = launch(["folder.py", "--folder", str(folder), "--source", "folder"], two, np=2,
                  timeout=150)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (single,) = read_reports(one, 1)
    reports = read_reports(two, 2)
    assert [r["size"] for r in reports] == [2, 2]
    for report in reports:
        assert [r["steps"] for r in report["records"]] == [12, 12]
        for name in ("a", "b"):
            for w_ref, w in zip(single["weights"][name], report["weights"][name]):
                np.testing.assert_allclose(np.array(w), np.array(w_ref), rtol=1e-5, atol=1e-5)
        for rec, ref in zip(report["records"], single["records"]):
            assert rec["eval_metrics"]["ce_accuracy"] == pytest.approx(
                ref["eval_metrics"]["ce_accuracy"], abs=1e-9)


def test_folder_tutorial_on_two_ranks(folder, tmp_path):
    """launch/tutorial8_folder.py as a user runs it: horovodrun -np 2, within a time limit."""
    summary = tmp_path / "summary.json"
    proc = launch(["../../launch/tutorial8_folder.py", "--folder", str(folder), "--epochs", "2",
                   "--summary", str(summary), "--seed", "1"], None, np=2, timeout=150)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = json.loads(summary.read_text())["records"]
    assert [r["world_size"] for r in records] == [2, 2]
    assert [r["steps"] for r in records] == [12, 6]  # 400 samples, batches 32 and 64
    # It learns: 2 short epochs, seeded (unseeded, a bad initialisation stayed near chance).
    assert records[-1]["eval_metrics"]["my_loss_accuracy"] > 0.15, records[-1]["eval_metrics"]


def test_a_truncated_image_ends_every_rank_naming_the_file(folder, tmp_path):
    """A file only one rank reads fails on that rank mid-epoch: the job ends on every rank
    (no hang), and the message names the file, epoch and step."""
    import shutil

    copy = tmp_path / "png"
    shutil.copytree(folder, copy)
    bad = sorted((copy / "train" / "3").iterdir())[5]
    bad.write_bytes(bad.read_bytes()[:40])
    proc = launch(["folder.py", "--folder", str(copy), "--source", "folder"], tmp_path, np=2,
                  timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert str(bad) in output and "Epoch 0, train step" in output, output[-3000:]
