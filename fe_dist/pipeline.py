"""`Pipeline`: from data, epoch and context, this rank's `tf.data` for that epoch."""

from __future__ import annotations

from typing import Any, Sequence

import hashlib

import numpy as np
import tensorflow as tf

from fe_dist import sharding
from fe_dist.distributed import Context, get_context
from fe_dist.errors import ConfigError
from fe_dist.op.op import Op, cache_key, check_ops, run_ops
from fe_dist.schedule import BaseScheduler, get_current_items, resolve

MODES = ("train", "eval")
FINGERPRINT_ROWS = 64  # rows hashed per key: evenly spaced, first and last included
PREFETCH = 2  # batches ready ahead of the step when autotune is off: one in use, one ahead


class Pipeline:
    """Data, global batch size and pipeline ops, resolved per epoch and per rank.

    Args:
        data: ``{"train": {key: array}, "eval": {key: array}}``; arrays of a split share their
            first dimension. "eval" is optional.
        batch_size: The **global** batch size (samples per optimizer step over all ranks): an int
            or a Scheduler of ints.
        ops: Tensor ops applied to whole batches in ``tf.data``; each may be a Scheduler of ops.
        autotune: Let ``tf.data`` autotune map parallelism and prefetch depth. Off by default:
            each rank then maps with its own thread budget (``Context.threads``) and prefetches
            ``PREFETCH`` batches. With one thread per rank the autotuner locked epochs to 2.56 s
            and was 1.6x slower on the small-model benchmark (README, "Gradient accumulation
            and the allreduce path"); turn it on for heavy pipelines on a rank with many cores.
    """

    def __init__(self, data: dict[str, dict[str, np.ndarray]],
                 batch_size: int | BaseScheduler[int],
                 ops: Sequence[Op | BaseScheduler[Op]] | None = None,
                 autotune: bool = False) -> None:
        get_context()  # pins this rank before TensorFlow starts
        self.data = _check_data(data)
        self.batch_size = batch_size
        self.ops = check_ops(ops, "Pipeline")
        if not isinstance(autotune, bool):
            raise ConfigError(f"Pipeline autotune must be True or False, got {autotune!r}.")
        self.autotune = autotune
        self._tensors: dict[str, dict[str, tf.Tensor]] = {}
        self._train: dict[tuple, tuple[tf.data.Dataset, tf.Variable]] = {}
        self._eval: dict[tuple, tf.data.Dataset] = {}

    # -- schedule ---------------------------------------------------------------------------------
    def get_batch_size(self, epoch: int) -> Any:
        """The global batch size scheduled at ``epoch`` (not yet validated)."""
        return resolve(self.batch_size, epoch)

    def get_ops(self, epoch: int, mode: str) -> list[Op]:
        """Ops active at ``epoch`` in ``mode``."""
        return get_current_items(self.ops, epoch, mode)

    def scheduled_items(self) -> list[Any]:
        """Everything that may change by epoch, for signature epochs."""
        return [self.batch_size, *self.ops]

    def modes(self) -> list[str]:
        """The data splits present ("train", and "eval" when given)."""
        return [m for m in MODES if m in self.data]

    def num_samples(self, mode: str) -> int:
        """Samples in split ``mode``."""
        return len(next(iter(self.data[mode].values())))

    def data_spec(self, mode: str) -> dict[str, tuple[str, tuple[int, ...]]]:
        """{key: (dtype, per-sample shape)} of split ``mode``."""
        return {k: (str(v.dtype), tuple(v.shape[1:])) for k, v in sorted(self.data[mode].items())}

    def fingerprint(self, mode: str) -> str:
        """A cheap hash of split ``mode``: keys, dtypes, shapes and `FINGERPRINT_ROWS` evenly
        spaced rows of every key. Equal on every rank when every host holds the same data;
        a copy with other content (same count and shapes) almost surely hashes differently.
        Reads only the sampled rows, so it costs microseconds even on large arrays."""
        digest = hashlib.blake2b(digest_size=8)
        arrays = self.data[mode]
        n = self.num_samples(mode)
        rows = np.unique(np.linspace(0, n - 1, min(n, FINGERPRINT_ROWS)).astype(np.int64))
        for key in sorted(arrays):
            array = arrays[key]
            digest.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
            sample = array[rows]
            # Object arrays (e.g. file paths as Python strings) hold pointers: hash their text.
            digest.update(repr(sample.tolist()).encode() if array.dtype == object
                          else np.ascontiguousarray(sample).tobytes())
        return digest.hexdigest()

    # -- datasets ---------------------------------------------------------------------------------
    def get_train_dataset(self, epoch: int, global_batch: int, ctx: Context | None = None,
                          seed: int = 0, micro_batch: int | None = None) -> tf.data.Dataset:
        """This rank's training batches for ``epoch``.

        With ``micro_batch`` (gradient accumulation), each step's per-rank batch comes as
        consecutive micro-batches of at most that many samples, the last one possibly smaller
        (their batch axis is then unknown, so one compiled step serves every size).

        The dataset of a schedule phase (same batch size and ops) is built once and reused; each
        epoch only refreshes the sample indices it gathers.
        """
        ctx = ctx or get_context()
        ops = self.get_ops(epoch, "train")
        key = (global_batch, ctx.size, ctx.rank, micro_batch, cache_key(ops))
        n = self.num_samples("train")
        indices = sharding.train_indices(n, global_batch, ctx.size, ctx.rank, seed, epoch)
        if key not in self._train:
            with tf.init_scope():
                index_var = tf.Variable(indices, trainable=False, dtype=tf.int64)
            data = self._as_tensors("train")
            steps, local = indices.shape
            if micro_batch is None or micro_batch >= local:
                def gather(step: tf.Tensor) -> dict[str, tf.Tensor]:
                    chosen = index_var[step]
                    return {k: tf.gather(v, chosen) for k, v in data.items()}

                ds = tf.data.Dataset.range(steps).map(gather)
            else:
                sizes = sharding.micro_batch_sizes(local, micro_batch)
                starts = tf.constant(np.cumsum([0] + sizes[:-1]), tf.int64)
                lengths = tf.constant(sizes, tf.int64)
                k = len(sizes)

                def gather_micro(m: tf.Tensor) -> dict[str, tf.Tensor]:
                    row, j = m // k, m % k
                    chosen = index_var[row, starts[j]:starts[j] + lengths[j]]
                    return {key: tf.gather(v, chosen) for key, v in data.items()}

                ds = tf.data.Dataset.range(steps * k).map(gather_micro)
            self._train[key] = (self._finish(ds, ops, "train", ctx), index_var)
        ds, index_var = self._train[key]
        index_var.assign(indices)
        return ds

    def get_eval_dataset(self, epoch: int, global_batch: int, ctx: Context | None = None,
                         max_batch: int | None = None) -> tf.data.Dataset:
        """This rank's contiguous share of the eval set, batched by its per-rank batch size,
        or by ``max_batch`` when that is smaller (``Estimator(max_rank_batch=...)``: eval
        needs no accumulation, only smaller batches to fit in memory)."""
        ctx = ctx or get_context()
        ops = self.get_ops(epoch, "eval")
        key = (global_batch, ctx.size, ctx.rank, max_batch, cache_key(ops))
        if key not in self._eval:
            shard = sharding.eval_shard(self.num_samples("eval"), ctx.size, ctx.rank)
            local_batch = max(sharding.per_rank_batch_sizes(global_batch, ctx.size)[ctx.rank], 1)
            if max_batch is not None:
                local_batch = min(local_batch, max_batch)
            ds = tf.data.Dataset.from_tensor_slices(
                {k: v[shard] for k, v in self.data["eval"].items()}).batch(local_batch)
            self._eval[key] = self._finish(ds, ops, "eval", ctx)
        return self._eval[key]

    def _finish(self, ds: tf.data.Dataset, ops: list[Op], mode: str,
                ctx: Context) -> tf.data.Dataset:
        threads = max(ctx.threads, 1)
        if ops:
            ds = ds.map(lambda batch: run_ops(ops, dict(batch), {"mode": mode}),
                        num_parallel_calls=tf.data.AUTOTUNE if self.autotune else threads,
                        deterministic=True)
        options = tf.data.Options()
        options.threading.private_threadpool_size = threads
        options.deterministic = True
        options.autotune.enabled = self.autotune
        return ds.prefetch(tf.data.AUTOTUNE if self.autotune else PREFETCH).with_options(options)

    def _as_tensors(self, mode: str) -> dict[str, tf.Tensor]:
        if mode not in self._tensors:
            with tf.init_scope():
                self._tensors[mode] = {k: tf.constant(v) for k, v in self.data[mode].items()}
        return self._tensors[mode]


