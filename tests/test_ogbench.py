"""`ogbench/*` datasets (algorithms/ogbench_data.py): OGBench's loader on a tiny local build, the mapping of its
terminals and masks onto our episodes (on a hand-made episode), evaluation in OGBench's single-task env, and every
reward-based script training and evaluating on a tiny single-task dataset.

The tiny dataset is built once per module into the session's temporary OGBench folder (conftest.py), never into
~/.ogbench; no test touches the network (the download is replaced by a refusal where a build is asked for).
"""

import dataclasses
import math

import numpy as np
import ogbench
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import awr
import bc
import cal_ql
import cql
import data
import ddpg_bc
import dt
import evaluation
import finetuning
import iql
import ogbench_data
import ogbench_suite
import onestep_rl
import opex
import rebrac
import sfbc
import td3_bc
import training
import ttt

DATASET = "ogbench/cube-single-play-singletask-task2-v0"
EPISODES, LENGTH = 3, 101  # 300 transitions; the single-task env's limit is 200 steps
TINY = dict(total_steps=60, batch_size=32, hidden_dim=32, eval_every=60, eval_episodes=2, log_every=30, progress=False)
SCRIPTS = [bc, td3_bc, cql, iql, onestep_rl, awr, ddpg_bc, sfbc, dt, cal_ql, rebrac]


@pytest.fixture(scope="module")
def cube_file():
    """The tiny cube-single-play build every ogbench/cube-single-play-* id of this module reads."""
    return ogbench_suite.generate(DATASET.split("/")[1], ogbench_data.directory(), EPISODES, LENGTH, seed=0, progress=False)


def tiny_args(module, run_dir: str, **overrides):
    """module.Args on the tiny dataset with the TINY settings its Args has (dt has no hidden_dim, ...)."""
    names = {f.name for f in dataclasses.fields(module.Args)}
    return module.Args(dataset=DATASET, run_dir=run_dir, **{k: v for k, v in (TINY | overrides).items() if k in names})


