"""One-step RL (Brandfonbrener et al. 2021): evaluate the behaviour policy, improve on it once.

Instead of alternating evaluation and improvement (off-policy evaluation of ever-changing policies),
fit the behaviour policy beta_hat by maximum likelihood, its Q function by SARSA (the target uses
the dataset's own next action a', so Q never sees an action outside the dataset),
    L_beta  = -E_{(s,a)~D} [ log beta_hat(a | s) ]
    L_Q     =  E_{(s,a,r,s',a')~D} [ ( r + gamma Q_target(s', a') - Q(s, a) )^2 ]
and take one step of policy improvement against Q^beta. The default operator is exponentially
weighted regression, with V^beta(s) = E_{a~beta_hat} Q(s, a) estimated by sampling:
    L_pi    = -E_{(s,a)~D} [ min(exp(tau (Q(s, a) - V^beta(s))), 100) log pi(a | s) ]
--improvement reverse_kl maximises E_{a~pi}[Q(s, a)] - alpha KL(pi || beta_hat); --improvement easy_bcq
acts with argmax_{a_i ~ beta_hat(s), i <= N} Q(s, a_i) and trains no policy.
Q and beta_hat do not depend on pi, so training the three side by side in one loop reaches what
training them one after the other does (the paper), with one step budget.

Departures from the paper's code: one joint loop with one budget, where the official code trains beta_hat 5e5,
Q 2e6 and pi 1e5 steps one after another (no per-network budget flags here); both policies are Gaussians with a
tanh-bounded mean and log-std clamped to [-5, 2] (official: truncated-normal pi, normal beta_hat, mean and
log-std soft-clamped to [-1, 1] and [-5, 0]); the reverse-KL term is estimated from 1 sample (official: 10).
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
    total_steps: int = 10_000
    """gradient updates of each network, all three side by side (use ~1_000_000 on D4RL; the official code: beta 5e5, Q 2e6, pi 1e5)"""
    batch_size: int = 256
    """transitions per update (official code: 512)"""
    improvement: Literal["exp_weight", "reverse_kl", "easy_bcq"] = "exp_weight"
    """the one improvement step: exponentially weighted regression, reverse-KL regularised, or easy BCQ (official code's default: reverse_kl)"""
    temperature: float = 3.0
    """tau of exp(tau A) (the paper tunes it per dataset; 3 = IQL's locomotion beta; official code's default: 0.01)"""
    max_weight: float = 100.0
    """clip of the weights exp(tau A)"""
    kl_coefficient: float = 0.1
    """alpha of --improvement reverse_kl (official code: 1.0)"""
    num_action_samples: int = 4
    """actions from beta_hat to estimate V^beta(s) (a per-state baseline: a few suffice); easy_bcq's candidates (official code: 10)"""
    discount: float = 0.99
    """gamma"""
    target_update_rate: float = 0.005
    """Polyak rate of the target Q networks, applied every update (official code: 0.005 every 2 updates)"""
    learning_rate: float = 3e-4
    """Adam learning rate of every network (official code: 1e-4)"""
    hidden_dim: int = 256
    """width of the two hidden layers of every network (official code: 1024)"""
    num_critics: int = 2
    """Q networks (evaluated as one batched ensemble); targets and advantages use their minimum (official code: 1, SARSA)"""
    return_range_scale: bool = False
    """scale rewards by 1000 / (max - min episode return) (IQL's locomotion transform)"""
    reward_scale: float = 1.0
    """r <- r * reward_scale + reward_shift (after the return-range scaling)"""
    reward_shift: float = 0.0
    """e.g. -1 on sparse goal-reaching tasks (antmaze)"""
    normalize_obs: bool = True
    """standardise observations with the training data's mean and std (official code: off)"""
    validation_fraction: float = 0.0
    """fraction of episodes held out for the valid/* losses and action MSE (0 = train on every transition, as the papers do; the held-out episodes are the same for every --seed)"""
    eval_every: int = 5_000
    """evaluate the policy every this many updates (and once at the end)"""
    eval_episodes: int = 10
    """episodes per evaluation, run in parallel in a vector env (0 = no evaluation)"""
    capture_video: bool = False
    """record the first episode of each evaluation: run_dir/<run name>/videos/step_<N>.mp4 and TensorBoard's Images tab (MuJoCo without a display: MUJOCO_GL=egl, or MUJOCO_GL=osmesa with Debian's libosmesa6)"""
    log_every: int = 500
    """write losses to TensorBoard every this many updates"""
    run_dir: str = "runs"
    """TensorBoard logs and checkpoints go to run_dir/<run name>/"""
    exp_name: str = "onestep_rl"
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


RECIPES: dict[str, dict] = {}  # `python algorithms/onestep_rl.py RECIPE [flags]`: none: no published score retrieved for the official code's settings (docs/recipes.md lists them)


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim)
    )  # fmt: skip


