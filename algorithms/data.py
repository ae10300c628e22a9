"""Datasets: load any dataset id, check it, and hold it as tensors on the training device.

Lives here: loading (any Minari id; the local suite's ids are built on first use by their builder module, found
through LOCAL_BUILDERS), the load checks (the id, spaces, unreadable files, empty episodes, NaN/inf, actions
outside the box, constant observations, overflowing rewards), `flatten_observation`,
`Transitions` (every transition as tensors, sampling), train/validation splits, subsampling and filtering by
episode, the observation `Normalizer` and the reward transforms.
Lives elsewhere: evaluation in the dataset's env (evaluation.py), the training loop's plumbing (training.py),
checkpoints (checkpoints.py), the online phase of fine-tuning (finetuning.py), and how the local datasets are made
(local_suite.py, which imports this module, never the reverse).

Remote ids (`mujoco/hopper/medium-v0`, `D4RL/antmaze/large-play-v1`, ...) go through
`minari.load_dataset(id, download=True)`. The local suite (`pendulum/*`, `pointmaze/*`) is built on first use
by local_suite.py's scripted behaviour policies, written as a real Minari dataset, then loaded through that very
same call; `ogbench/*` ids are not Minari's: ogbench_data.py loads them. Run `python algorithms/local_suite.py --help` to list or prebuild the suite.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import io
import math
import re
import warnings
from dataclasses import dataclass, fields, replace
from types import ModuleType
from typing import Callable

import gymnasium as gym
import minari
import numpy as np
import torch

import checks

# ----------------------------------------------------------------------------------------------
# Errors: one sentence naming what was wrong and what to do.


class DatasetError(checks.UserError):
    """A dataset id, file or content a user can fix."""


# ----------------------------------------------------------------------------------------------
# Loading any Minari id.

# Well-known remote ids, only to suggest close matches when an id is mistyped and there is no network.
KNOWN_REMOTE = tuple(
    [f"mujoco/{env}/{kind}-v0" for env in ("halfcheetah", "hopper", "walker2d", "ant", "humanoid", "swimmer",
     "pusher", "reacher", "invertedpendulum", "inverteddoublependulum") for kind in ("simple", "medium", "expert")]
    + [f"D4RL/antmaze/{m}-v1" for m in ("umaze", "umaze-diverse", "medium-play", "medium-diverse", "large-play", "large-diverse")]
    + [f"D4RL/pointmaze/{m}-v2" for m in ("umaze", "umaze-dense", "medium", "medium-dense", "large", "large-dense")]
    + [f"D4RL/kitchen/{m}-v2" for m in ("complete", "partial", "mixed")]
    + [f"D4RL/{env}/{kind}-v2" for env in ("pen", "door", "hammer", "relocate") for kind in ("human", "cloned", "expert")]
)  # fmt: skip


def register_robotics_envs() -> None:
    """PointMaze/AntMaze envs live in gymnasium_robotics, whose import prints an Adroit notice."""
    with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import gymnasium_robotics

        gym.register_envs(gymnasium_robotics)



# The namespaces whose ids are made on this machine, and the module that makes them. The builder is imported
# here only (by name, when such an id is asked for): it depends on this module, never the other way round.
LOCAL_BUILDERS = {"pendulum": "local_suite", "pointmaze": "local_suite", "ogbench": "ogbench_data"}


def local_builder(dataset_id: str) -> ModuleType | None:
    """The module that builds `dataset_id`'s namespace (LOCAL_BUILDERS), or None for a remote (Minari) id."""
    module = LOCAL_BUILDERS.get(dataset_id.split("/")[0])
    return importlib.import_module(module) if module else None


def local_ids() -> tuple[str, ...]:
    """Every id the local builders make."""
    return tuple(i for module in dict.fromkeys(LOCAL_BUILDERS.values()) for i in importlib.import_module(module).LOCAL_SUITE)


def is_local(dataset_id: str) -> bool:
    """Only the local suite's own ids are built here; any other id, whatever its namespace, is Minari's."""
    builder = local_builder(dataset_id)
    return builder is not None and dataset_id in builder.LOCAL_SUITE


