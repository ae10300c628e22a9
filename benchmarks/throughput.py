"""Gradient updates per second of every algorithm script at its defaults, and evaluation episodes/s.

    python benchmarks/throughput.py --out benchmarks/results/throughput.md

Each script's real `main` runs twice on the same dataset, for N and for 2N updates, with one
evaluation episode at the end; updates/s = N / (t(2N) - t(N)), so loading, setup, compilation (its
graphs come from the warm-up run's cache) and the final evaluation cancel out. Every speed option in
--options is a column, eager first, each timed in the same run. Batch size and network sizes are each script's defaults. Evaluation is timed
with a vector env of E copies against E single-env evaluations, one batched policy call per step.
Numbers are ratios within one run on one machine: compare rows, not machines. With --baseline another
checkout (e.g. `git worktree add /tmp/before <commit>`) is timed beside this one, script by script in the
same run, each timing in a fresh interpreter so the two checkouts never share a module; on a machine others share,
`--clock process` counts the CPU seconds of the timing process instead of wall seconds:

    python benchmarks/throughput.py --baseline /tmp/before --options eager --clock process

The table beside CORL's and d3rlpy's own trainers, at CORL's nets and batch (the first table of
benchmarks/results/throughput.md), comes from `python benchmarks/corl.py speed ... --d3rlpy-python ...`, which times
our side with this file's `updates_per_second`.
"""

import importlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Literal

import torch
import torch._dynamo
import tyro

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class ThroughputArgs:
    scripts: tuple[str, ...] = ("bc", "td3_bc", "cql", "iql", "onestep_rl", "awr", "ddpg_bc", "sfbc", "dt")
    """algorithm scripts to time (missing ones are skipped)"""
    dataset: str = "pendulum/medium-v0"
    """dataset every script trains on"""
    updates: int = 300
    """N: the timed difference is between runs of N and 2N updates"""
    device: str = "auto"
    """auto, cpu or cuda"""
    threads: int = 1
    """torch CPU threads"""
    eval_episodes: int = 1
    """evaluation episodes at the end of every timed run (they cancel in the difference; 0 = none, for a dataset without an env)"""
    eval_envs: int = 10
    """copies in the vector env for the evaluation timing"""
    options: tuple[str, ...] = ("eager", "compile")
    """speed options timed as columns: eager, or flag names joined by + without their dashes (compile+cudagraphs, matmul-precision=bf16); on CUDA add cudagraphs"""
    clock: Literal["wall", "process"] = "wall"
    """wall: elapsed seconds; process: CPU seconds of the timing process (with one thread, what the updates cost even
    when other work shares the machine and stretches the wall time; the CPU's own slowdown under load still counts)"""
    baseline: str | None = None
    """another checkout of the project, timed beside this one in the same run (columns "baseline" and "this / baseline")"""
    out: str | None = None
    """append the markdown table to this file"""


def flags(option: str) -> list[str]:
    """An option's script flags: "eager" none, "compile+cudagraphs" --compile --cudagraphs, "matmul-precision=bf16"
    --matmul-precision bf16 (no leading dashes, which tyro would read as its own flags); "--compile" is taken as it is."""
    if option.startswith("--"):
        return option.split()
    cli = []
    for flag in option.split("+"):
        name, _, value = flag.partition("=")
        cli += [] if name in ("", "eager") else [f"--{name}", value] if value else [f"--{name}"]
    return cli


def timed_main(module, args: ThroughputArgs, steps: int, run_dir: str, option: str) -> float:
    torch._dynamo.reset()  # each run compiles afresh (from the warm-up's cache), never past the recompile limit
    cli = [*flags(option), "--dataset", args.dataset, "--total-steps", str(steps), "--eval-every", str(10 * steps), "--eval-episodes", str(args.eval_episodes),
           "--no-progress", "--run-dir", run_dir, "--device", args.device, "--threads", str(args.threads)]  # fmt: skip
    synchronize = torch.cuda.synchronize if args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available()) else lambda: None
    clock = time.process_time if args.clock == "process" else time.perf_counter
    synchronize()  # the GPU's queue empty before and after: the clock reads finished work
    start = clock()
    module.main(tyro.cli(module.Args, args=cli))
    synchronize()
    return clock() - start


