"""Offline stand-ins for five remote Minari datasets, written under their real ids.

The real datasets cannot be downloaded here, so `build_standin(id)` writes a small dataset into the
current MINARI_DATASETS_PATH that has the remote dataset's *structure*: the same env_spec (env id,
max_episode_steps, kwargs), eval_env_spec, observation and action spaces, reference scores and the
same way episodes end. The numbers inside are sampled (seeded), not simulated: no environment is
constructed while building, so a stand-in builds even where an environment cannot be made.

Where each structural fact comes from (minari.farama.org dataset cards, the generation scripts in
github.com/Farama-Foundation/minari-dataset-generation-scripts, Minari issues, and the env
registrations of gymnasium / gymnasium-robotics):

* mujoco/hopper/medium-v0: the mujoco scripts make plain `Hopper-v5` (no kwargs; 1000-step limit)
  and record no infos; Hopper falls, so episodes end by termination or by the time limit. Minari
  issue #323 reports that this dataset carries no ref_min_score / ref_max_score, and no eval env.
* D4RL/pointmaze/umaze-v2: the card gives the Dict space (observation 4, achieved/desired goal 2,
  float64), the Box(-1, 1, (2,), float32) action and max_episode_steps 1000000.0 for
  PointMaze_UMaze-v3. The script makes the env with continuing_task=True, reset_target=True on the
  registered U-maze, and ends an episode by *truncation* when the goal is reached (never a
  termination); infos hold success/qpos/qvel/goal. Its eval env is the same id with an eval map
  that has one fixed 'g' cell (top-left), continuing_task=True, reset_target=False, default
  300-step limit. Reference scores are Minari's (expert/random on the eval env); the values here
  are as quoted from the dataset metadata in a third-party repository (not on the card).
* D4RL/antmaze/umaze-v1: the v1 AntMaze script makes AntMaze_UMaze-v4 (700-step limit) with a
  U-maze carrying a 'g' (top-left) and 'r' (bottom-left) cell, continuing_task=True,
  reset_target=False; episodes end by the time limit (truncation), never by termination. The
  eval env spec is the same spec with the mirrored eval map ('r' top-right, 'g' bottom-right).
  Observation 27 + goals 2 (users of the real data report observation (1001, 27) per episode).
  Its reference scores were computed by Minari from an expert policy; their values were not
  found, so the ones here are placeholders (STANDINS[...]["ref_scores_confirmed"] is False).
* D4RL/pen/human-v2: 25 episodes / 5000 steps (Minari CLI docs), i.e. 200-step episodes, truncated
  (AdroitHandPen-v1 never terminates). max_episode_steps is 200 since the metadata fix of Minari
  issue #286; AdroitHandPen-v1 is registered with reward_type='dense'. Observation Box(45),
  action Box(-1, 1, (24,), float32). No eval env. Reference scores: D4RL's pen values
  (Minari issue #303 confirms the dataset has reference scores; exact values not confirmed).
* D4RL/kitchen/complete-v2: the kitchen script makes FrankaKitchen-v1 with
  remove_task_when_completed=False, terminate_on_tasks_completed=False, tasks_to_complete =
  microwave, kettle, light switch, slide cabinet and max_episode_steps=280; each demonstration is
  one episode, closed by a (forced) truncation. The card of the sibling mixed-v2 shows the dataset
  space: achieved_goal / desired_goal are Dicts with one float64 Box per task (widths from the
  env's task table: microwave 1, kettle 7, light switch 2, slide cabinet 1), observation
  Box(59,), action Box(-1, 1, (9,), float64). No eval env. Reference scores: D4RL's kitchen
  values (not confirmed for Minari).

Minari quirk: `create_dataset_from_buffers(env=...)` calls `gym.make(env)` even when both spaces
are given, and passing `ref_max_score` makes it `gym.make(eval_env)` too. So the stand-ins are
written with env=None and explicit spaces, and the env_spec / eval_env_spec / reference scores are
added afterwards through `dataset.storage.update_metadata` (the same JSON Minari itself writes).
Two more things the real data shares: PointMaze's data env records max_episode_steps as the float
1000000.0 (the script passed 1e6), which gymnasium 1.4's TimeLimit rejects, so
`recover_environment()` fails for it while the eval env (300 steps) recovers; and an episode of a
dataset stored without infos reads back with `infos` None.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings

import minari
import numpy as np
from gymnasium.envs.registration import EnvSpec
from gymnasium.spaces import Box, Dict
from minari.data_collector import EpisodeBuffer

R, G = "r", "g"
U_MAZE = [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 1, 1, 0, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]]
POINTMAZE_EVAL_MAP = [[1, 1, 1, 1, 1], [1, G, 0, 0, 1], [1, 1, 1, 0, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]]
ANTMAZE_MAP = [[1, 1, 1, 1, 1], [1, G, 0, 0, 1], [1, 1, 1, 0, 1], [1, R, 0, 0, 1], [1, 1, 1, 1, 1]]
ANTMAZE_EVAL_MAP = [[1, 1, 1, 1, 1], [1, 0, 0, R, 1], [1, 0, 1, 1, 1], [1, 0, 0, G, 1], [1, 1, 1, 1, 1]]
KITCHEN_TASKS = ["microwave", "kettle", "light switch", "slide cabinet"]
# Target values of the four kitchen tasks (FrankaKitchen-v1's task table).
KITCHEN_GOALS = {
    "microwave": [-0.75],
    "kettle": [-0.23, 0.75, 1.62, 0.99, 0.0, 0.0, -0.06],
    "light switch": [-0.69, -0.05],
    "slide cabinet": [0.37],
}
STANDIN_MARK = "cleanoffrl test stand-in"

_INF = np.inf


def _goal_space(observation_dim: int) -> Dict:
    return Dict(
        {
            "achieved_goal": Box(-_INF, _INF, (2,), np.float64),
            "desired_goal": Box(-_INF, _INF, (2,), np.float64),
            "observation": Box(-_INF, _INF, (observation_dim,), np.float64),
        }
    )


def _kitchen_space() -> Dict:
    goals = {task: Box(-_INF, _INF, (len(KITCHEN_GOALS[task]),), np.float64) for task in KITCHEN_TASKS}
    return Dict(
        {
            "achieved_goal": Dict(dict(goals)),
            "desired_goal": Dict(dict(goals)),
            "observation": Box(-_INF, _INF, (59,), np.float64),
        }
    )


def _maze_eval_env(env_id: str, max_episode_steps: int, maze_map: list, goal_cell, reset_cell) -> dict:
    """The D4RL mazes' evaluation env: the same env id with a fixed-goal map, the goal never moved."""
    kwargs = {"maze_map": maze_map, "reward_type": "sparse", "continuing_task": True, "reset_target": False}
    return {"env_id": env_id, "max_episode_steps": max_episode_steps, "env_kwargs": kwargs, "goal_cell": goal_cell, "reset_cell": reset_cell}


