"""Markdown tables (mean ± std over seeds, 95% confidence intervals, IQM) from sweep results, optionally into README.md.

    python benchmarks/report.py benchmarks/results/*.jsonl
    python benchmarks/report.py benchmarks/results/*.jsonl --readme README.md
    python benchmarks/report.py benchmarks/results/claims/stitching.jsonl --plot bars.png --curves curves.png

Rows are algorithm variants (script + the flags that differ between runs), columns are datasets, cells are the final
normalised score as mean ± sample std (ddof 1) [95% bootstrap confidence interval of the mean] (number of seeds); a last
column aggregates the datasets as rliable does (Agarwal et al. 2021): the interquartile mean over every dataset and seed
with its 95% stratified-bootstrap interval (seeds resampled within each dataset). One method beats another only where
their intervals do not overlap (`beats`). With --readme, the text between `<!-- results:start -->` and
`<!-- results:end -->` is replaced, so README numbers are never typed by hand.
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
    """which recorded score to tabulate (normalized_score, best_normalized_score, or success_rate in %: the goal-conditioned scripts' score)"""
    plot: str | None = None
    """also draw a bar chart (mean ± std per variant and dataset) of all results to this PNG"""
    curves: str | None = None
    """also draw learning curves (eval score against updates, from the runs' TensorBoard logs) to this PNG"""


# --- statistics: what a table cell says, and when one method beats another ---------------------------------------------
BOOTSTRAP_REPS = 10_000  # resamples per interval; fixed seed, so a table regenerates to the same numbers


def iqm(values, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the middle half, floor(n/4) values cut from each end (scipy's trim_mean(x, 0.25),
    which rliable uses): robust to one outlying seed, less noisy than the median."""
    ordered = np.sort(np.asarray(values, dtype=float), axis=axis)
    cut = ordered.shape[axis] // 4
    return np.take(ordered, range(cut, ordered.shape[axis] - cut), axis=axis).mean(axis=axis)


def bootstrap_ci(strata, statistic=iqm, confidence: float = 0.95, reps: int = BOOTSTRAP_REPS, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of `statistic` over all values, resampling with replacement within each stratum (a dataset's
    seeds): the stratified bootstrap of rliable. `strata` is a list of lists of scores; one stratum is a plain bootstrap."""
    strata = [np.asarray(s, dtype=float) for s in strata if len(s)]
    if not strata:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    resampled = np.concatenate([s[rng.integers(0, len(s), size=(reps, len(s)))] for s in strata], axis=1)
    low, high = np.percentile(statistic(resampled, axis=1), [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(low), float(high)


def mean_interval(values) -> tuple[float, float]:
    """95% bootstrap interval of the mean over seeds (with 3 seeds: about [min, max])."""
    return bootstrap_ci([values], statistic=np.mean)


def sample_std(values) -> float:
    """Standard deviation over seeds with ddof = 1 (the estimate of the spread of a new seed); NaN for one value."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def beats(a, b) -> bool:
    """a beats b: both measured, and a's 95% interval of the mean lies wholly above b's."""
    return bool(len(a) and len(b) and mean_interval(a)[0] > mean_interval(b)[1])


def summary(values, seeds: bool = True) -> str:
    """mean ± sample std [95% CI of the mean] (n): one cell; a single value alone; "—" for none."""
    if not len(values):
        return "—"
    count = f" ({len(values)})" if seeds else ""
    if len(values) == 1:
        return f"{values[0]:.1f}{count}"
    low, high = mean_interval(values)
    return f"{np.mean(values):.1f} ± {sample_std(values):.1f} [{low:.1f}, {high:.1f}]{count}"


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
    """One markdown table: variants x datasets, `summary` of `metric` over seeds, and on goal tasks the mean success rate
    (the fraction of evaluation episodes that reached the goal); with two datasets or more, each variant's IQM over every
    dataset and seed [95% stratified-bootstrap CI]; failed runs counted apart."""
    ok = [r for r in records if r.get("status") == "ok"]
    varying = varying_flags(ok)
    datasets = sorted({r["dataset"] for r in ok}, key=lambda d: (d.split("/")[0], d))
    cells, speeds, successes = defaultdict(list), defaultdict(list), defaultdict(list)
    for r in ok:
        cells[(variant(r, varying), r["dataset"])].append(100 * r[metric] if metric == "success_rate" else r[metric])  # in %
        if np.isfinite(r.get("success_rate", np.nan)):
            successes[(variant(r, varying), r["dataset"])].append(r["success_rate"])
        if r.get("updates_per_s"):
            speeds[variant(r, varying)].append(r["updates_per_s"])
    variants = sorted({v for v, _ in cells})
    aggregate = len(datasets) > 1
    head = ["algorithm", *datasets] + (["IQM over datasets [95% CI]"] if aggregate else []) + ["updates/s"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for v in variants:
        row = []
        for d in datasets:
            row.append(summary(cells.get((v, d), [])) + (f", success {100 * np.mean(successes[(v, d)]):.0f}%" if successes.get((v, d)) else ""))
        if aggregate:
            strata = [cells[(v, d)] for d in datasets if cells.get((v, d))]
            low, high = bootstrap_ci(strata)
            row.append(f"{iqm(np.concatenate(strata)):.1f} [{low:.1f}, {high:.1f}]" + ("" if len(strata) == len(datasets) else f" ({len(strata)} datasets)"))
        speed = f"{np.median(speeds[v]):.0f}" if speeds[v] else "—"
        lines.append(f"| {v} | " + " | ".join(row) + f" | {speed} |")
    lines.append("\nmean ± sample std (ddof 1) [95% bootstrap CI of the mean] (seeds)"
                 + ("; IQM: interquartile mean over every dataset and seed, its CI a stratified bootstrap (seeds resampled within each dataset)" if aggregate else "")
                 + ". A method beats another where the intervals do not overlap.")  # fmt: skip
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
        stds = [np.nan_to_num(sample_std(s)) for s in scores]
        axis.bar(np.arange(len(datasets)) + i * width, means, width, yerr=stds, label=v, capsize=2)
    axis.set_xticks(np.arange(len(datasets)) + width * (len(variants) - 1) / 2, [d.replace("/", "/\n") for d in datasets], fontsize=8)
    axis.set_ylabel("normalised score")
    axis.axhline(0, color="k", lw=0.5)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def learning_curves(records: list[dict], path: str, tag: str = "eval/normalized_score") -> dict:
    """Mean ± sample std over seeds of `tag` against updates, a panel per dataset: the score curve a sweep recorded with
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
                mean, std = values.mean(0), values.std(0, ddof=1) if len(values) > 1 else np.zeros(len(steps))
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
