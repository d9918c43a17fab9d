"""Per-sample ops and augmentation in the Pipeline: each op's effect, seeding by (seed, mode,
epoch, sample position), scheduling, bad input, and a 2-rank training run."""

from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

import fe_dist as fe
from conftest import launch, read_reports
from fe_dist.errors import ConfigError
from fe_dist.op.numpyop import Draws, NumpyOp
from fe_dist.op.numpyop.meta import OneOf, Sometimes
from fe_dist.op.numpyop.multivariate import (HorizontalFlip, PadIfNeeded, RandomCrop, Rotate,
                                             VerticalFlip)
from fe_dist.op.numpyop.runner import run_pipeline_ops
from fe_dist.op.numpyop.univariate import CoarseDropout, Cutout, Onehot
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.schedule import Scheduler

N, B = 64, 16
fe.distributed.get_context()  # pin this process before the tests start TensorFlow


def images(n=N, h=10, w=10, c=2, dtype=np.float32):
    """Distinct, asymmetric images (no flip or rotation maps one onto itself)."""
    return np.random.default_rng(0).random((n, h, w, c)).astype(dtype)


def apply(op, batch, key=1):
    """Run ``op`` eagerly on a batch dict, with draws keyed on ``key``."""
    size = len(next(iter(batch.values())))
    draws = Draws.for_batch(tf.constant(key, tf.uint32), tf.constant(0, tf.int64), size)
    out = run_pipeline_ops([op], {k: tf.constant(v) for k, v in batch.items()},
                           {"mode": "train"}, draws)
    return {k: np.asarray(v) for k, v in out.items()}


def ctx(rank=0, size=1):
    return SimpleNamespace(rank=rank, size=size, threads=1)


# -- each op's effect -----------------------------------------------------------------------------
@pytest.mark.parametrize("op,flip", [(HorizontalFlip, lambda im: im[:, ::-1]),
                                     (VerticalFlip, lambda im: im[::-1])])
def test_flip_flips_the_samples_sometimes_chooses(op, flip):
    x = images()
    assert np.array_equal(apply(op("x", "x"), {"x": x})["x"], [flip(im) for im in x])
    # FastEstimator's per-sample call works too.
    one = op("x", "x").forward(x[0], {"mode": "train", "rng": np.random.default_rng(0)})
    assert np.array_equal(one, flip(x[0]))
    out = apply(Sometimes(op("x", "x"), 0.5), {"x": x})["x"]
    flipped = [np.array_equal(o, flip(im)) for o, im in zip(out, x)]
    kept = [np.array_equal(o, im) for o, im in zip(out, x)]
    assert all(f != k for f, k in zip(flipped, kept))  # each sample: flipped or untouched
    assert 16 < sum(flipped) < 48  # about half, per sample
    assert np.array_equal(apply(Sometimes(op("x", "x"), 0.0), {"x": x})["x"], x)
    assert np.array_equal(apply(Sometimes(op("x", "x"), 1.0), {"x": x})["x"],
                          [flip(im) for im in x])


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_rotate_quarter_turn_is_rot90(dtype):
    x = (images() * 200).astype(dtype)
    out = apply(Rotate("x", "x", limit=(90, 90)), {"x": x})["x"]
    assert out.dtype == dtype
    np.testing.assert_allclose(out.astype(np.float64), np.rot90(x, k=1, axes=(1, 2)), atol=1e-3)
    out = apply(Rotate("x", "x", limit=(-90, -90)), {"x": x})["x"]
    np.testing.assert_allclose(out.astype(np.float64), np.rot90(x, k=-1, axes=(1, 2)), atol=1e-3)
    # A random angle per sample: different samples turn by different amounts.
    ones = np.ones((8, 9, 9, 1), np.float32)
    corners = apply(Rotate("x", "x", limit=40), {"x": ones})["x"].sum(axis=(1, 2, 3))
    assert len(np.unique(np.round(corners, 3))) == 8


