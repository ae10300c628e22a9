"""algorithms/ogbench_suite.py: tiny local builds of OGBench datasets load through OGBench's own loader.

Each id is built once per module (a few short episodes); the checks are against OGBench's file format
(ogbench.utils.load_dataset) and OGBench's envs, never against numbers written down here.
"""

import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import ogbench
import pytest

import ogbench_suite
from data import DatasetError

# id -> (episodes, steps per episode); stitch keeps OGBench's 201 steps so the oracle has time to get somewhere
TINY = {
    "pointmaze-medium-navigate-v0": (3, 40),
    "pointmaze-medium-stitch-v0": (4, 201),
    "cube-single-play-v0": (2, 150),
    "puzzle-3x3-play-v0": (2, 30),
}
OGBENCH_KEYS = {"observations", "actions", "terminals", "qpos", "qvel"}  # generate_*.py; + button_states
CUBE_CENTRE, CUBE_SCALE = np.array([0.425, 0.0, 0.0]), 10.0  # how cube_env.py puts the cube's xyz in observations


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """id -> path of its training file, all in one temporary folder."""
    directory = tmp_path_factory.mktemp("ogbench")
    return {name: ogbench_suite.generate(name, directory, *TINY[name], seed=0, progress=False) for name in TINY}


def state_widths(env: gym.Env) -> dict[str, int]:
    """Widths of the simulator state in the env's step info (qpos, qvel and, for scene/puzzle, button_states)."""
    env.reset(seed=0)
    info = env.step(env.action_space.sample())[-1]
    return {key: len(info[key]) for key in ("qpos", "qvel", "button_states") if key in info}


@pytest.mark.parametrize("name", TINY)
def test_file_has_ogbench_keys_dtypes_and_shapes(built, name):
    episodes, length = TINY[name]
    env = gym.make(ogbench_suite.RECIPES[name].env_name)
    with np.load(built[name]) as file:
        arrays = {key: file[key] for key in file.files}
    has_buttons = name.startswith(("puzzle", "scene"))
    assert set(arrays) == OGBENCH_KEYS | ({"button_states"} if has_buttons else set()) | {ogbench_suite.BUILD_KEY}
    rows = episodes * length
    assert arrays["observations"].shape == (rows, *env.observation_space.shape)
    assert arrays["actions"].shape == (rows, *env.action_space.shape)
    for key, width in state_widths(env).items():
        assert arrays[key].shape == (rows, width), key
    dtypes = {"terminals": np.bool_, "button_states": np.int64}
    for key in set(arrays) - {ogbench_suite.BUILD_KEY}:
        assert arrays[key].dtype == dtypes.get(key, np.float32), key
    # a time limit at every episode's last row, nowhere else
    np.testing.assert_array_equal(np.flatnonzero(arrays["terminals"]), np.arange(1, episodes + 1) * length - 1)
    assert np.all(np.abs(arrays["actions"]) <= 1)


@pytest.mark.parametrize("name", TINY)
def test_ogbench_loader_reads_it(built, name):
    episodes, length = TINY[name]
    env, train, val = ogbench.make_env_and_datasets(name, dataset_path=str(built[name]))
    assert set(train) == {"observations", "actions", "terminals", "next_observations"}
    assert len(train["observations"]) == episodes * (length - 1)  # the last row of an episode has no next state
    assert len(val["observations"]) == length - 1  # max(1, episodes // 10) episodes
    assert train["observations"].shape[1:] == env.observation_space.shape
    # the loader's terminals mark each trajectory's last transition; next_observations is the following row
    ends = np.flatnonzero(train["terminals"])
    np.testing.assert_array_equal(ends, np.arange(1, episodes + 1) * (length - 1) - 1)
    inside = np.setdiff1d(np.arange(len(train["terminals"]) - 1), ends)
    np.testing.assert_array_equal(train["next_observations"][inside], train["observations"][inside + 1])


def test_qpos_is_the_state_of_its_observation(built):
    """qpos/qvel must be the simulator state of the same row's observation (OGBench relabels rewards from it)."""
    with np.load(built["pointmaze-medium-navigate-v0"]) as maze:
        np.testing.assert_array_equal(maze["observations"], maze["qpos"])  # the point's observation is its xy
    with np.load(built["cube-single-play-v0"]) as cube:
        cube_xyz = (cube["qpos"][:, 14:17] - CUBE_CENTRE) * CUBE_SCALE
        np.testing.assert_allclose(cube["observations"][:, 19:22], cube_xyz, atol=1e-5)


@pytest.mark.parametrize("name", ["pointmaze-medium-stitch-singletask-task1-v0", "cube-single-play-singletask-task2-v0"])
def test_singletask_ids_relabel_the_shared_file(built, name):
    path = built[ogbench_suite.file_name(name)]
    env, train, val = ogbench.make_env_and_datasets(name, dataset_path=str(path), add_info=True)
    for dataset in (train, val):
        assert dataset["rewards"].dtype == dataset["masks"].dtype == np.float32
        assert set(np.unique(dataset["rewards"])) <= {-1.0, 0.0}  # one subtask: success - 1
        np.testing.assert_array_equal(dataset["masks"], -dataset["rewards"])  # masks = 1 - success
    if "pointmaze" in name:  # success = the point within the goal tolerance of the task's goal, on its own state
        distance = np.linalg.norm(train["observations"] - env.unwrapped.cur_goal_xy, axis=-1)
        np.testing.assert_array_equal(train["masks"] == 0, distance <= env.unwrapped._goal_tol)