def load_dataset(dataset_id: str) -> minari.MinariDataset:
    """A Minari dataset by id: the local suite is built on first use, remote ids are downloaded."""
    if not re.fullmatch(r"[\w-]+(/[\w-]+)*-v\d+", dataset_id):  # Minari's (namespace/)name-vN: never a path, nor ".."
        raise DatasetError(f"--dataset '{dataset_id}' is not a dataset id: ids are namespace/name-vN, e.g. pendulum/medium-v0.")
    if hasattr(local_builder(dataset_id), "load_dataset"):  # ogbench/*: not Minari's format, its module loads it
        return local_builder(dataset_id).load_dataset(dataset_id)
    # a local namespace, or a typo of one (pendulm/...): its builder names the close ids, before any server retries
    near = difflib.get_close_matches(dataset_id.split("/")[0], list(LOCAL_BUILDERS), n=1, cutoff=0.75)
    builder = importlib.import_module(LOCAL_BUILDERS[near[0]]) if near else None
    if is_local(dataset_id):
        path = minari.storage.get_dataset_path(dataset_id)
        if path.exists() and not (path / "data" / ".complete").exists():
            raise DatasetError(
                f"Dataset '{dataset_id}' at {path} is half-written or corrupt: delete that folder "
                f"(or run `python algorithms/local_suite.py --force {dataset_id}`) and it is rebuilt on next use."
            )
        if not path.exists():
            print(f"building local dataset {dataset_id} ({builder.DEFAULT_TRANSITIONS} transitions) into {path} ...")
            builder.build_local_dataset(dataset_id)
        register_robotics_envs()
    elif builder is not None and not minari.storage.get_dataset_path(dataset_id).exists():
        builder.check_local_id(dataset_id)  # a typo of a local id, not on disk: say so now, not after 25 s of retries
    try:
        dataset = minari.load_dataset(dataset_id, download=True)
    except DatasetError:
        raise
    except Exception as error:  # noqa: BLE001 - minari raises many types; the message carries the cause
        if is_local(dataset_id) or (minari.storage.get_dataset_path(dataset_id) / "data").exists():
            raise unreadable(dataset_id, error) from error
        candidates = dict.fromkeys(local_ids() + KNOWN_REMOTE + tuple(minari.list_local_datasets()))
        close = difflib.get_close_matches(dataset_id, list(candidates), n=3, cutoff=0.6)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise DatasetError(
            f"Could not load dataset '{dataset_id}' from the Minari servers ({type(error).__name__}: {error}); "
            f"check the id and your network.{hint} Without a network, use the local suite: {', '.join(local_ids())}."
        ) from error
    check_spaces(dataset)
    if dataset.total_steps == 0:
        raise DatasetError(f"Dataset '{dataset_id}' is empty (0 transitions): rebuild or re-download it.")
    register_robotics_envs()
    return dataset


def unreadable(dataset_id: str, error: Exception) -> DatasetError:
    path = minari.storage.get_dataset_path(dataset_id)
    return DatasetError(
        f"Dataset '{dataset_id}' at {path} could not be read ({type(error).__name__}: {error}); "
        "it is corrupt or half-written: delete that folder and run again to rebuild or re-download it."
    )


