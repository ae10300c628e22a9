"""The seed claims, one command each: tune, run, write the table, the plots and whether the claim held.

    python benchmarks/claims.py offline-rl-beats-bc   # 1. TD3+BC, IQL, CQL beat BC on noisy / mixed data
    python benchmarks/claims.py stitching             # 2. on a stitching maze, TD learning beats BC, %BC and DT
    python benchmarks/claims.py ddpg-bc-vs-awr        # 3. DDPG+BC >= AWR across the data-scaling matrix
    python benchmarks/claims.py test-time             # 4. OPEX and TTT raise a trained policy's score
    python benchmarks/claims.py eval-mse              # 5. evaluation MSE tracks return better than validation MSE
    python benchmarks/claims.py gc-ddpg-bc-vs-awr     # 6. claim 3 on a goal-conditioned task, with GC-IQL, GC-SARSA and CRL
    python benchmarks/claims.py all --readme README.md

The papers' protocol: a hyperparameter a claim tunes (DDPG+BC's and AWR's alpha per matrix cell, OPEX's beta, TTT's
settings) is tried on the tuning seeds (--tuning-seeds, results in <claim>_tuning.jsonl), the combination with the
best mean final score is kept, and every verdict is computed on fresh seeds (--seeds) that chose nothing. Each
seed evaluates on its own start states (data.eval_seed), mazes on 50 episodes, pendulum on 20.

Each claim runs its grid through benchmarks/sweep.py (resumable: a rerun only runs what is missing, so a
finished claim rewrites its report in seconds; a run cut off mid-way continues from its last checkpoint,
written every CHECKPOINT_EVERY updates) and writes benchmarks/results/claims/<claim>.{jsonl,md,png} with the
learning curves of its runs (from the recorded evaluations, so they redraw anywhere). The verdict is computed
from the numbers, never typed: "yes" when the claim holds in every comparison it names, "partly" when in some,
"no" when in none; a win is a 95% bootstrap interval of the mean over seeds wholly above the other's (no overlap).
With --readme the claims table of README.md (between `<!-- claims:start -->` and `<!-- claims:end -->`) is
regenerated: every row with `all`, the claim's own row with one claim. Budgets are CPU-sized (thousands of updates,
not the papers' million) and stated in every report, with the claim's compute time.
"""

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import mse_analysis
import numpy as np
import report
import scaling_matrix
import sweep
import tyro

OUT = "benchmarks/results/claims"
# updates between checkpoints of every training run: a run cut off (SIGTERM, a machine going away) loses at most
# this many and continues from there on the rerun; writing a checkpoint costs far less than 1000 updates
CHECKPOINT_EVERY = 1000
START, END = "<!-- claims:start -->", "<!-- claims:end -->"
TUNING_SEEDS = (0,)  # hyperparameters are chosen on these seeds' final scores...
SEEDS = (10, 11, 12)  # ...and verdicts are reported on these: no earlier run, study or choice in this project used them
EVAL_EPISODES = {"pendulum": 20, "pointmaze": 50, "ogbench": 10}  # per dataset family: a maze's success is a coin flip
# per episode; OGBench's goal-conditioned evaluation runs this many per evaluation goal, five goals
PENDULUM_NOISY = ("pendulum/mixed-v0", "pendulum/medium-v0")
STITCH_MAZE = "pointmaze/medium-stitch-v0"  # umaze is too small: 10% BC solves it (NOTES.md)
# IQL on sparse-reward mazes: the antmaze settings of the paper (expectile 0.9, temperature 10, rewards as logged),
# the TD target clipped to the rewards' range so V stays within 1/(1-gamma) (benchmarks/results/maze_recipe.md)
IQL_MAZE = ("expectile=0.9", "temperature=10", "return_range_scale=False", "clip_target=True")
FRACTIONS = "0.1,0.3,1.0"  # the data-scaling matrix's axes, both: value data and policy data
MATRIX_DATASETS = ("pendulum/mixed-v0", "pointmaze/umaze-stitch-v0")
# the seed's three value learners on a goal-conditioned task (OGBench's point maze, built locally): a label, the script
# and the flags that make it; each paired with both extractions
GC_MATRIX_DATASET = "ogbench/pointmaze-medium-navigate-v0"
GC_VALUE_LEARNERS = {"GC-IQL": {"script": "gciql", "expectile": "0.9"}, "GC-SARSA": {"script": "gciql", "expectile": "0.5"},
                     "CRL": {"script": "crl"}}  # fmt: skip
