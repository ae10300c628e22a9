"""Goal-conditioned behaviour cloning (GCBC; Lynch et al. 2019, Ghosh et al. 2021), OGBench's simplest baseline.

Every later state of a trajectory is a goal that trajectory reached, so the actions on the way are a policy for it
(hindsight relabelling): the policy pi(a | s, g) imitates them, with no reward and no value function:
    L_pi = -E_{(s, a) ~ D, g ~ later states of the same trajectory} [ log pi(a | s, g) ],
    pi(a | s, g) = N(mu(s, g), I): OGBench's constant std 1, so this is the squared error of the mean, halved.
Goals are drawn by goals.py as OGBench's GCDataset draws them (uniformly between the next state and the end of the
trajectory); the policy is scored by OGBench's protocol: each of the env's five evaluation goals, --eval-episodes
episodes each, success at the end of the episode (eval/success_rate and eval/success_rate_task<k>).

Departures from OGBench (impls/agents/gcbc.py, whose defaults are in --help where this CPU allows them): 256-unit
layers, batch 256 and 20k updates by default (OGBench: 512, 1024 and 1M); PyTorch's default initialisation
(OGBench: Xavier-uniform, the mean layer scaled by 0.01); 10 evaluation episodes per goal (OGBench: 50).
"""

import math
from dataclasses import dataclass
from typing import Callable

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
    """transitions per update (OGBench: 1024)"""
    learning_rate: float = 3e-4
    """Adam learning rate (OGBench's)"""
    hidden_dim: int = 256
    """width of the policy's hidden layers (OGBench: 512)"""
    hidden_layers: int = 3
    """hidden layers of the policy (OGBench's 3)"""
    discount: float = 0.99
    """gamma: unused by GCBC's uniform goals; kept for the goal sampler, as OGBench's config"""
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
    exp_name: str = "gcbc"
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
        flags=dict(OGBENCH_BUDGET, dataset="ogbench/pointmaze-medium-navigate-v0"),
        source="OGBench's impls/hyperparameters.sh (pointmaze-medium-navigate-v0, GCBC line) and main.py's defaults (1M updates, eval every 100k); its agent's batch 1024 and 3 x 512 layers",
        published="OGBench Table 2: 9 ± 6% success on pointmaze-medium-navigate-v0 (8 seeds, mean of the last three evaluations; transcribed, see benchmarks/results/goal_conditioned.md)",
    ),
    "pointmaze-stitch": dict(
        flags=dict(OGBENCH_BUDGET, dataset="ogbench/pointmaze-medium-stitch-v0"),
        source="OGBench's impls/hyperparameters.sh (pointmaze-medium-stitch-v0, GCBC line) and main.py's defaults (1M updates, eval every 100k); its agent's batch 1024 and 3 x 512 layers",
        published="OGBench Table 2: 23 ± 18% success on pointmaze-medium-stitch-v0 (8 seeds, mean of the last three evaluations; transcribed, see benchmarks/results/goal_conditioned.md)",
    ),
    "cube-single": dict(
        flags=dict(OGBENCH_BUDGET, dataset="ogbench/cube-single-play-v0"),
        source="OGBench's impls/hyperparameters.sh (cube-single-play-v0, GCBC line) and main.py's defaults (1M updates, eval every 100k); its agent's batch 1024 and 3 x 512 layers",
        published="OGBench Table 2: 6 ± 2% success on cube-single-play-v0 (8 seeds, mean of the last three evaluations; transcribed, see benchmarks/results/goal_conditioned.md)",
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


def update(batch: goals.GoalBatch, actor: GoalActor, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
    # L_pi = -E [ log pi(a | s, g) ], g a later state of the trajectory of (s, a)
    log_prob = actor.log_prob(batch.observations, batch.actor_goals, batch.actions)
    actor_loss = -log_prob.mean()
    optimizers["actor"].zero_grad(set_to_none=True)
    actor_loss.backward()
    optimizers["actor"].step()
    with torch.no_grad():
        mse = ((actor(batch.observations, batch.actor_goals) - batch.actions) ** 2).mean()
    return {"losses/actor": actor_loss.detach(), "actor/action_mse": mse}


def main(args: Args) -> training.RunResult:
    run = training.Run("gcbc", args)  # seeds, device, run folder, TensorBoard; with --resume the checkpoint's settings
    args, device = run.args, run.device

    # data: every transition; goals drawn from the data itself, on the device (observations as they are, as OGBench)
    dataset = data.load_dataset(args.dataset)
    train = data.to_transitions(dataset, device)
    obs_dim, act_dim = train.observations.shape[1], train.actions.shape[1]
    random_goals = goals.actor_random_share(args.dataset, value_based=False)  # OGBench's GCBC: 0, stitch datasets too
    sampler = goals.GoalSampler(train, args.discount, value=goals.GoalMix(), actor=goals.GoalMix(random=random_goals))

    low, high = dataset.action_space.low, dataset.action_space.high
    actor = GoalActor(obs_dim, obs_dim, act_dim, args.hidden_dim, args.hidden_layers, low, high).to(device)
    optimizers = {"actor": torch.optim.Adam(actor.parameters(), lr=args.learning_rate, fused=True)}
    update_step = speed.compile_step(update, args, device, optimizers)  # --compile, --cudagraphs; off = eager
    policy = actor.act  # raw observations and goals in, actions out

    models = {"actor": actor, "actor_optimizer": optimizers["actor"]}
    for step in run.steps(models, data.Normalizer.identity(obs_dim, device)):
        metrics = update_step(sampler.sample(args.batch_size), actor, optimizers)
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
