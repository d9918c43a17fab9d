"""Errors a user of fe_dist can cause."""


class ConfigError(ValueError):
    """A mistake in the user's program (schedule, data, ops, models), found before training.

    The message names the thing that is wrong (epoch, op, key, model) and says how to fix it. In a
    distributed run every rank raises it together.
    """


class DistributedError(RuntimeError):
    """The ranks of a distributed run disagree (plan, data) or a collective failed."""
