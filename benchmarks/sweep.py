"""Run a grid of (script x dataset x seed x flag values) and append one JSON line per finished run.

    python benchmarks/sweep.py --scripts bc td3_bc --datasets pendulum/medium-v0 pendulum/mixed-v0 \
        --seeds 0 1 2 --grid top_fraction=1.0,0.1 --flags total_steps=10000 --workers 2 \
        --results benchmarks/results/runs.jsonl

Each run is `main(tyro.cli(Args, args=flags))` of algorithms/<script>.py in its own worker process
(one torch thread), its stdout/stderr in <logs>/<run id>.log. A rerun skips every run already in the
results file, so an interrupted sweep resumes where it stopped; a run that raises is recorded as
failed with the tail of its error, and the sweep goes on. With `--checkpoint-every N` a training run also
writes <run dir>/<run id>/<run folder>/checkpoint.pt every N updates, and a run cut off mid-way (SIGTERM,
SIGKILL, a machine going away) continues from its last checkpoint on the next sweep instead of starting over
(its record says `"resumed_from_step": N`). SIGTERM or Ctrl-C to the sweep checkpoints the runs in progress first.

With `--backend ray` each run is a Ray task (one CPU each, so Ray schedules them over the cluster);
records are still appended here, on the driver, as runs finish. Without `--address` Ray starts on this
machine; with one it joins a running cluster and ships this checkout to it (runtime_env working_dir,
without outputs, runs and datasets):

    ray start --head   # then `ray start --address <head>:6379` on every other node
    python benchmarks/sweep.py --scripts bc --datasets pendulum/medium-v0 --seeds 0 1 2 \
        --backend ray --address auto   # or ray://<head>:10001 from outside the cluster

(with Ray's token authentication on, a ray:// client also needs RAY_AUTH_MODE=token and the cluster's token).

On a cluster the logs and TensorBoard runs are written on the worker nodes (at the absolute paths of
--logs/--run-dir), and each node needs the datasets (its own MINARI_DATASETS_PATH, or downloads them).
"""

import contextlib
import dataclasses
import functools
import glob
import hashlib
import importlib
import itertools
import json
import math
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Iterator, Literal

import tyro
from tqdm import tqdm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# not shipped to a Ray cluster (its working_dir has a size limit; Ray also skips .git and .gitignore'd files)
EXCLUDES = ["runs", "wandb", "datasets", "benchmarks/out", "*.pt", "*.hdf5"]


@dataclass
class SweepArgs:
    scripts: tuple[str, ...] = ("bc",)
    """algorithm scripts (file names in algorithms/ without .py)"""
    datasets: tuple[str, ...] = ("pendulum/medium-v0",)
    """dataset ids"""
    seeds: tuple[int, ...] = (0, 1, 2)
    """seeds"""
    grid: tuple[str, ...] = ()
    """swept flags as name=v1,v2,... (every combination is run), e.g. top_fraction=1.0,0.1"""
    flags: tuple[str, ...] = ()
    """fixed flags as name=value for every run, e.g. total_steps=10000"""
    workers: int = 1
    """parallel worker processes (each pinned to one torch thread) of the local backend"""
    results: str = "benchmarks/results/runs.jsonl"
    """JSON-lines file every finished run is appended to (and read to skip finished runs)"""
    logs: str = "benchmarks/out/logs"
    """folder for each run's stdout/stderr"""
    run_dir: str = "benchmarks/out/runs"
    """TensorBoard run folder passed to every run"""
    backend: Literal["local", "ray"] = "local"
    """where runs execute: a pool of --workers processes here, or Ray tasks of one CPU each"""
    address: str | None = None
    """Ray cluster to join (auto, ray://<head>:10001); None: ray.init()'s default, Ray on this machine"""
    checkpoint_every: int = 0
    """write a checkpoint every N updates so a cut-off run resumes from it; 0 = never"""


def config(script: str, dataset: str, seed: int, flags: dict[str, str]) -> dict:
    """One run as a config dict with a stable id (the same run always gets the same id, so reruns skip it). The id
    names its log file and run folder: a path among the flags (a checkpoint) appears as a short hash of it."""
    shown = {k: hashlib.sha1(v.encode()).hexdigest()[:10] if "/" in v else v for k, v in flags.items()}
    run_id = "__".join([script, dataset.replace("/", "_"), f"seed{seed}"] + [f"{k}={v}" for k, v in sorted(shown.items())])
    return {"id": run_id, "script": script, "dataset": dataset, "seed": seed, "flags": flags}


