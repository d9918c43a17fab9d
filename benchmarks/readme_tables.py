"""The README's "Benchmarks" tables from fe-bench result directories (results.json).

    .venv/bin/python benchmarks/readme_tables.py benchmarks/results/localhost_* \
        benchmarks/results/hosts_*

Prints one summary of the goals over every directory (the README's), then, per directory, a
compact throughput table (the full one is the directory's results.md),
the fitted cost model and the projection.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from fe_dist.bench import costmodel, report


def f(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def tables(path: Path) -> str:
    data = json.loads((path / "results.json").read_text())
    meta = data["meta"]
    ok = [r for r in data["runs"] if r["ok"]]
    backends = sorted({f"{r['variant']}: {r['backend']}" for r in ok if r["np"] > 1})
    lines = [f"`{meta['command']}` (finished {meta['date']}, "
             f"{meta.get('runtime_s', 0) / 60:.0f} min; {meta.get('machine', '')}; backends at "
             f"np > 1: {'; '.join(backends) or '-'}; full table: `{path}/results.md`)", "",
             "| workload | schedule | phase (px, global batch) | np | rounds | fe_dist samples/s | "
             "efficiency | fe / reference | fe / comm-free | step p50 / p95 ms | allreduce MB, "
             "ms / step | model ms | measured / model | measured / model (np=1 compute) |",
             "|" + "---|" * 14]
    for r in data["rows"]:
        lines.append(
            f"| {r['workload']} | {r['schedule']} | {r['image_size']}, {r['global_batch']} | "
            f"{r['np']} | {r['rounds']} | {f(r['fe_dist'], '.1f')} | {f(r['efficiency'], '.2f')} | "
            f"{report.ratio_text(r['fe_over_reference'], r['fe_over_reference_range'])} | "
            f"{report.ratio_text(r['fe_over_comm_free'], r['fe_over_comm_free_range'])} | "
            f"{f(r['step_p50_ms'], '.0f')} / {f(r['step_p95_ms'], '.0f')} | "
            f"{f(r['allreduce_mb_per_step'] if r['np'] > 1 else None, '.2f')}, "
            f"{f(r['allreduce_ms_per_step'], '.1f')} | {f(r['model_allreduce_ms'], '.1f')} | "
            f"{f(r['measured_over_model'], '.2f')} | {f(r['measured_over_model_np1'], '.2f')} |")
    lines += ["", *goals(data["rows"])]
    failed = [r for r in data["runs"] if not r["ok"]]
    lines += ["", "Failed launches: " + (", ".join(f"{r['workload']} {r['variant']} np={r['np']}"
                                                  for r in failed) or "none") + "."]
    model = data["cost_model"]
    if model:
        lines += ["", f"Cost model fitted on this run ({model['points']} allreduce timings): "
                  f"{model['bandwidth'] * 8 / 1e9:.2f} Gb/s, {model['latency'] * 1e6:.0f} µs per "
                  "round."]
        if data["projection"]:
            lines += ["", "**Projection** (fitted terms, np = 1 compute, per-rank batch fixed; not "
                      "measured): efficiency (samples/s) at " +
                      " / ".join(map(str, costmodel.PROJECT_TO)) + " workers:", "",
                      *report.projection_table(data["projection"])]
    return "\n".join(lines) + "\n"


GOALS = (("fe_over_reference", "fe_dist / reference"),
         ("fe_over_comm_free", "fe_dist / comm-free"),
         ("measured_over_model", "measured / model"))


def spread(rows: list[dict], key: str, np_: int) -> tuple[float, float, float] | None:
    """(lowest, median, highest) of a ratio over the phases at ``np_``; None if none has it."""
    values = [r[key] for r in rows if r["np"] == np_ and r[key] is not None]
    return (min(values), statistics.median(values), max(values)) if values else None


def goals(rows: list[dict]) -> list[str]:
    """The issue's goals in one line each: the lowest, median and highest phase ratio per np."""
    out = []
    for key, what in GOALS:
        for np_ in sorted({r["np"] for r in rows}):
            found = spread(rows, key, np_)
            if found:
                n = sum(1 for r in rows if r["np"] == np_ and r[key] is not None)
                out.append(f"- {what} at np = {np_}: phases {found[0]:.2f}-{found[2]:.2f}, "
                           f"median {found[1]:.2f} ({n} phases)")
    return out


def summary(paths: list[Path]) -> str:
    """One table over every result directory: per set and np, each goal's ratio as the median
    over the phases with the lowest and highest phase (the README's headline)."""
    lines = ["| set | np | rounds | " + " | ".join(what for _, what in GOALS) + " |",
             "|" + "---|" * (3 + len(GOALS))]
    for path in paths:
        rows = json.loads((path / "results.json").read_text())["rows"]
        for np_ in sorted({r["np"] for r in rows}):
            cells = []
            for key, _ in GOALS:
                found = spread(rows, key, np_)
                cells.append("–" if found is None else
                             f"{found[1]:.2f} ({found[0]:.2f}-{found[2]:.2f})")
            rounds = min(r["rounds"] for r in rows if r["np"] == np_)
            lines.append(f"| {path.name} | {np_} | {rounds} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    paths = [Path(arg) for arg in sys.argv[1:]]
    print(summary(paths))
    for path in paths:
        print(tables(path))


if __name__ == "__main__":
    main()
