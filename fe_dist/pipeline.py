"""`Pipeline`: from data, epoch and context, this rank's `tf.data` for that epoch."""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from fe_dist import sharding
from fe_dist.dataset.base import STREAM_FINGERPRINT, DataSource, LoadPlan
from fe_dist.dataset.numpy_dataset import NumpyDataset
from fe_dist.dataset.tf_dataset import TFDataset
from fe_dist.distributed import Context, get_context
from fe_dist.errors import ConfigError
from fe_dist.op.numpyop.draws import Draws, epoch_key
from fe_dist.op.numpyop.runner import needs_draws, run_pipeline_ops
from fe_dist.op.op import MODES, Op, cache_key, run_ops
from fe_dist.schedule import (AdaptiveBatch, BaseScheduler, all_values, get_current_items,
                              resolve, scheduled_list)

FINGERPRINT_ROWS = 64  # rows hashed per key: evenly spaced, first and last included
PREFETCH = 2  # batches ready ahead of the step when autotune is off: one in use, one ahead


class Pipeline:
    """Data, global batch size and pipeline ops, resolved per epoch and per rank.

    Args:
        data: ``{"train": ..., "eval": ..., "test": ...}`` ("eval" and "test" optional; "test"
            is read by `Estimator.test`), each split a dict of arrays
            sharing their first dimension (as a `NumpyDataset`), a source from
            ``fe_dist.dataset`` (`LabeledDirDataset`, `CSVDataset`, `TFRecordDataset`, ...), or
            a ``tf.data.Dataset`` of dicts with a known length (as a `TFDataset`).
        batch_size: The **global** batch size (samples per optimizer step over all ranks): an int,
            a Scheduler of ints, or per mode ``{"train": ..., "eval": ..., "test": ...}`` (each
            an int or a Scheduler of ints; a Scheduler of such dicts works too). A mode left
            out of the dict uses the train batch size. Eval and test batches only set how many
            samples each rank evaluates at once; their metrics cover the whole split either way.
            An `AdaptiveBatch` (the batch the run chooses from its gradient noise scale) may
            stand for the train batch size.
        ops: Ops applied to whole batches in ``tf.data``, each an op or a Scheduler of ops:
            tensor ops, and per-sample NumpyOps (augmentation, ``fe_dist.op.numpyop``), whose
            random draws are keyed on (seed, mode, epoch, sample position).
        autotune: Let ``tf.data`` autotune map parallelism and prefetch depth. Off by default:
            each rank then maps with its own thread budget (``Context.threads``) and prefetches
            ``PREFETCH`` batches. With one thread per rank the autotuner locked epochs to 2.56 s
            and was 1.6x slower on the small-model benchmark (docs/benchmarks.md, "The
            allreduce path"); turn it on for heavy pipelines on a rank with many cores.
    """

    def __init__(self, data: dict[str, Any],
                 batch_size: int | BaseScheduler[int],
                 ops: Op | BaseScheduler[Op] | Sequence[Op | BaseScheduler[Op]] | None = None,
                 autotune: bool = False) -> None:
        get_context()  # pins this rank before TensorFlow starts
        self.data = _check_data(data)
        _check_adaptive_place(batch_size)
        self.batch_size = batch_size
        self.ops = scheduled_list(ops, Op, "Pipeline ops", "fe_dist ops (e.g. Resize, ModelOp)")
        if not isinstance(autotune, bool):
            raise ConfigError(f"Pipeline autotune must be True or False, got {autotune!r}.")
        self.autotune = autotune
        # Optimizer steps per epoch when set (FastEstimator's train_steps_per_epoch, set by
        # fe_dist.fe1.Estimator): fewer than one pass, or more (the data repeats).
        self.steps_per_epoch: int | None = None
        self.max_steps_per_epoch: int | None = None  # FastEstimator 1.0's: a cap only
        # Train the epoch's last, partial global batch as one more step (fe_dist.fe1's
        # drop_last=False) where every rank gets a sample of it; fe_dist drops it.
        self.keep_last = False
        self._train: dict[tuple, tuple[tf.data.Dataset, tf.Variable | None, LoadPlan]] = {}
        self._eval: dict[tuple, tf.data.Dataset] = {}
        # The epoch key of a cached dataset holding NumpyOps: assigned every epoch, as the
        # sample indices are, so a dataset reused across epochs draws new augmentations.
        self._epoch_keys: dict[tuple, tf.Variable] = {}

    # -- schedule ---------------------------------------------------------------------------------
    def get_batch_size(self, epoch: int, mode: str = "train") -> Any:
        """The global batch size of ``mode`` scheduled at ``epoch`` (not yet validated)."""
        value = resolve(self.batch_size, epoch)
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(MODES))
            if unknown:
                raise ConfigError(f"Pipeline batch_size has modes {unknown}; fe_dist knows "
                                  f"{MODES}. Example: batch_size={{'train': 32, 'eval': 256}}.")
            if "train" not in value:
                raise ConfigError(f"Pipeline batch_size {value!r} has no 'train' entry. Give the "
                                  "training batch size, e.g. {'train': 32, 'eval': 256}.")
            value = resolve(value.get(mode, value["train"]), epoch)
        return value

    def adaptive_batch(self) -> AdaptiveBatch | None:
        """The train split's `AdaptiveBatch`, or None when its batch size is fixed or
        scheduled."""
        train = self.batch_size.get("train") if isinstance(self.batch_size, dict) \
            else self.batch_size
        return train if isinstance(train, AdaptiveBatch) else None

    def get_ops(self, epoch: int, mode: str) -> list[Op]:
        """Ops active at ``epoch`` in ``mode``."""
        return get_current_items(self.ops, epoch, mode)

    def train_steps(self, global_batch: int) -> int:
        """Optimizer steps of an epoch at ``global_batch``: every full global batch of the
        training set; ``steps_per_epoch`` when set; at most ``max_steps_per_epoch`` when set."""
        full = sharding.steps_per_epoch(self.num_samples("train"), global_batch)
        if self.steps_per_epoch is None:
            return full if self.max_steps_per_epoch is None else min(full,
                                                                      self.max_steps_per_epoch)
        if self.steps_per_epoch > full and not self.data["train"].random_access:
            raise ConfigError(f"{self.steps_per_epoch} train steps per epoch at global batch "
                              f"{global_batch} need more than one pass over the training data "
                              f"({full} steps), but it is a stream read once per epoch. Give at "
                              f"most {full} steps, or an in-memory or file source.")
        return self.steps_per_epoch

    def last_batch(self, global_batch: int, world_size: int,
                   micro_batch: int | None = None) -> int:
        """Samples of the partial global batch trained after the full ones (0: dropped). Kept
        only with ``keep_last``, a random-access source, no steps_per_epoch setting, no
        accumulation cap, and at least one sample per rank (a rank without any would train
        BatchNormalization on an empty batch)."""
        rest = self.num_samples("train") % global_batch
        if not self.keep_last or not self.data["train"].random_access or micro_batch or \
                self.steps_per_epoch is not None or self.max_steps_per_epoch is not None:
            return 0
        return rest if rest >= world_size else 0

    def get_last_batch_dataset(self, epoch: int, global_batch: int, ctx: Context | None = None,
                               seed: int = 0) -> tf.data.Dataset:
        """This rank's share of ``epoch``'s last, partial global batch (`last_batch`), as one
        batch, with the epoch's train ops (NumpyOps draw by the samples' global positions)."""
        ctx = ctx or get_context()
        source = self.data["train"]
        n = len(source)
        indices = sharding.last_batch_indices(n, global_batch, ctx.size, ctx.rank, seed, epoch)
        rest = n % global_batch
        start = sharding.steps_per_epoch(n, global_batch) * global_batch + \
            sharding.rank_chunk(rest, ctx.size, ctx.rank).start
        ops = self.get_ops(epoch, "train")
        plan, ops = self._load_plan(source, ops, "train", ctx, len(indices))
        constant = tf.constant(indices[None], tf.int64)
        ds = source.load(tf.data.Dataset.range(1), lambda step: constant[step], plan)
        cached = ("train_last", (global_batch, ctx.size, ctx.rank, epoch, cache_key(ops)))
        ds = self._finish(ds, ops, "train", ctx, cached, lambda e: e + start)
        self._set_epoch_key(cached, seed, epoch)
        return ds

    def scheduled_items(self) -> list[Any]:
        """Everything that may change by epoch, for signature epochs."""
        per_mode = self.batch_size.values() if isinstance(self.batch_size, dict) else []
        return [self.batch_size, *per_mode, *self.ops]

    def modes(self) -> list[str]:
        """The data splits present ("train", and "eval" and "test" when given)."""
        return [m for m in MODES if m in self.data]

    def num_samples(self, mode: str) -> int:
        """Samples in split ``mode``."""
        return len(self.data[mode])

    def data_spec(self, mode: str) -> dict[str, tuple[str, tuple[int, ...]]]:
        """{key: (dtype, per-sample shape)} of split ``mode``."""
        return self.data[mode].spec()

    def keys(self, mode: str) -> list[str]:
        """The keys of each sample of split ``mode``."""
        return self.data[mode].keys()

    def column(self, mode: str, key: str) -> np.ndarray | None:
        """All values of ``key`` in split ``mode`` when cheap to read (labels), else None."""
        return self.data[mode].column(key)

    def skipped(self, mode: str) -> int:
        """Samples of split ``mode`` skipped so far as unreadable (``skip_bad``)."""
        return self.data[mode].skipped() if mode in self.data else 0

    def fingerprint(self, mode: str) -> str:
        """A cheap hash of split ``mode``: its spec and `FINGERPRINT_ROWS` evenly spaced samples
        as the source describes them (`DataSource.fingerprint`; a stream's first samples, in its
        order, prefixed `STREAM_FINGERPRINT`). Equal on every rank when every host holds the
        same data; another copy (same count and shapes) almost surely differs."""
        n = self.num_samples(mode)
        rows = np.unique(np.linspace(0, n - 1, min(n, FINGERPRINT_ROWS)).astype(np.int64))
        digest = hashlib.blake2b(self.data[mode].fingerprint(rows), digest_size=8).hexdigest()
        # A stream hashes its first samples: a mismatch is then most likely another order.
        return digest if self.data[mode].random_access else STREAM_FINGERPRINT + digest

    # -- datasets ---------------------------------------------------------------------------------
    def get_train_dataset(self, epoch: int, global_batch: int, ctx: Context | None = None,
                          seed: int = 0, micro_batch: int | None = None) -> tf.data.Dataset:
        """This rank's training batches for ``epoch``.

        With ``micro_batch`` (gradient accumulation), each step's per-rank batch comes as
        consecutive micro-batches of at most that many samples, as many on every rank
        (`sharding.micro_batch_count`), their sizes differing by at most one (their batch axis
        is then unknown, so one compiled step serves every size).

        The dataset of a schedule phase (same batch size and ops) is built once and reused; each
        epoch only refreshes the sample indices it gathers.
        """
        ctx = ctx or get_context()
        ops = self.get_ops(epoch, "train")
        key = (global_batch, ctx.size, ctx.rank, micro_batch, cache_key(ops))
        source = self.data["train"]
        n = len(source)
        if not source.random_access:
            if key not in self._train:
                steps = self.train_steps(global_batch)
                local = sharding.per_rank_batch_sizes(global_batch, ctx.size)[ctx.rank]
                k = sharding.micro_batch_count(global_batch, ctx.size, micro_batch)
                micro = sharding.micro_batch_sizes(local, k) if k > 1 else None
                plan = LoadPlan("train", max(ctx.threads, 1))
                chunk = sharding.rank_chunk(global_batch, ctx.size, ctx.rank)
                ds = source.rank_batches(global_batch, chunk, steps, micro, plan.threads)
                first = _train_first(global_batch, chunk.start, micro)
                self._train[key] = (self._finish(ds, ops, "train", ctx, ("train", key), first),
                                    None, plan)
            self._set_epoch_key(("train", key), seed, epoch)
            return self._train[key][0]
        indices = sharding.train_indices(n, global_batch, ctx.size, ctx.rank, seed, epoch,
                                         self.train_steps(global_batch))
        if key not in self._train:
            with tf.init_scope():
                index_var = tf.Variable(indices, trainable=False, dtype=tf.int64)
            steps, local = indices.shape
            k = sharding.micro_batch_count(global_batch, ctx.size, micro_batch)
            uniform = k == 1
            start = sharding.rank_chunk(global_batch, ctx.size, ctx.rank).start
            plan, ops = self._load_plan(source, ops, "train", ctx, local if uniform else None)
            if uniform:
                ds = source.load(tf.data.Dataset.range(steps), lambda step: index_var[step], plan)
                first = _train_first(global_batch, start, None)
            else:
                sizes = sharding.micro_batch_sizes(local, k)
                starts = tf.constant(np.cumsum([0] + sizes[:-1]), tf.int64)
                lengths = tf.constant(sizes, tf.int64)

                def indices_of(m: tf.Tensor) -> tf.Tensor:
                    row, j = m // k, m % k
                    return index_var[row, starts[j]:starts[j] + lengths[j]]

                ds = source.load(tf.data.Dataset.range(steps * k), indices_of, plan)
                first = _train_first(global_batch, start, sizes)
            fused = int(plan.first_op is not None)
            self._train[key] = (self._finish(ds, ops, "train", ctx, ("train", key), first,
                                             fused), index_var, plan)
        ds, index_var, _ = self._train[key]
        index_var.assign(indices)
        self._set_epoch_key(("train", key), seed, epoch)
        return ds

    def get_eval_dataset(self, epoch: int, global_batch: int, ctx: Context | None = None,
                         max_batch: int | None = None, mode: str = "eval",
                         seed: int = 0) -> tf.data.Dataset:
        """This rank's contiguous share of split ``mode`` ("eval" or "test"), batched by its
        per-rank batch size, or by ``max_batch`` when that is smaller
        (``Estimator(max_rank_batch=...)``: eval needs no accumulation, only smaller batches to
        fit in memory). NumpyOps of ``mode`` draw from (``seed``, mode, epoch, index in the
        split)."""
        ctx = ctx or get_context()
        ops = self.get_ops(epoch, mode)
        key = (mode, global_batch, ctx.size, ctx.rank, max_batch, cache_key(ops))
        if key not in self._eval:
            source, fused = self.data[mode], 0
            shard = sharding.eval_shard(len(source), ctx.size, ctx.rank)
            local_batch = max(sharding.per_rank_batch_sizes(global_batch, ctx.size)[ctx.rank], 1)
            if max_batch is not None:
                local_batch = min(local_batch, max_batch)
            slices = source.eval_slices(shard) if isinstance(source, NumpyDataset) else None
            if slices is not None:  # in memory: today's path
                ds = tf.data.Dataset.from_tensor_slices(slices).batch(local_batch)
            elif not source.random_access:
                ds = source.stream().skip(shard.start).take(shard.stop - shard.start) \
                    .batch(local_batch)
            else:
                plan, ops = self._load_plan(source, ops, mode, ctx, local_batch)
                fused = int(plan.first_op is not None)
                start, stop = shard.start, shard.stop
                batches = -(-(stop - start) // local_batch)
                ds = source.load(tf.data.Dataset.range(batches), lambda b: tf.range(
                    start + b * local_batch, tf.minimum(start + (b + 1) * local_batch, stop)),
                    plan)
            self._eval[key] = self._finish(ds, ops, mode, ctx, (mode, key),
                                           lambda b: shard.start + b * local_batch, fused)
        self._set_epoch_key((mode, key), seed, epoch)
        return self._eval[key]

    def _load_plan(self, source: DataSource, ops: list[Op], mode: str, ctx: Context,
                   batch: int | None) -> tuple[LoadPlan, list[Op]]:
        """How ``source`` loads batches, and the ops left for whole batches: a source that
        decodes files applies a first Resize per image while decoding (so it follows the
        schedule: a new Resize is a new phase, with a new decode path)."""
        first = ops[0] if ops and source.fuses(ops[0]) else None
        return LoadPlan(mode, max(ctx.threads, 1), first, batch), ops[1:] if first else ops

    def explain_failure(self, err: BaseException, mode: str, epoch: int, element: int,
                        global_batch: int, ctx: Context, seed: int = 0,
                        micro_batch: int | None = None) -> ConfigError | None:
        """A ConfigError naming the file, epoch and step when reading batch ``element`` of
        ``mode`` failed (an unreadable image, say); None when the source cannot tell."""
        if not isinstance(err, tf.errors.OpError):
            return None
        source = self.data[mode]
        n = len(source)
        if not source.random_access:
            held = source.ended_early(err)
            if held is None:
                return None
            k = sharding.micro_batch_count(global_batch, ctx.size, micro_batch) \
                if mode == "train" else 1
            where = f"train step {element // k}" if mode == "train" else f"{mode} batch {element}"
            # Raised on the ranks that reach the end; with the same stream on every rank, all.
            harm = ("this epoch would train fewer steps than planned (the LR warm-up, "
                    "global_step and the checkpoint count on them)" if mode == "train" else
                    f"the {mode} metrics would leave samples out")
            return ConfigError(
                f"Epoch {epoch}, {where} (rank {ctx.rank}): the {mode!r} stream ended after "
                f"{held} samples, but the plan has num_samples={n}, so {harm}. Give "
                f"num_samples={held} (what every epoch of the stream holds) to TFDataset or "
                "TFRecordDataset, and make every rank read the same stream")
        if mode == "train":
            indices = sharding.train_indices(n, global_batch, ctx.size, ctx.rank, seed, epoch,
                                             self.train_steps(global_batch))
            k = sharding.micro_batch_count(global_batch, ctx.size, micro_batch)
            step = element // k
            chosen = indices[step] if step < len(indices) else indices.ravel()
            where = f"train step {step}"
        else:
            shard = sharding.eval_shard(n, ctx.size, ctx.rank)
            chosen = np.arange(shard.start, shard.stop)
            where = f"{mode} batch {element}"
        first = self.get_ops(epoch, mode)
        plan = LoadPlan(mode, 1, first[0] if first and source.fuses(first[0]) else None)
        reason = source.explain(chosen, plan)
        if reason is None:
            return None
        return ConfigError(f"Epoch {epoch}, {where} (rank {ctx.rank}): {reason}.")

    def _set_epoch_key(self, cached: tuple, seed: int, epoch: int) -> None:
        if cached in self._epoch_keys:
            self._epoch_keys[cached].assign(epoch_key(seed, cached[0], epoch))

    def _finish(self, ds: tf.data.Dataset, ops: list[Op], mode: str, ctx: Context,
                cached: tuple, first: Any, fused: int = 0) -> tf.data.Dataset:
        """Map ``ops`` over the batches of ``ds``. With NumpyOps, each batch also gets its
        `Draws`: the epoch key (a variable, see ``_epoch_keys``) and ``first(element index)``,
        the global position of the batch's first sample. ``fused``: how many of the epoch's
        ops the source already applied (they still count in each op's draw key)."""
        threads = max(ctx.threads, 1)
        parallel = tf.data.AUTOTUNE if self.autotune else threads
        if needs_draws(ops):
            with tf.init_scope():
                key_var = tf.Variable(0, trainable=False, dtype=tf.int64)
            self._epoch_keys[cached] = key_var

            def augment(element: tf.Tensor, batch: dict) -> dict:
                size = tf.shape(next(iter(batch.values())), out_type=tf.int64)[0]
                draws = Draws.for_batch(key_var.read_value(), first(element), size)
                return run_pipeline_ops(ops, dict(batch), {"mode": mode}, draws, fused)

            ds = ds.enumerate().map(augment, num_parallel_calls=parallel, deterministic=True)
        elif ops:
            ds = ds.map(lambda batch: run_ops(ops, dict(batch), {"mode": mode}),
                        num_parallel_calls=parallel, deterministic=True)
        options = tf.data.Options()
        options.threading.private_threadpool_size = threads
        options.deterministic = True
        options.autotune.enabled = self.autotune
        return ds.prefetch(tf.data.AUTOTUNE if self.autotune else PREFETCH).with_options(options)


def _check_adaptive_place(batch_size: Any) -> None:
    """An `AdaptiveBatch` is the whole train batch size: not inside a Scheduler (it changes
    by itself) and not an eval or test batch (those have no gradients to measure)."""
    def holds(value: Any) -> bool:
        if isinstance(value, AdaptiveBatch):
            return True
        if isinstance(value, dict):
            return any(holds(v) for v in value.values())
        return isinstance(value, BaseScheduler) and any(holds(v) for v in value.get_all_values())

    train = batch_size.get("train") if isinstance(batch_size, dict) else batch_size
    misplaced = holds(batch_size) and not (isinstance(train, AdaptiveBatch) and not any(
        holds(v) for m, v in batch_size.items() if m != "train")
        if isinstance(batch_size, dict) else isinstance(batch_size, AdaptiveBatch))
    if misplaced:
        raise ConfigError("Pipeline: an AdaptiveBatch is inside a Scheduler or is an eval/test "
                          "batch size. It chooses the train batch size by itself: give "
                          "batch_size=AdaptiveBatch(...) or batch_size={'train': "
                          "AdaptiveBatch(...), 'eval': 256}.")


def _train_first(global_batch: int, start: int, micro: list[int] | None) -> Any:
    """Element index -> global position (step * global batch + place in it) of the first
    sample of that element of a rank's training batches (``start``: the rank's first place in
    a global batch; ``micro``: its micro-batch sizes, when a step comes in several)."""
    if micro is None:
        return lambda e: e * global_batch + start
    starts = tf.constant(np.cumsum([0] + list(micro[:-1])), tf.int64)
    k = len(micro)
    return lambda e: (e // k) * global_batch + start + tf.gather(starts, e % k)


def _check_data(data: Any) -> dict[str, DataSource]:
    if not isinstance(data, dict) or "train" not in data:
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"Pipeline data needs a 'train' split: data={{'train': {{'x': ..., 'y': "
                          f"...}}, 'eval': {{...}}}}. Got {got}.")
    checked: dict[str, DataSource] = {}
    for mode, split in data.items():
        if mode not in MODES:
            raise ConfigError(f"Pipeline data has a split {mode!r}; fe_dist knows {MODES}. "
                              "Rename or remove it.")
        if split is None and mode != "train":
            continue
        if isinstance(split, DataSource):
            checked[mode] = split
        elif isinstance(split, tf.data.Dataset):
            checked[mode] = TFDataset(split)
        elif isinstance(split, dict) and split:
            checked[mode] = NumpyDataset(split, name=f"Pipeline data[{mode!r}]")
        else:
            raise ConfigError(f"Pipeline data[{mode!r}] must be a non-empty dict of arrays "
                              f"{{key: numpy array}}, a fe_dist.dataset source or a "
                              f"tf.data.Dataset of dicts, got {type(split).__name__}.")
    return checked