def expand(args: SweepArgs) -> list[dict]:
    """Every run of the grid."""
    swept = [(name, values.split(",")) for name, values in (item.split("=", 1) for item in args.grid)]
    fixed = dict(item.split("=", 1) for item in args.flags)
    return [
        config(script, dataset, seed, {**fixed, **{name: value for (name, _), value in zip(swept, values)}})
        for script, dataset, seed, *values in itertools.product(args.scripts, args.datasets, args.seeds, *[v for _, v in swept])
    ]  # fmt: skip


def finished_ids(results_path: str) -> set[str]:
    if not os.path.exists(results_path):
        return set()
    with open(results_path) as f:
        return {json.loads(line)["id"] for line in f if line.strip()}


def checkpoint_step(path: str) -> int:
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=True)["step"])


def resumable_checkpoint(config_dir: str, total_steps: int) -> tuple[str | None, int]:
    """The checkpoint a previous attempt of this config left in its folder, and its step; (None, 0) if there is
    none to continue. One that already reached total_steps (the run trained to the end, then died before its
    record was written) cannot be continued: its folder is removed and the run starts over."""
    for path in sorted(glob.glob(os.path.join(config_dir, "*", "checkpoint.pt")), key=os.path.getmtime, reverse=True):
        try:
            step = checkpoint_step(path)
        except Exception as error:  # noqa: BLE001 - written atomically, so unexpected; a fresh start is always correct
            print(f"ignoring unreadable checkpoint {path}: {type(error).__name__}: {error}")
            continue
        if step < total_steps:
            return path, step
        print(f"{path} is at step {step} of {total_steps} but the run was never recorded: starting over")
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)
    return None, 0


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def run_one(config: dict, logs: str, run_dir: str, checkpoint_every: int = 0) -> dict:
    """Runs in a worker process: one algorithm run, its output captured to a log file. A training run continues
    from the checkpoint a cut-off earlier attempt of the same config left (see resumable_checkpoint)."""
    import torch

    torch.set_num_threads(1)
    # on a Ray cluster the code is the shipped checkout, the worker's working directory (SWEEP_ROOT=.)
    sys.path.insert(0, os.path.join(os.environ.get("SWEEP_ROOT", ROOT), "algorithms"))
    os.makedirs(logs, exist_ok=True)
    # a folder per run: variants of one seed started in the same second would share a run name otherwise
    run_dir = os.path.join(run_dir, config["id"])
    cli = ["--seed", str(config["seed"]), "--no-progress", "--run-dir", run_dir]
    for name, value in config["flags"].items():
        flag = name.replace("_", "-")
        if value in ("True", "False"):  # tyro's booleans are --flag / --no-flag
            cli.append(f"--{flag}" if value == "True" else f"--no-{flag}")
        else:
            cli += [f"--{flag}", *value.split()]
    start = time.time()
    record = dict(config)
    log_path = os.path.join(logs, f"{config['id']}.log")
    # appended to: a resumed run's log continues the cut-off attempt's; a fresh run empties it first
    with open(log_path, "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            module = importlib.import_module(config["script"])
            fields = module.Args.__dataclass_fields__
            # test-time scripts (opex, ttt) take the dataset from their --checkpoint, and neither checkpoint nor resume
            dataset = ["--dataset", config["dataset"]] if "dataset" in fields else []
            training = "total_steps" in fields and "resume" in fields
            if checkpoint_every > 0 and "checkpoint_every" in fields:
                cli += ["--checkpoint-every", str(checkpoint_every)]
            resume = None
            if training:  # the learning flags stay on the command line: the script accepts those equal to the checkpoint's
                # every update of the run: the offline ones, then those of the online phase (fine-tuning scripts)
                total_steps = sum(int(config["flags"].get(name, fields[name].default)) for name in ("total_steps", "online_steps") if name in fields)
                resume, record["resumed_from_step"] = resumable_checkpoint(run_dir, total_steps)
            if resume:
                cli += ["--resume", resume]
                print(f"\n--- resuming {resume} from step {record['resumed_from_step']}")
            else:
                log.truncate(0)
            result = module.main(tyro.cli(module.Args, args=dataset + cli))  # a training.RunResult
            record.update(
                status="ok", normalized_score=result.normalized_score, best_normalized_score=max(result.scores or [float("nan")]),
                updates_per_s=result.updates_per_s, policy_scores=result.policy_scores, success_rate=result.success_rate,
                scores=result.scores, returns=result.returns, eval_steps=result.eval_steps, extra={"run_path": result.run_path},
                task_success_rates=result.task_success_rates,  # goal-conditioned scripts: per evaluation goal
            )  # fmt: skip
            # on SIGTERM / Ctrl-C a script checkpoints and returns early: not a finished run, the next sweep continues it
            checkpoint = os.path.join(result.run_path, "checkpoint.pt")
            if training and os.path.exists(checkpoint) and (reached := checkpoint_step(checkpoint)) < total_steps:
                record.update(status="interrupted", error=f"stopped by a signal at step {reached} of {total_steps}")
        except BaseException as error:  # noqa: BLE001 - a failed run is recorded, the sweep goes on
            traceback.print_exc()
            record.update(status="failed", error=f"{type(error).__name__}: {error}"[-2000:])
    if record["status"] == "failed":  # e.g. a bad flag: tyro's explanation is in the log, not in the exception
        with open(log_path) as log:
            record["log_tail"] = log.read()[-2000:]
    record["wall_time_s"] = time.time() - start
    return record


def run_local(todo: list[dict], args: SweepArgs) -> Iterator[dict]:
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no torch/OpenMP state shared
    with context.Pool(args.workers, maxtasksperchild=1) as pool:
        run = functools.partial(run_one, logs=args.logs, run_dir=args.run_dir, checkpoint_every=args.checkpoint_every)
        yield from pool.imap_unordered(run, todo)


def run_ray(todo: list[dict], args: SweepArgs) -> Iterator[dict]:
    try:
        import ray
    except ImportError as error:
        message = '--backend ray needs Ray: pip install "ray[default]" (or plain `ray`, enough on one machine)'
        raise ImportError(message) from error
    started = not ray.is_initialized()  # a caller (a test, a notebook) may have started Ray itself
    if started:
        ship = {"working_dir": ROOT, "excludes": EXCLUDES, "env_vars": {"SWEEP_ROOT": "."}} if args.address else None
        ray.init(address=args.address, runtime_env=ship)  # locally the workers share this filesystem
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need not find benchmarks/
    # one CPU per run, a fresh worker process per run (as maxtasksperchild=1 locally), one OpenMP thread
    task = ray.remote(num_cpus=1, max_calls=1, runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})(run_one)
    pending = {task.remote(run, args.logs, args.run_dir, args.checkpoint_every): run for run in todo}
    try:
        while pending:
            [ref], _ = ray.wait(list(pending))
            run = pending.pop(ref)
            try:
                yield ray.get(ref)
            except ray.exceptions.RayError as error:  # the worker died (out of memory, node lost) past Ray's retries
                yield dict(run, status="failed", error=f"{type(error).__name__}: {error}"[-2000:])
    finally:
        if started:
            ray.shutdown()


