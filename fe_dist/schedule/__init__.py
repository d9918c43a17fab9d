"""Schedules: values that change by epoch, and the plain-data plan of a whole run."""

from fe_dist.schedule.scheduler import (
    BaseScheduler,
    EpochScheduler,
    RepeatScheduler,
    Scheduler,
    get_current_items,
    get_signature_epochs,
    resolve,
)
from fe_dist.schedule.lr import LRSchedule, warmup_length
from fe_dist.schedule.plan import EpochPlan, Plan, build_plan, first_difference

__all__ = ["BaseScheduler", "EpochScheduler", "EpochPlan", "LRSchedule", "Plan", "RepeatScheduler", "Scheduler", "build_plan",
           "first_difference", "get_current_items", "get_signature_epochs", "resolve",
           "warmup_length"]
