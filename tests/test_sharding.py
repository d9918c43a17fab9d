"""How global batches split over ranks: sizes, coverage, equal step counts."""

import numpy as np
import pytest

from fe_dist import sharding


@pytest.mark.parametrize("batch,size,expected", [
    (32, 2, [16, 16]), (33, 2, [17, 16]), (128, 3, [43, 43, 42]), (5, 5, [1] * 5)])
def test_per_rank_sizes_differ_by_at_most_one(batch, size, expected):
    assert sharding.per_rank_batch_sizes(batch, size) == expected


@pytest.mark.parametrize("n,batch,size", [(4000, 32, 2), (1000, 33, 2), (997, 64, 3),
                                          (100, 7, 4)])
def test_ranks_cover_each_step_exactly(n, batch, size):
    per_rank = [sharding.train_indices(n, batch, size, r, seed=1, epoch=3) for r in range(size)]
    steps = {p.shape[0] for p in per_rank}
    assert steps == {n // batch}
    perm = sharding.epoch_permutation(n, seed=1, epoch=3)
    for s in range(n // batch):
        joined = np.concatenate([p[s] for p in per_rank])
        np.testing.assert_array_equal(joined, perm[s * batch:(s + 1) * batch])
    seen = np.concatenate([p.ravel() for p in per_rank])
    assert len(np.unique(seen)) == len(seen) == (n // batch) * batch


def test_epochs_shuffle_differently_but_reproducibly():
    a = sharding.epoch_permutation(100, seed=0, epoch=0)
    assert not np.array_equal(a, sharding.epoch_permutation(100, seed=0, epoch=1))
    np.testing.assert_array_equal(a, sharding.epoch_permutation(100, seed=0, epoch=0))


def test_eval_shards_cover_everything_once():
    shards = [sharding.eval_shard(1001, 3, r) for r in range(3)]
    covered = np.concatenate([np.arange(1001)[s] for s in shards])
    np.testing.assert_array_equal(covered, np.arange(1001))
