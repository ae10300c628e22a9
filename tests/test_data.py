"""algorithms/data.py: the local suite, transitions, splits, evaluation and every promised error."""

import os

import gymnasium as gym
import minari
import numpy as np
import pytest
import torch
from minari.data_collector import EpisodeBuffer

import data


def write_dataset(dataset_id, episodes, action_space=None, observation_space=None):
    """A hand-made Minari dataset (no env) in the test's Minari root."""
    action_space = action_space or gym.spaces.Box(-1, 1, (1,), np.float32)
    observation_space = observation_space or gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    minari.create_dataset_from_buffers(
        dataset_id, episodes, action_space=action_space, observation_space=observation_space
    )
    return minari.load_dataset(dataset_id)


def episode(rewards, terminated, observations=None, actions=None):
    steps = len(rewards)
    observations = np.arange((steps + 1) * 2, dtype=np.float32).reshape(steps + 1, 2) if observations is None else observations
    actions = np.zeros((steps, 1), np.float32) if actions is None else actions
    terminations = np.zeros(steps, bool)
    truncations = np.zeros(steps, bool)
    (terminations if terminated else truncations)[-1] = True
    return EpisodeBuffer(
        observations=observations, actions=actions, rewards=np.asarray(rewards, np.float64),
        terminations=terminations, truncations=truncations, infos={},
    )  # fmt: skip


def test_local_datasets_have_consistent_shapes(local_dataset):
    for dataset_id, obs_dim, act_dim in (("pendulum/medium-v0", 3, 1), ("pointmaze/umaze-medium-v0", 6, 2)):
        dataset = data.load_dataset(local_dataset(dataset_id))
        t = data.to_transitions(dataset)
        n = len(t)
        assert n == dataset.total_steps
        assert t.observations.shape == t.next_observations.shape == (n, obs_dim)
        assert t.actions.shape == t.next_actions.shape == (n, act_dim)
        for name in ("rewards", "terminals", "returns_to_go", "episode_ids", "timesteps"):
            assert getattr(t, name).shape == (n,)
        # within an episode s'_t is s_{t+1}
        inside = ~t.episode_ends[:-1]
        assert torch.equal(t.next_observations[:-1][inside], t.observations[1:][inside])
        assert int(t.episode_starts.sum()) == int(t.episode_ends.sum()) == t.num_episodes == dataset.total_episodes
        # time-limited tasks: every episode is truncated, none terminated
        assert t.terminals.sum() == 0
        assert np.all(dataset.action_space.low <= t.actions.min(0).values.numpy() + 1e-6)


def test_reference_scores_and_behaviour_returns(local_dataset):
    dataset = data.load_dataset(local_dataset("pendulum/medium-v0"))
    ref_min, ref_max = dataset.storage.metadata["ref_min_score"], dataset.storage.metadata["ref_max_score"]
    assert -1500 < ref_min < -1000 and -250 < ref_max < -100  # random ~ -1230, expert ~ -140 (NOTES.md)
    t = data.to_transitions(dataset)
    behaviour = float(t.episode_returns[t.episode_starts].mean())
    assert ref_min < behaviour < ref_max  # medium sits between random and expert
    assert 20 < data.normalized_score(dataset, np.array([behaviour]))[0] < 80


def test_terminals_exclude_truncations_and_returns_to_go():
    dataset = write_dataset(
        "handmade/returns-v0",
        [episode([1.0, 2.0, 3.0], terminated=True), episode([5.0, 0.0], terminated=False)],
    )
    t = data.to_transitions(dataset)
    assert t.terminals.tolist() == [0, 0, 1, 0, 0]  # the truncated episode's last step is not terminal
    assert t.episode_ends.tolist() == [False, False, True, False, True]
    assert t.returns_to_go.tolist() == [6.0, 5.0, 3.0, 5.0, 0.0]
    assert t.episode_returns.tolist() == [6.0, 6.0, 6.0, 5.0, 5.0]
    assert t.timesteps.tolist() == [0, 1, 2, 0, 1]
    assert t.episode_ids.tolist() == [0, 0, 0, 1, 1]


