"""`Network`: models and ops, and the compiled train and eval steps of each epoch."""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Sequence

import keras
import tensorflow as tf

from fe_dist.build import optimizer_at
from fe_dist.distributed import ALLREDUCE_MODES, COMPRESSIONS, Context, get_context
from fe_dist.errors import ConfigError
from fe_dist.op.op import Op, check_ops, run_ops
from fe_dist.op.tensorop.loss import LossOp
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.schedule import BaseScheduler, get_current_items

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
            raise ConfigError(f"Network: gradient_compression must be one of {COMPRESSIONS}, got "
                              f"{gradient_compression!r}.")
        if allreduce not in ALLREDUCE_MODES:
            raise ConfigError(f"Network: allreduce must be one of {ALLREDUCE_MODES}, got "
                              f"{allreduce!r}.")
        self.gradient_compression = gradient_compression
        self.allreduce = allreduce
        self.ops = check_ops(ops, "Network")
        self.models: dict[str, keras.Model] = {}
        for item in self.ops:
            values = item.get_all_values() if isinstance(item, BaseScheduler) else [item]
            for op in values:
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
        self.trace_counts: Counter[tuple] = Counter()

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

    # -- compiled steps ---------------------------------------------------------------------------
    def get_train_step(self, epoch: int, spec: Spec,
                       ctx: Context | None = None) -> Callable[[dict, tf.Tensor], dict]:
        """The compiled train step for ``epoch``'s ops on batches of ``spec``.

        Called as ``step(batch, global_batch_size)``; returns this rank's loss sums. Steps are
        cached by (ops, models, input spec): one trace per distinct signature for the whole run.
        """
        ctx = ctx or get_context()
        ops, models, optimizers, key = self._train_setup(epoch, "train", spec)
        if key not in self._steps:
            self._steps[key] = self._compile_train(key, ops, models, optimizers, spec, ctx)
        return self._steps[key]

    def get_accumulate_step(self, epoch: int, spec: Spec) -> Callable[[dict, tf.Tensor], dict]:
        """For gradient accumulation: ``step(micro_batch, global_batch_size)`` adds the
        micro-batch's gradients to each trained model's accumulators and returns its loss sums.
        No collective runs here; `get_apply_step` reduces once per optimizer step."""
        ops, models, optimizers, key = self._train_setup(epoch, "accumulate", spec)
        if key not in self._steps:
            accumulators = [self._accumulators(m) for m in models]

            def accumulate(batch: dict[str, tf.Tensor], global_batch: tf.Tensor) -> dict:
                self.trace_counts[key] += 1
                losses, grads = _losses_and_grads(ops, models, optimizers, batch, global_batch)
                for accs, model_grads in zip(accumulators, grads):
                    for acc, grad in zip(accs, model_grads):
                        if grad is not None:
                            acc.assign_add(tf.convert_to_tensor(grad))
                return losses

            self._steps[key] = tf.function(
                accumulate, input_signature=(spec, tf.TensorSpec([], tf.float32)))
        return self._steps[key]

    def get_apply_step(self, epoch: int, ctx: Context | None = None) -> Callable[[], None]:
        """For gradient accumulation: allreduce the accumulated gradients of each trained model
        (one grouped allreduce per model, as without accumulation), apply them, reset."""
        ctx = ctx or get_context()
        _, models, optimizers, key = self._train_setup(epoch, "apply", {})
        if key not in self._steps:
            accumulators = [self._accumulators(m) for m in models]
            compression = self.gradient_compression

            def apply() -> tf.Tensor:
                self.trace_counts[key] += 1
                for model, opt, accs in zip(models, optimizers, accumulators):
                    variables = model.trainable_variables
                    grads = ctx.allreduce_gradients([a.read_value() for a in accs], variables,
                                                    compression=compression,
                                                    name=f"fe.grad.{model.model_name}",
                                                    mode=self.allreduce)
                    opt.apply_gradients(zip(grads, variables))
                    for acc in accs:
                        acc.assign(tf.zeros_like(acc))
                return tf.constant(0)

            self._steps[key] = tf.function(apply, input_signature=())
        return self._steps[key]

    def _train_setup(self, epoch: int, kind: str, spec: Spec) -> tuple:
        ops = self.get_ops(epoch, "train")
        models = self.trained_models(epoch)
        optimizers = [optimizer_at(m, epoch) for m in models]
        key = (kind, tuple(op.signature() for op in ops) if kind != "apply" else (),
               tuple((m.model_name, m.fe_optimizers.index(o)) for m, o in zip(models, optimizers)),
               _spec_key(spec))
        return ops, models, optimizers, key

    def _accumulators(self, model: keras.Model) -> list[tf.Variable]:
        """Gradient sums of ``model``, made eagerly once (so no step's first trace creates
        variables)."""
        if model.model_name not in self._accumulated:
            with tf.init_scope():
                self._accumulated[model.model_name] = [
                    tf.Variable(tf.zeros_like(v), trainable=False)
                    for v in model.trainable_variables]
        return self._accumulated[model.model_name]

    def get_eval_step(self, epoch: int, spec: Spec) -> Callable[[dict], dict]:
        """The compiled eval step for ``epoch``: loss and metric sums plus the sample count."""
        ops = self.get_ops(epoch, "eval")
        key = ("eval", tuple(op.signature() for op in ops), (), _spec_key(spec))
        if key not in self._steps:
            self._steps[key] = self._compile_eval(key, ops, spec)
        return self._steps[key]

    def _compile_train(self, key: tuple, ops: list[Op], models: list[keras.Model],
                       optimizers: list[keras.optimizers.Optimizer], spec: Spec,
                       ctx: Context) -> Callable:
        compression = self.gradient_compression

        def train_step(batch: dict[str, tf.Tensor], global_batch: tf.Tensor) -> dict:
            self.trace_counts[key] += 1  # Python runs only while tracing
            losses, grads = _losses_and_grads(ops, models, optimizers, batch, global_batch)
            for model, opt, model_grads in zip(models, optimizers, grads):
                variables = model.trainable_variables
                reduced = ctx.allreduce_gradients(model_grads, variables, compression=compression,
                                                  name=f"fe.grad.{model.model_name}",
                                                  mode=self.allreduce)
                opt.apply_gradients(zip(reduced, variables))
            return losses

        signature = (spec, tf.TensorSpec([], tf.float32))
        return tf.function(train_step, input_signature=signature)

    def _compile_eval(self, key: tuple, ops: list[Op], spec: Spec) -> Callable:
        loss_ops = [op for op in ops if isinstance(op, LossOp)]

        def eval_step(batch: dict[str, tf.Tensor]) -> dict:
            self.trace_counts[key] += 1
            store = run_ops(ops, dict(batch), {"mode": "eval"})
            sums = {"count": tf.cast(tf.shape(next(iter(batch.values())))[0], tf.float32)}
            for op in loss_ops:
                loss_key = op.outputs[0]
                sums[loss_key] = tf.reduce_sum(store[loss_key])
                y_true, y_pred = (store[k] for k in op.inputs)
                for name, values in op.per_sample_metrics(y_true, y_pred).items():
                    sums[name if len(loss_ops) == 1 else f"{loss_key}_{name}"] = \
                        tf.reduce_sum(values)
            return sums

        return tf.function(eval_step, input_signature=(spec,))


def _losses_and_grads(ops: list[Op], models: list[keras.Model],
                      optimizers: list[keras.optimizers.Optimizer], batch: dict[str, tf.Tensor],
                      global_batch: tf.Tensor) -> tuple[dict, list[list]]:
    """This rank's loss sums, and each model's gradients of its loss over the global batch."""
    store = dict(batch)
    with tf.GradientTape(persistent=len(models) > 1) as tape:
        run_ops(ops, store, {"mode": "train"})
        # Sum of this rank's per-sample losses over the *global* batch: summing the gradients
        # over ranks (and micro-batches) then gives exactly the single-process gradient.
        losses = {k: tf.reduce_sum(tf.cast(store[k], tf.float32))
                  for k in sorted({m.loss_name for m in models})}
        # scale_loss is the identity except under a mixed-precision loss-scale optimizer.
        scaled = [opt.scale_loss(losses[m.loss_name] / global_batch)
                  for m, opt in zip(models, optimizers)]
    grads = [tape.gradient(loss, m.trainable_variables) for m, loss in zip(models, scaled)]
    return losses, grads


def _spec_key(spec: Spec) -> tuple:
    return tuple((k, s.dtype.name, tuple(s.shape.as_list())) for k, s in sorted(spec.items()))
