"""Decoupled offline RL: value learning (--value iql|sarsa) + AWR policy extraction (Park et al. 2024).

"Is Value Learning Really the Main Bottleneck in Offline RL?" separates an offline RL method into a
value function and a way to extract a policy from it. This file pairs either value learner with
advantage-weighted regression (AWR), a weighted behaviour cloning:
    max_pi E_{(s,a)~D} [ exp(alpha (Q(s,a) - V(s))) log pi(a|s) ]         (weights clipped at --max-weight)
Value learning, the same in awr.py, ddpg_bc.py and sfbc.py (`diff` them: only the extraction differs):
    iql:   V(s) <- expectile tau of min_i Qbar_i(s,a);  Q_i(s,a) <- r + gamma V(s')      (Kostrikov et al. 2022)
    sarsa: Q_i(s,a) <- r + gamma min_j Qbar_j(s',a'), a' the dataset's next action: Q of the behaviour
           policy (one-step RL, Brandfonbrener et al. 2021); V(s) = E_{a~D}[Qbar(s,a)] by plain regression.
Value and policy learn from separately sized nested prefixes of the data (--value-data-fraction,
--policy-data-fraction): one sweep over the two flags is the paper's data-scaling matrix.

Departures from Park's public code (OGBench, FQL; the paper's own code was not available): the AWR policy
learns a state-independent std and bounds its mean with tanh, where OGBench and FQL fix the std at 1 and
leave the mean unbounded.
"""

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

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # bounds of the Gaussian policy's log std (IQL)
MSE_STATES = 2_000  # training and validation states on which the action MSE to the expert is measured


@dataclass
class Args:
    dataset: str = "pendulum/mixed-v0"
    """Minari dataset id: the local suite (`python algorithms/local_suite.py` lists it) or a remote id"""
    value: Literal["iql", "sarsa"] = "iql"
    """value learning: iql (expectile V, Q <- r + gamma V(s')) or sarsa (Q of the behaviour policy)"""
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
    total_steps: int = 20_000
    """gradient updates, each one value update and one actor update (OGBench uses 1_000_000)"""
    batch_size: int = 256
    """transitions per batch; the value and the actor updates draw separate batches (OGBench/FQL: one batch for all losses, 1024 in OGBench, 256 in FQL)"""
    learning_rate: float = 3e-4
    """Adam learning rate of every network"""
    hidden_dim: int = 256
    """width of the two hidden layers of every network (OGBench: 512, three layers; FQL: 512, four; no depth flag here)"""
    num_critics: int = 2
    """critics in the ensemble; Q is the minimum over them (2 = clipped double Q, as IQL and OGBench)"""
    layer_norm: bool = True
    """LayerNorm in the Q and V networks, each critic its own (OGBench)"""
    discount: float = 0.99
    """discount factor gamma"""
    target_update_rate: float = 0.005
    """Polyak rate of the target critics"""
    expectile: float = 0.9
    """IQL's expectile tau of V (0.9 mazes, 0.7 locomotion); unused by --value sarsa"""
    alpha: float = 3.0
    """AWR inverse temperature: weights exp(alpha (Q - V)); 0 is plain behaviour cloning (FQL's AWR default: 10)"""
    max_weight: float = 100.0
    """AWR weights are clipped at this value"""
    value_data_fraction: float = 1.0
    """fraction of the training episodes the Q and V functions learn from (nested prefixes)"""
    policy_data_fraction: float = 1.0
    """fraction of the training episodes the policy learns from (nested prefixes)"""
    reward_scale: float = 1.0
    """r <- r * reward_scale + reward_shift"""
    reward_shift: float = 0.0
    """r <- r * reward_scale + reward_shift (D4RL antmaze: -1)"""
    return_range_scale: bool = False
    """first scale rewards by 1000 / (max - min episode return) (D4RL locomotion)"""
    normalize_obs: bool = True
    """standardise observations with the training data's mean and std (OGBench and FQL: off)"""
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
    exp_name: str = "awr"
    """experiment name, part of the run name"""
    save_model: bool = False
    """write run_dir/<run name>/checkpoint.pt (actor, critics, value net, normaliser) at the end"""
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


