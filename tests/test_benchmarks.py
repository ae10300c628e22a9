"""benchmarks/sweep.py and benchmarks/report.py: resumable sweeps, failures recorded, tables from results;
benchmarks/throughput.py's clocks."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import finetune
import report
import sweep
import throughput

TINY_FLAGS = ("total_steps=60", "batch_size=32", "hidden_dim=16", "eval_every=60", "eval_episodes=1", "log_every=30")


def read_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(params=["local", "ray"])
def backend(request):
    """The sweep backend under test; for ray, a 2-CPU local Ray instance whose workers see the test datasets."""
    if request.param == "local":
        yield "local"
        return
    import ray  # in requirements.txt: a missing ray fails this test, never skips it
    env_vars = {"MINARI_DATASETS_PATH": os.environ["MINARI_DATASETS_PATH"]}
    # "local": a new instance even where a Ray cluster already runs on this machine
    ray.init("local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env_vars})
    yield "ray"
    ray.shutdown()


def test_grid_runs_once_records_failures_and_resumes(backend, local_dataset, tmp_path):
    local_dataset("pendulum/medium-v0")
    results = str(tmp_path / "results.jsonl")
    args = sweep.SweepArgs(
        scripts=("bc",), datasets=("pendulum/medium-v0", "pendulum/no-such-v0"), seeds=(0,),
        grid=("top_fraction=1.0,0.5",), flags=TINY_FLAGS, workers=2, results=results,
        logs=str(tmp_path / "logs"), run_dir=str(tmp_path / "runs"), backend=backend,
    )  # fmt: skip
    records = sweep.main(args)
    assert len(records) == 4 and len(read_lines(results)) == 4  # 2 datasets x 2 fractions
    ok = [r for r in records if r["status"] == "ok"]
    failed = [r for r in records if r["status"] == "failed"]
    assert len(ok) == 2 and all(r["dataset"] == "pendulum/medium-v0" for r in ok)
    assert len(failed) == 2 and all("Unknown dataset id 'pendulum/no-such-v0'" in r["error"] for r in failed)
    assert all("Traceback" in r["log_tail"] for r in failed)  # the run's own output travels with the record
    assert {r["flags"]["top_fraction"] for r in ok} == {"1.0", "0.5"}
    assert all(r["updates_per_s"] > 0 and r["wall_time_s"] > 0 for r in ok)
    assert sweep.main(args) == [] and len(read_lines(results)) == 4  # a rerun executes nothing new
    curves = report.learning_curves(records, str(tmp_path / "curves.png"))  # from the scores each record holds
    for r in ok:  # one evaluation each, at the last update: the curve ends at the recorded final score
        steps, mean = curves[("pendulum/medium-v0", f"bc (top_fraction={r['flags']['top_fraction']})")]
        assert steps == [60] and mean[-1] == pytest.approx(r["normalized_score"], abs=1e-3)
    # records from before the sweep kept the scores: the same curves from the runs' TensorBoard folders
    older = [{k: v for k, v in r.items() if k != "eval_steps"} for r in records]
    from_logs = report.learning_curves(older, str(tmp_path / "curves.png"))
    assert from_logs.keys() == curves.keys()
    for key, (steps, mean) in from_logs.items():
        assert steps == curves[key][0] and mean == pytest.approx(curves[key][1], abs=1e-4)


def test_report_turns_results_into_a_mean_std_table(tmp_path):
    path = tmp_path / "results.jsonl"
    rows = [
        {"id": f"a{s}", "script": "bc", "dataset": "pendulum/medium-v0", "seed": s, "flags": {"top_fraction": "1.0"},
         "status": "ok", "normalized_score": score, "updates_per_s": 100.0}
        for s, score in enumerate([40.0, 50.0, 60.0])
    ] + [
        {"id": "b0", "script": "bc", "dataset": "pendulum/medium-v0", "seed": 0, "flags": {"top_fraction": "0.1"},
         "status": "ok", "normalized_score": 80.0, "updates_per_s": 120.0, "success_rate": 0.5},
        {"id": "c0", "script": "bc", "dataset": "pendulum/mixed-v0", "seed": 0, "flags": {"top_fraction": "0.1"},
         "status": "failed", "error": "boom"},
    ]  # fmt: skip
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    text = report.table(report.load_records([str(path)]))
    assert "| bc (top_fraction=1.0) | 50.0 ± 10.0 [40.0, 60.0] (3) | 100 |" in text  # sample std, 95% CI of the mean
    assert "| bc (top_fraction=0.1) | 80.0 (1), success 50% | 120 |" in text  # one seed: no spread to show  # goal tasks: the success rate too
    assert "1 failed runs: c0" in text
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.START}\nold\n{report.END}\noutro\n")
    report.write_readme(str(readme), text)
    assert readme.read_text().startswith("intro\n") and "old" not in readme.read_text() and "50.0 ± 10.0" in readme.read_text()
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="has no '<!-- results:start -->'"):
        report.write_readme(str(readme), text)


def test_mse_analysis_correlates_score_with_each_mse(local_dataset, run_dir, tmp_path):
    import bc
    import mse_analysis

    for seed, steps in ((0, 40), (1, 400)):  # two runs of different quality: four evaluation points
        bc.main(bc.Args(dataset=local_dataset("pendulum/medium-v0"), run_dir=run_dir, seed=seed, total_steps=steps,
                        eval_every=steps // 2, batch_size=32, hidden_dim=16, eval_episodes=2, progress=False,
                        validation_fraction=0.1))  # fmt: skip
    points = mse_analysis.collect(sorted(str(p) for p in (tmp_path / "runs").iterdir()))
    assert len(points["score"]) == 4 and all(len(points[s]) == 4 and (points[s] > 0).all() for s in mse_analysis.SPLITS)
    corr = mse_analysis.main(mse_analysis.AnalysisArgs(runs=(f"{run_dir}/*",), out=str(tmp_path / "mse")))
    assert all(-1 <= corr[s][0] <= 1 for s in mse_analysis.SPLITS)
    assert (tmp_path / "mse.png").stat().st_size > 1000 and "| eval states |" in (tmp_path / "mse.md").read_text()


def test_scaling_matrix_fills_every_cell_and_draws_heatmaps(local_dataset, tmp_path):
    import scaling_matrix

    local_dataset("pendulum/medium-v0")
    args = scaling_matrix.MatrixArgs(
        dataset="pendulum/medium-v0", scripts=("awr", "ddpg_bc"), fractions=(0.5, 1.0), seeds=(0,), workers=2,
        flags=TINY_FLAGS, results=str(tmp_path / "matrix.jsonl"), out=str(tmp_path / "matrix"), work_dir=str(tmp_path),
    )  # fmt: skip
    grids = scaling_matrix.main(args)
    assert set(grids) == {"awr", "ddpg_bc"}
    assert all(grid.shape == (2, 2) and np.isfinite(grid).all() for grid in grids.values())
    records = read_lines(tmp_path / "matrix.jsonl")
    assert {(r["flags"]["value_data_fraction"], r["flags"]["policy_data_fraction"]) for r in records} == {
        ("0.5", "0.5"), ("0.5", "1"), ("1", "0.5"), ("1", "1")}
    assert (tmp_path / "matrix.png").stat().st_size > 1000 and "**ddpg_bc**" in (tmp_path / "matrix.md").read_text()


def test_sweep_run_killed_mid_way_resumes_from_its_checkpoint(local_dataset, tmp_path):
    import checkpoints
    from test_reliability import ROOT

    local_dataset("pendulum/medium-v0")
    total = 1000
    flags = (f"total_steps={total}", "batch_size=32", "hidden_dim=16", f"eval_every={total}", "eval_episodes=1", "log_every=100")
    args = sweep.SweepArgs(scripts=("bc",), datasets=("pendulum/medium-v0",), seeds=(0,), flags=flags, workers=1,
                           results=str(tmp_path / "results.jsonl"), logs=str(tmp_path / "logs"),
                           run_dir=str(tmp_path / "runs"), checkpoint_every=100)  # fmt: skip
    [config] = sweep.expand(args)
    straight = sweep.run_one(config, str(tmp_path / "straight_logs"), str(tmp_path / "straight"), checkpoint_every=100)
    assert straight["status"] == "ok" and straight["resumed_from_step"] == 0
    expected = checkpoints.load_checkpoint(os.path.join(straight["extra"]["run_path"], "checkpoint.pt"), "bc")

    # the whole sweep (driver and its pool worker) dies at once, as on a machine going away
    code = f"import sys; sys.path.insert(0, {os.path.join(ROOT, 'benchmarks')!r}); import sweep; sweep.main(sweep.{args!r})"
    process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pattern, deadline = str(tmp_path / "runs" / config["id"] / "*" / "checkpoint.pt"), time.time() + 120
    while not glob.glob(pattern):
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, f"{pattern} never appeared"
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    [checkpoint] = glob.glob(pattern)
    killed_at = checkpoints.load_checkpoint(checkpoint, "bc")["step"]
    assert 100 <= killed_at < total and not os.path.exists(args.results)  # cut off mid-way, nothing recorded

    [record] = sweep.main(args)
    assert record["status"] == "ok" and record["resumed_from_step"] == killed_at
    assert record["extra"]["run_path"] == os.path.dirname(checkpoint)  # continued in the same folder
    resumed = checkpoints.load_checkpoint(checkpoint, "bc")
    assert resumed["step"] == total
    for name, tensor in expected["models"]["actor"].items():  # bit-identical to the run never cut off
        assert torch.equal(tensor, resumed["models"]["actor"][name]), name
    assert sweep.main(args) == [] and len(read_lines(args.results)) == 1


def test_checkpoint_already_at_total_steps_starts_over(tmp_path):
    """A run that trained to the end but died before its record was written cannot --resume: a fresh start."""
    folder = tmp_path / "config" / "run_folder"
    folder.mkdir(parents=True)
    torch.save({"step": 500}, folder / "checkpoint.pt")
    assert sweep.resumable_checkpoint(str(tmp_path / "config"), 600) == (str(folder / "checkpoint.pt"), 500)
    assert sweep.resumable_checkpoint(str(tmp_path / "config"), 500) == (None, 0) and not folder.exists()
    assert sweep.resumable_checkpoint(str(tmp_path / "nothing_yet"), 500) == (None, 0)


def test_sweep_progress_names_the_score_or_else_the_success_rate():
    assert sweep.last_run_summary({"status": "ok", "normalized_score": 71.34, "success_rate": 0.5}) == "ok 71.3"
    assert sweep.last_run_summary({"status": "ok", "normalized_score": float("nan"), "success_rate": 0.35}) == "ok 35% success"
    assert sweep.last_run_summary({"status": "failed"}) == "failed nan"


def test_finetune_report_finds_the_dip_and_computes_the_verdict(tmp_path):
    """Hand-made curves: CQL falls 30 points right after going online and recovers, Cal-QL dips 2; the verdict and
    the table's before / dip / end come from these numbers."""
    steps = [100, 200, 300, 400]  # offline until 200, then 200 online steps
    curve = {"CQL": [40, 50, 20, 60], "Cal-QL": [40, 50, 48, 70], "IQL": [60, 70, 71, 72]}
    records = [
        dict(status="ok", script=finetune.METHODS[name][0], seed=seed, wall_time_s=60.0, eval_steps=steps,
             scores=[v + seed for v in values], flags=dict(f.split("=") for f in finetune.METHODS[name][1]))
        for name, values in curve.items() for seed in (0, 2)
    ]  # fmt: skip
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{finetune.START}\nold\n{finetune.END}\nrest\n")
    args = finetune.FinetuneArgs(seeds=(0, 2), offline_steps=200, online_steps=200, dip_window=100, out=str(tmp_path / "ft"), readme=str(readme))
    rows = {r["method"]: r for r in finetune.summarize(finetune.curves(records, 200), 100, 10.0)}
    assert rows["CQL"]["before"].tolist() == [50, 52] and rows["CQL"]["dip"].tolist() == [20, 22] and rows["CQL"]["collapses"]
    assert rows["Cal-QL"]["dip"].tolist() == [48, 50] and not rows["Cal-QL"]["collapses"] and rows["IQL"]["end"].tolist() == [72, 74]
    text = finetune.write_report(args, records, wall_s=120.0)
    # mean ± sample std [95% bootstrap interval of the mean; with 2 seeds, their min and max]
    assert "| CQL | 51.0 ± 1.4 [50.0, 52.0] | 21.0 ± 1.4 [20.0, 22.0] | 61.0 ± 1.4 [60.0, 62.0] | yes |" in text
    assert "**yes**" in text and "6 min of runs" in text
    assert os.path.exists(tmp_path / "ft.png")
    # a 20-point mean drop whose seeds spread wider than the drop: the intervals overlap, so no collapse is claimed
    noisy = {"CQL": (np.array([-100, 0, 100]), np.array([[40.0, 50.0, 30.0], [80.0, 90.0, 70.0]]))}
    assert not finetune.summarize(noisy, 100, 10.0)[0]["collapses"]
    written = readme.read_text()
    assert written.startswith("intro\n") and written.endswith("rest\n") and "old" not in written and "| Cal-QL | 51.0 ± 1.4 [50.0, 52.0] | 49.0 ± 1.4 [48.0, 50.0] | 71.0 ± 1.4 [70.0, 72.0] | no |" in written



def test_throughput_process_clock_counts_cpu_seconds_not_waiting(tmp_path, monkeypatch):
    """--clock process times what the run itself computes: seconds spent waiting (as when other processes hold the
    cores) do not count, while the wall clock counts them."""
    waiting_script = type("WaitingScript", (), {"Args": None, "main": staticmethod(lambda args: time.sleep(0.3))})
    monkeypatch.setattr(throughput.tyro, "cli", lambda *args, **kwargs: None)  # the timing flags are a real script's
    timed = {clock: throughput.timed_main(waiting_script, throughput.ThroughputArgs(clock=clock), 10, str(tmp_path), "")
             for clock in ("wall", "process")}  # fmt: skip
    assert timed["wall"] >= 0.29
    assert timed["process"] < 0.1
