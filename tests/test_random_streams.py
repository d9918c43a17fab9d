"""Random streams per rank: Dropout draws differ by rank and repeat run after run."""

import keras
import numpy as np
import pytest

from conftest import launch, read_reports
from fe_dist.determinism import reseed_models


def _masks(model, x):
    return (model(x, training=True).numpy() != 0)


def test_streams_differ_by_rank_and_epoch_and_repeat():
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dropout(0.5)])
    x = np.ones((4, 64), np.float32)
    draws = {}
    for rank, epoch in [(0, 0), (1, 0), (0, 1), (0, 0)]:
        reseed_models([model], rank, epoch)
        draws.setdefault((rank, epoch), []).append(_masks(model, x))
    assert not np.array_equal(draws[(0, 0)][0], draws[(1, 0)][0])
    assert not np.array_equal(draws[(0, 0)][0], draws[(0, 1)][0])
    np.testing.assert_array_equal(draws[(0, 0)][0], draws[(0, 0)][1])


@pytest.mark.multirank
def test_two_ranks_draw_different_dropout_masks_reproducibly(tmp_path_factory):
    runs = []
    for name in ("a", "b"):
        out = tmp_path_factory.mktemp(f"dropout_{name}")
        proc = launch(["dropout.py"], out, np=2, launcher="gloo", timeout=180)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        runs.append(read_reports(out, 2))
    first, second = runs
    for epoch in range(2):  # each rank its own stream ...
        assert first[0]["states"][epoch][0] != first[1]["states"][epoch][0]
    assert first[0]["states"][0][0] != first[0]["states"][1][0]  # ... and epoch
    assert first[0]["weights"] == first[1]["weights"]  # one model on every rank
    for rank in range(2):  # and the whole run repeats
        assert first[rank] == second[rank]