RECIPES: dict[str, dict] = {}  # `python algorithms/awr.py RECIPE [flags]`: none: Park et al. 2024 publish data-scaling matrices, not table scores (docs/recipes.md lists AntMaze flags)


def mlp(in_dim: int, hidden_dim: int, out_dim: int, layer_norm: bool) -> nn.Sequential:
    norm = (lambda: nn.LayerNorm(hidden_dim)) if layer_norm else nn.Identity
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), norm(), nn.ReLU(),
        nn.Linear(hidden_dim, hidden_dim), norm(), nn.ReLU(),
        nn.Linear(hidden_dim, out_dim),
    )  # fmt: skip


class EnsembleLinear(nn.Module):
    """`num_members` independent linear layers applied as one batched matmul: (E, B, in) -> (E, B, out)."""

    def __init__(self, num_members: int, in_dim: int, out_dim: int):
        super().__init__()
        bound = 1 / math.sqrt(in_dim)  # nn.Linear's default initialisation, per member
        self.weight = nn.Parameter(torch.empty(num_members, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_members, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm with its own scale and shift per ensemble member: each critic has its own LayerNorm (OGBench)."""

    def __init__(self, num_members: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_members, 1, dim))
        self.bias = nn.Parameter(torch.zeros(num_members, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias, nn.functional.layer_norm(x, x.shape[-1:]), self.weight)


class Critics(nn.Module):
    """An ensemble of Q(s, a) MLPs evaluated in one pass: returns (num_critics, batch)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, num_critics: int, layer_norm: bool):
        super().__init__()
        norm = (lambda: EnsembleLayerNorm(num_critics, hidden_dim)) if layer_norm else nn.Identity
        self.num_critics = num_critics
        self.net = nn.Sequential(
            EnsembleLinear(num_critics, obs_dim + act_dim, hidden_dim), norm(), nn.ReLU(),
            EnsembleLinear(num_critics, hidden_dim, hidden_dim), norm(), nn.ReLU(),
            EnsembleLinear(num_critics, hidden_dim, 1),
        )  # fmt: skip

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, actions], -1).expand(self.num_critics, -1, -1)  # the same batch for every critic
        return self.net(x).squeeze(-1)


class Actor(nn.Module):
    """Gaussian policy: tanh mean rescaled to the action box, state-independent learned log std (IQL)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, low: np.ndarray, high: np.ndarray):
        super().__init__()
        self.net = mlp(obs_dim, hidden_dim, act_dim, layer_norm=False)
        self.log_std = nn.Parameter(torch.zeros(act_dim))
        self.register_buffer("action_low", torch.tensor(low, dtype=torch.float32))
        self.register_buffer("action_high", torch.tensor(high, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The mean action mu(s), the policy used for evaluation."""
        scale, bias = (self.action_high - self.action_low) / 2, (self.action_high + self.action_low) / 2
        return torch.tanh(self.net(obs)) * scale + bias

    def std(self) -> torch.Tensor:
        return self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return torch.distributions.Normal(self(obs), self.std()).log_prob(actions).sum(-1)

    def sample(self, obs: torch.Tensor, num_samples: int) -> torch.Tensor:
        """num_samples actions per state, clipped to the action box: (num_samples, B, act_dim)."""
        mean = self(obs)
        noise = torch.randn((num_samples, *mean.shape), device=mean.device)
        return torch.clamp(mean + self.std() * noise, self.action_low, self.action_high)


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    # L2^tau(u) = |tau - 1(u < 0)| u^2 (IQL); tau = 0.5 is half the squared error: plain regression
    return torch.abs(expectile - (diff < 0).float()) * diff**2


