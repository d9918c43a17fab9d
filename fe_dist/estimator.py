"""`Estimator`: the epoch loop. Plan → broadcast → check → train/eval → summary.

The phases around the loop are modules of their own: the ranks' agreement on the plan and on
failures (`fe_dist.agreement`); the run state a rank must hold to continue, which the checkpoint
resume, the elastic rollback and the start-state broadcast all go through (`fe_dist.run_state`);
each epoch's record and rank 0's files after it (`fe_dist.epoch_records`); the scheduled
learning rates (`fe_dist.learning_rates`).
"""

from __future__ import annotations

import importlib.util
import os
import time
import warnings
from typing import Any, Callable

import tensorflow as tf

from fe_dist import checkpoint, helper_models, history, keras_fit, run_state, sharding
from fe_dist.agreement import agree_on_plan, run_on_every_rank, together
from fe_dist.batch_adaptation import BatchAdaptation
from fe_dist.build import optimizer_at
from fe_dist.determinism import reseed_models
from fe_dist.distributed import Context
from fe_dist.distributed.context import describe_hosts, host_label
from fe_dist.epoch_records import EpochOutputs, RankReport, add, make_record, sum_dicts
from fe_dist.errors import ConfigError
from fe_dist.learning_rates import lr_setter
from fe_dist.network import Network
from fe_dist.pipeline import Pipeline
from fe_dist.preflight import PreflightTimes, run_preflight
from fe_dist.progress import Progress
from fe_dist.run_state import RunState
from fe_dist.schedule import BaseScheduler, EpochPlan, Plan, check_numbering, resolve
from fe_dist.schedule.plan import check_eval_batch
from fe_dist.summary import EpochRecord, Summary, schedule_table
from fe_dist.trace.adapt import LRScheduler
from fe_dist.trace.runner import Traces, record_values
from fe_dist.trace.trace import Data, System


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
            own; see docs/training.md). Eval batches are at most this size too.
        progress: Draw a progress bar on rank 0 during each epoch. None (default): only on a
            terminal and not under mpirun or horovodrun, unless ``FE_DIST_PROGRESS=1`` (or 0).
        traces: `fe_dist.trace.Trace` objects (each may be a Scheduler of traces), run on every
            rank; see docs/custom.md, "Traces".
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
        self._state = RunState()  # what this rank holds to continue the run (fe_dist.run_state)
        self._last_epoch: int | None = None  # of the last fit(), for test()
        self._helpers: list[helper_models.HelperModel] | None = None
        if tensorboard_dir is not None and importlib.util.find_spec("tensorboard") is None:
            raise ConfigError("Estimator(tensorboard_dir=...) needs the tensorboard package, "
                              "which TensorFlow no longer installs: pip install tensorboard.")
        self._outputs: EpochOutputs | None = None
        self._progress = Progress(enabled=progress)
        self.plan: Plan | None = None
        self._fit_start = 0.0
        # Seconds of the last fit's start-up parts (plan, checks, compile), for fe-bench.
        self.startup_seconds: dict[str, float] = {}
        adaptive = pipeline.adaptive_batch()
        # With an AdaptiveBatch the train steps measure the noise scale, and each epoch's end
        # decides the next one's batch (fe_dist.batch_adaptation).
        self._adaptation = None if adaptive is None else BatchAdaptation(adaptive, network)

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
        return run_on_every_rank(lambda ctx: self._fit(ctx, resume))

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
        return run_on_every_rank(self._test)

    def _test(self, ctx: Context) -> dict[str, float]:
        if self.plan is None:
            self.plan = self._agree_on_plan(ctx)
            together(ctx, "preflight", lambda: run_preflight(
                self.pipeline, self.network, self.plan, ctx, self.traces))
            run_state.broadcast_weights(ctx, self.network, self._helper_models())
        # The schedule of the last epoch trained (an early stop ends before the planned last).
        entry = self.plan.epochs[self._last_epoch if self._last_epoch is not None else -1]
        if entry is not self.plan.epochs[-1]:  # the checks before training took the last
            together(ctx, "test checks", lambda: run_preflight(
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
        sums = sum_dicts(ctx.allgather_object(local, name="fe.test_report"))
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
                together(ctx, "test outputs", lambda: history.write_test(
                    self.history_dir, entry.epoch, int(count), metrics) if ctx.is_chief else None)
        return metrics

    def _fit(self, ctx: Context, resume: bool) -> Summary:
        start = self._fit_start = time.perf_counter()
        pending_resume = [resume]  # rank 0 restores the checkpoint in the first sync only
        if not resume and self.checkpoint_dir is not None and ctx.is_chief and \
                checkpoint.path(self.checkpoint_dir).exists():
            warnings.warn(f"{checkpoint.path(self.checkpoint_dir)} holds a checkpoint; fit() "
                          "starts at epoch 0 and replaces it after the first epoch. "
                          "fit(resume=True) continues it instead.", stacklevel=5)  # at fit()
        self._state = RunState()
        if self._adaptation is not None:
            self._adaptation.reset()  # a new run decides anew (a resume takes the records')
        self._outputs = EpochOutputs(self.checkpoint_dir, self.history_dir, self.tensorboard_dir)

        def sync() -> None:
            """Bring every rank to rank 0's plan and state: before training, and again after
            an elastic reset. Every rank runs the same collectives here, whenever it joined."""
            ctx.progress("the plan agreement before training")
            began_sync = time.perf_counter()
            self.plan = plan = self._agree_on_plan(ctx)
            planned = time.perf_counter()
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
            times = PreflightTimes()
            together(ctx, "preflight", lambda: run_preflight(
                self.pipeline, self.network, plan, ctx, self.traces, times=times))
            self.startup_seconds = {"plan": planned - began_sync, "checks": times.checks,
                                    "compile": times.compile}
            resumed = together(ctx, "resume", lambda: run_state.resume(
                self.checkpoint_dir, plan, self.network, self._helper_models(), self.traces,
                lambda line: self._log(ctx, line), self._follow if self._adaptation else None)
                if pending_resume[0] and ctx.is_chief else None)
            pending_resume[0] = False
            if resumed is not None:
                self._state = resumed
            ctx.progress("the broadcast of the start state")
            # Every rank holds rank 0's state after this, the stopped flag included.
            self._state = run_state.broadcast(ctx, self._state, self.network,
                                              self._helper_models(), self.traces)
            if self._adaptation is not None:  # rank 0's batch decisions, from its records
                self.plan = self._follow(self._state.records)
            if self.traces:
                self._system = System(ctx, self.first_epoch, self.epochs)
                self.traces.attach(self._system)

        def train(commit: Callable[[], None]) -> None:
            if self.traces and not self._state.began:
                self._state.began = True
                self._system.mode = "train"
                self._trace_hook("on_begin", self.traces.all, Data(), self._state.next_epoch)
            while self._state.next_epoch < self.epochs and not self._state.stopped:
                record = self._run_epoch(self.plan.epochs[self._state.next_epoch], ctx)
                self._state.records.append(record)
                commit()  # elastic runs roll back to here when a rank fails

        def rollback(saved: RunState) -> None:
            self._state = run_state.restore(saved, self.network, self.traces)
            if self._adaptation is not None:
                self.plan = self._follow(self._state.records)

        ctx.run_elastic(train, sync=sync,
                        snapshot=lambda: run_state.capture(self._state, self.network,
                                                           self.traces),
                        restore=rollback)
        records = self._state.records
        self._last_epoch = len(records) - 1
        self._finalize_weights(records)
        if self.traces:
            self._system.mode = "train"
            self._trace_hook("on_end", self.traces.all, Data(), len(records) - 1)
        return Summary(records=list(records), backend=ctx.backend, world_size=ctx.size,
                       signature_epochs=self.plan.signature_epochs,
                       total_seconds=time.perf_counter() - start,
                       trace_count=sum(self.network.trace_counts.values()))

    def _finalize_weights(self, records: list[EpochRecord]) -> None:
        """End fit as Keras' fit ends: each model trained in the run gets its final weights
        from the optimizer that trained it last (``use_ema=True``: the moving averages). The
        same on every rank (their optimizer states are equal); the checkpoints keep the
        weights training continues from."""
        for name, model in sorted(self.network.models.items()):
            epochs = [r.epoch for r in records if name in r.trained_models]
            if epochs:
                keras_fit.finalize(model, optimizer_at(model, epochs[-1]))

    def _agree_on_plan(self, ctx: Context) -> Plan:
        return agree_on_plan(ctx, self.pipeline, self.network, self.epochs, self.seed,
                             self.evaluate, self.max_rank_batch, self.traces)

    def _follow(self, records: list[EpochRecord]) -> Plan:
        """The plan with the batch decisions of ``records`` (an `AdaptiveBatch` run)."""
        return self._adaptation.follow(records, self.plan, self.pipeline, self.max_rank_batch,
                                       self.network)

    def _helper_models(self) -> list[helper_models.HelperModel]:
        """Models the ops hold outside ModelOps (found once: ops do not change)."""
        if self._helpers is None:
            self._helpers = helper_models.find(self.pipeline, self.network)
        return self._helpers

    def _run_epoch(self, entry: EpochPlan, ctx: Context) -> EpochRecord:
        """Train and evaluate one epoch on every rank; the epoch's record (rank 0's files and
        the on_epoch_end callback done). ``self._state`` holds the epochs before it."""
        epoch, batch = entry.epoch, entry.global_batch
        skipped_before = self.pipeline.skipped("train") + self.pipeline.skipped("eval")
        tensors_before, bytes_before = self.network.traffic.read()
        start = time.perf_counter()
        report = RankReport(timeline={"train_start": start - self._fit_start})
        timeline = report.timeline
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
            adapt = self._adaptation
            set_lr = lr_setter(self.plan, self.network, entry,
                               adapt.lr_factor(epoch) if adapt else 1.0,
                               adapt.base_rates if adapt else None)
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
                                                        traces, set_lr)
                outputs.append(last)
            report.steps = step.steps + (1 if entry.last_batch else 0)
            report.train = add(outputs)
            if traces:
                train_logs.update(self._trace_hook("on_epoch_end", traces, Data(), epoch,
                                                   "train"))
        report.learning_rates = learning_rates
        self._average_model_state(entry, ctx)
        report.train_seconds = time.perf_counter() - start
        timeline["train_end"] = time.perf_counter() - self._fit_start
        tensors_after, bytes_after = self.network.traffic.read()
        report.reduced = (tensors_after - tensors_before, bytes_after - bytes_before)
        if entry.evaluate:
            eval_start = time.perf_counter()
            report.eval = self._evaluate("eval", entry, entry.eval_batch or batch, ctx,
                                         eval_traces)
            report.eval_seconds = time.perf_counter() - eval_start
        timeline["eval_end"] = time.perf_counter() - self._fit_start
        report.skipped = (self.pipeline.skipped("train") + self.pipeline.skipped("eval")
                          - skipped_before)
        if self.network.noise is not None:
            report.noise = self.network.noise.get_state()
        ctx.progress(f"epoch {epoch}, the gathering of every rank's epoch report")
        record = make_record(entry, ctx.allgather_object(report, name="fe.epoch_report"), ctx)
        if eval_traces:
            # After the gather: the eval traces see the losses over the whole eval set.
            trace_logs.update(self._trace_hook("on_epoch_end", eval_traces,
                                               Data(record.eval_metrics), epoch, "eval"))
        record.eval_metrics.update(record_values(trace_logs))
        record.train_metrics.update(record_values(train_logs))
        if self._adaptation is not None:
            # From reduced values only: the same decision on every rank (make_record checked
            # that every rank measured the same).
            self.plan = self._adaptation.end_epoch(record, self.plan, self.pipeline,
                                                   self.max_rank_batch, self.network)
        if self._system is not None and self._system.stop_training:
            # The same on every rank (checked by the traces' agreement). Kept in the record,
            # so the run state (fe_dist.run_state) carries it: a resume, a rollback to an
            # earlier epoch and a joining rank all know whether the run stopped.
            record.stopped_training = True
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
            together(ctx, "epoch outputs", lambda: self._outputs.write(
                RunState(records=[*self._state.records, record], began=self._state.began),
                self.network, self.traces, self.plan, self._helper_models())
                if ctx.is_chief else None)
        callback = resolve(self.on_epoch_end, epoch)
        if callback is not None:
            ctx.progress(f"epoch {epoch}, the user's on_epoch_end callback")

            def run_callback() -> None:
                callback(record)
                ctx.progress(f"epoch {epoch}, waiting for the other ranks' on_epoch_end")

            # Agreed: a callback failing on one rank raises on every rank (none is left waiting
            # in the next collective); one failing on every rank raises as itself everywhere.
            together(ctx, "on_epoch_end", run_callback)
        return record

    def _last_batch(self, entry: EpochPlan, ctx: Context, done: int, first_step: int,
                    traces: list[Any], set_lr: Callable[[int], dict[str, float]]
                    ) -> tuple[dict[str, tf.Tensor], dict[str, float]]:
        """Train the epoch's last, partial global batch (``entry.last_batch`` samples, every
        rank a share) as one more optimizer step: its loss is averaged over those samples, as
        FastEstimator trains its last batch (``drop_last=False``)."""
        epoch = entry.epoch
        ds = self.pipeline.get_last_batch_dataset(epoch, entry.global_batch, ctx, self.seed)
        step = self.network.get_train_step(epoch, dict(ds.element_spec), ctx, 1,
                                           self.traces.keep(epoch, "train"))
        rates = set_lr(done)
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
        return add(outputs)

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


def _numpy(values: dict[str, tf.Tensor]) -> Data:
    """A step's kept batch values as numpy, for the traces' on_batch_end."""
    return Data({k: v.numpy() for k, v in values.items()})