def test_coarse_dropout_and_cutout_fill_the_requested_area():
    x = np.ones((N, 12, 12, 3), np.float32)
    out = apply(CoarseDropout("x", "x", max_holes=1, max_height=3, max_width=4), {"x": x})["x"]
    for sample in out:
        rows, cols = np.nonzero(sample[..., 0] == 0)
        assert len(rows) == 12 and np.ptp(rows) == 2 and np.ptp(cols) == 3  # one 3x4 hole
        assert np.array_equal(sample[..., 0], sample[..., 2])  # every channel
    assert len({tuple(np.argwhere(s[..., 0] == 0)[0]) for s in out}) > 10  # places vary
    out = apply(Cutout("x", "x", size=5, fill_value=7), {"x": x})["x"]
    assert ((out == 7).sum(axis=(1, 2, 3)) == 75).all()
    out = apply(CoarseDropout("x", "x", max_holes=3, min_holes=3, max_height=1, max_width=1),
                {"x": x})["x"]
    assert ((out[..., 0] == 0).sum(axis=(1, 2)) <= 3).all()
    assert ((out[..., 0] == 0).sum(axis=(1, 2)) == 3).mean() > 0.8  # overlaps are rare


def test_random_crop_takes_a_window_at_a_random_place():
    x = images(h=12, w=12)
    mask = x[..., :1] * 10
    out = apply(RandomCrop(("x", "m"), ("x", "m"), height=8, width=6), {"x": x, "m": mask})
    assert out["x"].shape == (N, 8, 6, 2) and out["m"].shape == (N, 8, 6, 1)
    places = set()
    for i in range(N):
        hits = [(r, c) for r in range(5) for c in range(7)
                if np.array_equal(out["x"][i], x[i, r:r + 8, c:c + 6])]
        assert len(hits) == 1
        r, c = hits[0]
        assert np.array_equal(out["m"][i], mask[i, r:r + 8, c:c + 6])  # same place for both
        places.add(hits[0])
    assert len(places) > 10


def centred(h, w, least_h, least_w):
    """albumentations' split of the padding: the odd pixel goes to the bottom / right."""
    dh, dw = max(least_h - h, 0), max(least_w - w, 0)
    return ((0, 0), (dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2), (0, 0))


@pytest.mark.parametrize("border_mode,np_mode", [("constant", "constant"), (0, "constant"),
                                                 ("reflect", "reflect"), (4, "reflect"),
                                                 ("symmetric", "symmetric"), ("edge", "edge"),
                                                 ("wrap", "wrap")])
def test_pad_if_needed_equals_np_pad_image_and_mask_together(border_mode, np_mode):
    x = images(n=4, h=31, w=26, c=3)  # odd padding of the height: 4 rows on top, 5 below
    mask = (x[..., :1] * 10).astype(np.uint8)
    fill = {"constant_values": 7} if np_mode == "constant" else {}
    op = PadIfNeeded(("x", "m"), ("x", "m"), min_height=40, min_width=40,
                     border_mode=border_mode, value=7)
    out = apply(op, {"x": x, "m": mask})
    pad = centred(31, 26, 40, 40)
    assert pad[1] == (4, 5)
    for key, original in (("x", x), ("m", mask)):
        expected = np.pad(original, pad, mode=np_mode, **fill)
        assert out[key].dtype == original.dtype and out[key].shape == expected.shape
        assert np.array_equal(out[key], expected)
        assert np.array_equal(out[key][:, 4:35, 7:33], original)  # centred
    # Padding beyond the image's own size (numpy's repeated reflection), one axis at a time:
    # a side at least the minimum is left as it is; an image at least the minimum passes.
    small = images(n=2, h=3, w=50, c=1)
    out = apply(PadIfNeeded("x", "x", 12, 20, border_mode=border_mode, value=7),
                {"x": small})["x"]
    assert np.array_equal(out, np.pad(small, centred(3, 50, 12, 20), mode=np_mode, **fill))
    assert out.shape == (2, 12, 50, 1)
    big = images(n=2, h=41, w=40)
    assert np.array_equal(apply(PadIfNeeded("x", "x", 40, 40), {"x": big})["x"], big)
    # FastEstimator's per-sample call, and one signature for equal settings.
    one = op.forward([x[0], mask[0]], {"mode": "train"})
    assert np.array_equal(one[1], np.pad(mask[0], pad[1:], mode=np_mode, **fill))
    assert op.signature() == PadIfNeeded(("x", "m"), ("x", "m"), 40, 40, np_mode, 7).signature()


