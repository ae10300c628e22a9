"""Gradient updates per second of every algorithm script at its defaults, and evaluation episodes/s.

    python benchmarks/throughput.py --out benchmarks/results/throughput.md

Each script's real `main` runs twice on the same dataset, for N and for 2N updates, with one
evaluation episode at the end; updates/s = N / (t(2N) - t(N)), so loading, setup, compilation (its
graphs come from the warm-up run's cache) and the final evaluation cancel out. Every speed option in
--options is a column, eager first, each timed in the same run. Batch size and network sizes are each script's defaults. Evaluation is timed
with a vector env of E copies against E single-env evaluations, one batched policy call per step.
Numbers are ratios within one run on one machine: compare rows, not machines.
"""

import importlib
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass

import torch
import torch._dynamo
import tyro

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "algorithms"))
import data  # noqa: E402


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
    eval_envs: int = 10
    """copies in the vector env for the evaluation timing"""
    options: tuple[str, ...] = ("", "--compile")
    """speed flags timed as columns ("" = eager); on CUDA add "--cudagraphs" """
    out: str | None = None
    """append the markdown table to this file"""


def timed_main(module, args: ThroughputArgs, steps: int, run_dir: str, option: str) -> float:
    torch._dynamo.reset()  # each run compiles afresh (from the warm-up's cache), never past the recompile limit
    cli = [*option.split(), "--dataset", args.dataset, "--total-steps", str(steps), "--eval-every", str(10 * steps), "--eval-episodes", "1",
           "--no-progress", "--run-dir", run_dir, "--device", args.device, "--threads", str(args.threads)]  # fmt: skip
    start = time.perf_counter()
    module.main(tyro.cli(module.Args, args=cli))
    return time.perf_counter() - start


def updates_per_second(script: str, args: ThroughputArgs, option: str) -> float:
    module = importlib.import_module(script)
    with tempfile.TemporaryDirectory() as run_dir:
        timed_main(module, args, 20, run_dir, option)  # warm-up: imports, dataset cache, allocator, compile cache
        short = timed_main(module, args, args.updates, run_dir, option)
        long = timed_main(module, args, 2 * args.updates, run_dir, option)
    return args.updates / max(long - short, 1e-9)


def evaluation_episodes_per_second(args: ThroughputArgs) -> tuple[float, float]:
    dataset = data.load_dataset(args.dataset)
    obs_dim, act_dim = dataset.observation_space.shape[0], dataset.action_space.shape[0]
    network = torch.nn.Sequential(torch.nn.Linear(obs_dim, 256), torch.nn.ReLU(), torch.nn.Linear(256, act_dim), torch.nn.Tanh())
    vector = data.make_eval_envs(dataset, args.eval_envs)
    start = time.perf_counter()
    data.evaluate(network, vector, dataset, seed=0)
    batched = args.eval_envs / (time.perf_counter() - start)
    single = data.make_eval_envs(dataset, 1)
    start = time.perf_counter()
    for seed in range(args.eval_envs):
        data.evaluate(network, single, dataset, seed=seed)
    one_at_a_time = args.eval_envs / (time.perf_counter() - start)
    return batched, one_at_a_time


def main(args: ThroughputArgs) -> dict[str, float]:
    torch.set_num_threads(args.threads)
    device = data.resolve_device(args.device)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} thread(s)"
    if device.type == "cuda":
        machine += f", {torch.cuda.get_device_name(device)}"
    results = {}
    lines = [f"### {time.strftime('%Y-%m-%d')}: {device.type} ({machine}), dataset {args.dataset}, N = {args.updates}\n",
             "| script | " + " | ".join(f"updates/s {option or 'eager'}" for option in args.options)
             + " | " + " | ".join(f"{option} / eager" for option in args.options[1:]) + " |",
             "|---" * (2 * len(args.options)) + "|"]  # fmt: skip
    for script in args.scripts:
        if not os.path.exists(os.path.join(ROOT, "algorithms", f"{script}.py")):
            continue
        speeds = [updates_per_second(script, args, option) for option in args.options]
        results[script] = speeds[0]
        ratios = [f"{speed / speeds[0]:.2f}x" for speed in speeds[1:]]
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
