"""OGBench's datasets, generated here with OGBench's own envs and scripted oracles (pip `ogbench`).

No machine here can download OGBench's files, so this module collects them the way OGBench's
data_gen_scripts did, with the settings of its commands.sh, and writes the same `.npz` files:
`<name>.npz` and `<name>-val.npz` (one tenth as many episodes, at least one), keys `observations`,
`actions`, `terminals` (True at every episode's last row: a time limit), `qpos`, `qvel` and, for scene
and puzzle, `button_states`; dtypes float32 / bool / int64 as OGBench's. `ogbench.make_env_and_datasets(name,
dataset_path=...)` loads them like the official files (singletask ids relabel rewards and masks from qpos).

- point mazes: the waypoint oracle (unit vector to the next BFS waypoint) plus N(0, 0.5) action noise;
  'navigate' draws a new goal whenever the current one is reached, 'stitch' walks to a cell 4 steps away.
- manipulation: 'play' follows OGBench's plan oracles (noise 0.1, smoothing 0.5) and sets a new target
  whenever the oracle is done; 'noisy' uses the Markov oracles with per-episode noise and random actions.

Unlike OGBench's scripts, a build is seeded (same seed, same arrays) and needs no JAX. Each file also
holds one extra key, `cleanoffrl_local_build` (JSON: seed, episodes, build seconds, ogbench version),
which OGBench's loader ignores and `local_build_info` reads, so a local file is never taken for the
official one. Algorithm scripts never import this module.

    python algorithms/ogbench_suite.py                                   # list the datasets and what is built
    python algorithms/ogbench_suite.py cube-single-play-v0 --episodes 10 # a small version
"""

from __future__ import annotations

import difflib
import importlib.metadata
import json
import os
import time
import uuid
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import ogbench  # registers OGBench's envs with gymnasium
from ogbench.manipspace.oracles.markov.button_markov import ButtonMarkovOracle
from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle
from ogbench.manipspace.oracles.markov.drawer_markov import DrawerMarkovOracle
from ogbench.manipspace.oracles.markov.window_markov import WindowMarkovOracle
from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle
from tqdm import tqdm

from data import DatasetError

OGBENCH_VERSION = importlib.metadata.version("ogbench")
DEFAULT_DIRECTORY = os.path.expanduser(ogbench.utils.DEFAULT_DATASET_DIR)  # where OGBench's loader looks first
BUILD_KEY = "cleanoffrl_local_build"  # the one key OGBench's files do not have
PLAN_NOISE_SMOOTHING = 0.5  # generate_manipspace.py --noise_smoothing
MARKOV_MIN_NORM = 0.4  # generate_manipspace.py --min_norm
STITCH_CELLS = 4  # a stitch episode walks to a cell this many BFS steps from its start
STEPS = [(-1, 0), (0, -1), (1, 0), (0, 1)]  # maze grid neighbours
# cube envs with several cubes draw, per episode, the probability that a new target stacks cubes
STACK_PROBABILITY_RANGE = {"cube-double-v0": (0.0, 0.25), "cube-triple-v0": (0.05, 0.35), "cube-quadruple-v0": (0.1, 0.5)}


@dataclass(frozen=True)
class Recipe:
    """How OGBench collected one dataset (data_gen_scripts/commands.sh)."""

    env_name: str  # the goal-conditioned env that collects it, e.g. pointmaze-medium-v0
    kind: str  # navigate | stitch (point mazes), play | noisy (manipulation)
    episodes: int  # training episodes; the val file has a tenth as many more
    episode_length: int  # env steps (file rows) per episode; the loader keeps episode_length - 1 transitions
    action_noise: float  # maze: std of the Gaussian action noise; play: plan noise; noisy: max per-episode std
    p_random_action: float = 0.0  # noisy: probability of a uniformly random action


