"""algorithms/data.py: the local suite, transitions, splits, evaluation and every promised error."""

import os

import gymnasium as gym
import minari
import numpy as np
import pytest
import torch
from minari.data_collector import EpisodeBuffer

import data
import checkpoints
import evaluation
import training
import local_suite


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
    for dataset_id, obs_dim, act_dim in (("pendulum/medium-v0", 3, 1), ("pointmaze/umaze-medium-v0", 8, 2)):
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
    assert 20 < evaluation.normalized_score(dataset, np.array([behaviour]))[0] < 80


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
    assert torch.allclose(normalized.mean(0), torch.zeros(8), atol=1e-4)
    assert torch.allclose(normalized.std(0), torch.ones(8), atol=1e-2)
    assert torch.allclose(normalizer.inverse(normalized), t.observations, atol=1e-4)


def test_reward_transforms_measured_on_train_applied_unchanged_to_valid():
    episodes = [episode([1.0, 1.0], True), episode([4.0], True), episode([3.0, 5.0], True)]
    t = data.to_transitions(write_dataset("handmade/rewards-v0", episodes))
    train, valid = data._episode_subset(t, torch.tensor([0, 1])), data._episode_subset(t, torch.tensor([2]))
    scaled_train, scaled_valid = data.transform_rewards(train, valid, 1.0, 0.0, return_range_scale=True)
    assert torch.allclose(scaled_train.rewards, torch.tensor([500.0, 500.0, 2000.0]))  # 1000 / (4 - 2), train's range
    assert torch.allclose(scaled_valid.rewards, torch.tensor([1500.0, 2500.0]))  # the same 500x, not valid's own range
    shifted, _ = data.transform_rewards(train, valid, 10.0, -5.0, return_range_scale=False)
    assert shifted.rewards.tolist() == [5.0, 5.0, 35.0]
    empty = data._episode_subset(t, torch.tensor([], dtype=torch.int64))
    assert len(data.transform_rewards(train, empty, 1.0, 0.0, return_range_scale=True)[1]) == 0  # no validation: fine
    with pytest.raises(data.DatasetError, match="all return 2: pass --no-return-range-scale"):
        data.transform_rewards(data._episode_subset(t, torch.tensor([0])), empty, 1.0, 0.0, return_range_scale=True)


def test_scripted_experts_solve_the_evaluation_tasks(local_dataset):
    for dataset_id in ("pendulum/expert-v0", "pointmaze/umaze-medium-v0"):
        dataset = data.load_dataset(local_dataset(dataset_id))
        expert = local_suite.scripted_expert(dataset_id)
        envs = evaluation.make_eval_envs(dataset, 4)
        expert_result = evaluation.evaluate(lambda o: torch.as_tensor(expert(o.numpy())), envs, dataset, seed=1)
        zero_result = evaluation.evaluate(lambda o: torch.zeros(len(o), envs.single_action_space.shape[0]), envs, dataset, seed=1)
        assert expert_result.normalized_mean > 80, dataset_id
        assert zero_result.normalized_mean < 30, dataset_id
        if dataset_id.startswith("pointmaze/"):  # the maze reports success: every expert episode reaches the goal
            assert expert_result.success_rate == 1.0 and zero_result.success_rate == 0.0
        else:  # Pendulum has no success
            assert np.isnan(expert_result.success_rate) and expert_result.successes is None
        assert len(expert_result.observations) == expert_result.lengths.sum()
        assert evaluation.expert_action_mse(lambda o: torch.as_tensor(expert(o.numpy())), dataset_id, expert_result.observations) == 0
        no_expert = evaluation.expert_action_mse(lambda o: torch.zeros(len(o), 1), "mujoco/hopper/medium-v0", expert_result.observations)
        assert np.isnan(no_expert)  # remote datasets have no scripted expert


def test_stitch_episodes_never_go_from_start_to_goal(local_dataset):
    dataset = data.load_dataset(local_dataset("pointmaze/umaze-stitch-v0"))
    expert = local_suite.scripted_expert("pointmaze/umaze-stitch-v0")
    start, goal = local_suite.MAZE_TASKS["umaze"]["start"], local_suite.MAZE_TASKS["umaze"]["goal"]
    lengths = []
    for ep in dataset.iterate_episodes():
        cells = expert.cell_of(ep.observations["observation"][:, :2])
        starts_at_start = tuple(cells[0]) == start
        reaches_goal = np.any(np.all(cells == goal, axis=1))
        assert not (starts_at_start and reaches_goal)
        lengths.append(len(ep.rewards))
    assert max(lengths) <= 20 * local_suite.MAZE_TASKS["umaze"]["hop"] + 40


