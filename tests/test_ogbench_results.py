"""benchmarks/ogbench_results.py: the table, 'k of N runs', the curves and the records outside the plan, from a tiny
hand-made set of records (no training, no TensorBoard)."""

import json

import numpy as np

import ogbench_results as results

POINTMAZE, CUBE = "ogbench/pointmaze-medium-navigate-singletask-v0", "ogbench/cube-single-play-singletask-task2-v0"


def record(script, dataset, seed, successes, flags=None, status="ok"):
    """A sweep record of a run that evaluated at the plan's eval steps with these success rates (last one final)."""
    flags = results.planned_flags(dataset, script) if flags is None else flags
    steps = list(range(int(flags["eval_every"]), int(flags["total_steps"]) + 1, int(flags["eval_every"])))
    assert len(steps) == len(successes)
    return dict(script=script, dataset=dataset, seed=seed, flags=flags, status=status, success_rate=successes[-1],
                returns=[-100.0 * (1 - s) for s in successes], eval_steps=steps, success_rates=list(successes),
                wall_time_s=60.0, updates_per_s=300.0)  # fmt: skip


def test_planned_flags_are_the_plan_and_cql_only_where_planned(monkeypatch):
    monkeypatch.setattr(results, "PLAN_CQL", {POINTMAZE: results.CQL_BUDGET})
    flags = results.planned_flags(CUBE, "rebrac")
    assert flags["total_steps"] == str(results.PLAN[CUBE].total_steps)
    assert flags["actor_bc_coef"] == "1.0" and flags["batch_size"] == "256"
    assert results.planned_flags(CUBE, "cql") is None
    assert results.planned_flags(POINTMAZE, "cql")["total_steps"] == str(results.CQL_BUDGET.total_steps)
    commands = results.sweep_commands("x.jsonl")
    assert len(commands) == sum(len(b.scripts) for plan in (results.PLAN, results.PLAN_CQL) for b in plan.values())
    assert all("--seeds 1 2 3" in c and "--results x.jsonl" in c for c in commands)


def test_cells_give_mean_std_over_finished_seeds_and_say_k_of_n(monkeypatch):
    monkeypatch.setattr(results, "PLAN_CQL", {POINTMAZE: results.CQL_BUDGET})
    n = results.PLAN[CUBE].total_steps // results.PLAN[CUBE].eval_every
    records = [record("iql", CUBE, seed, [0.0] * (n - 1) + [s]) for seed, s in ((1, 0.2), (2, 0.4), (3, 0.6))]
    records += [record("bc", CUBE, 1, [0.0] * (n - 1) + [0.1])]
    success, details = results.results_table(records)
    row = next(line for line in success.splitlines() if line.startswith("| cube-single"))
    assert "40.0 ± 20.0 (3 of 3 runs)" in row  # mean 40, sample std 20
    assert f"40.0 ± 20.0 (3 of 3 runs); FQL: {results.PUBLISHED[(CUBE, 'iql')][0]}" in row  # the published figure beside
    assert "— (0 of 3 runs) |" in row  # td3_bc: nothing published, nothing appended
    assert "10.0 (1 of 3 runs)" in row  # one seed: no spread, and says so
    assert "— (0 of 3 runs)" in row  # td3_bc and rebrac: nothing yet
    assert "not run" in row  # cql is not planned on cube
    assert "| 1 of" not in success  # the header row is no cell
    assert "60 s" in next(line for line in details.splitlines() if line.startswith("| cube-single"))


def test_records_outside_the_plan_are_listed_not_mixed_in():
    n = results.PLAN[CUBE].total_steps // results.PLAN[CUBE].eval_every
    pilot = record("iql", CUBE, 0, [1.0] * n)  # seed 0 is a pilot
    earlier = record(
        "iql", CUBE, 1, [1.0], flags=dict(results.planned_flags(CUBE, "iql"), total_steps="2000", eval_every="2000")
    )
    failed = dict(record("iql", CUBE, 2, [0.0] * n), status="failed", error="boom")
    success, _ = results.results_table([pilot, earlier, failed])
    assert "— (0 of 3 runs)" in next(line for line in success.splitlines() if line.startswith("| cube-single"))
    lines = results.other_records([pilot, earlier, failed])
    assert (
        len(lines) == 3 and any("boom" in line for line in lines) and any("total_steps=2000" in line for line in lines)
    )


def test_curves_average_seeds_at_common_steps(tmp_path):
    n = results.PLAN[POINTMAZE].total_steps // results.PLAN[POINTMAZE].eval_every
    a, b = np.linspace(0, 0.5, n), np.linspace(0, 1.0, n)
    records = [
        record("bc", POINTMAZE, 1, list(a)),
        record("bc", POINTMAZE, 2, list(b)),
        record("bc", POINTMAZE, 0, [1.0] * n),
    ]
    steps, mean, std, seeds = results.curves(records)[(POINTMAZE, "bc")]
    assert seeds == 2 and steps[-1] == results.PLAN[POINTMAZE].total_steps
    np.testing.assert_allclose(mean, 100 * (a + b) / 2)
    np.testing.assert_allclose(std, 100 * np.abs(a - b) / np.sqrt(2))
    path = tmp_path / "curves.png"
    results.plot_curves(results.curves(records), str(path))
    assert path.stat().st_size > 1000
    text = results.render(records, str(path))
    assert "2 of" in text and "curves.png" in text and results.PUBLISHED_NOTE in text


def test_main_attaches_nothing_without_run_folders_and_writes_the_page(tmp_path):
    n = results.PLAN[CUBE].total_steps // results.PLAN[CUBE].eval_every
    r = record("td3_bc", CUBE, 3, [0.0] * (n - 1) + [0.5])
    del r["success_rates"]
    r["extra"] = {"run_path": str(tmp_path / "gone")}
    assert results.attach_success_curves([r]) == 0 and "success_rates" not in r
    jsonl, md, png = tmp_path / "r.jsonl", tmp_path / "r.md", tmp_path / "r.png"
    jsonl.write_text(json.dumps(r) + "\n")
    datasets_md = tmp_path / "datasets.md"
    measured_before = "| scene-play-v0 | 100 x 1000 = 100,000 | 10 | 514 | 214 | 30.8 | 1000 x 1000 |"
    datasets_md.write_text(f"intro\n{results.DATASETS_START}\nold\n{measured_before}\n{results.DATASETS_END}\nafter\n")
    results.main(results.Args(results=str(jsonl), out=str(md), curves_png=str(png), directory=str(tmp_path),
                              datasets_md=str(datasets_md)))  # fmt: skip
    assert "50.0 (1 of 3 runs)" in md.read_text()
    page = datasets_md.read_text()
    assert (
        page.startswith("intro\n") and page.endswith("after\n") and "\nold\n" not in page and "| OGBench file |" in page
    )
    # no file in tmp_path: a build measured before keeps its row, marked as not on this machine
    assert measured_before + " before 2026-12-05" in page and "(file not on this machine now) |" in page
