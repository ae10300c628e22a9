"""benchmarks/ogbench_parity.py without JAX or OGBench's checkout: the command line OGBench's main.py gets (the same
budget, sizes and alpha as our flags), our flags as our scripts parse them, the CSVs main.py writes, the wandb
stand-in, the verdict and the report from a hand-made jsonl."""

import json

import ogbench_parity as parity
import pytest
import tyro


def small_args(**changes) -> parity.Args:
    settings = dict(ogbench_impls="/ref/impls", jax_python="/jax/bin/python", updates=1000, hidden_dim=128,
                    hidden_layers=2, batch_size=64, latent_dim=32, eval_episodes=3, log_windows=4, core=None)  # fmt: skip
    return parity.Args(**{**settings, **changes})


@pytest.mark.parametrize("algorithm", parity.ALGORITHMS)
def test_their_command_sets_the_budget_sizes_and_alpha_our_flags_set(algorithm):
    args = small_args()
    command, ours = parity.their_command(algorithm, args, seed=2, save_dir="/save"), parity.our_flags(algorithm, args)
    assert command[:2] == ["/jax/bin/python", "main.py"]
    for flag in ("--env_name=pointmaze-medium-navigate-v0", f"--agent=agents/{algorithm}.py", "--agent.batch_size=64",
                 "--agent.actor_hidden_dims=(128, 128)", "--seed=2", "--train_steps=1000", "--eval_interval=1000",
                 "--eval_episodes=3", "--video_episodes=0", "--log_interval=250", "--save_dir=/save"):  # fmt: skip
        assert flag in command
    assert int(next(p for p in command if p.startswith("--save_interval=")).split("=")[1]) > 1000  # never saves
    assert (ours["total_steps"], ours["eval_every"], ours["eval_episodes"]) == ("1000", "1000", "3")
    assert (ours["hidden_dim"], ours["hidden_layers"], ours["batch_size"]) == ("128", "2", "64")
    assert ("--agent.value_hidden_dims=(128, 128)" in command) == (algorithm != "gcbc")
    alpha = {"gcbc": None, "gciql": "0.003", "crl": "0.03"}[algorithm]
    assert ours.get("alpha") == alpha
    assert (f"--agent.alpha={alpha}" in command) == (alpha is not None)
    if alpha is not None:
        assert ours["extraction"] == "ddpg_bc" and "--agent.actor_loss=ddpgbc" in command
    assert ("--agent.latent_dim=32" in command) == (algorithm == "crl") == ("latent_dim" in ours)
    assert parity.their_command(algorithm, small_args(core=1), 2, "/save")[:4] == [
        "taskset",
        "-c",
        "1",
        "/jax/bin/python",
    ]


@pytest.mark.parametrize("algorithm", parity.ALGORITHMS)
def test_our_flags_are_flags_our_script_takes(algorithm):
    module = __import__(algorithm)
    cli = [
        part
        for name, value in parity.our_flags(algorithm, small_args()).items()
        for part in (f"--{name.replace('_', '-')}", value)
    ]
    parsed = tyro.cli(module.Args, args=cli)
    assert (parsed.total_steps, parsed.hidden_dim, parsed.hidden_layers, parsed.batch_size) == (1000, 128, 2, 64)
    assert getattr(parsed, "alpha", None) == {"gcbc": None, "gciql": 0.003, "crl": 0.03}[algorithm]


def test_their_environment_reads_our_file_offline_on_one_cpu_thread():
    environment = parity.their_environment("/h", "/stubs")
    assert (environment["HOME"], environment["PYTHONPATH"], environment["JAX_PLATFORMS"]) == ("/h", "/stubs", "cpu")
    assert "--xla_cpu_multi_thread_eigen=false" in environment["XLA_FLAGS"] and environment["WANDB_MODE"] == "disabled"


def test_the_wandb_stand_in_answers_main_pys_calls():
    namespace = {}
    exec(parity.WANDB_STANDIN, namespace)
    run = namespace["init"](
        config={}, project="OGBench", settings=namespace["Settings"](start_method="thread"), mode="online"
    )
    assert run.project == "OGBench" and namespace["log"]({"a": 1}, step=3) is None
    assert {"Image", "Video", "Histogram"} <= set(namespace)  # log_utils.CsvLogger's isinstance checks