def test_subsets_are_nested_prefixes_and_splits_disjoint(local_dataset):
    t = data.to_transitions(data.load_dataset(local_dataset("pendulum/medium-v0")))
    train, valid = data.split_by_episode(t, 0.2, seed=0)
    assert len(train) + len(valid) == len(t)
    assert not torch.isin(valid.episode_ids, train.episode_ids).any()
    assert valid.num_episodes == round(0.2 * t.num_episodes)
    small, large = data.subsample(train, 0.25), data.subsample(train, 0.5)
    assert torch.isin(small.episode_ids, large.episode_ids).all()
    assert small.num_episodes < large.num_episodes < train.num_episodes
    small_t, large_t = data.subsample(train, 0.1, unit="transitions"), data.subsample(train, 0.3, unit="transitions")
    assert len(small_t) == round(0.1 * len(train))
    # the same transitions (identified by observation and episode) appear in the larger subset
    key = lambda x: set(zip(x.episode_ids.tolist(), x.timesteps.tolist()))  # noqa: E731
    assert key(small_t) <= key(large_t)
    top = data.top_episodes(train, 0.1)
    assert top.episode_returns.min() >= torch.quantile(train.episode_returns[train.episode_starts], 0.85)


def test_normalisation_round_trips(local_dataset):
    t = data.to_transitions(data.load_dataset(local_dataset("pointmaze/umaze-medium-v0")))
    normalizer = data.Normalizer.fit(t.observations)
    normalized = normalizer(t.observations)
    assert torch.allclose(normalized.mean(0), torch.zeros(6), atol=1e-4)
    assert torch.allclose(normalized.std(0), torch.ones(6), atol=1e-2)
    assert torch.allclose(normalizer.inverse(normalized), t.observations, atol=1e-4)


def test_reward_transforms():
    t = data.to_transitions(write_dataset("handmade/rewards-v0", [episode([1.0, 1.0], True), episode([4.0], True)]))
    scaled = data.transform_rewards(t, 1.0, 0.0, return_range_scale=True)
    assert torch.allclose(scaled.rewards, torch.tensor([500.0, 500.0, 2000.0]))  # 1000 / (4 - 2)
    shifted = data.transform_rewards(t, 10.0, -5.0, return_range_scale=False)
    assert shifted.rewards.tolist() == [5.0, 5.0, 35.0]


def test_scripted_experts_solve_the_evaluation_tasks(local_dataset):
    for dataset_id in ("pendulum/expert-v0", "pointmaze/umaze-medium-v0"):
        dataset = data.load_dataset(local_dataset(dataset_id))
        expert = data.scripted_expert(dataset_id)
        envs = data.make_eval_envs(dataset, 4)
        expert_result = data.evaluate(lambda o: torch.as_tensor(expert(o.numpy())), envs, dataset, seed=1)
        zero_result = data.evaluate(lambda o: torch.zeros(len(o), envs.single_action_space.shape[0]), envs, dataset, seed=1)
        assert expert_result.normalized_mean > 80, dataset_id
        assert zero_result.normalized_mean < 30, dataset_id
        assert len(expert_result.observations) == expert_result.lengths.sum()
        assert data.expert_action_mse(lambda o: torch.as_tensor(expert(o.numpy())), dataset_id, expert_result.observations) == 0
        no_expert = data.expert_action_mse(lambda o: torch.zeros(len(o), 1), "mujoco/hopper/medium-v0", expert_result.observations)
        assert np.isnan(no_expert)  # remote datasets have no scripted expert


def test_stitch_episodes_never_go_from_start_to_goal(local_dataset):
    dataset = data.load_dataset(local_dataset("pointmaze/umaze-stitch-v0"))
    expert = data.scripted_expert("pointmaze/umaze-stitch-v0")
    start, goal = data.MAZE_TASKS["umaze"]["start"], data.MAZE_TASKS["umaze"]["goal"]
    lengths = []
    for ep in dataset.iterate_episodes():
        cells = expert.cell_of(ep.observations["observation"][:, :2])
        starts_at_start = tuple(cells[0]) == start
        reaches_goal = np.any(np.all(cells == goal, axis=1))
        assert not (starts_at_start and reaches_goal)
        lengths.append(len(ep.rewards))
    assert max(lengths) <= 20 * data.MAZE_TASKS["umaze"]["hop"] + 40


def test_local_build_is_deterministic(minari_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "a"))
    data.build_local_dataset("pendulum/medium-v0", 400, ref_episodes=2)
    first = data.to_transitions(data.load_dataset("pendulum/medium-v0"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "b"))
    data.build_local_dataset("pendulum/medium-v0", 400, ref_episodes=2)
    second = data.to_transitions(data.load_dataset("pendulum/medium-v0"))
    assert torch.equal(first.observations, second.observations) and torch.equal(first.actions, second.actions)