def test_pad_if_needed_per_channel_fill():
    x = images(n=2, h=4, w=4, c=3, dtype=np.uint8)
    out = apply(PadIfNeeded("x", "x", 6, 5, border_mode="constant", value=[1, 2, 3]),
                {"x": x})["x"]
    assert out.shape == (2, 6, 5, 3)
    assert (out[:, 0] == [1, 2, 3]).all() and (out[:, :, 4] == [1, 2, 3]).all()
    assert np.array_equal(out[:, 1:5, :4], x)


def crop_pipeline(ops):
    x = images(n=N, h=32, w=32, c=3)
    return x, fe.Pipeline(data={"train": {"x": x, "id": np.arange(N)}}, batch_size=B, ops=ops)


def crops(x, padded, ds):
    """Per sample of every batch of ``ds``: (id, (row, column) of its window in ``padded``)."""
    out = []
    for batch in ds:
        for im, i in zip(batch["x"].numpy(), batch["id"].numpy()):
            windows = np.lib.stride_tricks.sliding_window_view(padded[i], im.shape)[:, :, 0]
            hits = np.argwhere((windows == im).all(axis=(2, 3, 4)))
            assert len(hits) >= 1, "a crop that is no window of the padded image"
            out.append((int(i), tuple(int(v) for v in hits[0])))
    return out


