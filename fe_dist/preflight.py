"""Checks of every signature epoch before training, so a mistake in epoch 40 fails in seconds.

For each epoch where something scheduled changes: every op's input keys exist, each model's
input shape matches what the ops before it produce, each trained model's loss key is written,
and the train and eval steps compile (this is also their one trace for the run).
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any, Callable, Iterable

import keras
import numpy as np
import tensorflow as tf

from fe_dist import helper_models, sharding
from fe_dist.distributed import Context, get_context
from fe_dist.errors import ConfigError
from fe_dist.op.numpyop.runner import check_numpy_ops
from fe_dist.op.op import Op
from fe_dist.op.tensorop.loss import LossOp
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.schedule import Plan
from fe_dist.schedule.plan import check_eval_batch
from fe_dist.trace.adapt import LRScheduler
from fe_dist.trace.checks import check_trace_keys, check_trace_models


def check_keys(ops: Iterable[Op], available: Iterable[str], epoch: int, mode: str,
               where: str) -> set[str]:
    """Raise if an op reads a key that nothing before it writes; return the keys after ``ops``."""
    keys = set(available)
    for op in ops:
        for key in op.inputs:
            if key not in keys:
                raise ConfigError(
                    f"Epoch {epoch} ({mode}): {where} op {op} reads key {key!r}, which neither the "
                    f"data nor an earlier op produces (available: {sorted(keys)}). Fix the key, or "
                    "add an op that writes it before this one.")
        keys.update(op.outputs)
    return keys


def check_model_inputs(ops: Iterable[Op], spec: dict[str, tf.TensorSpec], epoch: int,
                       mode: str) -> None:
    """Raise if a ModelOp's input, as the pipeline makes it, does not fit the model."""
    written_by_network: set[str] = set()
    for op in ops:
        if isinstance(op, ModelOp) and len(op.inputs) == 1 and \
                op.inputs[0] not in written_by_network:
            expected = _model_input_shape(op.model)
            got = spec[op.inputs[0]].shape.as_list()[1:]
            if expected is not None and not _compatible(expected, got):
                raise ConfigError(
                    f"Epoch {epoch} ({mode}): model {op.model.model_name!r} expects input shape "
                    f"{tuple(expected)} but key {op.inputs[0]!r} has per-sample shape {tuple(got)} "
                    "after the pipeline ops scheduled then. Schedule a matching Resize for this "
                    "epoch, or another model.")
        written_by_network.update(op.outputs)


def _model_input_shape(model: Any) -> list[int | None] | None:
    try:
        shape = model.inputs[0].shape
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    return list(shape)[1:]


def _compatible(expected: list[int | None], got: list[int | None]) -> bool:
    return len(expected) == len(got) and all(
        e is None or g is None or e == g for e, g in zip(expected, got))


def check_losses(network: Any, epoch: int, keys: set[str]) -> None:
    """Raise if a model that trains at ``epoch`` has a loss_name no op writes."""
    for model in network.trained_models(epoch):
        loss_name = model.fe_dist.loss_name
        if loss_name not in keys:
            raise ConfigError(
                f"Epoch {epoch}: model {model.model_name!r} trains on loss_name "
                f"{loss_name!r}, but no network op writes that key (keys then: "
                f"{sorted(keys)}). Set a loss op's outputs={loss_name!r}, or change "
                "loss_name in fe.build.")


def check_targets(pipeline: Any, ops: list[Op], pipeline_ops: list[Op], epoch: int,
                  mode: str) -> None:
    """Let each loss op check its targets when they come straight from the data (no op
    rewrites them), e.g. labels out of the model's classes, before training."""
    for op in ops:
        if not isinstance(op, LossOp):
            continue
        key, pred_key = op.inputs[0], op.inputs[1]
        if key not in pipeline.keys(mode) or any(key in o.outputs for o in [*pipeline_ops, *ops]):
            continue
        values = pipeline.column(mode, key)
        if values is None:  # not cheap to read (a stream): checked as the step runs
            continue
        writer = next((o for o in ops if pred_key in o.outputs), None)
        classes = _model_output_classes(writer.model) if isinstance(writer, ModelOp) else None
        try:
            op.check_data(np.asarray(values), classes)
        except ConfigError as err:
            raise ConfigError(f"Epoch {epoch} ({mode}): {err}") from None