GC_FRACTIONS = "0.1,1.0"  # 2 x 2: 144 runs of 5k updates fit a 2-core VM's few hours; 3 x 3 would be 324
TEST_TIME_DATASETS = ("pendulum/medium-v0", "pointmaze/umaze-stitch-v0")


@dataclass(frozen=True)
class Grid:
    """One sweep of a claim: every script x dataset x `grid` cell on the report seeds, each at the combination of
    `tuned` values that scored best on the tuning seeds for that script, dataset and cell."""

    scripts: tuple[str, ...]
    datasets: tuple[str, ...]
    flags: tuple[str, ...] = ()  # name=value, every run
    grid: tuple[str, ...] = ()  # name=v1,v2,...: every combination is a cell of the report
    tuned: tuple[str, ...] = ()  # name=v1,v2,...: every combination is tried on the tuning seeds, the best one reported
    checkpoint_of: str | None = None  # test-time scripts: act on the saved policy of this script, same dataset and seed


MATRIX = {
    "flags": ("value=iql", "total_steps=2000", "hidden_dim=128", "eval_every=1000"),
    "grid": (f"value_data_fraction={FRACTIONS}", f"policy_data_fraction={FRACTIONS}"),
}
GC_MATRIX = {"flags": ("total_steps=5000", "hidden_dim=128", "eval_every=2500"),
             "fractions": (f"value_data_fraction={GC_FRACTIONS}", f"policy_data_fraction={GC_FRACTIONS}")}  # fmt: skip
SWEEPS = {  # claim -> its sweeps, run in order
    "offline-rl-beats-bc": [
        Grid(("bc",), PENDULUM_NOISY, ("total_steps=10000", "eval_every=2500")),
        Grid(("td3_bc", "iql"), PENDULUM_NOISY, ("total_steps=10000", "eval_every=2500")),
        Grid(("cql",), PENDULUM_NOISY, ("total_steps=5000", "hidden_dim=64", "eval_every=1000")),
    ],
    "stitching": [
        Grid(("bc",), (STITCH_MAZE,), ("total_steps=10000", "eval_every=2500"), grid=("top_fraction=1.0,0.1",)),
        Grid(("dt",), (STITCH_MAZE,), ("total_steps=4000", "eval_every=1000")),
        Grid(("iql",), (STITCH_MAZE,), ("total_steps=30000", "eval_every=5000", *IQL_MAZE)),
        # at its default alpha 2.5 TD3+BC stays at the start (0% success at 10k updates, seed 0): more weight on Q tried
        Grid(("td3_bc",), (STITCH_MAZE,), ("total_steps=20000", "eval_every=5000", "return_range_scale=False"), tuned=("alpha=2.5,10",)),
    ],
    # Park et al. tune each extraction per matrix cell; alpha grids a factor 10 apart around each script's default
    "ddpg-bc-vs-awr": [
        Grid(("ddpg_bc",), MATRIX_DATASETS, **MATRIX, tuned=("alpha=0.03,0.3,3",)),
        Grid(("awr",), MATRIX_DATASETS, **MATRIX, tuned=("alpha=0.3,3,30",)),
    ],
    # DDPG+BC trains and saves, on the tuning seeds too; OPEX and TTT then act on each saved policy
    "test-time": [
        Grid(("ddpg_bc",), TEST_TIME_DATASETS, ("total_steps=5000", "hidden_dim=128", "save_model=True")),
        Grid(("opex",), TEST_TIME_DATASETS, tuned=("betas=0.01,0.03,0.1,0.3",), checkpoint_of="ddpg_bc"),
        Grid(
            ("ttt",),
            TEST_TIME_DATASETS,
            tuned=("ttt_learning_rate=1e-4,1e-3",),
            checkpoint_of="ddpg_bc",
        ),
    ],
    # OGBench's alpha on the point mazes (hyperparameters.sh: GCIQL DDPG+BC 0.003, CRL 0.03; AWR temperatures 1-10
    # in its other agents) and a factor 10 on each side
    "gc-ddpg-bc-vs-awr": [
        Grid(("gciql",), (GC_MATRIX_DATASET,), GC_MATRIX["flags"], grid=("extraction=ddpg_bc", "expectile=0.9,0.5", *GC_MATRIX["fractions"]),
             tuned=("alpha=0.0003,0.003,0.03",)),
        Grid(("gciql",), (GC_MATRIX_DATASET,), GC_MATRIX["flags"], grid=("extraction=awr", "expectile=0.9,0.5", *GC_MATRIX["fractions"]),
             tuned=("alpha=1,3,10",)),
        Grid(("crl",), (GC_MATRIX_DATASET,), GC_MATRIX["flags"], grid=("extraction=ddpg_bc", *GC_MATRIX["fractions"]),
             tuned=("alpha=0.003,0.03,0.3",)),
        Grid(("crl",), (GC_MATRIX_DATASET,), GC_MATRIX["flags"], grid=("extraction=awr", *GC_MATRIX["fractions"]), tuned=("alpha=1,3,10",)),
    ],  # fmt: skip
    "eval-mse": [
        # the validation MSE needs held-out episodes: the scripts train on all of them unless asked
        Grid(
            ("bc",),
            ("pendulum/expert-v0", *PENDULUM_NOISY),
            ("total_steps=5000", "eval_every=1250", "validation_fraction=0.1"),
            grid=("top_fraction=1.0,0.1",),
        ),
        Grid(
            ("bc",),
            ("pointmaze/medium-medium-v0", "pointmaze/large-medium-v0"),  # not stitch data: eval_mse_maze_study.md
            ("total_steps=4000", "eval_every=1000", "validation_fraction=0.1"),
            grid=("top_fraction=1.0,0.1",),
        ),
    ],
}
TITLES = {
    "offline-rl-beats-bc": "Offline RL (TD3+BC, IQL, CQL) beats BC on noisy / mixed data",
    "stitching": "On a stitching maze, TD methods succeed where BC, %BC and DT fail",
    "ddpg-bc-vs-awr": "DDPG+BC ≥ AWR from the same value function, across the data-scaling matrix",
    "test-time": "OPEX and TTT raise a trained policy's score without retraining",
    "eval-mse": "Evaluation MSE tracks return far better than validation MSE",
    "gc-ddpg-bc-vs-awr": "DDPG+BC ≥ AWR on a goal-conditioned task, with each of GC-IQL, GC-SARSA and CRL, across the data-scaling matrix",
}


