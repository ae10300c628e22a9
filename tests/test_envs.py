"""Every environment behind Minari's D4RL (and mujoco/*) datasets constructs, resets and steps under the pins.

Each case is one dataset's environment as its Minari env spec recreates it (`dataset.recover_environment()`),
with the spec's kwargs, and for the mazes also its eval env spec (`recover_environment(eval_env=True)`), whose
maze_map marks the reset cell 'r' and the goal cell 'g'. The cases need no network: only the env ids, kwargs
and the widths every dataset of that env stores.

Sources of the kwargs (Farama's minari-dataset-generation-scripts):
- D4RL/antmaze/*-v1: AntMaze_{UMaze,Medium,Medium_Diverse_GR,Large,Large_Diverse_GR}-v4 with
  continuing_task=True, reset_target=False; umaze-v1 also a maze_map with its goal 'g' at (1, 1) and reset
  'r' at (3, 1); the eval envs put 'r' and 'g' at the ends of each maze.
- D4RL/pointmaze/*-v2: PointMaze_*-v3 with continuing_task=True, reset_target=True, max_episode_steps=1e6;
  eval envs: a maze_map with a 'g' cell, reset_target=False.
- D4RL/kitchen/{complete,partial,mixed}-v2: FrankaKitchen-v1 with remove_task_when_completed=False,
  terminate_on_tasks_completed=False and the dataset's four tasks_to_complete; 280 / 450 / 450 steps.
- D4RL/{pen,door,hammer,relocate}/*-v2: AdroitHand*-v1; mujoco/*/*-v0: the gymnasium MuJoCo v5 envs.

FrankaKitchen-v1 is the canary for the mujoco pin: gymnasium_robotics' mujoco_utils.get_joint_qpos asserts
`model.jnt_type[i] in (mjtJoint.mjJNT_HINGE, mjtJoint.mjJNT_SLIDE)`, and from mujoco 3.12 on (pybind11 3.1) an
mjtJoint enum compares unequal to the numpy int32 that model.jnt_type holds, so the kitchen fails at
construction with a bare AssertionError (test_mujoco_joint_enum_matches_numpy_joint_type says why directly).
"""

import contextlib
import io
import warnings

import gymnasium as gym
import numpy as np
import pytest

R, G = "r", "g"
STEPS = 5  # random actions per env after the reset

# The maze layouts of gymnasium_robotics.envs.maze.maps, with the datasets' 'r'/'g' cells.
UMAZE_DATA = [[1, 1, 1, 1, 1], [1, G, 0, 0, 1], [1, 1, 1, 0, 1], [1, R, 0, 0, 1], [1, 1, 1, 1, 1]]
UMAZE_EVAL = [[1, 1, 1, 1, 1], [1, 0, 0, R, 1], [1, 0, 1, 1, 1], [1, 0, 0, G, 1], [1, 1, 1, 1, 1]]
MEDIUM_EVAL = [
    [1, 1, 1, 1, 1, 1, 1, 1],
    [1, R, 0, 1, 1, 0, 0, 1],
    [1, 0, 0, 1, 0, 0, 0, 1],
    [1, 1, 0, 0, 0, 1, 1, 1],
    [1, 0, 0, 1, 0, 0, 0, 1],
    [1, 0, 1, 0, 0, 1, 0, 1],
    [1, 0, 0, 0, 1, 0, G, 1],
    [1, 1, 1, 1, 1, 1, 1, 1],
]
LARGE_EVAL = [
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    [1, R, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1],
    [1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1],
    [1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1],
    [1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1],
    [1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1],
    [1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1],
    [1, 0, 0, 1, 0, 0, 0, 1, 0, G, 0, 1],
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
]
POINT_UMAZE_EVAL = [[1, 1, 1, 1, 1], [1, G, 0, 0, 1], [1, 1, 1, 0, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]]
POINT_MEDIUM_EVAL = [[G if cell == G else 0 if cell == R else cell for cell in row] for row in MEDIUM_EVAL]
POINT_LARGE_EVAL = [[G if cell == G else 0 if cell == R else cell for cell in row] for row in LARGE_EVAL]

