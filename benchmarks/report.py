"""Markdown tables (mean ± std over seeds) from sweep results, optionally written into README.md.

    python benchmarks/report.py benchmarks/results/*.jsonl
    python benchmarks/report.py benchmarks/results/*.jsonl --readme README.md
    python benchmarks/report.py benchmarks/results/claims/stitching.jsonl --plot bars.png --curves curves.png

Rows are algorithm variants (script + the flags that differ between runs), columns are datasets,
cells are the final normalised score as mean ± std (number of seeds). With --readme, the text
between `<!-- results:start -->` and `<!-- results:end -->` is replaced, so README numbers are
never typed by hand.
"""

import json
import os
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import tyro

START, END = "<!-- results:start -->", "<!-- results:end -->"


@dataclass
class ReportArgs:
    results: tyro.conf.Positional[tuple[str, ...]]
    """JSON-lines files written by benchmarks/sweep.py"""
    readme: str | None = None
    """write the tables into this README between the results markers"""
    metric: str = "normalized_score"
    """which recorded score to tabulate (normalized_score or best_normalized_score)"""
    plot: str | None = None
    """also draw a bar chart (mean ± std per variant and dataset) of all results to this PNG"""
    curves: str | None = None
    """also draw learning curves (eval score against updates, from the runs' TensorBoard logs) to this PNG"""


def load_records(paths) -> list[dict]:
    records = []
    for path in paths:
        with open(path) as f:
            records += [json.loads(line) for line in f if line.strip()]
    return records


def varying_flags(ok: list[dict]) -> set[str]:
    """Flags that take more than one value within some script's runs: those name the variants."""
    flag_values = defaultdict(set)
    for r in ok:
        for k, v in r["flags"].items():
            flag_values[(r["script"], k)].add(v)
    return {k for (_, k), values in flag_values.items() if len(values) > 1}


def variant(record: dict, varying: set[str]) -> str:
    shown = [f"{k}={record['flags'][k]}" for k in sorted(varying) if k in record["flags"]]
    return record["script"] + (f" ({', '.join(shown)})" if shown else "")


def table(records: list[dict], metric: str = "normalized_score") -> str:
    """One markdown table: variants x datasets, mean ± std (n seeds) of `metric`, and on goal tasks the mean
    success rate (the fraction of evaluation episodes that reached the goal); failed runs counted apart."""
    ok = [r for r in records if r.get("status") == "ok"]
    varying = varying_flags(ok)
    datasets = sorted({r["dataset"] for r in ok}, key=lambda d: (d.split("/")[0], d))
    cells, speeds, successes = defaultdict(list), defaultdict(list), defaultdict(list)
    for r in ok:
        cells[(variant(r, varying), r["dataset"])].append(r[metric])
        if np.isfinite(r.get("success_rate", np.nan)):
            successes[(variant(r, varying), r["dataset"])].append(r["success_rate"])
        if r.get("updates_per_s"):
            speeds[variant(r, varying)].append(r["updates_per_s"])
    variants = sorted({v for v, _ in cells})
    lines = ["| algorithm | " + " | ".join(datasets) + " | updates/s |", "|---" * (len(datasets) + 2) + "|"]
    for v in variants:
        row = []
        for d in datasets:
            scores = cells.get((v, d))
            cell = f"{np.mean(scores):.1f} ± {np.std(scores):.1f} ({len(scores)})" if scores else "—"
            row.append(cell + (f", success {100 * np.mean(successes[(v, d)]):.0f}%" if successes.get((v, d)) else ""))
        speed = f"{np.median(speeds[v]):.0f}" if speeds[v] else "—"
        lines.append(f"| {v} | " + " | ".join(row) + f" | {speed} |")
    failed = [r["id"] for r in records if r.get("status") != "ok"]
    if failed:
        lines.append(f"\n{len(failed)} failed runs: {', '.join(failed)}")
    return "\n".join(lines)