def _model_output_classes(model: Any) -> int | None:
    try:
        return int(model.outputs[0].shape[-1])
    except (AttributeError, IndexError, TypeError, ValueError):
        return None


def check_learning_rates(network: Any, plan: Plan) -> None:
    """Refuse a model whose learning rate fe_dist sets each step (``fe.build(lr=...)`` or an
    `LRScheduler`) while its optimizer holds a Keras ``LearningRateSchedule``, which Keras does
    not let anyone set (a TypeError at step 0). The rates themselves were computed, and
    checked, when the plan was built."""
    for entry in plan.epochs:
        for model in network.trained_models(entry.epoch):
            schedule = model.fe_dist.lr_schedule
            if schedule is None:
                continue
            opt = model.fe_dist.optimizer_at(entry.epoch)
            keras_schedule = _keras_lr_schedule(opt)
            if keras_schedule is None:
                continue
            source, drop = (("an LRScheduler trace", "the LRScheduler")
                            if LRScheduler.installed(schedule)
                            else ("fe.build(lr=...)", "lr=... from fe.build"))
            raise ConfigError(
                f"Epoch {entry.epoch}: model {model.model_name!r} has two learning-rate "
                f"schedules: its optimizer {type(opt).__name__} was made with a Keras "
                f"{type(keras_schedule).__name__} as learning_rate, and {source} sets the rate "
                "before every step (Keras refuses that: its rate is then not settable). Drop "
                f"one: {drop} (the Keras schedule then sets the rate, counting the optimizer's "
                "own steps), or give the optimizer a float learning_rate.")


def _keras_lr_schedule(opt: Any) -> Any:
    """The Keras ``LearningRateSchedule`` ``opt`` (or the optimizer a LossScaleOptimizer wraps)
    was made with, or None."""
    inner = getattr(opt, "inner_optimizer", opt)
    rate = getattr(inner, "_learning_rate", None)
    return rate if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule) else None


@dataclasses.dataclass
class PreflightTimes:
    """Where the seconds of `run_preflight` went (for the time to the first step).

    Attributes:
        checks: Everything but compiling (keys, shapes, losses, the datasets' set-up).
        compile: Tracing the train and eval steps.
    """

    checks: float = 0.0
    compile: float = 0.0


def run_preflight(pipeline: Any, network: Any, plan: Plan, ctx: Context,
                  traces: Any = None, only: list[tuple[int, str]] | None = None,
                  times: PreflightTimes | None = None) -> None:
    """Check and compile every signature epoch of ``plan`` on this rank, with the keys its
    ``traces`` (`fe_dist.trace.runner.Traces`) read and monitor; with ``only``, just those
    (epoch, mode) pairs (the test split at the epoch an early stop ended on). ``times``, when
    given, receives the seconds spent checking and compiling.

    Raises:
        ConfigError: naming the epoch, op, key or model, and the fix.
    """
    times = times if times is not None else PreflightTimes()
    start, compiled = time.perf_counter(), times.compile
    try:
        _run_preflight(pipeline, network, plan, ctx, traces, only, times)
    finally:
        times.checks += time.perf_counter() - start - (times.compile - compiled)


