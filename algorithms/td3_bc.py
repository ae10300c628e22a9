"""TD3+BC: TD3 with a behaviour-cloning term in the actor loss (Fujimoto & Gu 2021, "A Minimalist
Approach to Offline Reinforcement Learning").

The critics learn by TD3's clipped double-Q target with target policy smoothing; the actor maximises
    pi = argmax_pi E_{(s,a)~D} [ lambda * Q(s, pi(s)) - (pi(s) - a)^2 ],   lambda = alpha / mean|Q(s, pi(s))|,
so the Q term and the BC term keep the same scale whatever the rewards are. With states normalised,
that is the whole method: two lines changed from TD3.

Departures from the paper: none in the defaults (they match the official code and CORL). The BC term is measured
in units of the action box's half-width, which equals the paper's term on D4RL's [-1, 1] actions.
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
    """gradient updates (the paper: 1_000_000 on D4RL)"""
    batch_size: int = 256
    """transitions per update"""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor"""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics"""
    hidden_dim: int = 256
    """width of the two hidden layers of the actor and of each critic"""
    num_critics: int = 2
    """critics in the ensemble; the target is the minimum over them (2 = TD3's clipped double Q)"""
    gamma: float = 0.99
    """discount factor"""
    tau: float = 0.005
    """soft target update rate: target <- (1 - tau) target + tau online"""
    policy_noise: float = 0.2
    """std of the target policy smoothing noise, as a fraction of the max action"""
    noise_clip: float = 0.5
    """clip of the target policy smoothing noise, as a fraction of the max action"""
    policy_freq: int = 2
    """update the actor and the targets once every this many critic updates"""
    alpha: float = 2.5
    """weight of the Q term against the BC term (lambda = alpha / mean|Q|); larger = less BC"""
    normalize_obs: bool = True
    """standardise observations with the training data's mean and std (on in the paper)"""
    reward_scale: float = 1.0
    """r <- r * reward_scale + reward_shift. The paper leaves D4RL locomotion rewards as they are; CORL's antmaze recipe is --reward-shift -1"""
    reward_shift: float = 0.0
    """added to every reward after scaling (see --reward-scale)"""
    return_range_scale: bool = False
    """first scale rewards by 1000 / (max - min episode return) (CORL's optional locomotion normalisation)"""
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
    exp_name: str = "td3_bc"
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


# `python algorithms/td3_bc.py RECIPE [flags]`: a paper's settings for a family of datasets; flags after the name override
# them. README's recipe table is generated from these (python benchmarks/recipes.py --readme README.md).
RECIPES = {
    "antmaze": dict(
        flags=dict(dataset="D4RL/antmaze/umaze-v1", reward_shift=-1.0, total_steps=1_000_000, eval_every=5_000, eval_episodes=100),
        source="CORL: `configs/offline/td3_bc/antmaze/*_v2.yaml` (normalize_reward: rewards - 1 on antmaze, `algorithms/offline/td3_bc.py`)",
        published="CORL (-v2): umaze 70.8, medium-play 0.3, large-play 0.0",
    ),
    "adroit": dict(
        flags=dict(dataset="D4RL/pen/human-v2", total_steps=1_000_000, eval_every=5_000),
        source="CORL: `configs/offline/td3_bc/pen/*_v1.yaml` (the paper's defaults, rewards as logged)",
        published="CORL (-v1): pen-human -3.9, pen-cloned 5.1",
    ),
}


class Actor(nn.Module):
    """Deterministic policy: MLP with a tanh head rescaled to the action box."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, low: np.ndarray, high: np.ndarray):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, act_dim), nn.Tanh(),
        )  # fmt: skip
        self.register_buffer("action_scale", torch.tensor((high - low) / 2, dtype=torch.float32))
        self.register_buffer("action_bias", torch.tensor((high + low) / 2, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs) * self.action_scale + self.action_bias


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


def update(
    batch: data.Transitions, actor: Actor, actor_target: Actor, critics: Critics, critics_target: Critics,
    optimizers: dict[str, torch.optim.Optimizer], args: Args, step: int,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """One critic update, and every `policy_freq` steps one actor update and one soft target update."""
    with torch.no_grad():
        # target policy smoothing: a' = clip(pi'(s') + clip(eps, -c, c), low, high), eps ~ N(0, sigma^2)
        scale, bias = actor.action_scale, actor.action_bias
        noise = (torch.randn_like(batch.actions) * args.policy_noise).clamp(-args.noise_clip, args.noise_clip)
        next_actions = actor_target(batch.next_observations) + noise * scale
        next_actions = torch.maximum(torch.minimum(next_actions, bias + scale), bias - scale)
        # y = r + gamma * (1 - d) * min_i Q'_i(s', a')   (clipped double Q)
        next_q = critics_target(batch.next_observations, next_actions).min(0).values
        target_q = batch.rewards + args.gamma * (1 - batch.terminals) * next_q

    # L(theta) = sum_i E_D (Q_i(s, a) - y)^2
    q = critics(batch.observations, batch.actions)
    critic_loss = ((q - target_q) ** 2).mean(1).sum()
    optimizers["critic"].zero_grad(set_to_none=True)
    critic_loss.backward()
    optimizers["critic"].step()
    logs = {"losses/critic": critic_loss.detach(), "q/data_mean": q.detach().mean()}

    if step % args.policy_freq == 0:
        pi = actor(batch.observations)
        critics.requires_grad_(False)  # the actor's gradient flows through Q to the action, not into Q
        q_pi = critics(batch.observations, pi)[0]  # the actor follows Q_1, as in TD3
        critics.requires_grad_(True)
        # lambda = alpha / ((1/N) sum_i |Q(s_i, pi(s_i))|), held constant in the gradient
        lmbda = args.alpha / q_pi.abs().mean().detach()
        # pi = argmax E_D [ lambda Q(s, pi(s)) - (pi(s) - a)^2 ]   (Eq. 3 of the paper), the BC term in units of
        # the action box's half-width, as D4RL's [-1, 1] actions are: alpha means the same for any action range
        bc_loss = (((pi - batch.actions) / actor.action_scale) ** 2).mean()
        actor_loss = -lmbda * q_pi.mean() + bc_loss
        optimizers["actor"].zero_grad(set_to_none=True)
        actor_loss.backward()
        optimizers["actor"].step()
        # theta' <- tau * theta + (1 - tau) * theta', in place for all tensors at once
        with torch.no_grad():
            for online, target in ((critics, critics_target), (actor, actor_target)):
                torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), args.tau)
        logs |= {"losses/actor": actor_loss.detach(), "losses/bc": bc_loss.detach(), "actor/lambda": lmbda}
    return logs


def main(args: Args) -> training.RunResult:
    run = training.Run("td3_bc", args)  # seeds, device, run folder, TensorBoard; with --resume the checkpoint's settings
    args, device = run.args, run.device

    # data: every transition (a validation split if asked), rewards transformed as the flags ask, states normalised
    dataset = data.load_dataset(args.dataset)
    train, valid = data.split_by_episode(data.to_transitions(dataset, device), args.validation_fraction)
    train, valid = data.transform_rewards(train, valid, args.reward_scale, args.reward_shift, args.return_range_scale)
    obs_dim, act_dim = train.observations.shape[1], train.actions.shape[1]
    normalizer = data.Normalizer.fit(train.observations) if args.normalize_obs else data.Normalizer.identity(obs_dim, device)
    train_batches = train.with_observations(normalizer)

    low, high = dataset.action_space.low, dataset.action_space.high
    actor = Actor(obs_dim, act_dim, args.hidden_dim, low, high).to(device)
    critics = Critics(obs_dim, act_dim, args.hidden_dim, args.num_critics).to(device)
    actor_target = copy.deepcopy(actor).requires_grad_(False)
    critics_target = copy.deepcopy(critics).requires_grad_(False)
    optimizers = {  # fused: one kernel per step
        "actor": torch.optim.Adam(actor.parameters(), lr=args.actor_lr, fused=True),
        "critic": torch.optim.Adam(critics.parameters(), lr=args.critic_lr, fused=True),
    }
    update_step = training.compile_step(update, args.compile, args.cudagraphs, device)  # speed options; off = eager
    policy = lambda obs: actor(normalizer(obs))  # noqa: E731 - raw observations in, actions out

    # everything an exact continuation needs (the delayed actor update follows the step, which is saved too)
    models = {"actor": actor, "critics": critics, "actor_target": actor_target, "critics_target": critics_target,
              "actor_optimizer": optimizers["actor"], "critic_optimizer": optimizers["critic"]}  # fmt: skip
    metrics = {}
    for step in run.steps(models, normalizer):
        batch = train_batches.sample(args.batch_size)
        metrics |= update_step(batch, actor, actor_target, critics, critics_target, optimizers, args, step)
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
    networks = {"actor": Actor(obs_dim, act_dim, args.hidden_dim, low, high).to(device)}
    for name, network in networks.items():  # eval(): no dropout, as main() evaluates
        network.load_state_dict(state["models"][name])
        network.eval()
    return lambda obs: networks["actor"](normalizer(obs))


if __name__ == "__main__":
    main(training.cli(Args, RECIPES))