@dataclass
class ClaimsArgs:
    claim: tyro.conf.Positional[
        Literal["offline-rl-beats-bc", "stitching", "ddpg-bc-vs-awr", "test-time", "eval-mse", "gc-ddpg-bc-vs-awr", "all"]
    ]
    """which claim to run and report (all: every claim in turn)"""
    seeds: tuple[int, ...] = SEEDS
    """report seeds: every verdict is computed on these (fresh: never used to choose a hyperparameter)"""
    tuning_seeds: tuple[int, ...] = TUNING_SEEDS
    """seeds the tuned hyperparameters (SWEEPS' `tuned` grids) are chosen on; never reported"""
    workers: int = 2
    """parallel runs (one torch thread each)"""
    work_dir: str = "benchmarks/out/claims"
    """each run's log and TensorBoard folder go under <work_dir>/<claim>/"""
    readme: str | None = None
    """regenerate the claims table of this README from the reports (one claim: its row only, the others kept)"""
    checkpoint_every: int = CHECKPOINT_EVERY
    """each training run writes a checkpoint every N updates, and a cut-off one resumes from it; 0 = never"""
    run: bool = True
    """--no-run: run nothing, write the reports (and with --readme the table) from the runs recorded so far; a claim
    still part-way shows what finished (a matrix cell with no run is "—")"""


def finished(records: list[dict], script: str, dataset: str, **flags) -> list[dict]:
    """The finished runs of `script` on `dataset` whose flags include `flags`."""
    return [r for r in records if r.get("status") == "ok" and r["script"] == script and r["dataset"] == dataset
            and all(r["flags"].get(k) == v for k, v in flags.items())]  # fmt: skip


def scores(records: list[dict], script: str, dataset: str, policy: str | None = None, **flags) -> list[float]:
    """Final scores of those runs: the main policy's, or the one a script evaluated besides it
    (RunResult.policy_scores: "beta0.1" for OPEX, "ttt" for TTT)."""
    runs = finished(records, script, dataset, **flags)
    return [r["normalized_score"] if policy is None else r["policy_scores"][policy] for r in runs]


