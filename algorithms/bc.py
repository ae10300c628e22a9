"""Behaviour cloning and filtered ("%") BC: the baseline every offline RL table starts with.

BC fits a deterministic policy to the dataset's actions by regression,
    pi = argmin_pi E_{(s, a) ~ D} [ || pi(s) - a ||^2 ],
and %BC (Chen et al. 2021, the Decision Transformer paper's baseline) does the same on the top
`--top-fraction` of episodes by return. Neither can do better than the best behaviour it copies,
nor stitch parts of trajectories together (Kumar et al. 2022): that is what offline RL adds.
"""

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
    top_fraction: float = 1.0
    """keep the top fraction of episodes by undiscounted return (1.0 = plain BC, 0.1 = "10% BC"; counts episodes, as CORL's bc_10 configs do; the DT paper's %BC counts timesteps)"""
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
    """gradient updates (CORL uses 1_000_000 on D4RL)"""
    batch_size: int = 256
    """transitions per update"""
    learning_rate: float = 3e-4
    """Adam learning rate"""
    hidden_dim: int = 256
    """width of the two hidden layers"""
    normalize_obs: bool = True
    """standardise observations with the training data's mean and std"""
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
    exp_name: str = "bc"
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


# `python algorithms/bc.py RECIPE [flags]`: a paper's settings for a family of datasets; flags after the name override
# them. README's recipe table is generated from these (python benchmarks/recipes.py --readme README.md).
RECIPES = {
    "antmaze": dict(
        flags=dict(dataset="D4RL/antmaze/umaze-v1", total_steps=1_000_000, eval_every=5_000, eval_episodes=100),
        source="CORL: `configs/offline/bc/antmaze/*_v2.yaml` (10% BC: `configs/offline/bc_10/`, frac 0.1)",
        published="CORL (-v2): umaze 55.3, medium-play 0.0, large-play 0.0; with --top-fraction 0.1 (10% BC): 65.8 / 2.0 / 0.0",
    ),
    "adroit": dict(
        flags=dict(dataset="D4RL/pen/human-v2", total_steps=1_000_000, eval_every=5_000),
        source="CORL: `configs/offline/bc/pen/*_v1.yaml` (10% BC: `configs/offline/bc_10/`)",
        published="CORL (-v1): pen-human 71.0, pen-cloned 51.9; with --top-fraction 0.1 (10% BC): 27.0 / 46.7",
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


def update(
    batch: data.Transitions, actor: Actor, optimizers: dict[str, torch.optim.Optimizer]
) -> dict[str, torch.Tensor]:  # fmt: skip
    """One regression step of the policy onto the batch's actions."""
    # L(pi) = E_{(s,a)~D} || pi(s) - a ||^2
    loss = ((actor(batch.observations) - batch.actions) ** 2).mean()
    optimizers["actor"].zero_grad(set_to_none=True)
    loss.backward()
    optimizers["actor"].step()
    return {"losses/actor": loss.detach()}


def main(args: Args) -> training.RunResult:
    variant = f"top{args.top_fraction:g}" if args.top_fraction < 1 else ""  # BC and 10% BC runs get their own folders
    run = training.Run("bc", args, variant)  # seeds, device, run folder, TensorBoard; --resume: the checkpoint's settings
    args, device = run.args, run.device

    # data: every transition (a validation split if asked), then the top episodes of train for %BC, states normalised
    dataset = data.load_dataset(args.dataset)
    train, valid = data.split_by_episode(data.to_transitions(dataset, device), args.validation_fraction)
    train = data.top_episodes(train, args.top_fraction)
    obs_dim, act_dim = train.observations.shape[1], train.actions.shape[1]
    normalizer = data.Normalizer.fit(train.observations) if args.normalize_obs else data.Normalizer.identity(obs_dim, device)
    train_batches = train.with_observations(normalizer)

    actor = Actor(obs_dim, act_dim, args.hidden_dim, dataset.action_space.low, dataset.action_space.high).to(device)
    optimizers = {"actor": torch.optim.Adam(actor.parameters(), lr=args.learning_rate, fused=True)}  # fused: one kernel
    update_step = training.compile_step(update, args.compile, args.cudagraphs, device)  # speed options; off = eager
    policy = lambda obs: actor(normalizer(obs))  # noqa: E731 - raw observations in, actions out

    models = {"actor": actor, "optimizer": optimizers["actor"]}  # everything an exact continuation needs
    for step in run.steps(models, normalizer):
        metrics = update_step(train_batches.sample(args.batch_size), actor, optimizers)
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
