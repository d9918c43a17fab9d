"""What one benchmark rank reports and what a launch of all its ranks adds up to.

Every rank's `RankResult` is gathered to rank 0, which prints them all as JSON on its stdout, in
``FE_BENCH_RESULT`` lines; the command that launched the job (or ``fe-bench report`` on a job's
log, for jobs launched under another launcher) reads those lines and merges them into a
`RunResult`. Results travel through the launcher's output, so nothing needs a file system shared
between hosts; one writer, because mpirun interleaves several ranks' output within lines.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from typing import Any, Iterable

MARKER = "FE_BENCH_RESULT "
CHUNK = 1000
VARIANTS = ("fe_dist", "reference", "comm_free")


@dataclasses.dataclass
class PhaseTiming:
    """One schedule phase on one rank.

    Attributes:
        schedule: "fixed" or "progressive".
        phase: Index of the phase in its schedule.
        image_size: Pixels a side.
        global_batch: Samples per step over all ranks.
        rank_batch: This rank's share.
        step_seconds: Wall time of each timed step (warm-up steps left out), the step's result
            fetched each time (so a step's time is its own, as the reference loop's).
        allreduce_bytes_per_step: Gradient bytes this rank allreduced per step (0: none).
        allreduce_seconds: Seconds of one allreduce of this phase's gradients alone (the same
            collective as a step's, timed apart; None: not measured, e.g. no allreduce).
    """

    schedule: str
    phase: int
    image_size: int
    global_batch: int
    rank_batch: int
    step_seconds: list[float]
    allreduce_bytes_per_step: float = 0.0
    allreduce_seconds: float | None = None


@dataclasses.dataclass
class RankResult:
    """What one rank of a benchmark job reports.

    Attributes:
        variant: "fe_dist", "reference" (hand-written Horovod loop) or "comm_free" (the reference
            loop skipping the allreduce, Horovod not started).
        workload: The workload name.
        scaling: "weak" or "strong".
        rank, size: This rank and the world size.
        host: This rank's host label (hostname and address).
        backend: fe_dist's backend (horovod/gloo, mpi, ...) or what the reference loop ran on.
        device: "CPU" or "GPU:<i>".
        threads: Intra-op threads of this rank.
        peak_memory_mb: Peak resident memory of the process (CPU), or the GPU's peak allocation.
        phases: Every timed phase of every schedule.
        startup: Seconds of start-up parts: ``import`` (TensorFlow and the library), and for
            fe_dist ``to_first_step`` per schedule (plan, checks, compilation, first step).
        allreduce_probe: [bytes, seconds] of allreduces of plain float32 buffers, for the cost
            model (fe_dist variant on more than one rank).
        versions: Library versions.
    """

    variant: str
    workload: str
    scaling: str
    rank: int
    size: int
    host: str
    backend: str
    device: str
    threads: int
    peak_memory_mb: float
    phases: list[PhaseTiming]
    startup: dict[str, float] = dataclasses.field(default_factory=dict)
    allreduce_probe: list[list[float]] = dataclasses.field(default_factory=list)
    versions: dict[str, str] = dataclasses.field(default_factory=dict)

    def lines(self) -> list[str]:
        """The stdout lines that carry this result: ``FE_BENCH_RESULT <rank> <i> <n> <part>``.
        Parts of at most `CHUNK` characters, because launchers forward a rank's output in
        pieces (mpirun splits longer lines at 4096 bytes and interleaves other ranks')."""
        text = json.dumps(dataclasses.asdict(self), separators=(",", ":"))
        parts = [text[i:i + CHUNK] for i in range(0, len(text), CHUNK)]
        return [f"{MARKER}{self.rank} {i} {len(parts)} {part}" for i, part in enumerate(parts)]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RankResult":
        d = dict(d)
        d["phases"] = [PhaseTiming(**p) for p in d["phases"]]
        return cls(**d)


def print_results(results: list[RankResult], rank: int) -> None:
    """Rank 0 prints every rank's result (gathered by the caller); the other ranks print
    nothing. Across hosts, mpirun forwards each rank's output in pieces and wrote one rank's
    part into the middle of another's line (2 of 3 fe_dist launches at np = 4 across two
    emulated hosts lost a rank that way); with one writer the pieces stay in order."""
    if rank == 0:
        for result in sorted(results, key=lambda r: r.rank):
            for line in result.lines():
                print(line, flush=True)
    # Open MPI dropped a 4-rank job's last lines when ranks exited at once (not verified
    # that this pause is enough).
    time.sleep(1)


def parse_lines(lines: Iterable[str]) -> list[RankResult]:
    """Every rank's result found whole in a job's output (launcher prefixes such as
    ``[1]<stdout>:`` allowed); a rank whose parts are missing or garbled is left out (`merge`
    then reports it as not reporting)."""
    parts: dict[int, dict[int, str]] = {}
    counts: dict[int, int] = {}
    # mpirun may also join two ranks' parts on one line (each part is written whole).
    pieces_found = (piece for line in lines for piece in line.split(MARKER)[1:])
    for piece in pieces_found:
        fields = piece.rstrip("\n").split(" ", 3)
        try:
            rank, index, count = (int(f) for f in fields[:3])
        except ValueError:
            continue
        parts.setdefault(rank, {})[index] = fields[3] if len(fields) > 3 else ""
        counts[rank] = count
    found = []
    for rank, pieces in sorted(parts.items()):
        if len(pieces) != counts[rank]:
            continue
        try:
            found.append(RankResult.from_dict(json.loads("".join(pieces[i] for i in
                                                                 range(counts[rank])))))
        except (ValueError, KeyError, TypeError):
            continue
    return found


@dataclasses.dataclass
class PhaseResult:
    """One phase over all ranks of a run.

    Attributes:
        schedule, phase, image_size, global_batch: As in `PhaseTiming`.
        rank_batch: The largest per-rank batch.
        steps_timed: Steps in the timing.
        step_p50, step_p95: Step time percentiles (s); a step's time is its slowest rank's.
        samples_per_sec: global batch / mean step time.
        allreduce_bytes_per_step: Per rank.
        allreduce_seconds: One allreduce of the phase's gradients alone (slowest rank).
    """

    schedule: str
    phase: int
    image_size: int
    global_batch: int
    rank_batch: int
    steps_timed: int
    step_p50: float
    step_p95: float
    samples_per_sec: float
    allreduce_bytes_per_step: float
    allreduce_seconds: float | None


@dataclasses.dataclass
class RunResult:
    """One launch: a variant of a workload at one world size, or its failure.

    Attributes:
        variant, workload, scaling: What ran.
        np: Ranks asked for.
        command: The launch command.
        ok: The job finished and every rank reported.
        error: Why not (the tail of the job's output), when not ok.
        wall_seconds: The launch's wall time.
        phases: Per phase, over all ranks.
        hosts: Host label → its ranks.
        backend, device, threads: As the ranks reported (rank 0's).
        peak_memory_mb: Per rank, in rank order.
        startup: Rank 0's start-up seconds.
        allreduce_probe: Rank-wise slowest [bytes, seconds] of the probe.
        versions: Rank 0's.
        round: Which round of ``--repeats`` this launch was (0 for the first).
    """

    variant: str
    workload: str
    scaling: str
    np: int
    command: list[str]
    ok: bool
    error: str = ""
    wall_seconds: float = 0.0
    phases: list[PhaseResult] = dataclasses.field(default_factory=list)
    hosts: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    backend: str = ""
    device: str = ""
    threads: int = 0
    peak_memory_mb: list[float] = dataclasses.field(default_factory=list)
    startup: dict[str, float] = dataclasses.field(default_factory=dict)
    allreduce_probe: list[list[float]] = dataclasses.field(default_factory=list)
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    round: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunResult":
        d = dict(d)
        d["phases"] = [PhaseResult(**p) for p in d["phases"]]
        return cls(**d)

    def phase(self, schedule: str, index: int) -> PhaseResult | None:
        """The phase ``index`` of ``schedule``, if it ran."""
        for p in self.phases:
            if p.schedule == schedule and p.phase == index:
                return p
        return None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    at = q * (len(ordered) - 1)
    lo = int(at)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (at - lo)


def merge(ranks: list[RankResult], np_: int, command: list[str], wall_seconds: float,
          log_tail: str = "") -> RunResult:
    """The run of ``np_`` ranks from their reports; not ok when a rank did not report."""
    ranks = sorted(ranks, key=lambda r: r.rank)
    first = ranks[0] if ranks else None
    missing = sorted(set(range(np_)) - {r.rank for r in ranks})
    if first is None or missing or first.size != np_:
        error = (f"ranks {missing} did not report" if ranks else "no rank reported") + \
            (f"; the job had {first.size} ranks, not {np_}" if first and first.size != np_ else "")
        return RunResult(variant=first.variant if first else "", workload=first.workload
                         if first else "", scaling=first.scaling if first else "", np=np_,
                         command=command, ok=False, error=f"{error}\n{log_tail}",
                         wall_seconds=wall_seconds)
    phases = []
    for i, p0 in enumerate(first.phases):
        per_rank = [r.phases[i] for r in ranks]
        steps = [max(s) for s in zip(*(p.step_seconds for p in per_rank))]
        reduce_times = [p.allreduce_seconds for p in per_rank if p.allreduce_seconds is not None]
        mean = statistics.fmean(steps) if steps else float("nan")
        phases.append(PhaseResult(
            schedule=p0.schedule, phase=p0.phase, image_size=p0.image_size,
            global_batch=p0.global_batch, rank_batch=max(p.rank_batch for p in per_rank),
            steps_timed=len(steps), step_p50=_percentile(steps, 0.5),
            step_p95=_percentile(steps, 0.95), samples_per_sec=p0.global_batch / mean,
            allreduce_bytes_per_step=p0.allreduce_bytes_per_step,
            allreduce_seconds=max(reduce_times) if reduce_times else None))
    hosts: dict[str, list[int]] = {}
    for r in ranks:
        hosts.setdefault(r.host, []).append(r.rank)
    probe = [[b, max(r.allreduce_probe[j][1] for r in ranks)]
             for j, (b, _) in enumerate(first.allreduce_probe)]
    return RunResult(variant=first.variant, workload=first.workload, scaling=first.scaling,
                     np=np_, command=command, ok=True, wall_seconds=wall_seconds, phases=phases,
                     hosts=hosts, backend=first.backend, device=first.device,
                     threads=first.threads, peak_memory_mb=[r.peak_memory_mb for r in ranks],
                     startup=first.startup, allreduce_probe=probe, versions=first.versions)