# Facts a test can assert on. "flat_obs_dim" is the width of data.flatten_observation's vector:
# observation ++ achieved_goal ++ desired_goal (every task's box for Kitchen); "goal_dims" is the
# per-key width of achieved/desired goal.
STANDINS: dict[str, dict] = {
    "mujoco/hopper/medium-v0": {
        "env_id": "Hopper-v5",
        "entry_point": "gymnasium.envs.mujoco.hopper_v5:HopperEnv",
        "max_episode_steps": 1000,
        "reward_threshold": 3800.0,  # Hopper-v5's registration, so gym.make records it
        "env_kwargs": {},
        "eval_env": None,
        "observation_space": Box(-_INF, _INF, (11,), np.float64),
        "action_space": Box(-1.0, 1.0, (3,), np.float32),
        "dict_observation": False,
        "observation_dim": 11,
        "goal_dims": None,
        "flat_obs_dim": 11,
        "action_dim": 3,
        "terminates": True,  # the hopper falls
        "truncates": True,  # 1000-step time limit
        "infos": (),
        "ref_min_score": None,
        "ref_max_score": None,
        "ref_scores_confirmed": True,  # absent in the real metadata (Minari issue #323)
        "data_env_recoverable": True,  # recover_environment() works (Kitchen: once FrankaKitchen-v1 builds)
        "sources": "scripts/mujoco/{create_dataset,make_env}.py; Minari issue #323",
    },
    "D4RL/pointmaze/umaze-v2": {
        "env_id": "PointMaze_UMaze-v3",
        "entry_point": "gymnasium_robotics.envs.maze.point_maze:PointMazeEnv",
        "max_episode_steps": 1000000.0,
        "env_kwargs": {"maze_map": U_MAZE, "reward_type": "sparse", "continuing_task": True, "reset_target": True},
        "eval_env": _maze_eval_env("PointMaze_UMaze-v3", 300, POINTMAZE_EVAL_MAP, goal_cell=(1, 1), reset_cell=None),  # random start
        "observation_space": _goal_space(4),
        "action_space": Box(-1.0, 1.0, (2,), np.float32),
        "dict_observation": True,
        "observation_dim": 4,
        "goal_dims": {"achieved_goal": 2, "desired_goal": 2},
        "flat_obs_dim": 4 + 2 + 2,
        "action_dim": 2,
        "terminates": False,
        "truncates": True,  # cut when the goal is reached
        "infos": ("goal", "qpos", "qvel", "success"),
        "ref_min_score": 13.489999771118164,
        "ref_max_score": 218.6999969482422,
        "ref_scores_confirmed": False,  # quoted from metadata by a third party, not on the card
        "data_env_recoverable": False,  # float max_episode_steps; the eval env recovers
        "real_total_steps": 1_000_000,
        "real_total_episodes": 13210,
        "sources": "minari.farama.org/datasets/D4RL/pointmaze/umaze-v2; scripts/pointmaze/create_pointmaze_dataset.py",
    },
    "D4RL/antmaze/umaze-v1": {
        "env_id": "AntMaze_UMaze-v4",
        "entry_point": "gymnasium_robotics.envs.maze.ant_maze_v4:AntMazeEnv",
        "max_episode_steps": 700,
        "env_kwargs": {
            "maze_map": ANTMAZE_MAP, "reward_type": "sparse", "continuing_task": True, "reset_target": False,
        },
        "eval_env": _maze_eval_env("AntMaze_UMaze-v4", 700, ANTMAZE_EVAL_MAP, goal_cell=(3, 3), reset_cell=(1, 3)),
        "observation_space": _goal_space(27),
        "action_space": Box(-1.0, 1.0, (8,), np.float32),
        "dict_observation": True,
        "observation_dim": 27,
        "goal_dims": {"achieved_goal": 2, "desired_goal": 2},
        "flat_obs_dim": 27 + 2 + 2,  # the ant's x, y are only in achieved_goal
        "action_dim": 8,
        "terminates": False,
        "truncates": True,  # 700-step time limit
        "infos": ("goal", "qpos", "qvel", "success"),
        "ref_min_score": 0.0,  # placeholder
        "ref_max_score": 500.0,  # placeholder
        "ref_scores_confirmed": False,
        "data_env_recoverable": True,  # recover_environment() works (Kitchen: once FrankaKitchen-v1 builds)
        "sources": "scripts/antmaze/create_antmaze_dataset.py (v1 ids); Minari issues #296, #306",
    },
    "D4RL/pen/human-v2": {
        "env_id": "AdroitHandPen-v1",
        "entry_point": "gymnasium_robotics.envs.adroit_hand.adroit_pen:AdroitHandPenEnv",
        "max_episode_steps": 200,
        "env_kwargs": {"reward_type": "dense"},
        "eval_env": None,
        "observation_space": Box(-_INF, _INF, (45,), np.float64),
        "action_space": Box(-1.0, 1.0, (24,), np.float32),
        "dict_observation": False,
        "observation_dim": 45,
        "goal_dims": None,
        "flat_obs_dim": 45,
        "action_dim": 24,
        "terminates": False,
        "truncates": True,  # 200-step demonstrations
        "infos": ("success",),
        "ref_min_score": 96.262799,
        "ref_max_score": 3076.8331017826877,
        "ref_scores_confirmed": False,  # D4RL's pen values
        "real_total_steps": 5000,
        "real_total_episodes": 25,
        "data_env_recoverable": True,  # recover_environment() works (Kitchen: once FrankaKitchen-v1 builds)
        "sources": "scripts/adroit/recreate_adroit_pen.py; Minari docs/content/minari_cli.md; Minari issues #286, #303",
    },
    "D4RL/kitchen/complete-v2": {
        "env_id": "FrankaKitchen-v1",
        "entry_point": "gymnasium_robotics.envs.franka_kitchen:KitchenEnv",
        "max_episode_steps": 280,
        "env_kwargs": {
            "remove_task_when_completed": False,
            "terminate_on_tasks_completed": False,
            "tasks_to_complete": list(KITCHEN_TASKS),
        },
        "eval_env": None,
        "observation_space": _kitchen_space(),
        "action_space": Box(-1.0, 1.0, (9,), np.float64),
        "dict_observation": True,
        "observation_dim": 59,
        "goal_dims": {
            "achieved_goal": {task: len(KITCHEN_GOALS[task]) for task in KITCHEN_TASKS},
            "desired_goal": {task: len(KITCHEN_GOALS[task]) for task in KITCHEN_TASKS},
        },
        "flat_obs_dim": 59 + 11 + 11,
        "action_dim": 9,
        "terminates": False,
        "truncates": True,  # each demonstration closed by a forced truncation
        "infos": (),
        "ref_min_score": 0.0,
        "ref_max_score": 4.0,
        # D4RL's kitchen values, placeholders: with remove_task_when_completed=False a completed task is rewarded on
        # every step, so real returns run far past 4 (a stand-in SfBC run that moved the kettle scored 5650 on them)
        "ref_scores_confirmed": False,
        "data_env_recoverable": True,  # recover_environment() works (Kitchen: once FrankaKitchen-v1 builds)
        "sources": "scripts/kitchen/create_franka_dataset.py; minari.farama.org/datasets/D4RL/kitchen/mixed-v2",
    },
}


