"""Implicit Q-learning (IQL, Kostrikov et al. 2022): never query Q on an action outside the dataset.

A state value V is fitted to an upper expectile of Q over the dataset's actions, which stands in for
max_a Q(s, a) without evaluating any other action; Q is then regressed on r + gamma V(s'):
    L_V(psi)   = E_{(s,a)~D}    [ L2^tau( Q_target(s, a) - V_psi(s) ) ],   L2^tau(u) = |tau - 1(u < 0)| u^2
    L_Q(theta) = E_{(s,a,s')~D} [ ( r + gamma V_psi(s') - Q_theta(s, a) )^2 ]
The policy is extracted by advantage-weighted regression (AWR), again on dataset actions only:
    L_pi(phi)  = -E_{(s,a)~D} [ min(exp(beta (Q_target(s, a) - V_psi(s))), 100) log pi_phi(a | s) ]
tau -> 1 approaches in-sample Q-learning (max over dataset actions); tau = 0.5 is SARSA.
The paper's settings: locomotion --expectile 0.7 --temperature 3 --return-range-scale;
antmaze --expectile 0.9 --temperature 10 --no-return-range-scale --reward-shift -1; kitchen/adroit
--expectile 0.7 --temperature 0.5 --actor-dropout 0.1 --no-return-range-scale (all with --total-steps 1000000;
the official code also adds what --no-normalize-obs does: it leaves observations as they are).

Departures from the paper: the policy's log-std is clamped to [-5, 2] as in the official code (CORL: [-20, 2]).
The Q target and the advantages use V from before this step's V update, as CORL does (the official code updates
V first). No flag for CORL's deterministic actor (its hopper-medium and -medium-replay configs).

Fine-tuning online (the paper's Section 5.3): --online-steps steps in the env after the offline updates, each
followed by one update with the same losses on a batch drawn uniformly from the offline and online data together
(--mixing-ratio fixes the offline share instead). IQL needs no change to go online: its losses only ever use the
actions in the batch, whoever collected them. As the official fine-tuning config, a fine-tuning run never decays the
actor's learning rate.
"""

import copy
import math
from dataclasses import dataclass, replace
from typing import Callable

import minari
import numpy as np
import torch
import torch.nn as nn

import data
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
    """gradient updates: 3k is the student's first run, under a minute with the dataset's build (83 on pendulum/medium; 10k: 97); the paper uses 1_000_000 on D4RL"""
    online_steps: int = 0
    """fine-tuning: env steps after the --total-steps offline updates, each followed by one update (the paper: 1_000_000 on AntMaze)"""
    mixing_ratio: float = -1.0
    """fine-tuning: fraction of each online-phase batch drawn from the offline data, the rest from the online episodes; -1: the union of both sampled uniformly, as the official code (train_finetune.py:98-136, one replay buffer; CORL the same); Cal-QL: 0.5"""
    batch_size: int = 256
    """transitions per update"""
    expectile: float = 0.7
    """tau of the expectile regression for V (0.7 locomotion, 0.9 antmaze; 0.5 = SARSA)"""
    temperature: float = 3.0
    """beta, inverse temperature of the advantage weights (3 locomotion, 10 antmaze, 0.5 kitchen/adroit)"""
    max_weight: float = 100.0
    """clip of the advantage weights exp(beta A)"""
    discount: float = 0.99
    """gamma"""
    target_update_rate: float = 0.005
    """Polyak rate of the target Q networks"""
    clip_target: bool = False
    """clip the targets of Q (r + gamma V(s')) and of V (Q_target(s, a)) to [min(r, 0), max(r, 0)] / (1 - gamma) over the training rewards and those of the finished online episodes, the range of any discounted return in this data: keeps V within its bound on sparse-reward tasks (mazes), where it otherwise overestimates past 1/(1 - gamma) (benchmarks/results/maze_recipe.md); not in the paper"""
    actor_lr: float = 3e-4
    """Adam learning rate of the policy"""
    critic_lr: float = 3e-4
    """Adam learning rate of the Q networks"""
    value_lr: float = 3e-4
    """Adam learning rate of the V network"""
    cosine_actor_lr: bool = True
    """cosine decay of the actor learning rate to 0 over the updates, as the paper's offline runs; never with --online-steps (official fine-tuning config: no decay, configs/antmaze_finetune_config.py:21; CORL decays over the offline updates, then rises again online)"""
    hidden_dim: int = 256
    """width of the two hidden layers of every network"""
    num_critics: int = 2
    """Q networks (evaluated as one batched ensemble); targets use their minimum"""
    actor_dropout: float = 0.0
    """dropout in the policy's hidden layers (0.1 on kitchen/adroit in the paper)"""
    return_range_scale: bool = True
    """scale rewards by 1000 / (max - min episode return), the paper's locomotion setting (official code: locomotion only, so antmaze/kitchen/adroit need --no-return-range-scale; CORL: off in most locomotion configs)"""
    reward_scale: float = 1.0
    """r <- r * reward_scale + reward_shift (after the return-range scaling)"""
    reward_shift: float = 0.0
    """-1 is the paper's antmaze setting: every step costs until the goal"""
    normalize_obs: bool = True
    """standardise observations with the training data's mean and std (official IQL code: off; CORL: on)"""
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
    exp_name: str = "iql"
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


