"""OGBench's datasets as the scripts' datasets: `--dataset ogbench/<OGBench name>`, read by OGBench's own loader.

Lives here: the `ogbench/*` ids (data.py finds this module by name through LOCAL_BUILDERS), which file an id reads
(OGBench's official file where the machine has it or can download it, otherwise one generated here by
ogbench_suite.py, and the log says which, with its size), `OGBenchDataset` (what the scripts use of a
MinariDataset: id, spaces, total_steps, iterate_episodes, storage.metadata, recover_environment), and the
mapping of OGBench's arrays onto our episodes (`episodes_from_arrays`).
Lives elsewhere: how a local file is generated (ogbench_suite.py, imported here by name and only to build one),
the checks and tensors every dataset gets (data.py), the evaluation loop (evaluation.py: it calls
recover_environment, which makes OGBench's single-task env, so `eval/success_rate` is OGBench's success).

Bootstrapping. In OGBench's arrays `terminals` marks every trajectory's last transition: a time limit, not a
terminal state. Single-task ids add `rewards` and `masks` (0 where the task is solved: the single-task env ends
the episode there). So a transition with mask 0 is our terminal (no bootstrapping through a success) and a
trajectory's end is a time-limit end (bootstrapped). Each trajectory is cut after every terminal transition,
so the scripts' episodes end at a success or at the time limit, and everything that sums over an episode
(returns-to-go, discounted returns, Decision Transformer contexts) stops where the single-task MDP stops.
Goal-conditioned ids (no `singletask` in the name) have no rewards: their episodes are OGBench's trajectories
with zero rewards, and `OGBenchDataset.train` / `.val` keep OGBench's dicts for goal-conditioned scripts.
"""

from __future__ import annotations

import importlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np

import data

NAMESPACE = "ogbench"
LOCAL_SUITE = ()  # data.is_local is False for ogbench/* ids: they are not Minari datasets, load_dataset() loads them
DIRECTORY_VARIABLE = "CLEANOFFRL_OGBENCH_DIR"  # where the files are read and built; default OGBench's ~/.ogbench/data
LOCAL_DIVISOR = 10  # a first local build has a tenth of OGBench's episodes (100 x 1,000 or 500 x 200): minutes on one core
DOWNLOAD_TIMEOUT_S = 10  # no answer in this long: no network, build locally


