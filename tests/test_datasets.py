"""Data sources: what each yields, sharding on file sources, decoding at the scheduled size,
and bad input named before (or, for unreadable files, during) training."""

from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

import fe_dist as fe
from fe_dist.dataset import (CSVDataset, LabeledDirDataset, NumpyDataset, TFDataset,
                             TFRecordDataset)
from fe_dist.distributed import get_context
from fe_dist.errors import ConfigError
from fe_dist.op.tensorop import Resize, Scale
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp

get_context()  # pin the threads before the tests make tensors (image files)


def _ctx(size=1, rank=0):
    return SimpleNamespace(size=size, rank=rank, threads=1)


def _write(path: Path, image: np.ndarray, fmt: str = "png") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    encode = tf.io.encode_png if fmt == "png" else lambda x: tf.io.encode_jpeg(x, quality=90)
    path.write_bytes(encode(image).numpy())


def _images(n, size=12, channels=1, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, channels), np.uint8)


@pytest.fixture
def folder(tmp_path):
    """3 classes (named so sorted order differs from creation order), 8 PNGs each."""
    x = _images(24)
    for i, cls in enumerate(["zebra", "ant", "moth"]):
        for j in range(8):
            _write(tmp_path / "root" / cls / f"{j:02d}.png", x[i * 8 + j])
    return tmp_path / "root", x


def _batches(pipeline, epoch=0, batch=8, ctx=None, mode="train"):
    ctx = ctx or _ctx()
    ds = pipeline.get_train_dataset(epoch, batch, ctx) if mode == "train" else \
        pipeline.get_eval_dataset(epoch, batch, ctx)
    return [{k: v.numpy() for k, v in b.items()} for b in ds]


def _tiny_estimator(data, size=12, epochs=1, batch=8, ops=None):
    keras.utils.set_random_seed(1)
    model = fe.build(lambda: keras.Sequential([
        keras.Input((size, size, 1)), keras.layers.Flatten(),
        keras.layers.Dense(3, activation="softmax")]), model_name="m", optimizer="sgd",
        loss_name="ce")
    pipeline = fe.Pipeline(batch_size=batch, data=data,
                           ops=ops or [Scale(inputs="x", scalar=1 / 255, outputs="x")])
    network = fe.Network(ops=[ModelOp(inputs="x", model=model, outputs="p"),
                              SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    return fe.Estimator(pipeline=pipeline, network=network, epochs=epochs, verbose=False)


# -- sources -------------------------------------------------------------------------------------
def test_labeled_dir_classes_by_sorted_name_files_sorted(folder):
    root, x = folder
    ds = LabeledDirDataset(root)
    assert ds.class_indices == {"ant": 0, "moth": 1, "zebra": 2}
    assert len(ds) == 24 and ds.files[0].endswith("ant/00.png")
    np.testing.assert_array_equal(ds.column("y"), np.repeat([0, 1, 2], 8))
    assert ds.spec() == {"x": ("uint8", (12, 12, 1)), "y": ("int64", ())}


def test_folder_batches_equal_array_batches_on_each_rank(folder):
    """Same permutation, rank r gets its chunk: the folder's rank batches are the arrays'."""
    root, x = folder
    order = [8, 16, 0]  # ant, moth, zebra in sorted order
    xs = np.concatenate([x[i:i + 8] for i in order])
    ys = np.repeat([0, 1, 2], 8)
    for rank in range(2):
        files = _batches(fe.Pipeline(batch_size=8, data={"train": LabeledDirDataset(root)}),
                         batch=8, ctx=_ctx(2, rank))
        arrays = _batches(fe.Pipeline(batch_size=8, data={"train": {"x": xs, "y": ys}}),
                          batch=8, ctx=_ctx(2, rank))
        assert len(files) == len(arrays) == 3
        for f, a in zip(files, arrays):
            np.testing.assert_array_equal(f["x"], a["x"])
            np.testing.assert_array_equal(f["y"], a["y"])


def test_numpy_dataset_memmap_is_read_per_step_not_copied(tmp_path):
    x, y = _images(40), np.arange(40) % 3
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    source = NumpyDataset({"x": mapped, "y": y})
    assert source.mapped and source.data["x"] is mapped
    got = _batches(fe.Pipeline(batch_size=8, data={"train": source, "eval": source}),
                   ctx=_ctx(2, 1))
    want = _batches(fe.Pipeline(batch_size=8, data={"train": {"x": x, "y": y}}), ctx=_ctx(2, 1))
    assert source._tensors is None  # never a tf.constant of the data
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g["x"], w["x"])
    evals = _batches(fe.Pipeline(batch_size=8, data={"train": source, "eval": source}),
                     ctx=_ctx(2, 1), mode="eval")
    np.testing.assert_array_equal(np.concatenate([b["x"] for b in evals]), x[20:])


def test_csv_dataset_paths_relative_to_the_csv(folder):
    root, _ = folder
    ds = LabeledDirDataset(root)
    lines = ["image,label,weight"] + [f"{Path(f).relative_to(root)},{y},0.5"
                                      for f, y in zip(ds.files, ds.column("y"))]
    (root / "list.csv").write_text("\n".join(lines) + "\n")
    csv = CSVDataset(root / "list.csv", data_key="image")
    assert csv.spec() == {"image": ("uint8", (12, 12, 1)), "label": ("int64", ()),
                          "weight": ("float32", ())}
    a = _batches(fe.Pipeline(batch_size=8, data={"train": csv}))
    b = _batches(fe.Pipeline(batch_size=8, data={"train": ds}))
    for f, g in zip(a, b):
        np.testing.assert_array_equal(f["image"], g["x"])
        np.testing.assert_array_equal(f["label"], g["y"])


def test_stream_sources_split_each_global_batch_by_rank(tmp_path):
    """A tf.data.Dataset or TFRecord files: ranks' chunks together are the consecutive global
    batch one process reads, so N ranks equal one process."""
    x = _images(10, size=4)
    path = tmp_path / "data.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(10):
            feature = {"x": tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[tf.io.encode_png(x[i]).numpy()])),
                "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[i]))}
            writer.write(tf.train.Example(features=tf.train.Features(
                feature=feature)).SerializeToString())
    records = TFRecordDataset(str(tmp_path / "*.tfrecord"),
                              {"x": tf.io.FixedLenFeature([], tf.string),
                               "y": tf.io.FixedLenFeature([], tf.int64)},
                              image_keys=["x"], channels=1)
    stream = TFDataset(tf.data.Dataset.from_tensor_slices({"x": x, "y": np.arange(10)}))
    for source in (records, stream):
        assert len(source) == 10
        pipeline = fe.Pipeline(batch_size=3, data={"train": source})
        ranks = [_batches(pipeline, batch=3, ctx=_ctx(2, r)) for r in range(2)]
        assert [len(r) for r in ranks] == [3, 3]
        for step in range(3):
            ys = np.concatenate([ranks[0][step]["y"], ranks[1][step]["y"]])
            np.testing.assert_array_equal(ys, np.arange(step * 3, step * 3 + 3))
        np.testing.assert_array_equal(ranks[1][0]["x"], x[2:3])


