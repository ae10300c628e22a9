"""CQL(H): conservative Q-learning with a SAC actor (Kumar et al. 2020, "Conservative Q-Learning for
Offline Reinforcement Learning").

The critics minimise the SAC/TD error plus a penalty that pushes Q down on actions the policy might
pick and up on the dataset's actions (Eq. 4 of the paper, the H(mu) regulariser):
    min_Q  alpha * E_{s~D} [ log sum_a exp Q(s, a) - E_{a~D(.|s)} Q(s, a) ] + 1/2 E_D (Q(s, a) - B^pi Q'(s, a))^2,
with log sum_a exp Q estimated by importance sampling from uniform actions and from the current
policy at s and at s'. The learned Q then lower-bounds the policy's value on unseen actions, and the
actor maximises it: max_pi E_s [ min_i Q_i(s, a~pi) - alpha_H log pi(a|s) ].

Departures from the paper: the actor's log-std is clamped to [-20, 2] and its mean is not clamped, as in CORL
(the official rlkit policy clamps log-std to [-5, 2] and the mean to +-9). No flags exist for CORL's AntMaze
extras: cql_clip_diff_min -200, orthogonal initialisation, and a critic depth separate from the actor's.
"""

import copy
import math
from dataclasses import dataclass, replace
from typing import Callable

import minari
import torch
import torch.nn as nn
import torch.nn.functional as F

import data
import evaluation
import training


