"""Goal-conditioned implicit Q-learning (GC-IQL; Kostrikov et al. 2022 with goals, as OGBench's reference agent).

IQL's in-sample value learning with a goal as part of the state and a reward for reaching it: r = 0 when the goal is
the current state (and nothing to bootstrap: mask 0), -1 otherwise, so -V(s, g) counts the steps to g:
    L_V = E [ L2^tau( min_i Qbar_i(s, a, g) - V(s, g) ) ],                L2^tau(u) = |tau - 1(u < 0)| u^2
    L_Q = E [ sum_i ( r(s, g) + gamma mask(s, g) V(s', g) - Q_i(s, a, g) )^2 ]
on value goals drawn by goals.py as OGBench's GCDataset (20% the current state, 50% a later state of the same
trajectory at a Geometric(1 - gamma) offset, 30% any dataset state). The policy pi(a | s, g) = N(mu(s, g), I) is
extracted on actor goals (later states of the trajectory, uniformly; half of them random on stitch datasets) by
    --extraction ddpg_bc (OGBench's default):  L_pi = -E [ Q(s, mu(s, g), g) / sg(E|Q|) + alpha log pi(a | s, g) ]
    --extraction awr:                          L_pi = -E [ min(exp(alpha (Q(s, a, g) - V(s, g))), 100) log pi(a | s, g) ]
with Q = min_i Q_i. As in OGBench's single jitted step, every loss uses the networks as they were before this step.
--expectile 0.5 makes V the plain mean of Q over the data's actions: GC-SARSA, the seed paper's other value learner.
The policy is scored by OGBench's protocol: the env's five evaluation goals, success at the end of each episode.

Departures from OGBench (impls/agents/gciql.py; its defaults in --help where this CPU allows them): 256-unit layers,
batch 256 and 20k updates by default (OGBench: 512, 1024 and 1M); PyTorch's default initialisation (OGBench:
Xavier-uniform, the actor's mean layer scaled by 0.01); one Adam per network (OGBench: one over all, the same
updates, as no loss reaches another's networks); 10 evaluation episodes per goal (OGBench: 50).
"""