def env_spec(dataset_id: str, evaluation: bool = False) -> EnvSpec | None:
    """The EnvSpec the real dataset records (its eval env's when `evaluation`), built without gym.make."""
    facts = STANDINS[dataset_id]
    source = facts["eval_env"] if evaluation else facts
    if source is None:
        return None
    return EnvSpec(
        id=source["env_id"],
        entry_point=facts["entry_point"],
        max_episode_steps=source["max_episode_steps"],
        reward_threshold=facts.get("reward_threshold"),
        kwargs=json.loads(json.dumps(source["env_kwargs"])),
    )


def _random_walk(rng: np.random.Generator, steps: int, start, scale: float) -> np.ndarray:
    start = np.asarray(start, dtype=np.float64)
    moves = rng.normal(0.0, scale, size=(steps, start.shape[0]))
    return np.concatenate([start[None], start + np.cumsum(moves, axis=0)])


def _maze_episode(rng, length: int, obs_dim: int, cell_size: float) -> dict:
    """Goal-conditioned episode: position random walk, fixed goal, sparse reward within 0.45."""
    xy = _random_walk(rng, length, rng.uniform(-cell_size, cell_size, 2), 0.05 * cell_size)
    goal = xy[-1] + rng.uniform(-0.2, 0.2, 2)  # reached on the last step
    body = rng.normal(0.0, 0.5, size=(length + 1, obs_dim))
    if obs_dim == 4:  # PointMaze: [x, y, vx, vy]
        body[:, :2] = xy
        body[1:, 2:] = np.diff(xy, axis=0) / 0.1
    success = np.linalg.norm(xy - goal, axis=1) <= 0.45
    goals = np.repeat(goal[None], length + 1, axis=0)
    infos = {"goal": goals.copy(), "success": success}
    if obs_dim == 4:
        infos.update(qpos=xy.copy(), qvel=body[:, 2:4].copy())
    else:  # AntMaze: qpos = torso xy ++ observation[:13], qvel = observation[13:]
        infos.update(qpos=np.concatenate([xy, body[:, :13]], 1), qvel=body[:, 13:].copy())
    return {
        "observations": {"achieved_goal": xy, "desired_goal": goals, "observation": body},
        "rewards": success[1:].astype(np.float64),
        "infos": infos,
    }


