"""benchmarks/claims.py: the verdicts come from the numbers, and the README's claims table from the verdicts."""

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
                        record("td3_bc", dataset, 20.5 + noise, seed),  # within noise of BC: not a win
                        record("cql", dataset, 5 + noise, seed)]  # fmt: skip
    records.append(record("cql", claims.PENDULUM_NOISY[0], 1000.0, seed=9, status="failed"))  # failed runs don't count
    held, numbers = claims.offline_rl_beats_bc(records)
    assert held == "partly"
    assert "iql 90.0 ± 0.8 (beats BC)" in numbers and "td3_bc 20.5 ± 0.8," in numbers and "cql 5.0 ± 0.8" in numbers
    iql_only = [r for r in records if r["script"] in ("bc", "iql")]
    assert claims.offline_rl_beats_bc(iql_only)[0] == "partly"  # missing algorithms are not wins
    assert claims.offline_rl_beats_bc([r for r in records if r["script"] == "bc"])[0] == "no"


def test_stitching_verdict_needs_every_baseline_beaten():
    maze = claims.STITCH_MAZE
    records = [record("iql", maze, 12.0 + s, s) for s in range(3)]
    records += [record("bc", maze, 0.0, s, top_fraction=1.0) for s in range(3)]
    records += [record("bc", maze, 1.0 + s, s, top_fraction=0.1) for s in range(3)]
    records += [record("dt", maze, 0.0, s) for s in range(3)]
    held, numbers = claims.stitching(records)
    assert held == "partly" and "IQL 13.0 ± 0.8 vs BC 0.0 ± 0.0, 10% BC 2.0 ± 0.8, DT 0.0 ± 0.0" in numbers
    assert "far from solving" in numbers  # ahead of all, but 13 of 100 is not a solved maze
    solved = [dict(r, normalized_score=r["normalized_score"] + 60, success_rate=0.9) if r["script"] == "iql" else r for r in records]
    held, numbers = claims.stitching(solved)
    assert held == "yes" and "far from" not in numbers and "IQL reaches the goal in 90% of evaluation episodes" in numbers
    solved = [dict(r, normalized_score=73.0) if r["script"] == "dt" else r for r in solved]  # DT stitches too
    assert claims.stitching(solved)[0] == "partly"


def test_test_time_verdict_reads_the_tagged_scores(tmp_path):
    records = []
    for dataset in claims.SWEEPS["test-time"][0][1]:
        for s in range(3):
            records.append(record("opex", dataset, 40.0 + s, s, policy_scores={"beta0.1": 80.0 + s}))
            records.append(record("ttt", dataset, 40.0 + s, s, policy_scores={"ttt": 40.5 + s}))
    held, numbers = claims.test_time(records)
    assert held == "partly" and "DDPG+BC 41.0 ± 0.8 → OPEX (β 0.1) 81.0 ± 0.8, TTT 41.5 ± 0.8" in numbers
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{claims.START}\nold table\n{claims.END}\nrest\n")
    report.write_readme(str(readme), claims.readme_table({"test-time": (held, numbers)}), claims.START, claims.END)
    text = readme.read_text()
    assert "old table" not in text and "| **partly** |" in text and text.endswith(f"{claims.END}\nrest\n")