def scalars(run_path: str) -> dict[str, list[float]]:
    events = EventAccumulator(run_path)
    events.Reload()
    return {tag: [event.value for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def hand_made_arrays() -> dict[str, np.ndarray]:
    """Two trajectories as OGBench's regular loader returns them: the first (5 steps) is solved at steps 2 and 3
    (mask 0, reward 0) and ends at its time limit; the second (3 steps) is never solved. s_t = 10 * trajectory + t."""
    states = np.array([0, 1, 2, 3, 4, 5, 10, 11, 12, 13], np.float32)[:, None]
    rows = np.array([0, 1, 2, 3, 4, 6, 7, 8])  # the rows that have a next state
    masks = np.array([1, 1, 0, 0, 1, 1, 1, 1], np.float32)
    return dict(observations=states[rows], next_observations=states[rows + 1], actions=np.arange(8, dtype=np.float32)[:, None],
                rewards=masks * -1.0, masks=masks, terminals=np.array([0, 0, 0, 0, 1, 0, 0, 1], np.float32))  # fmt: skip


def test_hand_made_episode_bootstraps_through_time_limits_never_through_successes():
    episodes = ogbench_data.episodes_from_arrays(hand_made_arrays())
    # cut after each success and at each trajectory's end: [s0 s1 s2] [s3] [s4] | [s10 s11 s12]
    assert [e.observations[:, 0].tolist() for e in episodes] == [[0, 1, 2, 3], [3, 4], [4, 5], [10, 11, 12, 13]]
    assert [e.terminations.tolist() for e in episodes] == [[False, False, True], [True], [False], [False, False, False]]
    assert [e.truncations.tolist() for e in episodes] == [[False, False, False], [False], [True], [False, False, True]]
    columns = [data.episode_columns(e.id, e.observations, e.actions, e.rewards, e.terminations) for e in episodes]
    t = data.Transitions(**{k: torch.from_numpy(np.concatenate([c[k] for c in columns])) for k in columns[0]})
    assert t.terminals.tolist() == [0, 0, 1, 1, 0, 0, 0, 0]  # 1 - masks: the TD target drops gamma * Q(s') only there
    assert t.episode_ends.tolist() == [0, 0, 1, 1, 1, 0, 0, 1]
    assert t.next_action_known.tolist() == [1, 1, 1, 1, 0, 1, 1, 0]  # no a' was taken after a time limit
    np.testing.assert_array_equal(t.next_observations[:, 0], [1, 2, 3, 4, 5, 11, 12, 13])  # s' is never the next trajectory's
    # returns stop at a success: from s0 only -1 -1 0 counts, not s4's -1 after the success
    assert t.returns_to_go.tolist() == [-2, -1, 0, 0, -1, -3, -2, -1]
    np.testing.assert_allclose(finetuning.discounted_returns(t, 0.5), [-1.5, -1, 0, 0, -1, -1.75, -1.5, -1])
    target = t.rewards + 0.9 * (1 - t.terminals) * 10.0  # a TD target with Q(s') = 10 everywhere
    np.testing.assert_allclose(target, [8, 8, 0, 0, 8, 8, 8, 8])


def test_loads_through_ogbench_and_says_it_is_a_local_build(cube_file, capsys, monkeypatch):
    monkeypatch.setattr(ogbench_data, "_loaded", {})  # said on every first load in a process
    dataset = data.load_dataset(DATASET)
    assert "a LOCAL build" in capsys.readouterr().out and "a LOCAL build" in dataset.storage.metadata["ogbench_source"]
    assert f"{EPISODES} episodes" in dataset.source
    _, train, _ = ogbench.make_env_and_datasets(DATASET.split("/")[1], dataset_path=str(cube_file))
    t = data.to_transitions(dataset)
    assert len(t) == dataset.total_steps == EPISODES * (LENGTH - 1) == len(train["rewards"])
    np.testing.assert_array_equal(t.rewards.numpy(), train["rewards"])  # OGBench's relabelled rewards, in its order
    np.testing.assert_array_equal(t.terminals.numpy(), 1 - train["masks"])
    np.testing.assert_array_equal(t.observations.numpy(), train["observations"])
    assert t.episode_ends.sum() == train["terminals"].sum() + (train["masks"] == 0).sum() - (train["terminals"] * (1 - train["masks"])).sum()


@pytest.mark.parametrize("task", [1, 2, 5])
def test_task_is_selected_by_id_and_evaluated_in_ogbench_single_task_env(cube_file, task):
    dataset = data.load_dataset(f"ogbench/cube-single-play-singletask-task{task}-v0")
    env = evaluation.make_env(dataset)
    assert env.unwrapped._reward_task_id == task and env.spec.max_episode_steps == 200
    envs = evaluation.make_eval_envs(dataset, 2)
    hold_still = lambda obs: torch.zeros(len(obs), 5)  # noqa: E731 - never touches the cube: never succeeds
    result = evaluation.evaluate(hold_still, envs, dataset)
    assert result.success_rate == 0 and list(result.returns) == [-200, -200] and list(result.lengths) == [200, 200]
    # no reference scores on OGBench: the progress bar shows the success rate and the return, never "score=nan"
    assert training.progress_postfix(result) == {"success": "0%", "return": "-200"}
    assert training.progress_postfix(dataclasses.replace(result, normalized=np.array([40.0, 60.0]))) == {"score": "50.0"}


def test_goal_conditioned_id_loads_without_rewards(cube_file):
    dataset = data.load_dataset("ogbench/cube-single-play-v0")
    assert dataset.total_episodes == EPISODES and set(dataset.train) >= {"observations", "next_observations", "terminals"}
    assert all(not e.rewards.any() and not e.terminations.any() for e in dataset.iterate_episodes())
    assert len(dataset.val["observations"]) == LENGTH - 1  # OGBench's -val file: a tenth of the episodes, at least one


def test_missing_file_is_built_locally_with_progress_and_said(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(ogbench_data.DIRECTORY_VARIABLE, str(tmp_path))
    monkeypatch.setattr(ogbench_data, "download_official", lambda name, folder: "URLError: no network")
    monkeypatch.setattr(ogbench_data, "LOCAL_DIVISOR", 500)  # 1,000 // 500: two episodes
    dataset = data.load_dataset("ogbench/pointmaze-medium-navigate-singletask-v0")
    said = capsys.readouterr()
    assert "could not be downloaded (URLError: no network)" in said.out and "ogbench_suite.py pointmaze-medium-navigate-v0" in said.out
    assert "episode" in said.err  # the generator's progress bar
    assert dataset.total_steps == 2 * 1000 and (tmp_path / "pointmaze-medium-navigate-v0-val.npz").exists()
    assert evaluation.make_env(dataset).render_mode is None  # OGBench makes its mazes rgb_array: evaluation would render


def test_unknown_or_ungeneratable_ids_are_refused_in_one_sentence(monkeypatch, tmp_path):
    monkeypatch.setenv(ogbench_data.DIRECTORY_VARIABLE, str(tmp_path))
    monkeypatch.setattr(ogbench_data, "download_official", lambda name, folder: "URLError: no network")
    with pytest.raises(data.DatasetError, match="SAC experts"):
        data.load_dataset("ogbench/antmaze-large-navigate-singletask-v0")
    with pytest.raises(data.DatasetError, match="not an OGBench dataset"):
        data.load_dataset("ogbench/cube-singel-play-singletask-v0")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda m: m.__name__)
def test_every_reward_based_script_trains_and_evaluates(cube_file, script, run_dir):
    result = script.main(tiny_args(script, run_dir, **({"online_steps": 20} if script is cal_ql else {})))
    logged = scalars(result.run_path)
    assert result.success_rate == logged["eval/success_rate"][-1] and 0 <= result.success_rate <= 1
    assert -200 <= result.returns[-1] <= 0  # rewards -1 or 0, at most 200 steps
    assert logged["eval/return"][-1] == pytest.approx(result.returns[-1])
    assert all(math.isfinite(v[-1]) for tag, v in logged.items() if tag.startswith("losses/"))


@pytest.mark.parametrize("test_time", [opex, ttt], ids=lambda m: m.__name__)
def test_opex_and_ttt_evaluate_a_checkpoint(cube_file, test_time, run_dir):
    checkpoint = f"{ddpg_bc.main(tiny_args(ddpg_bc, run_dir, save_model=True)).run_path}/checkpoint.pt"
    extra = {"betas": (0.1,)} if test_time is opex else {"ttt_steps": 2, "ttt_batch_size": 16}
    result = test_time.main(test_time.Args(checkpoint=checkpoint, run_dir=run_dir, eval_episodes=2, progress=False, **extra))
    logged = scalars(result.run_path)
    assert 0 <= result.success_rate <= 1 and -200 <= result.returns[-1] <= 0
    tag = "_beta0.1" if test_time is opex else "_ttt"
    assert 0 <= logged[f"eval/success_rate{tag}"][-1] <= 1