ANT_DATA = {"continuing_task": True, "reset_target": False}
POINT_DATA = {"continuing_task": True, "reset_target": True, "max_episode_steps": 1_000_000}
POINT_EVAL = {"continuing_task": True, "reset_target": False}
KITCHEN = {"remove_task_when_completed": False, "terminate_on_tasks_completed": False}
KITCHEN_4 = ["microwave", "kettle", "light switch", "slide cabinet"]
KITCHEN_MIXED = ["microwave", "kettle", "bottom burner", "light switch"]

# FrankaKitchen's goal widths and goal values (OBS_ELEMENT_GOALS of the D4RL kitchen).
KITCHEN_GOALS = {
    "bottom burner": [-0.88, -0.01],
    "top burner": [-0.92, -0.01],
    "light switch": [-0.69, -0.05],
    "slide cabinet": [0.37],
    "hinge cabinet": [0.0, 1.45],
    "microwave": [-0.75],
    "kettle": [-0.23, 0.75, 1.62, 0.99, 0.0, 0.0, -0.06],
}


def maze_obs(width):
    """Maze observations: the agent's state, and its xy position / the goal's xy position."""
    return {"observation": width, "achieved_goal": 2, "desired_goal": 2}


def ant(maze_map):
    return {**ANT_DATA, "maze_map": maze_map}


def point_eval(maze_map):
    return {**POINT_EVAL, "maze_map": maze_map}


def kitchen(tasks, max_episode_steps):
    return {**KITCHEN, "tasks_to_complete": tasks, "max_episode_steps": max_episode_steps}


def kitchen_obs(tasks):
    goals = {task: len(KITCHEN_GOALS[task]) for task in tasks}
    return {"observation": 59, "achieved_goal": goals, "desired_goal": dict(goals)}


