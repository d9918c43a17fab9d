"""`TFDataset`: a user's ``tf.data.Dataset`` of dicts, read as a stream."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import tensorflow as tf

from fe_dist.dataset.base import DataSource, row_bytes
from fe_dist.errors import ConfigError


class TFDataset(DataSource):
    """Samples from a ``tf.data.Dataset`` whose elements are dicts of per-sample tensors.

    A dataset has no random access, so fe_dist cannot draw its per-epoch permutation. Instead
    every epoch reads the dataset from its start, in its own order (shuffle it yourself, with a
    seed, if you want shuffling): consecutive ``global_batch`` samples form one step, and rank r
    keeps its chunk of them, as with arrays. So a run on N ranks sees the same global batches
    as one process and gives the same weights (up to float rounding) -- if the dataset yields
    the same elements in the same order on every rank (a shuffle or ``list_files`` with a
    seed: TensorFlow's global seed is the same on every rank). The plan checks the first
    samples (`fingerprint`) on every rank before training. The price: every rank iterates the whole
    stream (decoding work that other ranks keep), so for large data prefer a random-access
    source, or a dataset that is cheap until after fe_dist has taken each rank's chunk.

    Args:
        dataset: Unbatched elements, each a dict {key: tensor}.
        num_samples: Samples per epoch; needed (and agreed before training) when the dataset's
            cardinality is unknown. Steps per epoch are ``num_samples // global_batch``; the
            dataset must yield at least that many: one that ends before it stops the run with
            a ConfigError naming the split and both counts (at construction when its length
            is known, else when an epoch reaches its end).
    """

    random_access = False

    def __init__(self, dataset: tf.data.Dataset, num_samples: int | None = None) -> None:
        if not isinstance(dataset, tf.data.Dataset):
            raise ConfigError(f"TFDataset needs a tf.data.Dataset, got {type(dataset).__name__}.")
        if not isinstance(dataset.element_spec, dict):
            raise ConfigError("TFDataset: the dataset's elements must be dicts {key: tensor}, "
                              f"got {dataset.element_spec}. Map them to dicts first.")
        if num_samples is None:
            cardinality = int(dataset.cardinality())
            if cardinality < 0:
                raise ConfigError("TFDataset: the dataset's length is unknown (a filter, or read "
                                  "from files); give num_samples=<samples per epoch>.")
            num_samples = cardinality
        if num_samples < 1:
            raise ConfigError(f"TFDataset: num_samples must be positive, got {num_samples}.")
        cardinality = int(dataset.cardinality())
        if cardinality >= 0 and num_samples > cardinality:
            raise ConfigError(f"TFDataset: num_samples={num_samples} but the dataset holds "
                              f"{cardinality} samples; an epoch would train fewer steps than "
                              f"planned. Give num_samples={cardinality} or less.")
        self.dataset = dataset
        self.num_samples = int(num_samples)
        self._fingerprints: dict[int, bytes] = {}

    def __len__(self) -> int:
        return self.num_samples

    def spec(self) -> dict[str, tuple[str, tuple[int | None, ...]]]:
        return {k: (v.dtype.name, tuple(v.shape.as_list()))
                for k, v in sorted(self.dataset.element_spec.items())}

    def fingerprint(self, rows: np.ndarray) -> bytes:
        """The spec and the first ``len(rows)`` samples in stream order (so the first global
        batches): ranks reading the stream in other orders (a shuffle or ``list_files``
        without a seed, a seed that differs by rank) or other files give other bytes. Read
        once per source (a reshuffling stream must not move an extra epoch per plan)."""
        count = len(rows)
        if count not in self._fingerprints:
            parts = [repr(self.spec()).encode()]
            for sample in self.dataset.take(count):
                parts.extend(row_bytes(np.asarray(sample[k])) for k in sorted(sample))
            self._fingerprints[count] = b"|".join(parts)
        return self._fingerprints[count]

    def stream(self) -> tf.data.Dataset:
        """The samples of one epoch, in order: exactly ``num_samples`` (a dataset that ends
        before raises a tf.errors.FailedPreconditionError there, see `ended_early`)."""
        return self.dataset.take(self.num_samples).apply(
            tf.data.experimental.assert_cardinality(self.num_samples))

    def ended_early(self, err: BaseException) -> int | None:
        """How many samples the stream held when ``err`` (raised while reading it) says it ended
        before ``num_samples``; None for any other error."""
        match = re.search(r"expected to contain (\d+) element\(?s?\)? but contained only "
                          r"(\d+)", str(err))
        return int(match.group(2)) if match else None

    def rank_batches(self, global_batch: int, chunk: slice, steps: int,
                     micro_sizes: list[int] | None, threads: int) -> tf.data.Dataset:
        """This rank's batches: its ``chunk`` of each ``global_batch`` consecutive samples, for
        ``steps`` steps (split into ``micro_sizes`` micro-batches when accumulating)."""
        ds = self.stream().batch(global_batch, drop_remainder=True).take(steps)
        ds = ds.map(lambda b: {k: v[chunk.start:chunk.stop] for k, v in b.items()})
        if micro_sizes:
            starts = [sum(micro_sizes[:i]) for i in range(len(micro_sizes))]

            def split(b: dict[str, Any]) -> tf.data.Dataset:
                parts = [{k: v[s:s + n] for k, v in b.items()}
                         for s, n in zip(starts, micro_sizes)]
                ds_parts = [tf.data.Dataset.from_tensors(p) for p in parts]
                out = ds_parts[0]
                for p in ds_parts[1:]:
                    out = out.concatenate(p)
                return out

            ds = ds.flat_map(split)
        return ds
