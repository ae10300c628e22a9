"""benchmarks/gpu_check.py's dry run on the CPU: every stage writes its file, a timing gives updates/s, the tests
are collected; and benchmarks/throughput.py's options become the scripts' flags."""

import json
import os

import gpu_check
import throughput


def test_dry_run_writes_every_stage(local_dataset, tmp_path):
    local_dataset("pendulum/medium-v0")
    out = str(tmp_path / "out")
    cells = gpu_check.main(gpu_check.GpuCheckArgs(out=out, scripts=("td3_bc",), dry_run=True, budget_s=300))
    assert [c["option"] for c in cells] == ["eager"] and cells[0]["updates_per_s"] > 0, cells
    assert json.loads(open(os.path.join(out, "speed.jsonl")).readline()) == cells[0]
    table = open(os.path.join(out, "speed.md")).read()
    assert f"| td3_bc | {cells[0]['updates_per_s']:.1f} | 3000: " in table
    assert "pendulum/medium-v0: ready in" in open(os.path.join(out, "environment.txt")).read()
    log = open(os.path.join(out, "tests.log")).read()
    assert "--collect-only" in log and "exit status 0" in log and "test_dry_run_writes_every_stage" in log


def test_a_timing_past_the_budget_is_skipped_and_says_so(tmp_path):
    args = gpu_check.GpuCheckArgs(out=str(tmp_path), dry_run=True)
    cell = gpu_check.timing("td3_bc", "eager", args, "cpu", deadline=0.0)
    assert cell == {"script": "td3_bc", "option": "eager", "error": "skipped: the budget is spent"}


def test_options_become_flags():
    assert throughput.flags("eager") == throughput.flags("") == []
    assert throughput.flags("compile+cudagraphs") == ["--compile", "--cudagraphs"]
    assert throughput.flags("compile+matmul-precision=bf16") == ["--compile", "--matmul-precision", "bf16"]
    assert throughput.flags("--compile --cudagraphs") == ["--compile", "--cudagraphs"]
