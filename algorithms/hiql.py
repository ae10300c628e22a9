"""Hierarchical implicit Q-learning (HIQL; Park et al. 2023), as OGBench's reference agent: one value, two policies.

A goal-conditioned value V(s, g), learned without actions (IQL's expectile on TD targets, "IVL"), ranks states by
how soon they reach g. Far from the goal its differences are noise; a few steps ahead they are not. So HIQL extracts
two policies from the one V: a high level that picks a subgoal about --subgoal-steps ahead, and a low level that
reaches it:
    L_V     = sum_e E [ |tau - 1(A < 0)| (r + gamma mask Vbar_e(s', g) - V_e(s, g))^2 ],
              A = r + gamma mask min_e Vbar_e(s', g) - mean_e Vbar_e(s, g)          (OGBench's IVL, twin V, targets Vbar)
    L_high  = -E [ min(exp(high_alpha (V(s_{t+k}, g) - V(s, g))), 100) log pi_h(phi([s; s_{t+k}]) | s, g) ]
    L_low   = -E [ min(exp(low_alpha (V(s', w) - V(s, w))), 100) log pi_l(a | s, phi([s; w])) ],  w = s_{t+k}
with V(s, g) = mean_e V_e(s, phi([s; g])): the value reads the goal through a representation phi([s; g]) of
--rep-dim numbers (length-normalised to sqrt(rep-dim)), which the value loss trains; the high level predicts the
subgoal's representation, the low level acts on it (phi gets no gradient from the policies, OGBench's state-based
setting). Value goals are OGBench's (20% current state, 50% later in the trajectory at a Geometric(1 - gamma)
offset, 30% any state); the high level's goals are later states of the trajectory (half random on stitch datasets),
and its target s_{t+k} stops at the goal. Acting: the high level's mean subgoal, normalised, then the low level's
mean action, clipped to the action box. Scored by OGBench's protocol: five evaluation goals, success at the end.

Departures from OGBench (impls/agents/hiql.py; its defaults in --help where this CPU allows them): 256-unit layers,
batch 256 and 20k updates by default (OGBench: 512, 1024 and 1M); PyTorch's default initialisation; one Adam per
network; the target value shares phi with the online value (our reading of OGBench's shared goal_rep module); a
random high-level goal that happens to lie ahead in the same trajectory stops the target at it (OGBench: never for
random goals); 10 evaluation episodes per goal (OGBench: 50).
"""

import copy
import math
from dataclasses import dataclass
from typing import Callable

import minari
import numpy as np
import torch
import torch.nn as nn

import data
import goals
import speed
import training


