"""`ImageFileSource`: the shared base of sources whose samples are image files plus columns.

Each rank opens only the files of the samples it trains on, inside ``tf.data``. When the
epoch's first pipeline op is a Resize of the image key, it is applied per image as it is
decoded (so images of different sizes can form a batch), and a JPEG that is at least twice
the target size is decoded at 1/2, 1/4 or 1/8 scale by the JPEG decoder itself (DCT
downscaling, as FFCV does) before resizing the rest of the way.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import tensorflow as tf

from fe_dist.dataset.base import NO_SAMPLES_FIX, DataSource, IndicesOf, LoadPlan
from fe_dist.errors import ConfigError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_RATIOS = (2, 4, 8)
# Measured (benchmarks/data_scale.py): on 64-128 px JPEGs the per-image choice of scale made
# decode + resize 15-25 % slower; on 256-512 px ones up to 1.5x faster.
DCT_MIN_SIDE = 256


class ImageFileSource(DataSource):
    """Samples made of one image file (under ``data_key``) and numeric columns.

    Subclasses list their files lazily in ``_scan`` (the first time the data is needed, which
    in a run is inside the Estimator's checks, so a missing folder raises on every rank
    together).

    Args:
        data_key: The key of the decoded image.
        channels: 1 (grayscale) or 3 (RGB) to convert every image; None keeps the files' own
            channel count, which must then be the same in every file.
        skip_bad: Skip unreadable images (dropped from their batch, counted in the epoch
            record's ``skipped_samples``) instead of stopping with an error naming the file.
        dct_downscale: Decode JPEGs at 1/2, 1/4 or 1/8 scale when the first op resizes them
            to that or less. None (auto): only when the first file's short side is at least
            ``DCT_MIN_SIDE`` px and twice the target; below that the decode is so cheap that
            choosing the scale per image costs more than it saves (docs/benchmarks.md, "Memory
            and input throughput").
    """

    def __init__(self, data_key: str, channels: int | None, skip_bad: bool,
                 dct_downscale: bool | None) -> None:
        if channels not in (None, 1, 3):
            raise ConfigError(f"{type(self).__name__}: channels must be 1 (grayscale), 3 (RGB) or "
                              f"None (as stored), got {channels!r}.")
        self.data_key = data_key
        self.channels = channels
        self.skip_bad = bool(skip_bad)
        self.dct_downscale = dct_downscale
        self._files: list[str] | None = None
        self._columns: dict[str, np.ndarray] = {}
        self._first_shape: tuple[int, int, int] | None = None
        self._counter: tf.Variable | None = None

    # -- subclass hook ------------------------------------------------------------------------
    def _scan(self) -> tuple[list[str], dict[str, np.ndarray]]:
        """(absolute file paths, {column key: array}) in sample order; raise ConfigError."""
        raise NotImplementedError

    def _ensure(self) -> None:
        if self._files is None:
            files, columns = self._scan()
            if not files:
                raise ConfigError(f"{self} has no samples. {NO_SAMPLES_FIX}")
            self._first_shape = self._probe(files[0])
            self._files, self._columns = files, columns

    def _probe(self, path: str) -> tuple[int, int, int]:
        try:
            image = _decode_eager(path, self.channels)
        except Exception as err:  # noqa: BLE001 - reworded with the file
            raise ConfigError(f"{self}: cannot decode {path!r} ({_short(err)}). Replace or "
                              "remove the file.") from None
        return tuple(int(d) for d in image.shape)

    # -- DataSource ---------------------------------------------------------------------------
    @property
    def files(self) -> list[str]:
        """The image file of every sample, in sample order."""
        self._ensure()
        return list(self._files)

    def __len__(self) -> int:
        self._ensure()
        return len(self._files)

    def spec(self) -> dict[str, tuple[str, tuple[int | None, ...]]]:
        self._ensure()
        spec = {k: (str(v.dtype), tuple(v.shape[1:])) for k, v in self._columns.items()}
        spec[self.data_key] = ("uint8", self._first_shape)
        return dict(sorted(spec.items()))

    def fingerprint(self, rows: np.ndarray) -> bytes:
        # The sampled files' names and sizes (not their content: that would open files on
        # every rank) and the label columns.
        self._ensure()
        names = [f"{os.path.basename(self._files[r])}:{os.path.getsize(self._files[r])}"
                 for r in rows]
        return repr(names).encode() + b"|" + super().fingerprint(rows)

    def column(self, key: str) -> np.ndarray | None:
        self._ensure()
        return self._columns.get(key)

    def fuses(self, op: Any) -> bool:
        from fe_dist.op.tensorop.resize import Resize  # ops import nothing from datasets

        return isinstance(op, Resize) and tuple(op.inputs) == (self.data_key,) == \
            tuple(op.outputs)

    def skipped(self) -> int:
        return 0 if self._counter is None else int(self._counter.numpy())

    def load(self, steps: tf.data.Dataset, indices_of: IndicesOf, plan: LoadPlan) -> tf.data.Dataset:
        self._ensure()
        with tf.init_scope():
            paths = tf.constant(self._files)
            columns = {k: tf.constant(v) for k, v in self._columns.items()}
            if self.skip_bad and self._counter is None:
                self._counter = tf.Variable(0, dtype=tf.int64, trainable=False)
        decode = self._decoder(plan)
        counter = self._counter

        if plan.batch is not None and not self.skip_bad:
            # Sample by sample: tf.data runs the decode directly, without map_fn's loop
            # around every image (a large share of a small image's decode time).
            def sample(i: tf.Tensor) -> dict[str, tf.Tensor]:
                out = {k: v[i] for k, v in columns.items()}
                out[self.data_key] = decode(paths[i])
                return out

            return steps.map(indices_of).unbatch().map(
                sample, num_parallel_calls=plan.threads, deterministic=True).batch(plan.batch)

        def batch(s: tf.Tensor) -> dict[str, tf.Tensor]:
            chosen = indices_of(s)
            out = {k: tf.gather(v, chosen) for k, v in columns.items()}
            files = tf.gather(paths, chosen)
            if not self.skip_bad:
                out[self.data_key] = tf.map_fn(decode, files, fn_output_signature=self._out_spec(
                    plan))
                return out
            # Unreadable files are dropped from the batch: a nested dataset ignores the
            # decoder's errors (a graph op cannot catch them), the step still runs.
            samples = tf.data.Dataset.from_tensor_slices({**out, "__file": files})
            samples = samples.map(lambda d: {**{k: v for k, v in d.items() if k != "__file"},
                                             self.data_key: decode(d["__file"])})
            samples = samples.ignore_errors().batch(tf.cast(tf.size(chosen), tf.int64))
            result = samples.get_single_element()
            counter.assign_add(tf.size(chosen, out_type=tf.int64) -
                               tf.shape(result[self.data_key], out_type=tf.int64)[0])
            return result

        return steps.map(batch, num_parallel_calls=plan.threads, deterministic=True)

    def _out_spec(self, plan: LoadPlan) -> tf.TensorSpec:
        c = self._first_shape[2]
        if plan.first_op is None:
            return tf.TensorSpec(self._first_shape, tf.uint8)
        return tf.TensorSpec((*plan.first_op.size, c), tf.float32)

    def _decoder(self, plan: LoadPlan):
        """The per-file decode (and fused first op) of ``plan``, as a graph function body."""
        channels = self.channels or 0
        expected_c = self._first_shape[2]
        op = plan.first_op
        state = {"mode": plan.mode}
        dct = op is not None and self.dct_downscale
        if op is not None and self.dct_downscale is None:
            dct = min(self._first_shape[:2]) >= max(DCT_MIN_SIDE, 2 * max(op.size))

        def jpeg(contents: tf.Tensor) -> tf.Tensor:
            if not dct:
                return tf.io.decode_jpeg(contents, channels=channels)
            shape = tf.io.extract_jpeg_shape(contents)
            th, tw = op.size
            # The largest ratio whose decoded image is still at least the target size; one
            # Case op (nested conds cost a function call each, as much as a small decode).
            fits = [tf.logical_and(shape[0] // r >= th, shape[1] // r >= tw) for r in _RATIOS]
            branch = tf.reduce_sum(tf.cast(tf.stack(fits), tf.int32))
            return tf.switch_case(branch, [
                lambda r=r: tf.io.decode_jpeg(contents, channels=channels, ratio=r)
                for r in (1, *_RATIOS)])

        formats = {"jpeg" if f.lower().endswith((".jpg", ".jpeg")) else "other"
                   for f in self._files}

        def decode(path: tf.Tensor) -> tf.Tensor:
            contents = tf.io.read_file(path)
            if formats == {"jpeg"}:  # no per-image format test when the names say JPEG
                image = jpeg(contents)
            elif "jpeg" not in formats:
                image = tf.io.decode_image(contents, channels=channels, expand_animations=False)
            else:
                image = tf.cond(tf.io.is_jpeg(contents), lambda: jpeg(contents),
                                lambda: tf.io.decode_image(contents, channels=channels,
                                                           expand_animations=False))
            # Mixed channel counts (without channels=) and mixed sizes (without a first
            # Resize) cannot form a batch: fail here, the Pipeline names the file.
            checks = [tf.debugging.assert_equal(tf.shape(image)[2], expected_c,
                                                message="channel count differs")]
            if op is None:
                checks.append(tf.debugging.assert_equal(
                    tf.shape(image)[:2], self._first_shape[:2], message="image size differs"))
            with tf.control_dependencies(checks):
                image = tf.identity(image)
            image.set_shape([None, None, expected_c])
            if op is None:
                image.set_shape(self._first_shape)
                return image
            return op.forward(image, state)

        return decode

    def explain(self, indices: np.ndarray, plan: LoadPlan) -> str | None:
        self._ensure()
        for i in np.asarray(indices).ravel():
            path = self._files[int(i)]
            if path.lower().endswith((".jpg", ".jpeg")) and \
                    not bool(tf.io.is_jpeg(tf.io.read_file(path))):
                return (f"{path!r} is not a JPEG file despite its name. Convert it, rename it "
                        f"to its format, or pass skip_bad=True to {type(self).__name__} to skip "
                        "unreadable files (counted in the epoch record)")
            try:
                image = _decode_eager(path, self.channels)
            except Exception as err:  # noqa: BLE001 - reported with the file
                return (f"cannot decode {path!r} ({_short(err)}). Replace or remove the file, "
                        f"or pass skip_bad=True to {type(self).__name__} to skip unreadable "
                        "files (counted in the epoch record)")
            if image.shape[2] != self._first_shape[2]:
                return (f"{path!r} has {image.shape[2]} channel(s) but {self._files[0]!r} has "
                        f"{self._first_shape[2]}. Pass channels=1 or channels=3 to "
                        f"{type(self).__name__} to convert every image")
            if plan.first_op is None and tuple(image.shape[:2]) != self._first_shape[:2]:
                return (f"{path!r} is {image.shape[0]}x{image.shape[1]} but {self._files[0]!r} "
                        f"is {self._first_shape[0]}x{self._first_shape[1]}; images of different "
                        "sizes cannot form a batch. Schedule a Resize of key "
                        f"{self.data_key!r} as the first pipeline op")
        return None


def _decode_eager(path: str, channels: int | None) -> tf.Tensor:
    contents = tf.io.read_file(path)
    return tf.io.decode_image(contents, channels=channels or 0, expand_animations=False)


def _short(err: BaseException) -> str:
    text = getattr(err, "message", None) or str(err)
    return " ".join(text.split())[:200]


def is_image_file(name: str) -> bool:
    """Whether ``name`` has an image extension fe_dist decodes (JPEG or PNG)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
