"""Helper models: Keras models that a user op holds and calls itself, outside any ModelOp (a
teacher for distillation, a frozen feature extractor, an embedding model).

fe_dist never trains them, but it must still keep them equal on every rank and in checkpoints:
built without a fixed seed, each rank would hold its own random weights and silently compute
something different. So they are found in the ops (attributes of op instances and the arguments
the op was constructed with, also inside lists, tuples, dicts and nested ops), broadcast from
rank 0 with the start state, and saved in and restored from checkpoints like the models of
ModelOps, but without optimizer.

Two uses cannot work and are refused before training with a ConfigError naming the op:

- a model made by ``fe.build`` that no ModelOp runs: fe.build gives it an optimizer and a loss
  key, i.e. the program means to train it, but nothing would (treating it as frozen would
  silently train something else than what was written);
- a helper model whose variables the compiled steps write (BatchNormalization called with
  ``training=True``, an optimizer the op applies itself): each rank would update its copy from
  its own shard and the copies would drift apart, with no collective to bring them together.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Iterator

import keras
import tensorflow as tf

from fe_dist.errors import ConfigError, DistributedError
from fe_dist.op.op import Op
from fe_dist.schedule import BaseScheduler

# How deep to look into an op's attributes (lists of dicts of nested ops are as far as ops go).
_MAX_DEPTH = 4
# Ops that write a resource variable. Reads (ReadVariableOp, ResourceGather, ...) are fine.
_WRITE_PREFIXES = ("Assign", "ResourceApply", "ResourceSparseApply", "ResourceScatter",
                   "ResourceStridedSliceAssign")


@dataclasses.dataclass(frozen=True)
class HelperModel:
    """A model held by an op outside any ModelOp.

    Attributes:
        name: Stable on every rank: the ``model_name`` fe.build gave it, or where it is held,
            e.g. ``network.ops[1].teacher`` (``network.ops[0]<1>`` for the second op of a
            Scheduler at ops[0]).
        model: The Keras model.
        op: The op that holds it (for messages).
    """

    name: str
    model: keras.Model
    op: Op

    @property
    def variables(self) -> list[Any]:
        """Every variable of the model (no optimizer: fe_dist does not train it)."""
        return list(self.model.variables)


def find(pipeline: Any, network: Any) -> list[HelperModel]:
    """The models held by ``pipeline``'s and ``network``'s ops that no ModelOp runs, each once,
    in the same order on every rank.

    Raises:
        ConfigError: A model made by fe.build that no ModelOp runs (see the module docstring).
    """
    known = {id(m) for m in network.models.values()}
    found: dict[int, HelperModel] = {}
    for owner, items in (("pipeline", pipeline.ops), ("network", network.ops)):
        for where, op, model in _held_models(owner, items):
            if id(model) in known or id(model) in found:
                continue
            name = getattr(model, "model_name", None)
            if name is not None and getattr(model, "fe_dist", None) is not None:
                raise ConfigError(
                    f"{where} (op {op}) holds model {name!r}, made by fe.build (with an "
                    f"optimizer, training on loss {model.fe_dist.loss_name!r}), but no ModelOp "
                    "runs it, so nothing would ever train it. To train it, run it through "
                    f"ModelOp(model={name}, ...); to use it unchanged, run it through ModelOp(..., "
                    "trainable=False) or make it without fe.build (a plain keras.Model held by "
                    "your op is broadcast from rank 0 and checkpointed, never trained).")
            found[id(model)] = HelperModel(name=where, model=model, op=op)
    return list(found.values())


def _held_models(owner: str, items: Iterable[Any]) -> Iterator[tuple[str, Op, keras.Model]]:
    for i, item in enumerate(items):
        if isinstance(item, BaseScheduler):
            values = item.run_values()
            ops = [(f"{owner}.ops[{i}]<{j}>", op) for j, op in enumerate(values)]
        else:
            ops = [(f"{owner}.ops[{i}]", item)]
        for where, op in ops:
            for path, model in _models_in(op, where, 0, set()):
                yield path, op, model


def _models_in(value: Any, path: str, depth: int, seen: set[int]) -> Iterator[tuple[str, Any]]:
    if isinstance(value, keras.Model):
        yield path, value
        return
    if depth > _MAX_DEPTH or id(value) in seen:
        return
    if isinstance(value, Op):
        seen.add(id(value))
        # The op's attributes first, then constructor arguments not kept under their own name.
        fields = {k: v for k, v in vars(value).items() if k != "_init_args"}
        for k, v in getattr(value, "_init_args", {}).items():
            fields.setdefault(k, v)
        for k, v in fields.items():
            yield from _models_in(v, f"{path}.{k}", depth + 1, seen)
    elif isinstance(value, (list, tuple)):
        for k, v in enumerate(value):
            yield from _models_in(v, f"{path}[{k}]", depth + 1, seen)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _models_in(v, f"{path}[{k!r}]", depth + 1, seen)
    elif isinstance(value, BaseScheduler):
        for k, v in enumerate(value.run_values()):
            yield from _models_in(v, f"{path}<{k}>", depth + 1, seen)


def check_not_updated(helpers: list[HelperModel], graphs: Iterable[tf.Graph]) -> None:
    """Raise if a compiled step writes a variable of a helper model.

    Random-number state (Dropout's seed generator) may change: it is not a weight.

    Args:
        helpers: The helper models (`find`).
        graphs: The graphs of every compiled train and eval step.

    Raises:
        ConfigError: Naming the op, the model and the variable, and the fix.
    """
    owners: dict[int, tuple[HelperModel, Any]] = {}
    for helper in helpers:
        for var in helper.variables:
            if "seed_generator" not in var.path:
                owners[id(var.handle)] = (helper, var)  # what compiled steps capture
    if not owners:
        return
    for graph in graphs:
        inside = {internal.name: owners[id(external)] for external, internal in graph.captures
                  if id(external) in owners}
        for graph_op in graph.get_operations():
            if not graph_op.type.startswith(_WRITE_PREFIXES) or not graph_op.inputs:
                continue
            hit = inside.get(graph_op.inputs[0].name)
            if hit is not None:
                helper, var = hit
                raise ConfigError(
                    f"{helper.name} (op {helper.op}) is a model that no ModelOp runs, and the "
                    f"op updates its variable {var.path!r} itself ({graph_op.type}: e.g. "
                    "BatchNormalization called with training=True, or an optimizer the op "
                    "applies). Each rank would update its copy from its own shard and the copies "
                    "would drift apart. Call the model with training=False, or let fe_dist train "
                    "it: fe.build it and run it through a ModelOp.")


def broadcast(ctx: Any, helpers: list[HelperModel]) -> None:
    """Give every rank rank 0's weights of ``helpers`` (part of the start state).

    The ranks first agree that they hold the same helper models with the same variable shapes:
    a rank with other variables would wait forever in a broadcast the others never join.

    Raises:
        DistributedError: On every rank, when the ranks hold different helper models.
    """
    if ctx.size == 1:
        return
    layout = [(h.name, [tuple(v.shape) for v in h.variables]) for h in helpers]
    reference = ctx.broadcast_object(layout if ctx.is_chief else None, name="fe.helpers")
    error = None
    if reference != layout:
        error = DistributedError(
            f"The ranks hold different models in their ops: rank 0 has {_describe(reference)}, "
            f"rank {ctx.rank} has {_describe(layout)}. Build the same models on every rank "
            "(the weights may differ: rank 0's are broadcast).")
    ctx.agree(error, "helper_models")
    for k, helper in enumerate(helpers):
        variables = helper.variables
        ctx.broadcast_variables(variables, [f"fe.init.helper{k}.{i}"
                                            for i in range(len(variables))])


def _describe(layout: list[tuple[str, list[tuple]]]) -> str:
    return ", ".join(f"{name} ({len(shapes)} variables)" for name, shapes in layout) or "none"
