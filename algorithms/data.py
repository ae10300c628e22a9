"""The one module every algorithm script shares: datasets, tensors on the device, evaluation.

Any Minari id works. Remote ids (`mujoco/hopper/medium-v0`, `D4RL/antmaze/large-play-v1`, ...) go
through `minari.load_dataset(id, download=True)`. The local suite (`pendulum/*`, `pointmaze/*`) is
built on first use by local_suite.py's scripted behaviour policies, written as a real Minari dataset, then loaded
through that very same call. Run `python algorithms/local_suite.py --help` to list or prebuild the suite.
"""

from __future__ import annotations

import contextlib
import errno
import difflib
import io
import os
import random
import signal
import shutil
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Callable

import gymnasium as gym
import minari
import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

# ----------------------------------------------------------------------------------------------
# Errors: one sentence naming what was wrong and what to do.


class DatasetError(ValueError):
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



def is_local(dataset_id: str) -> bool:
    """Only the local suite's own ids are built here; any other id, whatever its namespace, is Minari's."""
    import local_suite  # the builder, imported only where a local id is involved

    return dataset_id in local_suite.LOCAL_SUITE



def load_dataset(dataset_id: str) -> minari.MinariDataset:
    """A Minari dataset by id: the local suite is built on first use, remote ids are downloaded."""
    import local_suite

    if is_local(dataset_id):
        path = minari.storage.get_dataset_path(dataset_id)
        if path.exists() and not (path / "data" / ".complete").exists():
            raise DatasetError(
                f"Dataset '{dataset_id}' at {path} is half-written or corrupt: delete that folder "
                f"(or run `python algorithms/local_suite.py --force {dataset_id}`) and it is rebuilt on next use."
            )
        if not path.exists():
            print(f"building local dataset {dataset_id} ({local_suite.DEFAULT_TRANSITIONS} transitions) into {path} ...")
            local_suite.build_local_dataset(dataset_id)
        register_robotics_envs()
    elif dataset_id.split("/")[0] in local_suite.LOCAL_NAMESPACES and not minari.storage.get_dataset_path(dataset_id).exists():
        local_suite.check_local_id(dataset_id)  # a typo of a local id, not on disk: say so now, not after 25 s of retries
    try:
        dataset = minari.load_dataset(dataset_id, download=True)
    except DatasetError:
        raise
    except Exception as error:  # noqa: BLE001 - minari raises many types; the message carries the cause
        path = minari.storage.get_dataset_path(dataset_id)
        if is_local(dataset_id) or (path / "data").exists():
            raise DatasetError(
                f"Dataset '{dataset_id}' at {path} could not be read ({type(error).__name__}: {error}); "
                "it is corrupt or half-written: delete that folder and run again to rebuild or re-download it."
            ) from error
        candidates = dict.fromkeys(local_suite.LOCAL_SUITE + KNOWN_REMOTE + tuple(minari.list_local_datasets()))
        close = difflib.get_close_matches(dataset_id, list(candidates), n=3, cutoff=0.6)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise DatasetError(
            f"Could not load dataset '{dataset_id}' from the Minari servers ({type(error).__name__}: {error}); "
            f"check the id and your network.{hint} Without a network, use the local suite: {', '.join(local_suite.LOCAL_SUITE)}."
        ) from error
    check_spaces(dataset)
    if dataset.total_steps == 0:
        raise DatasetError(f"Dataset '{dataset_id}' is empty (0 transitions): rebuild or re-download it.")
    register_robotics_envs()
    return dataset


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
            raise ValueError(f"--batch-size {batch_size} is larger than the {len(self)} training transitions: pass a smaller one.")
        return self.index(torch.randint(len(self), (batch_size,), device=self.rewards.device, generator=generator))

    def to(self, device: torch.device | str) -> Transitions:
        return Transitions(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def with_observations(self, transform: Callable[[torch.Tensor], torch.Tensor]) -> Transitions:
        return replace(self, observations=transform(self.observations), next_observations=transform(self.next_observations))


def to_transitions(dataset: minari.MinariDataset, device: torch.device | str = "cpu") -> Transitions:
    """Flatten a Minari dataset's episodes into Transitions on `device`."""
    columns: dict[str, list] = {f.name: [] for f in fields(Transitions)}
    for episode_id, episode in enumerate(dataset.iterate_episodes()):
        actions = np.asarray(episode.actions, dtype=np.float32).reshape(len(episode.rewards), -1)
        if len(episode.rewards) == 0:
            continue
        episode_arrays = episode_columns(episode_id, flatten_observation(episode.observations), actions, episode.rewards, episode.terminations)
        for name, array in episode_arrays.items():
            columns[name].append(array)
    if not columns["rewards"]:
        raise DatasetError(f"Dataset '{dataset.id}' has no transitions: rebuild or re-download it.")
    arrays = {k: np.concatenate(v) for k, v in columns.items()}
    check_values(dataset, arrays)
    return Transitions(**{k: torch.from_numpy(v).to(device) for k, v in arrays.items()})


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


def discounted_returns(t: Transitions, gamma: float) -> torch.Tensor:
    """sum_k gamma^k r_{t+k} to the end of each logged episode: the Monte-Carlo value of the data's own policy.

    A time-limit end is not bootstrapped (as Cal-QL's code): with negative rewards the last steps' values are
    then too high, with 0/1 rewards too low."""
    rewards, ends = t.rewards.double().cpu().numpy(), t.episode_ends.cpu().numpy()
    returns, running = np.zeros_like(rewards), 0.0
    for i in range(len(rewards) - 1, -1, -1):
        running = rewards[i] + gamma * running * (not ends[i])
        returns[i] = running
    return torch.as_tensor(returns, dtype=torch.float32, device=t.rewards.device)


class DataWarning(UserWarning):
    """Something in a dataset the scripts handle (and say how), but a user should know."""


def check_values(dataset: minari.MinariDataset, arrays: dict[str, np.ndarray]) -> None:
    """Once, on load: NaN/inf anywhere (next observations too) is refused, one sentence per problem;
    actions outside the action box are clipped into it, with a warning saying how many."""
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
    return lambda rewards: rewards * scale + reward_shift


def transform_rewards(
    train: Transitions, valid: Transitions, reward_scale: float, reward_shift: float, return_range_scale: bool
) -> tuple[Transitions, Transitions]:
    """Both splits with reward_transform's map, measured on train: the valid/* losses are on the training losses' scale."""
    transform = reward_transform(train, reward_scale, reward_shift, return_range_scale)
    return tuple(replace(t, rewards=transform(t.rewards)) for t in (train, valid))


# ----------------------------------------------------------------------------------------------
# Evaluation: N episodes in a vector env, one batched policy call per step.


@dataclass
class EvalResult:
    returns: np.ndarray  # raw undiscounted return per episode
    lengths: np.ndarray
    normalized: np.ndarray  # 100 * (return - ref_min) / (ref_max - ref_min); NaN without references
    observations: np.ndarray  # flat observations the policy visited (for evaluation MSE)
    successes: np.ndarray | None = None  # per episode: the env's info["success"] was ever true (goal tasks); None: no such info

    @property
    def mean(self) -> float:
        return float(self.returns.mean())

    @property
    def normalized_mean(self) -> float:
        return float(self.normalized.mean())

    @property
    def success_rate(self) -> float:
        """The fraction of episodes that reached the goal (mazes, Adroit); NaN where the env reports no success."""
        return float(self.successes.mean()) if self.successes is not None else float("nan")


def make_env(dataset: minari.MinariDataset) -> gym.Env:
    """The dataset's evaluation env (its eval_env_spec where it has one): what the policy is scored in."""
    if is_local(dataset.id):
        import local_suite

        return local_suite.make_env(dataset.id)
    return dataset.recover_environment(eval_env=True)


def make_eval_envs(dataset: minari.MinariDataset, num_envs: int) -> gym.vector.VectorEnv:
    """num_envs copies of the dataset's evaluation env, stepped in lockstep."""
    return gym.vector.SyncVectorEnv([lambda: make_env(dataset) for _ in range(num_envs)])


def run_episodes(policy, envs, seed, to_numpy=False, device="cpu", on_reward=None):
    """One episode per env. Returns (returns, lengths, visited flat observations, successes or None)."""
    observation, _ = envs.reset(seed=seed)
    num_envs = envs.num_envs
    returns, lengths = np.zeros(num_envs), np.zeros(num_envs, dtype=np.int64)
    alive, visited, successes = np.ones(num_envs, bool), [], None
    while alive.any():
        flat = flatten_observation(observation)
        visited.append(flat[alive])
        if to_numpy:
            action = np.asarray(policy(flat))
        else:
            with torch.no_grad():
                action = policy(torch.as_tensor(flat, device=device)).cpu().numpy()
        observation, reward, terminated, truncated, info = envs.step(action)
        returns += reward * alive
        lengths += alive
        if "success" in info:  # the goal envs say when the goal is reached; an episode succeeds if it ever is
            successes = (np.zeros(num_envs, bool) if successes is None else successes) | (np.asarray(info["success"], bool) & alive)
        if on_reward is not None:
            on_reward(reward)
        alive &= ~(terminated | truncated)
    return returns, lengths, np.concatenate(visited), successes


def evaluate(
    policy: Callable[[torch.Tensor], torch.Tensor], envs: gym.vector.VectorEnv, dataset: minari.MinariDataset,
    seed: int = 0, device: torch.device | str = "cpu", on_reward: Callable[[np.ndarray], None] | None = None,
) -> EvalResult:  # fmt: skip
    """Run one episode in each of the vector env's copies with a batched policy.

    policy maps raw flat observations (num_envs, obs_dim) on `device` to actions; it does its own
    normalisation. on_reward (optional) sees each step's rewards, e.g. for a Decision Transformer's
    return-to-go. The vector env must not autoreset into a new episode that we count: we stop each
    copy at its first termination or truncation.
    """
    returns, lengths, visited, successes = run_episodes(policy, envs, seed, device=device, on_reward=on_reward)
    return EvalResult(returns, lengths, normalized_score(dataset, returns), visited, successes)


# ----------------------------------------------------------------------------------------------
# Offline-to-online fine-tuning: one env the policy acts in, and the episodes it collected.


class OnlineInteraction:
    """The online phase: one copy of the dataset's evaluation env, stepped by a script's exploring policy, and the
    finished episodes it collected, kept both raw (`data`, the dataset's fields) and as `prepare` maps them to what
    the script trains on (`batches`: normalised states, transformed rewards, ...), refreshed at each episode's end.

    Episode k starts from reset(seed=10**9 + 100_000 * seed + k), apart from the evaluation seeds. The state_dict
    holds the collected data and the actions of the episode in progress; load_state_dict replays them from the
    episode's seed, so a resumed run goes on from the very env state the interrupted one stopped in.
    """

    def __init__(self, dataset: minari.MinariDataset, seed: int, device: torch.device | str, prepare: Callable[[Transitions], Transitions]):
        self.dataset, self.seed, self.device, self.prepare = dataset, seed, device, prepare
        self.env, self._observations = None, None  # made when first stepped: an offline-only run never builds the env
        self.data: Transitions | None = None  # finished online episodes, raw; None until the first one ends
        self.batches: Transitions | None = None  # the same, prepared
        self.episodes, self.env_steps, self.last_return = 0, 0, 0.0  # last_return: logged once an episode ended

    def _start_episode(self) -> None:
        self.env = self.env or make_env(self.dataset)
        observation, _ = self.env.reset(seed=10**9 + 100_000 * self.seed + self.episodes)
        self._observations, self._actions, self._rewards, self._terminations = [flatten_observation(observation)], [], [], []

    @property
    def observation(self) -> torch.Tensor:
        """The current flat observation, (1, obs_dim) on the device, raw as the policies take it."""
        if self._observations is None:
            self._start_episode()
        return torch.as_tensor(self._observations[-1], device=self.device).unsqueeze(0)

    def step(self, action: torch.Tensor | np.ndarray) -> bool:
        """One env step. At an episode's end its transitions join the data and the next episode starts: True then."""
        if self._observations is None:
            self._start_episode()
        self.env_steps += 1
        if not self._env_step(np.asarray(torch.as_tensor(action).detach().cpu(), dtype=np.float32)):
            return False
        columns = episode_columns(self.episodes, np.stack(self._observations), np.stack(self._actions), self._rewards, self._terminations)
        episode = Transitions(**{name: torch.from_numpy(array).to(self.device) for name, array in columns.items()})
        # prepare works per transition and per episode, so the new episode alone is prepared: O(episode), not O(data)
        self.data = episode if self.data is None else concatenate([self.data, episode])
        self.batches = self.prepare(episode) if self.batches is None else concatenate([self.batches, self.prepare(episode)])
        self.last_return = float(np.sum(self._rewards))
        self.episodes += 1
        self._start_episode()
        return True

    def _env_step(self, action: np.ndarray) -> bool:
        """Step the env and keep the step; True when the episode ended (terminated or truncated)."""
        action = action.reshape(self.env.action_space.shape)
        observation, reward, terminated, truncated, _ = self.env.step(action)
        self._observations.append(flatten_observation(observation))
        self._actions.append(action)
        self._rewards.append(float(reward))
        self._terminations.append(bool(terminated))
        return terminated or truncated

    def sample(self, offline: Transitions, batch_size: int, mixing_ratio: float) -> Transitions:
        """A batch of which `mixing_ratio` comes from the offline data and the rest from the online episodes
        (all offline until the first online episode ends)."""
        num_offline = batch_size if self.batches is None else round(mixing_ratio * batch_size)
        parts = [offline.sample(num_offline)] if num_offline else []
        if num_offline < batch_size:
            parts.append(self.batches.index(torch.randint(len(self.batches), (batch_size - num_offline,), device=self.device)))
        return concatenate(parts)

    def metrics(self) -> dict[str, float]:
        """charts/env_steps, and online/episode_return: the raw return of the last finished (exploring) episode;
        nothing before the online phase."""
        if not self.env_steps:
            return {}
        return {"charts/env_steps": self.env_steps} | ({"online/episode_return": self.last_return} if self.episodes else {})

    def state_dict(self) -> dict:
        state = {"episodes": self.episodes, "env_steps": self.env_steps, "last_return": self.last_return}
        if self._observations is not None:  # an episode in progress
            state["actions"] = torch.as_tensor(np.array(self._actions, np.float32).reshape(len(self._actions), *self.env.action_space.shape))
            state["observation"] = torch.as_tensor(self._observations[-1])
        if self.data is not None:
            state["data"] = {f.name: getattr(self.data, f.name) for f in fields(Transitions)}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.episodes, self.env_steps, self.last_return = state["episodes"], state["env_steps"], state["last_return"]
        if "data" in state:
            self.data = Transitions(**{name: tensor.to(self.device) for name, tensor in state["data"].items()})
            self.batches = self.prepare(self.data)
        if "observation" not in state:
            return
        self._start_episode()
        for action in state["actions"].numpy():  # the episode in progress, replayed from its seed
            self._env_step(action)
        if not np.array_equal(self._observations[-1], state["observation"].numpy()):
            warnings.warn("The online episode in progress replayed to another state than the checkpoint's (the env is not "
                          "deterministic here): the run goes on from the replayed one.", DataWarning, stacklevel=2)  # fmt: skip


def normalized_score(dataset: minari.MinariDataset, returns: np.ndarray) -> np.ndarray:
    """100 * (return - ref_min_score) / (ref_max_score - ref_min_score), as D4RL reports it."""
    metadata = dataset.storage.metadata
    if metadata.get("ref_min_score") is None or metadata.get("ref_max_score") is None:
        return np.full(np.shape(returns), np.nan)
    return 100.0 * minari.get_normalized_score(dataset, np.asarray(returns))


def expert_action_mse(policy: Callable, dataset_id: str, observations, device="cpu") -> float:
    """Mean squared error between policy(s) and the scripted expert's action on raw flat states s.

    NaN where the dataset has no scripted expert (remote ids). policy as in evaluate().
    """
    if not is_local(dataset_id):
        return float("nan")
    import local_suite

    expert = local_suite.scripted_expert(dataset_id)
    if expert is None or len(observations) == 0:
        return float("nan")
    if torch.is_tensor(observations):
        observations = observations.detach().cpu().numpy()
    with torch.no_grad():
        actions = policy(torch.as_tensor(observations, dtype=torch.float32, device=device)).cpu().numpy()
    return float(np.mean((actions - expert(np.asarray(observations))) ** 2))


# ----------------------------------------------------------------------------------------------
# Shared run plumbing the scripts would otherwise each repeat.


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; anything else must be a device torch knows."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"Unknown --device '{name}': use auto, cpu, cuda or cuda:N.") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} was asked for but CUDA is not available here: use --device cpu or auto.")
    return device