@dataclass
class Args:
    dataset: str = "pendulum/medium-v0"
    """Minari dataset id: the local suite (`python algorithms/local_suite.py` lists it) or a remote id"""
    seed: int = 0
    """seed of torch, numpy, python and the evaluation envs"""
    device: str = "auto"
    """auto (CUDA when present), cpu, cuda or cuda:N"""
    threads: int = 1
    """torch CPU threads; 1 is fastest whenever anything else runs on the machine"""
    compile: bool = False
    """speed: torch.compile the update step (compiling takes ~30 s once; gains are in benchmarks/results/throughput.md)"""
    cudagraphs: bool = False
    """speed, CUDA only: also replay the compiled update as CUDA graphs (torch.compile's reduce-overhead mode)"""
    total_steps: int = 3_000
    """gradient updates (the paper: 1_000_000 on D4RL). CQL costs ~10x TD3+BC per update: 3_000 is minutes on a GPU, ~15 min on one CPU core with the paper's 3x256 nets (--hidden-dim 64 --hidden-layers 2: ~1.5 min)"""
    batch_size: int = 256
    """transitions per update"""
    actor_lr: float = 1e-4
    """Adam learning rate of the actor and of the entropy temperature (official code: 1e-4; CORL: 3e-5 locomotion, 1e-4 antmaze/adroit)"""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics and of the Lagrange multiplier"""
    hidden_dim: int = 256
    """width of the hidden layers of the actor and of each critic"""
    hidden_layers: int = 3
    """hidden layers of the actor and of each critic (the paper's code: 3; TD3+BC's nets: 2; CORL antmaze: 5 for one critic only, no critic-only flag here)"""
    num_critics: int = 2
    """critics in the ensemble; the target is the minimum over them"""
    gamma: float = 0.99
    """discount factor"""
    tau: float = 0.005
    """soft target update rate: target <- (1 - tau) target + tau online"""
    cql_alpha: float = 5.0
    """weight of the conservative term, min_q_weight (official code: 1.0 with Lagrange on by default, 5 or 10 without in its README locomotion command; CORL: 10 locomotion, 5 antmaze, 1 adroit)"""
    cql_num_actions: int = 10
    """actions sampled per state from each of uniform, pi(.|s), pi(.|s') for the logsumexp"""
    cql_temperature: float = 1.0
    """temperature of the logsumexp over sampled actions"""
    lagrange: bool = False
    """tune the conservative weight alpha' >= 0 so the gap logsumexp Q - Q(data) stays near --target-action-gap (the paper's Lagrange version; its AntMaze recipe: --lagrange --target-action-gap 5; official code: on by default, off in its README locomotion command; CORL: on for antmaze only)"""
    target_action_gap: float = 5.0
    """tau of the Lagrange version: alpha' grows while --cql-alpha * gap exceeds it (official code: 5; CORL antmaze: 0.8, but CORL compares gap, not --cql-alpha * gap, with tau, so its 0.8 at --cql-alpha 5 is 4 here)"""
    max_backup: bool = False
    """backup max over --cql-num-actions policy actions at s' of the target Q (a variant in the paper; official code: off, also in its AntMaze command; CORL: on for antmaze)"""
    backup_entropy: bool = False
    """subtract alpha_H log pi(a'|s') in the target (soft backup; the paper's code leaves it off)"""
    target_entropy: float | None = None
    """entropy target of the automatic temperature tuning (default -act_dim)"""
    bc_steps: int = 0
    """first updates in which the actor maximises log pi(a_data|s) instead of Q (the paper's code: 40_000 on D4RL, part of a 1M-step budget; CORL: 0; with this file's short default budget it is off)"""
    normalize_obs: bool = False
    """standardise observations with the training data's mean and std (off in the paper's code; CORL: on for locomotion/adroit, off for antmaze)"""
    reward_scale: float = 1.0
    """r <- r * reward_scale + reward_shift. D4RL locomotion: as is; the paper's code on AntMaze: --reward-scale 4 --reward-shift -2, i.e. (r - 0.5) * 4 (CORL: 10 and -5)"""
    reward_shift: float = 0.0
    """added to every reward after scaling (see --reward-scale)"""
    return_range_scale: bool = False
    """first scale rewards by 1000 / (max - min episode return) (CORL's optional locomotion normalisation)"""
    validation_fraction: float = 0.0
    """fraction of episodes held out for the valid/* losses and action MSE (0 = train on every transition, as the papers do; the held-out episodes are the same for every --seed)"""
    eval_every: int = 1_000
    """evaluate the policy every this many updates (and once at the end)"""
    eval_episodes: int = 10
    """episodes per evaluation, run in parallel in a vector env (0 = no evaluation)"""
    capture_video: bool = False
    """record the first episode of each evaluation: run_dir/<run name>/videos/step_<N>.mp4 and TensorBoard's Images tab (MuJoCo without a display: MUJOCO_GL=egl, or MUJOCO_GL=osmesa with Debian's libosmesa6)"""
    log_every: int = 500
    """write losses to TensorBoard every this many updates"""
    run_dir: str = "runs"
    """TensorBoard logs and checkpoints go to run_dir/<run name>/"""
    exp_name: str = "cql"
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


# `python algorithms/cql.py RECIPE [flags]`: a paper's settings for a family of datasets; flags after the name override
# them. README's recipe table is generated from these (python benchmarks/recipes.py --readme README.md).
RECIPES = {
    "antmaze": dict(
        flags=dict(dataset="D4RL/antmaze/umaze-v1", lagrange=True, target_action_gap=5.0, cql_alpha=5.0, reward_scale=4.0, reward_shift=-2.0,
                   bc_steps=40_000, total_steps=3_000_000, eval_every=50_000, eval_episodes=100),  # fmt: skip
        source="the official code: its README's AntMaze command (lagrange_thresh 5, min_q_weight 5, policy_lr 1e-4), "
               "`d4rl/examples/cql_antmaze_new.py` (rewards (r - 0.5) x 4, policy_eval_start 40k, 3000 epochs of 1000 updates); "
               "evaluation as CORL (100 episodes every 50k)",
        published="CQL Table 2 (D4RL -v0): umaze 74.0, medium-play 61.2, large-play 15.8",
    ),
    "antmaze-corl": dict(
        flags=dict(dataset="D4RL/antmaze/umaze-v1", lagrange=True, cql_alpha=5.0, target_action_gap=4.0, max_backup=True, reward_scale=10.0,
                   reward_shift=-5.0, normalize_obs=False, total_steps=1_000_000, eval_every=50_000, eval_episodes=100),  # fmt: skip
        source="CORL: `configs/offline/cql/antmaze/*_v2.yaml` (its gap 0.8 is compared with the gap itself, here with 5 x gap: 4); "
               "CORL's 5-layer critic, -200 clip of the conservative term and orthogonal init have no flag here",
        published="CORL (-v2): umaze 92.8, medium-play 65.8, large-play 20.8",
    ),
    "adroit": dict(
        flags=dict(dataset="D4RL/pen/human-v2", cql_alpha=1.0, normalize_obs=True, total_steps=1_000_000, eval_every=5_000),
        source="CORL: `configs/offline/cql/pen/*_v1.yaml` (no Lagrange, rewards as logged; orthogonal init has no flag here)",
        published="CORL (-v1): pen-human 13.7, pen-cloned 1.0; CQL Table 2 (-v0, its own settings, not published): 37.5 / 39.2",
    ),
}


def mlp(in_dim: int, hidden_dim: int, hidden_layers: int, out_dim: int) -> nn.Sequential:
    layers, width = [], in_dim
    for _ in range(hidden_layers):
        layers += [nn.Linear(width, hidden_dim), nn.ReLU()]
        width = hidden_dim
    return nn.Sequential(*layers, nn.Linear(width, out_dim))


class TanhGaussianActor(nn.Module):
    """SAC policy a = tanh(u), u ~ N(mu(s), sigma(s)^2), in actions rescaled to [-1, 1]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, hidden_layers: int):
        super().__init__()
        self.net = mlp(obs_dim, hidden_dim, hidden_layers, 2 * act_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs).chunk(2, -1)
        return mean, log_std.clamp(-20.0, 2.0)

    @staticmethod
    def sample(mean: torch.Tensor, log_std: torch.Tensor, num: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised a ~ pi(.|s) and log pi(a|s); num adds a leading dim of samples per state."""
        shape = mean.shape if num is None else (num, *mean.shape)
        eps = torch.randn(shape, device=mean.device)
        u = mean + log_std.exp() * eps
        log_prob_u = (-0.5 * eps**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # log pi(a) = log N(u) - sum log(1 - tanh(u)^2), written stably as 2 (log 2 - u - softplus(-2u))
        return torch.tanh(u), log_prob_u - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)

    @staticmethod
    def log_prob(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a|s) of given actions in [-1, 1] (the BC warm-start's likelihood)."""
        u = torch.atanh(actions.clamp(-1 + 1e-5, 1 - 1e-5))
        eps = (u - mean) * torch.exp(-log_std)
        log_prob_u = (-0.5 * eps**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        return log_prob_u - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)


class EnsembleLinear(nn.Module):
    """`num_members` independent linear layers applied as one batched matmul: (E, B, in) -> (E, B, out)."""

    def __init__(self, num_members: int, in_dim: int, out_dim: int):
        super().__init__()
        bound = 1 / math.sqrt(in_dim)  # nn.Linear's default initialisation, per member
        self.weight = nn.Parameter(torch.empty(num_members, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_members, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class Critics(nn.Module):
    """An ensemble of Q(s, a) MLPs in one pass: obs (..., obs_dim), actions (..., act_dim) -> (num_critics, ...)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, hidden_layers: int, num_critics: int):
        super().__init__()
        self.num_critics, layers, width = num_critics, [], obs_dim + act_dim
        for _ in range(hidden_layers):
            layers += [EnsembleLinear(num_critics, width, hidden_dim), nn.ReLU()]
            width = hidden_dim
        self.net = nn.Sequential(*layers, EnsembleLinear(num_critics, width, 1))

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        obs = obs.expand(*actions.shape[:-1], -1)  # states broadcast over any leading sample dims of actions
        x = torch.cat([obs, actions], -1)
        q = self.net(x.reshape(1, -1, x.shape[-1]).expand(self.num_critics, -1, -1))
        return q.reshape(self.num_critics, *actions.shape[:-1])


class LogMultiplier(nn.Module):
    """A learned log-multiplier (log alpha_H, log alpha'): a module, so that checkpoints save it like the networks."""

    def __init__(self, initial: float = 0.0):
        super().__init__()
        self.value = nn.Parameter(torch.tensor(float(initial)))


def step_optimizers(loss: torch.Tensor, optimizers: list[torch.optim.Optimizer]) -> None:
    """One backward through a sum of losses on disjoint variables: each loss holds the others' variables detached,
    so each variable gets exactly its own loss's gradient (and one backward per graph is what --compile needs)."""
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for optimizer in optimizers:
        optimizer.step()


def update(
    batch: data.Transitions, actor: TanhGaussianActor, critics: Critics, critics_target: Critics,
    log_alpha: LogMultiplier, log_alpha_prime: LogMultiplier, optimizers: dict[str, torch.optim.Optimizer],
    args: Args, step: int,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """One update of the critics (TD + conservative term), the actor, the temperature(s) and the targets."""
    n, obs, next_obs, actions = args.cql_num_actions, batch.observations, batch.next_observations, batch.actions
    alpha = log_alpha.value.exp().detach()
    target_entropy = -float(actions.shape[-1]) if args.target_entropy is None else args.target_entropy

    with torch.no_grad():
        mean_s, log_std_s = actor(obs)
        mean_next, log_std_next = actor(next_obs)
        # B^pi Q'(s, a) = r + gamma (1 - d) min_i Q'_i(s', a'),  a' ~ pi(.|s')   (max over n a' with --max-backup)
        next_a, next_log_pi = actor.sample(mean_next, log_std_next, n if args.max_backup else None)
        next_q = critics_target(next_obs, next_a)  # (critics, B), or (critics, n, B) with --max-backup
        if args.backup_entropy:  # soft backup: Q'(s', a') - alpha_H log pi(a'|s')
            next_q = next_q - alpha * next_log_pi
        next_q = next_q.max(1).values.min(0).values if args.max_backup else next_q.min(0).values
        target_q = batch.rewards + args.gamma * (1 - batch.terminals) * next_q
        # the logsumexp's proposals: uniform on [-1, 1]^d, pi(.|s) and pi(.|s'), all evaluated at s
        random_a = torch.rand((n, *actions.shape), device=actions.device) * 2 - 1
        pi_a, pi_log_pi = actor.sample(mean_s, log_std_s, n)
        pi_next_a, pi_next_log_pi = actor.sample(mean_next, log_std_next, n)
        log_density = torch.cat([  # log mu(a) of each proposal, the importance weight's denominator
            torch.full((n, len(obs)), -actions.shape[-1] * math.log(2.0), device=obs.device), pi_log_pi, pi_next_log_pi,
        ])  # fmt: skip

    # every Q the critic loss needs, for all critics and all 1 + 3n actions, in one batched pass
    q_all = critics(obs, torch.cat([actions.unsqueeze(0), random_a, pi_a, pi_next_a]))  # (critics, 1 + 3n, B)
    q_data, q_ood = q_all[:, 0], q_all[:, 1:]
    # L_TD = 1/2 sum_i E_D (Q_i(s, a) - B^pi Q'(s, a))^2   (the paper's code uses the plain MSE)
    td_loss = ((q_data - target_q) ** 2).mean(1).sum()
    # log sum_a exp Q(s, a) ~= T log sum_j exp((Q(s, a_j) - log mu(a_j)) / T)   (CQL(H), importance-sampled;
    # like the paper's code, without the constant -log 3n)
    logsumexp = args.cql_temperature * torch.logsumexp((q_ood - log_density) / args.cql_temperature, 1)
    # gap_i = E_s [ log sum_a exp Q_i(s, a) - E_{a~D} Q_i(s, a) ]   (the H(mu) regulariser of Eq. 4)
    gap = (logsumexp - q_data).mean(1)
    if args.lagrange:
        # min_Q max_{alpha' >= 0} alpha' (alpha * gap - tau)   (Lagrange form of Eq. 4, Appendix F)
        alpha_prime = log_alpha_prime.value.exp().clamp(0.0, 1e6)
        cql_loss = (alpha_prime.detach() * (args.cql_alpha * gap - args.target_action_gap)).sum()
        alpha_prime_loss = -(alpha_prime * (args.cql_alpha * gap.detach() - args.target_action_gap)).mean()
    else:
        alpha_prime = torch.ones((), device=obs.device)
        cql_loss = args.cql_alpha * gap.sum()
        alpha_prime_loss = torch.zeros((), device=obs.device)  # no gradient: log alpha' stays where it is
    critic_loss = td_loss + cql_loss
    step_optimizers(critic_loss + alpha_prime_loss, [optimizers["critic"], optimizers["alpha_prime"]])

    # actor: a ~ pi(.|s) with the gradient through the sample (reparameterisation). pi(.|s) is computed again
    # with gradient so that this backward owns its graph (what --compile needs); the values are the ones above
    mean_s, log_std_s = actor(obs)
    new_a, log_pi = actor.sample(mean_s, log_std_s)
    if step <= args.bc_steps:
        # warm start: max_pi E_D [ log pi(a|s) ] - alpha_H E[log pi]   (behaviour cloning)
        actor_loss = (alpha * log_pi - actor.log_prob(mean_s, log_std_s, actions)).mean()
    else:
        # max_pi E_s [ min_i Q_i(s, a) - alpha_H log pi(a|s) ]   (SAC policy improvement on the conservative Q)
        critics.requires_grad_(False)  # the actor's gradient flows through Q to the action, not into Q
        actor_loss = (alpha * log_pi - critics(obs, new_a).min(0).values).mean()
        critics.requires_grad_(True)
    # J(alpha_H) = E[-alpha_H (log pi(a|s) + H_target)]   (SAC's automatic entropy tuning)
    alpha_loss = -(log_alpha.value * (log_pi.detach() + target_entropy)).mean()
    step_optimizers(actor_loss + alpha_loss, [optimizers["actor"], optimizers["alpha"]])

    # theta' <- tau * theta + (1 - tau) * theta', in place for all tensors at once
    with torch.no_grad():
        torch._foreach_lerp_(list(critics_target.parameters()), list(critics.parameters()), args.tau)
    random_mean = q_ood[:, :n].detach().mean()
    return {
        "losses/critic": td_loss.detach(), "losses/cql": cql_loss.detach(), "losses/actor": actor_loss.detach(),
        "cql/ood_minus_data": gap.detach().mean(), "q/data_mean": q_data.detach().mean(),
        "q/random_mean": random_mean, "q/policy_mean": q_ood[:, n : 2 * n].detach().mean(),
        "q/target_mean": target_q.mean(), "alpha/entropy": alpha, "alpha/cql_prime": alpha_prime.detach(),
        "actor/entropy": -log_pi.detach().mean(),
    }  # fmt: skip


def main(args: Args) -> training.RunResult:
    run = training.Run("cql", args)  # seeds, device, run folder, TensorBoard; with --resume the checkpoint's settings
    args, device = run.args, run.device

    # data: every transition (a validation split if asked), rewards transformed as the flags ask, states normalised
    dataset = data.load_dataset(args.dataset)
    train, valid = data.split_by_episode(data.to_transitions(dataset, device), args.validation_fraction)
    train, valid = data.transform_rewards(train, valid, args.reward_scale, args.reward_shift, args.return_range_scale)
    obs_dim, act_dim = train.observations.shape[1], train.actions.shape[1]
    normalizer = data.Normalizer.fit(train.observations) if args.normalize_obs else data.Normalizer.identity(obs_dim, device)
    # the networks work in actions rescaled to [-1, 1] (as the paper's code, a normalised action box)
    low, high = (torch.tensor(x, dtype=torch.float32, device=device) for x in (dataset.action_space.low, dataset.action_space.high))
    action_scale, action_bias = (high - low) / 2, (high + low) / 2
    unit_actions = ((train.actions - action_bias) / action_scale).clamp(-1, 1)
    train_batches = replace(train.with_observations(normalizer), actions=unit_actions)

    actor = TanhGaussianActor(obs_dim, act_dim, args.hidden_dim, args.hidden_layers).to(device)
    critics = Critics(obs_dim, act_dim, args.hidden_dim, args.hidden_layers, args.num_critics).to(device)
    critics_target = copy.deepcopy(critics).requires_grad_(False)
    log_alpha, log_alpha_prime = LogMultiplier().to(device), LogMultiplier().to(device)  # alpha_H = alpha' = 1 at first
    optimizers = {  # fused: one kernel per step
        "actor": torch.optim.Adam(actor.parameters(), lr=args.actor_lr, fused=True),
        "critic": torch.optim.Adam(critics.parameters(), lr=args.critic_lr, fused=True),
        "alpha": torch.optim.Adam(log_alpha.parameters(), lr=args.actor_lr, fused=True),
        "alpha_prime": torch.optim.Adam(log_alpha_prime.parameters(), lr=args.critic_lr, fused=True),
    }
    update_step = training.compile_step(update, args.compile, args.cudagraphs, device)  # speed options; off = eager

    def policy(obs: torch.Tensor) -> torch.Tensor:  # raw observations in, the deterministic tanh(mu) action out
        return torch.tanh(actor(normalizer(obs))[0]) * action_scale + action_bias

    # everything an exact continuation needs, the two log-multipliers included
    models = {"actor": actor, "critics": critics, "critics_target": critics_target, "log_alpha": log_alpha,
              "log_alpha_prime": log_alpha_prime}  # fmt: skip
    models |= {f"{name}_optimizer": optimizer for name, optimizer in optimizers.items()}
    for step in run.steps(models, normalizer):
        batch = train_batches.sample(args.batch_size)
        metrics = update_step(batch, actor, critics, critics_target, log_alpha, log_alpha_prime, optimizers, args, step)
        if run.logging(step):
            run.log(step, metrics | evaluation.validation_mse(policy, valid))
        if run.evaluating(step):
            run.evaluate(step, policy, dataset, {"train": train.observations, "valid": valid.observations})
    return run.result()


def make_policy(
    args: Args, dataset: minari.MinariDataset, state: dict, device: torch.device
) -> Callable[[torch.Tensor], torch.Tensor]:  # fmt: skip
    """The policy whose score main() reports, rebuilt from a checkpoint's state (tools/evaluate.py reads any run's
    checkpoint.pt with it): raw observations in, actions out."""
    normalizer, low, high = data.Normalizer(**state["normalizer"]), dataset.action_space.low, dataset.action_space.high
    obs_dim, act_dim = normalizer.mean.shape[0], len(low)
    networks = {"actor": TanhGaussianActor(obs_dim, act_dim, args.hidden_dim, args.hidden_layers).to(device)}
    for name, network in networks.items():  # eval(): no dropout, as main() evaluates
        network.load_state_dict(state["models"][name])
        network.eval()
    low, high = (torch.tensor(x, dtype=torch.float32, device=device) for x in (low, high))
    action_scale, action_bias = (high - low) / 2, (high + low) / 2
    return lambda obs: torch.tanh(networks["actor"](normalizer(obs))[0]) * action_scale + action_bias  # tanh(mu)


if __name__ == "__main__":
    main(training.cli(Args, RECIPES))