def success_rates(records: list[dict], script: str, dataset: str, **flags) -> list[float]:
    return [r["success_rate"] for r in finished(records, script, dataset, **flags) if np.isfinite(r.get("success_rate", np.nan))]


def mean_std(values: list[float]) -> str:
    """mean ± sample std [95% bootstrap CI of the mean] over the report seeds (report.summary)."""
    return report.summary(values, seeds=False)


def verdict(wins: list[bool]) -> str:
    return "yes" if wins and all(wins) else ("partly" if any(wins) else "no")


def beats(a: list[float], b: list[float]) -> bool:
    """a's 95% bootstrap interval of the mean wholly above b's (report.beats): with 3 seeds, a's worst above b's best."""
    return report.beats(a, b)


def offline_rl_beats_bc(records: list[dict]) -> tuple[str, str]:
    wins, parts = [], []
    for dataset in PENDULUM_NOISY:
        bc = scores(records, "bc", dataset)
        parts.append(f"{dataset}: BC {mean_std(bc)}")
        for script in ("td3_bc", "iql", "cql"):
            theirs = scores(records, script, dataset)
            wins.append(beats(theirs, bc))
            parts[-1] += f", {script} {mean_std(theirs)}" + (" (beats BC)" if wins[-1] else "")
    return verdict(wins), "; ".join(parts)


TD_METHODS = {"iql": "IQL", "td3_bc": "TD3+BC"}


def stitching(records: list[dict]) -> tuple[str, str]:
    """Each TD method succeeds: ahead of every baseline, and reaching the goal in at least half the episodes."""
    baselines = {"BC": scores(records, "bc", STITCH_MAZE, top_fraction="1.0"),
                 "10% BC": scores(records, "bc", STITCH_MAZE, top_fraction="0.1"), "DT": scores(records, "dt", STITCH_MAZE)}  # fmt: skip
    wins, parts = [], []
    for script, name in TD_METHODS.items():
        theirs, rates = scores(records, script, STITCH_MAZE), success_rates(records, script, STITCH_MAZE)
        wins += [beats(theirs, baseline) for baseline in baselines.values()] + [bool(rates) and np.mean(rates) >= 0.5]
        parts.append(f"{name} {mean_std(theirs)}" + (f" (success {100 * np.mean(rates):.0f}%)" if rates else ""))
    text = (
        f"{STITCH_MAZE}: " + ", ".join(parts) + " vs " + ", ".join(f"{k} {mean_std(v)}" for k, v in baselines.items())
    )
    rates = {
        k: success_rates(records, "bc", STITCH_MAZE, top_fraction=f) for k, f in (("BC", "1.0"), ("10% BC", "0.1"))
    }
    rates["DT"] = success_rates(records, "dt", STITCH_MAZE)
    if any(rates.values()):
        text += " (success " + ", ".join(f"{k} {100 * np.mean(v):.0f}%" for k, v in rates.items() if v) + ")"
    return verdict(wins), text


def test_time(records: list[dict]) -> tuple[str, str]:
    """OPEX at its chosen beta against the same checkpoint's plain policy, TTT against its own base evaluation."""
    wins, parts = [], []
    for dataset in TEST_TIME_DATASETS:
        opex_runs = finished(records, "opex", dataset)
        beta = opex_runs[0]["flags"]["betas"] if opex_runs else "?"  # the one chosen on the tuning seeds
        base = scores(records, "opex", dataset)  # the checkpoint's own policy, evaluated by opex.py
        opex = scores(records, "opex", dataset, f"beta{float(beta):g}") if opex_runs else []
        ttt = scores(records, "ttt", dataset, "ttt")
        wins += [beats(opex, base), beats(ttt, scores(records, "ttt", dataset))]
        parts.append(f"{dataset}: DDPG+BC {mean_std(base)} → OPEX (β {beta}) {mean_std(opex)}, TTT {mean_std(ttt)}")
    return verdict(wins), "; ".join(parts)


def parse(items: tuple[str, ...]) -> list[dict[str, str]]:
    """("a=1,2", "b=x") -> every combination as a dict: [{"a": "1", "b": "x"}, {"a": "2", "b": "x"}]."""
    names, values = zip(*(item.split("=", 1) for item in items)) if items else ((), ())
    return [dict(zip(names, combination)) for combination in itertools.product(*(v.split(",") for v in values))]