def compile_step(update: Callable, compile: bool, cudagraphs: bool, device: torch.device) -> Callable:
    """The update function itself (default), through torch.compile (--compile), or also replayed as CUDA graphs.

    The math is the update's own: tests/test_compile.py checks the losses against eager. CUDA graphs come
    from torch.compile's reduce-overhead mode, which captures each compiled piece once and replays it
    without per-kernel launches; a replay reuses its output memory, so the outputs are cloned here.
    """
    if cudagraphs and device.type != "cuda":
        raise ValueError(f"--cudagraphs needs a CUDA device, and this run is on {device}: drop it (--compile works on CPU).")
    if not (compile or cudagraphs):
        return update
    compiled = torch.compile(update, mode="reduce-overhead" if cudagraphs else None)
    if not cudagraphs:
        return compiled

    def replay(*args, **kwargs):
        torch.compiler.cudagraph_mark_step_begin()
        out = compiled(*args, **kwargs)
        return {name: value.clone() for name, value in out.items()} if isinstance(out, dict) else out.clone()

    return replay


def rng_state() -> dict:
    """Python, numpy, torch (and CUDA) generator states, in types torch.load(weights_only=True) reads."""
    numpy_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str, algorithm: str, args: dict, step: int, models: dict, normalizer: Normalizer) -> None:
    """Write a checkpoint atomically (temporary file, then rename): a crash or a full disk never leaves half a
    file, nor a temporary one, and the previous checkpoint stays as it was."""
    state = {
        "algorithm": algorithm, "dataset": args["dataset"], "args": args, "step": step, "models": models,
        "normalizer": {"mean": normalizer.mean, "std": normalizer.std}, "rng": rng_state(),
    }  # fmt: skip
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        torch.save(state, temporary)
        os.replace(temporary, path)
    except (OSError, RuntimeError) as error:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        # torch.save reports a full disk as "RuntimeError: [enforce fail at inline_container.cc] . unexpected pos"
        full = getattr(error, "errno", None) == errno.ENOSPC or "unexpected pos" in str(error) or shutil.disk_usage(folder).free < 2**20
        if not (full or isinstance(error, OSError)):
            raise
        kept = f" The previous checkpoint {path} is kept." if os.path.exists(path) else ""
        cause = "the disk is full: free some space" if full else f"{error.strerror or error}: fix that"
        raise OSError(f"Could not write the checkpoint in {folder} ({cause}), then resume.{kept}") from error


