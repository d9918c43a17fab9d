"""Schedules: values that change by epoch, and the plain-data plan of a whole run."""

from fe_dist.schedule.plan import Plan, build_plan, first_difference
from fe_dist.schedule.scheduler import (
    Scheduler,
    get_current_items,
    get_signature_epochs,
    resolve,
)

__all__ = ["Plan", "Scheduler", "build_plan", "first_difference", "get_current_items",
           "get_signature_epochs", "resolve"]