def _recipes() -> dict[str, Recipe]:
    recipes = {}
    for maze in ("medium", "large", "giant", "teleport"):
        navigate = (500, 2001) if maze == "giant" else (1000, 1001)
        recipes[f"pointmaze-{maze}-navigate-v0"] = Recipe(f"pointmaze-{maze}-v0", "navigate", *navigate, 0.5)
        recipes[f"pointmaze-{maze}-stitch-v0"] = Recipe(f"pointmaze-{maze}-v0", "stitch", 5000, 201, 0.5)
    manipulation = {"cube-single": 1000, "cube-double": 1000, "cube-triple": 3000, "cube-quadruple": 5000, "scene": 1000,
                    "puzzle-3x3": 1000, "puzzle-4x4": 1000, "puzzle-4x5": 3000, "puzzle-4x6": 5000}  # fmt: skip
    for env, episodes in manipulation.items():
        recipes[f"{env}-play-v0"] = Recipe(f"{env}-v0", "play", episodes, 1001, 0.1)
        p_random = 0.2 if env.startswith("puzzle") else 0.1
        recipes[f"{env}-noisy-v0"] = Recipe(f"{env}-v0", "noisy", episodes, 1001, 0.1, p_random)
    return recipes


RECIPES = _recipes()


def file_name(name: str) -> str:
    """The dataset file an OGBench id reads: singletask and oraclerep ids share their goal-conditioned file.

    cube-single-play-singletask-task2-v0 -> cube-single-play-v0 (as ogbench.utils.make_env_and_datasets).
    """
    words = name.split("-")
    if "singletask" in words:
        words = words[: words.index("singletask")] + words[-1:]
    return "-".join(word for word in words if word != "oraclerep")


def recipe_for(name: str) -> Recipe:
    """The recipe of an OGBench id, or one sentence on why it cannot be generated here."""
    base = file_name(name)
    if base in RECIPES:
        return RECIPES[base]
    if base.startswith("visual-"):
        reason = "visual datasets render every frame and are not generated here: use its state-based twin"
    elif base.startswith(("antmaze", "humanoidmaze", "antsoccer")):
        reason = "it was collected by OGBench's trained SAC experts, whose weights are not in the pip package"
    else:
        close = difflib.get_close_matches(base, RECIPES, n=3)
        reason = f"it is not an OGBench dataset this suite knows ({', '.join(close) or 'see --help'})"
    raise DatasetError(f"Cannot generate OGBench dataset '{name}': {reason}.")


def dataset_paths(name: str, directory: str | os.PathLike = DEFAULT_DIRECTORY) -> tuple[Path, Path]:
    """(train, val) file paths of an id in `directory`, as OGBench's loader names them."""
    train = Path(directory).expanduser() / f"{file_name(name)}.npz"
    return train, train.with_name(f"{file_name(name)}-val.npz")


def local_build_info(path: str | os.PathLike) -> dict | None:
    """The build record of a locally generated file (seed, episodes, transitions, ...); None for any other file."""
    with np.load(path) as file:
        return json.loads(str(file[BUILD_KEY])) if BUILD_KEY in file.files else None


# Behaviours: how one episode starts, how each action is chosen and what happens after each step.