def tuned_score(record: dict) -> float:
    """The score of the policy a run is about: a test-time script's adjusted policy, else the run's own (a
    goal-conditioned run's: its success rate in %, OGBench's metric)."""
    if record.get("task_success_rates"):
        return 100 * record["success_rate"]
    return next(iter(record["policy_scores"].values())) if record.get("policy_scores") else record["normalized_score"]


def configs(
    grid: Grid, seeds, checkpoint: Callable[[str, str, int], str], choose: Callable[[str, str, dict], dict]
) -> list[dict]:
    """Every run of `grid` on `seeds`, each cell at the tuned values `choose(script, dataset, cell)` returns."""
    runs = []
    for script, dataset, seed, cell in itertools.product(grid.scripts, grid.datasets, seeds, parse(grid.grid)):
        flags = {
            "eval_episodes": str(EVAL_EPISODES[dataset.split("/")[0]]),
            **dict(f.split("=", 1) for f in grid.flags),
            **cell,
        }
        # a test-time script acts on the policy the base script saved for this dataset and seed
        if grid.checkpoint_of:
            flags["checkpoint"] = checkpoint(grid.checkpoint_of, dataset, seed)
        for tuned in choose(script, dataset, cell):
            runs.append(sweep.config(script, dataset, seed, {**flags, **tuned}))
    return runs


def best(records: list[dict], script: str, dataset: str, cell: dict, candidates: list[dict]) -> dict:
    """The candidate with the best mean tuned_score over its finished tuning runs of `script` on `dataset` in `cell`."""

    def mean_score(tuned: dict) -> float:
        found = [tuned_score(r) for r in finished(records, script, dataset, **cell, **tuned)]
        return np.mean(found) if found else -np.inf

    return max(candidates, key=mean_score)  # the first of equals: the grids list their values in order


def run_sweeps(claim: str, args: ClaimsArgs) -> tuple[list[dict], list[dict]]:
    """Tune on the tuning seeds, then run every grid on the report seeds; returns (report records, tuning records)."""
    prefix = os.path.join(OUT, claim)
    where = {kind: sweep.SweepArgs(workers=args.workers, results=f"{prefix}{suffix}.jsonl", checkpoint_every=args.checkpoint_every,
                                   logs=os.path.join(args.work_dir, claim, "logs"), run_dir=os.path.join(args.work_dir, claim, "runs"))
             for kind, suffix in (("report", ""), ("tuning", "_tuning"))}  # fmt: skip

    def loaded(kind: str) -> list[dict]:
        return report.load_records([where[kind].results]) if os.path.exists(where[kind].results) else []

    trained_on_tuning_seeds = {grid.checkpoint_of for grid in SWEEPS[claim]}  # base policies the tuning acts on

    def checkpoint(script: str, dataset: str, seed: int) -> str:
        found = [r for r in finished(loaded("tuning") + loaded("report"), script, dataset) if r["seed"] == seed]
        if not found:
            raise SystemExit(
                f"{claim}: no finished {script} run on {dataset}, seed {seed}, to act on; see its log under {args.work_dir}."
            )
        return os.path.join(found[-1]["extra"]["run_path"], "checkpoint.pt")

    def longest_first(runs: list[dict]) -> list[dict]:  # the pool's last runs leave a worker idle: keep them short
        return sorted(runs, key=lambda run: -int(run["flags"].get("total_steps", 0)))

    # the grids training from data first, then those acting on their checkpoints; in each, every tuning run in one
    # sweep, then every report run in one sweep at the values the tuning chose
    for grids in ([g for g in SWEEPS[claim] if not g.checkpoint_of], [g for g in SWEEPS[claim] if g.checkpoint_of]):
        if not args.run or not grids:
            continue
        tuned = [g for g in grids if g.tuned or g.scripts[0] in trained_on_tuning_seeds]
        every = [run for g in tuned for run in configs(g, args.tuning_seeds, checkpoint, lambda *_, g=g: parse(g.tuned))]
        if every:
            sweep.main(where["tuning"], runs=longest_first(every))
        tuning = loaded("tuning")

        def chosen(grid: Grid, tuning: list[dict] = tuning):
            return lambda script, dataset, cell: [best(tuning, script, dataset, cell, parse(grid.tuned))]

        sweep.main(where["report"], runs=longest_first([run for g in grids for run in configs(g, args.seeds, checkpoint, chosen(g))]))
    return loaded("report"), loaded("tuning")


