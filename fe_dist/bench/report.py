"""fe-bench's figures from its runs: the rows, the fitted cost model, JSON, markdown and a PNG."""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
from pathlib import Path
from typing import Any

from fe_dist.bench import costmodel
from fe_dist.bench.results import PhaseResult, RunResult


@dataclasses.dataclass
class Row:
    """One phase of one workload, schedule and scaling at one world size, every variant.

    With ``--repeats`` each figure is the median over the rounds, and a ratio is the median of
    the rounds' own ratios (the two launches of one round ran minutes apart at most).

    Attributes:
        workload, schedule, scaling, np, phase, image_size, global_batch, rank_batch: What ran.
        rounds: fe_dist launches that ran this phase (``--repeats``).
        fe_dist: fe_dist's samples/s (None: failed or not run).
        per_device: fe_dist's samples/s per rank.
        efficiency: fe_dist's samples/s over np x its samples/s at np=1 (same phase).
        reference: The hand-written Horovod loop's samples/s.
        comm_free: The communication-free bound's samples/s.
        fe_over_reference, fe_over_comm_free: Ratios (the headline on a shared machine).
        fe_over_reference_range, fe_over_comm_free_range: The lowest and highest round's ratio.
        step_p50_ms, step_p95_ms: fe_dist's step time percentiles.
        allreduce_mb_per_step: Gradient megabytes allreduced per step per rank.
        allreduce_ms_per_step: One allreduce of the phase's gradients alone.
        model_allreduce_ms: The fitted cost model's time for that allreduce.
        model_samples_per_sec: The cost model's samples/s: the communication-free bound's mean
            step time at this np (the compute, measured in the same run) plus the model's
            allreduce, no overlap.
        measured_over_model: fe_dist's samples/s over the model's.
        model_np1_samples_per_sec, measured_over_model_np1: The same with the compute of one
            rank alone (fe_dist at np=1, scaled to this per-rank batch), the projection's
            assumption; below 1 where ranks share cores and so compute slower than one alone.
        peak_memory_mb: The largest peak memory of fe_dist's ranks.
    """

    workload: str
    schedule: str
    scaling: str
    np: int
    phase: int
    image_size: int
    global_batch: int
    rank_batch: int
    rounds: int = 0
    fe_dist: float | None = None
    per_device: float | None = None
    efficiency: float | None = None
    reference: float | None = None
    comm_free: float | None = None
    fe_over_reference: float | None = None
    fe_over_comm_free: float | None = None
    fe_over_reference_range: list[float] | None = None
    fe_over_comm_free_range: list[float] | None = None
    step_p50_ms: float | None = None
    step_p95_ms: float | None = None
    allreduce_mb_per_step: float | None = None
    allreduce_ms_per_step: float | None = None
    model_allreduce_ms: float | None = None
    model_samples_per_sec: float | None = None
    measured_over_model: float | None = None
    model_np1_samples_per_sec: float | None = None
    measured_over_model_np1: float | None = None
    peak_memory_mb: float | None = None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _rounds(runs: list[RunResult], variant: str, workload: str, scaling: str,
            np_: int) -> dict[int, RunResult]:
    """The variant's ok launches at this size, by round."""
    return {r.round: r for r in runs
            if r.ok and r.variant == variant and r.workload == workload and r.np == np_ and
            (r.scaling == scaling or np_ == 1)}


def _phases(rounds: dict[int, RunResult], schedule: str, index: int) -> dict[int, PhaseResult]:
    """The phase in each round that ran it."""
    return {k: p for k, r in rounds.items() if (p := r.phase(schedule, index)) is not None}


def _paired(a: dict[int, PhaseResult], b: dict[int, PhaseResult]) -> list[float]:
    """a's samples/s over b's, round by round."""
    return [a[k].samples_per_sec / b[k].samples_per_sec for k in sorted(a) if k in b]


def _step_seconds(phases: dict[int, PhaseResult]) -> float | None:
    """The median round's mean step time (global batch / samples/s, as samples/s is taken)."""
    return _median([p.global_batch / p.samples_per_sec for p in phases.values()])


def fit_cost_model(runs: list[RunResult]) -> costmodel.CostModel | None:
    """The cost model fitted to every allreduce time fe_dist's runs measured."""
    points = []
    for r in runs:
        if r.ok and r.variant == "fe_dist" and r.np > 1:
            points += [(r.np, b, s) for b, s in r.allreduce_probe]
            points += [(r.np, p.allreduce_bytes_per_step, p.allreduce_seconds) for p in r.phases
                       if p.allreduce_seconds]
    return costmodel.fit(points)