@dataclass
class Args:
    dataset: str = "ogbench/pointmaze-medium-navigate-v0"
    """a goal-conditioned OGBench id, ogbench/<name> without 'singletask' (built locally on first use where it cannot be downloaded)"""
    seed: int = 0
    """seed of torch, numpy, python and the evaluation envs"""
    device: str = "auto"
    """auto (CUDA when present), cpu, cuda or cuda:N"""
    threads: int = 1
    """torch CPU threads; 1 is fastest whenever anything else runs on the machine"""
    compile: bool = False
    """speed: torch.compile the training step into one graph (compiling takes ~30 s once; gains are in benchmarks/results/throughput.md)"""
    cudagraphs: bool = False
    """speed, CUDA only: capture each training step whole (sampling, backward passes and optimizer steps) as one CUDA graph and replay it"""
    total_steps: int = 20_000
    """gradient updates (OGBench: 1_000_000)"""
    batch_size: int = 256
    """transitions per update, one batch for every loss (OGBench: 1024)"""
    learning_rate: float = 3e-4
    """Adam learning rate of every network (OGBench's)"""
    hidden_dim: int = 256
    """width of the hidden layers of every network (OGBench: 512)"""
    hidden_layers: int = 3
    """hidden layers of every network (OGBench's 3)"""
    layer_norm: bool = True
    """LayerNorm after each hidden layer of the value and of phi (OGBench's)"""
    discount: float = 0.99
    """gamma; also the mean offset 1 / (1 - gamma) of the value goals drawn later in the trajectory (OGBench's 0.99)"""
    target_update_rate: float = 0.005
    """Polyak rate of the target value (OGBench's)"""
    expectile: float = 0.7
    """tau of the value's expectile regression (OGBench's HIQL: 0.7)"""
    high_alpha: float = 3.0
    """inverse temperature of the high level's advantage weights (OGBench's 3)"""
    low_alpha: float = 3.0
    """inverse temperature of the low level's advantage weights (OGBench's 3)"""
    subgoal_steps: int = 25
    """k: the subgoal is the state k steps later in the trajectory (OGBench: 25 on mazes, 10 on manipulation)"""
    rep_dim: int = 10
    """width of the goal representation phi([s; g]) (OGBench's 10)"""
    value_current_goals: float = 0.2
    """share of value goals that are the current state (OGBench's 0.2)"""
    value_random_goals: float = 0.3
    """share of value goals drawn from the whole dataset (OGBench's 0.3); the rest are later states of the same trajectory"""
    actor_random_goals: float | None = None
    """share of the high level's goals drawn from the whole dataset; the rest are later states of the trajectory (default: 0.5 on stitch datasets, else 0, as OGBench's hyperparameters.sh)"""
    eval_every: int = 5_000
    """evaluate the policy every this many updates (and once at the end)"""
    eval_episodes: int = 10
    """episodes per evaluation goal (five goals), run in parallel in a vector env (0 = no evaluation; OGBench: 50)"""
    capture_video: bool = False
    """record the first episode of each evaluation: run_dir/<run name>/videos/step_<N>.mp4 and TensorBoard's Images tab (MuJoCo without a display: MUJOCO_GL=egl, or MUJOCO_GL=osmesa with Debian's libosmesa6)"""
    log_every: int = 500
    """write losses to TensorBoard every this many updates"""
    run_dir: str = "runs"
    """TensorBoard logs and checkpoints go to run_dir/<run name>/"""
    exp_name: str = "hiql"
    """experiment name, part of the run name"""
    save_model: bool = False
    """write run_dir/<run name>/checkpoint.pt at the end"""
    checkpoint_every: int = 0
    """also write the checkpoint every this many updates (0 = never); Ctrl-C always writes one"""
    resume: str | None = None
    """continue the run saved in this checkpoint.pt: same folder, TensorBoard continues, the run's own settings (only --total-steps and run-control flags may change)"""
    progress: bool = True
    """show a progress bar (--no-progress for logs and CI)"""
    track: bool = False
    """mirror the scalars to Weights & Biases (needs `pip install wandb`)"""
    wandb_project: str = "cleanoffrl"
    """Weights & Biases project name"""


OGBENCH_BUDGET = dict(total_steps=1_000_000, batch_size=1024, hidden_dim=512, eval_every=100_000, eval_episodes=50)  # its main.py and agents
RECIPES = {  # OGBench's settings per dataset (stitch: half the actor goals random, this script's default there)
    "pointmaze-navigate": dict(
        flags=dict(OGBENCH_BUDGET, dataset="ogbench/pointmaze-medium-navigate-v0"),
        source="OGBench's impls/hyperparameters.sh (pointmaze-medium-navigate-v0, HIQL line) and main.py's defaults (1M updates, eval every 100k); its agent's batch 1024 and 3 x 512 layers",
        published="OGBench Table 2: 79 ± 5% success on pointmaze-medium-navigate-v0 (8 seeds, mean of the last three evaluations; transcribed, see benchmarks/results/goal_conditioned.md)",
    ),
    "pointmaze-stitch": dict(
        flags=dict(OGBENCH_BUDGET, dataset="ogbench/pointmaze-medium-stitch-v0"),
        source="OGBench's impls/hyperparameters.sh (pointmaze-medium-stitch-v0, HIQL line) and main.py's defaults (1M updates, eval every 100k); its agent's batch 1024 and 3 x 512 layers",
        published="OGBench Table 2: 74 ± 6% success on pointmaze-medium-stitch-v0 (8 seeds, mean of the last three evaluations; transcribed, see benchmarks/results/goal_conditioned.md)",
    ),
    "cube-single": dict(
        flags=dict(OGBENCH_BUDGET, dataset="ogbench/cube-single-play-v0", subgoal_steps=10),
        source="OGBench's impls/hyperparameters.sh (cube-single-play-v0, HIQL line; --subgoal-steps 10) and main.py's defaults (1M updates, eval every 100k); its agent's batch 1024 and 3 x 512 layers",
        published="OGBench Table 2: 15 ± 3% success on cube-single-play-v0 (8 seeds, mean of the last three evaluations; transcribed, see benchmarks/results/goal_conditioned.md)",
    ),
}