# `python algorithms/iql.py RECIPE [flags]`: a paper's settings for a family of datasets; flags after the name override
# them. README's recipe table is generated from these (python benchmarks/recipes.py --readme README.md).
RECIPES = {
    "antmaze": dict(
        flags=dict(dataset="D4RL/antmaze/umaze-v1", expectile=0.9, temperature=10.0, return_range_scale=False, reward_shift=-1.0,
                   normalize_obs=False, total_steps=1_000_000, eval_every=100_000, eval_episodes=100),  # fmt: skip
        source="the official code: `configs/antmaze_config.py`, `train_offline.py` (rewards - 1, observations as they are), its README's AntMaze command (100 episodes every 100k)",
        published="IQL Table 1 (D4RL -v0): umaze 87.5, medium-play 71.2, large-play 39.6; CORL (-v2, normalised observations): 77.0 / 65.8 / 42.0",
    ),
    "kitchen": dict(
        flags=dict(dataset="D4RL/kitchen/complete-v2", expectile=0.7, temperature=0.5, actor_dropout=0.1, return_range_scale=False,
                   normalize_obs=False, total_steps=1_000_000, eval_every=5_000),  # fmt: skip
        source="the official code: `configs/kitchen_config.py`, `train_offline.py` (rewards as logged), its README's Kitchen and Adroit command",
        published="IQL Table 1 (D4RL -v0): complete 62.5, partial 46.3, mixed 51.0 (D4RL rewarded each task once: see docs/datasets.md)",
    ),
    "adroit": dict(
        flags=dict(dataset="D4RL/pen/human-v2", expectile=0.7, temperature=0.5, actor_dropout=0.1, return_range_scale=False,
                   normalize_obs=False, total_steps=1_000_000, eval_every=5_000),  # fmt: skip
        source="the official code: `configs/kitchen_config.py` (its README's Adroit command uses it too), `train_offline.py`",
        published="IQL Table 1 (D4RL -v0): pen-human 71.5, pen-cloned 37.3; CORL (-v1, --expectile 0.8 --temperature 3): 78.5 / 83.4",
    ),
    "pointmaze": dict(
        flags=dict(dataset="pointmaze/medium-stitch-v0", expectile=0.9, temperature=10.0, return_range_scale=False, clip_target=True,
                   total_steps=30_000, eval_every=5_000, eval_episodes=50),  # fmt: skip
        source="ours, for the local mazes: AntMaze's settings without the reward shift, with --clip-target (`benchmarks/results/maze_recipe.md`)",
        published="this project's stitching claim, seeds 10-12 (`benchmarks/results/claims/stitching.md`): 33.7 ± 20.8 [13.9, 55.4], success 75%",
    ),
}


def mlp(in_dim: int, hidden_dim: int, out_dim: int, dropout: float = 0.0) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(hidden_dim, out_dim),
    )  # fmt: skip


class GaussianActor(nn.Module):
    """pi(a|s) = N(mu(s), sigma): tanh-bounded mean rescaled to the action box, state-independent std."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, low: np.ndarray, high: np.ndarray, dropout: float):
        super().__init__()
        self.net = mlp(obs_dim, hidden_dim, act_dim, dropout)
        self.log_std = nn.Parameter(torch.zeros(act_dim))
        self.register_buffer("action_scale", torch.tensor((high - low) / 2, dtype=torch.float32))
        self.register_buffer("action_bias", torch.tensor((high + low) / 2, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The mean action: what the policy does at evaluation."""
        return torch.tanh(self.net(obs)) * self.action_scale + self.action_bias

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        std = self.log_std.clamp(-5.0, 2.0).exp() * self.action_scale
        z = (actions - self(obs)) / std
        return (-0.5 * z**2 - torch.log(std) - 0.5 * np.log(2 * np.pi)).sum(-1)


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


