"""algorithms/bc.py end to end: a tiny run, learning from expert vs random data, the CLI."""

import glob
import os
import subprocess
import sys

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import bc
import data
import checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(total_steps=200, batch_size=64, hidden_dim=32, eval_every=100, eval_episodes=2, log_every=50, progress=False)


def test_tiny_run_logs_scalars_and_saves_a_checkpoint_that_reloads(local_dataset, run_dir):
    result = bc.main(bc.Args(dataset=local_dataset("pendulum/medium-v0"), run_dir=run_dir, save_model=True,
                             validation_fraction=0.2, **TINY))  # fmt: skip
    assert len(result.scores) == 2 and all(-50 < s < 150 for s in result.scores)
    events = EventAccumulator(result.run_path).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"losses/actor", "eval/normalized_score", "valid/action_mse", "mse/eval_expert"} <= tags
    held_out = [e.value for e in events.Scalars("valid/action_mse")]  # all held-out states, not one noisy batch
    assert held_out[-1] < held_out[0]  # regression onto the dataset's actions makes progress
    state = checkpoints.load_checkpoint(os.path.join(result.run_path, "checkpoint.pt"), "bc")
    actor = bc.Actor(3, 1, 32, -2 * torch.ones(1).numpy(), 2 * torch.ones(1).numpy())
    actor.load_state_dict(state["models"]["actor"])
    assert state["step"] == 200 and state["args"]["dataset"] == "pendulum/medium-v0"


def test_bc_on_expert_data_beats_bc_on_random_data(local_dataset, run_dir):
    budget = dict(TINY, total_steps=3000, hidden_dim=64, eval_every=3000, eval_episodes=5, log_every=500)
    expert = bc.main(bc.Args(dataset=local_dataset("pendulum/expert-v0"), run_dir=run_dir, **budget))
    random = bc.main(bc.Args(dataset=local_dataset("pendulum/random-v0"), run_dir=run_dir, **budget))
    assert expert.normalized_score > 60, expert.normalized_score
    assert expert.normalized_score > random.normalized_score + 40


def test_filtered_bc_trains_on_the_best_episodes_only(local_dataset, run_dir, monkeypatch):
    trained_on, real_index = [], data.Transitions.index  # the episodes of every batch bc.py draws (it gathers 2 fields only)
    def index(self, indices, only=None):  # a batch names its fields (only=...); the splits before training do not
        if only is not None:
            trained_on.append(self.episode_ids[indices])
        return real_index(self, indices, only)

    monkeypatch.setattr(data.Transitions, "index", index)
    bc.main(bc.Args(dataset=local_dataset("pendulum/mixed-v0"), top_fraction=0.3, run_dir=run_dir, **TINY))
    everything = data.to_transitions(data.load_dataset("pendulum/mixed-v0"))
    top = data.top_episodes(everything, 0.3)
    mean_episode_return = lambda t: t.episode_returns[t.episode_starts].mean().item()  # noqa: E731
    assert mean_episode_return(top) > mean_episode_return(everything) + 200  # mixed: random .. expert
    assert len(trained_on) == TINY["total_steps"] and torch.isin(torch.cat(trained_on), top.episode_ids).all()


def test_bad_arguments_are_refused_with_the_fix(local_dataset, run_dir):
    with pytest.raises(ValueError, match=r"--total-steps must be at least 1, got 0 \(the default is 10000\)"):
        bc.main(bc.Args(dataset=local_dataset("pendulum/medium-v0"), run_dir=run_dir, **dict(TINY, total_steps=0)))
    with pytest.raises(ValueError, match="--batch-size 100000 is larger than the"):
        bc.main(bc.Args(dataset=local_dataset("pendulum/medium-v0"), run_dir=run_dir, **dict(TINY, batch_size=100_000)))


def test_cli_help_and_a_tiny_run(local_dataset, run_dir):
    script = os.path.join(ROOT, "algorithms", "bc.py")
    help_text = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, check=True).stdout
    assert "--top-fraction" in help_text and "keep the top fraction of episodes" in help_text
    local_dataset("pendulum/medium-v0")
    run = subprocess.run(
        [sys.executable, script, "--total-steps", "100", "--eval-every", "100", "--eval-episodes", "2",
         "--hidden-dim", "32", "--no-progress", "--run-dir", run_dir],
        capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "pendulum/medium-v0 bc seed 0: normalized score" in run.stdout
    assert glob.glob(os.path.join(run_dir, "*", "events.out.tfevents.*"))