def test_the_oracles_act(built):
    """Stitch walks its 4 cells (~12 units; noise alone drifts ~1); the cube oracle moves the cube."""
    with np.load(built["pointmaze-medium-stitch-v0"]) as maze:
        length = TINY["pointmaze-medium-stitch-v0"][1]
        positions = maze["qpos"].reshape(-1, length, 2)
    assert np.median(np.linalg.norm(positions[:, -1] - positions[:, 0], axis=-1)) > 5.0
    with np.load(built["cube-single-play-v0"]) as cube:
        travelled = np.ptp(cube["qpos"][:, 14:17], axis=0)
    assert travelled.max() > 0.05  # metres: picked up and carried, not nudged


@pytest.mark.parametrize("name", ["pointmaze-medium-navigate-v0", "cube-single-play-v0"])
def test_same_seed_same_arrays_other_seed_other_arrays(built, name, tmp_path):
    np.random.seed(123)
    expected_draw = np.random.rand()
    np.random.seed(123)
    again = ogbench_suite.generate(name, tmp_path / "again", *TINY[name], seed=0, progress=False)
    assert np.random.rand() == expected_draw  # the caller's global generator is left as it was
    other = ogbench_suite.generate(name, tmp_path / "other", *TINY[name], seed=1, progress=False)
    with np.load(built[name]) as first, np.load(again) as second, np.load(other) as third:
        for key in OGBENCH_KEYS:
            np.testing.assert_array_equal(first[key], second[key])
        assert not np.array_equal(first["observations"], third["observations"])
        assert not np.array_equal(first["actions"], third["actions"])


def test_val_file_holds_a_tenth(tmp_path):
    path = ogbench_suite.generate("pointmaze-large-navigate-v0", tmp_path, episodes=20, episode_length=5, progress=False)
    val_path = ogbench_suite.dataset_paths("pointmaze-large-navigate-v0", tmp_path)[1]
    with np.load(path) as train, np.load(val_path) as val:
        assert train["terminals"].sum() == 20 and val["terminals"].sum() == 2
    assert ogbench_suite.local_build_info(val_path)["episodes"] == 2


def test_build_record_says_local(built, tmp_path):
    info = ogbench_suite.local_build_info(built["cube-single-play-v0"])
    episodes, length = TINY["cube-single-play-v0"]
    assert (info["seed"], info["episodes"], info["episode_length"]) == (0, episodes, length)
    assert info["transitions"] == episodes * (length - 1) and info["ogbench_version"] == ogbench_suite.OGBENCH_VERSION
    assert "LOCAL" in info["builder"] and info["build_seconds"] > 0
    official_like = tmp_path / "official.npz"
    np.savez_compressed(official_like, observations=np.zeros((2, 2), np.float32))
    assert ogbench_suite.local_build_info(official_like) is None


def test_writes_are_atomic(built, tmp_path, monkeypatch):
    directory = built["pointmaze-medium-navigate-v0"].parent
    assert all(name.endswith(".npz") and not name.startswith(".") for name in os.listdir(directory))
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(built["pointmaze-medium-navigate-v0"]).st_mode & 0o777 == 0o666 & ~umask  # as any new file

    def fail_halfway(file, **arrays):
        file.write(b"PK partial")
        raise OSError("disk full")

    monkeypatch.setattr(ogbench_suite.np, "savez_compressed", fail_halfway)
    with pytest.raises(OSError, match="disk full"):
        ogbench_suite.generate("pointmaze-medium-navigate-v0", tmp_path, episodes=1, episode_length=3, progress=False)
    assert os.listdir(tmp_path) == []  # neither a temporary file nor a half-written dataset


def test_names_map_to_the_file_they_read():
    for name in ("cube-single-play-singletask-task2-v0", "cube-single-play-singletask-v0", "cube-single-play-oraclerep-v0"):
        assert ogbench_suite.file_name(name) == "cube-single-play-v0"
    assert ogbench_suite.recipe_for("scene-play-singletask-task5-v0") == ogbench_suite.RECIPES["scene-play-v0"]


def test_unknown_or_ungeneratable_ids_say_why(tmp_path):
    with pytest.raises(DatasetError, match="pointmaze-medium-navigate-v0"):
        ogbench_suite.generate("pointmaze-meduim-navigate-v0", tmp_path)
    with pytest.raises(DatasetError, match="SAC experts"):
        ogbench_suite.generate("antmaze-large-navigate-v0", tmp_path)
    with pytest.raises(DatasetError, match="episode_length >= 2"):
        ogbench_suite.generate("pointmaze-medium-navigate-v0", tmp_path, episodes=2, episode_length=1)


def test_command_line_builds_and_explains_its_flags(tmp_path):
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "algorithms", "ogbench_suite.py")
    help_text = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, check=True).stdout
    for flag, words in {"--episodes": "training episodes", "--episode-length": "env steps", "--seed": "same arrays",
                        "--directory": "where to write"}.items():  # fmt: skip
        assert flag in help_text and words in help_text, flag
    command = [sys.executable, script, "pointmaze-medium-stitch-v0", "--episodes", "2", "--episode-length", "11",
               "--directory", str(tmp_path)]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert "20 training transitions" in output and "env steps/s" in output and "MB" in output
    assert ogbench_suite.local_build_info(tmp_path / "pointmaze-medium-stitch-v0.npz")["episodes"] == 2
