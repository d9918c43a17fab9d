"""Read what a backend executed, rather than fe_dist's own counters: Horovod's timeline (a
Chrome-trace JSON of every collective Horovod ran, written by rank 0 when HOROVOD_TIMELINE names
a file) and the MPI backend's call log (`MPIContext.allreduce_log`, in the probe's report).

Horovod's timeline names each collective by its tensor: a grouped allreduce named ``fe.grad.a``
of 4 tensors appears as 4 allreduces, ``fe.grad.a_1of4`` ... ``fe.grad.a_4of4``, each ending
with its dtype and shape. Collectives issued eagerly carry the op type as their name instead
of the name fe_dist passes: ``HorovodBroadcast`` (the start-state broadcast of each variable,
and the object broadcasts of the plan and records, two each) and ``HorovodAllgather`` (the
object allgathers of `Context.agree` and the per-epoch reports, two each).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np

COLLECTIVES = ("ALLREDUCE", "ALLGATHER", "BROADCAST", "ALLTOALL", "REDUCESCATTER")
# A gradient allreduce: fe.grad.<model> (grouped) or fe.grad.<model>.<i> (per_tensor), as a
# part "_<k>of<n>" of Horovod's grouped allreduce.
GRADIENT = re.compile(r"^fe\.grad\.(?P<model>[^.]+)(\.\d+)?_\d+of\d+$")
# fe_dist's non-gradient collectives of the probe, as the timeline names them (see above).
KNOWN_OTHERS = {("HorovodBroadcast", "BROADCAST"), ("HorovodAllgather", "ALLGATHER")}


@dataclasses.dataclass
class Collective:
    """One collective from a Horovod timeline."""

    start: int  # microseconds
    tensor: str
    kind: str  # ALLREDUCE, ALLGATHER, ...
    dtype: str | None
    shape: list[int] | None


def horovod_collectives(path: Path) -> list[Collective]:
    """Every collective in the Horovod timeline at ``path``, in start order."""
    text = path.read_text().rstrip().rstrip(",")
    events = json.loads(text if text.endswith("]") else text + "]")  # cut short at exit
    tensors = {e["pid"]: e["args"].get("name") for e in events
               if e.get("ph") == "M" and e.get("name") == "process_name"}
    stacks: dict[int, list[dict]] = {}
    found = []
    for event in events:  # B/E pairs nest per tensor (pid); the outermost E carries the shape
        if event.get("ph") == "B":
            stacks.setdefault(event["pid"], []).append(event)
        elif event.get("ph") == "E":
            begin = stacks[event["pid"]].pop()
            if begin["name"] in COLLECTIVES:
                args = event.get("args", {})
                shape = json.loads(args["shape"]) if "shape" in args else None
                found.append(Collective(begin["ts"], tensors[event["pid"]], begin["name"],
                                        args.get("dtype"), shape))
    return sorted(found, key=lambda c: c.start)


def assert_timeline_reduces_only_active_models(timeline: Path, report: dict) -> None:
    """Horovod reduced, in each epoch, the gradients of exactly the epoch's trained model, once
    per optimizer step, as float32 of the model's variable shapes; and ran no other collective
    than fe_dist's known non-gradient ones."""
    collectives = horovod_collectives(timeline)
    reduced, others = [], set()
    for c in collectives:
        match = GRADIENT.match(c.tensor)
        if match and c.kind == "ALLREDUCE":
            reduced.append((match["model"], c.dtype, c.shape))
        else:
            others.add((c.tensor, c.kind))
    assert others <= KNOWN_OTHERS, others - KNOWN_OTHERS
    expected = []
    for record in report["summary"]["records"]:
        (active,) = record["trained_models"]
        shapes = report["trainable_shapes"][active]
        expected += [(active, "float32", shape) for shape in shapes] * record["steps"]
    # Sorted within a model's run of steps: the tensors of one step may start in any order.
    assert _runs(reduced) == _runs(expected)


def _runs(items: list[tuple]) -> list[tuple[str, list]]:
    """Consecutive items of the same model, as (model, sorted items)."""
    runs: list[tuple[str, list]] = []
    for item in items:
        if not runs or runs[-1][0] != item[0]:
            runs.append((item[0], []))
        runs[-1][1].append(item)
    return [(model, sorted(group, key=repr)) for model, group in runs]


def assert_mpi_log_reduces_only_active_models(report: dict, dtype: str = "float32") -> None:
    """The MPI backend ran one MPI_Allreduce per optimizer step, in step order, of exactly the
    epoch's trained model's parameters, in ``dtype``, and no other allreduce."""
    itemsize = np.dtype(dtype).itemsize
    expected = []
    for record in report["summary"]["records"]:
        (active,) = record["trained_models"]
        n = sum(int(np.prod(shape)) for shape in report["trainable_shapes"][active])
        expected += [[dtype, n, n * itemsize]] * record["steps"]
    assert report["allreduce_log"] == expected
