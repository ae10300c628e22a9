"""Fine-tuning: the online phase of offline-to-online fine-tuning (Cal-QL, IQL --online-steps).

Lives here: `OnlineInteraction`, one copy of the dataset's evaluation env stepped by a script's exploring policy,
the episodes it collected, mixed batches of offline and online data, and its exact resume; Cal-QL's reference
value V^mu (`discounted_returns`, with the failure reward of sparse data, `sparse_failure_reward`).
Lives elsewhere: the offline data (data.py), the evaluation episodes (evaluation.py), checkpoints (training.py's
Run saves this object's state_dict like any model's).
"""

from __future__ import annotations

import warnings
from dataclasses import fields
from typing import Callable

import minari
import numpy as np
import torch

import data
import evaluation


def discounted_returns(t: data.Transitions, gamma: float, failure_reward: float | None = None) -> torch.Tensor:
    """sum_k gamma^k r_{t+k} to the end of each logged episode: the Monte-Carlo value of the data's own policy.

    A time-limit end is not bootstrapped (as Cal-QL's code): with negative rewards the last steps' values are
    then too high, with 0/1 rewards too low. With failure_reward (sparse rewards, see sparse_failure_reward), an
    episode whose rewards all equal it gets failure_reward / (1 - gamma) at every step instead, as Cal-QL's code
    (JaxCQL/replay_buffer.py:279-288): a failed episode cut by the time limit would otherwise end near 0."""
    rewards, ends = t.rewards.double().cpu().numpy(), t.episode_ends.cpu().numpy()
    returns, running = np.zeros_like(rewards), 0.0
    for i in range(len(rewards) - 1, -1, -1):
        running = rewards[i] + gamma * running * (not ends[i])
        returns[i] = running
    if failure_reward is not None:
        episode = np.concatenate([[0], np.cumsum(ends[:-1])])  # each transition's episode, counted in order
        failed = np.bincount(episode, weights=t.rewards.cpu().numpy() != failure_reward) == 0
        returns[failed[episode]] = failure_reward / (1 - gamma)
    return torch.as_tensor(returns, dtype=torch.float32, device=t.rewards.device)


def sparse_failure_reward(rewards: torch.Tensor) -> float | None:
    """The lower of the two values that sparse success/failure rewards take (AntMaze 0/1, Adroit-binary -1/0, our
    point mazes 0/1); None for rewards that take any other number of values (dense rewards)."""
    values = torch.unique(rewards)
    return float(values[0]) if len(values) == 2 else None


class OnlineInteraction:
    """The online phase: one copy of the dataset's evaluation env, stepped by a script's exploring policy, and the
    finished episodes it collected, kept both raw (`data`, the dataset's fields) and as `prepare` maps them to what
    the script trains on (`batches`: normalised states, transformed rewards, ...), refreshed at each episode's end.

    Episode k starts from reset(seed=10**9 + 100_000 * seed + k), apart from the evaluation seeds. The state_dict
    holds the collected data and the actions of the episode in progress; load_state_dict replays them from the
    episode's seed, so a resumed run goes on from the very env state the interrupted one stopped in.
    """

    def __init__(self, dataset: minari.MinariDataset, seed: int, device: torch.device | str, prepare: Callable[[data.Transitions], data.Transitions]):
        self.dataset, self.seed, self.device, self.prepare = dataset, seed, device, prepare
        self.env, self._observations = None, None  # made when first stepped: an offline-only run never builds the env
        self.data: data.Transitions | None = None  # finished online episodes, raw; None until the first one ends
        self.batches: data.Transitions | None = None  # the same, prepared
        self.episodes, self.env_steps, self.last_return = 0, 0, 0.0  # last_return: logged once an episode ended

    def _start_episode(self) -> None:
        self.env = self.env or evaluation.make_env(self.dataset)
        observation, _ = self.env.reset(seed=10**9 + 100_000 * self.seed + self.episodes)
        self._observations, self._actions, self._rewards, self._terminations = [data.flatten_observation(observation)], [], [], []

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
        columns = data.episode_columns(self.episodes, np.stack(self._observations), np.stack(self._actions), self._rewards, self._terminations)
        episode = data.Transitions(**{name: torch.from_numpy(array).to(self.device) for name, array in columns.items()})
        # prepare works per transition and per episode, so the new episode alone is prepared: O(episode), not O(data)
        self.data = episode if self.data is None else data.concatenate([self.data, episode])
        self.batches = self.prepare(episode) if self.batches is None else data.concatenate([self.batches, self.prepare(episode)])
        self.last_return = float(np.sum(self._rewards))
        self.episodes += 1
        self._start_episode()
        return True

    def _env_step(self, action: np.ndarray) -> bool:
        """Step the env and keep the step; True when the episode ended (terminated or truncated)."""
        action = action.reshape(self.env.action_space.shape)
        observation, reward, terminated, truncated, _ = self.env.step(action)
        self._observations.append(data.flatten_observation(observation))
        self._actions.append(action)
        self._rewards.append(float(reward))
        self._terminations.append(bool(terminated))
        return terminated or truncated

    def sample(self, offline: data.Transitions, batch_size: int, mixing_ratio: float) -> data.Transitions:
        """A batch of which `mixing_ratio` comes from the offline data and the rest from the online episodes
        (all offline until the first online episode ends); mixing_ratio -1: uniform over the union of both."""
        if mixing_ratio == -1 and self.batches is not None:  # one replay buffer holding both, as IQL's code
            indices = torch.randint(len(offline) + len(self.batches), (batch_size,), device=self.device)
            from_online = indices >= len(offline)
            return data.concatenate([offline.index(indices[~from_online]), self.batches.index(indices[from_online] - len(offline))])
        num_offline = batch_size if self.batches is None else round(mixing_ratio * batch_size)
        parts = [offline.sample(num_offline)] if num_offline else []
        if num_offline < batch_size:
            parts.append(self.batches.index(torch.randint(len(self.batches), (batch_size - num_offline,), device=self.device)))
        return data.concatenate(parts)

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
            state["data"] = {f.name: getattr(self.data, f.name) for f in fields(data.Transitions)}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.episodes, self.env_steps, self.last_return = state["episodes"], state["env_steps"], state["last_return"]
        if "data" in state:
            self.data = data.Transitions(**{name: tensor.to(self.device) for name, tensor in state["data"].items()})
            self.batches = self.prepare(self.data)
        if "observation" not in state:
            return
        self._start_episode()
        for action in state["actions"].numpy():  # the episode in progress, replayed from its seed
            self._env_step(action)
        if not np.array_equal(self._observations[-1], state["observation"].numpy()):
            warnings.warn("The online episode in progress replayed to another state than the checkpoint's (the env is not "
                          "deterministic here): the run goes on from the replayed one.", data.DataWarning, stacklevel=2)  # fmt: skip
