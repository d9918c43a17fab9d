"""`NumpyDataset`: a dict of arrays, in memory or memory-mapped."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import tensorflow as tf

from fe_dist.dataset.base import NO_SAMPLES_FIX, DataSource, IndicesOf, LoadPlan, row_bytes
from fe_dist.errors import ConfigError


class NumpyDataset(DataSource):
    """Samples from arrays that share their first (sample) axis.

    In-memory arrays become ``tf.constant`` s once and each step gathers its rows in the graph
    (the fastest path for data that fits in memory). If any array is a ``np.memmap`` (e.g.
    ``np.load(path, mmap_mode="r")``), nothing is copied: each step reads only its rows from
    the file on the host (``tf.numpy_function``), so a rank's memory holds one batch, not the
    data set.

    Args:
        data: {key: array}, one entry per sample along the first axis.
        name: How errors name this data (e.g. "data['train']").
    """

    def __init__(self, data: Mapping[str, Any], name: str = "NumpyDataset") -> None:
        if not isinstance(data, Mapping) or not data:
            raise ConfigError(f"{name} must be a non-empty dict of arrays {{key: numpy array}}, "
                              f"got {type(data).__name__}.")
        arrays = {}
        for key, value in data.items():
            array = value if isinstance(value, np.ndarray) else np.asarray(value)
            if array.ndim == 0:
                raise ConfigError(f"{name}[{key!r}] is a scalar; give one value per sample (an "
                                  "array whose first axis is the sample axis).")
            arrays[key] = array
        lengths = {k: len(v) for k, v in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ConfigError(f"{name} arrays have different lengths {lengths}; every key needs "
                              "one entry per sample.")
        if next(iter(lengths.values())) == 0:
            raise ConfigError(f"{name} has no samples. {NO_SAMPLES_FIX}")
        self.data = arrays
        self.name = name
        # np.load(mmap_mode=...) gives np.memmap; slices of it are memmaps too.
        self.mapped = any(isinstance(v, np.memmap) for v in arrays.values())
        self._tensors: dict[str, tf.Tensor] | None = None

    def __len__(self) -> int:
        return len(next(iter(self.data.values())))

    def spec(self) -> dict[str, tuple[str, tuple[int | None, ...]]]:
        return {k: (str(v.dtype), tuple(v.shape[1:])) for k, v in sorted(self.data.items())}

    def fingerprint(self, rows: np.ndarray) -> bytes:
        # Every array, images included: only the sampled rows are read (also from a memmap).
        return b"|".join(f"{k}|{v.dtype.str}|{v.shape}|".encode() + row_bytes(v[rows])
                         for k, v in sorted(self.data.items()))

    def column(self, key: str) -> np.ndarray | None:
        value = self.data.get(key)
        # A mapped column is read only if it is small (labels), not an image array.
        if value is None or (self.mapped and value.nbytes > 64 * 2**20):
            return None
        return np.asarray(value)

    def tensors(self) -> dict[str, tf.Tensor]:
        """The in-memory arrays as constants, made once."""
        if self._tensors is None:
            with tf.init_scope():
                self._tensors = {k: tf.constant(v) for k, v in self.data.items()}
        return self._tensors

    def load(self, steps: tf.data.Dataset, indices_of: IndicesOf, plan: LoadPlan) -> tf.data.Dataset:
        if not self.mapped:
            data = self.tensors()
            return steps.map(lambda s: {k: tf.gather(v, indices_of(s)) for k, v in data.items()})
        keys = sorted(self.data)
        dtypes = [tf.as_dtype(self.data[k].dtype) for k in keys]

        def read(indices: np.ndarray) -> list[np.ndarray]:
            # Reading rows in file order is sequential I/O; put them back in batch order.
            order = np.argsort(indices, kind="stable")
            back = np.empty_like(order)
            back[order] = np.arange(len(order))
            return [np.asarray(self.data[k][indices[order]])[back] for k in keys]

        def gather(s: tf.Tensor) -> dict[str, tf.Tensor]:
            values = tf.numpy_function(read, [indices_of(s)], dtypes, stateful=False)
            out = {}
            for k, v in zip(keys, values):
                v.set_shape([None, *self.data[k].shape[1:]])
                out[k] = v
            return out

        return steps.map(gather, num_parallel_calls=plan.threads, deterministic=True)

    def eval_slices(self, shard: slice) -> dict[str, np.ndarray] | None:
        """This rank's eval share for ``from_tensor_slices`` (in memory only), else None."""
        return None if self.mapped else {k: v[shard] for k, v in self.data.items()}