# (case id, env id, kwargs, observation widths (an int, or a dict of them for Dict spaces), action dim)
CASES = [
    # mujoco/{hopper,halfcheetah,walker2d,ant}/*-v0
    ("mujoco/hopper", "Hopper-v5", {}, 11, 3),
    ("mujoco/halfcheetah", "HalfCheetah-v5", {}, 17, 6),
    ("mujoco/walker2d", "Walker2d-v5", {}, 17, 6),
    ("mujoco/ant", "Ant-v5", {}, 105, 8),  # 27 qpos/qvel + 78 contact forces (v5 default)
    # D4RL/pointmaze/{umaze,medium,large}[-dense]-v2 and their eval envs
    ("D4RL/pointmaze/umaze-v2", "PointMaze_UMaze-v3", POINT_DATA, maze_obs(4), 2),
    ("D4RL/pointmaze/umaze-dense-v2", "PointMaze_UMazeDense-v3", POINT_DATA, maze_obs(4), 2),
    ("D4RL/pointmaze/medium-v2", "PointMaze_Medium-v3", POINT_DATA, maze_obs(4), 2),
    ("D4RL/pointmaze/large-v2", "PointMaze_Large-v3", POINT_DATA, maze_obs(4), 2),
    ("D4RL/pointmaze/umaze-v2:eval", "PointMaze_UMaze-v3", point_eval(POINT_UMAZE_EVAL), maze_obs(4), 2),
    ("D4RL/pointmaze/medium-v2:eval", "PointMaze_Medium-v3", point_eval(POINT_MEDIUM_EVAL), maze_obs(4), 2),
    ("D4RL/pointmaze/large-v2:eval", "PointMaze_Large-v3", point_eval(POINT_LARGE_EVAL), maze_obs(4), 2),
    # D4RL/antmaze/*-v1 (AntMaze v4: observation = qpos[2:] 13 + qvel 14) and their eval envs
    ("D4RL/antmaze/umaze-v1", "AntMaze_UMaze-v4", ant(UMAZE_DATA), maze_obs(27), 8),
    ("D4RL/antmaze/umaze-diverse-v1", "AntMaze_UMaze-v4", ANT_DATA, maze_obs(27), 8),
    ("D4RL/antmaze/medium-play-v1", "AntMaze_Medium-v4", ANT_DATA, maze_obs(27), 8),
    ("D4RL/antmaze/medium-diverse-v1", "AntMaze_Medium_Diverse_GR-v4", ANT_DATA, maze_obs(27), 8),
    ("D4RL/antmaze/large-play-v1", "AntMaze_Large-v4", ANT_DATA, maze_obs(27), 8),
    ("D4RL/antmaze/large-diverse-v1", "AntMaze_Large_Diverse_GR-v4", ANT_DATA, maze_obs(27), 8),
    ("D4RL/antmaze/umaze-v1:eval", "AntMaze_UMaze-v4", ant(UMAZE_EVAL), maze_obs(27), 8),
    ("D4RL/antmaze/medium-diverse-v1:eval", "AntMaze_Medium_Diverse_GR-v4", ant(MEDIUM_EVAL), maze_obs(27), 8),
    ("D4RL/antmaze/large-diverse-v1:eval", "AntMaze_Large_Diverse_GR-v4", ant(LARGE_EVAL), maze_obs(27), 8),
    # The current AntMaze version (v5: the Ant-v5 observation with contact forces, 105 wide)
    ("AntMaze-v5/umaze", "AntMaze_UMaze-v5", ant(UMAZE_DATA), maze_obs(105), 8),
    ("AntMaze-v5/medium-diverse", "AntMaze_Medium_Diverse_GR-v5", ANT_DATA, maze_obs(105), 8),
    # D4RL/{pen,door,hammer,relocate}/{human,cloned,expert}-v2
    ("D4RL/pen", "AdroitHandPen-v1", {}, 45, 24),
    ("D4RL/door", "AdroitHandDoor-v1", {}, 39, 28),
    ("D4RL/hammer", "AdroitHandHammer-v1", {}, 46, 26),
    ("D4RL/relocate", "AdroitHandRelocate-v1", {}, 39, 30),
    # D4RL/kitchen/*-v2
    ("D4RL/kitchen/complete-v2", "FrankaKitchen-v1", kitchen(KITCHEN_4, 280), kitchen_obs(KITCHEN_4), 9),
    ("D4RL/kitchen/partial-v2", "FrankaKitchen-v1", kitchen(KITCHEN_4, 450), kitchen_obs(KITCHEN_4), 9),
    ("D4RL/kitchen/mixed-v2", "FrankaKitchen-v1", kitchen(KITCHEN_MIXED, 450), kitchen_obs(KITCHEN_MIXED), 9),
]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def robotics_registered():
    """gymnasium_robotics' envs, registered once; its import prints an Adroit notice to stderr."""
    with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import gymnasium_robotics

        gym.register_envs(gymnasium_robotics)


def widths(space):
    """The observation space as nested dicts of flat widths."""
    if isinstance(space, gym.spaces.Dict):
        return {key: widths(sub) for key, sub in space.spaces.items()}
    assert isinstance(space, gym.spaces.Box) and len(space.shape) == 1, space
    return space.shape[0]


def value_widths(obs):
    if isinstance(obs, dict):
        return {key: value_widths(value) for key, value in obs.items()}
    assert np.ndim(obs) == 1, np.shape(obs)
    return len(obs)


def flat(obs):
    if isinstance(obs, dict):
        return np.concatenate([flat(obs[key]) for key in sorted(obs)])
    return np.asarray(obs, dtype=np.float64)