class MazeWaypoints:
    """generate_locomaze.py for the point: action = unit vector to the next BFS waypoint + N(0, noise)."""

    def __init__(self, env: gym.Env, recipe: Recipe):
        self.env, self.maze, self.recipe = env.unwrapped, env.unwrapped.maze_map, recipe
        self.free_cells = [(int(i), int(j)) for i, j in zip(*np.nonzero(self.maze == 0))]  # row by row
        # goals are drawn from junctions, corners and dead ends: every free cell but straight corridor cells
        self.goal_cells = [cell for cell in self.free_cells if not self._in_corridor(*cell)]

    def _in_corridor(self, i: int, j: int) -> bool:
        vertical = self.maze[i - 1, j] + self.maze[i + 1, j]  # walls above and below: 0, 1 or 2
        horizontal = self.maze[i, j - 1] + self.maze[i, j + 1]
        return bool((vertical == 0 and horizontal == 2) or (horizontal == 0 and vertical == 2))

    def _cells_at_distance(self, start: tuple[int, int], distance: int) -> list[tuple[int, int]]:
        """Free cells exactly `distance` grid steps from `start` (breadth-first search)."""
        depth, frontier = {start: 0}, [start]
        while frontier:
            i, j = frontier.pop(0)
            for di, dj in STEPS:
                cell = (i + di, j + dj)
                inside = 0 <= cell[0] < self.maze.shape[0] and 0 <= cell[1] < self.maze.shape[1]
                if inside and self.maze[cell] == 0 and cell not in depth:
                    depth[cell] = depth[(i, j)] + 1
                    frontier.append(cell)
        return [cell for cell, d in depth.items() if d == distance]

    def start_episode(self, env: gym.Env, seed: int | None):
        start = self.free_cells[np.random.randint(len(self.free_cells))]
        if self.recipe.kind == "navigate":
            goal = self.goal_cells[np.random.randint(len(self.goal_cells))]
        else:  # stitch: a short walk; the agent stays at its goal once there
            near = self._cells_at_distance(start, STITCH_CELLS)
            goal = near[np.random.randint(len(near))] if near else start
        return env.reset(seed=seed, options=dict(task_info=dict(init_ij=start, goal_ij=goal)))

    def action(self, observation: np.ndarray, info: dict) -> np.ndarray:
        position = self.env.get_xy()
        waypoint, _ = self.env.get_oracle_subgoal(position, self.env.cur_goal_xy)
        direction = (waypoint - position) / (np.linalg.norm(waypoint - position) + 1e-6)
        return np.clip(direction + np.random.normal(0, self.recipe.action_noise, direction.shape), -1, 1)

    def after_step(self, info: dict) -> None:
        if self.recipe.kind == "navigate" and info["success"]:
            goal = self.goal_cells[np.random.randint(len(self.goal_cells))]
            self.env.set_goal(goal)

    def keep(self, qpos: np.ndarray) -> bool:
        return True


def make_oracles(env: gym.Env, recipe: Recipe) -> dict:
    """OGBench's oracles for one env, by the task name the env reports (info['privileged/target_task'])."""
    family = recipe.env_name.split("-")[0]
    if recipe.kind == "play":  # open-loop plans through noisy keyframes
        common = dict(env=env, noise=recipe.action_noise, noise_smoothing=PLAN_NOISE_SMOOTHING)
        cube, button, drawer, window = CubePlanOracle, ButtonPlanOracle, DrawerPlanOracle, WindowPlanOracle
        cube_kwargs = {}
    else:  # closed-loop Markov oracles
        common = dict(env=env, min_norm=MARKOV_MIN_NORM)
        cube, button, drawer, window = CubeMarkovOracle, ButtonMarkovOracle, DrawerMarkovOracle, WindowMarkovOracle
        cube_kwargs = dict(max_step=100) if family == "scene" else {}
    if family == "cube":
        return {"cube": cube(**common)}
    if family == "puzzle":
        return {"button": button(gripper_always_closed=True, **common)}
    return {"cube": cube(**cube_kwargs, **common), "button": button(**common),
            "drawer": drawer(**common), "window": window(**common)}  # fmt: skip


