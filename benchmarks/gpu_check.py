"""The GPU check of issue 28 in one device call: updates/s eager, --compile and --cudagraphs, then the tests on CUDA.

    bash benchmarks/gpu_check.sh                                     # on the device machine: writes to $OUT
    python benchmarks/gpu_check.py --dry-run --out /tmp/gpu_check    # here, on the CPU: every stage, tiny

Stages, each written to --out as soon as it ends (a call killed at its limit still returns what was done):
environment.txt (torch, CUDA, the device's name), the default dataset built (its seconds), speed.md (updates/s of
each script under each option: N against 2N updates of the script's real main(), benchmarks/throughput.py, each in
a fresh interpreter, the GPU synchronised before each clock read, so compile and capture time cancel; a cell that
fails says so and the next one runs), and tests.log (the test suite on CUDA, stopped at --budget-s). The whole
check keeps inside --budget-s: a timing that would start too late is skipped and says so.
--dry-run: CPU, 3 updates, eager only (--compile costs tens of seconds a script on a CPU, --cudagraphs needs
CUDA), and the tests collected rather than run: it checks the stages, not the speed.
"""

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import torch
import tyro

import throughput

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOAL = {"td3_bc": 3000.0, "iql": 3000.0}  # updates/s on an H100 (issue 28), at the scripts' defaults


@dataclass
class GpuCheckArgs:
    out: str = os.environ.get("OUT", os.path.join(ROOT, "benchmarks", "out", "gpu_check"))
    """folder the results are written to ($OUT on the device machine)"""
    scripts: tuple[str, ...] = ("td3_bc", "iql", "cql", "dt")
    """algorithm scripts timed, at their defaults"""
    options: tuple[str, ...] = ("eager", "compile", "cudagraphs", "compile+cudagraphs")
    """speed options timed as columns (benchmarks/throughput.py's: flag names joined by +, without dashes)"""
    updates: int = 500
    """N: each timing runs N and 2N updates (CQL: a tenth)"""
    dataset: str = "pendulum/medium-v0"
    """dataset every script trains on (the local suite's default; built on first use)"""
    budget_s: float = 510.0
    """seconds for the whole check, tests included (a device call may run 600 s)"""
    timing_limit_s: float = 120.0
    """seconds one timing may take before it is stopped (a compile that hangs) and the next one starts"""
    dry_run: bool = False
    """CPU, 3 updates, eager only, tests collected not run: the stages checked here, not the speed"""


def write(out: str, name: str, text: str) -> None:
    with open(os.path.join(out, name), "w") as f:
        f.write(text)


def environment() -> str:
    lines = [f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}"]
    if torch.cuda.is_available():
        lines.append(f"{torch.cuda.get_device_name()} (capability {torch.cuda.get_device_capability()})")
    else:
        lines.append("no CUDA device: CPU only")
    return "\n".join(lines) + "\n"


def timing(script: str, option: str, args: GpuCheckArgs, device: str, deadline: float) -> dict:
    """One cell of the table: updates/s, or why there is none."""
    cell = {"script": script, "option": option}
    limit = min(args.timing_limit_s, deadline - time.monotonic())
    if limit < 10:
        return cell | {"error": "skipped: the budget is spent"}
    updates = 3 if args.dry_run else max(10, args.updates // 10) if script == "cql" else args.updates
    timed = throughput.ThroughputArgs(dataset=args.dataset, updates=updates, device=device, eval_episodes=0)
    try:
        return cell | {"updates_per_s": throughput.updates_per_second(script, timed, option, timeout=limit)}
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        return cell | {"error": str(error).strip().splitlines()[-1][:300]}


def speed_table(cells: list[dict], args: GpuCheckArgs, options: tuple[str, ...]) -> str:
    lines = ["| script | " + " | ".join(f"{o} updates/s" for o in options) + " | goal |", "|---" * (len(options) + 2) + "|"]
    for script in args.scripts:
        row = [c for c in cells if c["script"] == script]
        values = [f"{c['updates_per_s']:.1f}" if "updates_per_s" in c else c["error"].replace("|", "/") for c in row]
        best = max((c.get("updates_per_s", 0.0) for c in row), default=0.0)
        goal = f"{GOAL[script]:.0f}: {'reached' if best >= GOAL[script] else 'not reached'}" if script in GOAL else "-"
        lines.append(f"| {script} | " + " | ".join(values) + f" | {goal} |")
    return "\n".join(lines) + "\n"


def main(args: GpuCheckArgs) -> list[dict]:
    started = time.monotonic()
    deadline = started + args.budget_s
    os.makedirs(args.out, exist_ok=True)
    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: this machine has no CUDA device: run the check on the device machine, or pass --dry-run.")
    options = ("eager",) if args.dry_run else args.options
    write(args.out, "environment.txt", environment())

    sys.path.insert(0, os.path.join(ROOT, "algorithms"))
    import data

    built = time.monotonic()
    data.load_dataset(args.dataset)
    write(args.out, "environment.txt", environment() + f"{args.dataset}: ready in {time.monotonic() - built:.1f} s\n")

    cells = []
    for script in args.scripts:
        for option in options:
            cells.append(timing(script, option, args, device, deadline - 60))  # a minute kept for the tests' start
            print(cells[-1], flush=True)
            write(args.out, "speed.jsonl", "".join(json.dumps(c) + "\n" for c in cells))
            write(args.out, "speed.md", f"{environment()}\n{speed_table(cells, args, options)}")

    tests = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-x", os.path.join(ROOT, "tests")]
    if args.dry_run:
        tests.append("--collect-only")
    left = max(1.0, deadline - time.monotonic())
    with open(os.path.join(args.out, "tests.log"), "w") as log:
        log.write(f"{' '.join(tests)}  (stopped after {left:.0f} s)\n")
        log.flush()
        try:
            done = subprocess.run(tests, stdout=log, stderr=subprocess.STDOUT, timeout=left, cwd=ROOT, check=False)
            log.write(f"\nexit status {done.returncode}\n")
        except subprocess.TimeoutExpired:
            log.write(f"\nstopped: the budget of {args.budget_s:.0f} s was spent\n")
    print(f"gpu check done in {time.monotonic() - started:.0f} s: {args.out}")
    return cells


if __name__ == "__main__":
    main(tyro.cli(GpuCheckArgs))