def test_noisy_pendulum_replaces_half_the_expert_actions_never_held(local_dataset):
    """pendulum/noisy-v0: at each step, with probability 0.5, a fresh uniform torque instead of the expert's (medium
    holds its random torque 5 steps); two replaced steps in a row never share their torque."""
    dataset = data.load_dataset(local_dataset("pendulum/noisy-v0"))
    expert = local_suite.scripted_expert("pendulum/noisy-v0")
    replaced, repeats = [], 0
    for ep in dataset.iterate_episodes():
        own = ~np.isclose(ep.actions, expert(ep.observations[:-1]), atol=1e-5).all(1)
        replaced.append(own)
        repeats += int(np.sum(own[1:] & own[:-1] & (ep.actions[1:] == ep.actions[:-1]).all(1)))
    assert np.concatenate(replaced).mean() == pytest.approx(0.5, abs=0.05)  # 2,000 steps: the std of the share is 0.011
    assert repeats == 0


def test_local_build_is_deterministic(minari_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "a"))
    local_suite.build_local_dataset("pendulum/medium-v0", 400, ref_episodes=2)
    first = data.to_transitions(data.load_dataset("pendulum/medium-v0"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "b"))
    local_suite.build_local_dataset("pendulum/medium-v0", 400, ref_episodes=2)
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
        local_suite.build_local_dataset("pendulum/random-v0", 400, ref_episodes=2)
    assert not (tmp_path / "pendulum" / "random-v0").exists()
    assert not any(p.name.startswith(".building-") for p in tmp_path.iterdir())  # staging cleaned up
    monkeypatch.setattr(minari, "create_dataset_from_buffers", real_create)
    local_suite.build_local_dataset("pendulum/random-v0", 400, ref_episodes=2)
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
    with pytest.raises(data.DatasetError, match=r"Discrete\(2\) action space: these algorithms handle continuous actions only"):
        data.load_dataset("handmade/discrete-v0")


def test_nan_rewards_and_empty_datasets_are_refused():
    with pytest.raises(data.DatasetError, match="1 transitions have NaN or infinite rewards"):
        data.to_transitions(write_dataset("handmade/nan-v0", [episode([1.0, float("nan")], True)]))
    with pytest.raises(data.DatasetError, match="is empty"):
        write_dataset("handmade/empty-v0", [])
        data.load_dataset("handmade/empty-v0")


def test_bad_fractions_and_device():
    t = data.to_transitions(write_dataset("handmade/fractions-v0", [episode([1.0], True), episode([2.0], True)]))
    with pytest.raises(data.DatasetError, match=r"a data fraction must be in \(0, 1\], got 0"):
        data.subsample(t, 0.0)
    with pytest.raises(data.DatasetError, match=r"--validation-fraction must be in \[0, 1\), got 1.5"):
        data.split_by_episode(t, 1.5)
    with pytest.raises(ValueError, match="Unknown --device 'gpu0'"):
        training.resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available here"):
            training.resolve_device("cuda")


def test_checkpoint_round_trip_and_wrong_algorithm(tmp_path):
    path = str(tmp_path / "checkpoint.pt")
    layer = torch.nn.Linear(2, 2)
    normalizer = data.Normalizer(torch.ones(2), torch.full((2,), 2.0))
    checkpoints.save_checkpoint(path, "bc", {"dataset": "pendulum/medium-v0", "seed": 3}, 7, {"actor": layer.state_dict()}, normalizer)
    assert not any(name.startswith("checkpoint.pt.tmp") for name in os.listdir(tmp_path))
    state = checkpoints.load_checkpoint(path, "bc")
    assert state["step"] == 7 and torch.equal(state["models"]["actor"]["weight"], layer.weight.detach())
    assert torch.equal(state["normalizer"]["std"], normalizer.std)
    with pytest.raises(ValueError, match="was written by bc, not td3_bc"):
        checkpoints.load_checkpoint(path, "td3_bc")


def test_validation_split_is_opt_in_and_refuses_a_split_that_holds_no_episode():
    t = data.to_transitions(write_dataset("handmade/split-v0", [episode([1.0] * 3, True) for _ in range(4)]))
    train, valid = data.split_by_episode(t, 0.0)
    assert len(train) == len(t) and len(valid) == 0  # the default: every transition trains
    with pytest.raises(data.DatasetError, match=r"--validation-fraction 0.1 of this dataset's 4 episodes leaves no validation episode: use --validation-fraction 0"):
        data.split_by_episode(t, 0.1)
    with pytest.raises(data.DatasetError, match="leaves no training episode"):
        data.split_by_episode(t, 0.9)
    assert data.split_by_episode(t, 0.25)[1].num_episodes == 1
    # the held-out episodes do not depend on the run's --seed: the scripts pass none
    assert torch.equal(data.split_by_episode(t, 0.5)[1].episode_ids, data.split_by_episode(t, 0.5)[1].episode_ids)