def local_episodes(recipe) -> int:
    """Episodes of the local build made on first use: a tenth of OGBench's, at least one."""
    return max(1, recipe.episodes // LOCAL_DIVISOR)


def directory() -> Path:
    return Path(os.environ.get(DIRECTORY_VARIABLE) or "~/.ogbench/data").expanduser()


def ogbench_name(dataset_id: str) -> str:
    """ogbench/cube-single-play-singletask-task2-v0 -> cube-single-play-singletask-task2-v0."""
    return dataset_id.split("/", 1)[1]


def check_local_id(dataset_id: str) -> None:
    """data.load_dataset calls this for a namespace close to `ogbench` (a typo): name the right form."""
    if dataset_id.split("/")[0] != NAMESPACE or dataset_id.count("/") != 1:
        raise data.DatasetError(
            f"Unknown dataset id '{dataset_id}': OGBench ids are ogbench/<OGBench name>, e.g. "
            "ogbench/cube-single-play-singletask-task2-v0 or ogbench/pointmaze-medium-navigate-singletask-v0."
        )


def suite():
    """ogbench_suite.py, the generator: imported by name, only when a file has to be built or described."""
    return importlib.import_module("ogbench_suite")


def download_official(name: str, folder: Path) -> str | None:
    """OGBench's own download of the file `name` reads; None when it worked, else why not (one line)."""
    import ogbench

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        ogbench.download_datasets([suite().file_name(name)], str(folder))
        return None
    except Exception as error:  # noqa: BLE001 - urllib raises many types; the message carries the cause
        for path in suite().dataset_paths(name, folder):
            Path(f"{path}.tmp").unlink(missing_ok=True)
        return f"{type(error).__name__}: {error}"
    finally:
        socket.setdefaulttimeout(previous)


def dataset_file(dataset_id: str) -> tuple[Path, str]:
    """(training file, one line saying what it is): the official file, downloaded if need be, else a local build."""
    name, folder = ogbench_name(dataset_id), directory()
    train, val = suite().dataset_paths(name, folder)
    if not (train.exists() and val.exists()):
        why = download_official(name, folder)
        if why is not None:
            recipe = suite().recipe_for(name)  # refuses (one sentence) what cannot be generated here
            print(f"{dataset_id}: OGBench's file {train.name} is not in {folder} and could not be downloaded ({why}); "
                  f"building a LOCAL version with OGBench's envs and oracles: {local_episodes(recipe)} episodes x "
                  f"{recipe.episode_length - 1} transitions (OGBench's: {recipe.episodes}). The full size: "
                  f"`python algorithms/ogbench_suite.py {suite().file_name(name)} --directory {folder}`.")  # fmt: skip
            suite().generate(name, folder, episodes=local_episodes(recipe))
    info = suite().local_build_info(train)
    if info is None:
        return train, f"OGBench's official file {train}"
    return train, (f"a LOCAL build by algorithms/ogbench_suite.py, not OGBench's file: {info['episodes']} episodes, "
                   f"{info['transitions']:,} transitions, seed {info['seed']} ({train})")  # fmt: skip


@dataclass
class Episode:
    """One episode as the scripts read it (the fields of Minari's EpisodeData they use)."""

    id: int
    observations: np.ndarray  # (T + 1, obs_dim): the last is the state the final action led to
    actions: np.ndarray  # (T, act_dim)
    rewards: np.ndarray  # (T,)
    terminations: np.ndarray  # (T,) bool: a success (mask 0); never a time limit
    truncations: np.ndarray  # (T,) bool: the trajectory's time limit, at its last step only


def episodes_from_arrays(arrays: dict[str, np.ndarray]) -> list[Episode]:
    """OGBench's regular (non-compact) dataset dict as episodes, cut after each terminal transition (mask 0) and at
    each trajectory end (`terminals`, a time limit). Without rewards/masks (goal-conditioned ids): zero rewards,
    no terminal, one episode per trajectory."""
    count = len(arrays["actions"])
    rewards = np.asarray(arrays.get("rewards", np.zeros(count)), np.float32)
    terminal = np.asarray(arrays.get("masks", np.ones(count)), np.float32) == 0
    time_limit = np.asarray(arrays["terminals"], bool) & ~terminal
    last_steps = np.flatnonzero(terminal | time_limit | (np.arange(count) == count - 1))
    episodes, first = [], 0
    for last in last_steps:
        steps = slice(first, last + 1)
        observations = np.concatenate([arrays["observations"][steps], arrays["next_observations"][last : last + 1]])
        episodes.append(Episode(len(episodes), observations, arrays["actions"][steps], rewards[steps],
                                terminal[steps], time_limit[steps]))  # fmt: skip
        first = last + 1
    return episodes


class OGBenchDataset:
    """An OGBench dataset with the interface the scripts use of a MinariDataset; built by load_dataset()."""

    def __init__(self, dataset_id: str, env: gym.Env, train: dict, val: dict, source: str, path: Path):
        self.id, self.train, self.val, self.source = dataset_id, train, val, source
        self.action_space, self.observation_space = env.action_space, env.observation_space
        self.episodes = episodes_from_arrays(train)
        self.total_steps, self.total_episodes = len(train["actions"]), len(self.episodes)
        self.storage = SimpleNamespace(metadata={"dataset_id": dataset_id, "ogbench_source": source, "data_path": str(path)})
        env.close()

    def iterate_episodes(self):
        yield from self.episodes

    def recover_environment(self, eval_env: bool = True, render_mode: str | None = None) -> gym.Env:
        """OGBench's env of this id (single-task ids: it ends an episode on success; info['success'] is OGBench's)."""
        import ogbench

        kwargs = {"render_mode": render_mode}  # None too: OGBench's envs default to rgb_array, which would render every episode
        return ogbench.make_env_and_datasets(ogbench_name(self.id), env_only=True, **kwargs)


_loaded: dict[tuple, OGBenchDataset] = {}  # (id, file, its mtime) -> dataset: a run's second load costs nothing


def load_dataset(dataset_id: str) -> OGBenchDataset:
    """`ogbench/<name>` through ogbench.make_env_and_datasets(name, dataset_path=...): data.load_dataset calls this."""
    import ogbench

    check_local_id(dataset_id)
    path, source = dataset_file(dataset_id)
    key = (dataset_id, str(path), path.stat().st_mtime_ns)
    if key in _loaded:
        return _loaded[key]
    print(f"{dataset_id}: {source}")
    try:
        env, train, val = ogbench.make_env_and_datasets(ogbench_name(dataset_id), dataset_path=str(path))
    except Exception as error:  # noqa: BLE001 - a wrong name (gymnasium) or a bad file (numpy): one sentence
        raise data.DatasetError(
            f"OGBench could not load '{dataset_id}' from {path} ({type(error).__name__}: {error}): check the name "
            f"(python algorithms/ogbench_suite.py lists them), or delete the file to rebuild it."
        ) from error
    dataset = OGBenchDataset(dataset_id, env, train, val, source, path)
    data.check_spaces(dataset)
    _loaded[key] = dataset
    return dataset