def _check_data(data: Any) -> dict[str, dict[str, np.ndarray]]:
    if not isinstance(data, dict) or "train" not in data:
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"Pipeline data needs a 'train' split: data={{'train': {{'x': ..., 'y': "
                          f"...}}, 'eval': {{...}}}}. Got {got}.")
    checked = {}
    for mode, split in data.items():
        if mode not in MODES:
            raise ConfigError(f"Pipeline data has a split {mode!r}; fe_dist knows {MODES}. "
                              "Rename or remove it.")
        if split is None and mode == "eval":
            continue
        if not isinstance(split, dict) or not split:
            raise ConfigError(f"Pipeline data[{mode!r}] must be a non-empty dict of arrays "
                              f"{{key: numpy array}}, got {type(split).__name__}.")
        arrays = {}
        for key, value in split.items():
            array = np.asarray(value)
            if array.ndim == 0:
                raise ConfigError(f"Pipeline data[{mode!r}][{key!r}] is a scalar; give one value "
                                  "per sample (an array whose first axis is the sample axis).")
            arrays[key] = array
        lengths = {k: len(v) for k, v in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ConfigError(f"Pipeline data[{mode!r}] arrays have different lengths {lengths}; "
                              "every key needs one entry per sample.")
        if next(iter(lengths.values())) == 0:
            raise ConfigError(f"Pipeline data[{mode!r}] has no samples.")
        checked[mode] = arrays
    return checked

