"""Our goal-conditioned scripts beside OGBench's own JAX agents (github.com/seohongpark/ogbench, impls/): parity.

    # any checkout of OGBench (nothing of it is copied here) and a separate Python with its JAX requirements
    python3 -m venv /work/jaxenv && /work/jaxenv/bin/pip install "jax[cpu]" flax distrax ml_collections ogbench==1.2.2 \\
        mujoco==3.11.0 gymnasium==1.4.0 matplotlib
    python benchmarks/ogbench_parity.py --ogbench-impls /work/ogbench_ref/impls --jax-python /work/jaxenv/bin/python
    python benchmarks/ogbench_parity.py --ogbench-impls /work/ogbench_ref/impls --jax-python /work/jaxenv/bin/python --smoke

GCBC, GC-IQL and CRL, each trained by OGBench's `impls/main.py` (unchanged, in a subprocess run by --jax-python) and
by our script of the same name (algorithms/gcbc.py, gciql.py, crl.py, in a worker process), on the SAME file: the
local build of ogbench/pointmaze-medium-navigate-v0 that our scripts make on first use (algorithms/ogbench_suite.py,
100 episodes; built into --data-dir if missing). main.py has no dataset-path flag: it reads
`~/.ogbench/data/<name>.npz` through `ogbench.make_env_and_datasets`, which downloads only what is missing, so its
subprocess gets a HOME whose `.ogbench/data` is a link to --data-dir: it reads our file and never the network.
Both sides get the same budget, networks, batch and seeds (`our_flags` and `their_command` side by side):

| | ours | OGBench's main.py |
|---|---|---|
| updates | `--total-steps N` | `--train_steps=N` |
| networks | `--hidden-layers 3 --hidden-dim W` (actor, Q, V, phi, psi) | `--agent.actor_hidden_dims=(W, W, W)`, `--agent.value_hidden_dims=(W, W, W)` |
| batch (CRL: also the negatives) | `--batch-size B` | `--agent.batch_size=B` |
| CRL latent | `--latent-dim D` | `--agent.latent_dim=D` |
| alpha (DDPG+BC) | `--alpha` | `--agent.alpha=` (OGBench's hyperparameters.sh for the point mazes: GC-IQL 0.003, CRL 0.03) |
| evaluation | the env's 5 goals, `--eval-episodes E` each, mean action clipped, success at the last step | the same protocol by its own code: `--eval_episodes=E`, temperature 0, clipped to [-1, 1] |

Everything else is each side's default, which is OGBench's on both (learning rate 3e-4, gamma 0.99, expectile 0.9,
target rate 0.005, LayerNorm in the critics, constant std 1, DDPG+BC extraction, the goal mixtures of GCDataset).
Not matched, by construction: initialisation (OGBench: Xavier-uniform, the actor's mean layer x 0.01; ours: PyTorch's
default), random streams (sampling, evaluation start noise), one Adam over all networks (OGBench) vs one per network
(ours; the same updates, as no loss reaches another's networks), float32 matmuls in XLA vs PyTorch. OGBench's
main.py also evaluates once at step 1 and computes a validation loss on the -val file at each log (neither changes
its training, but both cost its wall time; they are excluded from its updates/s where they can be, see below).

The verdict is benchmarks/corl.py's rule: "within the seeds' spread" when |mean_ours - mean_OGBench| <= the larger
of the two standard deviations of the final success rate over seeds (ddof 1), otherwise "differs".

Speed, a side line: updates/s of each run without compilation or evaluation. Ours: RunResult.updates_per_s (the
loop's time less evaluation). Theirs: from main.py's train.csv, `time/epoch_time` (seconds per update over each
--log_interval window) averaged over every window but the first (the first holds XLA's compilation and the step-1
evaluation; the final evaluation comes after the last window). Their windows include the validation loss at each
log, ours nothing of the kind: the ratio is, if anything, tilted against OGBench. Both sides are pinned to the same
core (--core) with one thread (torch.set_num_threads(1); XLA_FLAGS without Eigen's thread pool).

Runs go one at a time (ours and OGBench's interleaved, seed by seed) and are appended to <out>.jsonl as they
finish; a rerun skips the ids already there (an id names side, algorithm, seed, budget and a hash of both sides'
settings). Writes <out>.md: per algorithm ours vs OGBench mean ± std over seeds, the difference and the verdict,
per-goal rates, updates/s, and the runs still missing. Tested without JAX (tests/test_ogbench_parity.py).
"""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import corl
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALGORITHMS = ("gcbc", "gciql", "crl")
ALPHAS = {"gciql": 0.003, "crl": 0.03}  # OGBench's impls/hyperparameters.sh, pointmaze-*-navigate; GCBC has none
WITHIN, DIFFERS = corl.WITHIN, corl.DIFFERS  # the same rule and words as CORL's parity
SIDES = ("ours", "ogbench")
# main.py imports wandb unconditionally and calls wandb.init(mode='online'): this stand-in, first on its PYTHONPATH,
# answers the calls main.py and log_utils make, so nothing is installed for it and nothing reaches the network.
WANDB_STANDIN = '''"""A stand-in for wandb written by cleanoffrl's benchmarks/ogbench_parity.py: records nothing, no network."""
class _Run:
    project = "OGBench"
run = _Run()
def init(**kwargs):
    return run
def log(*args, **kwargs):
    pass
class Settings:
    def __init__(self, **kwargs):
        pass
class Image: pass
class Video: pass
class Histogram: pass
'''


