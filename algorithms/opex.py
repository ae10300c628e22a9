"""On-the-fly policy extraction (OPEX, Park et al. 2024): steer a trained policy along grad_a Q at test time.

"Is Value Learning Really the Main Bottleneck in Offline RL?" finds that offline RL is often limited by
how the policy generalises to the states it visits at test time (B3), and proposes to adjust each action
along the frozen Q function's gradient when acting, with no change to training:
    u <- clip( u + beta * grad_u Q(s, u)|_{u = mu(s)}, -1, 1 ),  Q = min(Q_1, Q_2)
in action-box units u = (a - b) / h (b the box's centre, h its half-width), the units of D4RL's [-1, 1] actions where
the paper steps a <- a + beta grad_a Q; as grad_u Q = h grad_a Q, the step in actions is a <- a + beta h^2 grad_a Q,
so beta means the same for any action range. --normalize-gradient uses grad_u / ||grad_u||.
This script trains nothing: it loads the policy mu and the critics of a ddpg_bc.py or awr.py run saved with
--save-model (the same network classes, rebuilt from that run's own settings, on its dataset and with its
normaliser) and evaluates every beta of --betas. beta = 0 is the plain policy: the untagged eval/normalized_score
and mse/*_expert; beta > 0 is tagged _beta<beta>.

    python algorithms/ddpg_bc.py --dataset pendulum/medium-v0 --save-model
    python algorithms/opex.py --checkpoint runs/<run>/checkpoint.pt --betas 0.03 0.1 0.3
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

import data
import training

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # bounds of the Gaussian policy's log std (IQL)
MSE_STATES = 2_000  # training and validation states on which the action MSE to the expert is measured
TRAINERS = ("ddpg_bc", "awr")  # the scripts whose checkpoints hold this Actor and these Critics


@dataclass
class Args:
    checkpoint: str
    """checkpoint.pt of a ddpg_bc.py or awr.py run saved with --save-model: its policy, critics, dataset and settings"""
    betas: tuple[float, ...] = (0.0, 0.01, 0.03, 0.1, 0.3)
    """OPEX step sizes beta, in action-box units (u <- u + beta grad_u Q, u = (a - centre) / half-width: a <- mu(s) + beta half-width^2 grad_a Q), each evaluated (tagged _beta<beta>); 0, the plain policy, is always evaluated (untagged)"""
    normalize_gradient: bool = False
    """step along grad_u Q / ||grad_u Q|| (beta is then the step length in units of the action box's half-width)"""
    seed: int = 0
    """seed of torch, numpy, python and the evaluation envs (the training run's --seed: the episodes it was evaluated on)"""
    device: str = "auto"
    """auto (CUDA when present), cpu, cuda or cuda:N"""
    threads: int = 1
    """torch CPU threads; 1 is fastest whenever anything else runs on the machine"""
    eval_episodes: int = 10
    """episodes per evaluated policy, run in parallel in a vector env (at least 1: evaluating is all this script does)"""
    capture_video: bool = False
    """record the first episode of each evaluation: run_dir/<run name>/videos/step_<N>.mp4 and TensorBoard's Images tab (MuJoCo without a display: MUJOCO_GL=egl, or MUJOCO_GL=osmesa with Debian's libosmesa6)"""
    run_dir: str = "runs"
    """TensorBoard logs go to run_dir/<run name>/"""
    exp_name: str = "opex"
    """experiment name, part of the run name"""
    progress: bool = True
    """show a progress bar over the betas (--no-progress for logs and CI)"""
    track: bool = False
    """mirror the scalars to Weights & Biases (needs `pip install wandb`)"""
    wandb_project: str = "cleanoffrl"
    """Weights & Biases project name"""


RECIPES: dict[str, dict] = {}  # `python algorithms/opex.py RECIPE [flags]`: none: its β grid is ours, no published score to reproduce


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


class OpexPolicy:
    """a = clip(mu(s) + beta h^2 grad_a Q(s, a)|_{a = mu(s)}), h the action box's half-width: beta grad_u Q in box units u.

    Raw observations in, as evaluation.evaluate wants. Keeps the mean gradient norm of each call in .grad_norms (device
    tensors: no host sync while acting).
    """

    def __init__(self, actor: Actor, critic: Critics, normalizer: data.Normalizer, beta: float, normalize_gradient: bool):
        self.actor, self.critic, self.normalizer = actor, critic, normalizer
        self.beta, self.normalize_gradient, self.grad_norms = beta, normalize_gradient, []

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        s = self.normalizer(obs)
        with torch.no_grad():
            action = self.actor(s)
        with torch.enable_grad():  # evaluation.evaluate calls policies under no_grad
            action.requires_grad_(True)
            q = self.critic(s, action).min(0).values  # the min of the twin Qs, as the actor was trained on
            (grad,) = torch.autograd.grad(q.sum(), action)  # per state: Q(s_i, a_i) depends on a_i only
        self.grad_norms.append(grad.norm(dim=-1).mean())  # ||grad_a Q||, logged
        # in box units u = (a - b) / h, h = (high - low) / 2, the gradient is grad_u Q = h grad_a Q (chain rule)
        low, high = self.actor.action_low, self.actor.action_high
        grad = (high - low) / 2 * grad
        if self.normalize_gradient:
            grad = grad / (grad.norm(dim=-1, keepdim=True) + 1e-6)
        # u <- u + beta grad_u Q, i.e. a <- clip(a + h beta grad_u Q, low, high)   (OPEX; beta = 0 returns mu(s) bit for
        # bit): beta in units of the action box, so it means the same for any action range (h = 1 on D4RL)
        return torch.clamp(action.detach() + self.beta * (high - low) / 2 * grad, low, high)


def main(args: Args) -> training.RunResult:
    run = training.Run("opex", args)  # seeds, device, run folder, TensorBoard
    device = run.device
    trained = run.checkpoint(TRAINERS)  # another script's checkpoint is refused, naming the script that reads it
    saved = trained["args"]  # the training run's own settings: its dataset, data split and network sizes

    # data: the trained run's dataset and normaliser; its training and validation states for the MSE to the expert
    dataset = data.load_dataset(saved["dataset"])
    train, valid = data.split_by_episode(data.to_transitions(dataset, device), saved["validation_fraction"])
    policy_train = data.subsample(train, saved["policy_data_fraction"], seed=saved["seed"])
    normalizer = data.Normalizer(**trained["normalizer"])
    mse_states = {  # fixed random subsets of raw states: the MSE analysis stays cheap on 100k-transition datasets
        "train": policy_train.observations[torch.randperm(len(policy_train), device=device)[:MSE_STATES]],
        "valid": valid.observations[torch.randperm(len(valid), device=device)[:MSE_STATES]],
    }

    # the trained networks, built from the checkpoint's settings; Q is frozen: only the actions move along its gradient
    obs_dim, act_dim = train.observations.shape[1], train.actions.shape[1]
    low, high = dataset.action_space.low, dataset.action_space.high
    actor = Actor(obs_dim, act_dim, saved["hidden_dim"], low, high).to(device)
    critics = Critics(obs_dim, act_dim, saved["hidden_dim"], saved["num_critics"], saved["layer_norm"]).to(device)
    actor.load_state_dict(trained["models"]["actor"])
    critics.load_state_dict(trained["models"]["critic"])
    critics.requires_grad_(False)

    step = trained["step"]  # the scores land at the training run's last step
    for beta in tqdm(sorted({0.0, *args.betas}), disable=not args.progress, desc=run.name[:40]):
        tag = f"_beta{beta:g}" if beta else ""  # beta 0: the plain policy, the untagged headline score
        policy = OpexPolicy(actor, critics, normalizer, beta, args.normalize_gradient)
        result = run.evaluate(step, policy, dataset, mse_states, tag)
        # the mean ||grad_a Q|| of the rollout: its calls come first, one per env step (the MSE's come after)
        grad_norm = torch.stack(policy.grad_norms[: result.lengths.max()]).mean()
        run.writer.add_scalar(f"eval/grad_norm{tag}", grad_norm.item(), step)
    return run.result()


if __name__ == "__main__":
    main(training.cli(Args, RECIPES))
