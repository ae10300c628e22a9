"""Behaviour cloning and filtered ("%") BC: the baseline every offline RL table starts with.

BC fits a deterministic policy to the dataset's actions by regression,
    pi = argmin_pi E_{(s, a) ~ D} [ || pi(s) - a ||^2 ],
and %BC (Chen et al. 2021, the Decision Transformer paper's baseline) does the same on the top
`--top-fraction` of episodes by return. Neither can do better than the best behaviour it copies,
nor stitch parts of trajectories together (Kumar et al. 2022): that is what offline RL adds.
"""

import os
import random
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import tyro
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import data


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
    """episodes per evaluation, run in parallel in a vector env"""
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
    """continue the run saved in this checkpoint.pt (same run folder, TensorBoard continues)"""
    progress: bool = True
    """show a progress bar (--no-progress for logs and CI)"""
    track: bool = False
    """mirror the scalars to Weights & Biases (needs `pip install wandb`)"""
    wandb_project: str = "cleanoffrl"
    """Weights & Biases project name"""


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


def update(actor: Actor, optimizer: torch.optim.Optimizer, batch: data.Transitions) -> torch.Tensor:
    # L(pi) = E_{(s,a)~D} || pi(s) - a ||^2
    loss = ((actor(batch.observations) - batch.actions) ** 2).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def main(args: Args) -> dict:
    if args.total_steps <= 0 or args.batch_size <= 0:
        raise ValueError("--total-steps and --batch-size must be positive integers.")
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = data.resolve_device(args.device)
    run_name = f"{args.dataset.replace('/', '_')}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_path = os.path.dirname(os.path.abspath(args.resume)) if args.resume else os.path.join(args.run_dir, run_name)
    checkpoint_path = os.path.join(run_path, "checkpoint.pt")

    # data: episodes split into train/validation, then the top episodes of train for %BC
    dataset = data.load_dataset(args.dataset)
    transitions = data.to_transitions(dataset, device)
    train, valid = data.split_by_episode(transitions, args.validation_fraction)
    dataset_episode_return = train.episode_returns[train.episode_starts].mean().item()
    train = data.top_episodes(train, args.top_fraction)
    train_episode_return = train.episode_returns[train.episode_starts].mean().item()
    if args.batch_size > len(train):
        raise ValueError(f"--batch-size {args.batch_size} is larger than the {len(train)} training transitions.")
    obs_dim, act_dim = train.observations.shape[1], train.actions.shape[1]
    normalizer = data.Normalizer.fit(train.observations) if args.normalize_obs else data.Normalizer.identity(obs_dim, device)
    train_batches = train.with_observations(normalizer)

    actor = Actor(obs_dim, act_dim, args.hidden_dim, dataset.action_space.low, dataset.action_space.high).to(device)
    optimizer = torch.optim.Adam(actor.parameters(), lr=args.learning_rate, fused=True)  # fused: one kernel per step
    update_step = data.compile_step(update, args.compile, args.cudagraphs, device)  # speed options; off = eager
    policy = lambda obs: actor(normalizer(obs))  # noqa: E731 - raw observations in, actions out
    eval_envs = data.make_eval_envs(dataset, args.eval_episodes)

    def save(step: int) -> None:
        models = {"actor": actor.state_dict(), "optimizer": optimizer.state_dict()}
        data.save_checkpoint(checkpoint_path, "bc", asdict(args), step, models, normalizer)

    first_step = 1
    if args.resume:
        state = data.load_checkpoint(args.resume, "bc", device, dataset_id=args.dataset)
        actor.load_state_dict(state["models"]["actor"])
        optimizer.load_state_dict(state["models"]["optimizer"])
        data.set_rng_state(state["rng"])  # the batches drawn after the checkpoint are the ones a straight run draws
        first_step = state["step"] + 1

    writer = SummaryWriter(data.writable_run_dir(run_path))
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in asdict(args).items()))
    if args.track:
        import wandb

        wandb.init(project=args.wandb_project, name=run_name, config=asdict(args), sync_tensorboard=True)

    scores, start_time, eval_seconds = [], time.time(), 0.0
    progress = tqdm(range(first_step, args.total_steps + 1), disable=not args.progress, desc=run_name[:40], mininterval=1.0)
    step = first_step - 1  # the last update done (a resumed run may have none left)
    with data.GracefulInterrupt() as interrupt:
        for step in progress:
            loss = update_step(actor, optimizer, train_batches.sample(args.batch_size))

            if step % args.log_every == 0 or step == args.total_steps:
                loss = loss.item()  # the only host sync, once per log_every updates
                data.check_finite({"losses/actor_mse": loss}, step, checkpoint_path)
                writer.add_scalar("losses/actor_mse", loss, step)
                writer.add_scalar("charts/updates_per_s", (step - first_step + 1) / (time.time() - start_time - eval_seconds), step)
                if len(valid):  # no validation episodes with --validation-fraction 0, the default
                    with torch.no_grad():
                        writer.add_scalar("valid/action_mse", ((policy(valid.observations) - valid.actions) ** 2).mean().item(), step)

            if step % args.eval_every == 0 or step == args.total_steps:
                eval_start = time.time()
                result = data.evaluate(policy, eval_envs, dataset, seed=args.seed + 1_000, device=device)
                scores.append(result.normalized_mean)
                writer.add_scalar("eval/return", result.mean, step)
                writer.add_scalar("eval/normalized_score", result.normalized_mean, step)
                # action MSE to the scripted expert on training / validation / visited states (Park et al. 2024)
                for split, states in (("train", train.observations), ("valid", valid.observations), ("eval", result.observations)):
                    mse = data.expert_action_mse(policy, args.dataset, states, device)
                    if np.isfinite(mse):
                        writer.add_scalar(f"mse/{split}_expert", mse, step)
                progress.set_postfix(score=f"{result.normalized_mean:.1f}", loss=f"{loss:.4f}")
                eval_seconds += time.time() - eval_start

            if (args.checkpoint_every and step % args.checkpoint_every == 0) or (args.save_model and step == args.total_steps):
                save(step)
            if interrupt.requested:
                save(step)
                print(f"interrupted at step {step}; resume with: python algorithms/bc.py --resume {checkpoint_path} "
                      f"--dataset {args.dataset} --total-steps {args.total_steps}")  # fmt: skip
                break

    updates_per_s = (step - first_step + 1) / (time.time() - start_time - eval_seconds)
    eval_envs.close()
    writer.close()
    if not scores:
        return {"normalized_score": float("nan"), "scores": [], "updates_per_s": updates_per_s, "run_path": run_path}
    print(
        f"{args.dataset} bc(top {args.top_fraction:g}) seed {args.seed}: normalized score {scores[-1]:.1f} "
        f"(return {result.mean:.1f} +- {result.std:.1f}), {updates_per_s:.0f} updates/s, logs in {run_path}"
    )
    return {
        "normalized_score": scores[-1], "scores": scores, "updates_per_s": updates_per_s, "run_path": run_path,
        "dataset_episode_return": dataset_episode_return, "train_episode_return": train_episode_return,
    }  # fmt: skip


if __name__ == "__main__":
    main(tyro.cli(Args))
