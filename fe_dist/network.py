"""`Network`: models and ops, and the compiled train and eval steps of each epoch."""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Sequence, TypeVar

import keras
import tensorflow as tf

from fe_dist.build import optimizer_at
from fe_dist.distributed import (ALLREDUCE_MODES, COMPRESSIONS, Context, GradientReducer,
                                 TrafficCounters, get_context)
from fe_dist.errors import ConfigError
from fe_dist.noise_scale import NoiseScale, squared_norm
from fe_dist.op.op import Op, cache_key, run_ops
from fe_dist.op.tensorop.loss import LossOp
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.schedule import BaseScheduler, all_values, get_current_items, scheduled_list

# A trace-time helper without tensor-dependent Python control flow: AutoGraph's conversion
# of it changed nothing and cost time at every start-up (benchmarks/first_step.py).
_static_helper = tf.autograph.experimental.do_not_convert

T = TypeVar("T")

Spec = dict[str, tf.TensorSpec]


class Network:
    """The ops that run on each batch after the pipeline: models, losses and the rest.

    Args:
        ops: Tensor ops, ModelOps and loss ops, each may be a Scheduler of ops.
        gradient_compression: "fp16" halves the bytes of the gradient allreduce (gradients are
            cast to float16 for the sum and back); None sends float32.
        allreduce: "grouped" (default) reduces each model's gradients in one collective after
            the backward pass; "per_tensor" issues one collective per gradient as soon as it is
            computed, overlapping communication with the rest of the backward pass (Horovod).
            Same numbers either way; which is faster depends on model and machine
            (benchmarks/allreduce_knobs.py).
    """

    def __init__(self, ops: Sequence[Op | BaseScheduler[Op]],
                 gradient_compression: str | None = None, allreduce: str = "grouped") -> None:
        get_context()
        if gradient_compression not in COMPRESSIONS:
            raise ConfigError(f"Network: gradient_compression must be one of "
                              f"{list(COMPRESSIONS)}, got {gradient_compression!r}.")
        if allreduce not in ALLREDUCE_MODES:
            raise ConfigError(f"Network: allreduce must be one of {ALLREDUCE_MODES}, got "
                              f"{allreduce!r}.")
        self.gradient_compression = gradient_compression
        self.allreduce = allreduce
        self.ops = scheduled_list(ops, Op, "Network ops", "fe_dist ops (e.g. Resize, ModelOp)")
        self.models: dict[str, keras.Model] = {}
        for item in self.ops:
            for op in all_values(item):
                if isinstance(op, ModelOp):
                    known = self.models.setdefault(op.model.model_name, op.model)
                    if known is not op.model:
                        raise ConfigError(f"Two different models are named {op.model.model_name!r}."
                                          " Give each fe.build a unique model_name.")
        if not self.models:
            raise ConfigError("Network has no ModelOp: add ModelOp(inputs=..., model=..., "
                              "outputs=...) for each model.")
        self._steps: dict[tuple, Callable] = {}
        self._accumulated: dict[str, list[tf.Variable]] = {}
        self._grad_masks: dict[tuple, tuple] = {}  # which gradients an accumulate step makes
        self.trace_counts: Counter[tuple] = Counter()
        self.traffic = TrafficCounters()  # gradient tensors and bytes handed to collectives
        # Set by the Estimator when the batch size is an AdaptiveBatch: the train steps then
        # measure the gradient noise scale of the models they train.
        self.noise: NoiseScale | None = None
        self._noise_sums: tuple[tf.Variable, tf.Variable] | None = None

    def get_ops(self, epoch: int, mode: str) -> list[Op]:
        """Ops active at ``epoch`` in ``mode``."""
        return get_current_items(self.ops, epoch, mode)

    def scheduled_items(self) -> list[Any]:
        """Everything that may change by epoch, for signature epochs."""
        return list(self.ops)

    def trained_models(self, epoch: int) -> list[keras.Model]:
        """Models that train at ``epoch``: those of active, trainable, train-mode ModelOps."""
        names = []
        for op in self.get_ops(epoch, "train"):
            if isinstance(op, ModelOp) and op.trainable and op.model.model_name not in names:
                names.append(op.model.model_name)
        return [self.models[n] for n in names]

    def compiled_graphs(self) -> list[tf.Graph]:
        """The graphs of every train and eval step compiled so far (to inspect what they do)."""
        return [fn.get_concrete_function().graph for fn in self._steps.values()
                if getattr(fn, "input_signature", None) is not None]

    # -- compiled steps ---------------------------------------------------------------------------
    def get_train_step(self, epoch: int, spec: Spec, ctx: Context | None = None,
                       micro_steps: int = 1, keep: tuple[str, ...] = ()) -> "TrainStep":
        """The train step for ``epoch``'s ops on batches of ``spec``: one optimizer step per
        batch, or with ``micro_steps`` > 1 (gradient accumulation) one per that many consecutive
        micro-batches, whose gradients are summed locally and allreduced once.

        Compiled functions are cached by (ops, models, optimizers, input spec): one trace per
        distinct signature for the whole run. Getting the step compiles it. ``keep`` names batch
        keys (data or op outputs) the step also returns, for traces (`TrainStep.values`).
        """
        ctx = ctx or get_context()
        return _batch_free_first(spec, lambda s: self._get_train_step(epoch, s, ctx,
                                                                       micro_steps, keep))

    def _get_train_step(self, epoch: int, spec: Spec, ctx: Context, micro_steps: int,
                        keep: tuple[str, ...]) -> "TrainStep":
        ops, models, optimizers, key = self._train_setup(epoch, spec)
        # How the noise scale's small-batch gradients come: each rank's share (or micro-batch),
        # or, on one process without accumulation, the two halves of its batch.
        measure = None if self.noise is None else (
            "halves" if ctx.size == 1 and micro_steps == 1 else "shares")
        key = (*key, tuple(keep), measure)
        scalar = tf.TensorSpec([], tf.float32)
        if micro_steps == 1:
            step_key = ("train", *key)
            if step_key not in self._steps:
                self._steps[step_key] = tf.function(
                    self._train_fn(step_key, ops, models, optimizers, ctx, keep, measure),
                    input_signature=(spec, scalar))
            self._steps[step_key].get_concrete_function(spec, scalar)
            return TrainStep(self._steps[step_key])
        acc_key = ("accumulate", *key)
        if acc_key not in self._steps:
            self._steps[acc_key] = tf.function(
                self._accumulate_fn(acc_key, ops, models, optimizers, keep, measure),
                input_signature=(spec, scalar))
        self._steps[acc_key].get_concrete_function(spec, scalar)  # records the gradient mask
        masks = self._grad_masks[acc_key]
        apply_key = ("apply", key[1], masks, measure)  # key[1]: the models and optimizers
        if apply_key not in self._steps:
            self._steps[apply_key] = tf.function(
                self._apply_fn(apply_key, models, optimizers, masks, ctx, measure),
                input_signature=(scalar,))
        self._steps[apply_key].get_concrete_function(scalar)
        return TrainStep(self._steps[acc_key], self._steps[apply_key], micro_steps)

    def _train_setup(self, epoch: int, spec: Spec) -> tuple:
        ops = self.get_ops(epoch, "train")
        models = self.trained_models(epoch)
        optimizers = [optimizer_at(m, epoch) for m in models]
        key = (cache_key(ops),
               tuple((m.model_name, m.fe_dist.optimizers.index(o))
                     for m, o in zip(models, optimizers)),
               _spec_key(spec))
        return ops, models, optimizers, key

    def _reduce_and_apply(self, models: list[keras.Model],
                          optimizers: list[keras.optimizers.Optimizer], grads: list[list],
                          ctx: Context, small: tuple[tf.Tensor, tf.Tensor] | None = None,
                          global_batch: tf.Tensor | None = None) -> None:
        """Allreduce each model's gradients (one collective per model, named after it) and apply
        them. Variables without a gradient (the loss does not reach them) are left out of both,
        as Keras leaves them out: zeros would still move them under Adam's momentum or weight
        decay. Which gradients are None is fixed by the traced program, the same on every
        rank, so every rank still issues the same collectives.

        ``small`` (measuring the noise scale): this rank's sum of squared norms of its
        small-batch gradients and their count; both ride in the first model's collective, and
        the reduced values update `self.noise` identically on every rank."""
        extras = [] if small is None else list(small)
        big_sq = tf.constant(0.0)
        for model, opt, model_grads in zip(models, optimizers, grads):
            pairs = [(g, v) for g, v in zip(model_grads, model.trainable_variables)
                     if g is not None]
            if not pairs:
                continue
            reducer = GradientReducer(COMPRESSIONS[self.gradient_compression], self.allreduce,
                                      self.traffic)
            reduced = reducer(ctx, [g for g, _ in pairs], f"fe.grad.{model.model_name}",
                              extras)
            reduced, reduced_extras = reduced[:len(pairs)], reduced[len(pairs):]
            if extras:
                extras, small = [], reduced_extras
            if self.noise is not None:
                big_sq += squared_norm(reduced) / _loss_scale(opt) ** 2
            opt.apply_gradients(zip(reduced, [v for _, v in pairs]))
        if self.noise is not None and small is not None and not extras:
            self.noise.update(small[0], small[1], big_sq, global_batch)

    def _train_fn(self, key: tuple, ops: list[Op], models: list[keras.Model],
                  optimizers: list[keras.optimizers.Optimizer], ctx: Context,
                  keep: tuple[str, ...], measure: str | None) -> Callable:
        def train_step(batch: dict[str, tf.Tensor], global_batch: tf.Tensor) -> tuple:
            self.trace_counts[key] += 1  # Python runs only while tracing
            losses, grads, store, small = _losses_and_grads(ops, models, optimizers, batch,
                                                            global_batch, measure)
            self._reduce_and_apply(models, optimizers, grads, ctx, small, global_batch)
            return losses, {k: store[k] for k in keep}

        return train_step

    def _accumulate_fn(self, key: tuple, ops: list[Op], models: list[keras.Model],
                       optimizers: list[keras.optimizers.Optimizer],
                       keep: tuple[str, ...], measure: str | None) -> Callable:
        accumulators = [self._accumulators(m) for m in models]
        noise_sums = self._noise_accumulators() if measure else None

        def accumulate(batch: dict[str, tf.Tensor], global_batch: tf.Tensor) -> tuple:
            self.trace_counts[key] += 1
            losses, grads, store, small = _losses_and_grads(ops, models, optimizers, batch,
                                                            global_batch, measure)
            self._grad_masks[key] = tuple(tuple(g is not None for g in model_grads)
                                          for model_grads in grads)
            for accs, model_grads in zip(accumulators, grads):
                for acc, grad in zip(accs, model_grads):
                    if grad is not None:
                        acc.assign_add(tf.convert_to_tensor(grad))
            if noise_sums is not None:  # each micro-batch's gradient is a small-batch one
                for total, value in zip(noise_sums, small):
                    total.assign_add(value)
            return losses, {k: store[k] for k in keep}

        return accumulate

    def _apply_fn(self, key: tuple, models: list[keras.Model],
                  optimizers: list[keras.optimizers.Optimizer], masks: tuple,
                  ctx: Context, measure: str | None) -> Callable:
        accumulators = [self._accumulators(m) for m in models]
        noise_sums = self._noise_accumulators() if measure else None

        def apply(global_batch: tf.Tensor) -> tf.Tensor:
            self.trace_counts[key] += 1
            grads = [[a.read_value() if has else None for a, has in zip(accs, mask)]
                     for accs, mask in zip(accumulators, masks)]
            small = None if noise_sums is None else tuple(v.read_value() for v in noise_sums)
            self._reduce_and_apply(models, optimizers, grads, ctx, small, global_batch)
            for acc in [a for accs in accumulators for a in accs] + list(noise_sums or ()):
                acc.assign(tf.zeros_like(acc))
            return tf.constant(0)

        return apply

    def _noise_accumulators(self) -> tuple[tf.Variable, tf.Variable]:
        """Sums of the micro-batch gradients' squared norms and their count, over one
        optimizer step (made eagerly once)."""
        if self._noise_sums is None:
            with tf.init_scope():
                self._noise_sums = (tf.Variable(0.0, trainable=False),
                                    tf.Variable(0.0, trainable=False))
        return self._noise_sums

    def _accumulators(self, model: keras.Model) -> list[tf.Variable]:
        """Gradient sums of ``model``, made eagerly once (so no step's first trace creates
        variables)."""
        if model.model_name not in self._accumulated:
            with tf.init_scope():
                self._accumulated[model.model_name] = [
                    tf.Variable(tf.zeros_like(v), trainable=False)
                    for v in model.trainable_variables]
        return self._accumulated[model.model_name]

    def clear_accumulators(self) -> None:
        """Empty every model's gradient sums. A run continues only from an optimizer-step
        boundary, where they hold nothing; a failure between micro-batches leaves a partial
        sum that would otherwise enter the first step after an elastic rollback."""
        for accumulators in self._accumulated.values():
            for acc in accumulators:
                acc.assign(tf.zeros_like(acc))

    def get_eval_step(self, epoch: int, spec: Spec, mode: str = "eval",
                      keep: tuple[str, ...] = ()) -> "EvalStep":
        """The compiled eval step for ``epoch``'s ops of ``mode`` ("eval" or "test"): loss and
        metric sums plus the sample count; ``keep`` names batch keys it also returns, for
        traces (`EvalStep.values`)."""
        ops = self.get_ops(epoch, mode)

        def get(spec: Spec) -> EvalStep:
            key = (mode, cache_key(ops), (), _spec_key(spec), tuple(keep))
            if key not in self._steps:
                self._steps[key] = self._compile_eval(key, ops, spec, mode, tuple(keep))
            step = EvalStep(self._steps[key])
            step.get_concrete_function(spec)  # compiles now: a failure falls back below
            return step

        return _batch_free_first(spec, get)

    def _compile_eval(self, key: tuple, ops: list[Op], spec: Spec, mode: str,
                      keep: tuple[str, ...]) -> Callable:
        loss_ops = [op for op in ops if isinstance(op, LossOp)]

        def eval_step(batch: dict[str, tf.Tensor]) -> dict:
            self.trace_counts[key] += 1
            store = run_ops(ops, dict(batch), {"mode": mode})
            sums = {"count": tf.cast(tf.shape(next(iter(batch.values())))[0], tf.float32)}
            for op in loss_ops:
                loss_key = op.outputs[0]
                sums[loss_key] = tf.reduce_sum(_per_sample(store, loss_key, ops, batch))
                y_true, y_pred = (store[k] for k in op.inputs)
                for name, values in op.per_sample_metrics(y_true, y_pred).items():
                    sums[metric_name(loss_key, name)] = tf.reduce_sum(values)
            return sums, {k: store[k] for k in keep}

        return tf.function(eval_step, input_signature=(spec,))


