"""BatchNorm models on several ranks: every rank holds the same model after every epoch, and the
synchronised layer makes 2 ranks train like one process."""

import numpy as np
import pytest

from conftest import launch, read_reports

pytestmark = pytest.mark.multirank


def _run(tmp_path_factory, name, launcher, np_, *args, env=None):
    out = tmp_path_factory.mktemp(name)
    proc = launch(["batchnorm.py", *args], out, np=np_, launcher=launcher, env=env, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return read_reports(out, np_)


@pytest.fixture(scope="module")
def single_sync(tmp_path_factory):
    return _run(tmp_path_factory, "single", "python", 1, "--sync")[0]


def test_plain_batchnorm_ranks_hold_identical_models_after_every_epoch(tmp_path_factory):
    reports = _run(tmp_path_factory, "plain", "gloo", 2)
    assert len(reports[0]["checksums"]) == 3
    # Every variable, the moving mean and variance included, bit for bit on both ranks.
    assert reports[0]["checksums"] == reports[1]["checksums"]
    assert reports[0]["variables"] == reports[1]["variables"]
    assert reports[0]["records"] == reports[1]["records"] or all(
        a["eval_metrics"] == b["eval_metrics"]
        for a, b in zip(reports[0]["records"], reports[1]["records"]))


@pytest.mark.parametrize("launcher", ["gloo", "mpirun"])
def test_sync_batchnorm_on_two_ranks_equals_one_process(tmp_path_factory, single_sync,
                                                         launcher):
    reports = _run(tmp_path_factory, f"sync_{launcher}", launcher, 2, "--sync")
    assert [r["backend"] for r in reports] == (["horovod"] * 2 if launcher == "gloo"
                                               else ["mpi"] * 2)
    assert reports[0]["checksums"] == reports[1]["checksums"]
    for report in reports:
        for path, expected in single_sync["variables"].items():
            np.testing.assert_allclose(np.array(report["variables"][path]), np.array(expected),
                                       rtol=1e-5, atol=1e-5, err_msg=path)
    for rec_1, rec_2 in zip(single_sync["records"], reports[0]["records"]):
        assert rec_2["train_loss"]["ce"] == pytest.approx(rec_1["train_loss"]["ce"], rel=1e-5)


def _micro_batch_oracle(start: list, cap: int) -> list[np.ndarray]:
    """The batchnorm program's training as SyncBatchNormalization under accumulation means it,
    computed with plain Keras in this process: each optimizer step sums the gradients of the
    global micro-batches (the j-th micro-batch of every rank together, normalised by its own
    statistics, which also update the moving statistics in turn), each loss over the global
    batch; SGD(0.1)."""
    import keras
    import tensorflow as tf

    from fe_dist import sharding
    from fe_dist.dataset import mnist
    from programs.batchnorm import bn_model

    (x, y), _ = mnist.load_data()
    x = tf.image.resize(x[:640, ..., None], (12, 12)).numpy() * np.float32(1 / 255)
    y = y[:640]
    model = bn_model(sync=False)
    for var, value in zip([v for v in model.variables if "seed_generator" not in v.path], start):
        var.assign(np.array(value, dtype=var.dtype))
    opt = keras.optimizers.SGD(0.1)
    ce = keras.losses.SparseCategoricalCrossentropy(reduction="sum")
    for epoch, batch in enumerate([32, 33]):
        perm = sharding.epoch_permutation(640, 5, epoch)
        shares = sharding.per_rank_batch_sizes(batch, 2)
        k = sharding.micro_batch_count(batch, 2, cap)
        for step in range(sharding.steps_per_epoch(640, batch)):
            rows = perm[step * batch:(step + 1) * batch]
            parts = [np.split(rows[sharding.rank_chunk(batch, 2, r)],
                              np.cumsum(sharding.micro_batch_sizes(shares[r], k))[:-1])
                     for r in range(2)]
            total = None
            for j in range(k):
                idx = np.concatenate([parts[r][j] for r in range(2)])
                with tf.GradientTape() as tape:
                    loss = ce(y[idx], model(x[idx], training=True)) / batch
                grads = tape.gradient(loss, model.trainable_variables)
                total = grads if total is None else [a + b for a, b in zip(total, grads)]
            opt.apply_gradients(zip(total, model.trainable_variables))
    return [v.numpy() for v in model.variables if "seed_generator" not in v.path]


def test_sync_batchnorm_with_micro_batches_normalises_each_global_micro_batch(tmp_path_factory):
    """33 on 2 ranks with a cap of 16: shares 17 and 16 each come in 2 micro-batches ([9, 8]
    and [8, 8]), so SyncBatchNormalization's collectives pair up (with [16, 1] against [16]
    the job hung under Horovod); the result is what the layer means on those micro-batches."""
    reports = _run(tmp_path_factory, "sync_micro", "gloo", 2, "--sync", "--max-rank-batch", "16")
    assert [r["micro_batches"] for r in reports[0]["records"]] == [1, 2]
    assert reports[0]["checksums"] == reports[1]["checksums"]
    expected = _micro_batch_oracle(reports[0]["start"], cap=16)
    for report in reports:
        for (path, got), want in zip(report["variables"].items(), expected):
            np.testing.assert_allclose(np.array(got), want, rtol=1e-5, atol=1e-5, err_msg=path)