def rows(runs: list[RunResult], model: costmodel.CostModel | None) -> list[Row]:
    """Every phase of every (workload, scaling, np) that ran, the variants side by side."""
    keys = sorted({(r.workload, r.scaling, r.np) for r in runs if r.workload},
                  key=lambda k: (k[0], k[1], k[2]))
    out = []
    for workload, scaling, np_ in keys:
        fe, base, ref, free = (_rounds(runs, v, workload, scaling, n) for v, n in (
            ("fe_dist", np_), ("fe_dist", 1), ("reference", np_), ("comm_free", np_)))
        shape = next((r for group in (fe, ref, free) for r in group.values()), None)
        if shape is None:
            continue
        for p in shape.phases:
            row = Row(workload, p.schedule, scaling, np_, p.phase, p.image_size, p.global_batch,
                      p.rank_batch)
            fp, bp, rp, cp = (_phases(g, p.schedule, p.phase) for g in (fe, base, ref, free))
            row.rounds = len(fp)
            row.fe_dist = _median([x.samples_per_sec for x in fp.values()])
            row.reference = _median([x.samples_per_sec for x in rp.values()])
            row.comm_free = _median([x.samples_per_sec for x in cp.values()])
            for name, other in (("reference", rp), ("comm_free", cp)):
                paired = _paired(fp, other)
                setattr(row, f"fe_over_{name}", _median(paired))
                setattr(row, f"fe_over_{name}_range", [min(paired), max(paired)] if paired
                        else None)
            if fp:
                row.per_device = row.fe_dist / np_
                row.step_p50_ms = _median([x.step_p50 for x in fp.values()]) * 1e3
                row.step_p95_ms = _median([x.step_p95 for x in fp.values()]) * 1e3
                row.allreduce_mb_per_step = next(iter(fp.values())).allreduce_bytes_per_step / 1e6
                row.allreduce_ms_per_step = _median([x.allreduce_seconds * 1e3 for x in
                                                     fp.values() if x.allreduce_seconds])
                row.peak_memory_mb = max(max(r.peak_memory_mb) for r in fe.values())
            if fp and bp:
                row.efficiency = row.fe_dist / (np_ * _median([x.samples_per_sec
                                                               for x in bp.values()]))
            if model is not None and fp and np_ > 1:
                comm = model.allreduce_seconds(row.allreduce_mb_per_step * 1e6, np_)
                row.model_allreduce_ms = comm * 1e3
                if cp:
                    row.model_samples_per_sec = p.global_batch / (_step_seconds(cp) + comm)
                    row.measured_over_model = row.fe_dist / row.model_samples_per_sec
                if bp:
                    one = next(iter(bp.values()))
                    compute = _step_seconds(bp) / one.rank_batch * p.rank_batch
                    row.model_np1_samples_per_sec = p.global_batch / (compute + comm)
                    row.measured_over_model_np1 = row.fe_dist / row.model_np1_samples_per_sec
            out.append(row)
    return out


def projection(all_rows: list[Row], model: costmodel.CostModel | None) -> list[dict[str, Any]]:
    """Weak-scaling efficiency and samples/s at `costmodel.PROJECT_TO` workers, from the np=1
    compute of each schedule's last phase and the fitted terms: a projection, not a measurement."""
    if model is None:
        return []
    out = []
    seen = set()
    for row in all_rows:
        if row.np != 1 or row.fe_dist is None or row.scaling != "weak":
            continue
        last = max(r.phase for r in all_rows if r.workload == row.workload and
                   r.schedule == row.schedule and r.np == 1)
        if row.phase != last or (row.workload, row.schedule) in seen:
            continue
        seen.add((row.workload, row.schedule))
        grad_bytes = next((r.allreduce_mb_per_step * 1e6 for r in all_rows
                           if r.workload == row.workload and r.schedule == row.schedule and
                           r.phase == row.phase and r.np > 1 and r.allreduce_mb_per_step), None)
        if not grad_bytes:
            continue
        compute = row.global_batch / row.fe_dist  # the mean step, as samples/s is taken
        out.append({
            "workload": row.workload, "schedule": row.schedule, "phase": row.phase,
            "rank_batch": row.rank_batch, "gradient_bytes": grad_bytes,
            "compute_s_per_step": compute,
            "efficiency": {str(n): costmodel.efficiency(compute, grad_bytes, n, model.bandwidth,
                                                        model.latency)
                           for n in costmodel.PROJECT_TO},
            "samples_per_sec": {str(n): n * row.rank_batch / (compute + model.allreduce_seconds(
                grad_bytes, n)) for n in costmodel.PROJECT_TO}})
    return out


def build(runs: list[RunResult], meta: dict[str, Any]) -> dict[str, Any]:
    """Everything fe-bench writes, as JSON-ready data."""
    model = fit_cost_model(runs)
    table = rows(runs, model)
    return {"meta": meta, "rows": [dataclasses.asdict(r) for r in table],
            "cost_model": dataclasses.asdict(model) if model else None,
            "projection": projection(table, model),
            "runs": [dataclasses.asdict(r) for r in runs]}