import copy
import math
from dataclasses import dataclass
from typing import Callable, Literal

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
    extraction: Literal["ddpg_bc", "awr"] = "ddpg_bc"
    """policy extraction: ddpg_bc (Q(s, mu(s, g), g) plus alpha times BC, OGBench's default) or awr (advantage-weighted regression)"""
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
    """transitions per update, one batch for every loss (two, the value's and the policy's, where the data fractions differ; OGBench: 1024)"""
    value_data_fraction: float = 1.0
    """fraction of the episodes the value losses learn from (nested prefixes of a fixed order): a row of the seed paper's data-scaling matrix"""
    policy_data_fraction: float = 1.0
    """fraction of the episodes the policy learns from (nested prefixes of the same order): a column of the data-scaling matrix"""
    learning_rate: float = 3e-4
    """Adam learning rate of every network (OGBench's)"""
    hidden_dim: int = 256
    """width of the hidden layers of every network (OGBench: 512)"""
    hidden_layers: int = 3
    """hidden layers of every network (OGBench's 3)"""
    layer_norm: bool = True
    """LayerNorm after each hidden layer of the Q and V networks (OGBench's)"""
    discount: float = 0.99
    """gamma; also the mean offset 1 / (1 - gamma) of the value goals drawn later in the trajectory (OGBench's 0.99)"""
    target_update_rate: float = 0.005
    """Polyak rate of the target critics (OGBench's)"""
    expectile: float = 0.9
    """tau of V's expectile regression (OGBench's 0.9; 0.5: GC-SARSA, the data's own policy)"""
    alpha: float = 0.3
    """ddpg_bc: weight of the BC term; awr: inverse temperature of the advantage weights (OGBench's default 0.3; its pointmaze runs use 0.003, cube-single 1.0)"""
    value_current_goals: float = 0.2
    """share of value goals that are the current state (OGBench's 0.2)"""
    value_random_goals: float = 0.3
    """share of value goals drawn from the whole dataset (OGBench's 0.3); the rest are later states of the same trajectory"""
    actor_random_goals: float | None = None
    """share of actor goals drawn from the whole dataset; the rest are later states of the trajectory (default: 0.5 on stitch datasets, else 0, as OGBench's hyperparameters.sh)"""
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
    exp_name: str = "gciql"
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
        flags=dict(OGBENCH_BUDGET, dataset="ogbench/pointmaze-medium-navigate-v0", alpha=0.003),
        source="OGBench's impls/hyperparameters.sh (pointmaze-medium-navigate-v0, GCIQL line; --alpha 0.003) and main.py's defaults (1M updates, eval every 100k); its agent's batch 1024 and 3 x 512 layers",
        published="OGBench Table 2: 53 ± 8% success on pointmaze-medium-navigate-v0 (8 seeds, mean of the last three evaluations; transcribed, see benchmarks/results/goal_conditioned.md)",
    ),
    "pointmaze-stitch": dict(
        flags=dict(OGBENCH_BUDGET, dataset="ogbench/pointmaze-medium-stitch-v0", alpha=0.003),
        source="OGBench's impls/hyperparameters.sh (pointmaze-medium-stitch-v0, GCIQL line; --alpha 0.003) and main.py's defaults (1M updates, eval every 100k); its agent's batch 1024 and 3 x 512 layers",
        published="OGBench Table 2: 21 ± 9% success on pointmaze-medium-stitch-v0 (8 seeds, mean of the last three evaluations; transcribed, see benchmarks/results/goal_conditioned.md)",
    ),
    "cube-single": dict(
        flags=dict(OGBENCH_BUDGET, dataset="ogbench/cube-single-play-v0", alpha=1.0),
        source="OGBench's impls/hyperparameters.sh (cube-single-play-v0, GCIQL line; --alpha 1.0) and main.py's defaults (1M updates, eval every 100k); its agent's batch 1024 and 3 x 512 layers",
        published="OGBench Table 2: 68 ± 6% success on cube-single-play-v0 (8 seeds, mean of the last three evaluations; transcribed, see benchmarks/results/goal_conditioned.md)",
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


class GoalCritics(nn.Module):
    """Two Q(s, a, g) networks in one pass: returns (2, batch). OGBench's twin critics with LayerNorm."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, hidden_layers: int, layer_norm: bool):
        super().__init__()
        self.net = EnsembleMLP(2, 2 * obs_dim + act_dim, hidden_dim, hidden_layers, 1, layer_norm)

    def forward(self, obs: torch.Tensor, goals: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, goals, actions], -1)).squeeze(-1)


class GoalValue(nn.Module):
    """V(s, g): returns (batch,)."""

    def __init__(self, obs_dim: int, hidden_dim: int, hidden_layers: int, layer_norm: bool):
        super().__init__()
        self.net = EnsembleMLP(1, 2 * obs_dim, hidden_dim, hidden_layers, 1, layer_norm)

    def forward(self, obs: torch.Tensor, goals: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, goals], -1))[0, :, 0]


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    # L2^tau(u) = |tau - 1(u < 0)| u^2 (IQL); tau = 0.5 is half the squared error: plain regression
    return torch.abs(expectile - (diff < 0).float()) * diff**2


def update(
    batch: goals.GoalBatch, policy_batch: goals.GoalBatch, actor: GoalActor, critic: GoalCritics, target_critic: GoalCritics,
    value: GoalValue, optimizers: dict[str, torch.optim.Optimizer], args: Args,
) -> dict[str, torch.Tensor]:  # fmt: skip
    s, a, g = batch.observations, batch.actions, batch.value_goals  # the value losses' batch
    s_pi, a_pi, g_actor = policy_batch.observations, policy_batch.actions, policy_batch.actor_goals  # the policy's (the same batch at equal data fractions)
    with torch.no_grad():  # everything from the networks as they are before this step (OGBench's one jitted step)
        target_q = target_critic(s, g, a).min(0).values
        next_v = value(batch.next_observations, g)

    # the policy first: a DDPG+BC gradient reaches the critics too, and is cleared before the critics' own step
    if args.extraction == "awr":  # L_pi = -E [ min(exp(alpha (Q(s,a,g) - V(s,g))), 100) log pi(a|s,g) ]
        with torch.no_grad():
            advantages = critic(s_pi, g_actor, a_pi).min(0).values - value(s_pi, g_actor)
            weights = torch.exp(args.alpha * advantages).clamp(max=100.0)
        actor_loss = -(weights * actor.log_prob(s_pi, g_actor, a_pi)).mean()
        extraction = {"actor/advantage_mean": advantages.mean(), "actor/weight_mean": weights.mean()}
    else:  # L_pi = -E [ Q(s, mu(s,g), g) / sg(E|Q|) + alpha log pi(a|s,g) ]
        q_policy = critic(s_pi, g_actor, actor.act(s_pi, g_actor)).min(0).values
        q_loss = -q_policy.mean() / (q_policy.abs().mean().detach() + 1e-6)  # the Q term at any Q scale (OGBench)
        bc_loss = -(args.alpha * actor.log_prob(s_pi, g_actor, a_pi)).mean()
        actor_loss = q_loss + bc_loss
        extraction = {"losses/q": q_loss.detach(), "losses/bc": bc_loss.detach(), "q/policy_mean": q_policy.detach().mean()}
    optimizers["actor"].zero_grad(set_to_none=True)
    actor_loss.backward()
    optimizers["actor"].step()

    # L_V = E [ L2^tau( min_i Qbar_i(s,a,g) - V(s,g) ) ]
    v = value(s, g)
    value_loss = expectile_loss(target_q - v, args.expectile).mean()
    optimizers["value"].zero_grad(set_to_none=True)
    value_loss.backward()
    optimizers["value"].step()

    # L_Q = E [ sum_i (r + gamma mask V(s', g) - Q_i(s,a,g))^2 ]: mask 0 where the goal is reached, never at a time limit
    td_target = batch.rewards + args.discount * batch.masks * next_v
    q = critic(s, g, a)
    critic_loss = ((q - td_target) ** 2).mean(1).sum()
    optimizers["critic"].zero_grad(set_to_none=True)
    critic_loss.backward()
    optimizers["critic"].step()

    # theta_target <- (1 - rate) theta_target + rate theta, in place (outside autograd: no graph)
    with torch.no_grad():
        torch._foreach_lerp_(list(target_critic.parameters()), list(critic.parameters()), args.target_update_rate)
    return {
        "losses/actor": actor_loss.detach(), "losses/value": value_loss.detach(), "losses/critic": critic_loss.detach(),
        "q/data_mean": q.detach().mean(), "v/batch_max": v.detach().max(), **extraction,
    }  # fmt: skip


def main(args: Args) -> training.RunResult:
    run = training.Run("gciql", args, variant=args.extraction)  # seeds, device, run folder, TensorBoard
    args, device = run.args, run.device

    # data: every transition (value and policy data: nested prefixes of the episodes); goals drawn from the data
    # itself, on the device (observations as they are, as OGBench)
    dataset = data.load_dataset(args.dataset)
    train = data.to_transitions(dataset, device)
    obs_dim, act_dim = train.observations.shape[1], train.actions.shape[1]
    random_goals = goals.actor_random_share(args.dataset) if args.actor_random_goals is None else args.actor_random_goals
    value_mix, actor_mix = goals.GoalMix(args.value_current_goals, args.value_random_goals, geometric=True), goals.GoalMix(random=random_goals)
    value_goals = goals.GoalSampler(data.subsample(train, args.value_data_fraction, seed=args.seed), args.discount, value_mix, actor_mix)
    policy_goals = value_goals if args.policy_data_fraction == args.value_data_fraction else goals.GoalSampler(
        data.subsample(train, args.policy_data_fraction, seed=args.seed), args.discount, value_mix, actor_mix
    )  # fmt: skip

    low, high = dataset.action_space.low, dataset.action_space.high
    actor = GoalActor(obs_dim, obs_dim, act_dim, args.hidden_dim, args.hidden_layers, low, high).to(device)
    critic = GoalCritics(obs_dim, act_dim, args.hidden_dim, args.hidden_layers, args.layer_norm).to(device)
    target_critic = copy.deepcopy(critic).requires_grad_(False)
    value = GoalValue(obs_dim, args.hidden_dim, args.hidden_layers, args.layer_norm).to(device)
    optimizers = {
        name: torch.optim.Adam(network.parameters(), lr=args.learning_rate, fused=True)
        for name, network in (("actor", actor), ("critic", critic), ("value", value))
    }
    update_step = speed.compile_step(update, args, device, optimizers)  # --compile, --cudagraphs; off = eager
    policy = actor.act  # raw observations and goals in, actions out

    models = {"actor": actor, "critic": critic, "target_critic": target_critic, "value": value}
    models |= {f"{name}_optimizer": optimizer for name, optimizer in optimizers.items()}
    for step in run.steps(models, data.Normalizer.identity(obs_dim, device)):
        batch = value_goals.sample(args.batch_size)
        policy_batch = batch if policy_goals is value_goals else policy_goals.sample(args.batch_size)
        metrics = update_step(batch, policy_batch, actor, critic, target_critic, value, optimizers, args)
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
    networks = {"actor": GoalActor(obs_dim, obs_dim, act_dim, args.hidden_dim, args.hidden_layers, low, high).to(device)}
    for name, network in networks.items():  # eval(): no dropout, as main() evaluates
        network.load_state_dict(state["models"][name])
        network.eval()
    return networks["actor"].act  # goal-conditioned: policy(observations, goals), as evaluation.evaluate(goal_conditioned=True) calls it


if __name__ == "__main__":
    main(training.cli(Args, RECIPES))
