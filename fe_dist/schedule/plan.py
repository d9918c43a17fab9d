"""The plan of a run: every Scheduler resolved for every epoch, as plain data.

Rank 0's plan is broadcast; every rank compares its own with it, so all ranks run the same
steps, ops and collectives in every epoch.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import numbers
import weakref
from typing import Any

from fe_dist import sharding
from fe_dist.errors import ConfigError
from fe_dist.dataset.base import STREAM_FINGERPRINT
from fe_dist.schedule.lr import warmup_length
from fe_dist.schedule.scheduler import BaseScheduler, get_signature_epochs



@dataclasses.dataclass(frozen=True)
class EpochPlan:
    """What every rank does in one epoch.

    Attributes:
        epoch: The epoch, from 0.
        global_batch: Samples per optimizer step over all ranks.
        per_rank_batch: Each rank's share of it, in rank order.
        micro_batch: ``max_rank_batch`` (the micro-batch cap), or None.
        micro_batches: Micro-batches per optimizer step, the same on every rank (the rank with
            the most samples needs that many; 1: no accumulation).
        steps: Optimizer steps.
        pipeline_train_ops, pipeline_eval_ops, network_train_ops, network_eval_ops: Signatures
            of the ops active in each mode.
        trained_models: Names of the models updated.
        optimizers: Each trained model's optimizer (type and index among its optimizers).
        evaluate: Whether the epoch ends with an eval.
        eval_batch: The global eval batch size (``batch_size={"eval": ...}``; else the train
            batch size); None without an eval split.
        traces: Signatures of the traces active (any mode).
        optimizer_settings: Per trained model, its optimizer's ``get_config()`` as JSON
            (hyperparameters, clipping, a Keras LearningRateSchedule's config; without Keras'
            auto-names, and without ``learning_rate`` when an LRSchedule sets it).
        learning_rates: Per trained model with an LRSchedule, its rate at the epoch's first and
            last step.
    """

    epoch: int
    global_batch: int
    per_rank_batch: list[int]
    micro_batch: int | None
    micro_batches: int
    steps: int
    pipeline_train_ops: list[str]
    pipeline_eval_ops: list[str]
    network_train_ops: list[str]
    network_eval_ops: list[str]
    trained_models: list[str]
    optimizers: dict[str, str]
    evaluate: bool
    # A default, so plans saved in checkpoints before per-mode batch sizes still load.
    eval_batch: int | None = None
    # A default, so plans saved in checkpoints before traces existed still load.
    traces: list[str] = dataclasses.field(default_factory=list)
    # Samples of the epoch's last, partial global batch, trained as one more step (counted in
    # ``steps``; fe_dist.fe1's drop_last=False); 0: dropped.
    last_batch: int = 0
    # Defaults, so plans saved before optimizer settings and rates were planned still load.
    optimizer_settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    learning_rates: dict[str, list[float]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Every Scheduler of a run resolved for every epoch, as plain data: rank 0's is broadcast,
    every rank compares its own with it, and checkpoints keep it (`to_dict`).

    Attributes:
        world_size: Number of ranks.
        seed: The shuffle seed.
        data: Per split: sample count and {key: (dtype, per-sample shape)}.
        models: Per model: loss key, optimizer types, variable shapes and dtypes.
        lr_warmup_steps: Per model with an LRSchedule: its warm-up length in steps.
        signature_epochs: Epochs where something scheduled changes (0 first).
        epochs: One `EpochPlan` per epoch.
        data_fingerprint: Per split, a hash over the shapes, dtypes and a fixed sample of rows
            (`Pipeline.fingerprint`; for a stream, its first samples in order): ranks on hosts
            holding different copies of the data (same sample count, other content), or reading
            a stream in other orders, disagree here before training.
        adaptive_batch: The settings of the train split's `AdaptiveBatch`, or None. Epochs it
            has not decided yet hold its latest decision; `rebatch` updates them.
        network: How gradients travel: the Network's ``gradient_compression`` and
            ``allreduce`` (every rank must run the same collectives).
    """

    world_size: int
    seed: int
    data: dict[str, Any]
    models: dict[str, Any]
    lr_warmup_steps: dict[str, int]
    signature_epochs: list[int]
    epochs: list[EpochPlan]
    # A default, so plans saved in checkpoints before fingerprints existed still load.
    data_fingerprint: dict[str, str] = dataclasses.field(default_factory=dict)
    # An AdaptiveBatch's settings (None without one): its decisions are made from reduced
    # values, so ranks agree on them by construction, but only if their settings agree.
    adaptive_batch: dict[str, Any] | None = None
    # A default, so plans saved before the allreduce settings were planned still load.
    network: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (lists, not tuples), so a plan read back from a checkpoint compares
        equal with a new one."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, plan: dict[str, Any]) -> "Plan":
        """The plan `to_dict` made."""
        return cls(**{**plan, "epochs": [EpochPlan(**e) for e in plan["epochs"]]})


