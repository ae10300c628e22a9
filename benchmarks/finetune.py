"""Offline-to-online fine-tuning on the local suite: does CQL collapse when it goes online, and Cal-QL not?

    python benchmarks/finetune.py --readme README.md                   # pendulum/medium-v0 (dense), seeds 1 2 3
    python benchmarks/finetune.py --dataset pointmaze/umaze-medium-v0 --offline-steps 3000 --online-steps 2000 \
        --eval-every 500 --workers 1 --cql-flags hidden_dim=64 reward_scale=10 reward_shift=-5 lagrange=True \
        target_action_gap=0.8 --iql-flags return_range_scale=False --out benchmarks/results/finetune_maze
                                                                       # sparse 0/1 rewards as AntMaze's 10r - 5

Each method trains offline for --offline-steps updates, then fine-tunes for --online-steps env steps, one update
after each, and is evaluated every --eval-every updates through both phases: CQL fine-tuning (`cal_ql.py
--no-calibration`) and Cal-QL (`cal_ql.py`) on batches of half offline, half online data (the official scripts'
0.5), IQL (`iql.py --online-steps`) on batches drawn uniformly from both (the official code).
The runs go through benchmarks/sweep.py, so a rerun only runs what is missing and a run cut off continues from its
last checkpoint. Writes <out>.jsonl, <out>.md (a table of the score before fine-tuning, at the dip and at the end,
and the verdict) and <out>.png (normalised score against online env steps, mean ± sample std over seeds); with --readme,
the table and verdict also replace README's text between `<!-- finetune:start -->` and `<!-- finetune:end -->`.

The verdict is computed, never typed: a method collapses when its mean dip (each seed's lowest evaluation in the
first --dip-window online steps) is more than --collapse-points below its mean score before fine-tuning, and the 95%
bootstrap intervals of the two means do not overlap (report.beats: a drop within the seeds' noise is no collapse).
"""

import os
import time
from dataclasses import dataclass

import numpy as np
import tyro

import report
import sweep

START, END = "<!-- finetune:start -->", "<!-- finetune:end -->"
METHODS = {  # name -> (script, its flags): the comparison of the Cal-QL paper, and IQL
    "CQL": ("cal_ql", ("calibration=False",)),
    "Cal-QL": ("cal_ql", ("calibration=True",)),
    "IQL": ("iql", ()),
}


@dataclass
class FinetuneArgs:
    dataset: str = "pendulum/medium-v0"
    """dataset id: where the offline policy leaves room to improve"""
    seeds: tuple[int, ...] = (1, 2, 3)
    """seeds of every method (--cql-flags were chosen on seed 0, so it is not reported)"""
    offline_steps: int = 3_000
    """offline updates before going online (--total-steps of the scripts)"""
    online_steps: int = 3_000
    """env steps of the online phase, one update each"""
    eval_every: int = 250
    """updates between evaluations, through both phases"""
    eval_episodes: int = 10
    """episodes per evaluation"""
    cql_flags: tuple[str, ...] = ("hidden_dim=64", "hidden_layers=2", "actor_lr=3e-4", "gamma=0.97", "tau=0.05")
    """extra flags of both cal_ql.py runs as name=value: CPU-sized networks (the paper's 3x256 cost ~10x more), and a
    shorter horizon with faster targets so that Q gets near the data's returns in 3k updates and the calibration acts
    (seed 0, 3k updates: 3-12% of Q(s, a ~ pi) below V^mu at gamma 0.99, tau 0.005; 26-44% with these)"""
    iql_flags: tuple[str, ...] = ()
    """extra flags of the iql.py runs as name=value"""
    dip_window: int = 1_000
    """the dip is each seed's lowest evaluation in this many first online env steps"""
    collapse_points: float = 10.0
    """a mean dip this many normalised points below the score before fine-tuning, the 95% intervals apart, is a collapse"""
    workers: int = 2
    """parallel runs (one torch thread each)"""
    out: str = "benchmarks/results/finetune"
    """output path without extension: .jsonl, .md, .png"""
    readme: str | None = None
    """also write the table and the verdict into this README, between the finetune markers"""


