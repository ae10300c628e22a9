"""Where a script's update spends its time on the CPU: torch.profiler over the real main(), the top operators.

    python benchmarks/profile_step.py td3_bc --flags "--hidden-dim 256 --num-critics 2 --batch-size 256"

The script runs --updates updates (after a warm-up run) on --dataset with one torch thread; the table lists the
operators by their own CPU time (self CPU: matrix multiplies are addmm/mm/bmm/baddbmm, the rest is elementwise work,
gathers, the optimizer and the Python between them), and the last line how much of the wall time the profiled
operators account for. Writes the table to --out as well.
"""

import importlib
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass

import torch
import tyro

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MATMULS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear")


@dataclass
class ProfileArgs:
    script: tyro.conf.Positional[str]
    """algorithm script to profile (td3_bc, iql, cql, bc, dt, ...)"""
    flags: str = ""
    """the script's flags, e.g. "--hidden-dim 256 --batch-size 256" (CORL's nets: benchmarks/corl.py's SPEED_FLAGS)"""
    dataset: str = "pendulum/medium-v0"
    """dataset the script trains on"""
    updates: int = 100
    """updates profiled"""
    rows: int = 25
    """operators listed"""
    out: str | None = None
    """append the table to this file"""


def run(module, args: ProfileArgs, steps: int, run_dir: str) -> None:
    cli = [*shlex.split(args.flags), "--dataset", args.dataset, "--total-steps", str(steps), "--eval-every", str(10 * steps),
           "--eval-episodes", "0", "--no-progress", "--run-dir", run_dir, "--device", "cpu", "--threads", "1"]  # fmt: skip
    module.main(tyro.cli(module.Args, args=cli))


def main(args: ProfileArgs) -> str:
    sys.path.insert(0, os.path.join(ROOT, "algorithms"))
    torch.set_num_threads(1)
    module = importlib.import_module(args.script)
    with tempfile.TemporaryDirectory() as run_dir:
        run(module, args, 20, run_dir)  # warm-up: imports, the dataset's cache, the allocator
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
            start = time.perf_counter()
            run(module, args, args.updates, run_dir)
            wall = time.perf_counter() - start
    averages = profile.key_averages()
    matmul = sum(e.self_cpu_time_total for e in averages if e.key in MATMULS) / 1e6
    total = sum(e.self_cpu_time_total for e in averages) / 1e6
    text = (f"### {args.script} {args.flags}: {args.updates} updates in {wall:.2f} s (setup included)\n\n```\n"
            + averages.table(sort_by="self_cpu_time_total", row_limit=args.rows)
            + f"```\n\nmatrix multiplies {matmul:.2f} s ({matmul / wall:.0%} of the wall time), all operators {total:.2f} s "
            f"({total / wall:.0%}), the rest is Python and setup.\n")  # fmt: skip
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")
    return text


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main(tyro.cli(ProfileArgs))