def build_plan(pipeline: Any, network: Any, epochs: int, world_size: int, seed: int,
               evaluate: Any = True, max_rank_batch: int | None = None,
               traces: Any = None) -> Plan:
    """Resolve ``pipeline``, ``network``, the eval schedule ``evaluate`` (a bool or a
    Scheduler of bools) and the ``traces`` (`fe_dist.trace.runner.Traces`) for every epoch on
    ``world_size`` ranks; with ``max_rank_batch``, the number of accumulated micro-batches per
    optimizer step.

    Raises:
        ConfigError: a batch size that is missing, not a positive int, smaller than the number
            of ranks, or larger than the training set, naming the epoch and the fix; a
            learning rate that cannot be computed or is negative; a warm-up of more epochs
            than the run has.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
        raise ConfigError(f"Estimator epochs must be a positive int, got {epochs!r}.")
    n_train = pipeline.num_samples("train")
    eval_schedule, evaluate = evaluate, _as_function(evaluate)
    adaptive = pipeline.adaptive_batch()
    if adaptive is not None:
        _check_adaptive(adaptive, world_size, n_train)
    if max_rank_batch is not None and (isinstance(max_rank_batch, bool) or not isinstance(
            max_rank_batch, numbers.Integral) or max_rank_batch < 1):
        raise ConfigError(f"Estimator max_rank_batch must be a positive int (the largest "
                          f"per-rank batch that fits in memory) or None, got {max_rank_batch!r}.")
    plan_epochs = []
    for epoch in range(epochs):
        batch = _check_batch(pipeline.get_batch_size(epoch), epoch, world_size, n_train)
        plan_epochs.append({
            "epoch": epoch,
            "global_batch": batch,
            "per_rank_batch": sharding.per_rank_batch_sizes(batch, world_size),
            "micro_batch": max_rank_batch,
            "micro_batches": _micro_batches(batch, world_size, max_rank_batch, epoch),
            "steps": pipeline.train_steps(batch) + (1 if pipeline.last_batch(
                batch, world_size, max_rank_batch) else 0),
            "last_batch": pipeline.last_batch(batch, world_size, max_rank_batch),
            "pipeline_train_ops": [op.signature() for op in pipeline.get_ops(epoch, "train")],
            "pipeline_eval_ops": [op.signature() for op in pipeline.get_ops(epoch, "eval")],
            "network_train_ops": [op.signature() for op in network.get_ops(epoch, "train")],
            "network_eval_ops": [op.signature() for op in network.get_ops(epoch, "eval")],
            "trained_models": [m.model_name for m in network.trained_models(epoch)],
            "optimizers": {m.model_name: _optimizer_name(m, epoch)
                           for m in network.trained_models(epoch)},
            "evaluate": bool(evaluate(epoch)) and "eval" in pipeline.modes(),
            "eval_batch": check_eval_batch(pipeline.get_batch_size(epoch, "eval"), epoch,
                                           "eval") if "eval" in pipeline.modes() else None,
            "traces": traces.signatures(epoch) if traces else [],
            "optimizer_settings": {m.model_name: optimizer_settings(m, epoch)
                                   for m in network.trained_models(epoch)},
        })
    _check_warmups(network, epochs)
    steps = [e["steps"] for e in plan_epochs]
    for entry in plan_epochs:
        entry["learning_rates"] = _learning_rates(
            {m.model_name: m.fe_dist.lr_schedule for m in network.trained_models(entry["epoch"])
             if m.fe_dist.lr_schedule is not None}, entry["epoch"], entry["global_batch"], steps)
    plan = {
        "world_size": world_size,
        "seed": seed,
        "data": {mode: {"samples": pipeline.num_samples(mode), "keys": pipeline.data_spec(mode)}
                 for mode in pipeline.modes()},
        "models": {name: {"loss_name": m.fe_dist.loss_name,
                          "optimizers": [type(o).__name__ for o in m.fe_dist.optimizers],
                          "variables": [[list(v.shape), str(v.dtype)] for v in m.variables]}
                   for name, m in sorted(network.models.items())},
        # The warm-up of an LRSchedule with warmup_epochs spans the steps of epochs that may lie
        # beyond a short run; a resumed, longer run must not change the rates already used.
        "lr_warmup_steps": {name: warmup_length(m.fe_dist.lr_schedule,
                                                [e["steps"] for e in plan_epochs])
                            for name, m in sorted(network.models.items())
                            if m.fe_dist.lr_schedule is not None},
        "signature_epochs": get_signature_epochs(
            [*pipeline.scheduled_items(), *network.scheduled_items(),
             *[m.fe_dist.optimizer_schedule for m in network.models.values()], eval_schedule,
             *(traces.items if traces else [])],
            epochs),
        "epochs": plan_epochs,
        "data_fingerprint": {mode: pipeline.fingerprint(mode) for mode in pipeline.modes()},
        "adaptive_batch": adaptive.config() if adaptive is not None else None,
        "network": {"gradient_compression": network.gradient_compression,
                    "allreduce": network.allreduce},
    }
    # Plain JSON types (lists, not tuples), so a plan read back from a checkpoint compares equal.
    return Plan.from_dict(json.loads(json.dumps(plan)))


def rebatch(plan: Plan, pipeline: Any, epoch: int, max_rank_batch: int | None,
            lr_schedules: dict[str, Any]) -> Plan:
    """``plan`` after an `AdaptiveBatch` decided the global batch of ``epoch``: that epoch and
    the later ones (which hold the latest decision until they get their own) take
    ``pipeline``'s batch sizes now, with their shares, micro-batches and steps; warm-ups that
    span them are re-measured in steps. Epochs before ``epoch`` are left as they ran."""
    n_train = pipeline.num_samples("train")
    epochs = list(plan.epochs)
    for i in range(epoch, len(epochs)):
        batch = _check_batch(pipeline.get_batch_size(i), i, plan.world_size, n_train)
        eval_batch = epochs[i].eval_batch
        if eval_batch is not None:
            eval_batch = check_eval_batch(pipeline.get_batch_size(i, "eval"), i, "eval")
        last = pipeline.last_batch(batch, plan.world_size, max_rank_batch)
        epochs[i] = dataclasses.replace(
            epochs[i], global_batch=batch,
            per_rank_batch=sharding.per_rank_batch_sizes(batch, plan.world_size),
            micro_batches=_micro_batches(batch, plan.world_size, max_rank_batch, i),
            steps=pipeline.train_steps(batch) + (1 if last else 0), last_batch=last,
            eval_batch=eval_batch)
    signature = set(plan.signature_epochs)
    signature.update(i for i in range(max(epoch, 1), len(epochs))
                     if epochs[i].global_batch != epochs[i - 1].global_batch)
    steps = [e.steps for e in epochs]
    for i in range(epoch, len(epochs)):  # the rates of the epochs still to run (they follow B)
        epochs[i] = dataclasses.replace(epochs[i], learning_rates=_learning_rates(
            {name: lr_schedules[name] for name in epochs[i].learning_rates
             if name in lr_schedules}, i,
            epochs[i].global_batch, steps))
    warmups = {name: warmup_length(schedule, steps) for name, schedule in lr_schedules.items()}
    return dataclasses.replace(plan, epochs=epochs, signature_epochs=sorted(signature),
                               lr_warmup_steps={**plan.lr_warmup_steps, **warmups})


def _check_adaptive(adaptive: Any, world_size: int, n_train: int) -> None:
    """An `AdaptiveBatch` whose every size the data and the ranks can fill."""
    if adaptive.maximum > n_train:
        raise ConfigError(f"{adaptive!r}: maximum={adaptive.maximum} is larger than the "
                          f"{n_train} training samples, so an epoch at that batch would have no "
                          f"step. Give a maximum of at most {n_train}.")
    # One process measures the noise scale on the two halves of each batch.
    smallest = max(world_size, 2)
    if adaptive.sizes[0] < smallest:
        raise ConfigError(f"{adaptive!r}: its smallest batch {adaptive.sizes[0]} is below "
                          f"{smallest}: every one of the {world_size} rank(s) needs a sample per "
                          "step (and one process two, for its two half-batch gradients). Give a "
                          f"minimum of at least {smallest}.")


def _as_function(evaluate: Any) -> Any:
    if isinstance(evaluate, BaseScheduler):
        return evaluate.value_at
    if not isinstance(evaluate, bool):
        raise ConfigError(f"Estimator evaluate must be True, False or a Scheduler of bools, got "
                          f"{evaluate!r}.")
    return lambda epoch: evaluate


# Each optimizer's settings as first planned (see `optimizer_settings`).
_BUILT_SETTINGS: "weakref.WeakKeyDictionary[Any, dict[str, Any]]" = weakref.WeakKeyDictionary()


def optimizer_settings(model: Any, epoch: int) -> dict[str, Any]:
    """The optimizer that updates ``model`` at ``epoch``, as plain JSON: its ``get_config()``
    (a Keras LearningRateSchedule as its config) without the names Keras numbers by creation
    order (``sgd_1``), and without ``learning_rate`` when fe_dist's LRSchedule sets it each step
    (the plan holds those rates instead). Taken once per optimizer, before it first trains:
    fe_dist sets some rates as it trains (an AdaptiveBatch's lr_rule), and a plan agreed again
    later (an elastic reset, where a joining rank has fresh optimizers) must hold the same."""
    opt = model.fe_dist.optimizer_at(epoch)
    if opt not in _BUILT_SETTINGS:
        try:
            _BUILT_SETTINGS[opt] = json_safe(opt.get_config())
        except (NotImplementedError, TypeError, ValueError):  # a custom optimizer without one
            _BUILT_SETTINGS[opt] = {"get_config": f"unavailable for {type(opt).__name__}"}
    config = copy.deepcopy(_BUILT_SETTINGS[opt])
    if model.fe_dist.lr_schedule is not None:
        config.pop("learning_rate", None)
        inner = config.get("inner_optimizer")  # a LossScaleOptimizer's
        if isinstance(inner, dict) and isinstance(inner.get("config"), dict):
            inner["config"].pop("learning_rate", None)
    return config


def json_safe(value: Any) -> Any:
    """``value`` as JSON types, equal on every rank for equal values: dict keys "name" dropped
    (Keras' auto-names), tuples as lists, anything else by `fe_dist.op.op.describe`."""
    from fe_dist.op.op import describe  # ops import the schedule package

    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items() if k != "name"}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return describe(value)


def _learning_rates(schedules: dict[str, Any], epoch: int, batch: int,
                    steps: list[int]) -> dict[str, list[float]]:
    """Per model name, the rate its `LRSchedule` (in ``schedules``) gives at the first and the
    last step of ``epoch`` of a run whose epochs have ``steps`` steps."""
    first = sum(steps[:epoch])
    return {name: [_rate(name, schedule, epoch, step, batch, steps)
                   for step in (first, first + steps[epoch] - 1)]
            for name, schedule in schedules.items()}


def _rate(name: str, schedule: Any, epoch: int, step: int, batch: int,
          steps: list[int]) -> float:
    """Model ``name``'s scheduled learning rate at global ``step`` of ``epoch``."""
    try:
        rate = schedule.value(epoch, step, batch, warmup_length(schedule, steps))
    except ConfigError:
        raise
    except Exception as err:  # the user's LR function
        raise ConfigError(f"Epoch {epoch}: the learning rate of model {name!r} failed: "
                          f"{type(err).__name__}: {err}. Fix its LRSchedule.") from err
    if not rate >= 0:
        raise ConfigError(f"Epoch {epoch}: the learning rate of model {name!r} is {rate!r}; it "
                          "must be a number >= 0.")
    return float(rate)


def _check_warmups(network: Any, epochs: int) -> None:
    """Refuse a warm-up over more epochs than the run has: it would be squeezed into the run
    (reaching the full rate at its last step), and a longer resumed run could not continue it
    (its warm-up length is part of the plan)."""
    for name, model in sorted(network.models.items()):
        schedule = model.fe_dist.lr_schedule
        if schedule is not None and schedule.warmup_epochs > epochs:
            raise ConfigError(
                f"The warm-up of model {name!r}, LRSchedule(warmup_epochs="
                f"{schedule.warmup_epochs}), is longer than the run (Estimator epochs={epochs}), "
                "so it would end at the "
                f"last step instead of after epoch {schedule.warmup_epochs - 1}. Use "
                f"warmup_epochs <= {epochs}, or warmup_steps (a fixed number of steps, which "
                "a longer resumed run continues).")


def _optimizer_name(model: Any, epoch: int) -> str:
    opt = model.fe_dist.optimizer_at(epoch)
    return f"{type(opt).__name__}#{model.fe_dist.optimizers.index(opt)}"


def _check_batch(batch: Any, epoch: int, world_size: int, n_train: int) -> int:
    if batch is None:
        raise ConfigError(f"Epoch {epoch}: no batch size is scheduled (the batch_size Scheduler "
                          "has no key at or before this epoch). Give it a value at epoch 0 "
                          "(epochs count from 0 here; FastEstimator 1.x counts from 1).")
    if isinstance(batch, bool) or not isinstance(batch, numbers.Integral) or batch < 1:
        raise ConfigError(f"Epoch {epoch}: batch size {batch!r} is not a positive int. The "
                          "batch_size is the global number of samples per step, e.g. 32.")
    batch = int(batch)
    if batch < world_size:
        raise ConfigError(f"Epoch {epoch}: global batch size {batch} is smaller than the "
                          f"{world_size} ranks; every rank needs at least one sample per step. "
                          f"Use a global batch size of at least {world_size}, or fewer ranks.")
    if batch > n_train:
        raise ConfigError(f"Epoch {epoch}: global batch size {batch} is larger than the "
                          f"{n_train} training samples, so the epoch would have no step. Use a "
                          f"batch size of at most {n_train}.")
    return batch


def _micro_batches(batch: int, world_size: int, max_rank_batch: int | None, epoch: int) -> int:
    """Micro-batches per step (`sharding.micro_batch_count`): every rank splits its share into
    that many, so a rank with the smaller share must still have a sample for each."""
    count = sharding.micro_batch_count(batch, world_size, max_rank_batch)
    smallest = sharding.per_rank_batch_sizes(batch, world_size)[-1]
    if count > smallest:
        raise ConfigError(
            f"Epoch {epoch}: max_rank_batch={max_rank_batch} splits the per-rank shares of the "
            f"global batch {batch} on {world_size} ranks "
            f"({sorted(set(sharding.per_rank_batch_sizes(batch, world_size)))}) into {count} "
            f"micro-batches, more than the {smallest} samples of the smaller share. Use "
            f"max_rank_batch of at least 2, or a global batch divisible by {world_size}.")
    return count


def check_eval_batch(batch: Any, epoch: int, mode: str) -> int:
    """``batch`` as the global batch size of split ``mode`` ("eval" or "test"), else a
    ConfigError. Any positive int works: a rank whose share is empty evaluates one sample at a
    time, and a batch larger than the split makes one batch."""
    if isinstance(batch, bool) or not isinstance(batch, numbers.Integral) or batch < 1:
        raise ConfigError(f"Epoch {epoch}: the {mode} batch size {batch!r} is not a positive "
                          f"int. Give batch_size={{'train': ..., {mode!r}: 256}} a positive int "
                          "(or leave the mode out to use the train batch size).")
    return int(batch)


def first_difference(reference: Plan | dict[str, Any], local: Plan | dict[str, Any],
                     reference_label: str = "rank 0",
                     local_label: str = "this rank") -> str | None:
    """Where ``local`` departs from ``reference``, in words; None if equal.

    Args:
        reference: The plan to follow (rank 0's, or the checkpoint's).
        local: The plan to check.
        reference_label: Who holds ``reference`` in the message, e.g. "the checkpoint".
        local_label: Who holds ``local`` in the message, e.g. "this program".
    """
    reference, local = (p.to_dict() if isinstance(p, Plan) else p for p in (reference, local))

    def differs(what: str, ref_value: Any, own_value: Any) -> str:
        where, ref_value, own_value = _pinpoint(ref_value, own_value)
        return (f"{what}{where} differs: {reference_label} has {ref_value!r}, {local_label} has "
                f"{own_value!r}")

    for key in ("world_size", "seed", "data", "models", "lr_warmup_steps", "network"):
        if reference.get(key) != local.get(key):
            return differs(f"'{key}'", reference.get(key), local.get(key))
    ref_prints, own_prints = (p.get("data_fingerprint") or {} for p in (reference, local))
    for split in sorted(set(ref_prints) & set(own_prints)):  # an old checkpoint has none
        if ref_prints[split] != own_prints[split] and \
                ref_prints[split].startswith(STREAM_FINGERPRINT):
            return (f"the {split!r} stream yields other samples first (a fingerprint of its "
                    f"first samples in order: {reference_label} has {ref_prints[split]}, "
                    f"{local_label} has {own_prints[split]}). Every rank takes its chunk of "
                    "each global batch of the stream, so every rank must read it in one order: "
                    "give ds.shuffle and tf.data.Dataset.list_files a seed (seed=..., the same "
                    "on every rank), do not shard or order it by rank, and make every host "
                    "hold the same files")
        if ref_prints[split] != own_prints[split]:
            return (f"the {split!r} data differs: same sample count, keys, dtypes and shapes, "
                    f"but other content (data fingerprint: {reference_label} has "
                    f"{ref_prints[split]}, {local_label} has {own_prints[split]}). A host holds a "
                    "different or stale copy of the data: make every host read the same files "
                    "(compare their checksums, e.g. sha256sum, on each host)")
    if len(reference["epochs"]) != len(local["epochs"]):
        return differs("the number of epochs", len(reference["epochs"]), len(local["epochs"]))
    for ref_epoch, own_epoch in zip(reference["epochs"], local["epochs"]):
        for item, ref_value in ref_epoch.items():
            if own_epoch.get(item) != ref_value:
                return differs(f"epoch {ref_epoch['epoch']}, '{item}'", ref_value,
                               own_epoch.get(item))
    # Last: a changed epoch also moves the signature epochs, and its own message says more.
    if reference.get("signature_epochs") != local.get("signature_epochs"):
        return differs("'signature_epochs'", reference.get("signature_epochs"),
                       local.get("signature_epochs"))
    return None


def _pinpoint(ref: Any, own: Any, context: int = 70) -> tuple[str, Any, Any]:
    """Narrow two differing values to where they differ: the first differing item of two lists
    of one length (an op or trace among the epoch's), then, for two signatures, the text from
    the argument where they part (``BestModelSaver(…save_dir='/tmp/a'…)``), not the whole
    list; in dicts with the same keys, the first key whose values differ. Returns (the item index, or "", the two narrowed values)."""
    where = ""
    while True:
        if isinstance(ref, list) and isinstance(own, list) and len(ref) == len(own) and ref:
            i = next(i for i, (a, b) in enumerate(zip(ref, own)) if a != b)
            where, ref, own = f"{where}[{i}]", ref[i], own[i]
        elif isinstance(ref, dict) and isinstance(own, dict) and ref.keys() == own.keys():
            # A setting among a dict's (an optimizer's momentum): its key, not the whole dict.
            key = next(k for k in ref if ref[k] != own[k])
            where, ref, own = f"{where}[{key!r}]", ref[key], own[key]
        else:
            break
    if isinstance(ref, str) and isinstance(own, str) and len(ref) + len(own) > 2 * context:
        start = next((i for i, (a, b) in enumerate(zip(ref, own)) if a != b),
                     min(len(ref), len(own)))
        cut = max(ref.rfind(", ", 0, start) + 2, ref.rfind("(", 0, start) + 1, 0)
        name = ref.split("(", 1)[0] + "(…" if cut > 0 and "(" in ref else ""

        def part(text: str) -> str:
            tail = text[cut:]
            return name + (tail if len(tail) <= context else tail[:context] + "…")
        return where, part(ref), part(own)
    return where, ref, own