def _run_preflight(pipeline: Any, network: Any, plan: Plan, ctx: Context, traces: Any,
                   only: list[tuple[int, str]] | None, times: PreflightTimes) -> None:
    check_learning_rates(network, plan)
    if traces:
        check_trace_models(traces, network)
    helpers = helper_models.find(pipeline, network)  # refuses fe.build models no ModelOp runs
    # Train and eval at every schedule change; test once, with the last epoch's schedule
    # (Estimator.test runs it after training).
    checks = [(epoch, mode) for epoch in plan.signature_epochs
              for mode in pipeline.modes() if mode != "test"]
    if "test" in pipeline.modes():
        checks.append((plan.epochs[-1].epoch, "test"))
    checks = only if only is not None else checks
    for epoch, mode in checks:
        entry = plan.epochs[epoch]
        batch = entry.global_batch
        keys = check_keys(pipeline.get_ops(epoch, mode), pipeline.keys(mode), epoch, mode,
                          "pipeline")
        check_numpy_ops(pipeline.get_ops(epoch, mode), network.get_ops(epoch, mode),
                        pipeline.data_spec(mode), epoch, mode,
                        lambda key: pipeline.column(mode, key))
        if mode == "train":
            if not network.trained_models(epoch):
                continue
            micro = entry.micro_batch if entry.micro_batches > 1 else None
            ds = pipeline.get_train_dataset(epoch, batch, ctx, seed=plan.seed,
                                            micro_batch=micro)
        else:
            if mode == "eval":
                batch = entry.eval_batch or batch
            else:
                batch = check_eval_batch(pipeline.get_batch_size(epoch, mode), epoch, mode)
            ds = pipeline.get_eval_dataset(epoch, batch, ctx, max_batch=entry.micro_batch,
                                           mode=mode)
        spec = _element_spec(ds, keys, epoch, mode)
        net_ops = network.get_ops(epoch, mode)
        keys = check_keys(net_ops, spec, epoch, mode, "network")
        check_model_inputs(net_ops, spec, epoch, mode)
        check_targets(pipeline, net_ops, pipeline.get_ops(epoch, mode), epoch, mode)
        keep = traces.keep(epoch, mode) if traces else ()
        if traces:
            check_trace_keys(traces, network, epoch, mode, keys, None)
        if mode == "train":
            check_losses(network, epoch, keys)
            _trace(lambda: network.get_train_step(epoch, spec, ctx,
                                                  sharding.micro_steps(entry), keep),
                   epoch, mode, times)
        else:
            step = network.get_eval_step(epoch, spec, mode, keep)
            _trace(lambda: step.get_concrete_function(spec), epoch, mode, times)
            if traces:
                check_trace_keys(traces, network, epoch, mode, keys, step.metric_keys(spec))
    if helpers:
        helper_models.check_not_updated(helpers, network.compiled_graphs())


def _element_spec(ds: tf.data.Dataset, keys: set[str], epoch: int,
                  mode: str) -> dict[str, tf.TensorSpec]:
    spec = ds.element_spec
    missing = keys - set(spec)
    if missing:  # an op's outputs did not reach the batch: a bug, not a user error
        raise ConfigError(f"Epoch {epoch} ({mode}): pipeline keys {sorted(missing)} are missing.")
    return dict(spec)


def _trace(compile_step: Callable[[], Any], epoch: int, mode: str,
           times: PreflightTimes) -> None:
    # Unwatched: compiling runs no collective, so it cannot be a stall, and a large model (or a
    # loaded machine) may compile for longer than the stall timeout.
    start = time.perf_counter()
    try:
        with get_context().unwatched(f"epoch {epoch} ({mode}): compiling the step"):
            compile_step()
    except ConfigError as err:  # raised while tracing (tf.function may prefix its call stack)
        message = key_message(err)
        if message.startswith("Epoch "):
            raise
        raise ConfigError(f"Epoch {epoch} ({mode}): {message}") from err
    except Exception as err:  # TensorFlow's own shape or dtype errors, reworded with the epoch
        raise ConfigError(f"Epoch {epoch} ({mode}): the network ops scheduled then do not fit "
                          f"together: {type(err).__name__}: {key_message(err).rstrip('.')}. "
                          "Check the shapes the pipeline produces against each model and "
                          "loss.") from err
    finally:
        times.compile += time.perf_counter() - start


def key_message(err: BaseException) -> str:
    """The line of a TensorFlow or Keras error that says what is wrong. Inside ``tf.function``
    the message starts with the traced call stack ("in user code: File ..."); Keras marks its
    own explanation in bold."""
    text = str(err)
    bold = re.findall(r"\x1b\[1m(.*?)\x1b\[0m", text, re.S)
    if bold:
        return " ".join(bold[0].split())
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines()]
    lines = [line for line in lines if line and not line.startswith(
        ("in user code", "File ", "Exception encountered", "Arguments received", "•"))]
    for line in reversed(lines):
        match = re.match(r"^[\w.]*(Error|Exception): (.+)", line)
        if match:
            return match.group(2)
    return lines[0] if lines else type(err).__name__