# -- decoding at the scheduled resolution ---------------------------------------------------------
def test_first_resize_decodes_jpeg_at_reduced_scale(tmp_path):
    x = _images(4, size=6, channels=3)
    x = np.asarray(tf.image.resize(x, (96, 96), "bilinear"), np.uint8)  # smooth, as photos are
    for i in range(4):
        _write(tmp_path / "c" / f"{i}.jpg", x[i], "jpg")

    def first(size, dct):
        source = LabeledDirDataset(tmp_path, dct_downscale=dct)
        pipeline = fe.Pipeline(batch_size=4, data={"train": source},
                               ops=[Resize(inputs="x", size=size, outputs="x")])
        return _batches(pipeline, batch=4)[0]["x"]

    small_dct, small_full = first((24, 24), True), first((24, 24), False)
    assert small_dct.shape == small_full.shape == (4, 24, 24, 3)
    diff = np.abs(small_dct - small_full)
    assert 0 < diff.mean() < 8  # a 1/4-scale decode: close to, not equal to, the full decode
    np.testing.assert_array_equal(first((60, 60), True), first((60, 60), False))  # > half
    # By default (None) only images of 256 px and more are decoded at reduced scale.
    np.testing.assert_array_equal(first((24, 24), None), small_full)


def test_images_of_different_sizes_batch_after_a_first_resize(tmp_path):
    for i, size in enumerate([10, 14, 20, 12]):
        _write(tmp_path / "c" / f"{i}.png", _images(1, size=size, seed=i)[0])
    pipeline = fe.Pipeline(batch_size=4, data={"train": LabeledDirDataset(tmp_path)},
                           ops=[Resize(inputs="x", size=(8, 8), outputs="x")])
    assert _batches(pipeline, batch=4)[0]["x"].shape == (4, 8, 8, 1)


# -- bad input ----------------------------------------------------------------------------------
def _fit_error(data, **kwargs):
    with pytest.raises(ConfigError) as err:
        _tiny_estimator(data, **kwargs).fit()
    return str(err.value)


def test_missing_root_empty_class_and_other_files_are_named(tmp_path, folder):
    root, _ = folder
    message = _fit_error({"train": LabeledDirDataset(tmp_path / "nowhere")})
    assert "nowhere" in message and "does not exist" in message
    (root / "empty").mkdir()
    message = _fit_error({"train": LabeledDirDataset(root)})
    assert "empty" in message and "no images" in message
    (root / "empty").rmdir()
    (root / "ant" / "notes.txt").write_text("hello")
    message = _fit_error({"train": LabeledDirDataset(root)})
    assert "notes.txt" in message and "Move them out" in message