class ManipulationOracles:
    """generate_manipspace.py: OGBench's plan ('play') or Markov ('noisy') oracles, a new target when one is done."""

    def __init__(self, env: gym.Env, recipe: Recipe):
        self.env, self.recipe, self.oracles = env, recipe, make_oracles(env, recipe)
        self.stack_range = STACK_PROBABILITY_RANGE.get(recipe.env_name)

    def start_episode(self, env: gym.Env, seed: int | None):
        observation, info = env.reset(seed=seed)
        if self.stack_range is not None:  # several cubes: how often a new target stacks one on another
            self.p_stack = np.random.uniform(*self.stack_range)
        else:  # one cube has nothing to stack on; scene and puzzle keep set_new_target's default
            self.p_stack = 0.0 if self.recipe.env_name == "cube-single-v0" else 0.5
        if self.recipe.kind == "noisy":
            self.noise_scale = np.random.uniform(0, self.recipe.action_noise)
        self.oracle = self.oracles[info["privileged/target_task"]]
        self.oracle.reset(observation, info)
        return observation, info

    def action(self, observation: np.ndarray, info: dict) -> np.ndarray:
        if np.random.rand() < self.recipe.p_random_action:
            return np.clip(self.env.action_space.sample(), -1, 1)
        action = np.array(self.oracle.select_action(observation, info))
        if self.recipe.kind == "noisy":  # per-dimension scale: xyz, yaw x3, gripper x10 (as OGBench)
            action = action + np.random.normal(0, self.noise_scale * np.array([1, 1, 1, 3, 10]), action.shape)
        return np.clip(action, -1, 1)

    def after_step(self, info: dict) -> None:
        if self.oracle.done:
            observation, target_info = self.env.unwrapped.set_new_target(p_stack=self.p_stack)
            self.oracle = self.oracles[target_info["privileged/target_task"]]
            self.oracle.reset(observation, target_info)

    def keep(self, qpos: np.ndarray) -> bool:
        """Scene only: redo an episode whose cube left the camera's view (far right, or far left outside the drawer)."""
        if not self.recipe.env_name.startswith("scene"):
            return True
        cube = qpos[:, 14:17]
        too_far_right = (cube[:, 1] >= 0.29).any()
        left_outside_drawer = ((cube[:, 1] <= -0.3) & ((cube[:, 2] < 0.06) | (cube[:, 2] > 0.08))).any()
        return not (too_far_right or left_outside_drawer)


def roll_out(env: gym.Env, behaviour, seed: int | None) -> dict[str, np.ndarray]:
    """One episode in OGBench's row layout: row t holds s_t, a_t, done_t and the simulator state of s_t."""
    observation, info = behaviour.start_episode(env, seed)
    rows, done = defaultdict(list), False
    while not done:
        action = behaviour.action(observation, info)
        next_observation, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        behaviour.after_step(info)
        rows["observations"].append(observation)
        rows["actions"].append(action)
        rows["terminals"].append(done)
        rows["qpos"].append(info["prev_qpos"])  # the state before the step: the state of `observation`
        rows["qvel"].append(info["prev_qvel"])
        if "prev_button_states" in info:
            rows["button_states"].append(info["prev_button_states"])
        observation = next_observation
    dtypes = {"terminals": bool, "button_states": np.int64}
    return {key: np.asarray(values, dtype=dtypes.get(key, np.float32)) for key, values in rows.items()}


@contextmanager
def seeded_global_numpy(seed: int):
    """OGBench's envs and oracles draw from the global np.random: seed it, and give the caller its state back."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def write_npz_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed to a temporary file beside `path`, then rename: never a half-written dataset."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")  # unique per writer
    try:
        with open(temporary, "xb") as file:  # (not mkstemp: the file gets the user's umask, as a download would)
            np.savez_compressed(file, **arrays)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def collect(recipe: Recipe, episodes: int, episode_length: int, seed: int, progress: bool = True, label: str = "") -> list:
    """`episodes` episodes of `episode_length` steps in OGBench's row layout, seeded."""
    env_kwargs = dict(terminate_at_goal=False, max_episode_steps=episode_length)  # goals never end an episode
    if recipe.kind in ("play", "noisy"):
        env_kwargs["mode"] = "data_collection"  # random scenes and set_new_target, not the five evaluation tasks
    env = gym.make(recipe.env_name, **env_kwargs)
    env.action_space.seed(seed)
    collected = []
    with seeded_global_numpy(seed), tqdm(total=episodes, desc=label, unit="episode", disable=not progress) as bar:
        behaviour = (MazeWaypoints if recipe.kind in ("navigate", "stitch") else ManipulationOracles)(env, recipe)
        env_seed = seed  # seeds the env's own generator on the first reset; later resets continue it
        while len(collected) < episodes:
            rows = roll_out(env, behaviour, env_seed)
            env_seed = None
            if behaviour.keep(rows["qpos"]):
                collected.append(rows)
                bar.update()
    env.close()
    return collected