def read_checkpoint(path: str, device: torch.device | str = "cpu") -> dict:
    """A checkpoint.pt as torch.load(weights_only=True) reads it, or one sentence on what to pass instead."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint at '{path}': pass the checkpoint.pt a run saved with --save-model.")
    return torch.load(path, map_location=device, weights_only=True)


def load_checkpoint(path: str, algorithm: str | tuple[str, ...], device: torch.device | str = "cpu") -> dict:
    """Read a checkpoint; refuse one of another algorithm, naming the script that reads it."""
    state = read_checkpoint(path, device)
    expected = (algorithm,) if isinstance(algorithm, str) else algorithm
    if state.get("algorithm") not in expected:
        raise ValueError(
            f"Checkpoint '{path}' was written by {state.get('algorithm')}, not {' or '.join(expected)}: "
            f"load it with algorithms/{state.get('algorithm')}.py."
        )
    return state


def check_finite(losses: dict[str, float], step: int, checkpoint_path: str | None = None) -> None:
    """Stop on a NaN/inf loss, naming the loss and the step; the last good checkpoint is left as it was."""
    for name, value in losses.items():
        if not np.isfinite(value):
            kept = f" The last good checkpoint is {checkpoint_path}." if checkpoint_path and os.path.exists(checkpoint_path) else ""
            raise FloatingPointError(
                f"{name} became {value} at step {step}: lower the learning rate or check the data's scale.{kept}"
            )


class GracefulInterrupt:
    """While active, Ctrl-C and SIGTERM (what SLURM, Ray and Kubernetes send on preemption) set `.requested`
    instead of stopping the process, so the loop finishes its step, checkpoints and says how to resume."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> GracefulInterrupt:
        self.requested, self.signal_name, self._previous = False, "", {}
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._request) for sig in self.SIGNALS}
        return self

    def _request(self, signum, frame) -> None:
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested, self.signal_name = True, signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