def mlp(in_dim: int, hidden_dim: int, hidden_layers: int, out_dim: int) -> nn.Sequential:
    """OGBench's MLP: hidden_layers Linear + GELU layers, then a linear output."""
    layers, width = [], in_dim
    for _ in range(hidden_layers):
        layers += [nn.Linear(width, hidden_dim), nn.GELU()]
        width = hidden_dim
    return nn.Sequential(*layers, nn.Linear(width, out_dim))


class GoalActor(nn.Module):
    """pi(a | s, g) = N(mu(s, g), I): OGBench's goal-conditioned actor with its constant std 1. The mean is unbounded
    while learning; acting, it is clipped to the action box (OGBench clips its actions to [-1, 1])."""

    def __init__(self, obs_dim: int, goal_dim: int, act_dim: int, hidden_dim: int, hidden_layers: int, low: np.ndarray, high: np.ndarray):
        super().__init__()
        self.net = mlp(obs_dim + goal_dim, hidden_dim, hidden_layers, act_dim)  # goals: observations (HIQL: representations)
        self.register_buffer("action_low", torch.tensor(low, dtype=torch.float32))
        self.register_buffer("action_high", torch.tensor(high, dtype=torch.float32))

    def forward(self, obs: torch.Tensor, goals: torch.Tensor) -> torch.Tensor:
        """The mean action mu(s, g), unclipped."""
        return self.net(torch.cat([obs, goals], -1))

    def act(self, obs: torch.Tensor, goals: torch.Tensor) -> torch.Tensor:
        """What the policy does: the mean, clipped to the action box."""
        return torch.clamp(self(obs, goals), self.action_low, self.action_high)

    def log_prob(self, obs: torch.Tensor, goals: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        squared = ((actions - self(obs, goals)) ** 2).sum(-1)
        return -0.5 * squared - 0.5 * actions.shape[-1] * math.log(2 * math.pi)


class EnsembleLinear(nn.Module):
    """`num_members` independent linear layers applied as one batched matmul: (E, B, in) -> (E, B, out)."""

    def __init__(self, num_members: int, in_dim: int, out_dim: int):
        super().__init__()
        bound = 1 / math.sqrt(in_dim)  # nn.Linear's default initialisation, per member
        self.weight = nn.Parameter(torch.empty(num_members, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_members, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) == len(self.weight):  # every member: no slice (a slice's backward writes a zero-padded weight copy)
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.baddbmm(self.bias[: len(x)], x, self.weight[: len(x)])  # the first few (TD3's actor follows Q_1)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm with its own scale and shift per ensemble member: each critic has its own LayerNorm (OGBench)."""

    def __init__(self, num_members: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_members, 1, dim))
        self.bias = nn.Parameter(torch.zeros(num_members, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias, nn.functional.layer_norm(x, x.shape[-1:]), self.weight)


class EnsembleMLP(nn.Module):
    """`num_members` OGBench MLPs (Linear, GELU, LayerNorm per hidden layer) in one pass: (B, in) -> (E, B, out)."""

    def __init__(self, num_members: int, in_dim: int, hidden_dim: int, hidden_layers: int, out_dim: int, layer_norm: bool):
        super().__init__()
        layers, width = [], in_dim
        for _ in range(hidden_layers):
            norm = EnsembleLayerNorm(num_members, hidden_dim) if layer_norm else nn.Identity()
            layers += [EnsembleLinear(num_members, width, hidden_dim), nn.GELU(), norm]
            width = hidden_dim
        self.num_members, self.net = num_members, nn.Sequential(*layers, EnsembleLinear(num_members, width, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.expand(self.num_members, -1, -1))  # the same batch for every member


class GoalRepresentation(nn.Module):
    """phi([s; g]): an MLP with LayerNorm to --rep-dim numbers, length-normalised to sqrt(rep_dim) (OGBench's goal_rep)."""

    def __init__(self, obs_dim: int, hidden_dim: int, hidden_layers: int, rep_dim: int, layer_norm: bool):
        super().__init__()
        self.net = EnsembleMLP(1, 2 * obs_dim, hidden_dim, hidden_layers, rep_dim, layer_norm)

    def forward(self, obs: torch.Tensor, goals: torch.Tensor) -> torch.Tensor:
        return length_normalize(self.net(torch.cat([obs, goals], -1))[0])


def length_normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True) * math.sqrt(x.shape[-1])


class ValueHeads(nn.Module):
    """Two V_e(s, z) MLPs on a state and a goal representation z in one pass: returns (2, batch)."""

    def __init__(self, obs_dim: int, hidden_dim: int, hidden_layers: int, rep_dim: int, layer_norm: bool):
        super().__init__()
        self.net = EnsembleMLP(2, obs_dim + rep_dim, hidden_dim, hidden_layers, 1, layer_norm)

    def forward(self, obs: torch.Tensor, reps: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, reps], -1)).squeeze(-1)