class GaussianPolicy(nn.Module):
    """N(mu(s), sigma(s)) with a tanh-bounded mean in the action box; the behaviour model and pi alike."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, low: np.ndarray, high: np.ndarray):
        super().__init__()
        self.net = mlp(obs_dim, hidden_dim, 2 * act_dim)
        self.register_buffer("low", torch.tensor(low, dtype=torch.float32))
        self.register_buffer("high", torch.tensor(high, dtype=torch.float32))

    def mean_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs).chunk(2, -1)
        scale = (self.high - self.low) / 2
        return torch.tanh(mean) * scale + (self.high + self.low) / 2, log_std.clamp(-5.0, 2.0).exp() * scale

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The mean action: what the policy does at evaluation."""
        return self.mean_std(obs)[0]

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean_std(obs)
        return (-0.5 * ((actions - mean) / std) ** 2 - torch.log(std) - 0.5 * np.log(2 * np.pi)).sum(-1)

    def sample(self, obs: torch.Tensor, num_samples: int) -> torch.Tensor:
        """(num_samples, batch, act_dim) reparameterised samples, clipped to the action box."""
        mean, std = self.mean_std(obs)
        actions = mean + std * torch.randn((num_samples, *mean.shape), device=mean.device)
        return torch.maximum(torch.minimum(actions, self.high), self.low)


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
    """An ensemble of Q(s, a) MLPs evaluated in one pass: returns (num_critics, batch)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, num_critics: int):
        super().__init__()
        self.num_critics = num_critics
        self.net = nn.Sequential(
            EnsembleLinear(num_critics, obs_dim + act_dim, hidden_dim), nn.ReLU(),
            EnsembleLinear(num_critics, hidden_dim, hidden_dim), nn.ReLU(),
            EnsembleLinear(num_critics, hidden_dim, 1),
        )  # fmt: skip

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, actions], -1).expand(self.num_critics, -1, -1)  # the same batch for every critic
        return self.net(x).squeeze(-1)


def behaviour_value(critic: Critics, behaviour: GaussianPolicy, obs: torch.Tensor, num_samples: int) -> torch.Tensor:
    """V^beta(s) = E_{a~beta_hat(s)} min_i Q_i(s, a), a Monte-Carlo mean over num_samples actions."""
    actions = behaviour.sample(obs, num_samples)  # (N, B, act_dim)
    q = critic(obs.expand(num_samples, -1, -1).reshape(-1, obs.shape[-1]), actions.reshape(-1, actions.shape[-1]))
    return q.min(0).values.view(num_samples, -1).mean(0)


def advantage_weights(advantages: torch.Tensor, temperature: float, max_weight: float) -> torch.Tensor:
    """exp(tau A), clipped: a few large advantages must not dominate the regression (or overflow)."""
    return torch.exp(temperature * advantages).clamp(max=max_weight)


def easy_bcq_action(critic: Critics, behaviour: GaussianPolicy, obs: torch.Tensor, num_samples: int) -> torch.Tensor:
    """argmax_{a_i ~ beta_hat(s)} min_j Q_j(s, a_i): the improvement step done at decision time."""
    actions = behaviour.sample(obs, num_samples)  # (N, B, act_dim)
    q = critic(obs.expand(num_samples, -1, -1).reshape(-1, obs.shape[-1]), actions.reshape(-1, actions.shape[-1]))
    best = q.min(0).values.view(num_samples, -1).argmax(0)  # (B,)
    return actions[best, torch.arange(obs.shape[0], device=obs.device)]


def sarsa_critic_loss(critic: Critics, target_critic: Critics, batch: data.Transitions, args: Args):
    """(L_Q, Q(s, a)). The time-limit ends are left out: no a' was taken there (data.Transitions.next_action_known)."""
    # L_Q = E_{(s,a,r,s',a')~D} [ sum_j (r + gamma (1 - done) min_i Q_target_i(s', a') - Q_j(s,a))^2 ], a' from the dataset
    with torch.no_grad():
        next_q = target_critic(batch.next_observations, batch.next_actions).min(0).values
        td_target = batch.rewards + args.discount * (1.0 - batch.terminals) * next_q
    q = critic(batch.observations, batch.actions)
    known = batch.next_action_known
    return (((q - td_target) ** 2) * known).sum(1).sum() / known.sum().clamp_min(1), q