@dataclass
class RunResult:
    """What a training script's main() returns; benchmarks read these fields."""

    normalized_score: float  # the last evaluation's mean normalised score (NaN: no evaluation, or no reference scores)
    scores: list[float]  # every evaluation's mean normalised score, in order
    returns: list[float]  # every evaluation's mean raw return, in order
    updates_per_s: float  # gradient updates per second, evaluation time excluded
    run_path: str  # the run folder: TensorBoard logs and checkpoint.pt
    policy_scores: dict[str, float] = field(default_factory=dict)  # last score of each other policy evaluated, by tag
    success_rate: float = float("nan")  # the last evaluation's fraction of episodes reaching the goal (goal envs only)
    eval_steps: list[int] = field(default_factory=list)  # the update step of each score, in order (learning curves)


# Flags that steer a run, not what it learns: --resume may change them; any other flag comes from the checkpoint.
RUN_CONTROL = ("total_steps", "online_steps", "resume", "progress", "eval_every", "eval_episodes", "log_every", "checkpoint_every",
               "save_model", "track", "wandb_project", "device", "threads", "compile", "cudagraphs", "run_dir")  # fmt: skip


def resumed_args(args, state: dict):
    """The checkpoint's own settings, with the run-control flags of this command line (RUN_CONTROL).

    A learning flag left at its default takes the checkpoint's value; one set to something else than the
    checkpoint's is refused: continuing with a mix of settings would be neither run.
    """
    defaults, saved = type(args)(), state["args"]
    conflicts = [
        f"--{name.replace('_', '-')} {getattr(args, name)} (the checkpoint's: {saved[name]})"
        for name in saved
        if name not in RUN_CONTROL and hasattr(args, name)
        and getattr(args, name) != getattr(defaults, name) and _plain(getattr(args, name)) != _plain(saved[name])
    ]  # fmt: skip
    if conflicts:
        raise ValueError(
            f"--resume continues the run in {args.resume} with its own settings, and this command changes "
            f"{', '.join(conflicts)}: drop those flags, or start a new run without --resume."
        )
    learned = {name: _restore_type(getattr(defaults, name), saved[name]) for name in saved if name not in RUN_CONTROL and hasattr(args, name)}
    return replace(args, **learned)


