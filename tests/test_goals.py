"""goals.py on hand-made trajectories: the shares of each kind of goal, later goals never leaving their trajectory
(geometric offsets with the discount's mean, uniform ones spread to the end), and the reward and mask at the goal."""

import numpy as np
import pytest
import torch

import checks
import data
import goals

LENGTHS = (3, 40, 400, 1, 400, 156)  # a one-step episode and short ones, where a later goal is soon the last state


def trajectories(lengths=LENGTHS) -> data.Transitions:
    """Episodes whose observation is (episode, t): a goal's state says where it came from."""
    columns = []
    for episode, length in enumerate(lengths):
        observations = np.stack([np.full(length + 1, episode), np.arange(length + 1)], 1).astype(np.float32)
        columns.append(data.episode_columns(episode, observations, np.zeros((length, 1), np.float32), np.zeros(length), np.zeros(length)))
    return data.Transitions(**{k: torch.from_numpy(np.concatenate([c[k] for c in columns])) for k in columns[0]})


def where_goals_are(t: data.Transitions, indices: torch.Tensor, goal_indices: torch.Tensor) -> dict[str, torch.Tensor]:
    same = t.episode_ids[goal_indices] == t.episode_ids[indices]
    return {"current": goal_indices == indices, "later": same & (goal_indices > indices), "same": same}


def test_final_index_is_the_last_transition_of_each_episode():
    t = trajectories()
    sampler = goals.GoalSampler(t, 0.99, goals.GoalMix(), goals.GoalMix())
    ends = np.cumsum(LENGTHS) - 1
    np.testing.assert_array_equal(sampler.final_indices.numpy(), np.repeat(ends, LENGTHS))


@pytest.mark.parametrize("geometric", [True, False])
def test_later_goals_never_leave_their_trajectory(geometric):
    t = trajectories()
    sampler = goals.GoalSampler(t, 0.9, goals.GoalMix(), goals.GoalMix())
    indices = torch.arange(len(t)).repeat(50)
    goal_indices = sampler.sample_goals(indices, goals.GoalMix(geometric=geometric), torch.Generator().manual_seed(0))
    final = sampler.final_indices[indices]
    assert torch.equal(t.episode_ids[goal_indices], t.episode_ids[indices])
    assert (goal_indices <= final).all()
    # strictly later, except on an episode's last transition, where the only later state is itself
    assert ((goal_indices > indices) | (indices == final)).all()
    assert (goal_indices[indices == final] == indices[indices == final]).all()
    # every trajectory's last transition is reached as a goal (the clip), not only the first few steps
    assert set(np.cumsum(LENGTHS) - 1) <= set(goal_indices.tolist())


def test_geometric_offsets_have_the_discounts_distribution():
    """From the start of a 400-step episode the clip at its end is rare: offsets ~ Geometric(1 - gamma), k >= 1."""
    t, gamma = trajectories(), 0.95
    sampler = goals.GoalSampler(t, gamma, goals.GoalMix(), goals.GoalMix())
    start = int(np.sum(LENGTHS[:2]))  # the first 400-step episode
    indices = torch.full((100_000,), start)
    offsets = (sampler.sample_goals(indices, goals.GoalMix(geometric=True), torch.Generator().manual_seed(1)) - start).double()
    assert offsets.min() == 1
    assert offsets.mean().item() == pytest.approx(1 / (1 - gamma), rel=0.03)  # 20
    assert (offsets == 1).double().mean().item() == pytest.approx(1 - gamma, abs=0.005)
    assert (offsets <= 20).double().mean().item() == pytest.approx(1 - gamma**20, abs=0.01)


def test_uniform_offsets_spread_evenly_to_the_end():
    t = trajectories()
    sampler = goals.GoalSampler(t, 0.99, goals.GoalMix(), goals.GoalMix())
    start = int(np.sum(LENGTHS[:2]))
    indices = torch.full((50_000,), start)
    steps = (sampler.sample_goals(indices, goals.GoalMix(), torch.Generator().manual_seed(2)) - start).double()
    assert steps.min() == 1 and steps.max() == 399  # from the next state to the episode's last
    assert steps.mean().item() == pytest.approx(200, rel=0.02)


def test_the_mix_has_the_asked_shares():
    """OGBench's GC-IQL value goals: 20% current, 50% later in the trajectory, 30% any state."""
    t = trajectories((100,) * 1_000)  # many episodes: a random goal is rarely in the transition's own one
    sampler = goals.GoalSampler(t, 0.99, goals.GoalMix(0.2, 0.3, geometric=True), goals.GoalMix())
    batch = sampler.sample(100_000, torch.Generator().manual_seed(3))
    found = {k: v.double().mean().item() for k, v in where_goals_are(t, batch.indices, batch.value_goal_indices).items()}
    # a later goal equals the current state only on an episode's last transition (1 in 100); a random one is in the
    # transition's own episode 1 time in 1000
    assert found["current"] == pytest.approx(0.2 + 0.5 * 0.01, abs=0.006)
    assert found["same"] == pytest.approx(0.2 + 0.5 + 0.3 / 1_000, abs=0.006)
    assert found["later"] == pytest.approx(0.5 * 0.99, abs=0.006)