@dataclass
class Args:
    ogbench_impls: str
    """the impls/ folder of a checkout of github.com/seohongpark/ogbench (its main.py, agents/, utils/ are run as they are)"""
    jax_python: str
    """a Python interpreter with OGBench's JAX requirements (jax, flax, distrax, ml_collections, ogbench, mujoco); CPU jax is fine"""
    algorithms: tuple[str, ...] = ALGORITHMS
    """algorithms to compare: gcbc, gciql (DDPG+BC), crl (DDPG+BC)"""
    dataset: str = "ogbench/pointmaze-medium-navigate-v0"
    """a goal-conditioned OGBench id; both sides read the same local build of it"""
    data_dir: str = "benchmarks/out/gc_parity/data"
    """where the dataset's .npz files are (built here by algorithms/ogbench_suite.py, 100 episodes, if missing)"""
    seeds: tuple[int, ...] = (0, 1, 2)
    """seeds of both sides"""
    updates: int = 5_000
    """gradient updates per run, both sides (OGBench: 1,000,000)"""
    hidden_dim: int = 256
    """width of every hidden layer, both sides (OGBench: 512)"""
    hidden_layers: int = 3
    """hidden layers of every network, both sides (OGBench's 3)"""
    batch_size: int = 256
    """batch size, both sides (OGBench: 1024)"""
    latent_dim: int = 256
    """CRL's phi/psi latent size, both sides (OGBench: 512)"""
    eval_episodes: int = 10
    """episodes per evaluation goal (5 goals), both sides, once at the end (OGBench: 50)"""
    log_windows: int = 5
    """OGBench's --log_interval is updates / log_windows: its updates/s is read from these windows (the first is dropped)"""
    core: int | None = 0
    """pin every run (both sides) to this CPU core; None: no pinning"""
    out: str = "benchmarks/results/gc_parity"
    """output path without extension: .jsonl (one record per run) and .md"""
    logs: str = "benchmarks/out/gc_parity"
    """each run's log, OGBench's save dirs, our run folders, the HOME and wandb stand-in given to main.py"""
    timeout_s: int = 3600
    """give up on one OGBench run after this long (recorded as failed)"""
    note: str = ""
    """a paragraph added to the report as it is (e.g. what else loaded the machine during the runs)"""
    smoke: bool = False
    """a tiny check of the whole pipeline: 100 updates, batch 64, 64-wide nets, 1 episode per goal, seed 0, out and logs under benchmarks/out/gc_parity_smoke"""


