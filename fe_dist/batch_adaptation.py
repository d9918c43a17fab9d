"""An `AdaptiveBatch` in a run: the noise-scale measurement it needs, its decision at each
epoch end, and the plan and learning rates that follow.

The decisions live in the records (each record's ``global_batch`` and ``noise_scale``), so
whatever restores the records (a checkpoint resume on any number of ranks, an elastic rollback,
a rank joining) restores the decisions with them (`follow`); the moving averages of the noise
scale travel in the run state (`fe_dist.run_state.RunState.noise`).
"""

from __future__ import annotations

from typing import Any

import keras

from fe_dist.errors import ConfigError
from fe_dist.network import Network
from fe_dist.noise_scale import NoiseScale
from fe_dist.schedule import AdaptiveBatch, Plan
from fe_dist.schedule.plan import rebatch
from fe_dist.summary import EpochRecord


class BatchAdaptation:
    """The run side of ``adaptive``: sets ``network.noise`` so the train steps measure.

    Args:
        adaptive: The Pipeline's `AdaptiveBatch`.
        network: The Network whose trained models it measures.
    """

    def __init__(self, adaptive: AdaptiveBatch, network: Network) -> None:
        self.adaptive = adaptive
        self.noise = network.noise = NoiseScale(adaptive.smoothing)
        # The optimizers' own rates, which lr_rule multiplies for models without a schedule.
        self.base_rates: dict[int, float] = {}
        if adaptive.lr_rule is None:
            return
        for name, model in sorted(network.models.items()):
            schedule = model.fe_dist.lr_schedule
            if schedule is not None and schedule.reference_batch is not None:
                raise ConfigError(
                    f"Model {name!r}: its LRSchedule scales with the batch "
                    f"(reference_batch={schedule.reference_batch}) and the AdaptiveBatch's "
                    f"lr_rule={adaptive.lr_rule!r} does too. Drop one: LRSchedule(..., "
                    "reference_batch=None), or AdaptiveBatch(..., lr_rule=None).")
            for opt in model.fe_dist.optimizers:
                if isinstance(opt.learning_rate, keras.optimizers.schedules.LearningRateSchedule) \
                        or callable(getattr(opt, "_learning_rate", None)):
                    raise ConfigError(
                        f"Model {name!r}: its optimizer has a Keras LearningRateSchedule, which "
                        f"the AdaptiveBatch's lr_rule={adaptive.lr_rule!r} cannot scale. Give "
                        "the optimizer a float rate (and fe.build(lr=LRSchedule(...)) for a "
                        "schedule), or lr_rule=None.")
                self.base_rates[id(opt)] = float(opt.learning_rate)

    def reset(self) -> None:
        """Forget every decision and measurement: a new run starts at the initial batch."""
        self.adaptive.take_decisions({})
        self.noise.set_state([0.0, 0.0, 0.0, 0])

    def end_epoch(self, record: EpochRecord, plan: Plan, pipeline: Any,
                  max_rank_batch: int | None, network: Network) -> Plan:
        """Put the noise scale measured by the end of ``record``'s epoch in the record, decide
        the next epoch's batch, and return the plan with it."""
        record.noise_scale = self.noise.read().noise_scale
        self.adaptive.decide(record.epoch, record.noise_scale)
        return rebatch(plan, pipeline, record.epoch + 1, max_rank_batch, _schedules(network))

    def follow(self, records: list[EpochRecord], plan: Plan, pipeline: Any,
               max_rank_batch: int | None, network: Network) -> Plan:
        """Take the decisions ``records`` hold (and the one their last noise scale makes for
        the next epoch); return ``plan`` with them."""
        self.adaptive.take_decisions({r.epoch: r.global_batch for r in records if r.epoch > 0})
        if records:
            for record in records[:-1]:
                self.adaptive.noise_scales[record.epoch] = record.noise_scale
            self.adaptive.decide(records[-1].epoch, records[-1].noise_scale)
        return rebatch(plan, pipeline, 1, max_rank_batch, _schedules(network))

    def lr_factor(self, epoch: int) -> float:
        """What ``lr_rule`` multiplies the learning rates of ``epoch`` by."""
        return self.adaptive.lr_factor(epoch)


def _schedules(network: Network) -> dict[str, Any]:
    return {name: m.fe_dist.lr_schedule for name, m in sorted(network.models.items())
            if m.fe_dist.lr_schedule is not None}
