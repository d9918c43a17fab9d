"""Learning rates: each trained model's scheduled rate (`fe.build(lr=...)` or an LRScheduler
trace), set on its optimizer step by step."""

from __future__ import annotations

from typing import Callable

from fe_dist.build import optimizer_at
from fe_dist.network import Network
from fe_dist.schedule import EpochPlan, Plan, warmup_length


def lr_setter(plan: Plan, network: Network, entry: EpochPlan, factor: float = 1.0,
              base_rates: dict[int, float] | None = None) -> Callable[[int], dict[str, float]]:
    """A function that sets each trained model's scheduled learning rate for step s of the
    epoch ``entry`` plans and returns the rates it set, by model name.

    ``factor`` (an `AdaptiveBatch`'s ``lr_rule``) multiplies every scheduled rate, and the
    optimizers' own rates given in ``base_rates`` (by ``id`` of the optimizer) for models
    without a schedule."""
    epoch, batch = entry.epoch, entry.global_batch
    steps = [e.steps for e in plan.epochs]
    first = sum(steps[:epoch])  # the run's optimizer steps before this epoch
    scheduled = [(m, optimizer_at(m, epoch), m.fe_dist.lr_schedule,
                  warmup_length(m.fe_dist.lr_schedule, steps))
                 for m in network.trained_models(epoch)
                 if m.fe_dist.lr_schedule is not None]
    own = [(m, opt, base_rates[id(opt)] * factor)
           for m in network.trained_models(epoch) if m.fe_dist.lr_schedule is None
           for opt in [optimizer_at(m, epoch)] if base_rates and id(opt) in base_rates]

    rates: dict[str, float] = {}

    def set_lr(step: int) -> dict[str, float]:
        for model, opt, schedule, warmup in scheduled:
            rate = schedule.value(epoch, first + step, batch, warmup) * factor
            if rates.get(model.model_name) != rate:  # most schedules change by epoch only
                rates[model.model_name] = rate
                opt.learning_rate = rate
        for model, opt, rate in own:
            if rates.get(model.model_name) != rate:
                rates[model.model_name] = rate
                opt.learning_rate = rate
        return dict(rates)

    return set_lr
