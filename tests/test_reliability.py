"""Resume exactly, fail clearly, lose nothing: training.Run's plumbing, exercised through bc.py (every script uses it).
The refusals themselves (flags, data, checkpoint files, the one-line handler) are in test_refusals.py."""

import glob
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import bc
import checks
import data
import checkpoints
import training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = dict(batch_size=32, hidden_dim=16, eval_episodes=1, log_every=100, progress=False)


def cli(run_dir, *extra):
    return [sys.executable, os.path.join(ROOT, "algorithms", "bc.py"), "--run-dir", run_dir, "--no-progress",
            "--batch-size", "32", "--hidden-dim", "16", "--eval-episodes", "1", *extra]  # fmt: skip


def wait_for(path, process, timeout=120):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.005)


def test_killed_run_resumes_to_bit_identical_parameters(local_dataset, run_dir):
    dataset = local_dataset("pendulum/medium-v0")
    total, half = 6000, 3000
    straight = bc.main(bc.Args(dataset=dataset, run_dir=run_dir, total_steps=total, checkpoint_every=half,
                               eval_every=total, **FAST))  # fmt: skip
    expected = checkpoints.load_checkpoint(os.path.join(straight.run_path, "checkpoint.pt"), "bc")
    assert expected["step"] == total

    killed_dir = os.path.join(run_dir, "killed")
    process = subprocess.Popen(cli(killed_dir, "--total-steps", str(total), "--checkpoint-every", str(half),
                                   "--eval-every", str(total)), stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    run_folder = None
    while run_folder is None:
        assert process.poll() is None, process.communicate()
        run_folder = next(iter(os.listdir(killed_dir)), None) if os.path.isdir(killed_dir) else None
        time.sleep(0.005)
    checkpoint = os.path.join(killed_dir, run_folder, "checkpoint.pt")
    wait_for(checkpoint, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoints.load_checkpoint(checkpoint, "bc")["step"] == half  # killed between the two checkpoints

    bc.main(bc.Args(dataset=dataset, resume=checkpoint, total_steps=total, checkpoint_every=half, eval_every=total, **FAST))
    resumed = checkpoints.load_checkpoint(checkpoint, "bc")
    assert resumed["step"] == total
    for name, tensor in expected["models"]["actor"].items():
        assert torch.equal(tensor, resumed["models"]["actor"][name]), name
    assert len(os.listdir(os.path.join(killed_dir, run_folder))) >= 3  # same folder: checkpoint + two event files


def test_same_seed_gives_identical_losses(local_dataset, run_dir, monkeypatch):
    losses = []
    real_update = bc.update
    monkeypatch.setattr(bc, "update", lambda *a: losses.append(real_update(*a)["losses/actor"].item()) or {"losses/actor": torch.tensor(losses[-1])})
    args = dict(dataset=local_dataset("pendulum/medium-v0"), run_dir=run_dir, total_steps=20, eval_every=20, seed=5, **FAST)
    bc.main(bc.Args(**args))
    first, losses[:] = list(losses), []
    bc.main(bc.Args(**args))
    assert first == losses and len(first) == 20


def test_nan_loss_stops_with_name_and_step_and_keeps_last_checkpoint(local_dataset, run_dir, monkeypatch):
    real_update, calls = bc.update, []

    def update_going_nan(*args):
        calls.append(1)
        return real_update(*args) if len(calls) < 150 else {"losses/actor": torch.tensor(float("nan"))}

    monkeypatch.setattr(bc, "update", update_going_nan)
    with pytest.raises(FloatingPointError, match=r"losses/actor became nan at step 200.*last good checkpoint is .*checkpoint.pt"):
        bc.main(bc.Args(dataset=local_dataset("pendulum/medium-v0"), run_dir=run_dir, total_steps=400,
                        checkpoint_every=100, eval_every=400, **FAST))  # fmt: skip
    (run_folder,) = os.listdir(run_dir)
    assert checkpoints.load_checkpoint(os.path.join(run_dir, run_folder, "checkpoint.pt"), "bc")["step"] == 100


def test_resume_takes_the_checkpoints_settings_and_refuses_a_changed_one(local_dataset, run_dir):
    local_dataset("pendulum/expert-v0")
    result = bc.main(bc.Args(dataset=local_dataset("pendulum/medium-v0"), run_dir=run_dir, total_steps=20,
                             eval_every=20, save_model=True, learning_rate=1e-3, **FAST))  # fmt: skip
    checkpoint = os.path.join(result.run_path, "checkpoint.pt")
    with pytest.raises(ValueError, match=r"changes --dataset pendulum/expert-v0 \(the checkpoint's: pendulum/medium-v0\): drop those flags"):
        bc.main(bc.Args(dataset="pendulum/expert-v0", resume=checkpoint, total_steps=40, **FAST))
    with pytest.raises(ValueError, match=r"--hidden-dim 8 \(the checkpoint's: 16\)"):
        bc.main(bc.Args(resume=checkpoint, total_steps=40, **dict(FAST, hidden_dim=8)))
    with pytest.raises(ValueError, match="already at step 20 and --total-steps is 20: pass a larger --total-steps"):
        bc.main(bc.Args(resume=checkpoint, total_steps=20, **FAST))
    # flags left at their defaults come from the checkpoint: its dataset, width and learning rate
    bc.main(bc.Args(resume=checkpoint, total_steps=40, batch_size=32, eval_episodes=1, progress=False))
    state = checkpoints.load_checkpoint(checkpoint, "bc")
    assert state["step"] == 40 and state["args"]["learning_rate"] == 1e-3 and state["args"]["hidden_dim"] == 16
    assert state["dataset"] == "pendulum/medium-v0"


def test_run_folders_never_collide(local_dataset, run_dir):
    paths = {training.new_run_folder(run_dir, "same__name__0") for _ in range(3)}  # all within one second
    assert len(paths) == 3 and all(os.path.isdir(p) for p in paths)
    args = dict(dataset=local_dataset("pendulum/medium-v0"), run_dir=run_dir, total_steps=5, **dict(FAST, eval_episodes=0))
    plain, filtered = bc.main(bc.Args(**args)), bc.main(bc.Args(top_fraction=0.1, **args))
    assert "__bc__" in plain.run_path and "__bc_top0.1__" in filtered.run_path


def test_eval_episodes_zero_trains_without_evaluating(local_dataset, run_dir):
    result = bc.main(bc.Args(dataset=local_dataset("pendulum/medium-v0"), run_dir=run_dir, total_steps=30, eval_every=10,
                             **dict(FAST, eval_episodes=0, log_every=10)))  # fmt: skip
    assert result.scores == [] and math.isnan(result.normalized_score) and result.updates_per_s > 0
    tags = set(EventAccumulator(result.run_path).Reload().Tags()["scalars"])
    assert "losses/actor" in tags and not any(tag.startswith(("eval/", "mse/eval")) for tag in tags)
    with pytest.raises(ValueError, match="--eval-episodes must be 0 or more, got -1"):
        bc.main(bc.Args(dataset="pendulum/medium-v0", run_dir=run_dir, total_steps=5, **dict(FAST, eval_episodes=-1)))


def test_full_disk_names_the_folder_keeps_the_previous_checkpoint_and_no_temporary(local_dataset, run_dir, monkeypatch):
    real_save, saves = torch.save, []

    def save_until_the_disk_fills(state, path):
        saves.append(path)
        if len(saves) < 2:
            return real_save(state, path)
        with open(path, "wb") as f:  # half a file, then torch's own error for a full disk
            f.write(b"PK")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", save_until_the_disk_fills)
    with pytest.raises(OSError, match=r"Could not write the checkpoint in .* \(the disk is full: free some space\), then resume\. The previous checkpoint .*checkpoint.pt is kept"):
        bc.main(bc.Args(dataset=local_dataset("pendulum/medium-v0"), run_dir=run_dir, total_steps=20, checkpoint_every=10,
                        eval_every=20, **FAST))  # fmt: skip
    (run_folder,) = os.listdir(run_dir)
    monkeypatch.setattr(torch, "save", real_save)
    assert checkpoints.load_checkpoint(os.path.join(run_dir, run_folder, "checkpoint.pt"), "bc")["step"] == 10
    assert not [name for name in os.listdir(os.path.join(run_dir, run_folder)) if ".tmp-" in name]


def interrupt_training(command: list[str], run_dir: str, script: str, sent: signal.Signals = signal.SIGINT) -> str:
    """Start a (practically endless) training run, interrupt it once it trains, and return the checkpoint it printed."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not glob.glob(os.path.join(run_dir, "*", "events.*")):  # training starts once TensorBoard's file is there
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    time.sleep(1.0)  # let it train a little
    process.send_signal(sent)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-2000:]
    assert f"{sent.name} at step" in stdout and f"resume with: python algorithms/{script}.py --resume" in stdout
    checkpoint = stdout.split("--resume ")[1].split()[0]
    assert 0 < checkpoints.load_checkpoint(checkpoint, script)["step"] < 10_000_000
    return checkpoint


@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM])  # Ctrl-C; preemption by SLURM, Ray, Kubernetes
def test_interrupt_checkpoints_and_prints_the_resume_command(local_dataset, run_dir, sent):
    local_dataset("pendulum/medium-v0")
    command = cli(run_dir, "--total-steps", "10000000", "--eval-every", "10000000", "--log-every", "50")
    interrupt_training(command, run_dir, "bc", sent)


def test_unwritable_run_dir_is_named_with_the_fix(local_dataset, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match=r"Cannot write the run folder '.*a-file/.*' \(Not a directory\): pass --run-dir a folder you can write to"):
        bc.main(bc.Args(dataset=local_dataset("pendulum/medium-v0"), run_dir=str(blocker), total_steps=10, **FAST))


def test_a_run_that_fails_before_training_leaves_no_folder(local_dataset, run_dir):
    with pytest.raises(data.DatasetError, match="did you mean pendulum/medium-v0"):
        bc.main(bc.Args(dataset="pendulum/medum-v0", run_dir=run_dir, total_steps=5, **FAST))
    with pytest.raises(checks.UserError, match="--eval-every must be at least 1, got 0"):
        bc.main(bc.Args(dataset="pendulum/medium-v0", run_dir=run_dir, total_steps=5, eval_every=0, **FAST))
    assert not os.path.exists(run_dir) or os.listdir(run_dir) == []
    # at its first step: the folder TensorBoard had opened goes too, nothing was trained
    with pytest.raises(checks.UserError, match="--batch-size 10000000 is larger than the 20000 training transitions"):
        bc.main(bc.Args(dataset=local_dataset("pendulum/medium-v0"), run_dir=run_dir, total_steps=5, **dict(FAST, batch_size=10_000_000)))
    assert os.listdir(run_dir) == []


def test_an_error_after_step_1_keeps_the_last_state_and_says_how_to_resume(local_dataset, run_dir, monkeypatch, capsys):
    def evaluation_that_crashes(*args, **kwargs):
        raise RuntimeError("the simulator crashed")

    monkeypatch.setattr(training.evaluation, "evaluate", evaluation_that_crashes)
    with pytest.raises(RuntimeError, match="the simulator crashed"):  # a bug keeps its traceback...
        bc.main(bc.Args(dataset=local_dataset("pendulum/medium-v0"), run_dir=run_dir, total_steps=100, eval_every=40, **FAST))
    (run_folder,) = os.listdir(run_dir)
    checkpoint = os.path.join(run_dir, run_folder, "checkpoint.pt")
    assert checkpoints.load_checkpoint(checkpoint, "bc")["step"] == 40  # ...and the 40 updates are on disk
    assert (f"The run stopped at step 40 (the reason follows); its last state is saved: resume with: python "
            f"algorithms/bc.py --resume {checkpoint} --total-steps 100") in capsys.readouterr().err  # fmt: skip
    monkeypatch.undo()
    bc.main(bc.Args(resume=checkpoint, total_steps=100, **FAST))
    assert checkpoints.load_checkpoint(checkpoint, "bc")["step"] == 100


def test_a_full_disk_while_logging_keeps_the_last_state(local_dataset, run_dir, monkeypatch):
    real_add_scalar = training.SummaryWriter.add_scalar

    def add_scalar_until_the_disk_fills(writer, tag, value, step=None, *rest, **kwargs):
        if step is not None and step >= 200:
            raise OSError(28, "No space left on device")
        return real_add_scalar(writer, tag, value, step, *rest, **kwargs)

    monkeypatch.setattr(training.SummaryWriter, "add_scalar", add_scalar_until_the_disk_fills)
    with pytest.raises(OSError, match="No space left on device"):
        bc.main(bc.Args(dataset=local_dataset("pendulum/medium-v0"), run_dir=run_dir, total_steps=300, eval_every=300, **FAST))
    (run_folder,) = os.listdir(run_dir)
    assert checkpoints.load_checkpoint(os.path.join(run_dir, run_folder, "checkpoint.pt"), "bc")["step"] == 200


def test_a_signal_during_a_checkpoint_write_waits_for_the_write():
    interrupt = training.GracefulInterrupt()
    with interrupt:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs here
        assert interrupt.requested and interrupt.signal_name == "SIGINT"
        with interrupt.deferred():  # as Run.save writes the checkpoint
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # ignored: the write goes on
        with pytest.raises(KeyboardInterrupt):  # a second one outside a write stops at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)


def test_two_ctrl_c_in_a_row_still_leave_a_checkpoint_and_no_temporary_file(local_dataset, run_dir):
    local_dataset("pendulum/medium-v0")
    process = subprocess.Popen(cli(run_dir, "--total-steps", "10000000", "--eval-every", "10000000", "--log-every", "50"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    while not glob.glob(os.path.join(run_dir, "*", "events.*")):
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    time.sleep(0.002)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    (run_folder,) = glob.glob(os.path.join(run_dir, "*"))
    assert checkpoints.load_checkpoint(os.path.join(run_folder, "checkpoint.pt"), "bc")["step"] > 0
    assert not [name for name in os.listdir(run_folder) if ".tmp-" in name] and "Traceback" not in stderr
    if process.returncode == 0:  # the second arrived during the write: ignored
        assert "SIGINT at step" in stdout
    else:  # the second arrived within a step: the loop stopped there and saved what it had
        assert process.returncode == 130 and "its last state is saved" in stderr and stderr.endswith("interrupted\n")


def test_a_dead_processs_temporary_file_is_removed_on_the_next_save(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"checkpoint.pt.tmp-{dead.pid}"  # what a kill -9 during a first write leaves
    stale.write_bytes(b"")
    writing = tmp_path / f"checkpoint.pt.tmp-{os.getppid()}"  # a live process's write in progress
    writing.write_bytes(b"PK")
    checkpoints.save_checkpoint(str(tmp_path / "checkpoint.pt"), "bc", {"dataset": "x"}, 1, {}, data.Normalizer.identity(2))
    assert not stale.exists() and writing.exists() and checkpoints.read_checkpoint(str(tmp_path / "checkpoint.pt"))["step"] == 1