def check_spaces(dataset: minari.MinariDataset) -> None:
    """Refuse, in one sentence each, what the scripts cannot learn from: non-Box actions, infinite action
    bounds (the actors' tanh heads map onto the box), image or non-Box observations."""
    name, actions = dataset.id, dataset.action_space
    if not isinstance(actions, gym.spaces.Box) or len(actions.shape) != 1:
        raise DatasetError(
            f"Dataset '{name}' has a {actions} action space: these algorithms handle continuous actions only "
            "(a one-dimensional Box)."
        )
    if not (np.isfinite(actions.low).all() and np.isfinite(actions.high).all()):
        raise DatasetError(
            f"Dataset '{name}' has infinite action bounds ({actions}): the policies squash their output into the "
            "action box, so the box must be finite; recreate the dataset with the environment's real bounds "
            "(e.g. Box(-1, 1)), or rescale the actions into one."
        )
    for key, space in _observation_leaves(dataset.observation_space):
        where = f"observation '{key}'" if key else "observation"
        if not isinstance(space, gym.spaces.Box):
            raise DatasetError(f"Dataset '{name}' has a {space} {where}: these algorithms take Box (vector) observations only.")
        if len(space.shape) > 1:
            raise DatasetError(
                f"Dataset '{name}' has image observations ({where} of shape {space.shape}): these algorithms take "
                "state vectors; use the dataset's state-based version or add an image encoder."
            )


def _observation_leaves(space: gym.Space, prefix: str = "") -> list[tuple[str, gym.Space]]:
    """(key path, space) of every piece of an observation space, in flatten_observation's order."""
    if isinstance(space, gym.spaces.Dict):
        return [leaf for key in _ordered_keys(space.spaces) for leaf in _observation_leaves(space[key], f"{prefix}{key}/")]
    return [(prefix.rstrip("/"), space)]


GOAL_KEYS = ("observation", "achieved_goal", "desired_goal")


def _ordered_keys(mapping) -> list[str]:
    """observation, achieved_goal, desired_goal first (gymnasium-robotics' goal dicts), then the rest sorted."""
    return [k for k in GOAL_KEYS if k in mapping] + sorted(k for k in mapping if k not in GOAL_KEYS)