class ValueNetwork(nn.Module):
    def __init__(self, obs_dim: int, hidden_dim: int):
        super().__init__()
        self.net = mlp(obs_dim, hidden_dim, 1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    # L2^tau(u) = |tau - 1(u < 0)| u^2 (IQL); tau = 0.5 is half the squared error: plain regression
    return torch.abs(expectile - (diff < 0).float()) * diff**2


def return_bounds(rewards: torch.Tensor, discount: float) -> torch.Tensor:
    """[min(r, 0), max(r, 0)] / (1 - gamma) over these rewards: the range of any discounted return made of them."""
    return torch.stack([rewards.min().clamp(max=0.0), rewards.max().clamp(min=0.0)]) / (1 - discount)


def advantage_weights(advantages: torch.Tensor, temperature: float, max_weight: float) -> torch.Tensor:
    """exp(beta A), clipped: a few large advantages must not dominate the regression (or overflow)."""
    return torch.exp(temperature * advantages).clamp(max=max_weight)


def update(
    batch: data.Transitions, actor: GaussianActor, critic: Critics, target_critic: Critics, value: ValueNetwork,
    target_range: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer], args: Args,
) -> dict[str, torch.Tensor]:  # fmt: skip
    with torch.no_grad():
        target_q = target_critic(batch.observations, batch.actions).min(0).values.clamp(*target_range)
        next_v = value(batch.next_observations)

    # L_V = E_{(s,a)~D} [ L2^tau( Q_target(s,a) - V(s) ) ]
    v = value(batch.observations)
    value_loss = expectile_loss(target_q - v, args.expectile).mean()
    optimizers["value"].zero_grad(set_to_none=True)
    value_loss.backward()
    optimizers["value"].step()

    # L_pi = -E_{(s,a)~D} [ min(exp(beta (Q_target(s,a) - V(s))), 100) log pi(a|s) ]
    weights = advantage_weights(target_q - v.detach(), args.temperature, args.max_weight)
    actor_loss = -(weights * actor.log_prob(batch.observations, batch.actions)).mean()
    optimizers["actor"].zero_grad(set_to_none=True)
    actor_loss.backward()
    optimizers["actor"].step()

    # L_Q = E_{(s,a,r,s')~D} [ (r + gamma (1 - done) V(s') - Q_i(s,a))^2 ], summed over the ensemble
    # (both targets clipped to target_range with --clip-target, else to (-inf, inf): no-ops)
    td_target = (batch.rewards + args.discount * (1.0 - batch.terminals) * next_v).clamp(*target_range)
    q = critic(batch.observations, batch.actions)
    critic_loss = ((q - td_target) ** 2).mean(1).sum()
    optimizers["critic"].zero_grad(set_to_none=True)
    critic_loss.backward()
    optimizers["critic"].step()

    # theta_target <- (1 - rate) theta_target + rate theta, in place (outside autograd: no graph)
    with torch.no_grad():
        torch._foreach_lerp_(list(target_critic.parameters()), list(critic.parameters()), args.target_update_rate)
    return {
        "losses/value": value_loss.detach(), "losses/actor": actor_loss.detach(), "losses/critic": critic_loss.detach(),
        "q/data_mean": q.detach().mean(), "v/batch_max": v.detach().max(), "actor/weight_mean": weights.mean(),
        "actor/weights_clipped": (weights >= args.max_weight).float().mean(),
    }  # fmt: skip