def bar_chart(records: list[dict], path: str, metric: str = "normalized_score") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in records if r.get("status") == "ok"]
    varying = varying_flags(ok)
    datasets = sorted({r["dataset"] for r in ok})
    variants = sorted({variant(r, varying) for r in ok})
    width = 0.8 / max(len(variants), 1)
    figure, axis = plt.subplots(figsize=(max(6, 1.6 * len(datasets) * max(1, len(variants) / 2)), 3.8))
    for i, v in enumerate(variants):
        scores = [[r[metric] for r in ok if variant(r, varying) == v and r["dataset"] == d] for d in datasets]
        means = [np.mean(s) if s else np.nan for s in scores]
        stds = [np.std(s) if s else 0 for s in scores]
        axis.bar(np.arange(len(datasets)) + i * width, means, width, yerr=stds, label=v, capsize=2)
    axis.set_xticks(np.arange(len(datasets)) + width * (len(variants) - 1) / 2, [d.replace("/", "/\n") for d in datasets], fontsize=8)
    axis.set_ylabel("normalised score")
    axis.axhline(0, color="k", lw=0.5)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def learning_curves(records: list[dict], path: str, tag: str = "eval/normalized_score") -> dict:
    """Mean ± std over seeds of `tag` against updates, a panel per dataset: the score curve a sweep recorded with
    each run (scores at eval_steps, so it redraws anywhere), or any tag from the run's TensorBoard folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recorded = tag == "eval/normalized_score"
    ok = [r for r in records if r.get("status") == "ok"
          and ((recorded and r.get("eval_steps")) or os.path.isdir(r.get("extra", {}).get("run_path", "")))]  # fmt: skip
    if not ok:
        raise ValueError(f"No finished run in these results recorded its scores or has its TensorBoard folder here to draw {tag} from.")
    varying = varying_flags(ok)
    curves = defaultdict(list)  # (dataset, variant) -> one {step: value} per seed
    for r in ok:
        if recorded and r.get("eval_steps"):
            curves[(r["dataset"], variant(r, varying))].append(dict(zip(r["eval_steps"], r["scores"])))
            continue
        events = EventAccumulator(r["extra"]["run_path"], size_guidance={"scalars": 0}).Reload()
        if tag in events.Tags()["scalars"]:
            curves[(r["dataset"], variant(r, varying))].append({e.step: e.value for e in events.Scalars(tag)})
    datasets = sorted({d for d, _ in curves})
    drawn = {}  # (dataset, variant) -> (steps, mean over seeds)
    figure, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.4), squeeze=False)
    for axis, dataset in zip(axes[0], datasets):
        for (d, v), seeds in sorted(curves.items()):
            steps = sorted(set.intersection(*(set(c) for c in seeds))) if d == dataset else []
            if steps:
                values = np.array([[c[step] for step in steps] for c in seeds])
                mean, std = values.mean(0), values.std(0)
                drawn[(d, v)] = (steps, mean)
                axis.plot(steps, mean, marker=".", label=f"{v} ({len(seeds)})")
                axis.fill_between(steps, mean - std, mean + std, alpha=0.2)
        axis.set(title=dataset, xlabel="updates", ylabel=tag)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return drawn


def write_readme(path: str, text: str, start: str = START, end: str = END) -> None:
    """Replace what stands between the start and end markers of the file (atomically)."""
    with open(path) as f:
        readme = f.read()
    if start not in readme or end not in readme:
        raise ValueError(f"{path} has no '{start}' ... '{end}' markers to write the results between.")
    head, rest = readme.split(start, 1)
    tail = rest.split(end, 1)[1]
    temporary = f"{path}.tmp"
    with open(temporary, "w") as f:
        f.write(f"{head}{start}\n{text}\n{end}{tail}")
    os.replace(temporary, path)


def main(args: ReportArgs) -> str:
    sections = []
    for path in args.results:
        title = os.path.splitext(os.path.basename(path))[0]
        sections.append(f"#### {title}\n\n{table(load_records([path]), args.metric)}")
    text = "\n\n".join(sections)
    if args.plot:
        bar_chart(load_records(args.results), args.plot, args.metric)
    if args.curves:
        learning_curves(load_records(args.results), args.curves)
    if args.readme:
        write_readme(args.readme, text)
    print(text)
    return text


if __name__ == "__main__":
    main(tyro.cli(ReportArgs))