def test_pad_then_random_crop_cifar_style_is_seeded_and_schedulable():
    # Padding from epoch 1 (scheduled), a 32x32 crop always: epoch 0 crops the whole image.
    ops = [Scheduler({1: PadIfNeeded("x", "x", min_height=40, min_width=40, mode="train")}),
           RandomCrop("x", "x", height=32, width=32, mode="train")]
    x, p1 = crop_pipeline(ops)
    _, p2 = crop_pipeline(ops)
    padded = np.pad(x, centred(32, 32, 40, 40), mode="reflect")  # FastEstimator's default
    assert all(place == (4, 4) for _, place in crops(x, padded,
                                                     p1.get_train_dataset(0, B, ctx(), seed=3)))
    e1 = crops(x, padded, p1.get_train_dataset(1, B, ctx(), seed=3))
    assert len({place for _, place in e1}) > 20  # offsets vary per sample
    assert e1 == crops(x, padded, p2.get_train_dataset(1, B, ctx(), seed=3))  # same seed
    assert e1 != crops(x, padded, p1.get_train_dataset(1, B, ctx(), seed=4))
    assert e1 != crops(x, padded, p1.get_train_dataset(2, B, ctx(), seed=3))  # new epoch
    # Two ranks crop their halves of each global batch as one process does.
    halves = [crops(x, padded, p1.get_train_dataset(1, B, ctx(r, 2), seed=3)) for r in (0, 1)]
    assert [s for k in range(N // B) for h in halves for s in h[k * 8:(k + 1) * 8]] == e1


def test_onehot_values():
    y = np.array([0, 3, 1, 2])
    assert np.array_equal(apply(Onehot("y", "o", num_classes=4), {"y": y})["o"], np.eye(4)[y])
    smooth = apply(Onehot("y", "o", num_classes=4, label_smoothing=0.2), {"y": y[:, None]})["o"]
    np.testing.assert_allclose(smooth, np.eye(4)[y] * 0.8 + 0.05, rtol=1e-6)


def test_one_of_picks_each_op_per_sample():
    x = images()
    ops = [HorizontalFlip("x", "x"), VerticalFlip("x", "x"), Rotate("x", "x", limit=(90, 90))]
    out = apply(OneOf(*ops), {"x": x})["x"]
    expected = [x[:, :, ::-1], x[:, ::-1], np.rot90(x, axes=(1, 2))]
    chosen = [[np.allclose(out[i], e[i], atol=1e-4) for e in expected] for i in range(N)]
    assert all(sum(c) == 1 for c in chosen)
    counts = np.sum(chosen, axis=0)
    assert (counts > 10).all(), counts


class AddNoise(NumpyOp):
    """A user op: one sample, numpy, the seeded generator of the state."""

    def forward(self, data, state):
        assert data.ndim == 3  # one sample, no batch axis
        return data + state["rng"].normal(size=data.shape).astype(data.dtype)


def test_user_numpy_op_gets_one_sample_and_a_seeded_generator():
    x = images()
    a, b = apply(AddNoise("x", "n"), {"x": x})["n"], apply(AddNoise("x", "n"), {"x": x})["n"]
    assert a.shape == x.shape and np.array_equal(a, b)
    assert not np.allclose(a[0] - x[0], a[1] - x[1])  # every sample its own numbers
    assert not np.array_equal(apply(AddNoise("x", "n"), {"x": x}, key=2)["n"], a)


# -- seeding through the Pipeline ----------------------------------------------------------------
def flip_pipeline(ops=None, eval_ops=False):
    x = images()
    ids = np.arange(N)
    op = Sometimes(HorizontalFlip("x", "x", mode=None if eval_ops else "train"), 0.5)
    return x, fe.Pipeline(data={"train": {"x": x, "id": ids}, "eval": {"x": x, "id": ids}},
                          batch_size=B, ops=[op] if ops is None else ops)


def flips(x, ds):
    """Per sample of every batch of ``ds``: (id, flipped?)."""
    out = []
    for batch in ds:
        for im, i in zip(batch["x"].numpy(), batch["id"].numpy()):
            assert np.array_equal(im, x[i]) or np.array_equal(im, x[i][:, ::-1])
            out.append((int(i), bool(np.array_equal(im, x[i][:, ::-1]))))
    return out


def test_same_seed_same_draws_new_epoch_and_rank_new_draws_n_ranks_equal_one():
    x, p1 = flip_pipeline()
    _, p2 = flip_pipeline()
    e0 = flips(x, p1.get_train_dataset(0, B, ctx(), seed=5))
    assert e0 == flips(x, p2.get_train_dataset(0, B, ctx(), seed=5))  # another pipeline
    assert e0 != flips(x, p1.get_train_dataset(0, B, ctx(), seed=6))
    # The dataset of a phase is cached and reused: a new epoch must still draw anew.
    ds0 = p1.get_train_dataset(0, B, ctx(), seed=5)
    e1 = flips(x, p1.get_train_dataset(1, B, ctx(), seed=5))
    assert p1.get_train_dataset(1, B, ctx(), seed=5) is ds0
    assert [f for _, f in e1] != [f for _, f in e0]
    assert e0 == flips(x, p1.get_train_dataset(0, B, ctx(), seed=5))  # and back
    # Two ranks: each draws for its own samples, different from the other's, and together
    # exactly what one process draws for the same global batches.
    r0 = flips(x, p1.get_train_dataset(0, B, ctx(0, 2), seed=5))
    r1 = flips(x, p1.get_train_dataset(0, B, ctx(1, 2), seed=5))
    assert [f for _, f in r0] != [f for _, f in r1]
    merged = [s for k in range(N // B) for s in r0[k * 8:(k + 1) * 8] + r1[k * 8:(k + 1) * 8]]
    assert merged == e0
    # With gradient accumulation (micro-batches) too.
    micro = flips(x, p1.get_train_dataset(0, B, ctx(1, 2), seed=5, micro_batch=3))
    assert micro == r1


def test_eval_augmentation_is_seeded_per_epoch():
    x, p1 = flip_pipeline(eval_ops=True)
    _, p2 = flip_pipeline(eval_ops=True)
    a = flips(x, p1.get_eval_dataset(0, B, ctx()))
    assert a == flips(x, p2.get_eval_dataset(0, B, ctx()))
    assert a != flips(x, p1.get_eval_dataset(1, B, ctx()))
    two = flips(x, p1.get_eval_dataset(0, B, ctx(0, 2))) + flips(x, p1.get_eval_dataset(
        0, B, ctx(1, 2)))
    assert two == a


def test_scheduled_augmentation_starts_at_its_epoch():
    x, p = flip_pipeline(ops=[Scheduler({2: Sometimes(HorizontalFlip("x", "x"), 1.0)})])
    for epoch in (0, 1):
        assert not any(f for _, f in flips(x, p.get_train_dataset(epoch, B, ctx(), seed=1)))
    assert all(f for _, f in flips(x, p.get_train_dataset(2, B, ctx(), seed=1)))
    op = Sometimes(HorizontalFlip("x", "x"), 0.5)
    assert op.signature() != Sometimes(HorizontalFlip("x", "x"), 0.7).signature()
    assert "numpy_op=HorizontalFlip(" in op.signature()
    one_of = OneOf(HorizontalFlip("x", "x"))
    assert one_of.cache_key() == OneOf(HorizontalFlip("x", "x")).cache_key()


# -- bad input: ConfigError before training ------------------------------------------------------
def estimator(pipe_ops, net_extra=(), x=None, epochs=3):
    rng = np.random.default_rng(0)
    x = rng.random((64, 8, 8, 1), dtype=np.float32) if x is None else x
    d = {"train": {"x": x, "y": rng.integers(0, 10, 64), "v": rng.random((64, 5))}}
    model = fe.build(lambda: keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Flatten(),
                                               keras.layers.Dense(10, activation="softmax")]),
                     model_name="m", loss_name="ce")
    net = [ModelOp(inputs="x", model=model, outputs="p"),
           SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce"), *net_extra]
    return fe.Estimator(pipeline=fe.Pipeline(data=d, batch_size=16, ops=pipe_ops),
                        network=fe.Network(net), epochs=epochs, verbose=False)


@pytest.mark.parametrize("ops,words", [
    ([HorizontalFlip("y", "y")], r"Epoch 0 \(train\): pipeline op HorizontalFlip.*key 'y' has "
                                 r"per-sample shape \(\) \(int64\).*images of shape"),
    ([Scheduler({2: Rotate("v", "v")})], r"Epoch 2 \(train\).*Rotate.*key 'v' has per-sample "
                                         r"shape \(5,\)"),
    ([Onehot("x", "o", 10)], r"Onehot.*key 'x' has dtype float32.*integer class indices"),
    ([RandomCrop("x", "x", 9, 4)], r"RandomCrop.*8x8.*smaller than the crop 9x4.*pad the "
                                   r"images first: PadIfNeeded\(inputs, outputs, min_height=9, "
                                   r"min_width=4\) before this op"),
    ([PadIfNeeded("y", "y", 10, 10)], r"PadIfNeeded.*key 'y' has per-sample shape \(\) "
                                      r"\(int64\).*images of shape \(height, width, channels\)"),
    ([PadIfNeeded("x", "x", 10, 9), RandomCrop("x", "x", 12, 9)],
     r"RandomCrop.*key 'x' holds images of 10x9 .*smaller than the crop 12x9.*min_height=12"),
    ([PadIfNeeded("x", "x", 10, 10, border_mode="constant", value=(1, 2))],
     r"value \(1.0, 2.0\) gives 2 channel fills but key 'x' has 1 channels"),
    ([Sometimes(CoarseDropout("x", "x", max_height=10, max_width=2), 0.5)],
     r"key 'x' holds images of 8x8, smaller than the largest hole"),
    ([Onehot("y", "o", 8)], r"Onehot.*key 'y' holds labels from 0 to 9, outside \[0, "
                            r"num_classes=8\)"),
    ([OneOf(HorizontalFlip("x", "x"), RandomCrop("x", "x", 4, 4))],
     r"OneOf.*key 'x' one choice gives float32\(4, 4, 1\) and another float32\(8, 8, 1\)"),
])
def test_bad_augmentation_input_is_refused_before_training(ops, words):
    est = estimator(ops)
    with pytest.raises(ConfigError, match=words):
        est.fit()


def test_bad_dtype_and_misplaced_ops():
    with pytest.raises(ConfigError, match=r"Rotate.*key 'x' has dtype bool.*Cast it"):
        estimator([Rotate("x", "x")], x=np.zeros((64, 8, 8, 1), bool)).fit()
    with pytest.raises(ConfigError, match=r"NumpyOp in the Network ops.*Pipeline\(ops="):
        estimator([], net_extra=[HorizontalFlip("x", "x2")]).fit()
    with pytest.raises(ConfigError, match=r"prob must be a number in \[0, 1\], got 1.5"):
        Sometimes(HorizontalFlip("x", "x"), 1.5)
    with pytest.raises(ConfigError, match="OneOf needs at least one op"):
        OneOf()
    with pytest.raises(ConfigError, match=r"PadIfNeeded.*fill value 300.0 is not an integer in "
                                          r"\[0, 255\] for the uint8 images of key 'x'"):
        estimator([PadIfNeeded("x", "x", 10, 10, border_mode="constant", value=300)],
                  x=np.zeros((64, 8, 8, 1), np.uint8)).fit()
    with pytest.raises(ConfigError, match=r"border_mode must be one of .*'reflect'.*got 'mirror'"):
        PadIfNeeded("x", "x", 40, 40, border_mode="mirror")


# -- 2 ranks -------------------------------------------------------------------------------------
def test_two_ranks_train_with_augmentation_like_one_process(tmp_path):
    """horovodrun --gloo -np 2 and one plain process (under enable_deterministic) train the same
    program with augmentation from epoch 1: both ranks end with identical weights, equal to one
    process's, and each rank augments other samples, together exactly what one process draws; a
    bad op is refused on both ranks before training."""
    reports = {}
    for name, np_, launcher, extra in (("two", 2, "gloo", []),
                                       ("one", 1, "python", ["--deterministic"])):
        out = tmp_path / name
        out.mkdir()
        proc = launch(["augment.py", *extra], out, np=np_, launcher=launcher, timeout=240)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        reports[name] = read_reports(out, np_)
    r0, r1 = reports["two"]
    for r in (r0, r1):
        assert "Epoch 1 (train): pipeline op Onehot" in r["bad"]
    assert r0["weights"] == r1["weights"]
    assert r0["batch_digest"] != r1["batch_digest"]
    assert r0["flips"] != r1["flips"] and 0 < sum(r0["flips"]) < len(r0["flips"])
    np.testing.assert_allclose(r0["weights"], reports["one"][0]["weights"], atol=1e-5)
    # One process draws, for the global batch, what the two ranks draw for their halves.
    assert reports["one"][0]["flips"] == r0["flips"] + r1["flips"]


def test_estimator_eval_and_test_draw_from_its_seed():
    """Eval/test augmentation draws from the Estimator's seed (it was always 0)."""
    rng = np.random.default_rng(0)
    split = lambda: {"x": rng.random((32, 8, 8, 1), dtype=np.float32),  # noqa: E731
                     "y": rng.integers(0, 10, 32)}
    model = fe.build(lambda: keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                               keras.layers.Dense(10, activation="softmax")]),
                     model_name="m", loss_name="ce")
    pipeline = fe.Pipeline(data={"train": split(), "eval": split(), "test": split()},
                           batch_size=16,
                           ops=[Sometimes(HorizontalFlip("x", "x", mode="!train"), 0.5)])
    network = fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                          SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    est = fe.Estimator(pipeline=pipeline, network=network, epochs=1, seed=9, verbose=False)
    seeds = []
    get = pipeline.get_eval_dataset

    def recording(*args, **kwargs):
        seeds.append(kwargs.get("seed", 0))
        return get(*args, **kwargs)

    pipeline.get_eval_dataset = recording
    est.fit()
    est.test()
    assert seeds[-2:] == [9, 9]  # the eval of epoch 0, then test (preflight's come first)


def test_schedule_table_names_the_ops_meta_ops_wrap():
    from fe_dist.summary import _short
    rotate = Rotate(inputs="x", outputs="x", limit=15)
    assert _short(Sometimes(rotate, 0.5).signature()) == "Sometimes[Rotate 0.5]"
    assert _short(OneOf(rotate, Cutout("x", "x", size=8)).signature()) == "OneOf[Rotate|Cutout]"


def test_a_wrapped_op_that_cannot_be_described_keeps_its_own_cache_entry():
    """Sometimes/OneOf describe the ops they wrap; a wrapped op holding a lambda cannot be told
    apart by its description, so the wrapper must not share compiled datasets either."""
    class Jitter(NumpyOp):
        def __init__(self, inputs, outputs, fn):
            super().__init__(inputs=inputs, outputs=outputs)
            self.fn = fn

        def forward(self, data, state):
            return self.fn(data)

    first, second = (Sometimes(Jitter("x", "x", lambda v: v + k), 0.5) for k in (0, 1))
    assert first.signature() == second.signature()
    assert first.cache_key() != second.cache_key()
    assert OneOf(Jitter("x", "x", lambda v: v)).cache_key() != \
        OneOf(Jitter("x", "x", lambda v: v)).cache_key()
    flip = Sometimes(HorizontalFlip("x", "x"), 0.5)
    assert flip.cache_key() == Sometimes(HorizontalFlip("x", "x"), 0.5).cache_key()