def _plain(value):
    return list(value) if isinstance(value, (tuple, list)) else value


def _restore_type(default, value):
    return tuple(value) if isinstance(default, tuple) else value


class Run:
    """Everything around a training loop, once, so that each main() shows its algorithm:

        run = data.Run("td3_bc", args)            # seeds, device, a new run folder, TensorBoard
        args = run.args                           # with --resume: the checkpoint's own settings
        ... data and networks on run.device ...
        for step in run.steps(models, normalizer):   # progress bar, checkpoints, Ctrl-C / SIGTERM, resume
            metrics = update(...)
            if run.logging(step): run.log(step, metrics)
            if run.evaluating(step): run.evaluate(step, policy, dataset)
        return run.result()

    models maps names to everything with a state_dict (networks, targets, optimizers, schedulers): what an
    exact continuation needs. Metric names follow README's vocabulary; losses/* are checked for NaN.
    """

    def __init__(self, algorithm: str, args, variant: str = ""):
        self.algorithm, self._state = algorithm, None
        resume = getattr(args, "resume", None)  # test-time scripts (opex, ttt) have no --resume
        if resume:
            self._state = load_checkpoint(resume, algorithm, "cpu")
            args = resumed_args(args, self._state)
            saved_offline_steps = self._state["args"]["total_steps"]
            if self._state["step"] > saved_offline_steps:  # in its online phase: the offline budget is history
                if args.total_steps not in (saved_offline_steps, type(args)().total_steps):
                    raise ValueError(
                        f"The checkpoint {args.resume} is in its online phase, which began after --total-steps "
                        f"{saved_offline_steps} offline updates: drop --total-steps, or pass a larger --online-steps."
                    )
                args = replace(args, total_steps=saved_offline_steps)
            if args.total_steps + getattr(args, "online_steps", 0) <= self._state["step"]:
                raise ValueError(
                    f"The checkpoint {args.resume} is already at step {self._state['step']} and --total-steps is "
                    f"{args.total_steps}: pass a larger --total-steps (or --online-steps) to train on."
                )
        if getattr(args, "total_steps", 1) <= 0 or getattr(args, "batch_size", 1) <= 0:  # test-time scripts have neither
            raise ValueError("--total-steps and --batch-size must be positive integers.")
        if args.eval_episodes < 0:
            raise ValueError(f"--eval-episodes must be 0 (no evaluation) or more, got {args.eval_episodes}.")
        self.args = args
        # the loop's steps: the offline updates, then those of the online phase (fine-tuning scripts) if any
        self.last_step = getattr(args, "total_steps", 0) + getattr(args, "online_steps", 0)
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        torch.set_num_threads(args.threads)
        self.device = resolve_device(args.device)
        # test-time scripts (opex, ttt) have no --dataset: the run is named after their --checkpoint's
        self.dataset_id = args.dataset if hasattr(args, "dataset") else read_checkpoint(args.checkpoint)["dataset"]
        self._folder_name = "__".join([self.dataset_id.replace("/", "_"), args.exp_name + (f"_{variant}" if variant else ""), str(args.seed)])
        self._path = os.path.dirname(os.path.abspath(resume)) if resume else None
        self._writer = None
        self.scores, self.returns, self.eval_steps, self.policy_scores, self.success_rate, self._envs = [], [], [], {}, float("nan"), None
        self.first_step, self.step, self._eval_seconds, self._start, self._progress = 1, 0, 0.0, time.time(), None

    @property
    def path(self) -> str:
        """The run folder, made when the run first needs it: a run that fails while loading its data leaves none."""
        if self._path is None:
            self._path = new_run_folder(self.args.run_dir, self._folder_name)
        return self._path

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def checkpoint_path(self) -> str:
        return os.path.join(self.path, "checkpoint.pt")

    @property
    def writer(self) -> SummaryWriter:
        """TensorBoard (and W&B with --track), opened when the run first writes: its event file means "training"."""
        if self._writer is None:
            self._writer = SummaryWriter(self.path)
            hyperparameters = "\n".join(f"|{k}|{v}|" for k, v in asdict(self.args).items())
            self._writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + hyperparameters)
            if self.args.track:
                import wandb

                wandb.init(project=self.args.wandb_project, name=self.name, config=asdict(self.args), sync_tensorboard=True)
        return self._writer

    def steps(self, models: dict, normalizer: Normalizer):
        """Yield the steps to do; restore a resumed run first; checkpoint as asked, and on Ctrl-C or SIGTERM."""
        self.models, self.normalizer = models, normalizer
        if self._state is not None:
            for name, model in models.items():
                model.load_state_dict(self._state["models"][name])
            set_rng_state(self._state["rng"])  # the batches drawn from here on are the ones a straight run draws
            self.first_step = self._state["step"] + 1
        args, _ = self.args, self.writer
        self._start = time.time()
        progress = tqdm(range(self.first_step, self.last_step + 1), disable=not args.progress, desc=self.name[:40], mininterval=1.0)
        self._progress = progress
        with GracefulInterrupt() as interrupt:
            for step in progress:
                yield step
                self.step = step
                # a resumed run keeps its checkpoint current, whether or not this command says --save-model
                last = step == self.last_step and (args.save_model or self._state is not None)
                if last or (args.checkpoint_every and step % args.checkpoint_every == 0):
                    self.save(step)
                if interrupt.requested:
                    self.save(step)
                    print(f"{interrupt.signal_name} at step {step}: checkpoint saved; resume with: python algorithms/"
                          f"{self.algorithm}.py --resume {self.checkpoint_path} --total-steps {args.total_steps}"
                          + (f" --online-steps {args.online_steps}" if getattr(args, "online_steps", 0) else ""))  # fmt: skip
                    break

    def save(self, step: int) -> None:
        state_dicts = {name: model.state_dict() for name, model in self.models.items()}
        save_checkpoint(self.checkpoint_path, self.algorithm, asdict(self.args), step, state_dicts, self.normalizer)

    def logging(self, step: int) -> bool:
        return step % self.args.log_every == 0 or step == self.last_step

    def evaluating(self, step: int) -> bool:
        return self.args.eval_episodes > 0 and (step % self.args.eval_every == 0 or step == self.last_step)

    def checkpoint(self, algorithms: tuple[str, ...]) -> dict:
        """A test-time script's input: the --checkpoint of a training run by one of `algorithms`."""
        return load_checkpoint(self.args.checkpoint, algorithms, self.device)

    def eval_seed(self, round: int = 0) -> int:
        """Env i of the vector env starts from seed eval_seed() + i: disjoint across --seed (up to 100k episodes each),
        so that "± std over seeds" counts different start states, not the same ones again."""
        return 1_000 + 100_000 * self.args.seed + round * self.args.eval_episodes

    def updates_per_s(self) -> float:
        return (self.step - self.first_step + 1) / max(time.time() - self._start - self._eval_seconds, 1e-9)

    def log(self, step: int, metrics: dict[str, torch.Tensor | float]) -> None:
        """Write scalars (the loop's one host sync); stop on a NaN loss, naming it and the step."""
        values = {name: float(value) for name, value in metrics.items()}
        check_finite({n: v for n, v in values.items() if n.startswith("losses/")}, step, self.checkpoint_path)
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)
        self.step = step
        self.writer.add_scalar("charts/updates_per_s", self.updates_per_s(), step)

    def evaluate(
        self, step: int, policy: Callable, dataset: minari.MinariDataset, mse_states: dict[str, torch.Tensor] | None = None,
        tag: str = "", on_reward: Callable | None = None,
    ) -> EvalResult:  # fmt: skip
        """--eval-episodes episodes in the dataset's env; eval/* scalars, and the action MSE to the local suite's
        scripted expert on the given states and on the visited ones (mse/<split>_expert, Park et al. 2024)."""
        started = time.time()
        if self._envs is None:
            self._envs = make_eval_envs(dataset, self.args.eval_episodes)
        result = evaluate(policy, self._envs, dataset, seed=self.eval_seed(), device=self.device, on_reward=on_reward)
        states = {**(mse_states or {}), "eval": result.observations}
        self.record(step, result, {split: expert_action_mse(policy, dataset.id, s, self.device) for split, s in states.items()}, tag)
        self._eval_seconds += time.time() - started
        return result

    def record(self, step: int, result: EvalResult, expert_mse: dict[str, float], tag: str = "") -> None:
        """Log an evaluation (eval/*{tag}, mse/<split>_expert{tag} where finite) and keep its score: untagged, the run's
        score; tagged, a policy the script evaluates besides it (RunResult.policy_scores, keyed without the "_")."""
        self.writer.add_scalar(f"eval/return{tag}", result.mean, step)
        self.writer.add_scalar(f"eval/normalized_score{tag}", result.normalized_mean, step)
        if np.isfinite(result.success_rate):
            self.writer.add_scalar(f"eval/success_rate{tag}", result.success_rate, step)
        for split, mse in expert_mse.items():
            if np.isfinite(mse):
                self.writer.add_scalar(f"mse/{split}_expert{tag}", mse, step)
        if tag:
            self.policy_scores[tag.lstrip("_")] = result.normalized_mean
        else:
            self.scores.append(result.normalized_mean)
            self.eval_steps.append(step)
            self.returns.append(result.mean)
            self.success_rate = result.success_rate
            if self._progress is not None:
                self._progress.set_postfix(score=f"{result.normalized_mean:.1f}")

    def result(self) -> RunResult:
        """Close the run; print and return its numbers."""
        updates_per_s = self.updates_per_s()
        if self._envs is not None:
            self._envs.close()
        if self._writer is not None:
            self._writer.close()
        score = self.scores[-1] if self.scores else float("nan")
        said = f"normalized score {score:.1f} (return {self.returns[-1]:.1f})" if self.scores else "no evaluation"
        said += f", success {100 * self.success_rate:.0f}%" if np.isfinite(self.success_rate) else ""
        speed = f", {updates_per_s:.0f} updates/s" if self.step else ""
        print(f"{self.dataset_id} {self.algorithm} seed {self.args.seed}: {said}{speed}, logs in {self.path}")
        return RunResult(score, self.scores, self.returns, updates_per_s, self.path, self.policy_scores, self.success_rate, self.eval_steps)


def new_run_folder(run_dir: str, name: str) -> str:
    """run_dir/<name>__<time>, created here: two runs started in the same second get -2, -3, ... (never one folder)."""
    base = os.path.join(run_dir, f"{name}__{int(time.time())}")
    for attempt in range(1, 1000):
        path = base if attempt == 1 else f"{base}-{attempt}"
        try:
            os.makedirs(path, exist_ok=False)
        except FileExistsError:
            continue
        except OSError as error:
            raise OSError(
                f"Cannot write the run folder '{path}' ({error.strerror or error}): pass --run-dir a folder you can write to."
            ) from error
        return path
    raise OSError(f"Could not create a new run folder under {run_dir}: remove old runs named {name}.")


def validation_mse(policy: Callable, valid: Transitions) -> dict[str, torch.Tensor]:
    """valid/action_mse of policy on the held-out episodes (none with --validation-fraction 0, the default)."""
    if len(valid) == 0:
        return {}
    with torch.no_grad():
        return {"valid/action_mse": ((policy(valid.observations) - valid.actions) ** 2).mean()}
