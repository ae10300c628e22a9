"""Goals: the goals a goal-conditioned script learns from, drawn from the dataset itself (OGBench's GCDataset).

Lives here: `GoalMix` (where goals come from: the current state, a later state of the same trajectory, a random
dataset state), `GoalSampler` (a batch of transitions with value and actor goals, the goal-reaching reward and
the bootstrap mask, drawn on the training device with torch alone), `GoalBatch` (what it returns), HIQL's subgoals (`GoalSampler.subgoals`), and
`actor_random_share` (OGBench's random actor goals on stitch datasets).
Lives elsewhere: the dataset and its Transitions (data.py), OGBench's evaluation protocol (five evaluation goals
per env, success at the end of each episode: evaluation.py's `evaluate(..., goal_conditioned=True)`), logging it
(training.Run), making OGBench datasets (ogbench_suite.py).

A goal is a dataset observation, whole (as OGBench: no goal representation). Value goals train the value function:
with OGBench's GC-IQL mix, 20% are the current state (reward 0, nothing to bootstrap: the goal is reached), 50% a
state k steps later in the same trajectory with k ~ Geometric(1 - gamma) (the discounted state occupancy), 30%
any dataset state. Actor goals train the policy: a later state of the same trajectory drawn uniformly (and, on
stitch datasets, half of them any dataset state, so the policy learns to combine trajectories). The reward is
0 at the goal and -1 elsewhere (OGBench's gc_negative; --no-negative-rewards: 1 and 0), and the mask is 0 exactly
where the goal is reached: a trajectory's end is a time limit, never a reason to stop bootstrapping.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import checks
import data


@dataclass(frozen=True)
class GoalMix:
    """Where goals come from: shares of the current state, a later state of the same trajectory (the rest) and a
    random dataset state; the later state at a Geometric(1 - gamma) offset (geometric) or uniform up to the end."""

    current: float = 0.0
    random: float = 0.0
    geometric: bool = False

    @property
    def trajectory(self) -> float:
        return 1.0 - self.current - self.random

    def check(self, flags: str) -> None:
        if not (0 <= self.current <= 1 and 0 <= self.random <= 1 and self.trajectory > -1e-9):
            raise checks.UserError(
                f"{flags} are shares of the goals (the rest come from the same trajectory), so each must be in [0, 1] "
                f"and together at most 1, got {self.current:g} and {self.random:g}."
            )


@dataclass
class GoalBatch:
    """A batch of transitions with their goals; rewards and masks say whether the value goal is reached."""

    observations: torch.Tensor  # (B, obs_dim)
    actions: torch.Tensor  # (B, act_dim)
    next_observations: torch.Tensor  # (B, obs_dim)
    value_goals: torch.Tensor  # (B, obs_dim): the goals of the value (critic) losses
    actor_goals: torch.Tensor  # (B, obs_dim): the goals of the policy's loss
    rewards: torch.Tensor  # (B,): 0 where the value goal is the current state, else -1 (or 1 / 0)
    masks: torch.Tensor  # (B,): 0 where the value goal is reached (nothing to bootstrap), else 1
    indices: torch.Tensor  # (B,) int64: the transitions' indices in the sampler's Transitions
    value_goal_indices: torch.Tensor  # (B,) int64: the index of each value goal's state
    actor_goal_indices: torch.Tensor  # (B,) int64


class GoalSampler:
    """Batches with goals from Transitions whose episodes are contiguous and in order (data.to_transitions)."""

    def __init__(self, transitions: data.Transitions, discount: float, value: GoalMix, actor: GoalMix, negative_rewards: bool = True):
        value.check("--value-current-goals and --value-random-goals")
        actor.check("--actor-random-goals")
        if len(transitions) == 0 or not bool(transitions.episode_ends[-1]):
            raise data.DatasetError("Goal sampling needs whole episodes (the last transition must end one): split by episode.")
        self.transitions, self.discount, self.value, self.actor = transitions, discount, value, actor
        self.negative_rewards = negative_rewards
        # the index of the last transition of each transition's trajectory: a later goal never goes past it
        ends = torch.nonzero(transitions.episode_ends).squeeze(1)
        positions = torch.arange(len(transitions), device=ends.device)
        self.final_indices = ends[torch.searchsorted(ends, positions)]

    def sample_goals(self, indices: torch.Tensor, mix: GoalMix, generator: torch.Generator | None = None) -> torch.Tensor:
        """Goal indices for the transitions at `indices`, mixed as `mix` says (OGBench's GCDataset.sample_goals)."""
        size, device = indices.shape[0], indices.device
        final = self.final_indices[indices]
        if mix.geometric:  # P(k) = gamma^(k-1) (1 - gamma), k >= 1: the discounted occupancy of later states
            offsets = torch.empty(size, device=device).geometric_(1 - self.discount, generator=generator).long()
            later = torch.minimum(indices + offsets, final)
        else:  # uniform between the next state and the trajectory's last (the last itself if we are on it)
            u = torch.rand(size, device=device, generator=generator)
            later = torch.round(torch.minimum(indices + 1, final) * u + final * (1 - u)).long()
        anywhere = torch.randint(len(self.transitions), (size,), device=device, generator=generator)
        # among the goals that are not the current state, the trajectory's share is trajectory / (1 - current)
        not_current = max(1.0 - mix.current, 1e-12)
        goals = torch.where(torch.rand(size, device=device, generator=generator) < mix.trajectory / not_current, later, anywhere)
        return torch.where(torch.rand(size, device=device, generator=generator) < mix.current, indices, goals)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> GoalBatch:
        """A uniform batch of transitions with value and actor goals; everything stays on the data's device."""
        t = self.transitions
        if batch_size > len(t):
            raise checks.UserError(f"--batch-size {batch_size} is larger than the {len(t)} training transitions: pass a smaller one.")
        indices = torch.randint(len(t), (batch_size,), device=t.rewards.device, generator=generator)
        value_goal_indices = self.sample_goals(indices, self.value, generator)
        actor_goal_indices = self.sample_goals(indices, self.actor, generator)
        reached = (value_goal_indices == indices).float()  # the goal is the current state: reached, as OGBench counts it
        return GoalBatch(
            t.observations[indices], t.actions[indices], t.next_observations[indices],
            t.observations[value_goal_indices], t.observations[actor_goal_indices],
            reached - 1.0 if self.negative_rewards else reached, 1.0 - reached,
            indices, value_goal_indices, actor_goal_indices,
        )  # fmt: skip

    def subgoals(self, indices: torch.Tensor, goal_indices: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """HIQL's subgoals (OGBench's HGCDataset), as indices: the low level's goal is the state `steps` later in the
        trajectory (its last state if sooner); the high level's target on the way to `goal_indices` is that state too,
        but never past the goal when the goal lies ahead in the same trajectory."""
        later = torch.minimum(indices + steps, self.final_indices[indices])
        ahead = (goal_indices >= indices) & (goal_indices <= self.final_indices[indices])
        return later, torch.where(ahead, torch.minimum(later, goal_indices), later)


def actor_random_share(dataset_id: str, value_based: bool = True) -> float:
    """OGBench's share of random actor goals (hyperparameters.sh): 0.5 on stitch datasets for the value-based agents,
    whose policy can learn to reach goals no single trajectory reaches; 0 elsewhere and for GCBC."""
    return 0.5 if value_based and "stitch" in dataset_id else 0.0