def _episode(dataset_id: str, rng: np.random.Generator, index: int, length: int) -> EpisodeBuffer:
    facts = STANDINS[dataset_id]
    act = facts["action_space"]
    actions = rng.uniform(act.low, act.high, size=(length, *act.shape)).astype(act.dtype)
    terminations = np.zeros(length, dtype=bool)
    truncations = np.zeros(length, dtype=bool)
    infos = None
    if dataset_id.startswith("mujoco/hopper"):
        observations = rng.normal(0.0, 0.5, size=(length + 1, 11))
        rewards = rng.normal(3.0, 0.3, size=length)
        (terminations if index % 2 == 0 else truncations)[-1] = True  # falls, or hits the time limit
    elif dataset_id.startswith("D4RL/pointmaze") or dataset_id.startswith("D4RL/antmaze"):
        maze = _maze_episode(rng, length, facts["observation_dim"], 1.0 if "pointmaze" in dataset_id else 4.0)
        observations, rewards, infos = maze["observations"], maze["rewards"], maze["infos"]
        truncations[-1] = True
    elif dataset_id.startswith("D4RL/pen"):
        observations = rng.normal(0.0, 0.5, size=(length + 1, 45))
        rewards = rng.normal(10.0, 5.0, size=length)
        infos = {"success": np.zeros(length + 1, dtype=bool)}
        truncations[-1] = True
    elif dataset_id.startswith("D4RL/kitchen"):
        desired = {t: np.repeat(np.asarray(KITCHEN_GOALS[t])[None], length + 1, 0) for t in KITCHEN_TASKS}
        achieved = {t: desired[t] + rng.normal(0.0, 0.3, size=desired[t].shape) for t in KITCHEN_TASKS}
        done = sum((np.linalg.norm(achieved[t] - desired[t], axis=1) < 0.3).astype(np.float64) for t in KITCHEN_TASKS)
        observations = {"achieved_goal": achieved, "desired_goal": desired,
                        "observation": rng.normal(0.0, 0.5, size=(length + 1, 59))}  # fmt: skip
        rewards = done[1:]
        truncations[-1] = True
    else:
        raise KeyError(dataset_id)
    return EpisodeBuffer(
        observations=observations, actions=actions, rewards=np.asarray(rewards, np.float64),
        terminations=terminations, truncations=truncations, infos=infos,
    )  # fmt: skip