def value_losses(batch: data.Transitions, critics: Critics, critics_target: Critics, value_net: nn.Module, args: Args):
    """(critic loss, value loss) on a batch: the training objective, also measured on validation data."""
    s, a, s_next = batch.observations, batch.actions, batch.next_observations
    with torch.no_grad():
        q_data = critics_target(s, a).min(0).values
        if args.value == "iql":
            next_value = value_net(s_next).squeeze(-1)  # V(s'), the in-sample maximum for tau -> 1
        else:
            next_value = critics_target(s_next, batch.next_actions).min(0).values  # Qbar(s', a'), a' ~ D
        # Q target: r + gamma (1 - done) V(s')   |   r + gamma (1 - done) Qbar(s', a')
        q_target = batch.rewards + args.discount * (1.0 - batch.terminals) * next_value
    # L_Q = E_D [ sum_i (Q_i(s, a) - q_target)^2 ]; under sarsa without the time-limit ends, where no a' was taken
    squared_error = ((critics(s, a) - q_target) ** 2).sum(0)
    if args.value == "sarsa":
        critic_loss = (squared_error * batch.next_action_known).sum() / batch.next_action_known.sum().clamp_min(1)
    else:
        critic_loss = squared_error.mean()
    # L_V = E_D [ L2^tau(Qbar(s, a) - V(s)) ]  (tau = 0.5 under sarsa: V(s) = E_{a~D} Qbar(s, a))
    expectile = args.expectile if args.value == "iql" else 0.5
    value_loss = expectile_loss(q_data - value_net(s).squeeze(-1), expectile).mean()
    return critic_loss, value_loss


@torch.no_grad()
def validation_losses(
    valid: data.Transitions, critics: Critics, critics_target: Critics, value_net: nn.Module, args: Args
) -> dict[str, torch.Tensor]:
    """valid/critic and valid/value on the held-out episodes (none with --validation-fraction 0, the default)."""
    if len(valid) == 0:
        return {}
    critic_loss, value_loss = value_losses(valid, critics, critics_target, value_net, args)
    return {"valid/critic": critic_loss, "valid/value": value_loss}


def update_value(
    batch: data.Transitions, critics: Critics, critics_target: Critics, value_net: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer], args: Args,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """One step on the Q and V losses, then one soft update of the target critics."""
    critic_loss, value_loss = value_losses(batch, critics, critics_target, value_net, args)
    optimizers["value"].zero_grad(set_to_none=True)
    (critic_loss + value_loss).backward()  # disjoint parameters: one backward serves both
    optimizers["value"].step()
    with torch.no_grad():  # Qbar <- (1 - rate) Qbar + rate Q, in place
        torch._foreach_lerp_(list(critics_target.parameters()), list(critics.parameters()), args.target_update_rate)
    return {"losses/critic": critic_loss.detach(), "losses/value": value_loss.detach()}


def awr_weights(advantage: torch.Tensor, alpha: float, max_weight: float) -> torch.Tensor:
    # exp(alpha A) overflows for large advantages: clip the weights at max_weight (IQL, OGBench)
    return torch.exp(alpha * advantage).clamp(max=max_weight)


def update_actor(
    batch: data.Transitions, actor: Actor, critics: Critics, value_net: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer], args: Args,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """One step of advantage-weighted regression on the policy."""
    s, a = batch.observations, batch.actions
    with torch.no_grad():
        advantage = critics(s, a).min(0).values - value_net(s).squeeze(-1)
        weights = awr_weights(advantage, args.alpha, args.max_weight)
    # J_AWR(pi) = E_{(s,a)~D} [ exp(alpha (Q(s,a) - V(s))) log pi(a|s) ], maximised
    actor_loss = -(weights * actor.log_prob(s, a)).mean()
    optimizers["actor"].zero_grad(set_to_none=True)
    actor_loss.backward()
    optimizers["actor"].step()
    return {"losses/actor": actor_loss.detach(), "actor/advantage_mean": advantage.mean(), "actor/weight_mean": weights.mean()}


