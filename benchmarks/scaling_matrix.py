"""The data-scaling matrix of Park et al. 2024 (Fig. 1 style): value-data size x policy-data size.

    python benchmarks/scaling_matrix.py --dataset pointmaze/umaze-stitch-v0 --value iql \
        --fractions 0.1 0.3 1.0 --seeds 0 1 --flags total_steps=20000

For each extraction script (AWR, DDPG+BC, SfBC) and every (value-data fraction, policy-data fraction)
pair, one run per seed through benchmarks/sweep.py (resumable: finished runs are skipped), then one
heatmap per extraction side by side, mean normalised score in each cell. Colour gradients that run
vertically mean "policy-bounded" (more policy data helps, more value data does not), horizontally
"value-bounded".
"""

import json
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tyro  # noqa: E402

import sweep  # noqa: E402


@dataclass
class MatrixArgs:
    dataset: str = "pointmaze/umaze-stitch-v0"
    """dataset id"""
    value: str = "iql"
    """value learner passed to every script (--value iql|sarsa)"""
    scripts: tuple[str, ...] = ("awr", "ddpg_bc", "sfbc")
    """extraction scripts, one heatmap each"""
    fractions: tuple[float, ...] = (0.1, 0.3, 1.0)
    """data fractions for both axes (nested subsets of the training episodes)"""
    seeds: tuple[int, ...] = (0,)
    """seeds per cell"""
    flags: tuple[str, ...] = ("total_steps=20000",)
    """fixed flags for every run (name=value)"""
    workers: int = 2
    """parallel runs"""
    checkpoint_every: int = 0
    """write a checkpoint every N updates so a cut-off run resumes from it (0 = never)"""
    results: str = "benchmarks/results/scaling_matrix.jsonl"
    """sweep results file (reruns skip finished runs)"""
    out: str = "benchmarks/results/scaling_matrix"
    """output prefix: <out>.png and <out>.md"""
    work_dir: str = "benchmarks/out"
    """each run's log goes to <work_dir>/logs, its TensorBoard folder to <work_dir>/runs"""


def normalized_score(record: dict) -> float:
    return record["normalized_score"]


def matrices(
    records: list[dict], args: MatrixArgs, panels: dict[str, dict] | None = None, score: Callable[[dict], float] = normalized_score
) -> dict[str, np.ndarray]:  # fmt: skip
    """panel -> (value fraction x policy fraction) mean score, NaN where no run finished. A panel's runs are those
    whose script and flags are its filter's (default: a panel per script, its value learner args.value); `score`
    reads a run's number (goal-conditioned matrices: the success rate in %)."""
    panels = panels or {script: {"script": script, "value": args.value} for script in args.scripts}
    cells = defaultdict(list)
    for r in records:
        if r.get("status") != "ok" or r["dataset"] != args.dataset:
            continue
        fractions = (float(r["flags"]["value_data_fraction"]), float(r["flags"]["policy_data_fraction"]))
        for label, where in panels.items():
            if all((r["script"] if name == "script" else r["flags"].get(name)) == value for name, value in where.items()):
                cells[(label, *fractions)].append(score(r))
    out = {}
    for label in panels:
        grid = np.full((len(args.fractions), len(args.fractions)), np.nan)
        for i, value_fraction in enumerate(args.fractions):
            for j, policy_fraction in enumerate(args.fractions):
                scores = cells.get((label, value_fraction, policy_fraction))
                if scores:
                    grid[i, j] = np.mean(scores)
        out[label] = grid
    return out


def draw(grids: dict[str, np.ndarray], args: MatrixArgs, what: str = "normalised score") -> None:
    figure, axes = plt.subplots(1, len(grids), figsize=(4 * len(grids), 3.6), squeeze=False)
    labels = [f"{f:g}" for f in args.fractions]
    for axis, (script, grid) in zip(axes[0], grids.items()):
        image = axis.imshow(grid, origin="lower", cmap="viridis", vmin=0, vmax=max(100, np.nanmax(grid) if np.isfinite(grid).any() else 100))
        for (i, j), value in np.ndenumerate(grid):
            axis.text(j, i, "—" if np.isnan(value) else f"{value:.0f}", ha="center", va="center", color="w")
        axis.set(title=f"{script} ({args.value} value)", xlabel="policy-data fraction", ylabel="value-data fraction",
                 xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels)  # fmt: skip
        figure.colorbar(image, ax=axis, fraction=0.046)
    figure.suptitle(f"data-scaling matrix on {args.dataset}: {what}, mean of {len(args.seeds)} seed(s)")
    figure.tight_layout()
    figure.savefig(f"{args.out}.png", dpi=80)
    plt.close(figure)


def markdown(grids: dict[str, np.ndarray], args: MatrixArgs) -> str:
    lines = [f"Data-scaling matrix on `{args.dataset}`, value learner `{args.value}`, flags {' '.join(args.flags)}, "
             f"seeds {list(args.seeds)}. Rows: value-data fraction; columns: policy-data fraction.\n"]  # fmt: skip
    for script, grid in grids.items():
        lines += [f"**{script}**\n", "| value \\ policy | " + " | ".join(f"{f:g}" for f in args.fractions) + " |",
                  "|---" * (len(args.fractions) + 1) + "|"]  # fmt: skip
        for fraction, row in zip(args.fractions, grid):
            lines.append(f"| {fraction:g} | " + " | ".join("—" if np.isnan(v) else f"{v:.1f}" for v in row) + " |")
        lines.append("")
    return "\n".join(lines)


def main(args: MatrixArgs) -> dict[str, np.ndarray]:
    fractions = ",".join(f"{f:g}" for f in args.fractions)
    sweep.main(sweep.SweepArgs(
        scripts=args.scripts, datasets=(args.dataset,), seeds=args.seeds, workers=args.workers, results=args.results,
        grid=(f"value_data_fraction={fractions}", f"policy_data_fraction={fractions}"),
        flags=(*args.flags, f"value={args.value}"),
        logs=os.path.join(args.work_dir, "logs"), run_dir=os.path.join(args.work_dir, "runs"), checkpoint_every=args.checkpoint_every,
    ))  # fmt: skip
    with open(args.results) as f:
        records = [json.loads(line) for line in f if line.strip()]
    grids = matrices(records, args)
    draw(grids, args)
    text = markdown(grids, args)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(f"{args.out}.md", "w") as f:
        f.write(text)
    print(text)
    return grids


if __name__ == "__main__":
    main(tyro.cli(MatrixArgs))