def test_actor_goals_on_stitch_datasets_are_half_random():
    t = trajectories((100,) * 1_000)
    share = goals.actor_random_share("ogbench/pointmaze-medium-stitch-v0")
    assert share == 0.5 and goals.actor_random_share("ogbench/pointmaze-medium-navigate-v0") == 0.0
    assert goals.actor_random_share("ogbench/pointmaze-medium-stitch-v0", value_based=False) == 0.0  # GCBC
    sampler = goals.GoalSampler(t, 0.99, goals.GoalMix(), goals.GoalMix(random=share))
    batch = sampler.sample(50_000, torch.Generator().manual_seed(4))
    found = where_goals_are(t, batch.indices, batch.actor_goal_indices)
    assert found["same"].double().mean().item() == pytest.approx(0.5, abs=0.01)


def test_reward_and_mask_say_whether_the_value_goal_is_reached():
    t = trajectories()
    for negative, (at_goal, elsewhere) in ((True, (0.0, -1.0)), (False, (1.0, 0.0))):
        sampler = goals.GoalSampler(t, 0.99, goals.GoalMix(0.5, 0.2, geometric=True), goals.GoalMix(), negative_rewards=negative)
        batch = sampler.sample(len(t), torch.Generator().manual_seed(5))
        reached = batch.value_goal_indices == batch.indices
        assert 0.4 < reached.double().mean() < 0.65
        assert torch.equal(batch.rewards, torch.where(reached, at_goal, elsewhere))
        assert torch.equal(batch.masks, (~reached).float())  # bootstrap everywhere but at the goal
        # the goals are the states at their indices; at the goal, the current observation itself
        assert torch.equal(batch.value_goals, t.observations[batch.value_goal_indices])
        assert torch.equal(batch.value_goals[reached], batch.observations[reached])
        assert torch.equal(batch.actor_goals, t.observations[batch.actor_goal_indices])
        assert torch.equal(batch.next_observations, t.next_observations[batch.indices])


def test_the_same_generator_draws_the_same_batch_on_the_datas_device():
    t = trajectories()
    sampler = goals.GoalSampler(t, 0.99, goals.GoalMix(0.2, 0.3, True), goals.GoalMix(random=0.5))
    first, second = (sampler.sample(256, torch.Generator().manual_seed(6)) for _ in range(2))
    assert torch.equal(first.value_goal_indices, second.value_goal_indices) and torch.equal(first.actor_goals, second.actor_goals)
    assert first.value_goals.device == t.observations.device


@pytest.mark.parametrize(("value", "actor"), [(goals.GoalMix(0.6, 0.5), goals.GoalMix()), (goals.GoalMix(), goals.GoalMix(random=1.5))])
def test_shares_that_do_not_add_up_are_refused(value, actor):
    with pytest.raises(checks.UserError, match="at most 1"):
        goals.GoalSampler(trajectories(), 0.99, value, actor)


def test_a_cut_episode_is_refused():
    t = trajectories()
    with pytest.raises(data.DatasetError, match="whole episodes"):
        goals.GoalSampler(t.index(torch.arange(len(t) - 1)), 0.99, goals.GoalMix(), goals.GoalMix())


def test_hiql_subgoals_are_k_steps_ahead_and_never_past_the_goal():
    t, steps = trajectories(), 25
    sampler = goals.GoalSampler(t, 0.99, goals.GoalMix(), goals.GoalMix())
    indices = torch.arange(len(t)).repeat(20)
    generator = torch.Generator().manual_seed(7)
    goal_indices = sampler.sample_goals(indices, goals.GoalMix(random=0.5), generator)
    later, targets = sampler.subgoals(indices, goal_indices, steps)
    final = sampler.final_indices[indices]
    assert torch.equal(later, torch.minimum(indices + steps, final))  # the low level's goal: k ahead, or the last state
    found = where_goals_are(t, indices, goal_indices)
    ahead = found["later"] | found["current"]  # the goal is this state or a later one of its trajectory
    assert torch.equal(targets[ahead], torch.minimum(later, goal_indices)[ahead])  # stops at a goal ahead of it
    assert torch.equal(targets[~ahead], later[~ahead])  # elsewhere (a random goal): k ahead
    assert (targets[ahead] < later[ahead]).any() and (targets[ahead] == later[ahead]).any()  # both cases are exercised
    assert torch.equal(t.episode_ids[targets], t.episode_ids[indices])