def flatten_observation(observation) -> np.ndarray:
    """Any observation as one float32 vector (or a batch/sequence of them: the last axis is concatenated).

    Dicts, nested or not, are concatenated in a fixed order: observation, achieved_goal, desired_goal, then
    any other keys sorted; nested dicts (Kitchen's goal per task) the same way, keys sorted. So AntMaze's
    policy sees the ant's x, y (only in achieved_goal: its `observation` starts at the torso's height) and
    the goal, and PointMaze's sees [x, y, vx, vy, x, y, goal_x, goal_y]. README's Datasets section has a table.
    """
    if isinstance(observation, dict):
        return np.concatenate([flatten_observation(observation[k]) for k in _ordered_keys(observation)], -1)
    return np.asarray(observation, dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# Transitions: the whole dataset as tensors on the training device.


@dataclass
class Transitions:
    """Flat transitions, episodes contiguous and in order. Index i is one (s, a, r, s', done)."""

    observations: torch.Tensor  # (N, obs_dim) float32
    actions: torch.Tensor  # (N, act_dim) float32
    rewards: torch.Tensor  # (N,) float32
    next_observations: torch.Tensor  # (N, obs_dim) float32
    terminals: torch.Tensor  # (N,) float32: 1 on a true termination, 0 on time-limit truncation
    next_actions: torch.Tensor  # (N, act_dim): a' for SARSA targets (the last step repeats a)
    next_action_known: torch.Tensor  # (N,) float32: 0 at a time-limit end, where no a' was taken (SARSA masks it)
    episode_starts: torch.Tensor  # (N,) bool
    episode_ends: torch.Tensor  # (N,) bool: last step (terminated or truncated)
    returns_to_go: torch.Tensor  # (N,) float32: undiscounted sum of rewards from t to the episode end (Cal-QL: discounted)
    episode_returns: torch.Tensor  # (N,) float32: the return of the episode each transition belongs to
    episode_ids: torch.Tensor  # (N,) int64
    timesteps: torch.Tensor  # (N,) int64: t within the episode

    def __len__(self) -> int:
        return self.rewards.shape[0]

    @property
    def num_episodes(self) -> int:
        return int(torch.unique(self.episode_ids).numel())

    def index(self, indices: torch.Tensor) -> Transitions:
        return Transitions(**{f.name: getattr(self, f.name)[indices] for f in fields(self)})

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Transitions:
        """A uniform batch; indices drawn on the data's device, no host round trip."""
        if batch_size > len(self):  # a shape, not a tensor: no host sync
            raise checks.UserError(f"--batch-size {batch_size} is larger than the {len(self)} training transitions: pass a smaller one.")
        return self.index(torch.randint(len(self), (batch_size,), device=self.rewards.device, generator=generator))

    def to(self, device: torch.device | str) -> Transitions:
        return Transitions(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def with_observations(self, transform: Callable[[torch.Tensor], torch.Tensor]) -> Transitions:
        return replace(self, observations=transform(self.observations), next_observations=transform(self.next_observations))


def to_transitions(dataset: minari.MinariDataset, device: torch.device | str = "cpu") -> Transitions:
    """Flatten a Minari dataset's episodes into Transitions on `device`."""
    columns: dict[str, list] = {f.name: [] for f in fields(Transitions)}
    empty = 0
    for episode_id, episode in enumerate(_read_episodes(dataset)):
        if len(episode.rewards) == 0:  # an episode that ended before its first step: nothing to learn from
            empty += 1
            continue
        actions = np.asarray(episode.actions, dtype=np.float32).reshape(len(episode.rewards), -1)
        episode_arrays = episode_columns(episode_id, flatten_observation(episode.observations), actions, episode.rewards, episode.terminations)
        for name, array in episode_arrays.items():
            columns[name].append(array)
    if not columns["rewards"]:
        raise DatasetError(f"Dataset '{dataset.id}' has no transitions: rebuild or re-download it.")
    if empty:
        warnings.warn(f"Dataset '{dataset.id}': {empty} of its episodes have no step; they are left out.", DataWarning, stacklevel=2)
    arrays = {k: np.concatenate(v) for k, v in columns.items()}
    check_values(dataset, arrays)
    return Transitions(**{k: torch.from_numpy(v).to(device) for k, v in arrays.items()})


def _read_episodes(dataset: minari.MinariDataset):
    try:  # the file is read here, not on load: a truncated or corrupt one fails now, named with the fix
        yield from dataset.iterate_episodes()
    except Exception as error:  # noqa: BLE001 - h5py and minari raise many types; the message carries the cause
        raise unreadable(dataset.id, error) from error


def episode_columns(episode_id: int, observations: np.ndarray, actions: np.ndarray, rewards, terminations) -> dict[str, np.ndarray]:
    """One episode's Transitions fields as arrays: observations (T+1, obs_dim) flat, the rest per step (T)."""
    rewards, terminals = np.asarray(rewards, dtype=np.float32), np.asarray(terminations, dtype=np.float32)
    length = len(rewards)
    # after a termination a' is never used (1 - done = 0); after a time limit it was never taken
    known = np.ones(length, np.float32)
    known[-1] = terminals[-1]
    starts, ends = np.zeros(length, bool), np.zeros(length, bool)
    starts[0], ends[-1] = True, True
    return {
        "observations": observations[:-1], "actions": actions, "rewards": rewards, "next_observations": observations[1:],
        "terminals": terminals, "next_actions": np.concatenate([actions[1:], actions[-1:]]), "next_action_known": known,
        "episode_starts": starts, "episode_ends": ends, "returns_to_go": np.cumsum(rewards[::-1])[::-1].astype(np.float32),
        "episode_returns": np.full(length, rewards.sum(), np.float32), "episode_ids": np.full(length, episode_id, np.int64),
        "timesteps": np.arange(length, dtype=np.int64),
    }  # fmt: skip


def concatenate(parts: list[Transitions]) -> Transitions:
    """Transitions one after another (episodes stay contiguous), e.g. offline and online data in one batch."""
    return Transitions(**{f.name: torch.cat([getattr(t, f.name) for t in parts]) for f in fields(Transitions)})


class DataWarning(checks.Notice):
    """Something in a dataset the scripts handle (and say how), but a user should know."""


def check_values(dataset: minari.MinariDataset, arrays: dict[str, np.ndarray]) -> None:
    """Once, on load: NaN/inf anywhere (next observations too) is refused, one sentence per problem;
    actions outside the action box are clipped into it, with a warning saying how many; constant observation
    dimensions are named in a warning."""
    problems = []
    for name in ("observations", "next_observations", "actions", "rewards"):
        bad = ~np.isfinite(arrays[name].reshape(len(arrays[name]), -1)).all(1)
        if bad.any():
            first = np.flatnonzero(bad)[0]
            episode, step = arrays["episode_ids"][first], arrays["timesteps"][first]
            problems.append(
                f"{bad.sum()} transitions have NaN or infinite {name} (the first: episode {episode}, step {step}"
                + (", the episode's last observation" if name == "next_observations" else "") + ")."
            )
    if problems:
        raise DatasetError(f"Dataset '{dataset.id}' cannot be trained on: " + " ".join(problems) + " Fix or drop those episodes.")
    constant = np.flatnonzero(np.ptp(arrays["observations"], 0) == 0) if len(arrays["observations"]) > 1 else []
    if len(constant):  # harmless (the Normalizer's eps keeps them at 0), but often not what a user meant to record
        warnings.warn(f"Dataset '{dataset.id}': observation dimension(s) {', '.join(map(str, constant))} have the same value "
                      "in every transition: they tell the policy nothing.", DataWarning, stacklevel=3)  # fmt: skip
    low, high = dataset.action_space.low.astype(np.float32), dataset.action_space.high.astype(np.float32)
    actions = arrays["actions"]
    outside = ((actions < low) | (actions > high)).any(1)
    if outside.any():
        by = float(np.max(np.maximum(actions - high, low - actions)))
        warnings.warn(
            f"Dataset '{dataset.id}': {outside.sum()} of {len(actions)} actions ({outside.mean():.2%}) lie outside the "
            f"action box [{low.min():g}, {high.max():g}] (by up to {by:.3g}); they are clipped into the box, which is "
            "all the policies can output.", DataWarning, stacklevel=3,
        )  # fmt: skip
        np.clip(actions, low, high, out=actions)
        np.clip(arrays["next_actions"], low, high, out=arrays["next_actions"])


def _episode_subset(t: Transitions, chosen_episodes: torch.Tensor) -> Transitions:
    keep = torch.isin(t.episode_ids, chosen_episodes)
    return t.index(torch.nonzero(keep).squeeze(1))  # nonzero keeps the original order


def _episode_permutation(t: Transitions, seed: int) -> torch.Tensor:
    episodes = torch.unique(t.episode_ids)
    order = torch.randperm(len(episodes), generator=torch.Generator().manual_seed(seed))
    return episodes[order.to(episodes.device)]


def split_by_episode(t: Transitions, validation_fraction: float, seed: int = 0) -> tuple[Transitions, Transitions]:
    """Train/validation split by whole episodes; the scripts pass no seed, so every --seed holds out the same ones.

    0 (the scripts' default, as in the papers) trains on every transition and validates on none. A fraction
    that rounds to no validation episode, or to every episode, is refused: it would mean something else.
    """
    if not 0 <= validation_fraction < 1:
        raise DatasetError(f"--validation-fraction must be in [0, 1), got {validation_fraction}.")
    episodes = _episode_permutation(t, seed)
    num_valid = int(round(validation_fraction * len(episodes)))
    if validation_fraction > 0 and not 0 < num_valid < len(episodes):
        raise DatasetError(
            f"--validation-fraction {validation_fraction:g} of this dataset's {len(episodes)} episodes leaves "
            f"{'no validation' if num_valid == 0 else 'no training'} episode: use --validation-fraction 0 (train on "
            f"everything, the default) or a fraction between {0.5 / len(episodes):.3g} and {1 - 0.5 / len(episodes):.3g}."
        )
    return _episode_subset(t, episodes[num_valid:]), _episode_subset(t, episodes[:num_valid])



def subsample(t: Transitions, fraction: float, unit: str = "episodes", seed: int = 0) -> Transitions:
    """The first `fraction` of a fixed random order of episodes (or transitions).

    Smaller fractions are prefixes of larger ones (nested), so value-data and policy-data sizes
    can be swept independently (the data-scaling matrix of Park et al. 2024).
    """
    if not 0 < fraction <= 1:
        raise DatasetError(f"a data fraction must be in (0, 1], got {fraction}.")
    if unit == "episodes":
        episodes = _episode_permutation(t, seed)
        return _episode_subset(t, episodes[: max(1, int(round(fraction * len(episodes))))])
    if unit == "transitions":
        order = torch.randperm(len(t), generator=torch.Generator().manual_seed(seed)).to(t.rewards.device)
        return t.index(torch.sort(order[: max(1, int(round(fraction * len(t))))]).values)
    raise DatasetError(f"unit must be 'episodes' or 'transitions', got '{unit}'.")


def top_episodes(t: Transitions, fraction: float) -> Transitions:
    """The `fraction` of episodes with the highest returns (filtered or %BC)."""
    if not 0 < fraction <= 1:
        raise DatasetError(f"top_fraction must be in (0, 1], got {fraction}.")
    starts = torch.nonzero(t.episode_starts).squeeze(1)
    order = torch.argsort(t.episode_returns[starts], descending=True)
    chosen = t.episode_ids[starts][order[: max(1, int(round(fraction * len(starts))))]]
    return _episode_subset(t, chosen)


@dataclass
class Normalizer:
    """Observation normalisation with statistics from the training data; eval applies the same."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, observations: torch.Tensor, eps: float = 1e-3) -> Normalizer:
        return cls(observations.mean(0), observations.std(0) + eps)

    @classmethod
    def identity(cls, dim: int, device: torch.device | str = "cpu") -> Normalizer:
        return cls(torch.zeros(dim, device=device), torch.ones(dim, device=device))

    def __call__(self, observations: torch.Tensor) -> torch.Tensor:
        return (observations - self.mean) / self.std

    def inverse(self, normalized: torch.Tensor) -> torch.Tensor:
        return normalized * self.std + self.mean


def reward_transform(train: Transitions, reward_scale: float, reward_shift: float, return_range_scale: bool) -> Callable:
    """r -> r * reward_scale + reward_shift, after r <- r * 1000 / (max - min episode return) if return_range_scale.

    The map is measured on the training data once; validation data and the online phase's rewards get it unchanged.
    IQL/CORL locomotion uses return_range_scale; CORL's antmaze recipe is reward_shift=-1 (every step costs until
    the goal); CQL's, scale 10 and shift -5.
    """
    scale = reward_scale
    if return_range_scale:
        returns = train.episode_returns[train.episode_starts]
        spread = float(returns.max() - returns.min())
        if not spread > 0:
            raise DatasetError(
                f"--return-range-scale divides rewards by the spread of episode returns, and the training data's "
                f"{len(returns)} episode(s) all return {float(returns[0]):g}: pass --no-return-range-scale."
            )
        scale *= 1000.0 / spread
    largest = float((train.rewards * scale + reward_shift).abs().max()) if len(train) else 0.0
    if largest > 1e15:  # Q ~ r / (1 - gamma), squared in the TD loss: float32 overflows near 3.4e38
        raw = float(train.rewards.abs().max()) or 1.0
        raise DatasetError(
            f"Rewards reach {largest:.3g} after --reward-scale and --reward-shift: Q-values near r / (1 - gamma) and their "
            f"squared errors overflow float32; pass --reward-scale {10 ** -round(math.log10(raw)):g} (and a --reward-shift "
            "of that scale) to bring them near 1."
        )
    return lambda rewards: rewards * scale + reward_shift


def transform_rewards(
    train: Transitions, valid: Transitions, reward_scale: float, reward_shift: float, return_range_scale: bool
) -> tuple[Transitions, Transitions]:
    """Both splits with reward_transform's map, measured on train: the valid/* losses are on the training losses' scale."""
    transform = reward_transform(train, reward_scale, reward_shift, return_range_scale)
    return tuple(replace(t, rewards=transform(t.rewards)) for t in (train, valid))
