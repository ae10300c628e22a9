"""One-step RL: the improvement pieces on numbers and a smoke run of each improvement operator."""

import copy
import math
import os

import numpy as np
import pytest
import torch

import data
import checkpoints
import onestep_rl


def test_advantage_weights_are_clipped_at_the_max():
    weights = onestep_rl.advantage_weights(torch.tensor([-1.0, 0.0, 1.0, 10.0]), temperature=3.0, max_weight=100.0)
    assert weights.tolist() == pytest.approx([math.exp(-3), 1.0, math.exp(3), 100.0], rel=1e-5)


def quadratic_critic(obs, actions):
    """Two identical 'critics' with Q(s, a) = -(a - 0.3)^2: shape (2, batch) like Critics."""
    return (-((actions - 0.3) ** 2).sum(-1)).expand(2, -1)


def test_easy_bcq_picks_the_best_sampled_action():
    torch.manual_seed(0)
    behaviour = onestep_rl.GaussianPolicy(3, 1, 16, np.array([-1.0]), np.array([1.0]))
    obs = torch.randn(5, 3)
    torch.manual_seed(1)
    candidates = behaviour.sample(obs, 8)  # (8, 5, 1): the same draws easy_bcq_action makes below
    torch.manual_seed(1)
    chosen = onestep_rl.easy_bcq_action(quadratic_critic, behaviour, obs, 8)
    best = candidates[(candidates - 0.3).abs().squeeze(-1).argmin(0), torch.arange(5)]
    assert torch.equal(chosen, best)
    assert (candidates.abs() <= 1).all()  # samples stay in the action box


def test_behaviour_value_is_the_mean_q_over_behaviour_samples():
    torch.manual_seed(0)
    behaviour = onestep_rl.GaussianPolicy(3, 1, 16, np.array([-1.0]), np.array([1.0]))
    obs = torch.randn(4, 3)
    torch.manual_seed(2)
    samples = behaviour.sample(obs, 6)
    torch.manual_seed(2)
    value = onestep_rl.behaviour_value(quadratic_critic, behaviour, obs, 6)
    assert torch.allclose(value, (-((samples - 0.3) ** 2).sum(-1)).mean(0))


def test_sarsa_target_uses_the_dataset_next_action(local_dataset):
    """A critic that only sees a' = next_actions: change them and the TD target (hence the loss) changes."""
    transitions = data.to_transitions(data.load_dataset(local_dataset("pendulum/mixed-v0")))
    batch = transitions.index(torch.arange(64))
    args = onestep_rl.Args(improvement="easy_bcq")
    losses = []
    for next_actions in (batch.next_actions, -batch.next_actions):
        torch.manual_seed(0)
        networks = [onestep_rl.GaussianPolicy(3, 1, 16, np.array([-2.0]), np.array([2.0])) for _ in range(2)]
        critic = onestep_rl.Critics(3, 1, 16, 2)
        optimizers = {n: torch.optim.Adam(m.parameters()) for n, m in zip(("behaviour", "actor", "critic"), (*networks, critic))}
        shifted = data.Transitions(**{**batch.__dict__, "next_actions": next_actions})
        losses.append(onestep_rl.update(shifted, *networks, critic, copy.deepcopy(critic), optimizers, args)["losses/critic"])
    assert losses[0] != losses[1]


def time_limit_batch(obs_dim: int = 3) -> data.Transitions:
    """Four hand-made transitions; the last ends its episode at a time limit, with a nonsense a' (the data took none)."""
    torch.manual_seed(0)
    n = 4
    return data.Transitions(
        observations=torch.randn(n, obs_dim), actions=torch.rand(n, 1) - 0.5, rewards=torch.ones(n),
        next_observations=torch.randn(n, obs_dim), terminals=torch.zeros(n), next_actions=torch.tensor([[0.1], [0.2], [0.3], [1e4]]),
        next_action_known=torch.tensor([1.0, 1.0, 1.0, 0.0]), episode_starts=torch.zeros(n, dtype=torch.bool),
        episode_ends=torch.tensor([False, False, False, True]), returns_to_go=torch.zeros(n), episode_returns=torch.zeros(n),
        episode_ids=torch.zeros(n, dtype=torch.int64), timesteps=torch.arange(n),
    )  # fmt: skip


def test_sarsa_loss_leaves_out_time_limit_ends():
    """Where an episode was cut by a time limit, a' is unknown: its transition must not move the SARSA loss."""
    batch = time_limit_batch()
    critic = onestep_rl.Critics(3, 1, 16, 2)
    loss, _ = onestep_rl.sarsa_critic_loss(critic, critic, batch, onestep_rl.Args())
    first_three, _ = onestep_rl.sarsa_critic_loss(critic, critic, batch.index(torch.arange(3)), onestep_rl.Args())
    assert torch.allclose(loss, first_three)  # the huge a' of the fourth transition did not count
    unmasked = data.Transitions(**{**batch.__dict__, "next_action_known": torch.ones(4)})
    assert onestep_rl.sarsa_critic_loss(critic, critic, unmasked, onestep_rl.Args())[0] > 10 * loss


@pytest.mark.parametrize("improvement", ["exp_weight", "reverse_kl", "easy_bcq"])
def test_smoke_pendulum(local_dataset, run_dir, improvement):
    args = onestep_rl.Args(
        dataset=local_dataset("pendulum/mixed-v0"), improvement=improvement, total_steps=150, hidden_dim=32,
        batch_size=64, eval_every=150, eval_episodes=2, log_every=50, run_dir=run_dir, progress=False,
        save_model=improvement == "exp_weight", validation_fraction=0.2 if improvement == "exp_weight" else 0.0,
    )  # fmt: skip
    result = onestep_rl.main(args)
    assert len(result.scores) == 1 and math.isfinite(result.normalized_score)
    if args.save_model:
        state = checkpoints.load_checkpoint(os.path.join(result.run_path, "checkpoint.pt"), "onestep_rl")
        assert {"behaviour", "actor", "critic", "target_critic"} <= set(state["models"])
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(result.run_path)
        events.Reload()
        tags = set(events.Tags()["scalars"])
        assert {"valid/critic", "valid/behaviour", "valid/action_mse", "mse/eval_expert", "losses/behaviour"} <= tags


def test_smoke_maze(local_dataset, run_dir):
    args = onestep_rl.Args(
        dataset=local_dataset("pointmaze/umaze-medium-v0"), total_steps=100, hidden_dim=32, batch_size=64,
        eval_every=100, eval_episodes=2, log_every=50, run_dir=run_dir, progress=False, reward_shift=-1.0,
    )  # fmt: skip
    assert math.isfinite(onestep_rl.main(args).normalized_score)
