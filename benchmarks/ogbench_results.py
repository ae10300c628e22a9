"""The OGBench results table and learning curves, from a sweep's records, and the build record of each local dataset.

    python benchmarks/ogbench_results.py --commands      # the sweep commands of the plan below (run them in order)
    python benchmarks/ogbench_results.py                 # ogbench.md + ogbench.png + the OGBench part of datasets.md

PLAN is the table: one budget per dataset (updates, evaluation interval and episodes), every script at those flags
and its defaults otherwise, seeds REPORT_SEEDS. A cell is the success rate in % at the last evaluation, mean ± sample
std (ddof 1) over the seeds that have finished, and says "k of N runs" until all have. Records with other flags or
seeds (an earlier sweep, a seed-0 pilot) are listed under the table, never mixed into it.

Learning curves need the success rate at every evaluation, which a sweep record does not hold (only the last one):
`attach_success_curves` reads it from each run's TensorBoard folder while that folder is here and writes it into the
record as `success_rates` (aligned with `eval_steps`), so the curves redraw from the committed records alone.
"""

import dataclasses
import json
import os
import shlex
import sys
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import tyro

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "algorithms"))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import report  # noqa: E402

SCRIPTS = ("bc", "iql", "td3_bc", "rebrac", "cql")
REPORT_SEEDS = (1, 2, 3)  # seed 0 ran first as a pilot (speed, budget); it is never in the table
DATASETS_START, DATASETS_END = "<!-- ogbench-datasets:start -->", "<!-- ogbench-datasets:end -->"
COMMON_FLAGS = {"batch_size": "256", "progress": "False"}  # batch 256 for every script, ReBRAC too (its default: 1024)
SCRIPT_FLAGS = {
    "rebrac": {"actor_bc_coef": "1.0", "critic_bc_coef": "0.0"}
}  # FQL README's ReBRAC example (visual cube)


@dataclass(frozen=True)
class Budget:
    total_steps: int
    eval_every: int
    eval_episodes: int
    scripts: tuple[str, ...] = ("bc", "iql", "td3_bc", "rebrac")


PLAN = {  # in the order they ran; cube-single got the most updates: 2.2% of its transitions solve the task (pointmaze 0.3%)
    "ogbench/cube-single-play-singletask-task2-v0": Budget(15_000, 3_000, 20),
    "ogbench/pointmaze-medium-navigate-singletask-v0": Budget(5_000, 1_000, 20),
    "ogbench/scene-play-singletask-task2-v0": Budget(2_000, 1_000, 10),
    "ogbench/puzzle-3x3-play-singletask-task4-v0": Budget(2_000, 1_000, 10),
}
CQL_BUDGET = Budget(2_000, 1_000, 20, ("cql",))  # ~20-30x slower per update than the others on one core
# CQL at 2,000 updates everywhere (its cells say so), evaluated as the other scripts on the same dataset
PLAN_CQL = {dataset: dataclasses.replace(CQL_BUDGET, eval_episodes=budget.eval_episodes) for dataset, budget in PLAN.items()}

# Published single-task success rates beside ours: {(dataset, script): (value text, source)}, and what they are.
CUBE, SCENE = "ogbench/cube-single-play-singletask-task2-v0", "ogbench/scene-play-singletask-task2-v0"
FQL_TABLE = ("FQL (Park, Li & Levine 2025, arXiv 2502.02538) Table 1 as transcribed in public GitHub READMEs (the stored "
             "copy of the paper gives its opening page only): the mean over the dataset's five single tasks, 8 seeds")
PUBLISHED: dict[tuple[str, str], tuple[str, str]] = {
    (CUBE, "iql"): ("83 ± 3 (5-task mean)", FQL_TABLE + "; one transcription"),
    (CUBE, "rebrac"): ("91 ± 2 (5-task mean)", FQL_TABLE + "; one transcription"),
    (SCENE, "iql"): ("28 (5-task mean)", FQL_TABLE + "; two transcriptions agree on the mean, not on its std (± 1, ± 3)"),
    (SCENE, "rebrac"): ("41 ± 3 (5-task mean)", FQL_TABLE + "; one transcription"),
}
PUBLISHED_NOTE = (
    "OGBench publishes no single-task numbers (its README: no official offline-RL results, see the FQL repository). "
    "FQL reports BC, IQL, ReBRAC and others per task in an appendix and per dataset (mean of five tasks) in its Table 1; "
    "only Table 1's IQL and ReBRAC on cube-single and scene could be read here, through transcriptions, so they stand "
    "beside our task-2 numbers as the dataset's five-task mean, not task 2's own. Nothing was found for puzzle-3x3, "
    "pointmaze or BC. Their budget: 1M updates, batch 256, 4 x 512 networks, 50 evaluation episodes, OGBench's "
    "1M-transition files (FQL's main.py and agents/): 70 to 500 times our updates on ten times our data."
)


