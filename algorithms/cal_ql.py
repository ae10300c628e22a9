"""Cal-QL: calibrated conservative Q-learning for offline-to-online fine-tuning (Nakamoto et al. 2023,
"Cal-QL: Calibrated Offline RL Pre-Training for Efficient Online Fine-Tuning").

CQL (Kumar et al. 2020) pushes Q down on the policy's actions, so far that Q(s, pi(s)) can fall below what the
data's own policy earns there. Online, the first corrections of those too-low values move the policy away from
where it was good: the "initial collapse" of CQL fine-tuning. Cal-QL keeps the conservative term from pushing the
policy's Q below a reference value, the Monte-Carlo return V^mu(s) of the data (the paper's Cal-QL objective):
    min_Q  alpha * E_{s~D} [ log sum_a exp max(Q(s, a), V^mu(s)) - E_{a~D(.|s)} Q(s, a) ] + 1/2 E_D (Q(s, a) - B^pi Q'(s, a))^2,
where, as in the paper's code, the max applies to the actions drawn from pi(.|s) and pi(.|s'); V^mu(s) is the
discounted return-to-go of the logged episode through s, and r_fail / (1 - gamma) at every step of an episode that
only ever got the failure reward r_fail of sparse-reward data (--sparse-reference). The actor is CQL's SAC actor.
Training: --total-steps offline updates on the dataset, then --online-steps steps in the env, each followed by
one update on a batch of which --mixing-ratio is offline data and the rest online (the paper: 0.5).
--no-calibration is plain CQL fine-tuning, the paper's baseline.

The defaults are the official code's (nakamotoo/Cal-QL, JaxCQL/conservative_sac.py:23-41 and
conservative_sac_main.py:24-62): weight 5 without Lagrange, max backup, no BC warm start, 2x256 networks, rewards
as they are. Its AntMaze script (scripts/run_antmaze.sh): --lagrange --target-action-gap 0.8 --critic-hidden-layers 4
--reward-scale 10 --reward-shift -5; its Adroit script (scripts/run_adroit.sh): --cql-alpha 1 --hidden-dim 512
--critic-hidden-layers 3 --reward-scale 10 --reward-shift 5.
As the official code, the reference value of a time-limit end is not bootstrapped. Departures from it: sparse
rewards are recognised from the data (two reward values) rather than by env name; the actor's log-std is clamped to
[-20, 2] with no offset and PyTorch's default init (official: orthogonal init, log-std offset -1), as our cql.py;
the online phase updates once after every env step (official: after each episode, as many updates as it had steps).
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
import finetuning
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
    """offline gradient updates, before the online phase (the paper: 1_000_000 on D4RL). CQL costs ~10x TD3+BC per update: 3_000 is minutes on a GPU, ~15 min on one CPU core with the paper's 3x256 nets (--hidden-dim 64 --hidden-layers 2: ~1.5 min)"""
    online_steps: int = 3_000
    """online phase: env steps after the offline updates, each followed by one update (the paper: 1_000_000 on AntMaze, 250_000 on Kitchen/Adroit; 0 = offline only)"""
    mixing_ratio: float = 0.5
    """online phase: fraction of each batch drawn from the offline data, the rest from the online episodes (the paper's scripts: 0.5; -1: uniform over both, the official code's default)"""
    calibration: bool = True
    """Cal-QL's calibration: the conservative term never pushes the policy's Q below the data's Monte-Carlo return (--no-calibration: plain CQL fine-tuning)"""
    batch_size: int = 256
    """transitions per update"""
    actor_lr: float = 1e-4
    """Adam learning rate of the actor and of the entropy temperature (official code: 1e-4; CORL: 3e-5 locomotion, 1e-4 antmaze/adroit)"""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics and of the Lagrange multiplier"""
    hidden_dim: int = 256
    """width of the hidden layers of the actor and of each critic"""
    hidden_layers: int = 2
    """hidden layers of the actor (official code: 2, policy_arch 256-256)"""
    critic_hidden_layers: int = 2
    """hidden layers of each critic (official code: 2, qf_arch 256-256; its AntMaze script 4, Adroit 3; CORL antmaze: 5)"""
    num_critics: int = 2
    """critics in the ensemble; the target is the minimum over them"""
    gamma: float = 0.99
    """discount factor"""
    tau: float = 0.005
    """soft target update rate: target <- (1 - tau) target + tau online"""
    cql_alpha: float = 5.0
    """weight of the conservative term, cql_min_q_weight (official code: 5, also in its AntMaze script; Adroit script: 1; CORL: 10 locomotion, 5 antmaze, 1 adroit)"""
    cql_num_actions: int = 10
    """actions sampled per state from each of uniform, pi(.|s), pi(.|s') for the logsumexp"""
    cql_temperature: float = 1.0
    """temperature of the logsumexp over sampled actions"""
    lagrange: bool = False
    """tune alpha' >= 0 in alpha' * --cql-alpha * (gap - tau), gap = logsumexp Q - Q(data), log alpha' starting at 1 (official code: off by default, on in its AntMaze script with --target-action-gap 0.8; CORL: the same)"""
    target_action_gap: float = 1.0
    """tau of the Lagrange version: alpha' grows while the gap exceeds it (official code: 1.0 by default, 0.8 in its AntMaze script; CORL antmaze: 0.8)"""
    max_backup: bool = True
    """target: of --cql-num-actions actions a' ~ pi(.|s'), the one with the highest min over the target critics (official code and CORL's configs: on; --no-max-backup: one a')"""
    backup_entropy: bool = False
    """subtract alpha_H log pi(a'|s') in the target (soft backup; the paper's code leaves it off)"""
    target_entropy: float | None = None
    """entropy target of the automatic temperature tuning (default -act_dim)"""
    bc_steps: int = 0
    """first updates in which the actor maximises log pi(a_data|s) instead of Q (official Cal-QL code and CORL: none; CQL's code: 40_000)"""
    normalize_obs: bool = False
    """standardise observations with the training data's mean and std (off in the paper's code; CORL: on for locomotion/adroit, off for antmaze)"""
    reward_scale: float = 1.0
    """r <- r * reward_scale + reward_shift (official code: as is by default; its AntMaze script 10 and -5, Adroit-binary 10 and +5; CORL: the same)"""
    reward_shift: float = 0.0
    """added to every reward after scaling (see --reward-scale)"""
    sparse_reference: bool = True
    """on sparse rewards (the training rewards take two values), an episode whose rewards all equal the lower one has V^mu = r_fail / (1 - gamma) at every step, offline and online (official code: replay_buffer.py:279-288, sampler.py:53; CORL: offline only); --no-sparse-reference: the discounted sum to the episode's end"""
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
    exp_name: str = "cal_ql"
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


RECIPES: dict[str, dict] = {}  # `python algorithms/cal_ql.py RECIPE [flags]`: none yet: the paper's fine-tuning budgets (1M online steps on AntMaze) are not reproduced here


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
    """One update of the critics (TD + calibrated conservative term), the actor, the temperature(s) and the targets.
    batch.returns_to_go holds the reference value V^mu(s): the discounted Monte-Carlo return of the data."""
    n, obs, next_obs, actions = args.cql_num_actions, batch.observations, batch.next_observations, batch.actions
    alpha = log_alpha.value.exp().detach()
    target_entropy = -float(actions.shape[-1]) if args.target_entropy is None else args.target_entropy

    with torch.no_grad():
        mean_s, log_std_s = actor(obs)
        mean_next, log_std_next = actor(next_obs)
        # B^pi Q'(s, a) = r + gamma (1 - d) min_i Q'_i(s', a'),  a' ~ pi(.|s')
        # (--max-backup: max_j min_i Q'_i(s', a'_j) over n samples a'_j, the max of the min, as the official code)
        next_a, next_log_pi = actor.sample(mean_next, log_std_next, n if args.max_backup else None)
        next_q = critics_target(next_obs, next_a).min(0).values  # (B,), or (n, B) with --max-backup
        if args.max_backup:  # the entropy term below is the chosen a'_j's
            best = next_q.argmax(0, keepdim=True)
            next_q, next_log_pi = next_q.gather(0, best).squeeze(0), next_log_pi.gather(0, best).squeeze(0)
        if args.backup_entropy:  # soft backup: Q'(s', a') - alpha_H log pi(a'|s')
            next_q = next_q - alpha * next_log_pi
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
    # Cal-QL: Q(s, a ~ pi) enters the push-down term as max(Q(s, a), V^mu(s)): below the data's own
    # return, pushing Q further down would only make it less calibrated (the uniform actions are left as CQL's)
    below_reference = (q_ood[:, n:] < batch.returns_to_go).float().mean()
    q_pushed_down = torch.cat([q_ood[:, :n], torch.maximum(q_ood[:, n:], batch.returns_to_go)], 1) if args.calibration else q_ood
    # L_TD = 1/2 sum_i E_D (Q_i(s, a) - B^pi Q'(s, a))^2   (the paper's code uses the plain MSE)
    td_loss = ((q_data - target_q) ** 2).mean(1).sum()
    # log sum_a exp Q(s, a) ~= T log sum_j exp((Q(s, a_j) - log mu(a_j)) / T)   (CQL(H), importance-sampled;
    # like the paper's code, without the constant -log 3n)
    logsumexp = args.cql_temperature * torch.logsumexp((q_pushed_down - log_density) / args.cql_temperature, 1)
    # gap_i = E_s [ log sum_a exp Q_i(s, a) - E_{a~D} Q_i(s, a) ]   (the H(mu) regulariser of CQL's Eq. 4)
    gap = (logsumexp - q_data).mean(1)
    if args.lagrange:
        # min_Q max_{alpha' >= 0} alpha' alpha (gap - tau)   (Lagrange form of CQL's Eq. 4, as Cal-QL's code writes
        # it, conservative_sac.py:288-296: tau compares with the gap itself, and alpha scales the multiplier's step)
        alpha_prime = log_alpha_prime.value.exp().clamp(0.0, 1e6)
        cql_loss = (alpha_prime.detach() * args.cql_alpha * (gap - args.target_action_gap)).sum()
        alpha_prime_loss = -(alpha_prime * args.cql_alpha * (gap.detach() - args.target_action_gap)).mean()
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
        "actor/entropy": -log_pi.detach().mean(), "cal_ql/below_reference": below_reference.detach(),
        "q/reference_mean": batch.returns_to_go.mean(),
    }  # fmt: skip


