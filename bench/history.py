"""Every `make bench` run side by side: one row per serving results file under
bench/results/, each target of the performance issue as measured in that run, met or not,
and a plot of the three targets that moved most between runs and VMs.

This project's VMs differ by up to 3 x in raw speed and drift by 10-15% within minutes, so
one run says little on its own: the history shows which targets hold on every VM and which
sit at their edge. `make bench` rewrites it after each run; by hand:

    python bench/history.py

Writes bench/results/serving-history.md and .png.
"""

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from reporting import RESULTS, machine_label  # noqa: E402

HISTORY = "serving-history"
# The targets as the harness names them (bench/serving.py, `verdicts`); the plot's.
BULK = "bulk: /jobs throughput >= 0.9 x ceiling"
C32 = "realtime: /predict c32 >= 0.7 x ceiling"
C1 = "latency: c1 p50 <= in-process batch 1 + 5 ms"
# Every target, in the order of the table's columns, with each column's heading.
COLUMNS = {
    BULK: "bulk / ceiling (>= 0.9)",
    C32: "c32 / ceiling (>= 0.7)",
    "realtime: /predict c32 >= 3 x peer c32": "c32 / peer on the stack's runtime (>= 3)",
    "realtime: /predict c32 >= 3 x peer c32, the peer on PyTorch": "c32 / peer on PyTorch (>= 3)",
    C1: "c1 p50 - batch 1, ms (<= 5)",
    "isolation: p95 during job <= 2 x idle p95": "isolation (<= 2)",
    "memory: gateway < 200 MB during the job": "gateway MB (< 200)",
    "memory: workers flat over 10000 predictions (last/first <= 1.1)": "workers last / first (<= 1.1)",
}


@dataclass(frozen=True)
class Run:
    stem: str  # the results file's name without its suffix
    date: str
    machine: str  # `2core-amd-25-17` (reporting.machine_label)
    commit: str
    runtime: str
    ceiling: float  # img/s: the reference the targets divide by
    targets: dict[str, dict[str, Any]]  # target name -> {"measured", "met", ...}

    @property
    def label(self) -> str:
        engine = " (torch)" if self.runtime == "torch" else ""
        return f"{self.date[5:]} {self.machine.removeprefix('2core-')}{engine}"


def load_runs(results: Path = RESULTS) -> list[Run]:
    """Every serving run under `results`, oldest first (by date, then the commit's time)."""
    runs = []
    for path in results.glob("*-serving-*.json"):
        found = json.loads(path.read_text())
        ceiling = found.get("reference", found["ceiling"])  # one ceiling before 2026-12-03
        one = found["ceiling"].get("one_process_2_threads", {})
        runs.append(
            Run(
                stem=path.stem,
                date=found["date"],
                machine=machine_label(found["machine"]),
                commit=found["machine"].get("commit", "")[:7],
                runtime=one.get("runtime", "torch"),
                ceiling=float(ceiling["best"]),
                targets={t["target"]: t for t in found["targets"]},
            )
        )
    return sorted(runs, key=lambda run: (run.date, _commit_time(run.commit), run.stem))


def _commit_time(commit: str) -> int:
    """When `commit` was made, where this checkout has it (0 where not)."""
    shown = subprocess.run(
        ["git", "show", "-s", "--format=%ct", commit],
        capture_output=True,
        text=True,
        cwd=BENCH,
        check=False,
    )
    return int(shown.stdout.strip() or 0) if shown.returncode == 0 and commit else 0


def cell(target: dict[str, Any] | None) -> str:
    if target is None:
        return "-"  # the harness did not measure it yet
    return f"{target['measured']:g} {'✓' if target['met'] else '✗'}"


def markdown(runs: list[Run]) -> str:
    heads = ["run", "VM", "commit", "runtime", "ceiling img/s", *COLUMNS.values()]
    lines = [
        "# Every `make bench` run",
        "",
        "One row per serving results file in this folder, oldest first; ✓ met, ✗ not met, -"
        " not measured by the harness of that day. Each run's own file says why a target was"
        " missed; bench/README.md says what changed between runs. Written by"
        " `bench/history.py`.",
        "",
        "| " + " | ".join(heads) + " |",
        "| " + " | ".join("---" for _ in heads) + " |",
    ]
    for run in runs:
        row = [
            f"[{run.date}]({run.stem}.md)",
            run.machine,
            f"`{run.commit}`" if run.commit else "-",
            run.runtime,
            f"{run.ceiling:g}",
            *(cell(run.targets.get(name)) for name in COLUMNS),
        ]
        lines.append("| " + " | ".join(row) + " |")
    met = {name: sum(bool(r.targets.get(name, {}).get("met")) for r in runs) for name in COLUMNS}
    measured = {name: sum(name in r.targets for r in runs) for name in COLUMNS}
    lines += [
        "",
        "Met in: "
        + "; ".join(f"{COLUMNS[n]} {met[n]} of {measured[n]}" for n in COLUMNS)
        + " runs.",
        "",
    ]
    return "\n".join(lines)


def measured(runs: list[Run], name: str) -> list[float]:
    """Each run's figure for target `name`; NaN (a gap in the line) where it had none."""
    return [float(run.targets.get(name, {}).get("measured", "nan")) for run in runs]


def plot(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = range(len(runs))
    labels = [run.label for run in runs]
    fig, (ratios, latency) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, bound, marker in ((BULK, 0.9, "o"), (C32, 0.7, "s")):
        (line,) = ratios.plot(xs, measured(runs, name), marker=marker, label=COLUMNS[name])
        ratios.axhline(bound, linestyle="--", color=line.get_color(), linewidth=1)
    ratios.set_title("throughput against the in-process ceiling")
    latency.plot(xs, measured(runs, C1), marker="o", color="C3")
    latency.axhline(5, linestyle="--", color="C3", linewidth=1, label="target: 5 ms")
    latency.set_title("concurrency 1: p50 above in-process batch 1 (ms)")
    for axis in (ratios, latency):
        axis.set_xticks(list(xs), labels, rotation=45, ha="right", fontsize=8)
        axis.legend(fontsize=8)
    fig.suptitle("Every make bench run (dashed: the targets)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_history(results: Path = RESULTS) -> Path:
    """Rewrite the history table and plot from the results under `results`; returns the stem."""
    runs = load_runs(results)
    stem = results / HISTORY
    stem.with_suffix(".md").write_text(markdown(runs))
    plot(runs, stem.with_suffix(".png"))
    return stem


def main() -> int:
    stem = write_history()
    print(f"{stem}.md, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
