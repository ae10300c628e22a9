"""CQL: runs end to end with logs and a checkpoint (plain and Lagrange/max-backup/BC-warm-start variants);
its learned Q is conservative: higher on the dataset's actions than on uniform random actions."""

import os

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import cql
import data
import checkpoints


def scalar_tags(run_path: str) -> set[str]:
    events = EventAccumulator(run_path)
    events.Reload()
    return set(events.Tags()["scalars"])


def last_scalars(run_path: str) -> dict[str, float]:
    """The last logged value of every scalar of a run."""
    events = EventAccumulator(run_path)
    events.Reload()
    return {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"]}


@pytest.mark.parametrize("variant", [{}, {"lagrange": True, "max_backup": True, "backup_entropy": True, "bc_steps": 50}])
def test_smoke_logs_and_checkpoint(local_dataset, run_dir, variant):
    dataset_id = local_dataset("pointmaze/umaze-medium-v0")
    args = cql.Args(
        dataset=dataset_id, total_steps=100, batch_size=32, hidden_dim=32, hidden_layers=2, cql_num_actions=4,
        eval_every=100, eval_episodes=2, log_every=50, run_dir=run_dir, save_model=True, progress=False, **variant,
    )  # fmt: skip
    result = cql.main(args)

    assert len(result.scores) == 1 and np.isfinite(result.normalized_score)
    tags = scalar_tags(result.run_path)
    for tag in ("losses/critic", "losses/cql", "losses/actor", "cql/ood_minus_data", "q/data_mean", "q/random_mean",
                "alpha/entropy", "alpha/cql_prime", "actor/entropy", "eval/normalized_score", "mse/eval_expert"):  # fmt: skip
        assert tag in tags, f"{tag} missing from {sorted(tags)}"

    state = checkpoints.load_checkpoint(os.path.join(result.run_path, "checkpoint.pt"), "cql")
    obs_dim = state["normalizer"]["mean"].shape[0]
    actor = cql.TanhGaussianActor(obs_dim, 2, 32, 2)
    actor.load_state_dict(state["models"]["actor"])
    critics = cql.Critics(obs_dim, 2, 32, 2, num_critics=2)
    critics.load_state_dict(state["models"]["critics"])
    mean, log_std = actor(torch.zeros(3, obs_dim))
    assert mean.shape == (3, 2) and log_std.max() <= 2.0
    assert critics(torch.zeros(3, obs_dim), torch.zeros(5, 3, 2)).shape == (2, 5, 3)  # sample dims broadcast
    if variant:
        assert state["models"]["log_alpha_prime"]["value"] != 0  # the Lagrange multiplier was trained


def test_q_is_conservative(local_dataset, run_dir):
    """After a short run the reloaded critics rate the dataset's actions above uniform random ones.
    Measured (800 updates, batch 64, 64x64): Q(data) - Q(uniform) = 0.72 / 0.71 (seeds 0 / 1)."""
    dataset_id = local_dataset("pointmaze/umaze-medium-v0")
    args = cql.Args(
        dataset=dataset_id, total_steps=800, batch_size=64, hidden_dim=64, hidden_layers=2, eval_every=800,
        eval_episodes=2, log_every=100, run_dir=run_dir, save_model=True, progress=False,
    )  # fmt: skip
    result = cql.main(args)
    logged = last_scalars(result.run_path)  # the last training batch's statistics
    assert logged["cql/ood_minus_data"] > 0 and logged["q/data_mean"] > logged["q/random_mean"]

    # independently of the training logs: Q of the reloaded critics on every dataset state
    state = checkpoints.load_checkpoint(os.path.join(result.run_path, "checkpoint.pt"), "cql")
    obs_dim = state["normalizer"]["mean"].shape[0]
    critics = cql.Critics(obs_dim, 2, 64, 2, num_critics=2)
    critics.load_state_dict(state["models"]["critics"])
    transitions = data.to_transitions(data.load_dataset(dataset_id))
    obs = (transitions.observations - state["normalizer"]["mean"]) / state["normalizer"]["std"]
    with torch.no_grad():  # pointmaze actions already lie in [-1, 1], the critics' action units
        q_data = critics(obs, transitions.actions).mean()
        q_random = critics(obs, torch.rand(10, *transitions.actions.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1).mean()
    assert q_data > q_random + 0.3, f"Q(data) {q_data:.2f} vs Q(uniform) {q_random:.2f}"