def _f(value: float | None, fmt: str = ".0f") -> str:
    return "–" if value is None else format(value, fmt)


def markdown(data: dict[str, Any]) -> str:
    """The report as markdown tables."""
    meta, runs = data["meta"], [RunResult.from_dict(r) for r in data["runs"]]
    lines = [f"fe-bench, {meta.get('date', '')}: `{meta.get('command', '')}`", ""]
    ok = [r for r in runs if r.ok]
    if ok:
        first = next((r for r in ok if r.variant == "fe_dist"), ok[0])
        versions = ", ".join(f"{k} {v}" for k, v in first.versions.items() if k != "backend")
        lines += [f"Machine: {meta.get('machine', '')}. Interface: "
                  f"{meta.get('interface') or 'default (loopback on one host)'}. "
                  f"Launcher: {meta.get('launcher', '')}. Versions: {versions}.", ""]
        lines += ["| workload | variant | np | backend | device, threads | hosts (ranks) | "
                  "peak memory per rank MB | wall s |", "|---|---|---|---|---|---|---|---|"]
        for r in ok:
            hosts = "; ".join(f"{h} ({','.join(map(str, rs))})" for h, rs in r.hosts.items())
            lines.append(f"| {r.workload} | {r.variant} | {r.np} | {r.backend} | {r.device}, "
                         f"{r.threads} | {hosts} | "
                         f"{' / '.join(f'{m:.0f}' for m in r.peak_memory_mb)} | "
                         f"{r.wall_seconds:.0f} |")
        lines.append("")
    lines += ["Throughput per schedule phase (samples/s: global batch / mean step time over the "
              "timed steps; a step's time is its slowest rank's). Efficiency: samples/s over np x "
              "the np=1 samples/s of the same phase (weak: the per-rank batch fixed; strong: the "
              "global batch fixed). Reference: the hand-written Horovod loop; comm-free: that "
              "loop without the allreduce. With several rounds: medians over the rounds, and "
              "each ratio the median of the rounds' own ratios [lowest, highest].", "",
              "| workload | schedule | scaling | phase (px, global batch) | np | rounds | fe_dist | "
              "per device | efficiency | reference | fe / reference | comm-free | fe / comm-free | "
              "step p50 / p95 ms | allreduce MB/step | allreduce ms/step | model ms | "
              "measured / model | measured / model (np=1 compute) | peak MB |", "|" + "---|" * 20]
    for r in (Row(**d) for d in data["rows"]):
        lines.append(
            f"| {r.workload} | {r.schedule} | {r.scaling} | {r.image_size}, {r.global_batch} | "
            f"{r.np} | {r.rounds} | {_f(r.fe_dist, '.1f')} | {_f(r.per_device, '.1f')} | "
            f"{_f(r.efficiency, '.2f')} | {_f(r.reference, '.1f')} | "
            f"{ratio_text(r.fe_over_reference, r.fe_over_reference_range)} | "
            f"{_f(r.comm_free, '.1f')} | "
            f"{ratio_text(r.fe_over_comm_free, r.fe_over_comm_free_range)} | "
            f"{_f(r.step_p50_ms, '.1f')} / {_f(r.step_p95_ms, '.1f')} | "
            f"{_f(r.allreduce_mb_per_step, '.2f')} | {_f(r.allreduce_ms_per_step, '.2f')} | "
            f"{_f(r.model_allreduce_ms, '.2f')} | {_f(r.measured_over_model, '.2f')} | "
            f"{_f(r.measured_over_model_np1, '.2f')} | {_f(r.peak_memory_mb)} |")
    model = data["cost_model"]
    lines.append("")
    if model:
        lines += [f"Cost model fitted on this run's allreduce times ({model['points']} "
                  f"measurements): bandwidth {model['bandwidth'] * 8 / 1e9:.2f} Gb/s, latency "
                  f"{model['latency'] * 1e6:.0f} µs per round; t = 2(N-1)/N · bytes / bandwidth + "
                  "2(N-1) · latency, no overlap. 'model' columns above: that allreduce time, and "
                  "measured / model with the model's samples/s = global batch / (compute + that "
                  "allreduce), the compute being the communication-free bound's mean step at "
                  "the same np, or (last column) fe_dist's at np=1 scaled to the per-rank batch, "
                  "as the projection assumes.", ""]
        if data["projection"]:
            lines += ["**Projection** (not measured: the fitted terms and the np=1 compute of each "
                      "schedule's last phase, per-rank batch fixed), efficiency (samples/s) at "
                      + " / ".join(map(str, costmodel.PROJECT_TO)) + " workers:", "",
                      *projection_table(data["projection"]), ""]
    else:
        lines += ["No cost model: no fe_dist run on more than one rank measured allreduces.", ""]
    startup = [r for r in ok if r.startup]
    if startup:
        keys = sorted({k for r in startup for k in r.startup})
        lines += ["Start-up seconds (rank 0): " + ", ".join(keys) + ".", "",
                  "| workload | variant | np | " + " | ".join(keys) + " |",
                  "|---|---|---|" + "---|" * len(keys)]
        for r in startup:
            lines.append(f"| {r.workload} | {r.variant} | {r.np} | " + " | ".join(
                _f(r.startup.get(k), ".2f") for k in keys) + " |")
        lines.append("")
    failed = [r for r in runs if not r.ok]
    lines.append("Failed launches: " + ("none." if not failed else ""))
    for r in failed:
        lines.append(f"- {r.workload or '?'} {r.variant or '?'} {r.scaling} np={r.np}: "
                     + error_summary(r.error))
    return "\n".join(lines) + "\n"


