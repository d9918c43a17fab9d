"""Schedules: values that change by epoch, and the plain-data plan of a whole run."""

from fe_dist.schedule.scheduler import (
    BaseScheduler,
    EpochScheduler,
    RepeatScheduler,
    Scheduler,
    all_values,
    check_numbering,
    get_current_items,
    get_signature_epochs,
    resolve,
    scheduled_list,
)
from fe_dist.schedule.adaptive import AdaptiveBatch
from fe_dist.schedule.lr import LRSchedule, warmup_length
from fe_dist.schedule.plan import EpochPlan, Plan, build_plan, first_difference

__all__ = ["AdaptiveBatch", "BaseScheduler", "EpochPlan", "EpochScheduler", "LRSchedule", "Plan",
           "RepeatScheduler", "Scheduler", "all_values", "build_plan", "check_numbering",
           "first_difference", "get_current_items", "get_signature_epochs", "resolve",
           "scheduled_list", "warmup_length"]
