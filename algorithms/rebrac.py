"""ReBRAC: TD3+BC revisited (Tarasov et al. 2023, "Revisiting the Minimalist Approach to Offline Reinforcement
Learning"). `diff algorithms/td3_bc.py algorithms/rebrac.py` shows the method.

What changes from TD3+BC: LayerNorm in the critics (after each hidden layer), a third hidden layer, a larger batch
(1024) and learning rate (1e-3), and the behaviour-cloning penalty split in two, each with its own weight:
    actor:   pi = argmax_pi E_{(s,a)~D} [ lambda * min_i Q_i(s, pi(s)) - beta_actor * ||pi(s) - a||^2 ],
             lambda = 1 / mean|min_i Q_i(s, pi(s))|
    critic:  y = r + gamma * (1 - d) * ( min_i Q'_i(s', a~') - beta_critic * ||a~' - a'||^2 ),
             a~' = pi'(s') + clipped noise, a' the action the data took in s'.
The critic's penalty lowers the value of next actions far from the data's, so the critic itself stays near the
data; the actor's is TD3+BC's term with its own weight (TD3+BC: beta_actor = mean|Q| / alpha, beta_critic = 0).

Departures from the paper: the penalties are measured in units of the action box's half-width (the paper's terms on
[-1, 1] actions); where a time limit ended an episode the data took no a', so the critic's penalty is dropped there
(CORL's code reads the next row of the dataset). Defaults are CORL's `algorithms/offline/rebrac.py` (3x256 nets,
batch 1024, learning rates 1e-3, beta 1 and 1, no state normalisation); the betas are tuned per dataset (RECIPES).
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
    batch_size: int = 1024
    """transitions per update (the paper: 1024; TD3+BC's 256)"""
    actor_lr: float = 1e-3
    """Adam learning rate of the actor (the paper: 1e-3 on locomotion)"""
    critic_lr: float = 1e-3
    """Adam learning rate of the critics (the paper: 1e-3 on locomotion)"""
    hidden_dim: int = 256
    """width of the hidden layers of the actor and of each critic"""
    hidden_layers: int = 3
    """hidden layers of the actor and of each critic (the paper: 3; TD3+BC's 2)"""
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
    actor_bc_coef: float = 1.0
    """beta_actor: weight of the actor's BC penalty against the normalised Q term (larger = closer to the data)"""
    critic_bc_coef: float = 1.0
    """beta_critic: weight of the penalty on the next action's distance from the data's in the critic's target"""
    normalize_obs: bool = False
    """standardise observations with the training data's mean and std (off in the paper and CORL's ReBRAC)"""
    reward_scale: float = 1.0
    """r <- r * reward_scale + reward_shift. The paper leaves D4RL locomotion rewards as they are; CORL's ReBRAC antmaze recipe is --reward-scale 100"""
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
    exp_name: str = "rebrac"
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


# `python algorithms/rebrac.py RECIPE [flags]`: a paper's settings for a family of datasets; flags after the name override
# them. README's recipe table is generated from these (python benchmarks/recipes.py --readme README.md).
RECIPES = {
    "antmaze": dict(
        flags=dict(dataset="D4RL/antmaze/umaze-v1", reward_scale=100.0, actor_bc_coef=0.003, critic_bc_coef=0.002,
                   actor_lr=3e-4, critic_lr=5e-5, gamma=0.999, batch_size=256, total_steps=1_000_000, eval_every=50_000,
                   eval_episodes=100),  # fmt: skip
        source="CORL: `configs/offline/rebrac/antmaze/umaze_v2.yaml` (normalize_reward: rewards x 100 on antmaze, `algorithms/offline/rebrac.py`)",
        published="CORL (-v2, last score): umaze 97.75 ± 1.48",
    ),
    "adroit": dict(
        flags=dict(dataset="D4RL/pen/human-v2", actor_bc_coef=0.1, critic_bc_coef=0.5, actor_lr=3e-4, critic_lr=3e-4,
                   batch_size=256, total_steps=1_000_000, eval_every=5_000),  # fmt: skip
        source="CORL: `configs/offline/rebrac/pen/human_v1.yaml`",
        published="CORL (-v1, last score): pen-human 103.16 ± 8.49",
    ),
}


class Actor(nn.Module):
    """Deterministic policy: MLP with a tanh head rescaled to the action box; the last layer starts near 0 (CORL)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, hidden_layers: int, low: np.ndarray, high: np.ndarray):
        super().__init__()
        widths = [obs_dim] + [hidden_dim] * hidden_layers
        hidden = [layer for n_in, n_out in zip(widths, widths[1:]) for layer in (nn.Linear(n_in, n_out), nn.ReLU())]
        self.net = nn.Sequential(*hidden, nn.Linear(hidden_dim, act_dim), nn.Tanh())
        nn.init.uniform_(self.net[-2].weight, -1e-3, 1e-3)
        nn.init.uniform_(self.net[-2].bias, -1e-3, 1e-3)
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


class EnsembleLayerNorm(nn.Module):
    """LayerNorm with its own scale and shift per ensemble member: each critic has its own LayerNorm (OGBench)."""

    def __init__(self, num_members: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_members, 1, dim))
        self.bias = nn.Parameter(torch.zeros(num_members, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias, nn.functional.layer_norm(x, x.shape[-1:]), self.weight)


class Critics(nn.Module):
    """An ensemble of Q(s, a) MLPs evaluated in one pass: returns (num_critics, batch). Each hidden layer is
    Linear -> ReLU -> LayerNorm: the LayerNorm keeps Q bounded on actions far from the data (the paper's main change)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, hidden_layers: int, num_critics: int):
        super().__init__()
        self.num_critics = num_critics
        widths = [obs_dim + act_dim] + [hidden_dim] * hidden_layers
        self.net = nn.Sequential(
            *[layer for n_in, n_out in zip(widths, widths[1:])
              for layer in (EnsembleLinear(num_critics, n_in, n_out), nn.ReLU(), EnsembleLayerNorm(num_critics, n_out))],
            EnsembleLinear(num_critics, hidden_dim, 1),
        )  # fmt: skip
        nn.init.uniform_(self.net[-1].weight, -3e-3, 3e-3)  # CORL: the last layer starts near 0
        nn.init.uniform_(self.net[-1].bias, -3e-3, 3e-3)

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
        # y = r + gamma * (1 - d) * (min_i Q'_i(s', a~') - beta_critic * ||a~' - a'||^2), a' the data's next action
        # (unknown after a time limit: no penalty there); the distance in units of the action box's half-width
        next_q = critics_target(batch.next_observations, next_actions).min(0).values
        next_distance = (((next_actions - batch.next_actions) / scale) ** 2).sum(-1) * batch.next_action_known
        target_q = batch.rewards + args.gamma * (1 - batch.terminals) * (next_q - args.critic_bc_coef * next_distance)

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
        q_pi = critics(batch.observations, pi).min(0).values  # the minimum over the critics, as the paper's code
        critics.requires_grad_(True)
        # lambda = 1 / ((1/N) sum_i |Q(s_i, pi(s_i))|), held constant in the gradient
        lmbda = 1 / q_pi.abs().mean().detach()
        # pi = argmax E_D [ lambda Q(s, pi(s)) - beta_actor ||pi(s) - a||^2 ], the squared distance summed over action
        # dimensions in units of the action box's half-width (the paper's term on [-1, 1] actions)
        bc_loss = (((pi - batch.actions) / actor.action_scale) ** 2).sum(-1).mean()
        actor_loss = -lmbda * q_pi.mean() + args.actor_bc_coef * bc_loss
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
    run = training.Run("rebrac", args)  # seeds, device, run folder, TensorBoard; with --resume the checkpoint's settings
    args, device = run.args, run.device

    # data: every transition (a validation split if asked), rewards transformed as the flags ask, states normalised
    dataset = data.load_dataset(args.dataset)
    train, valid = data.split_by_episode(data.to_transitions(dataset, device), args.validation_fraction)
    train, valid = data.transform_rewards(train, valid, args.reward_scale, args.reward_shift, args.return_range_scale)
    obs_dim, act_dim = train.observations.shape[1], train.actions.shape[1]
    normalizer = data.Normalizer.fit(train.observations) if args.normalize_obs else data.Normalizer.identity(obs_dim, device)
    train_batches = train.with_observations(normalizer)

    low, high = dataset.action_space.low, dataset.action_space.high
    actor = Actor(obs_dim, act_dim, args.hidden_dim, args.hidden_layers, low, high).to(device)
    critics = Critics(obs_dim, act_dim, args.hidden_dim, args.hidden_layers, args.num_critics).to(device)
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
    networks = {"actor": Actor(obs_dim, act_dim, args.hidden_dim, args.hidden_layers, low, high).to(device)}
    for name, network in networks.items():  # eval(): no dropout, as main() evaluates
        network.load_state_dict(state["models"][name])
        network.eval()
    return lambda obs: networks["actor"](normalizer(obs))


if __name__ == "__main__":
    main(training.cli(Args, RECIPES))