def expectile_weights(advantages: torch.Tensor, expectile: float) -> torch.Tensor:
    # |tau - 1(A < 0)|: OGBench's IVL takes the sign from the target value's advantage, the error from each V_e
    return torch.abs(expectile - (advantages < 0).float())


def update(
    batch: goals.GoalBatch, low_goals: torch.Tensor, high_targets: torch.Tensor, goal_rep: GoalRepresentation,
    value: ValueHeads, target_value: ValueHeads, low_actor: GoalActor, high_actor: GoalActor,
    optimizers: dict[str, torch.optim.Optimizer], args: Args,
) -> dict[str, torch.Tensor]:  # fmt: skip
    s, s_next, g, g_high = batch.observations, batch.next_observations, batch.value_goals, batch.actor_goals
    with torch.no_grad():  # the networks as they are before this step (OGBench's one jitted step)
        V = lambda obs, goal: value(obs, goal_rep(obs, goal)).mean(0)  # noqa: E731 - V(s, g): mean of the twin heads
        low_advantages = V(s_next, low_goals) - V(s, low_goals)
        high_advantages = V(high_targets, g_high) - V(s, g_high)
        subgoal_reps = goal_rep(s, low_goals)  # the low level acts on phi([s; w]): no gradient to phi
        target_reps = goal_rep(s, high_targets)  # what the high level predicts
        next_v_target = target_value(s_next, goal_rep(s_next, g))  # (2, B)
        v_target = target_value(s, goal_rep(s, g)).mean(0)
        advantages = batch.rewards + args.discount * batch.masks * next_v_target.min(0).values - v_target

    # L_V = sum_e E [ |tau - 1(A < 0)| (r + gamma mask Vbar_e(s', g) - V_e(s, g))^2 ]; phi learns through it
    v = value(s, goal_rep(s, g))
    td_targets = batch.rewards + args.discount * batch.masks * next_v_target
    value_loss = (expectile_weights(advantages, args.expectile) * (td_targets - v) ** 2).mean(1).sum()

    # L_low = -E [ min(exp(low_alpha (V(s', w) - V(s, w))), 100) log pi_l(a | s, phi([s; w])) ]
    low_weights = torch.exp(args.low_alpha * low_advantages).clamp(max=100.0)
    low_loss = -(low_weights * low_actor.log_prob(s, subgoal_reps, batch.actions)).mean()
    # L_high = -E [ min(exp(high_alpha (V(s_{t+k}, g) - V(s, g))), 100) log pi_h(phi([s; s_{t+k}]) | s, g) ]
    high_weights = torch.exp(args.high_alpha * high_advantages).clamp(max=100.0)
    high_loss = -(high_weights * high_actor.log_prob(s, g_high, target_reps)).mean()

    for optimizer in optimizers.values():
        optimizer.zero_grad(set_to_none=True)
    (value_loss + low_loss + high_loss).backward()  # no loss reaches another's networks: three separate steps
    for optimizer in optimizers.values():
        optimizer.step()
    # theta_target <- (1 - rate) theta_target + rate theta, in place (outside autograd: no graph)
    with torch.no_grad():
        torch._foreach_lerp_(list(target_value.parameters()), list(value.parameters()), args.target_update_rate)
    return {
        "losses/value": value_loss.detach(), "losses/actor": low_loss.detach(), "losses/high_actor": high_loss.detach(),
        "v/batch_max": v.detach().max(), "actor/advantage_mean": low_advantages.mean(),
        "actor/weight_mean": low_weights.mean(), "hiql/high_advantage_mean": high_advantages.mean(),
    }  # fmt: skip