def test_run_ids_alternate_sides_and_change_with_the_settings_only():
    args = small_args(seeds=(0, 1))
    ids = [r["id"] for r in parity.runs(args)]
    assert len(ids) == len(set(ids)) == 2 * 3 * 2
    assert [r["side"] for r in parity.runs(args)][:2] == ["ours", "ogbench"]
    assert ids == [r["id"] for r in parity.runs(small_args(seeds=(0, 1), jax_python="/elsewhere/python", core=3))]
    assert not set(ids) & {r["id"] for r in parity.runs(small_args(seeds=(0, 1), hidden_dim=64))}


def test_their_results_read_the_last_evaluation_and_drop_the_first_timing_window(tmp_path):
    (tmp_path / "eval.csv").write_text(
        "evaluation/task1_success,evaluation/task2_success,evaluation/task10_success,evaluation/overall_success,step\n"
        "0.0,0.0,0.0,0.0,1\n1.0,0.5,0.0,0.5,1000\n"
    )
    (tmp_path / "train.csv").write_text("training/loss,time/epoch_time,step\n1.0,0.5,250\n0.9,0.01,500\n0.8,0.03,750\n")
    result = parity.their_results(str(tmp_path))
    assert result["success_rate"] == 0.5 and result["eval_step"] == 1000
    assert result["task_success_rates"] == [1.0, 0.5, 0.0]  # task 10 after task 2: numeric order
    assert result["updates_per_s"] == pytest.approx(50.0) and result["timing_windows"] == 2  # 1 / mean(0.01, 0.03)


def record(side, algorithm, seed, success, speed=10.0, status="ok"):
    rates = [success] * 5
    return {"id": f"{side}__{algorithm}__seed{seed}", "side": side, "algorithm": algorithm, "seed": seed,
            "status": status, "success_rate": success, "task_success_rates": rates, "updates_per_s": speed,
            "wall_time_s": 60.0}  # fmt: skip


def test_the_verdict_is_corls_rule():
    assert parity.verdict([50, 52, 48], [51, 55, 47]) == parity.WITHIN
    assert parity.verdict([90, 91, 89], [50, 52, 48]) == parity.DIFFERS
    assert parity.verdict([10, 50, 90], [60, 61, 62]) == parity.WITHIN  # the noisy side's std 40 covers the gap
    assert parity.verdict([50], [50]) == "one seed: no spread"


def test_the_report_gives_both_sides_the_verdicts_the_speed_and_the_missing_runs(tmp_path):
    records = [record("ours", "gcbc", s, x, speed=20.0) for s, x in enumerate((0.5, 0.52, 0.48))]
    records += [record("ogbench", "gcbc", s, x, speed=80.0) for s, x in enumerate((0.51, 0.55, 0.47))]
    records += [record("ours", "gciql", s, x) for s, x in enumerate((0.9, 0.91, 0.89))]
    records += [record("ogbench", "gciql", s, x) for s, x in enumerate((0.5, 0.52, 0.48))]
    records += [record("ours", "crl", 0, 0.3), record("ogbench", "crl", 0, 0.0, status="failed")]
    path = tmp_path / "runs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    expected = [{"id": r["id"]} for r in records] + [{"id": "ours__crl__seed1"}]
    text = parity.report(parity.load_records(str(path)), expected, small_args(note="Load: busy."), "test machine")
    lines = text.splitlines()
    gcbc = next(line for line in lines if line.startswith("| gcbc | 50.0 ± 2.0 (3) | 51.0 ± 4.0 (3) | -1.0 |"))
    assert gcbc.endswith(f"{parity.WITHIN} |")
    assert next(
        line for line in lines if line.startswith("| gciql | 90.0 ± 1.0 (3) | 50.0 ± 2.0 (3) | +40.0 |")
    ).endswith(f"{parity.DIFFERS} |")
    assert "| crl | 30.0 ± 0.0 (1) | missing | — | not run on both sides |" in lines
    assert "| gcbc | 20 | 80 | 0.25 |" in lines  # updates/s ours, OGBench's, the ratio
    assert "| gcbc | ours | 50 | 50 | 50 | 50 | 50 | 50 / 52 / 48 (seeds 0, 1, 2) |" in lines
    assert "Missing runs (2 of 15): ogbench__crl__seed0, ours__crl__seed1." in text
    assert "Failed attempts: ogbench__crl__seed0" in text
    assert "Wall time of the finished runs: ours 7.0 min, OGBench 6.0 min" in text  # 60 s per finished run
    assert text.endswith("\nLoad: busy.\n")  # --note, as it is
