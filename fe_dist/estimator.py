"""`Estimator`: the epoch loop. Plan → broadcast → check → train/eval → summary."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
import time
import traceback
import warnings
from typing import Any, Callable, TypeVar

import numpy as np
import tensorflow as tf

from fe_dist import checkpoint, helper_models, history, sharding
from fe_dist.build import optimizer_at, state_variables
from fe_dist.determinism import reseed_models
from fe_dist.distributed import Context, get_context, raised_on_every_rank
from fe_dist.distributed.context import describe_hosts, host_label
from fe_dist.errors import ConfigError, DistributedError
from fe_dist.network import Network
from fe_dist.pipeline import Pipeline
from fe_dist.preflight import run_preflight
from fe_dist.progress import Progress
from fe_dist.schedule import (BaseScheduler, EpochPlan, Plan, build_plan, check_numbering,
                              first_difference, resolve, warmup_length)
from fe_dist.schedule.plan import check_eval_batch
from fe_dist.summary import EpochRecord, Summary, schedule_table
from fe_dist.trace.adapt import LRScheduler
from fe_dist.trace.runner import Traces, record_values
from fe_dist.trace.trace import Data, System

T = TypeVar("T")


class Estimator:
    """Trains a Network on a Pipeline for a number of epochs, on one rank or many.

    Args:
        pipeline: The data, global batch size and pipeline ops.
        network: The models and network ops.
        epochs: Number of epochs.
        seed: Seed of the per-epoch shuffle (the same on every rank).
        verbose: Print the run header and one line per epoch (rank 0 only).
        on_epoch_end: Called on every rank with each epoch's record, after the epoch (and after
            its checkpoint); a Scheduler of callables (or None) picks one per epoch. If it
            raises on any rank, every rank raises. It runs under the stall watchdog: every rank
            waits for the slowest callback, so keep it shorter than FE_DIST_STALL_TIMEOUT.
        checkpoint_dir: Where rank 0 saves a checkpoint after every epoch (models, optimizers,
            epoch, plan, records); ``fit(resume=True)`` continues from it.
        evaluate: Whether to evaluate: a bool, or a Scheduler of bools (e.g. every 5th epoch
            with ``RepeatScheduler([False] * 4 + [True])``).
        history_dir: Where rank 0 writes history.csv, history.json and history.png after each
            epoch, and test.json after `test`.
        tensorboard_dir: Where rank 0 writes TensorBoard scalars after each epoch.
        max_rank_batch: The largest per-rank batch that fits in one device's memory. When a
            scheduled global batch needs more per rank, each rank accumulates gradients over
            micro-batches of at most this size (as many on every rank) and allreduces once per
            optimizer step; the update equals the one on the whole global batch for models
            without batch statistics (BatchNormalization normalises each micro-batch by its
            own; see the README). Eval batches are at most this size too.
        progress: Draw a progress bar on rank 0 during each epoch. None (default): only on a
            terminal and not under mpirun or horovodrun, unless ``FE_DIST_PROGRESS=1`` (or 0).
        traces: `fe_dist.trace.Trace` objects (each may be a Scheduler of traces), run on every
            rank; see the README's "Traces".
    """

    first_epoch = 0  # how traces and schedulers number the first epoch: 1 in fe_dist.fe1

    def __init__(self, pipeline: Pipeline, network: Network, epochs: int, seed: int = 0,
                 verbose: bool = True,
                 on_epoch_end: Callable[[EpochRecord], None] | BaseScheduler | None = None,
                 checkpoint_dir: str | os.PathLike | None = None,
                 evaluate: bool | BaseScheduler = True,
                 history_dir: str | os.PathLike | None = None,
                 tensorboard_dir: str | os.PathLike | None = None,
                 max_rank_batch: int | None = None, progress: bool | None = None,
                 traces: Any | list[Any] | None = None) -> None:
        self.pipeline = pipeline
        self.network = network
        self.epochs = epochs
        self.seed = seed
        self.verbose = verbose
        self.on_epoch_end = on_epoch_end
        self.checkpoint_dir = checkpoint_dir
        self.evaluate = evaluate
        self.history_dir = history_dir
        self.tensorboard_dir = tensorboard_dir
        self.max_rank_batch = max_rank_batch
        self.traces = Traces(traces)
        self._check_numbering()
        self._system: System | None = None
        self._stopped = False
        self._last_epoch: int | None = None  # of the last fit(), for test()
        self._helpers: list[helper_models.HelperModel] | None = None
        self._restored_traces: list[dict[str, Any]] | None = None
        if tensorboard_dir is not None and importlib.util.find_spec("tensorboard") is None:
            raise ConfigError("Estimator(tensorboard_dir=...) needs the tensorboard package, "
                              "which TensorFlow no longer installs: pip install tensorboard.")
        self._tensorboard: history.TensorBoard | None = None
        self._progress = Progress(enabled=progress)
        self.plan: Plan | None = None
        self._fit_start = 0.0

    def _check_numbering(self) -> None:
        """Refuse a program mixing fe_dist's epochs from 0 with FastEstimator 1.x's from 1
        (`fe_dist.fe1`): a Pipeline, Network or Scheduler of the other kind."""
        fe1 = self.first_epoch == 1
        program = ("a FastEstimator 1.x program (fe_dist.fe1.Estimator)" if fe1 else
                   "an fe_dist program (fe_dist.Estimator)")
        fix = ("Use fe_dist.fe1's Pipeline, Network and schedule.EpochScheduler/RepeatScheduler "
               "(epochs from 1) throughout." if fe1 else
               "Use fe_dist.schedule.Scheduler (epochs from 0) with fe_dist.Pipeline, Network and "
               "Estimator, or import fe_dist.fe1 for the whole FastEstimator 1.x program.")
        for what, part in (("Pipeline", self.pipeline), ("Network", self.network)):
            first = getattr(part, "first_epoch", 0)
            if first != self.first_epoch:
                raise ConfigError(f"Estimator: the {what} ({type(part).__module__}."
                                  f"{type(part).__name__}) counts epochs from {first}, but this "
                                  f"is {program}. {fix}")
        for trace in self.traces.all:  # an LRScheduler's lr_fn is told epochs and steps
            first = trace.first_epoch if isinstance(trace, LRScheduler) else self.first_epoch
            if first != self.first_epoch:
                raise ConfigError(f"Estimator traces: {trace!r} counts epochs and steps from "
                                  f"{first}, but this is {program}. {fix}")
        models = self.network.models.values()
        check_numbering({
            "Pipeline batch_size": self.pipeline.batch_size,
            **{f"Pipeline ops[{i}]": op for i, op in enumerate(self.pipeline.ops)},
            **{f"Network ops[{i}]": op for i, op in enumerate(self.network.ops)},
            **{f"Estimator traces[{i}]": t for i, t in enumerate(self.traces.items)},
            **{f"model {m.model_name!r} optimizer": m.fe_dist.optimizer_schedule for m in models},
            **{f"model {m.model_name!r} learning rate": m.fe_dist.lr_schedule.base
               for m in models if m.fe_dist.lr_schedule is not None},
            "Estimator evaluate": self.evaluate, "Estimator on_epoch_end": self.on_epoch_end,
        }, self.first_epoch, program, fix)

    def fit(self, resume: bool = False) -> Summary:
        """Train and evaluate every epoch; returns the same `Summary` on every rank.

        Before the first step every rank agrees on rank 0's plan and checks and compiles each
        signature epoch; any mistake raises on every rank together.

        Args:
            resume: Continue after the last epoch saved in ``checkpoint_dir`` (rank 0 reads it,
                every rank gets its state), with that epoch's schedule. Without a checkpoint
                there, training starts at epoch 0. The epochs already trained must be planned
                as they were (same global batches, ops, models, seed and data); the number of
                ranks and ``max_rank_batch`` may differ, and ``epochs`` may be larger (the run
                is extended). With ``epochs`` equal to the epochs already trained, fit returns
                the saved records at once; with fewer, it raises ConfigError (the weights are
                past that epoch). A run a trace stopped (EarlyStopping) stays stopped.
        """
        if resume and self.checkpoint_dir is None:
            raise ConfigError("fit(resume=True) needs Estimator(checkpoint_dir=...) to read from.")
        return self._run(lambda ctx: self._fit(ctx, resume))

    def test(self) -> dict[str, float]:
        """Evaluate on the whole "test" split, sharded over the ranks, with the schedule of the
        last epoch trained (its ops, models and the "test" batch size; the planned last epoch
        when fit has not run); returns the same metrics on
        every rank: each loss and loss metric averaged over every test sample, and what the
        traces active in "test" mode write (scalars as floats, arrays such as a confusion matrix
        as nested lists). Those traces' on_begin, epoch and batch hooks and on_end run with
        ``system.mode == "test"``.

        After `fit` it tests the trained models. Called alone (e.g. after
        ``fit(resume=True)`` in another run, or on weights the program loaded), every rank
        first agrees on rank 0's plan, checks it, and takes rank 0's weights.
        """
        if "test" not in self.pipeline.modes():
            raise ConfigError("Estimator.test() needs a 'test' split: Pipeline(data={'train': "
                              "..., 'eval': ..., 'test': {...}}).")
        return self._run(self._test)

    def _test(self, ctx: Context) -> dict[str, float]:
        if self.plan is None:
            self.plan = self._agree_on_plan(ctx)
            _together(ctx, "preflight", lambda: run_preflight(
                self.pipeline, self.network, self.plan, ctx, self.traces))
            self._broadcast_start_state(ctx)
        # The schedule of the last epoch trained (an early stop ends before the planned last).
        entry = self.plan.epochs[self._last_epoch if self._last_epoch is not None else -1]
        if entry is not self.plan.epochs[-1]:  # the checks before training took the last
            _together(ctx, "test checks", lambda: run_preflight(
                self.pipeline, self.network, self.plan, ctx, self.traces,
                only=[(entry.epoch, "test")]))
        # Checked before (run_preflight): this cannot raise on one rank alone.
        batch = check_eval_batch(self.pipeline.get_batch_size(entry.epoch, "test"), entry.epoch,
                                 "test")
        start = time.perf_counter()
        traces = self.traces.active(entry.epoch, "test")
        if traces:
            if self._system is None:
                self._system = System(ctx, self.first_epoch, self.epochs)
                self.traces.attach(self._system)
            self._trace_hook("on_begin", traces, Data(), entry.epoch, "test")
        local = self._evaluate("test", entry, batch, ctx, traces)
        ctx.progress("the gathering of every rank's test sums")
        sums = _sum_dicts(ctx.allgather_object(local, name="fe.test_report"))
        count = sums.pop("count", 0.0)
        metrics: dict[str, Any] = {k: v / count for k, v in sums.items()}
        if traces:
            metrics.update(record_values(self._trace_hook(
                "on_epoch_end", traces, Data(metrics), entry.epoch, "test")))
            self._trace_hook("on_end", traces, Data(), entry.epoch, "test")
        self._log(ctx, f"test (epoch {entry.epoch + self.first_epoch}'s schedule, "
                       f"{int(count)} samples): "
                       + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()
                                  if isinstance(v, float))
                       + f" | {time.perf_counter() - start:.2f} s")
        if self.history_dir is not None:
            with ctx.unwatched("rank 0's test.json write"):
                _together(ctx, "test outputs", lambda: history.write_test(
                    self.history_dir, entry.epoch, int(count), metrics) if ctx.is_chief else None)
        return metrics

    def _run(self, work: Callable[[Context], T]) -> T:
        """Run ``work`` on every rank with the stall watchdog on, and end the whole job when
        it fails on this rank alone."""
        ctx = get_context()
        ctx.watch(True)
        try:
            return work(ctx)
        except Exception as err:
            # An error on this rank alone (e.g. in a train step) leaves the other ranks waiting
            # in a collective: end the job now. Errors every rank raised together (ctx.agree:
            # checks, checkpoint writes, on_epoch_end) propagate as themselves.
            if ctx.size > 1 and not raised_on_every_rank(err):
                ctx.abort(f"fe_dist: rank {ctx.rank} failed: {traceback.format_exc()}"
                          f"fe_dist: ending the job (all {ctx.size} ranks).")
            if ctx.size > 1:
                # Said now: once one rank's process exits, the launcher may end the others
                # before Python prints their tracebacks.
                sys.stderr.write(f"fe_dist: rank {ctx.rank}: {type(err).__name__}: {err}\n")
                sys.stderr.flush()
            raise
        finally:
            ctx.watch(False)

    def _fit(self, ctx: Context, resume: bool) -> Summary:
        start = self._fit_start = time.perf_counter()
        records: list[EpochRecord] = []
        pending_resume = [resume]  # rank 0 restores the checkpoint in the first sync only
        began = [False]  # the traces' on_begin ran
        if not resume and self.checkpoint_dir is not None and ctx.is_chief and \
                checkpoint.path(self.checkpoint_dir).exists():
            warnings.warn(f"{checkpoint.path(self.checkpoint_dir)} holds a checkpoint; fit() "
                          "starts at epoch 0 and replaces it after the first epoch. "
                          "fit(resume=True) continues it instead.", stacklevel=3)
        self._stopped = False
        self._restored_traces = None

        def sync() -> None:
            """Bring every rank to rank 0's plan and state: before training, and again after
            an elastic reset. Every rank runs the same collectives here, whenever it joined."""
            ctx.progress("the plan agreement before training")
            self.plan = plan = self._agree_on_plan(ctx)
            hosts = describe_hosts(ctx.allgather_object(host_label(), name="fe.hosts")
                                   if ctx.size > 1 else [host_label()])
            if ctx.watchdog is not None:
                ctx.watchdog.hosts = hosts
            self._log(ctx, f"fe_dist: {ctx.size} rank(s) on {hosts}; backend {ctx.backend}"
                           f"{'/' + ctx.controller if hasattr(ctx, 'controller') else ''}, "
                           f"{ctx.device}, {ctx.threads} thread(s) per rank; schedule changes at "
                           f"epochs {[e + self.first_epoch for e in plan.signature_epochs]}")
            self._log(ctx, schedule_table(plan, self.first_epoch))
            ctx.progress("the checks and compilation of each schedule phase")
            _together(ctx, "preflight",
                      lambda: run_preflight(self.pipeline, self.network, plan, ctx, self.traces))
            restored = _together(ctx, "resume", lambda: self._restore_checkpoint(
                ctx, plan) if pending_resume[0] and ctx.is_chief else None)
            resuming, pending_resume[0] = pending_resume[0], False
            if restored is not None:
                records[:] = [EpochRecord(**r) for r in restored]
                self._stopped = bool(records) and records[-1].stopped_training
            ctx.progress("the broadcast of the start state")
            self._broadcast_start_state(ctx)
            if ctx.size > 1:
                saved = ctx.broadcast_object([dataclasses.asdict(r) for r in records],
                                             name="fe.records")
                records[:] = [EpochRecord(**r) for r in saved]
            if self.traces:
                self._system = System(ctx, self.first_epoch, self.epochs)
                self.traces.attach(self._system)
                if resuming or ctx.size > 1:
                    # Rank 0's trace state (the checkpoint's on a resume) and whether on_begin
                    # ran: a rank joining an elastic run adopts both.
                    state = self._restored_traces if resuming else self.traces.get_state()
                    if ctx.size > 1:
                        state, began[0] = ctx.broadcast_object(
                            (state, began[0]) if ctx.is_chief else None, name="fe.trace_state")
                    self.traces.set_state(state)

        def train(commit: Callable[[], None]) -> None:
            if self.traces and not began[0]:
                began[0] = True
                self._system.mode = "train"
                self._trace_hook("on_begin", self.traces.all, Data(), len(records))
            while len(records) < self.epochs and not self._stopped:
                records.append(self._run_epoch(self.plan.epochs[len(records)], ctx, records))
                commit()  # elastic runs roll back to here when a rank fails

        def snapshot() -> tuple[list[list[np.ndarray]], list[EpochRecord], list[Any]]:
            return ([[np.array(v) for v in state_variables(m)]
                     for _, m in sorted(self.network.models.items())], list(records),
                    self.traces.get_state())

        def restore(saved: tuple[list[list[np.ndarray]], list[EpochRecord], list[Any]]) -> None:
            values, saved_records, trace_state = saved
            self.traces.set_state(trace_state)
            for (_, model), model_values in zip(sorted(self.network.models.items()), values):
                for var, value in zip(state_variables(model), model_values):
                    var.assign(value)
            records[:] = saved_records

        ctx.run_elastic(train, sync=sync, snapshot=snapshot, restore=restore)
        self._last_epoch = len(records) - 1
        if self.traces:
            self._system.mode = "train"
            self._trace_hook("on_end", self.traces.all, Data(), len(records) - 1)
        return Summary(records=records, backend=ctx.backend, world_size=ctx.size,
                       signature_epochs=self.plan.signature_epochs,
                       total_seconds=time.perf_counter() - start,
                       trace_count=sum(self.network.trace_counts.values()))

    def _agree_on_plan(self, ctx: Context) -> Plan:
        local = _together(ctx, "schedule", lambda: build_plan(
            self.pipeline, self.network, self.epochs, ctx.size, self.seed, self.evaluate,
            self.max_rank_batch, self.traces))
        reference = ctx.broadcast_object(local if ctx.is_chief else None, name="fe.plan")
        diff = first_difference(reference, local)
        error = None if diff is None else DistributedError(
            f"The ranks built different programs: {diff}. Every rank must run the same program "
            f"with the same schedules, data and models. (This rank: {ctx.rank}, on host "
            f"{host_label()}.)")
        ctx.agree(error, "plan")
        return reference

    def _restore_checkpoint(self, ctx: Context, plan: Plan) -> list[dict[str, Any]]:
        """On rank 0: load the checkpoint into the variables (the start-state broadcast then
        hands them to every rank); return the records saved with it."""
        loaded = checkpoint.load(self.checkpoint_dir)
        file = checkpoint.path(self.checkpoint_dir)
        if loaded is None:
            self._log(ctx, f"no checkpoint at {file}; starting at epoch 0")
            return []
        meta, arrays = loaded
        checkpoint.check_compatible(meta["plan"], plan, meta["epoch"] + 1, file)
        checkpoint.restore(self.network.models, arrays, file,
                           self._helper_models())
        self._log(ctx, f"resuming after epoch {meta['epoch']} from {file}")
        self._restored_traces = meta.get("traces", [])
        return meta["records"]

    def _helper_models(self) -> list[helper_models.HelperModel]:
        """Models the ops hold outside ModelOps (found once: ops do not change)."""
        if self._helpers is None:
            self._helpers = helper_models.find(self.pipeline, self.network)
        return self._helpers

    def _broadcast_start_state(self, ctx: Context) -> None:
        if ctx.size == 1:
            return
        for name, model in sorted(self.network.models.items()):
            variables = state_variables(model)
            ctx.broadcast_variables(variables, [f"fe.init.{name}.{i}"
                                                for i in range(len(variables))])
        # Models the user's ops call themselves: never trained, but each rank may have built
        # its own random weights.
        helper_models.broadcast(ctx, self._helper_models())

    def _run_epoch(self, entry: EpochPlan, ctx: Context,
                   previous: list[EpochRecord]) -> EpochRecord:
        epoch, batch = entry.epoch, entry.global_batch
        report: dict[str, Any] = {"steps": 0, "train": {}, "eval": {}}
        skipped_before = self.pipeline.skipped("train") + self.pipeline.skipped("eval")
        tensors_before, bytes_before = self.network.traffic.read()
        start = time.perf_counter()
        timeline = {"train_start": start - self._fit_start}
        learning_rates: dict[str, float] = {}
        # What traces wrote with write_with_log, per mode: train values stay apart from eval's.
        train_logs: dict[str, Any] = {}
        trace_logs: dict[str, Any] = {}
        eval_traces = self.traces.active(epoch, "eval") if entry.evaluate else []
        # Dropout masks and random layers draw from (seed, rank, epoch): different on every rank.
        # Only trained models draw (frozen and eval-only models run in inference mode), and the
        # others must stay untouched to the bit.
        reseed_models([self.network.models[n] for n in entry.trained_models], ctx.rank, epoch)
        if entry.trained_models:
            micro = entry.micro_batch if entry.micro_batches > 1 else None
            ds = self.pipeline.get_train_dataset(epoch, batch, ctx, seed=self.seed,
                                                 micro_batch=micro)
            global_batch = tf.constant(batch, tf.float32)
            set_lr = self._lr_setter(entry)
            traces = self.traces.active(epoch, "train")
            step = self.network.get_train_step(epoch, dict(ds.element_spec), ctx,
                                               sharding.micro_steps(entry),
                                               self.traces.keep(epoch, "train"))
            first_step = sum(e.steps for e in self.plan.epochs[:epoch])
            if traces:
                self._system.global_step = first_step
                self._trace_hook("on_epoch_begin", traces, Data(), epoch, "train")
            outputs = []
            for b in self._batches(ds, "train", entry, ctx):
                if step.begins_step:
                    ctx.progress(f"epoch {epoch}, train step {step.steps} (gradient allreduce)")
                    learning_rates = set_lr(step.steps)
                if traces:  # once per batch (per micro-batch under accumulation)
                    # The step about to run under fe1 (FastEstimator counts it from 1); the
                    # steps completed under fe_dist's own numbering.
                    self._system.global_step = first_step + step.steps + self.first_epoch
                    self._system.batch_idx = len(outputs) + self.first_epoch
                    self.traces.run_batch_hook("on_batch_begin", traces, Data())
                outputs.append(step(b, global_batch))
                if traces:
                    self._system.global_step = first_step + step.steps
                    self.traces.run_batch_hook("on_batch_end", traces, _numpy(step.values))
                if len(outputs) == 1:  # wait for the first step: its time shows rebuild costs
                    tf.nest.map_structure(lambda t: t.numpy(), outputs[0])
                    timeline["first_step_end"] = time.perf_counter() - self._fit_start
                if ctx.is_chief and self.verbose:
                    self._progress.update(epoch, step.steps, entry.steps)
            if entry.last_batch:
                last, learning_rates = self._last_batch(entry, ctx, step.steps, first_step,
                                                        traces)
                outputs.append(last)
            report["steps"] = step.steps + (1 if entry.last_batch else 0)
            report["train"] = _add(outputs)
            if traces:
                train_logs.update(self._trace_hook("on_epoch_end", traces, Data(), epoch,
                                                   "train"))
        report["learning_rates"] = learning_rates
        self._average_model_state(entry, ctx)
        report["train_seconds"] = time.perf_counter() - start
        timeline["train_end"] = time.perf_counter() - self._fit_start
        tensors_after, bytes_after = self.network.traffic.read()
        report["reduced"] = (tensors_after - tensors_before, bytes_after - bytes_before)
        if entry.evaluate:
            eval_start = time.perf_counter()
            report["eval"] = self._evaluate("eval", entry, entry.eval_batch or batch, ctx,
                                            eval_traces)
            report["eval_seconds"] = time.perf_counter() - eval_start
        timeline["eval_end"] = time.perf_counter() - self._fit_start
        report["timeline"] = timeline
        report["skipped"] = (self.pipeline.skipped("train") + self.pipeline.skipped("eval")
                             - skipped_before)
        ctx.progress(f"epoch {epoch}, the gathering of every rank's epoch report")
        record = self._record(entry, ctx.allgather_object(report, name="fe.epoch_report"), ctx)
        if eval_traces:
            # After the gather: the eval traces see the losses over the whole eval set.
            trace_logs.update(self._trace_hook("on_epoch_end", eval_traces,
                                               Data(record.eval_metrics), epoch, "eval"))
        record.eval_metrics.update(record_values(trace_logs))
        record.train_metrics.update(record_values(train_logs))
        if self._system is not None and self._system.stop_training:
            self._stopped = True  # the same on every rank (checked by the traces' agreement)
            record.stopped_training = True  # saved with the records: a resume stops too
        if ctx.is_chief and self.verbose:
            self._progress.clear()
        self._log(ctx, record.log_line(self.first_epoch))
        if record.stopped_training:
            self._log(ctx, f"fe_dist: stopping after epoch {epoch + self.first_epoch}: "
                           f"{self._system.stop_reason or 'a trace set system.stop_training'}.")
        # Rank 0 writes; a failure there (a full disk, say) raises on every rank, not a hang.
        # Unwatched: a large checkpoint may take longer than the stall timeout, and the ranks
        # waiting for rank 0 get no heartbeat from it.
        with ctx.unwatched(f"epoch {epoch}, rank 0's checkpoint and history writes"):
            _together(ctx, "epoch outputs", lambda: self._write_outputs(
                epoch, [*previous, record]) if ctx.is_chief else None)
        callback = resolve(self.on_epoch_end, epoch)
        if callback is not None:
            ctx.progress(f"epoch {epoch}, the user's on_epoch_end callback")

            def run_callback() -> None:
                callback(record)
                ctx.progress(f"epoch {epoch}, waiting for the other ranks' on_epoch_end")

            # Agreed: a callback failing on one rank raises on every rank (none is left waiting
            # in the next collective); one failing on every rank raises as itself everywhere.
            _together(ctx, "on_epoch_end", run_callback)
        return record

    def _last_batch(self, entry: EpochPlan, ctx: Context, done: int, first_step: int,
                    traces: list[Any]) -> tuple[dict[str, tf.Tensor], dict[str, float]]:
        """Train the epoch's last, partial global batch (``entry.last_batch`` samples, every
        rank a share) as one more optimizer step: its loss is averaged over those samples, as
        FastEstimator trains its last batch (``drop_last=False``)."""
        epoch = entry.epoch
        ds = self.pipeline.get_last_batch_dataset(epoch, entry.global_batch, ctx, self.seed)
        step = self.network.get_train_step(epoch, dict(ds.element_spec), ctx, 1,
                                           self.traces.keep(epoch, "train"))
        rates = self._lr_setter(entry)(done)
        ctx.progress(f"epoch {epoch}, the last partial train step (gradient allreduce)")
        out = None
        for b in self._batches(ds, "train", entry, ctx):
            if traces:
                self._system.global_step = first_step + done + self.first_epoch
                self._system.batch_idx = done + self.first_epoch
                self.traces.run_batch_hook("on_batch_begin", traces, Data())
            out = step(b, tf.constant(entry.last_batch, tf.float32))
            if traces:
                self._system.global_step = first_step + done + 1
                self.traces.run_batch_hook("on_batch_end", traces, _numpy(step.values))
        return out, rates

    def _evaluate(self, mode: str, entry: EpochPlan, global_batch: int,
                  ctx: Context, traces: list[Any] | None = None) -> dict[str, float]:
        """This rank's sums over its shard of split ``mode`` ("eval" or "test") with the ops of
        ``entry``'s epoch: loss and metric sums, and "count" (samples). Runs the ``traces``'
        on_epoch_begin and batch hooks; the caller runs their on_epoch_end once the sums are
        gathered."""
        epoch = entry.epoch
        ctx.progress(f"epoch {epoch}, {mode}")
        ds = self.pipeline.get_eval_dataset(epoch, global_batch, ctx,
                                            max_batch=entry.micro_batch, mode=mode,
                                            seed=self.seed)
        keep = self.traces.keep(epoch, mode) if traces else ()
        step = self.network.get_eval_step(epoch, dict(ds.element_spec), mode, keep)
        if traces:
            self._trace_hook("on_epoch_begin", traces, Data(), epoch, mode)
        outputs = []
        # A heartbeat per batch: a whole eval may outlast the stall timeout.
        for b in self._batches(ds, mode, entry, ctx):
            ctx.progress(f"epoch {epoch}, {mode} batch {len(outputs)}")
            if traces:
                self._system.batch_idx = len(outputs) + self.first_epoch
                self.traces.run_batch_hook("on_batch_begin", traces, Data())
            outputs.append(step(b))
            if traces:
                self.traces.run_batch_hook("on_batch_end", traces, _numpy(step.values))
        return _add(outputs)

    def _batches(self, ds: tf.data.Dataset, mode: str, entry: EpochPlan, ctx: Context) -> Any:
        """Iterate ``ds``; a failure to read a batch (an unreadable file) becomes a ConfigError
        naming the file, epoch and step. It is this rank's alone (the others wait in the
        step's allreduce), so fit() then ends the job on every rank."""
        iterator, element = iter(ds), 0
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except tf.errors.OpError as err:
                micro = entry.micro_batch if entry.micro_batches > 1 else None
                explained = self.pipeline.explain_failure(
                    err, mode, entry.epoch, element, entry.global_batch, ctx, self.seed, micro)
                if explained is None:
                    raise
                raise explained from err
            element += 1
            yield batch

    def _average_model_state(self, entry: EpochPlan, ctx: Context) -> None:
        """Average each trained model's non-trainable float state (BatchNorm moving statistics)
        over ranks, so every rank holds the same model for eval and the checkpoint. Each rank's
        statistics follow its own shard; their mean estimates the global batch's as the
        single-process run does (equal in expectation, not bit for bit; use
        `fe_dist.layers.SyncBatchNormalization` for that)."""
        if ctx.size == 1:
            return
        ctx.progress(f"epoch {entry.epoch}, the averaging of model state over ranks")
        for name in entry.trained_models:
            floats = [v for v in self.network.models[name].non_trainable_variables
                      if tf.as_dtype(v.dtype).is_floating]
            ctx.average_variables(floats, f"fe.state.{name}")

    def _lr_setter(self, entry: EpochPlan) -> Callable[[int], dict[str, float]]:
        """A function that sets each trained model's scheduled learning rate for step s of
        this epoch and returns the rates it set."""
        epoch, batch = entry.epoch, entry.global_batch
        steps = [e.steps for e in self.plan.epochs]
        first = sum(steps[:epoch])  # the run's optimizer steps before this epoch
        scheduled = [(m, optimizer_at(m, epoch), m.fe_dist.lr_schedule,
                      warmup_length(m.fe_dist.lr_schedule, steps))
                     for m in self.network.trained_models(epoch)
                     if m.fe_dist.lr_schedule is not None]

        rates: dict[str, float] = {}

        def set_lr(step: int) -> dict[str, float]:
            for model, opt, schedule, warmup in scheduled:
                rate = schedule.value(epoch, first + step, batch, warmup)
                if rates.get(model.model_name) != rate:  # most schedules change by epoch only
                    rates[model.model_name] = rate
                    opt.learning_rate = rate
            return dict(rates)

        return set_lr

    def _write_outputs(self, epoch: int, records: list[EpochRecord]) -> None:
        """Rank 0's files after an epoch: checkpoint, history, TensorBoard."""
        if self.checkpoint_dir is not None:
            checkpoint.save(self.checkpoint_dir, self.network.models, epoch, self.plan,
                            [dataclasses.asdict(r) for r in records],
                            self._helper_models(),
                            self.traces.get_state() if self.traces else None)
        if self.history_dir is not None:
            history.write(self.history_dir, records, self.plan.signature_epochs)
        if self.tensorboard_dir is not None:
            if self._tensorboard is None:
                self._tensorboard = history.TensorBoard(self.tensorboard_dir)
            self._tensorboard.write(records[-1])

    def _record(self, entry: EpochPlan, reports: list[dict[str, Any]],
                ctx: Context) -> EpochRecord:
        steps = {r["steps"] for r in reports}
        if len(steps) != 1:  # impossible by construction; say so loudly rather than mis-report
            raise DistributedError(f"Epoch {entry.epoch}: ranks ran different step counts "
                                   f"{[r['steps'] for r in reports]}.")
        steps = steps.pop()
        train = _sum_dicts(r["train"] for r in reports)
        evals = _sum_dicts(r["eval"] for r in reports)
        samples = steps * entry.global_batch - (
            entry.global_batch - entry.last_batch if entry.last_batch else 0)
        count = evals.pop("count", 0.0)
        seconds = max(r["train_seconds"] for r in reports)
        tensors, nbytes = reports[ctx.rank]["reduced"]
        return EpochRecord(
            epoch=entry.epoch, global_batch=entry.global_batch,
            per_rank_batch=entry.per_rank_batch, world_size=ctx.size,
            trained_models=entry.trained_models, steps=steps, train_samples=samples,
            train_loss={k: v / samples for k, v in train.items()} if samples else {},
            eval_metrics={k: v / count for k, v in evals.items()} if count else {},
            seconds=seconds, samples_per_sec=samples / seconds if seconds > 0 else 0.0,
            eval_seconds=max(r.get("eval_seconds", 0.0) for r in reports),
            pipeline_ops=entry.pipeline_train_ops, network_ops=entry.network_train_ops,
            allreduced_tensors_per_step=tensors / steps if steps else 0.0,
            allreduced_bytes_per_step=nbytes / steps if steps else 0.0,
            timeline=reports[0]["timeline"], learning_rates=reports[0]["learning_rates"],
            micro_batches=entry.micro_batches,
            skipped_samples=sum(r.get("skipped", 0) for r in reports))

    def _trace_hook(self, hook: str, traces: list[Any], data: Data, epoch: int,
                    mode: str = "train") -> dict[str, Any]:
        """Run an epoch-level hook of ``traces`` on every rank (agreed); what they logged."""
        system = self._system
        system.epoch_idx, system.mode = epoch + self.first_epoch, mode
        system._ctx.progress(f"epoch {epoch}, the traces' {hook} ({mode})")
        return self.traces.run_epoch_hook(hook, traces, data, system)

    def _log(self, ctx: Context, line: str) -> None:
        if self.verbose and ctx.is_chief:
            print(line, flush=True)


def _together(ctx: Context, what: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` on every rank; if it fails on any rank, raise on all of them."""
    error, result = None, None
    try:
        result = fn()
    except Exception as err:  # noqa: BLE001 - re-raised on every rank by ctx.agree
        error = err
    ctx.agree(error, what)
    return result


def _numpy(values: dict[str, tf.Tensor]) -> Data:
    """A step's kept batch values as numpy, for the traces' on_batch_end."""
    return Data({k: v.numpy() for k, v in values.items()})


def _add(outputs: list[dict[str, tf.Tensor]]) -> dict[str, float]:
    if not outputs:
        return {}
    return {k: float(tf.add_n([o[k] for o in outputs]).numpy()) for k in outputs[0]}


def _sum_dicts(dicts: Any) -> dict[str, float]:
    total: dict[str, float] = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0.0) + v
    return total