def generate(
    name: str, directory: str | os.PathLike = DEFAULT_DIRECTORY, episodes: int | None = None,
    episode_length: int | None = None, seed: int = 0, progress: bool = True,
) -> Path:  # fmt: skip
    """Collect an OGBench dataset as OGBench did and write `<file>.npz` and `<file>-val.npz`; returns the first.

    `name` may be any id that reads the file (goal-conditioned, singletask, oraclerep). `episodes` and
    `episode_length` default to OGBench's (commands.sh). As in OGBench, the val file holds the episodes
    collected after the training ones, a tenth as many (here at least one). Replaces existing files atomically.
    """
    recipe = recipe_for(name)
    episodes = recipe.episodes if episodes is None else episodes
    episode_length = recipe.episode_length if episode_length is None else episode_length
    if episodes < 1 or episode_length < 2:
        raise DatasetError(
            f"An OGBench build needs episodes >= 1 and episode_length >= 2 (the last step of an episode has no "
            f"next state), got {episodes} and {episode_length}: pass larger --episodes / --episode-length."
        )
    train_path, val_path = dataset_paths(name, directory)
    train_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    collected = collect(recipe, episodes + max(1, episodes // 10), episode_length, seed, progress, file_name(name))
    seconds = time.time() - started
    for split, path, part in (("val", val_path, collected[episodes:]), ("train", train_path, collected[:episodes])):
        arrays = {key: np.concatenate([rows[key] for rows in part]) for key in part[0]}
        record = dict(
            builder="cleanoffrl algorithms/ogbench_suite.py: a LOCAL build, not OGBench's file", dataset=file_name(name),
            split=split, seed=seed, episodes=len(part), episode_length=episode_length, rows=len(arrays["terminals"]),
            transitions=len(part) * (episode_length - 1), build_seconds=round(seconds, 2),
            ogbench_version=OGBENCH_VERSION, recipe=asdict(recipe),
        )  # fmt: skip
        write_npz_atomically(path, arrays | {BUILD_KEY: np.array(json.dumps(record))})  # train last: never without val
    return train_path


if __name__ == "__main__":
    import tyro

    @dataclass
    class Args:
        """Generate an OGBench dataset locally with OGBench's own envs and oracles (no download), or list them."""

        name: tyro.conf.Positional[str | None] = None
        """OGBench id, e.g. pointmaze-medium-navigate-v0; a singletask id builds the file it reads (default: list)"""
        episodes: int | None = None
        """training episodes (default: OGBench's, e.g. 1000); the -val file gets a tenth as many, at least one"""
        episode_length: int | None = None
        """env steps (file rows) per episode (default: OGBench's, e.g. 1001); the loader makes one fewer transitions"""
        seed: int = 0
        """seed of every random draw of the build: the same seed gives the same arrays"""
        directory: str = DEFAULT_DIRECTORY
        """where to write <name>.npz and <name>-val.npz (default: OGBench's own dataset folder)"""

    args = tyro.cli(Args)
    if args.name is None:
        for dataset, recipe in RECIPES.items():
            train_path = dataset_paths(dataset, args.directory)[0]
            built = train_path.exists() and ("local build" if local_build_info(train_path) else "official file")
            print(f"{dataset:30s} {recipe.episodes:5d} x {recipe.episode_length} steps   {built or '-'}")
    else:
        start = time.time()
        generate(args.name, args.directory, args.episodes, args.episode_length, args.seed)
        seconds, paths = time.time() - start, dataset_paths(args.name, args.directory)
        train, val = (local_build_info(path) for path in paths)
        megabytes = sum(path.stat().st_size for path in paths) / 1e6
        steps_per_second = (train["rows"] + val["rows"]) / train["build_seconds"]
        print(f"{paths[0]}: {train['transitions']} training transitions ({train['episodes']} episodes x "
              f"{train['episode_length'] - 1}) and {val['transitions']} validation, built in {seconds:.1f}s "
              f"({steps_per_second:.0f} env steps/s), {megabytes:.1f} MB (both files)")  # fmt: skip