def planned_flags(dataset: str, script: str) -> dict[str, str] | None:
    """The flags a table run of (dataset, script) was given (as a sweep records them: strings), None where not planned."""
    budget = PLAN_CQL.get(dataset) if script == "cql" else PLAN.get(dataset)
    if budget is None or script not in budget.scripts:
        return None
    flags = {"total_steps": str(budget.total_steps), "eval_every": str(budget.eval_every)}
    return flags | {"eval_episodes": str(budget.eval_episodes)} | COMMON_FLAGS | SCRIPT_FLAGS.get(script, {})


def sweep_commands(results: str = "benchmarks/results/ogbench.jsonl") -> list[str]:
    """One sweep command per (dataset, script) of the plan, seeds REPORT_SEEDS, cheapest datasets first."""
    commands = []
    for plan in (PLAN, PLAN_CQL):
        for dataset, budget in plan.items():
            for script in budget.scripts:
                flags = planned_flags(dataset, script)
                commands.append(shlex.join(
                    ["python", "benchmarks/sweep.py", "--scripts", script, "--datasets", dataset, "--seeds",
                     *map(str, REPORT_SEEDS), "--flags", *(f"{k}={v}" for k, v in flags.items()), "--results", results,
                     "--logs", "benchmarks/out/ogbench_logs", "--run-dir", "benchmarks/out/ogbench_runs"]))  # fmt: skip
    return list(dict.fromkeys(commands))


def is_planned(record: dict) -> bool:
    flags = planned_flags(record["dataset"], record["script"])
    return flags is not None and record["flags"] == flags and record["seed"] in REPORT_SEEDS


def attach_success_curves(records: list[dict]) -> int:
    """Give each finished record without `success_rates` the success rate at each of its eval_steps, read from its
    TensorBoard folder where that is still here. Returns how many records changed."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    changed = 0
    for r in records:
        run_path = r.get("extra", {}).get("run_path", "")
        if r.get("status") != "ok" or "success_rates" in r or not os.path.isdir(run_path):
            continue
        events = EventAccumulator(run_path, size_guidance={"scalars": 0}).Reload()
        if "eval/success_rate" not in events.Tags()["scalars"]:
            continue
        by_step = {e.step: e.value for e in events.Scalars("eval/success_rate")}
        r["success_rates"] = [by_step.get(step, float("nan")) for step in r["eval_steps"]]
        changed += 1
    return changed


def success_cell(records: list[dict], planned: int) -> str:
    """'mean ± std' of the final success rate in %, with 'k of N runs' until every planned seed has finished."""
    count = f"{len(records)} of {planned} runs"
    if not records:
        return f"— ({count})"
    success = [100 * r["success_rate"] for r in records]
    spread = f" ± {report.sample_std(success):.1f}" if len(success) > 1 else ""
    return f"{np.mean(success):.1f}{spread} ({count})"


def detail_cell(runs: list[dict]) -> str:
    """Mean final return; the best success rate any evaluation of a run reached (mean over seeds); wall time; speed."""
    if not runs:
        return "—"
    best = [100 * max(r["success_rates"]) for r in runs if r.get("success_rates")]
    return (f"{np.mean([r['returns'][-1] for r in runs]):.0f}; best {np.mean(best) if best else float('nan'):.1f}%; "
            f"{np.mean([r['wall_time_s'] for r in runs]):.0f} s; {np.mean([r['updates_per_s'] for r in runs]):.0f}/s")  # fmt: skip


def results_table(records: list[dict]) -> str:
    """The plan's table: a row per dataset, a column per script; then returns and wall time per cell."""
    by_cell = defaultdict(list)
    for r in records:
        if r.get("status") == "ok" and is_planned(r):
            by_cell[(r["dataset"], r["script"])].append(r)
    header = ["| dataset (task) | updates · eval | " + " | ".join(SCRIPTS) + " |", "|---" * (len(SCRIPTS) + 2) + "|"]
    success_rows, detail_rows = (
        list(header),
        ["| dataset | " + " | ".join(SCRIPTS) + " |", "|---" * (len(SCRIPTS) + 1) + "|"],
    )
    for dataset, budget in PLAN.items():
        cells, details = [], []
        for script in SCRIPTS:
            flags = planned_flags(dataset, script)
            if flags is None:
                cells.append("not run")
                details.append("")
                continue
            runs = by_cell[(dataset, script)]
            cells.append(
                success_cell(runs, len(REPORT_SEEDS))
                + (f" at {flags['total_steps']} updates" if script == "cql" else "")
                + (f"; FQL: {PUBLISHED[(dataset, script)][0]}" if (dataset, script) in PUBLISHED else "")
            )
            details.append(detail_cell(runs))
        name = dataset.split("/")[1]
        success_rows.append(f"| {name} | {budget.total_steps:,} · every {budget.eval_every:,}, {budget.eval_episodes} episodes | "
                            + " | ".join(cells) + " |")  # fmt: skip
        detail_rows.append(f"| {name} | " + " | ".join(details) + " |")
    return "\n".join(success_rows), "\n".join(detail_rows)


