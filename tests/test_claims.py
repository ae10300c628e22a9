"""benchmarks/claims.py: the verdicts come from the numbers, and the README's claims table from the verdicts."""

import json

import pytest

import claims
import report


def record(script, dataset, score, seed=0, status="ok", policy_scores=None, **flags):
    return {"id": f"{script}{dataset}{seed}{flags}", "script": script, "dataset": dataset, "seed": seed,
            "flags": {k: str(v) for k, v in flags.items()}, "status": status, "normalized_score": score,
            "policy_scores": policy_scores or {}, "extra": {}}  # fmt: skip


def test_offline_rl_verdict_counts_only_clear_wins():
    records = []
    for dataset in claims.PENDULUM_NOISY:
        for seed, noise in enumerate((-1.0, 0.0, 1.0)):
            records += [record("bc", dataset, 20 + noise, seed), record("iql", dataset, 90 + noise, seed),
                        record("td3_bc", dataset, 21.5 + noise, seed),  # ahead by more than a std, intervals overlap: no win
                        record("cql", dataset, 5 + noise, seed)]  # fmt: skip
    records.append(record("cql", claims.PENDULUM_NOISY[0], 1000.0, seed=9, status="failed"))  # failed runs don't count
    held, numbers = claims.offline_rl_beats_bc(records)
    assert held == "partly"
    # mean ± sample std (ddof 1) [95% bootstrap interval of the mean: with 3 seeds, their min and max]
    assert "iql 90.0 ± 1.0 [89.0, 91.0] (beats BC)" in numbers and "cql 5.0 ± 1.0 [4.0, 6.0]" in numbers
    assert "td3_bc 21.5 ± 1.0 [20.5, 22.5]," in numbers  # BC's [19.0, 21.0] overlaps it
    iql_only = [r for r in records if r["script"] in ("bc", "iql")]
    assert claims.offline_rl_beats_bc(iql_only)[0] == "partly"  # missing algorithms are not wins
    assert claims.offline_rl_beats_bc([r for r in records if r["script"] == "bc"])[0] == "no"


def test_stitching_verdict_needs_every_td_method_to_succeed():
    maze = claims.STITCH_MAZE
    records = [dict(record("iql", maze, 12.0 + s, s), success_rate=0.3) for s in range(3)]
    records += [dict(record("td3_bc", maze, 14.0 + s, s), success_rate=0.6) for s in range(3)]
    records += [dict(record("bc", maze, 0.0, s, top_fraction=1.0), success_rate=0.0) for s in range(3)]
    records += [record("bc", maze, 1.0 + s, s, top_fraction=0.1) for s in range(3)]
    records += [record("dt", maze, 0.0, s) for s in range(3)]
    held, numbers = claims.stitching(records)
    # both ahead of every baseline, but IQL reaches the goal in only 30% of the episodes
    assert held == "partly"
    assert numbers == (f"{maze}: IQL 13.0 ± 1.0 [12.0, 14.0] (success 30%), TD3+BC 15.0 ± 1.0 [14.0, 16.0] (success 60%) "
                       "vs BC 0.0 ± 0.0 [0.0, 0.0], 10% BC 2.0 ± 1.0 [1.0, 3.0], DT 0.0 ± 0.0 [0.0, 0.0] (success BC 0%)")  # fmt: skip
    solved = [dict(r, success_rate=0.9) if r["script"] == "iql" else r for r in records]
    assert claims.stitching(solved)[0] == "yes"
    dt_stitches = [dict(r, normalized_score=73.0) if r["script"] == "dt" else r for r in solved]
    assert claims.stitching(dt_stitches)[0] == "partly"
    assert claims.stitching([r for r in records if r["script"] != "iql" and r["script"] != "td3_bc"])[0] == "no"