def update(
    batch: data.Transitions, behaviour: GaussianPolicy, actor: GaussianPolicy, critic: Critics, target_critic: Critics,
    optimizers: dict[str, torch.optim.Optimizer], args: Args,
) -> dict[str, torch.Tensor]:  # fmt: skip
    s, a = batch.observations, batch.actions
    # L_beta = -E_{(s,a)~D} [ log beta_hat(a|s) ]
    behaviour_loss = -behaviour.log_prob(s, a).mean()
    optimizers["behaviour"].zero_grad(set_to_none=True)
    behaviour_loss.backward()
    optimizers["behaviour"].step()

    critic_loss, q = sarsa_critic_loss(critic, target_critic, batch, args)
    optimizers["critic"].zero_grad(set_to_none=True)
    critic_loss.backward()
    optimizers["critic"].step()
    # theta_target <- (1 - rate) theta_target + rate theta, in place (outside autograd: no graph)
    with torch.no_grad():
        torch._foreach_lerp_(list(target_critic.parameters()), list(critic.parameters()), args.target_update_rate)
    metrics = {"losses/behaviour": behaviour_loss.detach(), "losses/critic": critic_loss.detach(),
               "q/data_mean": q.detach().mean()}  # fmt: skip

    if args.improvement == "exp_weight":
        # L_pi = -E_{(s,a)~D} [ min(exp(tau (Q(s,a) - V^beta(s))), 100) log pi(a|s) ],  V^beta(s) = E_{a~beta_hat} Q(s,a)
        with torch.no_grad():
            value = behaviour_value(target_critic, behaviour, s, args.num_action_samples)
            advantages = target_critic(s, a).min(0).values - value
            weights = advantage_weights(advantages, args.temperature, args.max_weight)
        actor_loss = -(weights * actor.log_prob(s, a)).mean()
        clipped = (weights >= args.max_weight).float().mean()
        metrics |= {"actor/advantage_mean": advantages.mean(), "actor/weights_clipped": clipped}
    elif args.improvement == "reverse_kl":
        # L_pi = E_s E_{a~pi} [ alpha (log pi(a|s) - log beta_hat(a|s)) - Q(s,a) ]  (reparameterised)
        # (the gradient flows through the sampled action into log beta_hat too; the stray gradients on beta_hat's
        # parameters are cleared by its next zero_grad)
        sampled = actor.sample(s, 1)[0]
        log_ratio = actor.log_prob(s, sampled) - behaviour.log_prob(s, sampled)
        actor_loss = (args.kl_coefficient * log_ratio - target_critic(s, sampled).min(0).values).mean()
    else:  # easy_bcq acts by sampling from beta_hat at decision time: no policy to train
        return metrics
    optimizers["actor"].zero_grad(set_to_none=True)
    actor_loss.backward()
    optimizers["actor"].step()

    return metrics | {"losses/actor": actor_loss.detach()}