def other_records(records: list[dict]) -> list[str]:
    """One line per group of records outside the plan (other flags or seeds) and per failed run."""
    groups = defaultdict(list)
    for r in records:
        if r.get("status") != "ok":
            groups[("failed", r["script"], r["dataset"], r.get("error", "")[-200:])].append(r["seed"])
        elif not is_planned(r):
            flags = " ".join(f"{k}={v}" for k, v in sorted(r["flags"].items()))
            groups[(f"{100 * r['success_rate']:.0f}%", r["script"], r["dataset"], flags)].append(r["seed"])
    lines = []
    for (what, script, dataset, detail), seeds in sorted(
        groups.items(), key=lambda item: (item[0][2], item[0][1], item[0][3])
    ):
        lines.append(f"- {script} {dataset.split('/')[1]} seeds {sorted(seeds)}: {what}; {detail}")
    return lines


def curves(records: list[dict]) -> dict[tuple[str, str], tuple[list[int], np.ndarray, np.ndarray, int]]:
    """(dataset, script) -> (eval steps, mean and sample std of the success rate in % over seeds, seeds) of the plan's
    finished runs that carry success_rates; steps are those every one of them evaluated at."""
    by_cell = defaultdict(list)
    for r in records:
        if r.get("status") == "ok" and is_planned(r) and r.get("success_rates"):
            by_cell[(r["dataset"], r["script"])].append(dict(zip(r["eval_steps"], r["success_rates"])))
    drawn = {}
    for key, runs in by_cell.items():
        steps = sorted(set.intersection(*(set(run) for run in runs)))
        values = 100 * np.array([[run[step] for step in steps] for run in runs])
        std = values.std(0, ddof=1) if len(runs) > 1 else np.zeros(len(steps))
        drawn[key] = (steps, values.mean(0), std, len(runs))
    return drawn


