"""benchmarks/gc_results.py: records go to the method whose flags they carry exactly, cells say mean ± std and
'k of N runs', OGBench's figure sits beside ours, per-goal rows average seeds; from hand-made records (no training)."""

import gc_results as results


def record(method, dataset, seed, success, per_goal, flags=None, script=None):
    return dict(script=script or results.METHODS[method][0], dataset=dataset, seed=seed, status="ok",
                flags=results.planned_flags(method, dataset) if flags is None else flags, success_rate=success,
                task_success_rates=per_goal, wall_time_s=100.0, updates_per_s=50.0)  # fmt: skip


def row(text: str, method: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"| {method} |"))


def test_records_fall_in_their_method_by_exact_flags():
    ddpg = record("GC-IQL, DDPG+BC", results.CUBE, 0, 0.4, [0.4] * 5)
    awr = record("GC-IQL, AWR", results.CUBE, 0, 0.2, [0.2] * 5)
    other_alpha = record("GC-IQL, DDPG+BC", results.CUBE, 1, 1.0, [1.0] * 5,
                         flags=dict(results.planned_flags("GC-IQL, DDPG+BC", results.CUBE), alpha="0.003"))  # fmt: skip
    report_seed_only = record("GCBC", results.CUBE, 7, 1.0, [1.0] * 5)  # not one of SEEDS
    by_cell = results.cells([ddpg, awr, other_alpha, report_seed_only])
    assert by_cell[("GC-IQL, DDPG+BC", results.CUBE)] == [ddpg]
    assert by_cell[("GC-IQL, AWR", results.CUBE)] == [awr]
    assert ("GCBC", results.CUBE) not in by_cell


def test_table_cells_spread_published_and_per_goal():
    runs = [record("CRL", results.STITCH, seed, s, goals) for seed, s, goals in
            ((0, 0.2, [0.0, 1.0, 0.0, 0.0, 0.0]), (1, 0.4, [1.0, 1.0, 0.0, 0.0, 0.0]), (2, 0.6, [1.0, 1.0, 1.0, 0.0, 0.0]))]  # fmt: skip
    text = results.render(runs, "x.jsonl")
    crl = row(text.split("## ")[0], "CRL")
    assert "40.0 ± 20.0 (3 of 3 runs) | 0 ± 1" in crl  # ours on stitch, then OGBench's CRL on stitch
    assert crl.count("— (0 of 3 runs)") == 2  # navigate and cube: nothing yet
    assert "3 of 45 planned runs finished" in text
    stitch = text.split("## pointmaze-medium-stitch-v0")[1].split("## ")[0]
    assert row(stitch, "CRL").startswith("| CRL | 67% | 100% | 33% | 0% | 0% | 20 / 40 / 60 (seeds 0, 1, 2) | 100 | 50 |")
    assert "--seeds 0 1 2" in text and "alpha=3.0" in text  # the reproduce block has the plan's commands