def cell_xy(maze_map, scaling, marker):
    """Centre (x, y) of the cell marked `marker` (gymnasium_robotics' maze frame: origin at the middle)."""
    (row, col), = [(i, j) for i, line in enumerate(maze_map) for j, cell in enumerate(line) if cell == marker]
    rows, cols = len(maze_map), len(maze_map[0])
    return np.array([(col + 0.5) * scaling - cols * scaling / 2, rows * scaling / 2 - (row + 0.5) * scaling])


@pytest.mark.parametrize("env_id, kwargs, obs_widths, action_dim", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_env_constructs_resets_and_steps(env_id, kwargs, obs_widths, action_dim):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # AntMaze v4 warns that it is out of date
        env = gym.make(env_id, **kwargs)
    try:
        assert widths(env.observation_space) == obs_widths
        assert env.action_space.shape == (action_dim,)
        np.testing.assert_array_equal(env.action_space.low, -1.0)
        np.testing.assert_array_equal(env.action_space.high, 1.0)
        if "max_episode_steps" in kwargs:
            assert env.spec.max_episode_steps == kwargs["max_episode_steps"]

        obs, info = env.reset(seed=0)
        assert value_widths(obs) == obs_widths
        assert env.observation_space.contains(obs)
        assert np.all(np.isfinite(flat(obs)))
        again, _ = env.reset(seed=0)
        np.testing.assert_array_equal(flat(again), flat(obs), err_msg="reset(seed=0) is not reproducible")

        if isinstance(obs, dict) and "maze_map" in kwargs:
            scaling = env.unwrapped.maze.maze_size_scaling
            noise = 0.25 * scaling + 1e-9  # the mazes' uniform xy noise on reset and goal positions
            assert np.all(np.abs(obs["desired_goal"] - cell_xy(kwargs["maze_map"], scaling, G)) <= noise)
            if any(R in row for row in kwargs["maze_map"]):
                assert np.all(np.abs(obs["achieved_goal"] - cell_xy(kwargs["maze_map"], scaling, R)) <= noise)
        if env_id == "FrankaKitchen-v1":
            assert sorted(obs["desired_goal"]) == sorted(kwargs["tasks_to_complete"])
            for task, goal in obs["desired_goal"].items():
                np.testing.assert_allclose(goal, KITCHEN_GOALS[task])

        env.action_space.seed(0)
        for _ in range(STEPS):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            assert value_widths(obs) == obs_widths
            assert np.all(np.isfinite(flat(obs)))
            assert np.isscalar(reward) and np.isfinite(reward)
            assert isinstance(terminated, (bool, np.bool_)) and isinstance(truncated, (bool, np.bool_))
            assert isinstance(info, dict)
        if env_id == "FrankaKitchen-v1":
            assert not terminated  # terminate_on_tasks_completed=False, and nothing is done in 5 random steps
            assert sorted(info["tasks_to_complete"]) == sorted(kwargs["tasks_to_complete"])
    finally:
        env.close()


def test_mujoco_joint_enum_matches_numpy_joint_type():
    """`jnt_type in (mjJNT_HINGE, mjJNT_SLIDE)` must hold for a hinge: gymnasium_robotics asserts exactly this.

    Python's `x in tuple` compares `element == x`, i.e. enum.__eq__(numpy.int32). From mujoco 3.12 on that is
    False (while `numpy.int32 == enum` stays True), and FrankaKitchen-v1 dies in mujoco_utils.get_joint_qpos with
    a bare AssertionError: keep mujoco at 3.11.x until gymnasium_robotics compares with int(joint_type).
    """
    import mujoco

    model = mujoco.MjModel.from_xml_string(
        "<mujoco><worldbody><body><joint type='hinge'/><geom size='0.1'/></body>"
        "<body pos='1 0 0'><joint type='slide'/><geom size='0.1'/></body></worldbody></mujoco>"
    )
    hinge, slide = model.jnt_type
    scalar = (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE)
    assert hinge in scalar and slide in scalar, f"mujoco {mujoco.__version__}: enum == numpy int32 is False"
