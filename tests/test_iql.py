"""IQL: the expectile and AWR pieces on numbers, a smoke run, and value learning beating BC on a stitch maze."""

import copy
import math
import os

import pytest
import torch

import bc
import data
import checkpoints
import iql


def test_expectile_loss_weights_errors_by_sign():
    # L2^tau(u) = |tau - 1(u < 0)| u^2: u = Q - V < 0 (V above Q) costs 1 - tau, u > 0 costs tau
    u = torch.tensor([-2.0, 1.0, 0.5, 0.0])
    assert torch.allclose(iql.expectile_loss(u, 0.9), torch.tensor([0.1 * 4, 0.9 * 1, 0.9 * 0.25, 0.0]))
    assert torch.allclose(iql.expectile_loss(u, 0.5), 0.5 * u**2)  # tau = 0.5: half the squared error
    # the minimiser over a constant V is the tau-expectile: above the mean for tau > 0.5
    q = torch.tensor([0.0, 0.0, 0.0, 10.0])
    v = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.SGD([v], lr=0.1)
    for _ in range(500):
        optimizer.zero_grad()
        iql.expectile_loss(q - v, 0.9).mean().backward()
        optimizer.step()
    assert v.item() == pytest.approx(7.5, abs=1e-3)  # 0.9 * 1 * (10 - v) = 0.1 * 3 * v


def test_advantage_weights_are_clipped_at_the_max():
    weights = iql.advantage_weights(torch.tensor([-1.0, 0.0, 1.0, 10.0]), temperature=3.0, max_weight=100.0)
    assert weights.tolist() == pytest.approx([math.exp(-3), 1.0, math.exp(3), 100.0], rel=1e-5)


def test_smoke_pendulum(local_dataset, run_dir):
    args = iql.Args(
        dataset=local_dataset("pendulum/mixed-v0"), total_steps=200, hidden_dim=32, batch_size=64, eval_every=100,
        eval_episodes=2, log_every=50, run_dir=run_dir, progress=False, save_model=True, actor_dropout=0.1,
        validation_fraction=0.2,
    )  # fmt: skip
    result = iql.main(args)
    assert len(result.scores) == 2 and all(math.isfinite(s) for s in result.scores)
    assert result.updates_per_s > 0
    state = checkpoints.load_checkpoint(os.path.join(result.run_path, "checkpoint.pt"), "iql")
    assert state["step"] == 200 and {"actor", "critic", "target_critic", "value"} <= set(state["models"])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(result.run_path)
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {"valid/value", "valid/critic", "valid/action_mse", "mse/eval_expert", "eval/normalized_score", "losses/critic"}
    assert expected <= tags, expected - tags
    lrs = [e.value for e in events.Scalars("charts/actor_lr")]
    assert lrs[-1] < 1e-6 < lrs[0]  # the cosine schedule reaches 0 at the last step


def test_smoke_maze_with_reward_shift(local_dataset, run_dir):
    args = iql.Args(
        dataset=local_dataset("pointmaze/umaze-medium-v0"), total_steps=100, hidden_dim=32, batch_size=64,
        eval_every=100, eval_episodes=2, log_every=50, run_dir=run_dir, progress=False,
        expectile=0.9, temperature=10.0, reward_shift=-1.0, return_range_scale=False,
    )  # fmt: skip
    assert math.isfinite(iql.main(args).normalized_score)


def test_iql_beats_bc_on_umaze_stitch(local_dataset, run_dir):
    """No episode goes start -> goal: BC copies aimless hops, IQL's values stitch them.

    Measured (30k transitions, 64x64, 4000 updates, seeds 0/1/2): IQL 30-39, BC 4-15.
    A faster value schedule (target rate 0.05, lr 1e-3) makes values converge within the small budget.
    """
    dataset_id = local_dataset("pointmaze/umaze-stitch-v0")
    common = dict(
        dataset=dataset_id, total_steps=4000, hidden_dim=64, eval_every=4000, eval_episodes=10, run_dir=run_dir, progress=False
    )  # fmt: skip
    iql_score = iql.main(iql.Args(
        **common, expectile=0.9, temperature=10.0, return_range_scale=False, target_update_rate=0.05,
        critic_lr=1e-3, value_lr=1e-3,
    )).normalized_score  # fmt: skip
    bc_score = bc.main(bc.Args(**common)).normalized_score
    assert iql_score > 20.0 and iql_score > bc_score + 10.0, (iql_score, bc_score)