def hierarchical_policy(high_actor: GoalActor, low_actor: GoalActor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Acting: the high level's mean subgoal representation, length-normalised, then the low level's clipped mean."""
    return lambda obs, goals: low_actor.act(obs, length_normalize(high_actor(obs, goals)))


def main(args: Args) -> training.RunResult:
    run = training.Run("hiql", args)  # seeds, device, run folder, TensorBoard; with --resume the checkpoint's settings
    args, device = run.args, run.device

    # data: every transition; goals drawn from the data itself, on the device (observations as they are, as OGBench)
    dataset = data.load_dataset(args.dataset)
    train = data.to_transitions(dataset, device)
    obs_dim, act_dim = train.observations.shape[1], train.actions.shape[1]
    random_goals = goals.actor_random_share(args.dataset) if args.actor_random_goals is None else args.actor_random_goals
    sampler = goals.GoalSampler(
        train, args.discount, value=goals.GoalMix(args.value_current_goals, args.value_random_goals, geometric=True),
        actor=goals.GoalMix(random=random_goals),
    )  # fmt: skip

    low, high = dataset.action_space.low, dataset.action_space.high
    sizes = (args.hidden_dim, args.hidden_layers)
    unbounded = np.full(args.rep_dim, np.inf)  # the high level's "action" is a representation: no box
    goal_rep = GoalRepresentation(obs_dim, *sizes, args.rep_dim, args.layer_norm).to(device)
    value = ValueHeads(obs_dim, *sizes, args.rep_dim, args.layer_norm).to(device)
    target_value = copy.deepcopy(value).requires_grad_(False)
    low_actor = GoalActor(obs_dim, args.rep_dim, act_dim, *sizes, low, high).to(device)
    high_actor = GoalActor(obs_dim, obs_dim, args.rep_dim, *sizes, -unbounded, unbounded).to(device)
    optimizers = {  # phi learns with the value: one optimizer for both
        "value": torch.optim.Adam([*goal_rep.parameters(), *value.parameters()], lr=args.learning_rate, fused=True),
        "low_actor": torch.optim.Adam(low_actor.parameters(), lr=args.learning_rate, fused=True),
        "high_actor": torch.optim.Adam(high_actor.parameters(), lr=args.learning_rate, fused=True),
    }
    update_step = speed.compile_step(update, args, device, optimizers)  # --compile, --cudagraphs; off = eager
    policy = hierarchical_policy(high_actor, low_actor)  # raw observations and goals in, actions out

    models = {"goal_rep": goal_rep, "value": value, "target_value": target_value, "low_actor": low_actor, "high_actor": high_actor}
    models |= {f"{name}_optimizer": optimizer for name, optimizer in optimizers.items()}
    for step in run.steps(models, data.Normalizer.identity(obs_dim, device)):
        batch = sampler.sample(args.batch_size)
        later, targets = sampler.subgoals(batch.indices, batch.actor_goal_indices, args.subgoal_steps)
        networks = (goal_rep, value, target_value, low_actor, high_actor)
        metrics = update_step(batch, train.observations[later], train.observations[targets], *networks, optimizers, args)
        if run.logging(step):
            run.log(step, metrics)
        if run.evaluating(step):
            run.evaluate(step, policy, dataset, goal_conditioned=True)
    return run.result()


def make_policy(
    args: Args, dataset: minari.MinariDataset, state: dict, device: torch.device
) -> Callable[[torch.Tensor], torch.Tensor]:  # fmt: skip
    """The policy whose score main() reports, rebuilt from a checkpoint's state (tools/evaluate.py reads any run's
    checkpoint.pt with it): raw observations in, actions out."""
    normalizer, low, high = data.Normalizer(**state["normalizer"]), dataset.action_space.low, dataset.action_space.high
    obs_dim, act_dim = normalizer.mean.shape[0], len(low)
    unbounded, sizes = np.full(args.rep_dim, np.inf), (args.hidden_dim, args.hidden_layers)
    networks = {"low_actor": GoalActor(obs_dim, args.rep_dim, act_dim, *sizes, low, high).to(device),
                "high_actor": GoalActor(obs_dim, obs_dim, args.rep_dim, *sizes, -unbounded, unbounded).to(device)}  # fmt: skip
    for name, network in networks.items():  # eval(): no dropout, as main() evaluates
        network.load_state_dict(state["models"][name])
        network.eval()
    return hierarchical_policy(networks["high_actor"], networks["low_actor"])  # goal-conditioned: policy(observations, goals)


if __name__ == "__main__":
    main(training.cli(Args, RECIPES))