def test_test_time_verdict_reads_the_chosen_beta(tmp_path):
    records = []
    for dataset in claims.TEST_TIME_DATASETS:
        for s in range(3):
            records.append(record("opex", dataset, 40.0 + s, s, policy_scores={"beta0.03": 80.0 + s}, betas=0.03))
            records.append(record("ttt", dataset, 40.0 + s, s, policy_scores={"ttt": 40.5 + s}))
    held, numbers = claims.test_time(records)
    assert held == "partly" and "DDPG+BC 41.0 ± 1.0 [40.0, 42.0] → OPEX (β 0.03) 81.0 ± 1.0 [80.0, 82.0], TTT 41.5 ± 1.0 [40.5, 42.5]" in numbers
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{claims.START}\nold table\n{claims.END}\nrest\n")
    report.write_readme(str(readme), claims.readme_table({"test-time": (held, numbers)}), claims.START, claims.END)
    text = readme.read_text()
    assert "old table" not in text and "| **partly** |" in text and text.endswith(f"{claims.END}\nrest\n")
    # one claim rewritten later: its row changes, every other row stays as it stood
    stitching_row = f"| {claims.TITLES['stitching']} | **yes** | kept |"
    table = text.split(claims.START)[1].split(claims.END)[0].splitlines()  # test-time "partly", the rest not run
    previous = [stitching_row if line.startswith(f"| {claims.TITLES['stitching']} |") else line for line in table]
    rows = claims.readme_table({"test-time": ("no", "newer")}, "\n".join(previous))
    assert len(rows.splitlines()) == 2 + len(claims.TITLES)
    assert f"| {claims.TITLES['test-time']} | **no** | newer" in rows and stitching_row in rows and "| **partly** |" not in rows


def test_tuned_values_are_chosen_per_cell_on_the_tuning_seeds_only(tmp_path, monkeypatch):
    """A fake sweep scores alpha by cell: the report runs each cell at the alpha that won on the tuning seeds, and
    no report seed is ever run with another alpha (nor a tuning seed in the report)."""
    best_alpha = {"0.1": "3", "1.0": "0.3"}  # per policy-data fraction

    def fake_sweep(where, runs):
        with open(where.results, "a") as f:
            for run in runs:
                good = run["flags"]["alpha"] == best_alpha[run["flags"]["cell"]]
                score = (50.0 if good else 10.0) + (1000.0 if run["seed"] != 0 and not good else 0.0)  # report seeds would pick badly
                f.write(json.dumps(dict(run, status="ok", normalized_score=score, policy_scores={}, extra={})) + "\n")
        return runs

    grid = claims.Grid(("awr",), ("pendulum/mixed-v0",), ("total_steps=10",), grid=("cell=0.1,1.0",), tuned=("alpha=0.3,3",))
    monkeypatch.setattr(claims, "OUT", str(tmp_path))
    monkeypatch.setitem(claims.SWEEPS, "ddpg-bc-vs-awr", [grid])
    monkeypatch.setattr(claims.sweep, "main", fake_sweep)
    records, tuning = claims.run_sweeps("ddpg-bc-vs-awr", claims.ClaimsArgs("ddpg-bc-vs-awr", seeds=(10, 11), tuning_seeds=(0,)))
    assert sorted((r["seed"], r["flags"]["cell"], r["flags"]["alpha"]) for r in tuning) == [
        (0, "0.1", "0.3"), (0, "0.1", "3"), (0, "1.0", "0.3"), (0, "1.0", "3")]  # fmt: skip
    assert sorted((r["seed"], r["flags"]["cell"], r["flags"]["alpha"]) for r in records) == [
        (10, "0.1", "3"), (10, "1.0", "0.3"), (11, "0.1", "3"), (11, "1.0", "0.3")]  # fmt: skip
    assert all(r["flags"]["eval_episodes"] == "20" and r["flags"]["total_steps"] == "10" for r in records)
    assert claims.choices("ddpg-bc-vs-awr", records) == (
        "- awr on pendulum/mixed-v0 (cell 0.1): alpha 3\n- awr on pendulum/mixed-v0 (cell 1.0): alpha 0.3")


def test_test_time_scripts_act_on_the_same_seeds_checkpoint(tmp_path, monkeypatch):
    """The base policy trains on the tuning seeds too; OPEX's beta is chosen on the tuning seed's checkpoint, then
    each report seed's OPEX run acts on that seed's own checkpoint."""

    def fake_sweep(where, runs):
        with open(where.results, "a") as f:
            for run in runs:
                beta = run["flags"].get("betas")
                scores = {f"beta{beta}": 60.0 if beta == "0.1" else 50.0} if beta else {}
                path = str(tmp_path / f"{run['script']}{run['seed']}")
                f.write(json.dumps(dict(run, status="ok", normalized_score=40.0, policy_scores=scores, extra={"run_path": path})) + "\n")
        return runs

    grids = [claims.Grid(("ddpg_bc",), ("pendulum/medium-v0",), ("save_model=True",)),
             claims.Grid(("opex",), ("pendulum/medium-v0",), tuned=("betas=0.03,0.1",), checkpoint_of="ddpg_bc")]  # fmt: skip
    monkeypatch.setattr(claims, "OUT", str(tmp_path))
    monkeypatch.setitem(claims.SWEEPS, "test-time", grids)
    monkeypatch.setattr(claims.sweep, "main", fake_sweep)
    records, tuning = claims.run_sweeps("test-time", claims.ClaimsArgs("test-time", seeds=(10, 11), tuning_seeds=(0,)))
    assert sorted((r["script"], r["seed"], r["flags"].get("betas")) for r in tuning) == [
        ("ddpg_bc", 0, None), ("opex", 0, "0.03"), ("opex", 0, "0.1")]  # fmt: skip
    opex = [r for r in records if r["script"] == "opex"]
    assert sorted((r["seed"], r["flags"]["betas"]) for r in opex) == [(10, "0.1"), (11, "0.1")]
    assert all(r["flags"]["checkpoint"] == str(tmp_path / f"ddpg_bc{r['seed']}" / "checkpoint.pt") for r in opex)
    assert len({r["id"] for r in opex}) == 2 and all("/" not in r["id"] for r in opex)  # ids name log files