def test_clipped_td_target_is_the_bound_when_v_overshoots():
    """--clip-target: r + gamma V(s') is clipped to the rewards' range / (1 - gamma) before the critic regresses on it."""
    torch.manual_seed(0)
    obs_dim, act_dim, n = 3, 2, 16
    actor = iql.GaussianActor(obs_dim, act_dim, 8, -torch.ones(act_dim).numpy(), torch.ones(act_dim).numpy(), 0.0)
    critic = iql.Critics(obs_dim, act_dim, 8, 2)
    target_critic, value = iql.Critics(obs_dim, act_dim, 8, 2), iql.ValueNetwork(obs_dim, 8)
    with torch.no_grad():  # V(s') = 1000 everywhere: r + 0.99 V(s') = 991, far past 1 / (1 - 0.99) = 100
        value.net[-1].weight.zero_()
        value.net[-1].bias.fill_(1000.0)
    batch = data.Transitions(
        observations=torch.randn(n, obs_dim), actions=torch.rand(n, act_dim) * 2 - 1, rewards=torch.ones(n),
        next_observations=torch.randn(n, obs_dim), terminals=torch.zeros(n), next_actions=torch.zeros(n, act_dim),
        next_action_known=torch.ones(n), episode_starts=torch.zeros(n, dtype=torch.bool),
        episode_ends=torch.zeros(n, dtype=torch.bool), returns_to_go=torch.zeros(n), episode_returns=torch.zeros(n),
        episode_ids=torch.zeros(n, dtype=torch.int64), timesteps=torch.arange(n),
    )  # fmt: skip
    q = critic(batch.observations, batch.actions).detach()
    args = iql.Args(discount=0.99)

    def critic_loss(target_range):
        nets = [copy.deepcopy(m) for m in (actor, critic, target_critic, value)]
        optimizers = {k: torch.optim.SGD(m.parameters(), lr=0.0) for k, m in zip(("actor", "critic", "value"), (nets[0], nets[1], nets[3]))}
        return iql.update(batch, *nets, target_range, optimizers, args)["losses/critic"].item()

    assert critic_loss((0.0, 100.0)) == pytest.approx(((q - 100.0) ** 2).mean(1).sum().item(), rel=1e-5)
    assert critic_loss((-math.inf, math.inf)) == pytest.approx(((q - 991.0) ** 2).mean(1).sum().item(), rel=1e-5)


def test_maze_recipe_keeps_v_within_its_bound(local_dataset, run_dir):
    """The README's maze flags (rewards 0/1, so V <= 1 / (1 - gamma)) with the fast value schedule of the old README
    recipe, which overestimates within a test's budget: V on the rewarded states (at the goal, where V is largest)
    goes past the bound without --clip-target, and stays within it (up to the fit's noise) with."""

    def value_at_goal(clip_target: bool) -> torch.Tensor:
        args = iql.Args(
            dataset=local_dataset("pointmaze/umaze-stitch-v0"), total_steps=3000, hidden_dim=64, eval_episodes=0,
            run_dir=run_dir, progress=False, save_model=True, expectile=0.9, temperature=10.0, return_range_scale=False,
            target_update_rate=0.05, critic_lr=1e-3, value_lr=1e-3, discount=0.99, clip_target=clip_target,
        )  # fmt: skip
        state = checkpoints.load_checkpoint(os.path.join(iql.main(args).run_path, "checkpoint.pt"), "iql")
        transitions = data.to_transitions(data.load_dataset(args.dataset), "cpu")
        value = iql.ValueNetwork(transitions.observations.shape[1], args.hidden_dim)
        value.load_state_dict(state["models"]["value"])
        normalized = (transitions.observations - state["normalizer"]["mean"]) / state["normalizer"]["std"]
        with torch.no_grad():
            return value(normalized[transitions.rewards == 1])

    bound = 1 / (1 - 0.99)
    unclipped, clipped = value_at_goal(clip_target=False), value_at_goal(clip_target=True)
    # measured (seed 0): 90th percentile 119.7 unclipped, 100.9 clipped (means 85.8 and 78.8: not converged yet)
    assert unclipped.quantile(0.9) > 1.1 * bound
    assert clipped.quantile(0.9) < 1.05 * bound