def smoke_args(args: Args) -> Args:
    """--smoke: the same pipeline at a budget of seconds, written away from the committed results."""
    smoke = dict(updates=100, batch_size=64, hidden_dim=64, latent_dim=64, eval_episodes=1, seeds=(0,), log_windows=2)
    return Args(
        **{
            **asdict(args),
            **smoke,
            "out": "benchmarks/out/gc_parity_smoke/gc_parity",
            "logs": "benchmarks/out/gc_parity_smoke",
        }
    )


def our_flags(algorithm: str, args: Args) -> dict[str, str]:
    """Our script's flags (benchmarks/sweep.py's name=value strings): the budget, sizes and alpha of `their_command`."""
    flags = {
        "total_steps": str(args.updates), "eval_every": str(args.updates), "eval_episodes": str(args.eval_episodes),
        "log_every": str(max(1, args.updates // args.log_windows)), "hidden_dim": str(args.hidden_dim),
        "hidden_layers": str(args.hidden_layers), "batch_size": str(args.batch_size),
    }  # fmt: skip
    if algorithm in ALPHAS:
        flags |= {"alpha": str(ALPHAS[algorithm]), "extraction": "ddpg_bc"}
    if algorithm == "crl":
        flags["latent_dim"] = str(args.latent_dim)
    return flags


def their_command(algorithm: str, args: Args, seed: int, save_dir: str) -> list[str]:
    """OGBench's main.py command line for one run (relative to --ogbench-impls; their agents' config flags)."""
    dims = "(" + ", ".join([str(args.hidden_dim)] * args.hidden_layers) + ")"
    command = [
        args.jax_python, "main.py", f"--env_name={args.dataset.split('/', 1)[1]}", f"--agent=agents/{algorithm}.py",
        f"--agent.batch_size={args.batch_size}", f"--agent.actor_hidden_dims={dims}", f"--seed={seed}",
        f"--train_steps={args.updates}", f"--log_interval={max(1, args.updates // args.log_windows)}",
        f"--eval_interval={args.updates}", f"--eval_episodes={args.eval_episodes}", "--video_episodes=0",
        f"--save_interval={args.updates + 1}", f"--save_dir={save_dir}", "--run_group=parity",
    ]  # fmt: skip
    if algorithm != "gcbc":
        command.append(f"--agent.value_hidden_dims={dims}")
    if algorithm in ALPHAS:
        command += [f"--agent.alpha={ALPHAS[algorithm]}", "--agent.actor_loss=ddpgbc"]
    if algorithm == "crl":
        command.append(f"--agent.latent_dim={args.latent_dim}")
    if args.core is not None:
        command = ["taskset", "-c", str(args.core), *command]
    return command


def their_environment(home: str, standin_dir: str) -> dict[str, str]:
    """main.py's environment: our data through HOME, the wandb stand-in first on the path, CPU JAX on one thread."""
    return {
        **os.environ, "HOME": home, "PYTHONPATH": standin_dir, "JAX_PLATFORMS": "cpu", "WANDB_MODE": "disabled",
        "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1", "OMP_NUM_THREADS": "1",
        "TQDM_DISABLE": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
    }  # fmt: skip


def runs(args: Args) -> list[dict]:
    """Every run, ours and OGBench's alternating; an id names side, algorithm, seed, budget and a settings hash."""
    todo = []
    for seed in args.seeds:
        for algorithm in args.algorithms:
            flags = our_flags(algorithm, args)
            theirs = their_command(algorithm, args, seed, "SAVE_DIR")[:]
            theirs = [part for part in theirs if not part.startswith(("--seed=", "--save_dir="))]
            theirs = theirs[theirs.index("main.py") :]  # the settings, not the interpreter's path or the pinning
            settings = hashlib.sha1(json.dumps([args.dataset, flags, theirs], sort_keys=True).encode()).hexdigest()[:8]
            for side in SIDES:
                run_id = f"{side}__{algorithm}__seed{seed}__n{args.updates}__{settings}"
                todo.append({"id": run_id, "side": side, "algorithm": algorithm, "script": algorithm, "dataset": args.dataset,
                             "seed": seed, "updates": args.updates, "flags": flags})  # fmt: skip
    return todo


def read_csv(path: str) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def their_results(exp_dir: str) -> dict:
    """Success (last evaluation, in [0, 1]) and updates/s from the eval.csv and train.csv main.py wrote."""
    evaluation = read_csv(os.path.join(exp_dir, "eval.csv"))[-1]
    tasks = sorted((k for k in evaluation if k.startswith("evaluation/task") and k.endswith("_success")),
                   key=lambda k: int(k[len("evaluation/task") : -len("_success")]))  # fmt: skip
    windows = [float(row["time/epoch_time"]) for row in read_csv(os.path.join(exp_dir, "train.csv"))]
    steady = windows[1:] or windows  # the first window holds XLA's compilation and the step-1 evaluation
    return {
        "success_rate": float(evaluation["evaluation/overall_success"]), "task_success_rates": [float(evaluation[k]) for k in tasks],
        "eval_step": int(evaluation["step"]), "updates_per_s": 1.0 / float(np.mean(steady)), "timing_windows": len(steady),
    }  # fmt: skip


def run_theirs(config: dict, args: Args, home: str, standin_dir: str) -> dict:
    """OGBench's main.py on our file, in a subprocess; a record like sweep.run_one's."""
    record, start = dict(config), time.time()
    save_dir = os.path.abspath(os.path.join(args.logs, "ogbench_runs", config["id"]))
    command = their_command(config["algorithm"], args, config["seed"], save_dir)
    record["command"] = " ".join(command)
    log_path = os.path.join(args.logs, f"{config['id']}.log")
    try:
        with open(log_path, "w") as log:
            subprocess.run(command, cwd=args.ogbench_impls, env=their_environment(home, standin_dir), stdout=log,
                           stderr=subprocess.STDOUT, check=True, timeout=args.timeout_s)  # fmt: skip
        exp_dir = max(glob.glob(os.path.join(save_dir, "*", "parity", "*")), key=os.path.getmtime)
        record.update(status="ok", **their_results(exp_dir))
        if record["eval_step"] != args.updates:
            record.update(status="failed", error=f"last evaluation at step {record['eval_step']}, not {args.updates}")
    except Exception as error:  # noqa: BLE001 - a failed run is recorded, the others go on
        with open(log_path) as log:
            record.update(
                status="failed", error=f"{type(error).__name__}: {error}"[-1000:], log_tail=log.read()[-2000:]
            )
    record["wall_time_s"] = time.time() - start
    return record


def run_ours(config: dict, args: Args) -> dict:
    """In a worker process: our script through benchmarks/sweep.py's run_one, pinned like OGBench's side."""
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    os.environ["CLEANOFFRL_OGBENCH_DIR"] = os.path.abspath(args.data_dir)
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import sweep

    record = sweep.run_one(config, os.path.abspath(args.logs), os.path.abspath(os.path.join(args.logs, "our_runs")))
    if record.get("status") == "ok" and record.get("eval_steps", [None])[-1] != args.updates:
        record.update(status="failed", error=f"last evaluation at step {record['eval_steps'][-1]}, not {args.updates}")
    return record


def ensure_dataset(args: Args) -> str:
    """The dataset's training file in --data-dir, built as our scripts build it on first use (no download)."""
    sys.path.insert(0, os.path.join(ROOT, "algorithms"))
    import ogbench_data
    import ogbench_suite

    name = ogbench_data.ogbench_name(args.dataset)
    train, val = ogbench_suite.dataset_paths(name, args.data_dir)
    if not (train.exists() and val.exists()):
        recipe = ogbench_suite.recipe_for(name)
        ogbench_suite.generate(name, args.data_dir, episodes=ogbench_data.local_episodes(recipe))
    return str(train)


# report


def load_records(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def final_rates(records: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """(algorithm, side) -> its finished runs, by seed."""
    finished: dict = {}
    for r in sorted(records, key=lambda r: r["seed"]):
        if r.get("status") == "ok":
            finished.setdefault((r["algorithm"], r["side"]), []).append(r)
    return finished


def verdict(ours: list[float], theirs: list[float]) -> str:
    """benchmarks/corl.py's rule: within the seeds' spread when the means differ by no more than the larger std (ddof 1)."""
    return corl.verdict(ours, theirs) if min(len(ours), len(theirs)) > 1 else "one seed: no spread"


def cell(values: list[float]) -> str:
    spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{np.mean(values):.1f} ± {spread:.1f} ({len(values)})"


def report(records: list[dict], expected: list[dict], args: Args, machine: str) -> str:
    """The markdown report: success per algorithm and side, the verdicts, per-goal rates, updates/s, missing runs."""
    finished = final_rates(records)
    done = {r["id"] for r in records if r.get("status") == "ok"}
    lines = [
        "| algorithm | ours: success % | OGBench (JAX): success % | ours − OGBench | verdict |", "|---|---|---|---|---|",
    ]  # fmt: skip
    goals, speeds = (
        [
            "| algorithm | side | goal 1 | goal 2 | goal 3 | goal 4 | goal 5 | per seed |",
            "|---|---|---|---|---|---|---|---|",
        ],
        [],
    )
    for algorithm in args.algorithms:
        ours, theirs = finished.get((algorithm, "ours"), []), finished.get((algorithm, "ogbench"), [])
        for side, side_runs in (("ours", ours), ("OGBench", theirs)):
            if side_runs:
                per_goal = np.mean([r["task_success_rates"] for r in side_runs], axis=0) * 100
                seeds = " / ".join(f"{100 * r['success_rate']:.0f}" for r in side_runs)
                goals.append(f"| {algorithm} | {side} | " + " | ".join(f"{v:.0f}" for v in per_goal)
                             + f" | {seeds} (seeds {', '.join(str(r['seed']) for r in side_runs)}) |")  # fmt: skip
        if not (ours and theirs):
            lines.append(f"| {algorithm} | {cell([100 * r['success_rate'] for r in ours]) if ours else 'missing'} | "
                         f"{cell([100 * r['success_rate'] for r in theirs]) if theirs else 'missing'} | — | not run on both sides |")  # fmt: skip
            continue
        mine, their = [100 * r["success_rate"] for r in ours], [100 * r["success_rate"] for r in theirs]
        lines.append(
            f"| {algorithm} | {cell(mine)} | {cell(their)} | {np.mean(mine) - np.mean(their):+.1f} | {verdict(mine, their)} |"
        )
        our_speed, their_speed = (
            np.mean([r["updates_per_s"] for r in ours]),
            np.mean([r["updates_per_s"] for r in theirs]),
        )
        speeds.append(f"| {algorithm} | {our_speed:.0f} | {their_speed:.0f} | {our_speed / their_speed:.2f} |")
    missing = [r["id"] for r in expected if r["id"] not in done]
    failed = [
        f"{r['id']} ({r.get('error', '?')})"
        for r in records
        if r.get("status") != "ok" and r["id"] in {x["id"] for x in expected}
    ]
    wall = {
        side: sum(r.get("wall_time_s", 0.0) for r in records if r["side"] == side and r["id"] in done) for side in SIDES
    }
    budget = (f"{args.updates} updates, batch {args.batch_size}, {args.hidden_layers} x {args.hidden_dim} GELU networks"
              f" (CRL latent {args.latent_dim}), α {ALPHAS.get('gciql')} (GC-IQL) and {ALPHAS.get('crl')} (CRL), DDPG+BC,"
              f" {args.eval_episodes} episodes per goal")  # fmt: skip
    text = (
        "# Parity with OGBench's JAX agents: the same file, budget, networks, batch, seeds and protocol\n\n"
        f"`python benchmarks/ogbench_parity.py --ogbench-impls <OGBench checkout>/impls --jax-python <python with JAX>`: "
        f"OGBench's `impls/main.py` (run unchanged) and our scripts on the same local build of `{args.dataset}` "
        f"(algorithms/ogbench_suite.py, 100 episodes of 1,000 transitions, seed 0), {budget}, seeds "
        f"{', '.join(map(str, args.seeds))}. OGBench's protocol on both sides: the env's 5 evaluation goals, success at "
        f"the end of the episode, scored once after the last update (each side's own evaluation code). Machine: {machine}.\n\n"
        f"Final success rate in %, mean ± std over seeds (ddof 1, n). Verdict (benchmarks/corl.py's rule): \"{WITHIN}\" "
        f"when |ours − OGBench| is at most the larger of the two stds, else \"{DIFFERS}\".\n\n" + "\n".join(lines) + "\n\n"
        "Per evaluation goal (success %, mean over seeds) and per seed:\n\n" + "\n".join(goals) + "\n\n"
        "Speed (a side line, same run, same core, one thread each): updates/s without compilation or evaluation, mean "
        "over seeds (OGBench's windows include its validation loss at each log: tilted against it, slightly).\n\n"
        "| algorithm | ours (PyTorch, eager) | OGBench (JAX, jit) | ours / OGBench |\n|---|---|---|---|\n" + "\n".join(speeds) + "\n\n"
        f"Wall time of the finished runs: ours {wall['ours'] / 60:.1f} min, OGBench {wall['ogbench'] / 60:.1f} min "
        "(OGBench's includes XLA compilation and main.py's extra evaluation at step 1).\n\n"
        + (f"Missing runs ({len(missing)} of {len(expected)}): {', '.join(missing)}.\n" if missing else f"All {len(expected)} runs finished.\n")
        + (f"\nFailed attempts: {'; '.join(failed)}.\n" if failed else "")
        + (f"\n{args.note}\n" if args.note else "")
    )  # fmt: skip
    return text


def machine_line() -> str:
    import torch

    return f"{corl.cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {time.strftime('%Y-%m-%d', time.gmtime())}"


def main(args: Args) -> str:
    if args.smoke:
        args = smoke_args(args)
    if not os.path.exists(os.path.join(args.ogbench_impls, "main.py")):
        raise SystemExit(
            f"--ogbench-impls {args.ogbench_impls}: no main.py there (the impls/ folder of an OGBench checkout)"
        )
    args.ogbench_impls = os.path.abspath(args.ogbench_impls)
    os.makedirs(args.logs, exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    print(f"dataset file: {ensure_dataset(args)}", flush=True)
    home, standin_dir = (
        os.path.abspath(os.path.join(args.logs, "home")),
        os.path.abspath(os.path.join(args.logs, "standins")),
    )
    os.makedirs(os.path.join(home, ".ogbench"), exist_ok=True)
    os.makedirs(standin_dir, exist_ok=True)
    link = os.path.join(home, ".ogbench", "data")
    with contextlib.suppress(FileNotFoundError):
        os.remove(link)
    os.symlink(os.path.abspath(args.data_dir), link)
    with open(os.path.join(standin_dir, "wandb.py"), "w") as f:
        f.write(WANDB_STANDIN)

    expected = runs(args)
    results = f"{args.out}.jsonl"
    done = {r["id"] for r in load_records(results) if r.get("status") == "ok"} if os.path.exists(results) else set()
    todo = [r for r in expected if r["id"] not in done]
    print(f"{len(expected)} runs, {len(expected) - len(todo)} already in {results}, {len(todo)} to run", flush=True)
    for config in todo:
        if config["side"] == "ogbench":
            record = run_theirs(config, args, home, standin_dir)
        else:  # a fresh process per run: our scripts' imports and torch state never leak between runs
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                record = pool.apply(run_ours, (config, args))
        with open(results, "a") as f:
            f.write(json.dumps(record, default=float) + "\n")
        print(f"{record['id']}: {record['status']} success {100 * record.get('success_rate', float('nan')):.0f}% "
              f"{record.get('updates_per_s', float('nan')):.0f} updates/s ({record['wall_time_s']:.0f} s)", flush=True)  # fmt: skip
    records = load_records(results)
    text = report([r for r in records if r["id"] in {x["id"] for x in expected}], expected, args, machine_line())
    with open(f"{args.out}.md", "w") as f:
        f.write(text)
    print(text)
    return text


if __name__ == "__main__":
    import tyro

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    Args.__doc__ = __doc__  # --help shows the module's explanation
    main(tyro.cli(Args))