def test_csv_missing_column_and_missing_file(tmp_path, folder):
    root, _ = folder
    (root / "a.csv").write_text("path,label\nant/00.png,0\n")
    message = _fit_error({"train": CSVDataset(root / "a.csv")})
    assert "a.csv" in message and "'x'" in message and "data_key" in message
    (root / "b.csv").write_text("x,y\nant/00.png,0\nant/99.png,1\n")
    message = _fit_error({"train": CSVDataset(root / "b.csv")})
    assert "line 3" in message and "ant/99.png" in message


def test_labels_out_of_range_before_training(tmp_path, folder):
    root, _ = folder
    rows = "\n".join(f"ant/{j:02d}.png,{j}" for j in range(8))
    (root / "c.csv").write_text("x,y\n" + rows + "\n")
    message = _fit_error({"train": CSVDataset(root / "c.csv")})
    assert "labels 'y'" in message and "3 classes" in message


def test_mixed_channels_without_channels_argument(tmp_path):
    for i in range(4):
        _write(tmp_path / "c" / f"{i}.png", _images(1, channels=3 if i == 2 else 1, seed=i)[0])
    message = _fit_error({"train": LabeledDirDataset(tmp_path)}, batch=4)
    assert "2.png" in message and "channels=1" in message and "Epoch 0, train step 0" in message
    summary = _tiny_estimator({"train": LabeledDirDataset(tmp_path, channels=1)}, batch=4).fit()
    assert summary.records[0].steps == 1


def test_corrupt_jpeg_fails_naming_file_epoch_and_step_or_is_skipped(tmp_path):
    x = _images(16)
    for i in range(16):
        _write(tmp_path / f"c{i % 3}" / f"{i:02d}.jpg", x[i], "jpg")
    bad = tmp_path / "c1" / "04.jpg"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated: header only
    message = _fit_error({"train": LabeledDirDataset(tmp_path)}, batch=4)
    assert str(bad) in message and "Epoch 0, train step" in message and "skip_bad" in message
    summary = _tiny_estimator({"train": LabeledDirDataset(tmp_path, skip_bad=True)},
                              batch=4).fit()
    assert summary.records[0].steps == 4 and summary.records[0].skipped_samples == 1


def test_a_png_named_jpg_is_named_when_decoded_at_reduced_scale(tmp_path):
    x = _images(4)
    for i in range(4):
        _write(tmp_path / "c" / f"{i}.jpg", x[i], "png" if i == 3 else "jpg")
    message = _fit_error({"train": LabeledDirDataset(tmp_path, dct_downscale=True)}, batch=4,
                         size=6,
                         ops=[Resize(inputs="x", size=(6, 6), outputs="x")])
    assert "3.jpg" in message and "not a JPEG" in message


def test_memory_does_not_grow_over_epochs(tmp_path):
    """Loose bound: a folder of 2,000 JPEGs, 3 epochs; the peak resident memory after the
    last epoch is within 60 MB of the peak after the first (the data set itself is ~9 MB on
    disk, so this says nothing accumulates per sample, not that memory is small)."""
    import importlib.util
    from conftest import REPO

    spec = importlib.util.spec_from_file_location("data_scale",
                                                  REPO / "benchmarks" / "data_scale.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.generate(tmp_path / "jpegs", 2000)
    peaks = []
    estimator = bench._program(str(tmp_path / "jpegs"), epochs=3, batch=128)
    estimator.on_epoch_end = lambda record: peaks.append(bench._rss_mb()[1])
    estimator.fit()
    assert peaks[-1] - peaks[0] < 60, peaks


def test_micro_batches_and_eval_of_file_and_stream_sources(folder):
    """Uneven micro-batches (gradient accumulation) of a folder are the arrays' micro-batches;
    a stream's eval share is its contiguous slice."""
    root, x = folder
    order = [8, 16, 0]
    xs = np.concatenate([x[i:i + 8] for i in order])
    ys = np.repeat([0, 1, 2], 8)
    files = fe.Pipeline(batch_size=8, data={"train": LabeledDirDataset(root)})
    arrays = fe.Pipeline(batch_size=8, data={"train": {"x": xs, "y": ys}})
    # Global batch 9 on 2 ranks: rank 0's share of 5 in 2 micro-batches (cap 3), 2 steps.
    got = [b["x"] for b in files.get_train_dataset(0, 9, _ctx(2, 0), micro_batch=3)]
    want = [b["x"] for b in arrays.get_train_dataset(0, 9, _ctx(2, 0), micro_batch=3)]
    assert [len(g) for g in got] == [3, 2] * 2
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    stream = TFDataset(tf.data.Dataset.from_tensor_slices({"x": xs, "y": ys}))
    pipeline = fe.Pipeline(batch_size=8, data={"train": stream, "eval": stream})
    evals = _batches(pipeline, batch=8, ctx=_ctx(2, 1), mode="eval")
    np.testing.assert_array_equal(np.concatenate([b["y"] for b in evals]), ys[12:])
