"""ReBRAC: the critic's target with its next-action penalty (checked against a hand computation), LayerNorm keeping
Q bounded far from the data, the actor's separate BC weight, and a run end to end with logs and a checkpoint."""

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import checkpoints
import data
import rebrac
import td3_bc

OBS_DIM, ACT_DIM, HIGH = 3, 2, 2.0


def networks(seed: int = 0):
    torch.manual_seed(seed)
    low, high = np.full(ACT_DIM, -HIGH), np.full(ACT_DIM, HIGH)
    actor = rebrac.Actor(OBS_DIM, ACT_DIM, 16, 3, low, high)
    critics = rebrac.Critics(OBS_DIM, ACT_DIM, 16, 3, 2)
    return actor, critics


def hand_batch() -> data.Transitions:
    """Four transitions: the second ends in a success (terminal), the fourth at a time limit (no a' was taken)."""
    torch.manual_seed(1)
    n = 4
    actions = torch.rand(n, ACT_DIM) * 2 * HIGH - HIGH
    return data.Transitions(
        observations=torch.randn(n, OBS_DIM), actions=actions, rewards=torch.tensor([1.0, -1.0, 0.5, 2.0]),
        next_observations=torch.randn(n, OBS_DIM), terminals=torch.tensor([0.0, 1.0, 0.0, 0.0]),
        next_actions=torch.rand(n, ACT_DIM) * 2 * HIGH - HIGH, next_action_known=torch.tensor([1.0, 1.0, 1.0, 0.0]),
        episode_starts=torch.zeros(n, dtype=torch.bool), episode_ends=torch.zeros(n, dtype=torch.bool),
        returns_to_go=torch.zeros(n), episode_returns=torch.zeros(n), episode_ids=torch.zeros(n, dtype=torch.int64),
        timesteps=torch.zeros(n, dtype=torch.int64),
    )  # fmt: skip


@pytest.mark.parametrize("critic_bc_coef", [0.0, 0.7])
def test_critic_target_subtracts_the_next_action_penalty_where_a_next_action_was_taken(critic_bc_coef):
    actor, critics = networks()
    batch = hand_batch()
    args = rebrac.Args(policy_noise=0.0, critic_bc_coef=critic_bc_coef, gamma=0.9, policy_freq=2)
    optimizers = {"critic": torch.optim.SGD(critics.parameters(), lr=0.0), "actor": torch.optim.SGD(actor.parameters(), lr=0.0)}
    with torch.no_grad():  # by hand: a~' = pi(s') (no noise), y = r + gamma (1 - d) (min Q(s', a~') - beta ||a~' - a'||^2)
        next_actions = actor(batch.next_observations)
        distance = (((next_actions - batch.next_actions) / HIGH) ** 2).sum(-1) * torch.tensor([1.0, 1, 1, 0])
        y = batch.rewards + 0.9 * (1 - batch.terminals) * (critics(batch.next_observations, next_actions).min(0).values - critic_bc_coef * distance)
        expected = ((critics(batch.observations, batch.actions) - y) ** 2).mean(1).sum()
    logs = rebrac.update(batch, actor, actor, critics, critics, optimizers, args, step=1)  # odd step: critic only
    assert float(logs["losses/critic"]) == pytest.approx(float(expected), rel=1e-5)
    assert "losses/actor" not in logs


def test_actor_bc_weight_is_separate_and_sums_over_action_dimensions():
    actor, critics = networks()
    batch = hand_batch()
    losses = {}
    for beta in (0.0, 2.0):
        optimizers = {"critic": torch.optim.SGD(critics.parameters(), lr=0.0), "actor": torch.optim.SGD(actor.parameters(), lr=0.0)}
        logs = rebrac.update(batch, actor, actor, critics, critics, optimizers, rebrac.Args(actor_bc_coef=beta), step=2)
        losses[beta] = logs
    with torch.no_grad():
        bc = (((actor(batch.observations) - batch.actions) / HIGH) ** 2).sum(-1).mean()
    assert float(losses[2.0]["losses/bc"]) == pytest.approx(float(bc), rel=1e-5)
    assert float(losses[2.0]["losses/actor"] - losses[0.0]["losses/actor"]) == pytest.approx(2 * float(bc), rel=1e-4)


def test_layer_norm_keeps_q_bounded_far_from_the_data():
    """With LayerNorm each hidden feature vector has unit scale, so |Q| <= ||w_last||_1 * max|feature| + |b|
    whatever the action; TD3+BC's critics grow linearly with it."""
    torch.manual_seed(0)
    _, critics = networks()
    plain = td3_bc.Critics(OBS_DIM, ACT_DIM, 16, 2)
    obs = torch.randn(64, OBS_DIM)
    far = torch.randn(64, ACT_DIM) * 1e4
    with torch.no_grad():
        assert plain(obs, far).abs().max() > 100
        bound = critics.net[-1].weight.abs().sum(1).max() * 16**0.5 + critics.net[-1].bias.abs().max()
        assert critics(obs, far).abs().max() <= bound


def test_smoke_logs_and_checkpoint(local_dataset, run_dir):
    dataset_id = local_dataset("pendulum/medium-v0")
    args = rebrac.Args(dataset=dataset_id, total_steps=200, batch_size=64, hidden_dim=32, eval_every=100, eval_episodes=2,
                       log_every=50, run_dir=run_dir, save_model=True, progress=False)  # fmt: skip
    result = rebrac.main(args)
    assert len(result.scores) == 2 and np.all(np.isfinite(result.scores))
    events = EventAccumulator(result.run_path)
    events.Reload()
    for tag in ("losses/critic", "losses/actor", "losses/bc", "actor/lambda", "q/data_mean", "eval/normalized_score"):
        assert tag in events.Tags()["scalars"], tag
    state = checkpoints.load_checkpoint(f"{result.run_path}/checkpoint.pt", "rebrac")
    dataset = data.load_dataset(dataset_id)
    policy = rebrac.make_policy(rebrac.Args(**state["args"]), dataset, state, torch.device("cpu"))
    obs = torch.randn(5, 3)
    actions = policy(obs)
    assert actions.shape == (5, 1) and actions.abs().max() <= 2.0
