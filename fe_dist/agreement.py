"""The ranks' agreement before and during a run: a phase that fails on any rank raises on every
rank (`together`), every rank adopts rank 0's plan or all raise (`agree_on_plan`), and a failure
on one rank alone ends the whole job (`run_on_every_rank`) rather than leave the others waiting.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any, Callable, TypeVar

from fe_dist.distributed import Context, get_context, raised_on_every_rank
from fe_dist.distributed.context import host_label
from fe_dist.errors import DistributedError
from fe_dist.network import Network
from fe_dist.pipeline import Pipeline
from fe_dist.schedule import BaseScheduler, Plan, build_plan, first_difference
from fe_dist.trace.runner import Traces

T = TypeVar("T")


def run_on_every_rank(work: Callable[[Context], T]) -> T:
    """Run ``work`` (fit or test) on this rank with the stall watchdog on, and end the whole
    job when it fails on this rank alone."""
    ctx = get_context()
    ctx.watch(True)
    try:
        return work(ctx)
    except Exception as err:
        # An error on this rank alone (e.g. in a train step) leaves the other ranks waiting
        # in a collective: end the job now. Errors every rank raised together (ctx.agree:
        # checks, checkpoint writes, on_epoch_end) propagate as themselves.
        if ctx.size > 1 and not raised_on_every_rank(err):
            ctx.abort(f"fe_dist: rank {ctx.rank} failed: {traceback.format_exc()}"
                      f"fe_dist: ending the job (all {ctx.size} ranks).")
        if ctx.size > 1:
            # Said now: once one rank's process exits, the launcher may end the others
            # before Python prints their tracebacks.
            sys.stderr.write(f"fe_dist: rank {ctx.rank}: {type(err).__name__}: {err}\n")
            sys.stderr.flush()
        raise
    finally:
        ctx.watch(False)


def together(ctx: Context, what: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` on every rank; if it fails on any rank, raise on all of them."""
    error, result = None, None
    try:
        result = fn()
    except Exception as err:  # noqa: BLE001 - re-raised on every rank by ctx.agree
        error = err
    ctx.agree(error, what)
    return result


def agree_on_plan(ctx: Context, pipeline: Pipeline, network: Network, epochs: int, seed: int,
                  evaluate: bool | BaseScheduler, max_rank_batch: int | None,
                  traces: Traces) -> Plan:
    """Rank 0's plan of the run, on every rank.

    Every rank builds its own plan and compares it with rank 0's, so a rank running another
    program (other schedules, data or models) is found before any step.

    Raises:
        DistributedError: On every rank, naming the first difference, when a rank's plan
            differs from rank 0's; or the error building the plan raised on any rank.
    """
    local = together(ctx, "schedule", lambda: build_plan(
        pipeline, network, epochs, ctx.size, seed, evaluate, max_rank_batch, traces))
    reference: Any = ctx.broadcast_object(local if ctx.is_chief else None, name="fe.plan")
    diff = first_difference(reference, local)
    error = None if diff is None else DistributedError(
        f"The ranks built different programs: {diff}. Every rank must run the same program "
        f"with the same schedules, data and models. (This rank: {ctx.rank}, on host "
        f"{host_label()}.)")
    ctx.agree(error, "plan")
    return reference