def ratio_text(value: float | None, spread: list[float] | None) -> str:
    """``0.98 [0.95, 1.02]``: a ratio and its rounds' range (the range only with 2+ rounds)."""
    if value is None:
        return "–"
    if not spread or spread[0] == spread[1]:
        return f"{value:.2f}"
    return f"{value:.2f} [{spread[0]:.2f}, {spread[1]:.2f}]"


def projection_table(projected: list[dict[str, Any]]) -> list[str]:
    """The markdown rows of the projection: efficiency (samples/s) per workload and size."""
    lines = ["| workload | schedule | gradient MB | " +
             " | ".join(str(n) for n in costmodel.PROJECT_TO) + " |",
             "|---|---|---|" + "---|" * len(costmodel.PROJECT_TO)]
    for p in projected:
        lines.append(f"| {p['workload']} | {p['schedule']} | {p['gradient_bytes'] / 1e6:.2f} | "
                     + " | ".join(f"{p['efficiency'][str(n)]:.2f} "
                                  f"({p['samples_per_sec'][str(n)]:,.0f})"
                                  for n in costmodel.PROJECT_TO) + " |")
    return lines


def error_summary(error: str) -> str:
    """A failed launch in one line: how it ended, and the first exception a rank raised (the
    cause; the launcher's own error about a rank's exit comes after it)."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    found = [m.group(0) for m in (re.search(r"\b[\w.]*(Error|Exception): .*", line)
                                  for line in lines) if m]
    cause = next((f for f in found if "Horovod detected" not in f), found[0] if found else "")
    return " / ".join(dict.fromkeys(filter(None, lines[:1] + [cause])))[:600].replace("|", "/")


def plot(data: dict[str, Any], path: Path) -> None:
    """samples/s against np per workload: fe_dist, reference and comm-free for each schedule's
    last phase, and linear scaling from fe_dist's np=1."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = [Row(**d) for d in data["rows"]]
    workloads = sorted({r.workload for r in table})
    fig, axes = plt.subplots(1, max(1, len(workloads)), figsize=(6 * max(1, len(workloads)), 4.4),
                             squeeze=False)
    for ax, workload in zip(axes[0], workloads):
        mine = [r for r in table if r.workload == workload and r.scaling == "weak"] or \
            [r for r in table if r.workload == workload]
        for schedule in sorted({r.schedule for r in mine}):
            last = max(r.phase for r in mine if r.schedule == schedule)
            pts = sorted((r for r in mine if r.schedule == schedule and r.phase == last),
                         key=lambda r: r.np)
            label = f"{schedule} ({pts[0].image_size} px)"
            for key, style in (("fe_dist", "-o"), ("reference", "--s"), ("comm_free", ":^")):
                xs = [r.np for r in pts if getattr(r, key) is not None]
                ys = [getattr(r, key) for r in pts if getattr(r, key) is not None]
                if xs:
                    ax.plot(xs, ys, style, label=f"{key} {label}")
            one = next((r.fe_dist for r in pts if r.np == 1 and r.fe_dist), None)
            if one:
                nps = [r.np for r in pts]
                ax.plot(nps, [one * n for n in nps], color="grey", lw=0.8, alpha=0.6)
        ax.set_xlabel("ranks (np)")
        ax.set_ylabel("samples/s")
        ax.set_title(f"{workload}: last phase of each schedule (grey: linear)")
        ax.set_xticks(sorted({r.np for r in mine}))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(data: dict[str, Any], out: Path) -> list[Path]:
    """results.json, results.md and scaling.png (with matplotlib, the 'bench' extra) in
    ``out``; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json", out / "results.md"]
    paths[0].write_text(json.dumps(data, indent=1))
    paths[1].write_text(markdown(data))
    try:
        plot(data, out / "scaling.png")
        paths.append(out / "scaling.png")
    except ImportError:
        print("fe-bench: no matplotlib (pip install 'fe_dist[bench]'), so no scaling.png")
    return paths