def choices(claim: str, records: list[dict]) -> str:
    """What the tuning chose, one line per script, dataset and cell: the tuned flags of its report runs."""
    chosen = {}
    for grid in SWEEPS[claim]:
        names, cell_names = [t.split("=")[0] for t in grid.tuned], [g.split("=")[0] for g in grid.grid]
        for r in records:
            if names and r.get("status") == "ok" and r["script"] in grid.scripts and r["dataset"] in grid.datasets:
                cell = ", ".join(f"{k} {r['flags'][k]}" for k in cell_names)
                chosen[(r["script"], r["dataset"], cell)] = ", ".join(f"{n} {r['flags'][n]}" for n in names)
    return "\n".join(f"- {s} on {d}{f' ({c})' if c else ''}: {v}" for (s, d, c), v in sorted(chosen.items()))


def budget_lines(claim: str, args: ClaimsArgs) -> str:
    def option(item: str) -> str:  # as on a command line: tyro's booleans are --flag / --no-flag
        name, value = item.split("=", 1)
        name = name.replace("_", "-")  # a value keeps its underscores (--extraction ddpg_bc)
        return {"True": f"--{name}", "False": f"--no-{name}"}.get(value, f"--{name} {value}")

    def options(items):
        return " ".join(map(option, items))

    lines, families = [], {dataset.split("/")[0] for grid in SWEEPS[claim] for dataset in grid.datasets}
    for grid in SWEEPS[claim]:
        on = f"the checkpoint of each {grid.checkpoint_of} run" if grid.checkpoint_of else ", ".join(grid.datasets)
        line = f"- `{' '.join(grid.scripts)}` on {on}: {options(grid.flags + grid.grid)}"
        if grid.tuned:
            line += f"; tuned on seeds {list(args.tuning_seeds)} over {options(grid.tuned)}"
        lines.append(line)
    episodes = [f"{family} {n}" + (" per evaluation goal" if family == "ogbench" else "") for family, n in EVAL_EPISODES.items() if family in families]
    return (
        "\n".join(lines)
        + "\n- evaluation episodes per evaluation: " + ", ".join(episodes)
    )


def compute_minutes(claim: str) -> float:
    """Wall time of a claim's recorded runs, tuning included, summed (CPU-minutes at one thread per run; a resumed
    run counts its last attempt only)."""
    paths = [p for p in (os.path.join(OUT, f"{claim}{s}.jsonl") for s in ("", "_tuning")) if os.path.exists(p)]
    return sum(r.get("wall_time_s", 0.0) for r in report.load_records(paths)) / 60


def ddpg_bc_against_awr(
    records: list[dict], figures: list[tuple[str, scaling_matrix.MatrixArgs, dict | None]], score: Callable[[dict], float], unit: str
) -> tuple[tuple[str, str], str]:  # fmt: skip
    """DDPG+BC against AWR cell by cell, each cell at its tuned alpha, in each figure: (its name, its matrix, the filters
    of its two panels, None for one panel per script); `unit` "%" for success rates, "" for normalised scores."""
    wins, parts, body = [], [], []
    for name, matrix_args, panels in figures:
        grids = scaling_matrix.matrices(records, matrix_args, panels, score=score)
        scaling_matrix.draw(grids, matrix_args, what="success rate (%)" if unit == "%" else "normalised score")
        cells = (grids["ddpg_bc"] >= grids["awr"]).ravel().tolist()
        wins += cells
        parts.append(f"{name}: DDPG+BC ≥ AWR in {sum(cells)} of {len(cells)} cells, mean{' success' if unit else ''} over cells "
                     f"DDPG+BC {np.nanmean(grids['ddpg_bc']):.1f}{unit}, AWR {np.nanmean(grids['awr']):.1f}{unit}")  # fmt: skip
        body.append(scaling_matrix.markdown(grids, matrix_args) + f"\n![{name}]({os.path.basename(matrix_args.out)}.png)\n")
    return (verdict(wins), "; ".join(parts)), "\n".join(body)


