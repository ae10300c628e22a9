"""Contrastive RL (CRL; Eysenbach et al. 2022), as OGBench's reference agent: the seed paper's third value learner.

No reward and no bootstrapping: a critic learns which goals follow which state-action pairs, by classification.
Q(s, a, g) = phi(s, a)^T psi(g) / sqrt(d) is trained with binary noise-contrastive estimation over the batch: for
each (s_i, a_i) its own goal g_i (a later state of its trajectory, at a Geometric(1 - gamma) offset: a sample of the
discounted state occupancy) is the positive, the batch's other goals g_j are the negatives:
    L_Q = -mean_{i, j} [ 1(i = j) log sigmoid(Q(s_i, a_i, g_j)) + 1(i != j) log(1 - sigmoid(Q(s_i, a_i, g_j))) ]
whose optimum is Q = log( p^pi(g | s, a) / p(g) ): the log of how much likelier g is after (s, a) than anywhere, a
value up to a monotone map. Two critics (their minimum is used), each its own phi and psi. The policy
pi(a | s, g) = N(mu(s, g), I) is extracted on actor goals (later states of the trajectory, uniformly; half of them
random on stitch datasets) by
    --extraction ddpg_bc (OGBench's default):  L_pi = -E [ Q(s, mu(s, g), g) / sg(E|Q|) + alpha log pi(a | s, g) ]
    --extraction awr:                          L_pi = -E [ min(exp(alpha (Q(s, a, g) - V(s, g))), 100) log pi(a | s, g) ]
where AWR's V(s, g) = phi_V(s)^T psi_V(g) / sqrt(d) is a second contrastive critic without the action (OGBench's).
The policy is scored by OGBench's protocol: the env's five evaluation goals, success at the end of each episode.

Departures from OGBench (impls/agents/crl.py; its defaults in --help where this CPU allows them): 256-unit layers
and latent, batch 256 and 20k updates by default (OGBench: 512, 512, 1024 and 1M; the batch is also the number of
negatives); PyTorch's default initialisation (OGBench: Xavier-uniform, the actor's mean layer scaled by 0.01); one
Adam per network (OGBench: one over all: the same updates, as no loss reaches another's networks); 10 evaluation
episodes per goal (OGBench: 50).
"""

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
    """policy extraction: ddpg_bc (Q(s, mu(s, g), g) plus alpha times BC, OGBench's default) or awr (advantage-weighted regression, with a contrastive V)"""
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
    """transitions per update, one batch for every loss (two, the critics' and the policy's, where the data fractions differ); each positive pair has batch_size - 1 negatives (OGBench: 1024)"""
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
    latent_dim: int = 256
    """d, the width of the representations phi and psi (OGBench: 512)"""
    layer_norm: bool = True
    """LayerNorm after each hidden layer of phi and psi (OGBench's)"""
    discount: float = 0.99
    """gamma: the goals of the critic are later states at a Geometric(1 - gamma) offset, mean 1 / (1 - gamma) (OGBench's 0.99)"""
    alpha: float = 0.1
    """ddpg_bc: weight of the BC term; awr: inverse temperature of the advantage weights (OGBench's default 0.1; its pointmaze runs use 0.03, cube-single 3.0)"""
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
    exp_name: str = "crl"
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
        flags=dict(OGBENCH_BUDGET, dataset="ogbench/pointmaze-medium-navigate-v0", latent_dim=512, alpha=0.03),
        source="OGBench's impls/hyperparameters.sh (pointmaze-medium-navigate-v0, CRL line; --alpha 0.03) and main.py's defaults (1M updates, eval every 100k); its agent's batch 1024, 3 x 512 layers and latent 512",
        published="OGBench Table 2: 29 ± 7% success on pointmaze-medium-navigate-v0 (8 seeds, mean of the last three evaluations; transcribed, see benchmarks/results/goal_conditioned.md)",
    ),
    "pointmaze-stitch": dict(
        flags=dict(OGBENCH_BUDGET, dataset="ogbench/pointmaze-medium-stitch-v0", latent_dim=512, alpha=0.03),
        source="OGBench's impls/hyperparameters.sh (pointmaze-medium-stitch-v0, CRL line; --alpha 0.03) and main.py's defaults (1M updates, eval every 100k); its agent's batch 1024, 3 x 512 layers and latent 512",
        published="OGBench Table 2: 0 ± 1% success on pointmaze-medium-stitch-v0 (8 seeds, mean of the last three evaluations; transcribed, see benchmarks/results/goal_conditioned.md)",
    ),
    "cube-single": dict(
        flags=dict(OGBENCH_BUDGET, dataset="ogbench/cube-single-play-v0", latent_dim=512, alpha=3.0),
        source="OGBench's impls/hyperparameters.sh (cube-single-play-v0, CRL line; --alpha 3.0) and main.py's defaults (1M updates, eval every 100k); its agent's batch 1024, 3 x 512 layers and latent 512",
        published="OGBench Table 2: 19 ± 2% success on cube-single-play-v0 (8 seeds, mean of the last three evaluations; transcribed, see benchmarks/results/goal_conditioned.md)",
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


class BilinearCritics(nn.Module):
    """`num_critics` contrastive critics f(x, g) = phi(x)^T psi(g) / sqrt(d), x = (s, a) for Q or s for V (OGBench's
    GCBilinearValue): phi and psi are each their own ensemble of MLPs."""

    def __init__(self, num_critics: int, in_dim: int, goal_dim: int, hidden_dim: int, hidden_layers: int, latent_dim: int, layer_norm: bool):
        super().__init__()
        self.phi = EnsembleMLP(num_critics, in_dim, hidden_dim, hidden_layers, latent_dim, layer_norm)
        self.psi = EnsembleMLP(num_critics, goal_dim, hidden_dim, hidden_layers, latent_dim, layer_norm)

    def representations(self, inputs: torch.Tensor, goals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """phi(x), psi(g), each (num_critics, B, d), scaled so that their dot product is f."""
        phi, psi = self.phi(inputs), self.psi(goals)
        return phi / phi.shape[-1] ** 0.25, psi / psi.shape[-1] ** 0.25

    def forward(self, inputs: torch.Tensor, goals: torch.Tensor) -> torch.Tensor:
        """f(x_i, g_i) for each row: (num_critics, B)."""
        phi, psi = self.representations(inputs, goals)
        return (phi * psi).sum(-1)


def contrastive_loss(critics: BilinearCritics, inputs: torch.Tensor, goals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary NCE over in-batch negatives: logits[e, i, j] = f_e(x_i, g_j); the diagonal (each row's own goal) is
    labelled 1, every other goal 0; mean over critics and all B^2 pairs (OGBench's). Returns (loss, logits)."""
    phi, psi = critics.representations(inputs, goals)
    logits = torch.einsum("eik,ejk->eij", phi, psi)  # (critics, B, B)
    labels = torch.eye(logits.shape[-1], device=logits.device).expand_as(logits)
    return nn.functional.binary_cross_entropy_with_logits(logits, labels), logits


def update(
    batch: goals.GoalBatch, policy_batch: goals.GoalBatch, actor: GoalActor, critic: BilinearCritics, value: BilinearCritics | None,
    optimizers: dict[str, torch.optim.Optimizer], args: Args,
) -> dict[str, torch.Tensor]:  # fmt: skip
    s, a, g = batch.observations, batch.actions, batch.value_goals  # the critics' batch
    s_pi, a_pi, g_actor = policy_batch.observations, policy_batch.actions, policy_batch.actor_goals  # the policy's (the same batch at equal data fractions)

    # the policy first, with the critics as they are before this step; a DDPG+BC gradient reaches the critics too,
    # and is cleared before their own step
    if args.extraction == "awr":  # L_pi = -E [ min(exp(alpha (Q(s,a,g) - V(s,g))), 100) log pi(a|s,g) ]
        with torch.no_grad():
            advantages = critic(torch.cat([s_pi, a_pi], -1), g_actor).min(0).values - value(s_pi, g_actor)[0]
            weights = torch.exp(args.alpha * advantages).clamp(max=100.0)
        actor_loss = -(weights * actor.log_prob(s_pi, g_actor, a_pi)).mean()
        extraction = {"actor/advantage_mean": advantages.mean(), "actor/weight_mean": weights.mean()}
    else:  # L_pi = -E [ Q(s, mu(s,g), g) / sg(E|Q|) + alpha log pi(a|s,g) ]
        q_policy = critic(torch.cat([s_pi, actor.act(s_pi, g_actor)], -1), g_actor).min(0).values
        q_loss = -q_policy.mean() / (q_policy.abs().mean().detach() + 1e-6)  # the Q term at any Q scale (OGBench)
        bc_loss = -(args.alpha * actor.log_prob(s_pi, g_actor, a_pi)).mean()
        actor_loss = q_loss + bc_loss
        extraction = {"losses/q": q_loss.detach(), "losses/bc": bc_loss.detach(), "q/policy_mean": q_policy.detach().mean()}
    optimizers["actor"].zero_grad(set_to_none=True)
    actor_loss.backward()
    optimizers["actor"].step()

    # L_Q: binary NCE, (s_i, a_i) with its own later state g_i against the batch's other goals
    critic_loss, logits = contrastive_loss(critic, torch.cat([s, a], -1), g)
    optimizers["critic"].zero_grad(set_to_none=True)
    critic_loss.backward()
    optimizers["critic"].step()
    metrics = {"losses/actor": actor_loss.detach(), "losses/critic": critic_loss.detach(), **extraction}

    if value is not None:  # AWR's V(s, g): the same NCE without the action
        value_loss, _ = contrastive_loss(value, s, g)
        optimizers["value"].zero_grad(set_to_none=True)
        value_loss.backward()
        optimizers["value"].step()
        metrics["losses/value"] = value_loss.detach()

    with torch.no_grad():
        logits = logits.mean(0)  # over the critics
        positive = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
        metrics |= {
            "q/data_mean": logits.diagonal().mean(), "crl/logits_negative": logits[~positive].mean(),
            "crl/accuracy": (logits.argmax(1) == torch.arange(len(logits), device=logits.device)).float().mean(),
        }  # fmt: skip
    return metrics


def main(args: Args) -> training.RunResult:
    run = training.Run("crl", args, variant=args.extraction)  # seeds, device, run folder, TensorBoard
    args, device = run.args, run.device

    # data: every transition (critic and policy data: nested prefixes of the episodes); goals drawn from the data
    # itself, on the device (observations as they are, as OGBench)
    dataset = data.load_dataset(args.dataset)
    train = data.to_transitions(dataset, device)
    obs_dim, act_dim = train.observations.shape[1], train.actions.shape[1]
    random_goals = goals.actor_random_share(args.dataset) if args.actor_random_goals is None else args.actor_random_goals
    # the critic's goals: always a later state of the same trajectory, at a Geometric(1 - gamma) offset (OGBench's)
    value_mix, actor_mix = goals.GoalMix(geometric=True), goals.GoalMix(random=random_goals)
    value_goals = goals.GoalSampler(data.subsample(train, args.value_data_fraction, seed=args.seed), args.discount, value_mix, actor_mix)
    policy_goals = value_goals if args.policy_data_fraction == args.value_data_fraction else goals.GoalSampler(
        data.subsample(train, args.policy_data_fraction, seed=args.seed), args.discount, value_mix, actor_mix
    )  # fmt: skip

    low, high = dataset.action_space.low, dataset.action_space.high
    sizes = (args.hidden_dim, args.hidden_layers, args.latent_dim, args.layer_norm)
    actor = GoalActor(obs_dim, obs_dim, act_dim, args.hidden_dim, args.hidden_layers, low, high).to(device)
    critic = BilinearCritics(2, obs_dim + act_dim, obs_dim, *sizes).to(device)
    value = BilinearCritics(1, obs_dim, obs_dim, *sizes).to(device) if args.extraction == "awr" else None  # AWR only
    networks = {"actor": actor, "critic": critic} | ({"value": value} if value is not None else {})
    optimizers = {name: torch.optim.Adam(network.parameters(), lr=args.learning_rate, fused=True) for name, network in networks.items()}
    update_step = speed.compile_step(update, args, device, optimizers)  # --compile, --cudagraphs; off = eager
    policy = actor.act  # raw observations and goals in, actions out

    models = networks | {f"{name}_optimizer": optimizer for name, optimizer in optimizers.items()}
    for step in run.steps(models, data.Normalizer.identity(obs_dim, device)):
        batch = value_goals.sample(args.batch_size)
        policy_batch = batch if policy_goals is value_goals else policy_goals.sample(args.batch_size)
        metrics = update_step(batch, policy_batch, actor, critic, value, optimizers, args)
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