def build_standin(dataset_id: str, num_episodes: int = 4, episode_length: int = 50, seed: int = 0) -> None:
    """Write a small stand-in for `dataset_id` into $MINARI_DATASETS_PATH (replacing an earlier stand-in)."""
    if dataset_id not in STANDINS:
        raise KeyError(f"no stand-in for {dataset_id!r}; known: {', '.join(STANDINS)}")
    if not os.environ.get("MINARI_DATASETS_PATH"):
        raise RuntimeError("set MINARI_DATASETS_PATH to a scratch folder: stand-ins never go to ~/.minari")
    if num_episodes < 1 or episode_length < 1:
        raise ValueError("num_episodes and episode_length must be positive")
    path = minari.storage.get_dataset_path(dataset_id)
    if path.exists():
        metadata_file = path / "data" / "metadata.json"
        description = json.loads(metadata_file.read_text()).get("description", "") if metadata_file.exists() else ""
        if STANDIN_MARK not in description:
            raise FileExistsError(f"{path} holds a dataset that is not a stand-in; not overwriting it")
        shutil.rmtree(path)
    facts = STANDINS[dataset_id]
    rng = np.random.default_rng(seed)
    episodes = [_episode(dataset_id, rng, i, episode_length) for i in range(num_episodes)]
    with warnings.catch_warnings():  # env/eval_env None and ref scores absent: added just below
        warnings.simplefilter("ignore")
        dataset = minari.create_dataset_from_buffers(
            dataset_id, episodes, env=None, eval_env=None,
            observation_space=facts["observation_space"], action_space=facts["action_space"],
            algorithm_name="random actions (stand-in)", author="cleanoffrl tests",
            author_email="tests@cleanoffrl.invalid", code_permalink="tests/standins.py",
            description=f"{STANDIN_MARK} for {dataset_id}, seed {seed}", data_format="hdf5",
        )  # fmt: skip
    extra: dict = {"env_spec": env_spec(dataset_id).to_json()}
    evaluation = env_spec(dataset_id, evaluation=True)
    if evaluation is not None:
        extra["eval_env_spec"] = evaluation.to_json()
    if facts["ref_max_score"] is not None:
        extra.update(ref_min_score=facts["ref_min_score"], ref_max_score=facts["ref_max_score"],
                     num_episodes_average_score=100)  # fmt: skip
    dataset.storage.update_metadata(extra)

