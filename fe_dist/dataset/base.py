"""`DataSource`: what a Pipeline split reads from (arrays, image files, records, a stream)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from fe_dist.errors import ConfigError

IndicesOf = Callable[[tf.Tensor], tf.Tensor]
STREAM_FINGERPRINT = "stream:"  # starts the fingerprint of a stream's first samples


@dataclasses.dataclass(frozen=True)
class LoadPlan:
    """How a source turns a stream of index vectors into batches, for one schedule phase.

    Attributes:
        mode: "train" or "eval".
        threads: This rank's thread budget (parallel calls of the per-batch map).
        first_op: The epoch's first pipeline op when the source applies it per sample while
            decoding (a Resize of its image key), else None; the Pipeline then runs the rest.
        batch: The size of every batch but possibly the last, or None when sizes vary (uneven
            micro-batches); a source may then decode sample by sample and re-batch.
    """

    mode: str
    threads: int
    first_op: Any = None
    batch: int | None = None


class DataSource:
    """A split of a data set: a fixed number of samples, each a dict of keys.

    Random-access sources (``random_access = True``) load any list of sample indices, so the
    Pipeline keeps its sharding (one global permutation per epoch, rank r reads only its chunk
    of each global batch). Stream sources (`TFDataset`, `TFRecordDataset`) are read in order.
    """

    random_access = True

    def __len__(self) -> int:
        raise NotImplementedError

    def keys(self) -> list[str]:
        """The keys of each sample."""
        return sorted(self.spec())

    def spec(self) -> dict[str, tuple[str, tuple[int | None, ...]]]:
        """{key: (dtype, per-sample shape)}: the same on every rank (part of the run plan)."""
        raise NotImplementedError

    def column(self, key: str) -> np.ndarray | None:
        """All values of ``key`` when cheap to get (labels), for checks before training."""
        return None

    def fingerprint(self, rows: np.ndarray) -> bytes:
        """Bytes that identify this split's content at sample indices ``rows`` (a few evenly
        spaced ones), cheap to compute: a host holding another copy of the data should give
        other bytes. By default: the spec and the sampled rows of every cheap column."""
        parts = [repr(self.spec()).encode()]
        for key in self.keys():
            column = self.column(key)
            if column is not None:
                parts.append(row_bytes(np.asarray(column)[rows]))
        return b"|".join(parts)

    def fuses(self, op: Any) -> bool:
        """Whether this source applies ``op`` (an epoch's first pipeline op) while decoding."""
        return False

    def load(self, steps: tf.data.Dataset, indices_of: IndicesOf, plan: LoadPlan) -> tf.data.Dataset:
        """Batches: for each element ``s`` of ``steps``, the samples ``indices_of(s)``."""
        raise NotImplementedError

    def explain(self, indices: np.ndarray, plan: LoadPlan) -> str | None:
        """Why loading ``indices`` failed (the file and the fix), or None if unknown."""
        return None

    def skipped(self) -> int:
        """Samples skipped so far as unreadable (``skip_bad=True``)."""
        return 0

    def ended_early(self, err: BaseException) -> int | None:
        """For a stream: the samples it held, when ``err`` (raised while reading it) says it
        ended before its planned length; None otherwise."""
        return None


def row_bytes(sample: np.ndarray) -> bytes:
    """The bytes of sampled rows, for fingerprints."""
    # Object arrays (e.g. strings) hold pointers: hash their text.
    return repr(sample.tolist()).encode() if sample.dtype == object else \
        np.ascontiguousarray(sample).tobytes()


NO_SAMPLES_FIX = ("Give the split samples, or leave it out of Pipeline(data=...) (only 'train' "
                  "is required; without 'test', Estimator.test() has nothing to run).")


def check_sample_count(n: int, what: str) -> int:
    """``n`` if positive, else a ConfigError naming ``what``."""
    if n <= 0:
        raise ConfigError(f"{what} has no samples. {NO_SAMPLES_FIX}")
    return n