def plot_curves(drawn: dict, path: str) -> None:
    """Success rate against updates, one panel per dataset of the plan, one line per script (band: ± sample std)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(PLAN), figsize=(3.6 * len(PLAN), 3.0), squeeze=False)
    colours = dict(zip(SCRIPTS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))  # a script's colour in every panel
    for axis, dataset in zip(axes[0], PLAN):
        for script in SCRIPTS:
            if (dataset, script) in drawn:
                steps, mean, std, seeds = drawn[(dataset, script)]
                axis.plot(steps, mean, marker=".", color=colours[script], label=f"{script} ({seeds})")
                axis.fill_between(steps, mean - std, mean + std, color=colours[script], alpha=0.15)
        axis.set_title(dataset.split("/")[1].replace("-singletask", "\nsingletask"), fontsize=8)
        top = max([float(np.max(m + s)) for (d, _), (_, m, s, _) in drawn.items() if d == dataset] + [0.0])
        axis.set(xlabel="updates", ylabel="success rate %", ylim=(-1, max(10.0, 1.15 * top)))  # near 0: zoom in
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
        else:
            axis.text(0.5, 0.5, "no finished runs", ha="center", va="center", transform=axis.transAxes)
    figure.tight_layout()
    figure.savefig(path, dpi=70)
    plt.close(figure)


def published_lines() -> list[str]:
    return [PUBLISHED_NOTE, "", *[
        f"- {script} {dataset.split('/')[1]}: {value} ({source})"
        for (dataset, script), (value, source) in PUBLISHED.items()
    ]]


def datasets_table(directory: str, previous: str = "") -> str:
    """A row per OGBench file in `directory` (its build record and size, built on the file's date), and the rows of
    `previous` (the section as it stood) for files not here: a build measured before is kept, never dropped."""
    import ogbench_suite

    header = ["| OGBench file | episodes x transitions (train) | val episodes | build s (train + val) | env steps/s | MB (both files) | OGBench's size | built |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    kept = {
        line.split("|")[1].strip(): line
        for line in previous.splitlines()
        if line.startswith("| ") and "---" not in line
    }
    lines = []
    for name, recipe in ogbench_suite.RECIPES.items():
        train, val = ogbench_suite.dataset_paths(name, directory)
        if not train.exists():
            if name in kept:
                old = kept[name]
                lines.append(
                    old
                    if old.count("|") == 9
                    else old + " before 2026-12-05 18:46 UTC (file not on this machine now) |"
                )
            continue
        megabytes = (train.stat().st_size + val.stat().st_size) / 1e6
        built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(train.stat().st_mtime))
        info, val_info = ogbench_suite.local_build_info(train), ogbench_suite.local_build_info(val)
        if info is None:
            lines.append(f"| {name} | OGBench's official file | | | | {megabytes:.1f} | | {built} |")
            continue
        rate = (info["rows"] + val_info["rows"]) / info["build_seconds"]
        lines.append(f"| {name} | {info['episodes']} x {info['episode_length'] - 1} = {info['transitions']:,} | {val_info['episodes']} "
                     f"| {info['build_seconds']:.0f} | {rate:.0f} | {megabytes:.1f} | {recipe.episodes} x {recipe.episode_length - 1} | {built} |")  # fmt: skip
    return "\n".join(header + lines)


def render(records: list[dict], curves_png: str) -> str:
    """The whole of ogbench.md from the records."""
    success, details = results_table(records)
    ok = [r for r in records if r.get("status") == "ok" and is_planned(r)]
    planned = sum(len(REPORT_SEEDS) for d in PLAN for s in SCRIPTS if planned_flags(d, s) is not None)
    hours = sum(r["wall_time_s"] for r in ok) / 3600
    others = other_records(records)
    return "\n".join([
        "# OGBench single-task, locally generated data (generated by benchmarks/ogbench_results.py)",
        "",
        "Success rate in % at the last evaluation (OGBench's metric: the episode ended on success), mean ± sample std "
        f"over seeds {', '.join(map(str, REPORT_SEEDS))}, with how many of the planned runs have finished. Budgets, data "
        "and machine: [docs/ogbench.md](../../docs/ogbench.md). Every other flag is the script's default; batch 256 for "
        "every script; ReBRAC " + ", ".join(f"{k}={v}" for k, v in SCRIPT_FLAGS["rebrac"].items()) + ".",
        "",
        success,
        "",
        f"{len(ok)} of {planned} planned runs finished; {hours:.2f} h of run time (training and evaluation, one run at a "
        "time on one core).",
        "",
        f"![success rate against updates]({os.path.basename(curves_png)})",
        "",
        "Per cell: mean final return (−1 per step and unsolved subtask); the best success rate any evaluation of a run "
        "reached, mean over seeds (an evaluation is 10–20 episodes: one success is 5–10%); mean wall time per run "
        "(training and evaluation); updates/s:",
        "",
        details,
        "",
        "## Published numbers",
        "",
        *published_lines(),
        "",
        "## Records outside the table",
        "",
        *(others or ["none"]),
        "",
    ])  # fmt: skip


@dataclass
class Args:
    results: str = "benchmarks/results/ogbench.jsonl"
    """the sweep's records (success curves are written back into it from the runs' TensorBoard folders)"""
    out: str = "benchmarks/results/ogbench.md"
    """the table written"""
    curves_png: str = "benchmarks/results/ogbench.png"
    """the learning curves drawn"""
    directory: str | None = None
    """where the runs' OGBench files are (default: CLEANOFFRL_OGBENCH_DIR or OGBench's): their build records go into --datasets-md"""
    datasets_md: str = "benchmarks/results/datasets.md"
    """the datasets page whose OGBench section (between the ogbench-datasets markers) is rewritten"""
    commands: bool = False
    """print the plan's sweep commands and stop"""


def main(args: Args) -> None:
    if args.commands:
        print("\n".join(sweep_commands(args.results)))
        return
    with open(args.results) as file:
        records = [json.loads(line) for line in file if line.strip()]
    if attach_success_curves(records):
        with open(args.results + ".tmp", "w") as file:
            file.writelines(json.dumps(r) + "\n" for r in records)
        os.replace(args.results + ".tmp", args.results)
    plot_curves(curves(records), args.curves_png)
    with open(args.out, "w") as file:
        file.write(render(records, args.curves_png))
    import ogbench_suite

    directory = args.directory or os.environ.get("CLEANOFFRL_OGBENCH_DIR") or ogbench_suite.DEFAULT_DIRECTORY
    text = open(args.datasets_md).read()
    previous = text[text.index(DATASETS_START) : text.index(DATASETS_END)]
    section = f"{DATASETS_START}\n{datasets_table(directory, previous)}\n{DATASETS_END}"
    text = text[: text.index(DATASETS_START)] + section + text[text.index(DATASETS_END) + len(DATASETS_END) :]
    with open(args.datasets_md, "w") as file:
        file.write(text)
    print(open(args.out).read())


if __name__ == "__main__":
    main(tyro.cli(Args))