def curves(records: list[dict], offline_steps: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """method -> (online env steps of each evaluation, scores (seeds, evaluations)); offline evaluations at steps <= 0."""
    by_method = {}
    for name, (script, flags) in METHODS.items():
        runs = [r for r in records if r.get("status") == "ok" and r["script"] == script and all(r["flags"].get(k) == v for k, v in (f.split("=", 1) for f in flags))]  # fmt: skip
        if runs:
            steps = sorted(set.intersection(*(set(r["eval_steps"]) for r in runs)))
            scores = np.array([[dict(zip(r["eval_steps"], r["scores"]))[s] for s in steps] for r in runs])
            by_method[name] = (np.array(steps) - offline_steps, scores)
    return by_method


def summarize(by_method: dict, dip_window: int, collapse_points: float) -> list[dict]:
    """Per method: the score before going online, the dip, the end (means and stds over seeds), and the verdict."""
    rows = []
    for name, (env_steps, scores) in by_method.items():
        before = scores[:, env_steps <= 0][:, -1]  # the last offline evaluation
        dip = scores[:, (env_steps > 0) & (env_steps <= dip_window)].min(1)
        end = scores[:, -1]
        collapses = before.mean() - dip.mean() > collapse_points and report.beats(before, dip)
        rows.append(dict(method=name, seeds=len(scores), before=before, dip=dip, end=end, collapses=bool(collapses)))
    return rows


def verdict(rows: list[dict]) -> str:
    said = {row["method"]: row["collapses"] for row in rows}
    if "CQL" not in said or "Cal-QL" not in said:
        return "not measured: CQL and Cal-QL are both needed"
    held = said["CQL"] and not said["Cal-QL"]
    return (f"**{'yes' if held else 'no'}**: CQL fine-tuning {'collapses' if said['CQL'] else 'does not collapse'}, "
            f"Cal-QL {'collapses' if said['Cal-QL'] else 'does not'}")  # fmt: skip


def write_report(args: FinetuneArgs, records: list[dict], wall_s: float) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_method = curves(records, args.offline_steps)
    rows = summarize(by_method, args.dip_window, args.collapse_points)
    figure, axis = plt.subplots(figsize=(6.5, 4))
    for name, (env_steps, scores) in by_method.items():
        mean, std = scores.mean(0), scores.std(0, ddof=1) if len(scores) > 1 else np.zeros(scores.shape[1])
        axis.plot(env_steps, mean, marker=".", label=f"{name} ({len(scores)} seeds)")
        axis.fill_between(env_steps, mean - std, mean + std, alpha=0.2)
    axis.axvline(0, color="grey", linestyle="--", linewidth=1)
    axis.set(title=f"{args.dataset}: offline, then online", xlabel="online env steps (offline updates before 0)", ylabel="normalised score")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(f"{args.out}.png", dpi=80)
    plt.close(figure)

    cell = lambda x: report.summary(list(x), seeds=False)  # noqa: E731 - mean ± sample std [95% CI]
    table = "\n".join(
        [f"| method | before fine-tuning | dip (lowest in the first {args.dip_window} online steps) | end ({args.online_steps} online steps) | collapse |", "|-|-|-|-|-|"]
        + [f"| {r['method']} | {cell(r['before'])} | {cell(r['dip'])} | {cell(r['end'])} | {'yes' if r['collapses'] else 'no'} |" for r in rows]
    )  # fmt: skip
    compute_min = sum(r.get("wall_time_s", 0.0) for r in records) / 60
    text = (
        f"# Offline-to-online fine-tuning on {args.dataset}\n\n"
        f"`python benchmarks/finetune.py` — {args.offline_steps} offline updates, then {args.online_steps} online env steps "
        f"(one update each; CQL and Cal-QL mix half offline, half online data, IQL samples both uniformly), evaluated every {args.eval_every} updates on {args.eval_episodes} episodes; "
        f"seeds {', '.join(map(str, args.seeds))}; CQL and Cal-QL with {' '.join('--' + f.replace('_', '-').replace('=', ' ') for f in args.cql_flags) or 'defaults'}, "
        f"IQL with {' '.join('--' + f.replace('_', '-').replace('=', ' ') for f in args.iql_flags) or 'defaults'}. "
        f"Normalised score, mean ± sample std [95% bootstrap CI of the mean] over seeds. Compute: {compute_min:.0f} min of runs, {wall_s / 60:.0f} min wall time "
        f"this invocation.\n\n{table}\n\n"
        f"Does CQL collapse (mean dip more than {args.collapse_points:g} points below the score before fine-tuning, the "
        f"intervals apart) and "
        f"Cal-QL not? {verdict(rows)}.\n\n![score against online steps]({os.path.basename(args.out)}.png)\n"
    )
    with open(f"{args.out}.md", "w") as f:
        f.write(text)
    if args.readme:
        summary = (f"Results on {args.dataset} ({len(args.seeds)} seeds, {args.offline_steps} offline updates, {args.online_steps} online steps, "
                   f"[{os.path.basename(args.out)}.md]({os.path.relpath(args.out, os.path.dirname(os.path.abspath(args.readme)) or '.')}.md)):"
                   f"\n\n{table}\n\nCQL collapses and Cal-QL does not: {verdict(rows)}.")  # fmt: skip
        report.write_readme(args.readme, summary, START, END)
    return text


def main(args: FinetuneArgs) -> str:
    started = time.time()
    common = (f"total_steps={args.offline_steps}", f"online_steps={args.online_steps}", f"eval_every={args.eval_every}",
              f"eval_episodes={args.eval_episodes}", "log_every=250")  # fmt: skip
    for script, grid, extra in (("cal_ql", ("calibration=True,False",), args.cql_flags), ("iql", (), args.iql_flags)):
        sweep.main(sweep.SweepArgs(scripts=(script,), datasets=(args.dataset,), seeds=args.seeds, grid=grid, flags=(*common, *extra),
                                   workers=args.workers, results=f"{args.out}.jsonl", checkpoint_every=1000))  # fmt: skip
    text = write_report(args, report.load_records([f"{args.out}.jsonl"]), time.time() - started)
    print(text)
    return text


if __name__ == "__main__":
    main(tyro.cli(FinetuneArgs))
