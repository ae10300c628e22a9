"""TD3+BC: TD3 with a behaviour-cloning term in the actor loss (Fujimoto & Gu 2021, "A Minimalist
Approach to Offline Reinforcement Learning").

The critics learn by TD3's clipped double-Q target with target policy smoothing; the actor maximises
    pi = argmax_pi E_{(s,a)~D} [ lambda * Q(s, pi(s)) - (pi(s) - a)^2 ],   lambda = alpha / mean|Q(s, pi(s))|,
so the Q term and the BC term keep the same scale whatever the rewards are. With states normalised,
that is the whole method: two lines changed from TD3.
"""

import copy
import math
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
    """episodes per evaluation, run in parallel in a vector env"""
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
    step: int, args: Args, actor: Actor, actor_target: Actor, critics: Critics, critics_target: Critics,
    actor_optimizer: torch.optim.Optimizer, critic_optimizer: torch.optim.Optimizer, batch: data.Transitions,
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
    critic_optimizer.zero_grad(set_to_none=True)
    critic_loss.backward()
    critic_optimizer.step()
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
        actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        actor_optimizer.step()
        # theta' <- tau * theta + (1 - tau) * theta', in place for all tensors at once
        with torch.no_grad():
            for online, target in ((critics, critics_target), (actor, actor_target)):
                torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), args.tau)
        logs |= {"losses/actor": actor_loss.detach(), "losses/bc_mse": bc_loss.detach(), "losses/lambda": lmbda}
    return logs


def main(args: Args) -> dict:
    if args.total_steps <= 0 or args.batch_size <= 0:
        raise ValueError("--total-steps and --batch-size must be positive integers.")
    if args.num_critics < 1 or args.policy_freq < 1:
        raise ValueError("--num-critics and --policy-freq must be at least 1.")
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = data.resolve_device(args.device)
    run_name = f"{args.dataset.replace('/', '_')}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_path = os.path.dirname(os.path.abspath(args.resume)) if args.resume else os.path.join(args.run_dir, run_name)
    checkpoint_path = os.path.join(run_path, "checkpoint.pt")

    # data: episodes split into train/validation; rewards transformed as the flags ask (train only)
    dataset = data.load_dataset(args.dataset)
    transitions = data.to_transitions(dataset, device)
    train, valid = data.split_by_episode(transitions, args.validation_fraction)
    if args.batch_size > len(train):
        raise ValueError(f"--batch-size {args.batch_size} is larger than the {len(train)} training transitions.")
    train, valid = data.transform_rewards(train, valid, args.reward_scale, args.reward_shift, args.return_range_scale)
    obs_dim, act_dim = train.observations.shape[1], train.actions.shape[1]
    normalizer = data.Normalizer.fit(train.observations) if args.normalize_obs else data.Normalizer.identity(obs_dim, device)
    train_batches = train.with_observations(normalizer)

    low, high = dataset.action_space.low, dataset.action_space.high
    actor = Actor(obs_dim, act_dim, args.hidden_dim, low, high).to(device)
    critics = Critics(obs_dim, act_dim, args.hidden_dim, args.num_critics).to(device)
    actor_target = copy.deepcopy(actor).requires_grad_(False)
    critics_target = copy.deepcopy(critics).requires_grad_(False)
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=args.actor_lr, fused=True)  # fused: one kernel per step
    critic_optimizer = torch.optim.Adam(critics.parameters(), lr=args.critic_lr, fused=True)
    update_step = data.compile_step(update, args.compile, args.cudagraphs, device)  # speed options; off = eager
    policy = lambda obs: actor(normalizer(obs))  # noqa: E731 - raw observations in, actions out
    eval_envs = data.make_eval_envs(dataset, args.eval_episodes)
    # everything an exact continuation needs (the delayed actor update follows the step, which is saved too)
    models = {"actor": actor, "critics": critics, "actor_target": actor_target, "critics_target": critics_target,
              "actor_optimizer": actor_optimizer, "critic_optimizer": critic_optimizer}  # fmt: skip

    def save(step: int) -> None:
        state_dicts = {name: model.state_dict() for name, model in models.items()}
        data.save_checkpoint(checkpoint_path, "td3_bc", asdict(args), step, state_dicts, normalizer)

    first_step = 1
    if args.resume:
        state = data.load_checkpoint(args.resume, "td3_bc", device, dataset_id=args.dataset)
        for name, model in models.items():
            model.load_state_dict(state["models"][name])
        data.set_rng_state(state["rng"])  # the batches drawn after the checkpoint are the ones a straight run draws
        first_step = state["step"] + 1

    writer = SummaryWriter(data.writable_run_dir(run_path))
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in asdict(args).items()))
    if args.track:
        import wandb

        wandb.init(project=args.wandb_project, name=run_name, config=asdict(args), sync_tensorboard=True)

    scores, logs, start_time, eval_seconds = [], {}, time.time(), 0.0
    progress = tqdm(range(first_step, args.total_steps + 1), disable=not args.progress, desc=run_name[:40], mininterval=1.0)
    step = first_step - 1  # the last update done (a resumed run may have none left)
    with data.GracefulInterrupt() as interrupt:
        for step in progress:
            batch = train_batches.sample(args.batch_size)
            logs |= update_step(
                step, args, actor, actor_target, critics, critics_target, actor_optimizer, critic_optimizer, batch
            )

            if step % args.log_every == 0 or step == args.total_steps:
                values = {name: value.item() for name, value in logs.items()}  # the only host sync, once per log_every
                data.check_finite(values, step, checkpoint_path)
                for name, value in values.items():
                    writer.add_scalar(name, value, step)
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
                progress.set_postfix(score=f"{result.normalized_mean:.1f}", critic=f"{logs['losses/critic'].item():.3f}")
                eval_seconds += time.time() - eval_start

            if (args.checkpoint_every and step % args.checkpoint_every == 0) or (args.save_model and step == args.total_steps):
                save(step)
            if interrupt.requested:
                save(step)
                print(f"interrupted at step {step}; resume with: python algorithms/td3_bc.py --resume {checkpoint_path} "
                      f"--dataset {args.dataset} --total-steps {args.total_steps}")  # fmt: skip
                break

    updates_per_s = (step - first_step + 1) / (time.time() - start_time - eval_seconds)
    eval_envs.close()
    writer.close()
    if not scores:
        return {"normalized_score": float("nan"), "scores": [], "updates_per_s": updates_per_s, "run_path": run_path}
    print(
        f"{args.dataset} td3_bc seed {args.seed}: normalized score {scores[-1]:.1f} "
        f"(return {result.mean:.1f} +- {result.std:.1f}), {updates_per_s:.0f} updates/s, logs in {run_path}"
    )
    return {"normalized_score": scores[-1], "scores": scores, "updates_per_s": updates_per_s, "run_path": run_path}


if __name__ == "__main__":
    main(tyro.cli(Args))