def test_observations_flatten_in_the_documented_order():
    antmaze_like = {
        "desired_goal": np.array([[7.0, 8.0]]), "achieved_goal": np.array([[5.0, 6.0]]),
        "observation": np.array([[1.0, 2.0, 3.0]]), "extra": np.array([[9.0]]),
    }  # fmt: skip
    assert data.flatten_observation(antmaze_like).tolist() == [[1, 2, 3, 5, 6, 7, 8, 9]]  # the position stays in
    kitchen_like = {
        "observation": np.zeros((2, 3)),
        "achieved_goal": {"microwave": np.ones((2, 1)), "kettle": np.full((2, 2), 2.0)},
        "desired_goal": {"microwave": np.full((2, 1), 3.0), "kettle": np.full((2, 2), 4.0)},
    }
    flat = data.flatten_observation(kitchen_like)  # nested dicts: keys sorted, kettle before microwave
    assert flat.dtype == np.float32 and flat[0].tolist() == [0, 0, 0, 2, 2, 1, 4, 4, 3]


def test_user_dataset_in_a_local_namespace_loads_through_minari():
    observations = np.zeros((3, 2), np.float32)
    write_dataset("pendulum/my-own-v0", [episode([0.0, 1.0], True, observations)])
    assert not data.is_local("pendulum/my-own-v0")
    assert data.load_dataset("pendulum/my-own-v0").total_steps == 2


def test_bad_values_are_named_once_on_load():
    observations = np.arange(8, dtype=np.float32).reshape(4, 2)
    observations[-1, 0] = np.nan  # only in the episode's last observation: a next_observation
    with pytest.raises(data.DatasetError, match=r"1 transitions have NaN or infinite next_observations \(the first: episode 0, step 2, the episode's last observation\)"):
        data.to_transitions(write_dataset("handmade/nan-next-v0", [episode([0.0] * 3, False, observations)]))
    write_dataset("handmade/unbounded-v0", [episode([0.0], True)], action_space=gym.spaces.Box(-np.inf, np.inf, (1,), np.float32))
    with pytest.raises(data.DatasetError, match="infinite action bounds .* recreate the dataset with the environment's real bounds"):
        data.load_dataset("handmade/unbounded-v0")
    pixels = gym.spaces.Box(0, 255, (4, 4, 3), np.uint8)
    write_dataset("handmade/pixels-v0", [episode([0.0], True, np.zeros((2, 4, 4, 3), np.uint8))], observation_space=pixels)
    with pytest.raises(data.DatasetError, match=r"image observations \(observation of shape \(4, 4, 3\)\)"):
        data.load_dataset("handmade/pixels-v0")


def test_actions_outside_the_box_are_counted_and_clipped():
    actions = np.array([[0.5], [1.5], [-3.0], [0.0]], np.float32)
    dataset = write_dataset("handmade/outside-v0", [episode([0.0] * 4, True, actions=actions,
                            observations=np.zeros((5, 2), np.float32))])  # fmt: skip
    with pytest.warns(data.DataWarning, match=r"2 of 4 actions \(50.00%\) lie outside the action box \[-1, 1\] \(by up to 2\); they are clipped"):
        t = data.to_transitions(dataset)
    assert t.actions.squeeze(1).tolist() == [0.5, 1.0, -1.0, 0.0]
    assert t.next_actions.squeeze(1).tolist() == [1.0, -1.0, 0.0, 0.0]


def test_next_action_known_only_where_the_data_took_one():
    dataset = write_dataset("handmade/next-action-v0", [episode([1.0, 2.0], True), episode([3.0, 4.0, 5.0], False)])
    t = data.to_transitions(dataset)
    # a terminal step keeps its transition (a' is multiplied by 1 - done = 0); a time-limit end has no a'
    assert t.next_action_known.tolist() == [1, 1, 1, 1, 0]


def test_evaluation_start_states_are_disjoint_across_seeds(local_dataset, run_dir):
    import bc

    runs = [training.Run("bc", bc.Args(dataset=local_dataset("pendulum/medium-v0"), seed=seed, run_dir=run_dir, eval_episodes=10))
            for seed in (0, 1, 2)]  # fmt: skip
    starts = [set(range(run.eval_seed(), run.eval_seed() + 10)) for run in runs]
    assert not (starts[0] & starts[1]) and not (starts[1] & starts[2]) and not (starts[0] & starts[2])
    assert runs[0].eval_seed(round=1) == runs[0].eval_seed() + 10  # later rounds of one seed: new states too