def matrix(records: list[dict], prefix: str, args: ClaimsArgs) -> tuple[tuple[str, str], str]:
    """The data-scaling matrices, one per dataset, with IQL's value."""
    fractions = tuple(map(float, FRACTIONS.split(",")))
    figures = [(dataset, scaling_matrix.MatrixArgs(dataset=dataset, value="iql", scripts=("ddpg_bc", "awr"), seeds=args.seeds,
                fractions=fractions, flags=MATRIX["flags"], out=f"{prefix}_{dataset.split('/')[0]}"), None) for dataset in MATRIX_DATASETS]  # fmt: skip
    return ddpg_bc_against_awr(records, figures, scaling_matrix.normalized_score, unit="")


def gc_matrix(records: list[dict], prefix: str, args: ClaimsArgs) -> tuple[tuple[str, str], str]:
    """The goal-conditioned data-scaling matrices, one per value learner, on success rates in %."""
    fractions = tuple(map(float, GC_FRACTIONS.split(",")))
    figures = [(learner, scaling_matrix.MatrixArgs(dataset=GC_MATRIX_DATASET, value=learner, seeds=args.seeds, fractions=fractions,
                flags=GC_MATRIX["flags"], out=f"{prefix}_{learner.lower()}"),
                {extraction: {**where, "extraction": extraction} for extraction in ("ddpg_bc", "awr")})
               for learner, where in GC_VALUE_LEARNERS.items()]  # fmt: skip
    return ddpg_bc_against_awr(records, figures, tuned_score, unit="%")


def eval_mse(records: list[dict], prefix: str) -> tuple[tuple[str, str], str]:
    """Correlations of score with the MSE on eval / valid / train states, per dataset family (their scales differ),
    within each dataset and variant (top_fraction): the verdict's numbers (pooled ones are in the report too)."""
    wins, parts, body = [], [], []
    for family in ("pendulum", "pointmaze"):
        ok = [r for r in records if r.get("status") == "ok" and r["dataset"].startswith(family)]
        if not ok:
            continue
        groups = {}
        for r in ok:
            groups.setdefault((r["dataset"], r["flags"].get("top_fraction")), []).append(r["extra"]["run_path"])
        mse_analysis.main(mse_analysis.AnalysisArgs(runs=tuple(r["extra"]["run_path"] for r in ok), out=f"{prefix}_{family}"))
        corr = mse_analysis.correlations(mse_analysis.within_groups(list(groups.values())))
        wins += [corr["eval"][0] < corr["valid"][0] - 0.1, corr["eval"][1] < corr["valid"][1] - 0.1]  # both statistics
        numbers = " / ".join(f"{corr[s][0]:+.2f}" for s in ("eval", "valid", "train"))
        ranks = " / ".join(f"{corr[s][1]:+.2f}" for s in ("eval", "valid", "train"))
        parts.append(f"{family} ({len(ok)} runs, {len(groups)} dataset × variant groups): Pearson r of score with MSE on "
                     f"eval / valid / train states {numbers}, Spearman ρ {ranks}")  # fmt: skip
        body.append(
            f"## {family}\n\nWithin each dataset × variant (every value centred on its group's mean, then pooled): "
            f"Pearson r {numbers}, Spearman ρ {ranks} (eval / valid / train). Pooled across groups:\n\n"
            + Path(f"{prefix}_{family}.md").read_text()
            + f"\n![{family}]({os.path.basename(prefix)}_{family}.png)\n"
        )
    return (verdict(wins), "; ".join(parts)), "\n".join(body)


