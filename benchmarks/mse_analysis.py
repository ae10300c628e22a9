"""Return vs training / validation / evaluation action MSE (Park et al. 2024, the B3 analysis).

    python benchmarks/mse_analysis.py "benchmarks/out/runs/*pendulum_medium*" --out benchmarks/results/mse_pendulum_medium

Every evaluation of every run given (TensorBoard folders written by the algorithm scripts on a local-suite
dataset) is one point: its normalised score against the policy's action MSE to the scripted expert on
training states, validation states and the states the policy visited (mse/{train,valid,eval}_expert,
and each tagged policy's own, e.g. OPEX's mse/eval_expert_beta0.1 with eval/normalized_score_beta0.1). The plot has one panel per MSE,
the table the Pearson and Spearman correlation of score with each: "evaluation MSE tracks return far
better than validation MSE" holds when the eval column is the most negative.
"""

import glob
import os
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tyro  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

SCORE = "eval/normalized_score"
SPLITS = ("train", "valid", "eval")


@dataclass
class AnalysisArgs:
    runs: tyro.conf.Positional[tuple[str, ...]]
    """run folders or glob patterns of them"""
    out: str = "benchmarks/results/mse_analysis"
    """output prefix: <out>.png and <out>.md"""


def collect(run_dirs: list[str]) -> dict[str, np.ndarray]:
    """{'score': (P,), 'train': (P,), 'valid': (P,), 'eval': (P,)} over every evaluation step of every run."""
    points = {key: [] for key in ("score", *SPLITS)}
    for run_dir in run_dirs:
        events = EventAccumulator(run_dir, size_guidance={"scalars": 0}).Reload()
        tags = set(events.Tags()["scalars"])
        # every evaluated policy of the run: the plain one (no suffix) and tagged ones (_beta0.1, _ttt, ...)
        suffixes = [tag[len(SCORE):] for tag in tags if tag.startswith(SCORE)]
        for suffix in suffixes:
            if not all(f"mse/{s}_expert{suffix}" in tags for s in SPLITS):
                continue
            by_step = {key: {e.step: e.value for e in events.Scalars(tag)}
                       for key, tag in [("score", SCORE + suffix)] + [(s, f"mse/{s}_expert{suffix}") for s in SPLITS]}  # fmt: skip
            for step in sorted(set.intersection(*(set(v) for v in by_step.values()))):
                for key in points:
                    points[key].append(by_step[key][step])
    return {key: np.array(values) for key, values in points.items()}


def within_groups(groups: list[list[str]]) -> dict[str, np.ndarray]:
    """collect() of each group of run folders (e.g. one dataset and variant, every seed), each centred on its own
    means, then pooled: correlations of these compare policies of one kind on one dataset, not datasets or kinds
    (on the mazes, pooled BC and 10% BC differ in how they move more than in how well they imitate the expert)."""
    centred = [{key: values - values.mean() for key, values in collect(runs).items()} for runs in groups]
    return {key: np.concatenate([c[key] for c in centred if len(c["score"])]) for key in ("score", *SPLITS)}


def rank(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x)).astype(float)


def correlations(points: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """split -> (Pearson, Spearman) correlation of score with that MSE."""
    out = {}
    for split in SPLITS:
        x, y = points[split], points["score"]
        if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
            out[split] = (float("nan"), float("nan"))
        else:
            out[split] = (float(np.corrcoef(x, y)[0, 1]), float(np.corrcoef(rank(x), rank(y))[0, 1]))
    return out


def main(args: AnalysisArgs) -> dict[str, tuple[float, float]]:
    run_dirs = sorted({d for pattern in args.runs for d in glob.glob(pattern) if os.path.isdir(d)})
    points = collect(run_dirs)
    if len(points["score"]) == 0:
        raise SystemExit(
            f"No evaluations with all of mse/{{train,valid,eval}}_expert in {len(run_dirs)} run folders matching {args.runs}: "
            "the runs need a scripted-expert dataset and held-out episodes (train them with --validation-fraction 0.1)."
        )
    corr = correlations(points)
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharey=True)
    for axis, split in zip(axes, SPLITS):
        axis.scatter(points[split], points["score"], s=12, alpha=0.7)
        axis.set(xscale="log", xlabel=f"{split} MSE to the expert", title=f"{split}: Pearson {corr[split][0]:+.2f}")
    axes[0].set_ylabel("normalised score")
    figure.suptitle(f"{len(points['score'])} evaluations from {len(run_dirs)} runs")
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    figure.savefig(f"{args.out}.png", dpi=80)
    plt.close(figure)
    where = os.path.relpath(os.path.commonpath(run_dirs)) if len(run_dirs) > 1 else os.path.relpath(run_dirs[0])
    lines = [f"{len(points['score'])} evaluations from {len(run_dirs)} runs under {where}.\n",
             "| MSE to the expert on | Pearson r with score | Spearman ρ with score |", "|---|---|---|"]  # fmt: skip
    lines += [f"| {split} states | {corr[split][0]:+.2f} | {corr[split][1]:+.2f} |" for split in SPLITS]
    with open(f"{args.out}.md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return corr


if __name__ == "__main__":
    main(tyro.cli(AnalysisArgs))