def main(args: Args) -> training.RunResult:
    run = training.Run("cal_ql", args)  # seeds, device, run folder, TensorBoard; with --resume the checkpoint's settings
    args, device = run.args, run.device

    # data: every transition (a validation split if asked), rewards transformed as the flags ask, states normalised
    dataset = data.load_dataset(args.dataset)
    train, valid = data.split_by_episode(data.to_transitions(dataset, device), args.validation_fraction)
    obs_dim, act_dim = train.observations.shape[1], train.actions.shape[1]
    normalizer = data.Normalizer.fit(train.observations) if args.normalize_obs else data.Normalizer.identity(obs_dim, device)
    reward_transform = data.reward_transform(train, args.reward_scale, args.reward_shift, args.return_range_scale)
    # the networks work in actions rescaled to [-1, 1] (as the paper's code, a normalised action box)
    low, high = (torch.tensor(x, dtype=torch.float32, device=device) for x in (dataset.action_space.low, dataset.action_space.high))
    action_scale, action_bias = (high - low) / 2, (high + low) / 2

    # sparse rewards: the failure reward, transformed as every reward is; an episode of nothing else has V^mu = r_fail / (1 - gamma)
    failure = finetuning.sparse_failure_reward(train.rewards) if args.sparse_reference else None
    failure = None if failure is None else float(reward_transform(torch.tensor([failure]))[0])

    def prepare(t: data.Transitions) -> data.Transitions:
        """Offline or online data as the update takes it; returns_to_go becomes V^mu, the discounted Monte-Carlo return."""
        t = replace(t.with_observations(normalizer), actions=((t.actions - action_bias) / action_scale).clamp(-1, 1), rewards=reward_transform(t.rewards))
        return replace(t, returns_to_go=finetuning.discounted_returns(t, args.gamma, failure))

    offline = prepare(train)
    online = finetuning.OnlineInteraction(dataset, args.seed, device, prepare)  # the env of the online phase, its episodes

    actor = TanhGaussianActor(obs_dim, act_dim, args.hidden_dim, args.hidden_layers).to(device)
    critics = Critics(obs_dim, act_dim, args.hidden_dim, args.critic_hidden_layers, args.num_critics).to(device)
    critics_target = copy.deepcopy(critics).requires_grad_(False)
    # alpha_H = 1 and log alpha' = 1 at first, as the official code (conservative_sac.py:99, 108)
    log_alpha, log_alpha_prime = LogMultiplier(0.0).to(device), LogMultiplier(1.0).to(device)
    optimizers = {  # fused: one kernel per step
        "actor": torch.optim.Adam(actor.parameters(), lr=args.actor_lr, fused=True),
        "critic": torch.optim.Adam(critics.parameters(), lr=args.critic_lr, fused=True),
        "alpha": torch.optim.Adam(log_alpha.parameters(), lr=args.actor_lr, fused=True),
        "alpha_prime": torch.optim.Adam(log_alpha_prime.parameters(), lr=args.critic_lr, fused=True),
    }
    update_step = training.compile_step(update, args.compile, args.cudagraphs, device)  # speed options; off = eager

    def policy(obs: torch.Tensor) -> torch.Tensor:  # raw observations in, the deterministic tanh(mu) action out
        return torch.tanh(actor(normalizer(obs))[0]) * action_scale + action_bias

    def explore(obs: torch.Tensor) -> torch.Tensor:  # the online phase acts with a ~ pi(.|s), as SAC does
        with torch.no_grad():
            return actor.sample(*actor(normalizer(obs)))[0] * action_scale + action_bias

    # everything an exact continuation needs, the two log-multipliers included
    models = {"actor": actor, "critics": critics, "critics_target": critics_target, "log_alpha": log_alpha,
              "log_alpha_prime": log_alpha_prime, "online": online}  # fmt: skip
    models |= {f"{name}_optimizer": optimizer for name, optimizer in optimizers.items()}
    for step in run.steps(models, normalizer):
        if step <= args.total_steps:
            batch = offline.sample(args.batch_size)
        else:  # online phase: one env step with a ~ pi(.|s), then one update on offline and online data
            online.step(explore(online.observation))
            batch = online.sample(offline, args.batch_size, args.mixing_ratio)
        metrics = update_step(batch, actor, critics, critics_target, log_alpha, log_alpha_prime, optimizers, args, step)
        if run.logging(step):
            run.log(step, metrics | online.metrics() | evaluation.validation_mse(policy, valid))
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