def main(args: Args) -> training.RunResult:
    run = training.Run("awr", args, variant=args.value)  # seeds, device, run folder; --resume: the checkpoint's settings
    args, device = run.args, run.device

    # data: episodes split into train/validation; value and policy data are nested prefixes of train
    dataset = data.load_dataset(args.dataset)
    train, valid = data.split_by_episode(data.to_transitions(dataset, device), args.validation_fraction)
    train, valid = data.transform_rewards(train, valid, args.reward_scale, args.reward_shift, args.return_range_scale)
    value_train = data.subsample(train, args.value_data_fraction, seed=args.seed)
    policy_train = data.subsample(train, args.policy_data_fraction, seed=args.seed)
    obs_dim, act_dim = train.observations.shape[1], train.actions.shape[1]
    larger = value_train if args.value_data_fraction >= args.policy_data_fraction else policy_train
    normalizer = data.Normalizer.fit(larger.observations) if args.normalize_obs else data.Normalizer.identity(obs_dim, device)
    value_batches, policy_batches = value_train.with_observations(normalizer), policy_train.with_observations(normalizer)
    valid_batches = valid.with_observations(normalizer)
    mse_states = {  # fixed random subsets of raw states: the MSE analysis stays cheap on 100k-transition datasets
        "train": policy_train.observations[torch.randperm(len(policy_train), device=device)[:MSE_STATES]],
        "valid": valid.observations[torch.randperm(len(valid), device=device)[:MSE_STATES]],
    }

    low, high = dataset.action_space.low, dataset.action_space.high
    critics = Critics(obs_dim, act_dim, args.hidden_dim, args.num_critics, args.layer_norm).to(device)
    critics_target = Critics(obs_dim, act_dim, args.hidden_dim, args.num_critics, args.layer_norm).to(device)
    critics_target.load_state_dict(critics.state_dict())
    critics_target.requires_grad_(False)
    value_net = mlp(obs_dim, args.hidden_dim, 1, args.layer_norm).to(device)
    actor = Actor(obs_dim, act_dim, args.hidden_dim, low, high).to(device)
    optimizers = {  # fused: one kernel per step; the critics and V share one (disjoint parameters)
        "actor": torch.optim.Adam(actor.parameters(), lr=args.learning_rate, fused=True),
        "value": torch.optim.Adam([*critics.parameters(), *value_net.parameters()], lr=args.learning_rate, fused=True),
    }
    value_step = training.compile_step(update_value, args.compile, args.cudagraphs, device)  # speed options; off = eager
    actor_step = training.compile_step(update_actor, args.compile, args.cudagraphs, device)
    policy = lambda obs: actor(normalizer(obs))  # noqa: E731 - raw observations in, the mean action out
    policies = {"": policy}  # the policies evaluated, by the tag of their eval/ and mse/ names ("": the headline)

    # everything an exact continuation needs
    models = {"actor": actor, "critic": critics, "critic_target": critics_target, "value": value_net,
              "actor_optimizer": optimizers["actor"], "value_optimizer": optimizers["value"]}  # fmt: skip
    metrics = {}
    for step in run.steps(models, normalizer):
        value_batch, policy_batch = value_batches.sample(args.batch_size), policy_batches.sample(args.batch_size)
        metrics |= value_step(value_batch, critics, critics_target, value_net, optimizers, args)
        metrics |= actor_step(policy_batch, actor, critics, value_net, optimizers, args)
        if run.logging(step):
            valid_losses = validation_losses(valid_batches, critics, critics_target, value_net, args)
            run.log(step, metrics | valid_losses | evaluation.validation_mse(policy, valid))
        if run.evaluating(step):
            for tag, evaluated in policies.items():
                run.evaluate(step, evaluated, dataset, mse_states, tag)
    return run.result()


def make_policy(
    args: Args, dataset: minari.MinariDataset, state: dict, device: torch.device
) -> Callable[[torch.Tensor], torch.Tensor]:  # fmt: skip
    """The policy whose score main() reports, rebuilt from a checkpoint's state (tools/evaluate.py reads any run's
    checkpoint.pt with it): raw observations in, actions out."""
    normalizer, low, high = data.Normalizer(**state["normalizer"]), dataset.action_space.low, dataset.action_space.high
    obs_dim, act_dim = normalizer.mean.shape[0], len(low)
    networks = {"actor": Actor(obs_dim, act_dim, args.hidden_dim, low, high).to(device)}
    for name, network in networks.items():  # eval(): no dropout, as main() evaluates
        network.load_state_dict(state["models"][name])
        network.eval()
    return lambda obs: networks["actor"](normalizer(obs))


if __name__ == "__main__":
    main(training.cli(Args, RECIPES))
