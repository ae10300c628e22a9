"""The local dataset suite: scripted experts, behaviour policies and the builder (no network needed).

`data.load_dataset` calls `build_local_dataset` the first time a local id is asked for (data.LOCAL_BUILDERS names
this module for the `pendulum` and `pointmaze` namespaces); the algorithm scripts never import it, and it imports the
shared modules, never the reverse. Each dataset is rolled out by a scripted behaviour policy in the
dataset's env, written as a real Minari dataset (atomically: staged, then renamed), and from then on
loads through the same `minari.load_dataset` call as any remote id. NOTES.md has the measured design.

    python algorithms/local_suite.py                          # list the suite and what is built
    python algorithms/local_suite.py pendulum/medium-v0 ...   # build (--force rebuilds)
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import shutil
import tempfile
import time
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gymnasium as gym
import minari
import numpy as np
from minari.data_collector import EpisodeBuffer

import checks
import data
import evaluation

# Scripted experts. Both work on batches of flat observations (numpy) and are exact enough to be
# the "expert" of the local suite and of the action-MSE analysis (Park et al. 2024).

PENDULUM_LQR_GAINS = (19.69, 5.26)  # discrete LQR of the linearised pendulum, Q = diag(1, .1), R = .001
PENDULUM_UPRIGHT_ENERGY = 15.0  # E = w^2/2 + 15 cos(theta) is 15 at rest upright (g = 10, l = 1)


def pendulum_expert(observations: np.ndarray) -> np.ndarray:
    """Energy pumping to swing up, LQR to balance. observations: (N, 3) = [cos, sin, theta_dot]."""
    theta = np.arctan2(observations[:, 1], observations[:, 0])
    omega = observations[:, 2]
    energy = 0.5 * omega**2 + PENDULUM_UPRIGHT_ENERGY * np.cos(theta)
    balance = -(PENDULUM_LQR_GAINS[0] * theta + PENDULUM_LQR_GAINS[1] * omega)
    # pump in the direction of motion while below the upright energy, brake above it
    pump = 2.0 * np.where((PENDULUM_UPRIGHT_ENERGY - energy) * np.where(omega == 0, 1.0, omega) >= 0, 1.0, -1.0)
    near_top = (np.abs(theta) < 0.6) & ((np.abs(energy - PENDULUM_UPRIGHT_ENERGY) < 6) | (np.abs(theta) < 0.2))
    return np.clip(np.where(near_top, balance, pump), -2.0, 2.0)[:, None].astype(np.float32)


class MazeExpert:
    """Waypoint PD controller over a BFS path through the maze grid (the D4RL maze2d recipe).

    Observations are flat (flatten_observation): [x, y, vx, vy, achieved x, y, goal_x, goal_y]. The waypoint
    is the centre of the neighbouring cell closer to the goal; once in or next to the goal cell it is the goal.
    """

    def __init__(self, maze_map: list[list], position_gain: float = 10.0, velocity_gain: float = 1.0):
        self.free = np.array([[cell != 1 for cell in row] for row in maze_map])
        self.rows, self.cols = self.free.shape
        self.position_gain, self.velocity_gain = position_gain, velocity_gain
        self._next_cell: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def cell_centre(self, rowcol: np.ndarray) -> np.ndarray:
        """Same convention as gymnasium_robotics' Maze.cell_rowcol_to_xy (scaling 1)."""
        rowcol = np.asarray(rowcol, dtype=np.float64)
        return np.stack([rowcol[..., 1] + 0.5 - self.cols / 2, self.rows / 2 - rowcol[..., 0] - 0.5], -1)

    def cell_of(self, xy: np.ndarray) -> np.ndarray:
        row = np.floor(self.rows / 2 - xy[..., 1]).astype(int).clip(0, self.rows - 1)
        col = np.floor(xy[..., 0] + self.cols / 2).astype(int).clip(0, self.cols - 1)
        return np.stack([row, col], -1)

    def distances_from(self, cell: tuple[int, int]) -> np.ndarray:
        """BFS distance (in cells) from `cell` to every free cell; inf in walls."""
        distance = np.full(self.free.shape, np.inf)
        distance[cell] = 0
        queue = deque([cell])
        while queue:
            r, c = queue.popleft()
            for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if 0 <= nr < self.rows and 0 <= nc < self.cols and self.free[nr, nc] and distance[nr, nc] == np.inf:
                    distance[nr, nc] = distance[r, c] + 1
                    queue.append((nr, nc))
        return distance

    def _table(self, goal_cell: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """For every cell: the centre of its neighbour closest to goal_cell, and its distance."""
        if goal_cell not in self._next_cell:
            distance = self.distances_from(goal_cell)
            padded = np.pad(distance, 1, constant_values=np.inf)
            neighbours = np.stack([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
            step = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]])[neighbours.argmin(0)]
            rows, cols = np.indices(distance.shape)
            self._next_cell[goal_cell] = (self.cell_centre(np.stack([rows, cols], -1) + step), distance)
        return self._next_cell[goal_cell]

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        position, velocity, goal = observations[:, 0:2], observations[:, 2:4], observations[:, 6:8]
        cells, goal_cells = self.cell_of(position), self.cell_of(goal)
        waypoint = goal.copy()
        for goal_cell in {tuple(g) for g in goal_cells}:
            rows = np.all(goal_cells == goal_cell, axis=1)
            next_centre, distance = self._table(goal_cell)
            r, c = cells[rows, 0], cells[rows, 1]
            far = distance[r, c] > 1  # in or next to the goal cell (or stuck in a wall): head for the goal
            waypoint[np.flatnonzero(rows)[far]] = next_centre[r[far], c[far]]
        action = self.position_gain * (waypoint - position) - self.velocity_gain * velocity
        return np.clip(action, -1.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# The local suite: ids, behaviour policies and the builder.


def _maze_map(name: str) -> list[list]:
    from gymnasium_robotics.envs.maze import maps

    base = {"umaze": maps.U_MAZE, "medium": maps.MEDIUM_MAZE, "large": maps.LARGE_MAZE}[name]
    start, goal = MAZE_TASKS[name]["start"], MAZE_TASKS[name]["goal"]
    maze = [list(row) for row in base]
    maze[start[0]][start[1]], maze[goal[0]][goal[1]] = "r", "g"
    return maze


# Fixed evaluation task per maze (start cell -> goal cell, like D4RL's eval maps); the stitch
# datasets' hops are at most `hop` cells long, shorter than the start->goal path (6/10/17 cells).
MAZE_TASKS = {
    "umaze": {"env": "PointMaze_UMaze-v3", "start": (3, 1), "goal": (1, 1), "hop": 3},
    "medium": {"env": "PointMaze_Medium-v3", "start": (6, 1), "goal": (1, 6), "hop": 4},
    "large": {"env": "PointMaze_Large-v3", "start": (7, 1), "goal": (1, 10), "hop": 5},
}
PENDULUM_KINDS = ("random", "medium", "expert", "medium-expert", "mixed", "noisy")
MAZE_KINDS = ("expert", "medium", "stitch")
LOCAL_SUITE = tuple(f"pendulum/{kind}-v0" for kind in PENDULUM_KINDS) + tuple(
    f"pointmaze/{maze}-{kind}-v0" for maze in MAZE_TASKS for kind in MAZE_KINDS
)
DEFAULT_TRANSITIONS = 100_000
SUITE_SEED = 0


def check_local_id(dataset_id: str) -> None:
    if dataset_id not in LOCAL_SUITE:
        close = difflib.get_close_matches(dataset_id, LOCAL_SUITE, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise data.DatasetError(
            f"Unknown dataset id '{dataset_id}': {hint}the local suite is {', '.join(LOCAL_SUITE)}; "
            "any Minari id (e.g. mujoco/hopper/medium-v0) also works with a network."
        )


@functools.cache  # one expert (and one BFS table per goal) per dataset, however often it is asked for
def scripted_expert(dataset_id: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """The local suite's expert on flat observations, or None where a dataset has none."""
    family, name = dataset_id.split("/")[0], dataset_id.split("/")[-1]
    if dataset_id not in LOCAL_SUITE:
        return None
    if family == "pendulum":
        return pendulum_expert
    return MazeExpert(_maze_map(name.split("-")[0]))


def make_env(dataset_id: str, render_mode: str | None = None) -> gym.Env:
    if dataset_id.startswith("pendulum/"):
        return gym.make("Pendulum-v1", render_mode=render_mode)
    data.register_robotics_envs()
    maze = dataset_id.split("/")[1].split("-")[0]
    return gym.make(MAZE_TASKS[maze]["env"], maze_map=_maze_map(maze), reward_type="sparse", render_mode=render_mode)


class _HeldNoise:
    """With probability p per step (per env), replace the action by a uniform random one held k steps."""

    def __init__(self, rng: np.random.Generator, probability: float, hold_steps: int, low, high):
        self.rng, self.p, self.k, self.low, self.high = rng, probability, hold_steps, low, high
        self.left, self.action = 0, None

    def __call__(self, action: np.ndarray) -> np.ndarray:
        if self.left == 0 and self.rng.random() < self.p:
            self.left, self.action = self.k, self.rng.uniform(self.low, self.high).astype(np.float32)
        if self.left > 0:
            self.left -= 1
            return self.action
        return action


def _noisy(expert, rng, low, high, held: _HeldNoise | None = None, gaussian_std: float = 0.0):
    """The expert with held random actions (medium) or Gaussian noise (stitch), clipped to the box."""

    def policy(observations: np.ndarray) -> np.ndarray:
        action = expert(observations)
        if gaussian_std:
            action = action + gaussian_std * rng.standard_normal(action.shape)
        if held is not None:
            action = held(action[0])[None]
        return np.clip(action, low, high).astype(np.float32)

    return policy


def _rollout(env: gym.Env, policy: Callable, seed: int, horizon: int, options=None) -> EpisodeBuffer:
    observation, _ = env.reset(seed=seed, options=options)
    observations, actions, rewards, terminations, truncations = [observation], [], [], [], []
    for t in range(horizon):
        action = policy(data.flatten_observation(observation)[None])[0]
        observation, reward, terminated, truncated, _ = env.step(action)
        truncated = truncated or t == horizon - 1
        observations.append(observation)
        actions.append(action)
        rewards.append(float(reward))
        terminations.append(bool(terminated))
        truncations.append(bool(truncated and not terminated))
        if terminated or truncated:
            break
    if isinstance(observations[0], dict):
        observations = {key: np.stack([o[key] for o in observations]) for key in observations[0]}
    else:
        observations = np.stack(observations)
    return EpisodeBuffer(
        observations=observations, actions=np.stack(actions), rewards=np.array(rewards),
        terminations=np.array(terminations), truncations=np.array(truncations), infos={},
    )  # fmt: skip


def _behaviour_episodes(dataset_id: str, env: gym.Env, num_transitions: int, seed: int) -> list[EpisodeBuffer]:
    """Roll out the dataset's behaviour policy until num_transitions steps are collected."""
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    random_policy = lambda o: rng.uniform(low, high, size=(len(o), len(low))).astype(np.float32)  # noqa: E731
    family, kind = dataset_id.split("/")[0], dataset_id.split("/")[1].rsplit("-v", 1)[0]
    horizon = env.spec.max_episode_steps
    maze = kind.split("-")[0]
    maze_expert = MazeExpert(_maze_map(maze)) if family == "pointmaze" else None
    episodes, steps = [], 0
    while steps < num_transitions:
        episode_seed = seed * 1_000_003 + len(episodes)
        options, length = None, min(horizon, num_transitions - steps)
        if family == "pendulum":
            expert = pendulum_expert
            # mixed = equal thirds random / medium / expert; medium-expert = halves
            share = steps / num_transitions
            kind_now = {
                "mixed": ("random", "medium", "expert")[min(int(share * 3), 2)],
                "medium-expert": ("medium", "expert")[min(int(share * 2), 1)],
            }.get(kind, kind)
            noise = (0.5, 1) if kind == "noisy" else (0.15, 5)  # noisy: a random torque at half the steps, never held
        else:
            kind_now = kind.split("-")[1]
            expert, noise = maze_expert, (0.1, 10)
            if kind_now == "stitch":
                # one short hop from a random free cell A to a cell B at most `hop` cells away;
                # the reward stays that of the fixed evaluation goal
                hop = MAZE_TASKS[maze]["hop"]
                free_cells = np.argwhere(maze_expert.free)
                start = tuple(free_cells[rng.integers(len(free_cells))])
                distance = maze_expert.distances_from(start)
                candidates = np.argwhere((distance >= 1) & (distance <= hop))
                target = candidates[rng.integers(len(candidates))]
                target_xy = maze_expert.cell_centre(target)
                options, length = {"reset_cell": np.array(start)}, min(20 * hop + 40, num_transitions - steps)
                expert = lambda o, t=target_xy: maze_expert(np.concatenate([o[:, :6], np.tile(t, (len(o), 1))], 1))  # noqa: E731
        if kind_now == "random":
            policy = random_policy
        elif kind_now in ("medium", "noisy"):
            policy = _noisy(expert, rng, low, high, held=_HeldNoise(rng, *noise, low, high))
        elif kind_now == "stitch":
            policy = _noisy(expert, rng, low, high, gaussian_std=0.5)
        else:
            policy = expert
        episode = _rollout(env, policy, episode_seed, length, options)
        episodes.append(episode)
        steps += len(episode.rewards)
    return episodes


def reference_returns(dataset_id: str, episodes: int = 100, seed: int = 10_000) -> tuple[float, float]:
    """Mean return of a uniform-random policy and of the scripted expert on the eval env."""
    envs = gym.vector.SyncVectorEnv([lambda: make_env(dataset_id) for _ in range(episodes)])
    rng = np.random.default_rng(seed)
    low, high = envs.single_action_space.low, envs.single_action_space.high
    random_policy = lambda o: rng.uniform(low, high, size=(len(o), len(low))).astype(np.float32)  # noqa: E731
    means = []
    for policy in (random_policy, scripted_expert(dataset_id)):
        returns = evaluation.run_episodes(lambda o, p=policy: p(o), envs, seed, to_numpy=True)[0]
        means.append(float(np.mean(returns)))
    envs.close()
    return means[0], means[1]


def build_local_dataset(
    dataset_id: str, num_transitions: int = DEFAULT_TRANSITIONS, seed: int = SUITE_SEED,
    ref_episodes: int = 100, force: bool = False,
) -> Path:  # fmt: skip
    """Build a local-suite dataset into MINARI_DATASETS_PATH (or ~/.minari/datasets).

    The dataset is written into a temporary root and renamed into place, so an interrupted build
    never leaves a folder that later loads as if complete.
    """
    check_local_id(dataset_id)
    if num_transitions <= 0:
        raise data.DatasetError(f"num_transitions must be positive, got {num_transitions}.")
    final = minari.storage.get_dataset_path(dataset_id)
    if final.exists() and not force:
        return final
    root = minari.storage.get_dataset_path()
    started = time.time()
    env = make_env(dataset_id)
    episodes = _behaviour_episodes(dataset_id, env, num_transitions, seed)
    ref_min, ref_max = reference_returns(dataset_id, ref_episodes)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    previous = os.environ.get("MINARI_DATASETS_PATH")
    try:
        os.environ["MINARI_DATASETS_PATH"] = str(staging)
        with warnings.catch_warnings():  # minari asks for an author, e-mail and permalink
            warnings.simplefilter("ignore")
            minari.create_dataset_from_buffers(
                dataset_id, episodes, env=env, algorithm_name="cleanoffrl scripted behaviour policy",
                ref_min_score=ref_min, ref_max_score=ref_max, data_format="hdf5",
                description=f"cleanoffrl local suite, seed {seed}, built in {time.time() - started:.1f}s",
            )  # fmt: skip
        with open(staging / dataset_id / "data" / ".complete", "w") as marker:
            json.dump({"num_transitions": num_transitions, "seed": seed}, marker)
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH")
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous
        final.parent.mkdir(parents=True, exist_ok=True)
        namespace_file = staging / dataset_id.split("/")[0] / "namespace_metadata.json"
        if namespace_file.exists() and not (final.parent / namespace_file.name).exists():
            shutil.copy(namespace_file, final.parent / namespace_file.name)
        if force and final.exists():
            shutil.rmtree(final)
        try:
            os.rename(staging / dataset_id, final)
        except OSError:
            if not (final / "data" / ".complete").exists():  # another process won the race
                raise
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous
        shutil.rmtree(staging, ignore_errors=True)
        env.close()
    return final


if __name__ == "__main__":
    import tyro

    @dataclass
    class BuildArgs:
        """List the local dataset suite or build (some of) it into MINARI_DATASETS_PATH."""

        dataset_ids: tyro.conf.Positional[tuple[str, ...]] = ()
        """ids to build (default: list the suite and what is built)"""
        num_transitions: int = DEFAULT_TRANSITIONS
        """transitions per dataset"""
        force: bool = False
        """rebuild even if the dataset exists (replaces it atomically)"""

    build_args = tyro.cli(BuildArgs)
    checks.install_handler()  # an unknown id is one line, as in the training scripts
    warnings.simplefilter("ignore")  # minari asks for an author, e-mail and permalink
    for dataset_id in build_args.dataset_ids or LOCAL_SUITE:
        path = minari.storage.get_dataset_path(dataset_id)
        if not build_args.dataset_ids:
            print(f"{dataset_id:34s} {'built' if (path / 'data' / '.complete').exists() else '-'}")
            continue
        start = time.time()
        build_local_dataset(dataset_id, build_args.num_transitions, force=build_args.force)
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
        print(f"{dataset_id}: {time.time() - start:.1f}s, {size:.1f} MB at {path}")
