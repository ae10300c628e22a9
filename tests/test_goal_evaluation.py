"""OGBench's goal-conditioned evaluation protocol (evaluation.evaluate(goal_conditioned=True)): every evaluation goal
of the env by reset(options=dict(task_id=k)), the policy given info["goal"], N episodes per goal, success counted at
the end of the episode; per-goal and overall rates. On a hand-made goal env, and once on OGBench's point maze."""

import types

import gymnasium as gym
import numpy as np
import pytest
import torch

import data
import evaluation

GOALS = (3.0, -3.0, 5.0, -5.0, 2.0)  # the line env's five evaluation goals


class LineGoalEnv(gym.Env):
    """A point on a line; task k's goal is GOALS[k - 1], reached within 0.5; OGBench's reset and info keys."""

    metadata = {"render_fps": 10}

    def __init__(self, terminate_at_goal: bool = True):
        self.observation_space = gym.spaces.Box(-10, 10, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1, 1, (1,), np.float32)
        self.task_infos = [dict(task_name=f"task{k}", goal=g) for k, g in enumerate(GOALS, 1)]
        self.terminate_at_goal = terminate_at_goal

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.position = float(self.np_random.uniform(-0.2, 0.2))
        self.goal = self.task_infos[options["task_id"] - 1]["goal"] if options else 0.0
        return self._observation(), {"goal": np.array([self.goal], np.float32)}

    def _observation(self):
        return np.array([self.position], np.float32)

    def step(self, action):
        self.position += float(np.clip(action[0], -1, 1))
        success = abs(self.position - self.goal) < 0.5
        return self._observation(), float(success), success and self.terminate_at_goal, False, {"success": float(success)}


def line_envs(num_envs: int, terminate_at_goal: bool = True) -> gym.vector.VectorEnv:
    make = lambda: gym.wrappers.TimeLimit(LineGoalEnv(terminate_at_goal), max_episode_steps=12)  # noqa: E731
    return gym.vector.SyncVectorEnv([make] * num_envs)


NO_REFERENCES = types.SimpleNamespace(storage=types.SimpleNamespace(metadata={}))  # a dataset without D4RL scores


def test_each_goal_is_evaluated_with_its_own_goal_and_counted_apart():
    seen = []

    def policy(observations, goals):  # walks to positive goals only: tasks 1, 3, 5 succeed, 2 and 4 never
        seen.append(goals[:, 0].clone())
        return torch.where(goals > 0, torch.sign(goals - observations), torch.zeros_like(goals))

    result = evaluation.evaluate(policy, line_envs(4), NO_REFERENCES, seed=7, goal_conditioned=True)
    np.testing.assert_array_equal(result.task_success_rates, [1, 0, 1, 0, 1])
    assert result.success_rate == pytest.approx(3 / 5)
    assert len(result.returns) == len(result.successes) == 5 * 4  # N episodes per goal, every one kept
    # the policy saw each goal (the reset's info["goal"], the same for every env), goal 1 first
    assert [float(g[0]) for g in torch.stack(seen).unique_consecutive(dim=0)] == list(GOALS)
    # episodes end at the goal (terminate_at_goal), or at the time limit
    assert set(result.lengths[result.successes]) <= set(range(1, 12)) and (result.lengths[~result.successes] == 12).all()


def test_success_is_the_state_at_the_end_not_a_goal_passed_on_the_way():
    """An env that does not stop at the goal: walking through goal 1 (3.0) and on fails it, as OGBench counts."""
    walk_on = lambda observations, goals: torch.ones_like(observations)  # noqa: E731
    result = evaluation.evaluate(walk_on, line_envs(2, terminate_at_goal=False), NO_REFERENCES, goal_conditioned=True)
    np.testing.assert_array_equal(result.task_success_rates, [0, 0, 0, 0, 0])
    stop_there = lambda observations, goals: (goals - observations).clamp(-1, 1)  # noqa: E731
    result = evaluation.evaluate(stop_there, line_envs(2, terminate_at_goal=False), NO_REFERENCES, goal_conditioned=True)
    np.testing.assert_array_equal(result.task_success_rates, [1, 1, 1, 1, 1])


def test_goal_starts_differ_across_goals_and_repeat_with_the_seed():
    starts = []

    def policy(observations, goals):
        starts.append(observations[:, 0].clone())
        return torch.zeros_like(observations)

    for _ in range(2):
        evaluation.evaluate(policy, line_envs(3), NO_REFERENCES, seed=11, goal_conditioned=True)
    first_steps = [s for s in starts if len(s)][::12]  # each episode runs its 12 steps
    assert torch.equal(torch.stack(first_steps[:5]), torch.stack(first_steps[5:]))  # same seed, same starts
    assert len({tuple(s.tolist()) for s in first_steps[:5]}) == 5  # every goal's episodes start from their own seeds


def test_an_env_without_evaluation_goals_is_refused():
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("Pendulum-v1")])
    with pytest.raises(data.DatasetError, match="no evaluation goals"):
        evaluation.evaluate(lambda o, g: o[:, :1], envs, NO_REFERENCES, goal_conditioned=True)


def test_ogbench_pointmaze_gives_each_tasks_goal():
    """OGBench's own env: five evaluation goals, info["goal"] is the goal cell's position (observations are x, y)."""
    import ogbench  # noqa: F401 - registers the envs

    envs = gym.vector.SyncVectorEnv([lambda: gym.make("pointmaze-medium-v0", max_episode_steps=3, render_mode=None)] * 2)
    env = envs.unwrapped.envs[0].unwrapped
    assert evaluation.goal_tasks(env) == 5
    seen = []

    def policy(observations, goals):
        seen.append(goals.clone())
        return torch.zeros(len(observations), 2)

    result = evaluation.evaluate(policy, envs, NO_REFERENCES, seed=0, goal_conditioned=True)
    goals = torch.stack(seen[::3])  # one per task: the goal stays fixed for the episode
    assert goals.shape == (5, 2, 2)
    expected = np.array([env.ij_to_xy(task["goal_ij"]) for task in env.task_infos])
    np.testing.assert_allclose(goals[:, 0].numpy(), expected, atol=1.0)  # the goal cell, with OGBench's noise
    assert len(result.successes) == 10 and not result.successes.any()  # standing still reaches none
