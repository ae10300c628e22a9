"""Every training script resumes exactly (bc.py's mechanism, tested in test_reliability.py, copied into the others).

A run stopped at a checkpoint and resumed with --resume must end with the very tensors a straight run ends with:
networks, target networks, optimizer moments, learning-rate schedules, CQL's multipliers and the random state.
"""

import importlib
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import bc
import checkpoints
from test_reliability import ROOT, wait_for

FAST = dict(batch_size=32, eval_episodes=1, log_every=20, progress=False)
TINY = {  # tiny networks, and every option on that adds state to carry over (schedules, dropout, multipliers)
    "td3_bc": dict(hidden_dim=16),
    "cql": dict(hidden_dim=16, hidden_layers=2, cql_num_actions=2, lagrange=True, bc_steps=10),
    "cal_ql": dict(hidden_dim=16, hidden_layers=2, cql_num_actions=2, online_steps=0),  # online phase: test_finetune.py
    "iql": dict(hidden_dim=16, actor_dropout=0.1, cosine_actor_lr=True),
    "onestep_rl": dict(hidden_dim=16),
    "dt": dict(embed_dim=16, context_length=4, dropout=0.1, warmup_steps=40),
    "awr": dict(hidden_dim=16),
    "ddpg_bc": dict(hidden_dim=16),
    "sfbc": dict(hidden_dim=16, num_samples=(2,)),
    "rebrac": dict(hidden_dim=16, hidden_layers=2),
}
KILL_STEPS = {"td3_bc": 1200, "iql": 600, "dt": 300}  # ~1 s each; the kill must land before the run ends


def assert_identical(expected, actual, where="models"):
    """Every tensor equal bit for bit, every other leaf (step counts, learning rates) equal."""
    if isinstance(expected, torch.Tensor):
        assert torch.equal(expected, actual), where
    elif isinstance(expected, dict):
        assert expected.keys() == actual.keys(), where
        for key in expected:
            assert_identical(expected[key], actual[key], f"{where}/{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(expected) == len(actual), where
        for i, (e, a) in enumerate(zip(expected, actual)):
            assert_identical(e, a, f"{where}/{i}")
    else:
        assert expected == actual, where


def flags(args: dict) -> list[str]:
    """The command line of an Args(**args)."""
    out = []
    for name, value in args.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
        else:
            out += [flag, *map(str, value if isinstance(value, tuple) else (value,))]
    return out


def keep_checkpoint_of_step(kept_step: int, copy_to, monkeypatch) -> None:
    """From now on checkpoints.save_checkpoint also copies the checkpoint of kept_step to copy_to (its folder made then)."""
    real_save = checkpoints.save_checkpoint

    def save_and_keep(path, algorithm, args, step, models, normalizer):
        real_save(path, algorithm, args, step, models, normalizer)
        if step == kept_step:
            copy_to.parent.mkdir()
            shutil.copy(path, copy_to)

    monkeypatch.setattr(checkpoints, "save_checkpoint", save_and_keep)


@pytest.mark.parametrize("script", TINY)
def test_resumed_run_ends_with_the_straight_runs_tensors(script, local_dataset, run_dir, tmp_path, monkeypatch):
    module = importlib.import_module(script)
    total, half = 60, 30
    mid = tmp_path / "mid" / "checkpoint.pt"
    keep_checkpoint_of_step(half, mid, monkeypatch)
    args = dict(dataset=local_dataset("pendulum/medium-v0"), total_steps=total, checkpoint_every=half, eval_every=total,
                **FAST, **TINY[script])  # fmt: skip
    straight = module.main(module.Args(run_dir=run_dir, **args))
    expected = checkpoints.load_checkpoint(os.path.join(straight.run_path, "checkpoint.pt"), script)
    assert checkpoints.load_checkpoint(str(mid), script)["step"] == half

    module.main(module.Args(resume=str(mid), **args))
    resumed = checkpoints.load_checkpoint(str(mid), script)
    assert expected["step"] == resumed["step"] == total
    assert_identical(expected["models"], resumed["models"])
    with pytest.raises(ValueError, match=f"already at step {total} and --total-steps is {total}: pass a larger --total-steps"):
        module.main(module.Args(resume=str(mid), **args))  # nothing left to do: said, not a silent exit
    assert_identical(resumed["models"], checkpoints.load_checkpoint(str(mid), script)["models"])


@pytest.mark.parametrize("script", KILL_STEPS)
def test_killed_run_resumes_to_bit_identical_state(script, local_dataset, run_dir):
    module = importlib.import_module(script)
    total, quarter = KILL_STEPS[script], KILL_STEPS[script] // 4
    args = dict(dataset=local_dataset("pendulum/medium-v0"), total_steps=total, checkpoint_every=quarter, eval_every=total,
                **FAST, **TINY[script])  # fmt: skip
    straight = module.main(module.Args(run_dir=run_dir, **args))
    expected = checkpoints.load_checkpoint(os.path.join(straight.run_path, "checkpoint.pt"), script)

    killed_dir = os.path.join(run_dir, "killed")
    command = [sys.executable, os.path.join(ROOT, "algorithms", f"{script}.py"), "--run-dir", killed_dir, *flags(args)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while not (os.path.isdir(killed_dir) and os.listdir(killed_dir)):
        assert process.poll() is None, process.communicate()
        time.sleep(0.005)
    checkpoint = os.path.join(killed_dir, os.listdir(killed_dir)[0], "checkpoint.pt")
    wait_for(checkpoint, process)  # the first checkpoint, at a quarter: kill it there, with 3/4 of the run to go
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoints.load_checkpoint(checkpoint, script)["step"] in (quarter, 2 * quarter, 3 * quarter)  # killed mid-run

    module.main(module.Args(resume=checkpoint, **args))
    resumed = checkpoints.load_checkpoint(checkpoint, script)
    assert resumed["step"] == total
    assert_identical(expected["models"], resumed["models"])


@pytest.fixture(scope="module")
def bc_checkpoint(local_dataset, tmp_path_factory):
    result = bc.main(bc.Args(dataset=local_dataset("pendulum/medium-v0"), run_dir=str(tmp_path_factory.mktemp("bc")),
                             total_steps=5, eval_every=5, save_model=True, hidden_dim=16, **FAST))  # fmt: skip
    return os.path.join(result.run_path, "checkpoint.pt")


@pytest.mark.parametrize("script", TINY)
def test_checkpoint_of_another_algorithm_is_refused(script, bc_checkpoint):
    module = importlib.import_module(script)
    with pytest.raises(ValueError, match=f"was written by bc, not {script}: load it with algorithms/bc.py"):
        module.main(module.Args(dataset="pendulum/medium-v0", resume=bc_checkpoint, total_steps=10, **FAST,
                                **TINY[script]))  # fmt: skip