def test_interrupted_build_is_not_loaded_as_complete(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    real_create = minari.create_dataset_from_buffers

    def create_then_die(*args, **kwargs):
        real_create(*args, **kwargs)
        raise KeyboardInterrupt  # killed after writing, before the rename

    monkeypatch.setattr(minari, "create_dataset_from_buffers", create_then_die)
    with pytest.raises(KeyboardInterrupt):
        data.build_local_dataset("pendulum/random-v0", 400, ref_episodes=2)
    assert not (tmp_path / "pendulum" / "random-v0").exists()
    assert not any(p.name.startswith(".building-") for p in tmp_path.iterdir())  # staging cleaned up
    monkeypatch.setattr(minari, "create_dataset_from_buffers", real_create)
    data.build_local_dataset("pendulum/random-v0", 400, ref_episodes=2)
    assert data.load_dataset("pendulum/random-v0").total_steps == 400


def test_half_written_dataset_names_folder_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    (tmp_path / "pendulum" / "expert-v0" / "data").mkdir(parents=True)  # e.g. a copy that was cut short
    with pytest.raises(data.DatasetError, match=r"half-written or corrupt: delete that folder") as error:
        data.load_dataset("pendulum/expert-v0")
    assert str(tmp_path / "pendulum" / "expert-v0") in str(error.value)


def test_unknown_local_id_lists_close_matches_and_suite():
    with pytest.raises(data.DatasetError) as error:
        data.load_dataset("pendulum/medum-v0")
    message = str(error.value)
    assert "Unknown dataset id 'pendulum/medum-v0'" in message
    assert "did you mean pendulum/medium-v0" in message
    assert "pointmaze/umaze-stitch-v0" in message  # the suite is listed


def test_unreachable_remote_id_says_network_and_names_local_suite(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(minari, "load_dataset", offline)
    with pytest.raises(data.DatasetError) as error:
        data.load_dataset("mujoco/hoper/medium-v0")
    message = str(error.value)
    assert "Could not load dataset 'mujoco/hoper/medium-v0' from the Minari servers" in message
    assert "network" in message and "mujoco/hopper/medium-v0" in message and "pendulum/medium-v0" in message


def test_discrete_actions_are_refused():
    observations = np.zeros((3, 2), np.float32)
    write_dataset(
        "handmade/discrete-v0", [episode([0.0, 1.0], True, observations, np.array([0, 1]))],
        action_space=gym.spaces.Discrete(2),
    )  # fmt: skip
    with pytest.raises(data.DatasetError, match="Discrete action space: these algorithms handle continuous actions only"):
        data.load_dataset("handmade/discrete-v0")


def test_nan_rewards_and_empty_datasets_are_refused():
    with pytest.raises(data.DatasetError, match="contains NaN or infinite rewards"):
        data.to_transitions(write_dataset("handmade/nan-v0", [episode([1.0, float("nan")], True)]))
    with pytest.raises(data.DatasetError, match="is empty"):
        write_dataset("handmade/empty-v0", [])
        data.load_dataset("handmade/empty-v0")


def test_bad_fractions_and_device():
    t = data.to_transitions(write_dataset("handmade/fractions-v0", [episode([1.0], True), episode([2.0], True)]))
    with pytest.raises(data.DatasetError, match=r"a data fraction must be in \(0, 1\], got 0"):
        data.subsample(t, 0.0)
    with pytest.raises(data.DatasetError, match=r"validation_fraction must be in \[0, 1\), got 1.5"):
        data.split_by_episode(t, 1.5)
    with pytest.raises(ValueError, match="Unknown --device 'gpu0'"):
        data.resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available here"):
            data.resolve_device("cuda")


def test_checkpoint_round_trip_and_wrong_algorithm(tmp_path):
    path = str(tmp_path / "checkpoint.pt")
    layer = torch.nn.Linear(2, 2)
    normalizer = data.Normalizer(torch.ones(2), torch.full((2,), 2.0))
    data.save_checkpoint(path, "bc", {"dataset": "pendulum/medium-v0", "seed": 3}, 7, {"actor": layer.state_dict()}, normalizer)
    assert not any(name.startswith("checkpoint.pt.tmp") for name in os.listdir(tmp_path))
    state = data.load_checkpoint(path, "bc")
    assert state["step"] == 7 and torch.equal(state["models"]["actor"]["weight"], layer.weight.detach())
    assert torch.equal(state["normalizer"]["std"], normalizer.std)
    with pytest.raises(ValueError, match="was written by bc, not td3_bc"):
        data.load_checkpoint(path, "td3_bc")