def test_goal_conditioned_matrix_compares_the_extractions_per_value_learner_on_success_rates(tmp_path):
    """Hand-made runs of the six value learner x extraction panels: DDPG+BC above AWR in every cell but one of
    GC-SARSA's, so the claim holds "partly"; the cells are the mean success rate in % over the seeds, never the return."""
    records = []
    for learner, where in claims.GC_VALUE_LEARNERS.items():
        script, flags = where["script"], {k: v for k, v in where.items() if k != "script"}
        for value_fraction, policy_fraction in ((0.1, 0.1), (0.1, 1.0), (1.0, 0.1), (1.0, 1.0)):
            for seed, noise in ((10, -0.05), (11, 0.05)):
                for extraction, rate in (("ddpg_bc", 0.6), ("awr", 0.4)):
                    if learner == "GC-SARSA" and (value_fraction, policy_fraction) == (1.0, 0.1):
                        rate = 1.0 - rate  # AWR ahead in this one cell
                    run = record(script, claims.GC_MATRIX_DATASET, -900.0, seed=seed, extraction=extraction, alpha=0.3,
                                 value_data_fraction=value_fraction, policy_data_fraction=policy_fraction, **flags)  # fmt: skip
                    records.append(dict(run, success_rate=rate + noise, task_success_rates=[rate + noise] * 5))
    (held, numbers), body = claims.gc_matrix(records, str(tmp_path / "gc"), claims.ClaimsArgs("gc-ddpg-bc-vs-awr", seeds=(10, 11)))
    assert held == "partly"
    assert "GC-IQL: DDPG+BC ≥ AWR in 4 of 4 cells, mean success over cells DDPG+BC 60.0%, AWR 40.0%" in numbers
    assert "GC-SARSA: DDPG+BC ≥ AWR in 3 of 4 cells, mean success over cells DDPG+BC 55.0%, AWR 45.0%" in numbers
    assert "CRL: DDPG+BC ≥ AWR in 4 of 4 cells" in numbers
    assert "| 1 | 40.0 | 60.0 |" in body  # GC-SARSA's DDPG+BC row at value fraction 1: the cell AWR wins
    assert all((tmp_path / f"gc_{name}.png").stat().st_size > 1000 for name in ("gc-iql", "gc-sarsa", "crl"))
    assert claims.tuned_score(records[0]) == pytest.approx(55.0)  # a goal-conditioned run is chosen by its success rate in %


def test_eval_mse_without_its_run_folders_keeps_its_report_and_readme_row(tmp_path, monkeypatch):
    """Its MSE curves live in the runs' TensorBoard folders: on a machine without them, --no-run keeps the committed
    report and README row instead of failing the whole table."""
    monkeypatch.setattr(claims, "OUT", str(tmp_path))
    gone = dict(script="bc", dataset="pendulum/expert-v0", seed=10, flags={"top_fraction": "1.0"}, status="ok",
                normalized_score=50.0, extra={"run_path": str(tmp_path / "not_here")})  # fmt: skip
    (tmp_path / "eval-mse.jsonl").write_text(json.dumps(gone) + "\n")
    readme = tmp_path / "README.md"
    kept = f"| {claims.TITLES['eval-mse']} | **partly** | committed numbers |"
    readme.write_text(f"{claims.START}\n{kept}\n{claims.END}\n")
    args = claims.ClaimsArgs("eval-mse", run=False, readme=str(readme), work_dir=str(tmp_path / "work"))
    assert claims.main(args) == {}
    assert kept in readme.read_text() and not (tmp_path / "eval-mse.md").exists()