def run_claim(claim: str, args: ClaimsArgs) -> tuple[str, str] | None:
    """Run (or resume) one claim's experiments and write its report; returns (verdict, numbers), or None where the
    report cannot be redrawn here (its committed report and README row then stand)."""
    os.makedirs(OUT, exist_ok=True)
    prefix = os.path.join(OUT, claim)
    records, tuning = run_sweeps(claim, args)
    planned = sum(len(g.scripts) * len(g.datasets) * len(args.seeds) * len(parse(g.grid)) for g in SWEEPS[claim])
    done = len([r for r in records if r.get("status") == "ok"])
    if not done:
        print(f"{claim}: no finished run yet")
        return "not run yet", f"`python benchmarks/claims.py {claim}` has not finished a run"
    # tables and plots group runs by their flags: leave out what differs by seed or was chosen (listed in the report)
    # (and eval_episodes, set by the dataset's family); a test-time script's row is its adjusted policy's score
    hidden = {"checkpoint", "eval_episodes"} | {item.split("=")[0] for grid in SWEEPS[claim] for item in grid.tuned}
    shown = [dict(r, flags={k: v for k, v in r["flags"].items() if k not in hidden}, normalized_score=tuned_score(r),
                  success_rate=r.get("success_rate") if not r.get("policy_scores") else float("nan")) for r in records]  # fmt: skip
    if claim == "ddpg-bc-vs-awr":
        result, body = matrix(records, prefix, args)
    elif claim == "gc-ddpg-bc-vs-awr":
        result, body = gc_matrix(records, prefix, args)
    elif claim == "eval-mse":
        absent = [r for r in records if r.get("status") == "ok" and not os.path.isdir(r["extra"]["run_path"])]
        if absent:  # its MSE curves live in the runs' TensorBoard folders, not in the records
            print(f"eval-mse: {len(absent)} of its runs' TensorBoard folders are not on this machine, so its committed "
                  "report and README row are kept; `python benchmarks/claims.py eval-mse` reruns them and redraws it.")  # fmt: skip
            return None
        result, body = eval_mse(records, prefix)
    else:
        result = {"offline-rl-beats-bc": offline_rl_beats_bc, "stitching": stitching, "test-time": test_time}[claim](
            records
        )
        report.bar_chart(shown, f"{prefix}.png")
        body = report.table(shown) + f"\n\n![{claim}]({claim}.png)"
    if claim != "eval-mse":  # its runs are every evaluation's point in the plots above
        curves = report.learning_curves(shown, f"{prefix}_curves.png")
        body += f"\n\nLearning curves (mean ± sample std over the report seeds):\n\n![learning curves]({claim}_curves.png)"
        # the mean score still climbing at the end: more updates could change these numbers
        rising = [f"{variant} on {dataset}" for (dataset, variant), (_, mean) in curves.items() if len(mean) > 1 and mean[-1] - mean[-2] > 5]
        body += "\n\nStill rising at the end (last evaluation > 5 points above the one before): " + (", ".join(rising) or "none") + "."
    result = result[0], f"{result[1]}; compute: {compute_minutes(claim):.0f} min"
    if done < planned:  # --no-run on a claim still part-way
        result = f"not yet ({done} of {planned} runs)", result[1]
    tuned = (
        f"\n\nChosen on the tuning seeds {list(args.tuning_seeds)} (their runs: {claim}_tuning.jsonl):\n{choices(claim, records)}"
        if tuning
        else ""
    )
    with open(f"{prefix}.md", "w") as f:
        f.write(f"# {TITLES[claim]}\n\n**Held: {result[0]}.** {result[1]}\n\n"
                f"Command: `python benchmarks/claims.py {claim}`. Normalised scores at the last evaluation, mean ± sample std "
                f"[95% bootstrap CI of the mean] over the report seeds {list(args.seeds)}, 2-core CPU, one torch thread per run. Budgets:\n"
                f"{budget_lines(claim, args)}{tuned}\n\n{body}\n")  # fmt: skip
    print(f"{claim}: held {result[0]}: {result[1]}")
    return result


def readme_table(results: dict[str, tuple[str, str]], previous: str = "") -> str:
    """The claims table: a row per claim, from `results` where it ran now, else its row in `previous` (the table as
    it stood), else "not run yet"."""
    lines = ["| claim | held here? | numbers (command) |", "|---|---|---|"]
    previous_rows = {line.split(" | ")[0].removeprefix("| "): line for line in previous.splitlines() if line.startswith("| ")}
    for claim, title in TITLES.items():
        if claim in results:
            held, numbers = results[claim]
            link = "" if held == "not run yet" else f" ([report](benchmarks/results/claims/{claim}.md))"
            lines.append(f"| {title} | **{held}** | {numbers}{link} |")
        else:
            lines.append(previous_rows.get(title, f"| {title} | **not run yet** | `python benchmarks/claims.py {claim}` has not finished a run |"))
    return "\n".join(lines)


def main(args: ClaimsArgs) -> dict[str, tuple[str, str]]:
    claims = list(TITLES) if args.claim == "all" else [args.claim]
    results = {claim: result for claim in claims if (result := run_claim(claim, args)) is not None}
    if args.readme:  # one claim rewrites its own row; the others keep theirs
        with open(args.readme) as f:
            text = f.read()
        previous = text.split(START, 1)[1].split(END, 1)[0] if START in text and END in text else ""
        report.write_readme(args.readme, readme_table(results, previous), START, END)
    return results


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(tyro.cli(ClaimsArgs))