@torch.no_grad()
def validation_losses(
    valid: data.Transitions, behaviour: GaussianPolicy, critic: Critics, target_critic: Critics, args: Args
) -> dict[str, torch.Tensor]:  # fmt: skip
    """The SARSA and behaviour losses on held-out episodes (already normalised and reward-transformed); none without them."""
    if len(valid) == 0:  # no validation episodes with --validation-fraction 0, the default
        return {}
    return {
        "valid/critic": sarsa_critic_loss(critic, target_critic, valid, args)[0],
        "valid/behaviour": -behaviour.log_prob(valid.observations, valid.actions).mean(),
    }


def main(args: Args) -> training.RunResult:
    run = training.Run("onestep_rl", args)  # seeds, device, run folder, TensorBoard; --resume: the checkpoint's settings
    args, device = run.args, run.device

    # data: every transition (a validation split if asked), rewards transformed as the flags ask, states normalised
    dataset = data.load_dataset(args.dataset)
    train, valid = data.split_by_episode(data.to_transitions(dataset, device), args.validation_fraction)
    obs_dim, act_dim = train.observations.shape[1], train.actions.shape[1]
    normalizer = data.Normalizer.fit(train.observations) if args.normalize_obs else data.Normalizer.identity(obs_dim, device)
    train_batches, valid_batches = [
        split.with_observations(normalizer)
        for split in data.transform_rewards(train, valid, args.reward_scale, args.reward_shift, args.return_range_scale)
    ]

    low, high = dataset.action_space.low, dataset.action_space.high
    behaviour = GaussianPolicy(obs_dim, act_dim, args.hidden_dim, low, high).to(device)
    actor = GaussianPolicy(obs_dim, act_dim, args.hidden_dim, low, high).to(device)
    critic = Critics(obs_dim, act_dim, args.hidden_dim, args.num_critics).to(device)
    target_critic = copy.deepcopy(critic).requires_grad_(False)
    optimizers = {
        name: torch.optim.Adam(model.parameters(), lr=args.learning_rate, fused=True)  # fused: one kernel per step
        for name, model in (("behaviour", behaviour), ("actor", actor), ("critic", critic))
    }
    update_step = training.compile_step(update, args.compile, args.cudagraphs, device)  # speed options; off = eager
    if args.improvement == "easy_bcq":
        act = lambda obs: easy_bcq_action(target_critic, behaviour, obs, args.num_action_samples)  # noqa: E731
    else:
        act = actor
    policy = lambda obs: act(normalizer(obs))  # noqa: E731 - raw observations in, actions out

    # everything an exact continuation needs
    models = {"behaviour": behaviour, "actor": actor, "critic": critic, "target_critic": target_critic}
    models |= {f"{name}_optimizer": optimizer for name, optimizer in optimizers.items()}
    for step in run.steps(models, normalizer):
        batch = train_batches.sample(args.batch_size)
        metrics = update_step(batch, behaviour, actor, critic, target_critic, optimizers, args)
        if run.logging(step):
            valid_metrics = validation_losses(valid_batches, behaviour, critic, target_critic, args)
            run.log(step, metrics | valid_metrics | evaluation.validation_mse(policy, valid))
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
    networks = {"behaviour": GaussianPolicy(obs_dim, act_dim, args.hidden_dim, low, high).to(device),
                "actor": GaussianPolicy(obs_dim, act_dim, args.hidden_dim, low, high).to(device),
                "target_critic": Critics(obs_dim, act_dim, args.hidden_dim, args.num_critics).to(device)}  # fmt: skip
    for name, network in networks.items():  # eval(): no dropout, as main() evaluates
        network.load_state_dict(state["models"][name])
        network.eval()
    if args.improvement == "easy_bcq":
        return lambda obs: easy_bcq_action(networks["target_critic"], networks["behaviour"], normalizer(obs), args.num_action_samples)
    return lambda obs: networks["actor"](normalizer(obs))


if __name__ == "__main__":
    main(training.cli(Args, RECIPES))