@torch.no_grad()
def validation_losses(
    valid: data.Transitions, actor: GaussianActor, critic: Critics, target_critic: Critics, value: ValueNetwork,
    args: Args,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """The same losses on held-out episodes (already normalised and reward-transformed); none without them."""
    if len(valid) == 0:  # no validation episodes with --validation-fraction 0, the default
        return {}
    actor.eval()  # no dropout when measuring
    v = value(valid.observations)
    target_q = target_critic(valid.observations, valid.actions).min(0).values
    td_target = valid.rewards + args.discount * (1.0 - valid.terminals) * value(valid.next_observations)
    q = critic(valid.observations, valid.actions)
    losses = {
        "valid/value": expectile_loss(target_q - v, args.expectile).mean(),
        "valid/critic": ((q - td_target) ** 2).mean(1).sum(),
        "valid/action_mse": ((actor(valid.observations) - valid.actions) ** 2).mean(),
    }
    actor.train()
    return losses


def main(args: Args) -> training.RunResult:
    run = training.Run("iql", args)  # seeds, device, run folder, TensorBoard; with --resume the checkpoint's settings
    args, device = run.args, run.device

    # data: every transition (a validation split if asked), rewards transformed as the flags ask, states normalised
    dataset = data.load_dataset(args.dataset)
    train, valid = data.split_by_episode(data.to_transitions(dataset, device), args.validation_fraction)
    obs_dim, act_dim = train.observations.shape[1], train.actions.shape[1]
    normalizer = data.Normalizer.fit(train.observations) if args.normalize_obs else data.Normalizer.identity(obs_dim, device)
    reward_transform = data.reward_transform(train, args.reward_scale, args.reward_shift, args.return_range_scale)
    prepare = lambda t: replace(t.with_observations(normalizer), rewards=reward_transform(t.rewards))  # noqa: E731
    train_batches, valid_batches = prepare(train), prepare(valid)
    online = finetuning.OnlineInteraction(dataset, args.seed, device, prepare)  # the env of the online phase, its episodes
    # --clip-target's range: the training rewards', widened by each finished online episode's (below, in the loop)
    target_range, bounded_episodes = torch.tensor([-math.inf, math.inf], device=device), None

    low, high = dataset.action_space.low, dataset.action_space.high
    actor = GaussianActor(obs_dim, act_dim, args.hidden_dim, low, high, args.actor_dropout).to(device)
    critic = Critics(obs_dim, act_dim, args.hidden_dim, args.num_critics).to(device)
    target_critic = copy.deepcopy(critic).requires_grad_(False)
    value = ValueNetwork(obs_dim, args.hidden_dim).to(device)
    optimizers = {
        # fused: one kernel per step; the actor lr a tensor, so the cosine schedule never makes --compile recompile
        "actor": torch.optim.Adam(actor.parameters(), lr=torch.tensor(args.actor_lr, device=device), fused=True),
        "critic": torch.optim.Adam(critic.parameters(), lr=args.critic_lr, fused=True),
        "value": torch.optim.Adam(value.parameters(), lr=args.value_lr, fused=True),
    }
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR
    scheduler = cosine(optimizers["actor"], run.last_step) if args.cosine_actor_lr and not args.online_steps else None  # lr 0 at the last step
    update_step = training.compile_step(update, args.compile, args.cudagraphs, device)  # speed options; off = eager
    policy = lambda obs: actor(normalizer(obs))  # noqa: E731 - raw observations in, mean action out

    def explore(obs: torch.Tensor) -> torch.Tensor:  # the online phase acts with a ~ pi(.|s), inside the action box
        actor.eval()  # the mean without dropout, as evaluated; the Gaussian's noise is the exploration
        with torch.no_grad():
            mean, std = policy(obs), actor.log_std.clamp(-5.0, 2.0).exp() * actor.action_scale
            action = (mean + std * torch.randn_like(mean)).clamp(actor.action_bias - actor.action_scale, actor.action_bias + actor.action_scale)
        actor.train()
        return action

    # everything an exact continuation needs: networks, optimizers and the cosine schedule's position
    models = {"actor": actor, "critic": critic, "target_critic": target_critic, "value": value, "online": online}
    models |= {f"{name}_optimizer": optimizer for name, optimizer in optimizers.items()}
    if scheduler is not None:
        models["actor_scheduler"] = scheduler
    for step in run.steps(models, normalizer):
        if step <= args.total_steps:
            batch = train_batches.sample(args.batch_size)
        else:  # online phase: one env step with a ~ pi(.|s), then one update on offline and online data
            online.step(explore(online.observation))
            batch = online.sample(train_batches, args.batch_size, args.mixing_ratio)
        if args.clip_target and online.episodes != bounded_episodes:  # at the start, and when an online episode ended
            seen = train_batches.rewards if online.batches is None else torch.cat([train_batches.rewards, online.batches.rewards])
            target_range, bounded_episodes = return_bounds(seen, args.discount), online.episodes
        metrics = update_step(batch, actor, critic, target_critic, value, target_range, optimizers, args)
        if scheduler is not None:
            scheduler.step()
        if run.logging(step):
            metrics["charts/actor_lr"] = optimizers["actor"].param_groups[0]["lr"]
            run.log(step, metrics | online.metrics() | validation_losses(valid_batches, actor, critic, target_critic, value, args))
        if run.evaluating(step):
            actor.eval()  # the mean action, no dropout
            run.evaluate(step, policy, dataset, {"train": train.observations, "valid": valid.observations})
            actor.train()
    return run.result()


def make_policy(
    args: Args, dataset: minari.MinariDataset, state: dict, device: torch.device
) -> Callable[[torch.Tensor], torch.Tensor]:  # fmt: skip
    """The policy whose score main() reports, rebuilt from a checkpoint's state (tools/evaluate.py reads any run's
    checkpoint.pt with it): raw observations in, actions out."""
    normalizer, low, high = data.Normalizer(**state["normalizer"]), dataset.action_space.low, dataset.action_space.high
    obs_dim, act_dim = normalizer.mean.shape[0], len(low)
    networks = {"actor": GaussianActor(obs_dim, act_dim, args.hidden_dim, low, high, args.actor_dropout).to(device)}
    for name, network in networks.items():  # eval(): no dropout, as main() evaluates
        network.load_state_dict(state["models"][name])
        network.eval()
    return lambda obs: networks["actor"](normalizer(obs))  # the mean action


if __name__ == "__main__":
    main(training.cli(Args, RECIPES))