@contextlib.contextmanager
def terminate_as_interrupt():
    """SIGTERM (preemption) stops the sweep as Ctrl-C does: the pool is terminated on the way out, which sends its
    workers SIGTERM, and each running script checkpoints and stops, rather than being left running as an orphan."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"{signal.Signals(signum).name}: the sweep stops; rerun it to continue")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(args: SweepArgs, runs: list[dict] | None = None) -> list[dict]:
    """Run the grid of `args`, or these `config`s instead (args then only says where and how)."""
    args = dataclasses.replace(args, logs=os.path.abspath(args.logs), run_dir=os.path.abspath(args.run_dir))
    runs = expand(args) if runs is None else runs
    done = finished_ids(args.results)
    commit = git_commit()  # the driver's checkout: the code every run executes, also on a cluster
    todo = [dict(run, commit=commit) for run in runs if run["id"] not in done]
    print(f"{len(runs)} runs in the grid, {len(runs) - len(todo)} already in {args.results}, {len(todo)} to run")
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    records = []
    backend = run_ray if args.backend == "ray" else run_local
    with tqdm(total=len(todo), desc="sweep") as progress, terminate_as_interrupt():
        for record in backend(todo, args) if todo else ():
            if record["status"] == "interrupted":  # checkpointed, not finished: left out, so the next sweep continues it
                print(f"{record['id']}: {record['error']}; rerun the sweep to continue it")
                progress.update()
                continue
            with open(args.results, "a") as f:  # appended as each run finishes: an interrupted sweep loses nothing
                f.write(json.dumps(record) + "\n")
            records.append(record)
            progress.set_postfix(last=last_run_summary(record))
            progress.update()
    failed = [r["id"] for r in records if r["status"] != "ok"]
    if failed:
        print(f"{len(failed)} runs failed (see their logs in {args.logs}): {', '.join(failed)}")
    return records


def last_run_summary(record: dict) -> str:
    """The progress bar's word on the run that just finished: its status and normalised score, or its success rate
    where the dataset has no reference scores (OGBench)."""
    score, success = record.get("normalized_score", float("nan")), record.get("success_rate", float("nan"))
    if not math.isfinite(score) and math.isfinite(success):
        return f"{record['status']} {100 * success:.0f}% success"
    return f"{record['status']} {score:.1f}"


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main(tyro.cli(SweepArgs))