def updates_per_second(script: str, args: ThroughputArgs, option: str, root: str = ROOT, timeout: float | None = None) -> float:
    """N / (t(2N) - t(N)) of `script` in the checkout `root`, timed in a fresh interpreter (stopped after `timeout` s)."""
    worker = f"import sys; sys.path[:0] = [{os.path.join(ROOT, 'benchmarks')!r}]; import throughput; throughput.worker()"
    command = [sys.executable, "-c", worker, root, script, option, args.dataset, str(args.updates), args.device, str(args.threads),
               str(args.eval_episodes), args.clock]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)), timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"timing {script} in {root} failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def worker() -> None:
    """In the fresh interpreter: import the script from its checkout, warm up, time N and 2N updates, print N / dt."""
    root, script, option, dataset, updates, device, threads, eval_episodes, clock = sys.argv[1:]
    sys.path.insert(0, os.path.join(root, "algorithms"))
    torch.set_num_threads(int(threads))
    args = ThroughputArgs(dataset=dataset, updates=int(updates), device=device, threads=int(threads), eval_episodes=int(eval_episodes), clock=clock)
    module = importlib.import_module(script)
    with tempfile.TemporaryDirectory() as run_dir:
        timed_main(module, args, 20, run_dir, option)  # warm-up: imports, dataset cache, allocator, compile cache
        short = timed_main(module, args, args.updates, run_dir, option)
        long = timed_main(module, args, 2 * args.updates, run_dir, option)
    print(args.updates / max(long - short, 1e-9))


def evaluation_episodes_per_second(args: ThroughputArgs) -> tuple[float, float]:
    sys.path.insert(0, os.path.join(ROOT, "algorithms"))
    import data
    import evaluation

    dataset = data.load_dataset(args.dataset)
    obs_dim, act_dim = dataset.observation_space.shape[0], dataset.action_space.shape[0]
    network = torch.nn.Sequential(torch.nn.Linear(obs_dim, 256), torch.nn.ReLU(), torch.nn.Linear(256, act_dim), torch.nn.Tanh())
    vector = evaluation.make_eval_envs(dataset, args.eval_envs)
    start = time.perf_counter()
    evaluation.evaluate(network, vector, dataset, seed=0)
    batched = args.eval_envs / (time.perf_counter() - start)
    single = evaluation.make_eval_envs(dataset, 1)
    start = time.perf_counter()
    for seed in range(args.eval_envs):
        evaluation.evaluate(network, single, dataset, seed=seed)
    one_at_a_time = args.eval_envs / (time.perf_counter() - start)
    return batched, one_at_a_time


def main(args: ThroughputArgs) -> dict[str, float]:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu")
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} thread(s)"
    if device.type == "cuda":
        machine += f", {torch.cuda.get_device_name(device)}"
    results = {}
    baseline = ["baseline", "this / baseline"] if args.baseline else []
    lines = [f"### {time.strftime('%Y-%m-%d')}: {device.type} ({machine}), dataset {args.dataset}, N = {args.updates}, {args.clock} clock"
             + (f", baseline {args.baseline}" if args.baseline else "") + "\n",
             "| script | " + " | ".join(f"updates/s {option or 'eager'}" for option in args.options)
             + " | " + " | ".join([f"{option} / eager" for option in args.options[1:]] + baseline) + " |",
             "|---" * (2 * len(args.options) + len(baseline)) + "|"]  # fmt: skip
    for script in args.scripts:
        if not os.path.exists(os.path.join(ROOT, "algorithms", f"{script}.py")):
            continue
        speeds = [updates_per_second(script, args, option) for option in args.options]
        results[script] = speeds[0]
        ratios = [f"{speed / speeds[0]:.2f}x" for speed in speeds[1:]]
        if args.baseline:  # timed right after this checkout's eager run, on the same machine state
            before = updates_per_second(script, args, args.options[0], args.baseline)
            ratios += [f"{before:.1f}", f"{speeds[0] / before:.2f}x"]
        lines.append(f"| {script} | " + " | ".join(f"{speed:.1f}" for speed in speeds) + " | " + " | ".join(ratios) + " |")
        print(lines[-1], flush=True)
    batched, single = evaluation_episodes_per_second(args)
    lines += ["", f"Evaluation, {args.eval_envs} episodes: vector env {batched:.1f} episodes/s, "
              f"one env at a time {single:.1f} episodes/s ({batched / single:.1f}x).", ""]  # fmt: skip
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")
    return results


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main(tyro.cli(ThroughputArgs))