class EvalStep:
    """Runs the compiled eval step on one batch.

    Attributes:
        values: The batch values of the ``keep`` keys from the last call (empty without).
    """

    def __init__(self, step: Callable) -> None:
        self._step = step
        self.values: dict[str, tf.Tensor] = {}

    def __call__(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """This rank's loss and metric sums of ``batch``, and its sample count."""
        sums, self.values = self._step(batch)
        return sums

    def get_concrete_function(self, spec: Spec) -> Any:
        """Compile (trace) the step for batches of ``spec``."""
        return self._step.get_concrete_function(spec)

    def metric_keys(self, spec: Spec) -> list[str]:
        """The losses and loss metrics the step sums (its eval metrics)."""
        sums = self.get_concrete_function(spec).structured_outputs[0]
        return sorted(k for k in sums if k != "count")


class TrainStep:
    """Runs optimizer steps: each call takes one batch, or one micro-batch under gradient
    accumulation, where every ``micro_steps``-th call allreduces and applies the sums.

    Attributes:
        steps: Optimizer steps completed so far.
        values: The batch values of the ``keep`` keys from the last call (empty without).
    """

    def __init__(self, step: Callable, apply: Callable | None = None,
                 micro_steps: int = 1) -> None:
        self._step, self._apply, self._micro_steps = step, apply, micro_steps
        self._calls = 0
        self.steps = 0
        self.values: dict[str, tf.Tensor] = {}

    @property
    def begins_step(self) -> bool:
        """True when the next call starts an optimizer step (set its learning rate now)."""
        return self._calls % self._micro_steps == 0

    def __call__(self, batch: dict[str, tf.Tensor], global_batch: tf.Tensor) -> dict:
        """This rank's loss sums of ``batch``."""
        losses, self.values = self._step(batch, global_batch)
        self._calls += 1
        if self._calls % self._micro_steps == 0:
            if self._apply is not None:
                self._apply(global_batch)
            self.steps += 1
        return losses


def _losses_and_grads(ops: list[Op], models: list[keras.Model],
                      optimizers: list[keras.optimizers.Optimizer], batch: dict[str, tf.Tensor],
                      global_batch: tf.Tensor, measure: str | None = None
                      ) -> tuple[dict, list[list], dict, tuple | None]:
    """This rank's loss sums, each model's gradients of its loss over the global batch, the
    batch's keys after the ops, and (``measure``) the noise scale's small-batch part: the sum
    of the squared norms of this rank's small-batch gradients, each scaled to a mean over its
    samples, and their count ("shares": the whole batch is one; "halves": its two halves).

    A model's objective is Keras' own: the mean of its loss key over the global batch plus
    ``sum(model.losses)`` (weight regularizers, activity regularizers, ``add_loss``). This rank
    adds its model losses weighted by its share of the global batch (``rows / global_batch``,
    per micro-batch under accumulation), so summed over ranks a weight penalty counts once and
    a batch mean passed to ``add_loss`` becomes the mean over the global batch: one process
    equals Keras ``fit``, and N ranks equal one process, with uneven shares too.
    """
    store = dict(batch)
    rows = tf.cast(tf.shape(next(iter(batch.values())))[0], tf.float32)
    # The halves of the batch as two ranks would hold them (the first the larger).
    first = tf.math.ceil(rows / 2)
    parts = [(slice(None), rows)] if measure != "halves" else [
        (slice(None, tf.cast(first, tf.int32)), first),
        (slice(tf.cast(first, tf.int32), None), rows - first)]
    with tf.GradientTape(persistent=len(models) > 1 or len(parts) > 1) as tape:
        run_ops(ops, store, {"mode": "train"})
        # Sum of this rank's per-sample losses over the *global* batch: summing the gradients
        # over ranks (and micro-batches) then gives exactly the single-process gradient.
        per_sample = {k: tf.cast(_per_sample(store, k, ops, batch), tf.float32)
                      for k in sorted({m.fe_dist.loss_name for m in models})}
        losses = {k: tf.reduce_sum(v) for k, v in per_sample.items()}
        objectives = []  # per model, per part
        for model, opt in zip(models, optimizers):
            extra = _model_losses(model)
            if extra is not None:
                # Reported as a sum over samples like the loss keys, so the epoch's record
                # (sums / samples) holds the mean of the term one process computes per step.
                losses[model_losses_key(model.model_name)] = rows * extra
            model_objectives = []
            for where, count in parts:
                objective = tf.reduce_sum(per_sample[model.fe_dist.loss_name][where]) \
                    / global_batch
                if extra is not None:
                    objective += count / global_batch * extra
                # scale_loss: the identity except under a mixed-precision loss-scale optimizer.
                model_objectives.append(opt.scale_loss(objective))
            objectives.append(model_objectives)
    part_grads = [[tape.gradient(obj, m.trainable_variables) for obj in model_objectives]
                  for m, model_objectives in zip(models, objectives)]
    grads = [_sum_parts(g) for g in part_grads]
    small = None
    if measure is not None:
        # A part's gradient is (its samples / global batch) times its mean gradient.
        norms = [tf.add_n([squared_norm(g[p]) / _loss_scale(opt) ** 2
                           for g, opt in zip(part_grads, optimizers)])
                 * (global_batch / count) ** 2 for p, (_, count) in enumerate(parts)]
        small = (tf.add_n(norms), tf.constant(float(len(parts))))
    return losses, grads, store, small


def _sum_parts(parts: list[list]) -> list:
    """Per variable, the sum of the parts' gradients (None where no part has one)."""
    if len(parts) == 1:
        return parts[0]
    summed = []
    for grads in zip(*parts):
        present = [tf.convert_to_tensor(g) for g in grads if g is not None]
        summed.append(tf.add_n(present) if present else None)
    return summed


def _loss_scale(optimizer: keras.optimizers.Optimizer) -> tf.Tensor:
    """The factor ``scale_loss`` multiplies by (1 but under a loss-scale optimizer)."""
    return tf.cast(optimizer.scale_loss(tf.constant(1.0)), tf.float32)


@_static_helper
def _model_losses(model: keras.Model) -> tf.Tensor | None:
    """``sum(model.losses)`` in float32 (activity losses of a mixed-precision model are
    float16), or None for a model without any. Read after the forward pass: Keras keeps the
    activity and ``add_loss`` terms of the model's last call, and computes the weight
    regularizers from the current variables, inside the tape."""
    terms = [tf.reduce_sum(tf.cast(t, tf.float32)) for t in model.losses]
    return tf.add_n(terms) if terms else None


def model_losses_key(model_name: str) -> str:
    """The train-loss record key of ``sum(model.losses)`` of model ``model_name``."""
    return f"{model_name}_model_losses"


@_static_helper
def _per_sample(store: dict[str, tf.Tensor], key: str, ops: list[Op],
                batch: dict[str, tf.Tensor]) -> tf.Tensor:
    """The loss values of ``key``, checked (while tracing) to be one per sample: fe_dist sums
    them and divides by the global batch, so a loss already reduced to a mean would train with
    gradients 1/B too small on one process and N times too big over N ranks."""
    value = tf.convert_to_tensor(store[key])
    shape = value.shape
    rows = next(iter(batch.values())).shape[0]
    one_per_sample = shape.rank == 1 or (shape.rank == 2 and shape[1] == 1)
    # With the batch axis unknown (a batch-free trace), a loss with a known first axis is not
    # per sample either: it was reduced over the batch to something of fixed length.
    wrong_rows = shape[0] is not None and (rows is None or shape[0] != rows) \
        if shape.rank else False
    if not one_per_sample or wrong_rows:
        writer = next((op for op in reversed(ops) if key in op.outputs), None)
        raise ConfigError(
            f"Loss op {writer} writes loss key {key!r} with shape {shape.as_list()}, but a loss "
            f"must be one value per sample (shape [{rows if rows is not None else 'batch'}]). "
            "Return the per-sample losses without reducing them (no tf.reduce_mean, "
            "reduction='none' for a Keras loss): fe_dist averages them over the global batch "
            "itself, so the result is the same on any number of ranks.")
    return tf.reshape(value, [-1])


@_static_helper
def metric_name(loss_key: str, name: str) -> str:
    """The record key of metric ``name`` that the loss op writing ``loss_key`` computes, e.g.
    "ce_accuracy": the same whatever other loss ops the epoch runs, and apart from a trace's
    own "accuracy"."""
    return f"{loss_key}_{name}"


def batch_free(spec: Spec) -> Spec:
    """``spec`` with the batch axis unknown, so steps whose batches differ only in size (two
    schedule phases, the ranks' unequal shares, micro-batches, an eval set's last batch) share
    one trace."""
    return {k: tf.TensorSpec([None, *s.shape[1:]], s.dtype, name=s.name)
            if s.shape.rank else s for k, s in spec.items()}


def _batch_free_first(spec: Spec, get: Callable[[Spec], T]) -> T:
    """``get`` (which compiles a step) on the batch-free spec, or, when the ops do not trace
    without a known batch size (a model that reshapes by it, say), on ``spec`` itself, which
    then has its own trace as before."""
    free = batch_free(spec)
    if _spec_key(free) == _spec_key(spec):
        return get(spec)
    try:
        return get(free)
    except Exception:  # noqa: BLE001 - the exact spec says what is wrong, if anything
        return get(spec)


def _spec_key(spec: Spec) -> tuple:
    return tuple((k, s.dtype.name, tuple(s.shape.as_list())) for k, s in sorted(spec.items()))
