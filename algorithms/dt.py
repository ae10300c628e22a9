"""Decision Transformer (Chen et al. 2021): offline RL as return-conditioned sequence modelling.

A trajectory is read as the token sequence (R_1, s_1, a_1, R_2, s_2, a_2, ...) where
R_t = sum_{t' >= t} r_t' is the return-to-go. Each token gets its own linear embedding plus a learned
embedding of the episode timestep t; a causal GPT predicts a_t from the hidden state of the s_t token
(which has seen R_1..R_t, s_1..s_t, a_1..a_{t-1} of the last K steps):
    L = E_{windows ~ D} (1/K) sum_t || pi(R_{<=t}, s_{<=t}, a_{<t}) - a_t ||^2 .
At test time the model is conditioned on a target return R_1 and R_{t+1} = R_t - r_t after each step.
No value function, no Bellman backup: it cannot stitch trajectories (Kumar et al. 2022), but it can
pick the best behaviour present in the data by asking for a high return.

Departures from the paper: observations are standardised with std + 1e-3 (the paper's code: std + 1e-6).
"""

from dataclasses import dataclass
from typing import Callable

import minari
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import data
import training


@dataclass
class Args:
    dataset: str = "pendulum/medium-v0"
    """Minari dataset id: the local suite (`python algorithms/local_suite.py` lists it) or a remote id"""
    target_returns: tuple[float, ...] = ()
    """returns to condition on at evaluation, each reported (default: the dataset's best episode return
    and the midpoint of its worst and best; the paper and CORL: 3600/1800 hopper, 12000/6000 halfcheetah,
    5000/2500 walker2d; CORL: 1.0/0.5 antmaze, 3100/1550 pen-human)"""
    rtg_scale: float = 0.0
    """the model sees R_t / rtg_scale; 0 = the largest |episode return| in the data, so inputs lie in
    [-1, 1] for negative (pendulum) and positive (maze) returns alike (the paper: 1000 on MuJoCo; CORL: 1000
    locomotion, 1 antmaze/adroit)"""
    context_length: int = 20
    """K: timesteps (3K tokens) the transformer sees"""
    embed_dim: int = 64
    """token width (the paper and CORL: 128; 128 x 3 layers runs 2-3 updates/s on one CPU core)"""
    num_layers: int = 1
    """transformer blocks (the paper and CORL: 3)"""
    num_heads: int = 1
    """attention heads"""
    dropout: float = 0.0
    """dropout on embeddings, attention weights and residual branches (the paper and CORL: 0.1, for 100k updates;
    at a few thousand updates it keeps a small model from fitting the actions)"""
    max_timestep: int = 1000
    """size of the timestep embedding table (longer episodes reuse the last entry)"""
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
    total_steps: int = 2_000
    """gradient updates (the paper and CORL: 100_000)"""
    batch_size: int = 64
    """K-step windows per update (the paper: 64; CORL: 4096 locomotion/adroit, 64 antmaze)"""
    learning_rate: float = 1e-3
    """AdamW peak learning rate (the paper: 1e-4 over 100k updates; CORL: 8e-4 locomotion/adroit, 1e-4 antmaze; 1e-3 suits a few thousand)"""
    weight_decay: float = 1e-4
    """AdamW weight decay"""
    warmup_steps: int | None = None
    """linear learning-rate warm-up from 0; None = 10% of total_steps (the paper's code and CORL: 10_000 of 100_000)"""
    grad_clip: float = 0.25
    """clip the gradient's global norm to this"""
    normalize_obs: bool = True
    """standardise observations with the training data's mean and std"""
    validation_fraction: float = 0.0
    """fraction of episodes held out for the valid/* losses and action MSE (0 = train on every transition, as the papers do; the held-out episodes are the same for every --seed)"""
    eval_every: int = 1_000
    """evaluate the policy every this many updates (and once at the end)"""
    eval_episodes: int = 10
    """episodes per evaluation and target return, run in parallel in a vector env (0 = no evaluation)"""
    capture_video: bool = False
    """record the first episode of each evaluation: run_dir/<run name>/videos/step_<N>.mp4 and TensorBoard's Images tab (MuJoCo without a display: MUJOCO_GL=egl, or MUJOCO_GL=osmesa with Debian's libosmesa6)"""
    log_every: int = 250
    """write losses to TensorBoard every this many updates"""
    run_dir: str = "runs"
    """TensorBoard logs and checkpoints go to run_dir/<run name>/"""
    exp_name: str = "dt"
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


# `python algorithms/dt.py RECIPE [flags]`: a paper's settings for a family of datasets; flags after the name override
# them. README's recipe table is generated from these (python benchmarks/recipes.py --readme README.md).
RECIPES = {
    "antmaze": dict(
        flags=dict(dataset="D4RL/antmaze/umaze-v1", embed_dim=128, num_layers=3, dropout=0.1, learning_rate=1e-4, warmup_steps=10_000,
                   rtg_scale=1.0, target_returns=(1.0, 0.5), total_steps=100_000, eval_every=10_000, eval_episodes=100),  # fmt: skip
        source="CORL: `configs/offline/dt/antmaze/*_v2.yaml` (reward_scale 1, since CORL PR #75)",
        published="CORL (-v2): umaze 57.0, medium-play 0.0, large-play 0.0",
    ),
    "adroit": dict(
        flags=dict(dataset="D4RL/pen/human-v2", embed_dim=128, num_layers=3, dropout=0.1, learning_rate=8e-4, batch_size=4096,
                   warmup_steps=10_000, rtg_scale=1.0, target_returns=(3100.0, 1550.0), total_steps=100_000, eval_every=5_000,
                   eval_episodes=100),  # fmt: skip
        source="CORL: `configs/offline/dt/pen/*_v1.yaml`",
        published="CORL (-v1): pen-human 67.7, pen-cloned 64.4",
    ),
}


class Block(nn.Module):
    """Pre-norm GPT block: x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.ln_attention, self.ln_mlp = nn.LayerNorm(embed_dim), nn.LayerNorm(embed_dim)
        self.qkv, self.proj = nn.Linear(embed_dim, 3 * embed_dim), nn.Linear(embed_dim, embed_dim)
        self.mlp = nn.Sequential(nn.Linear(embed_dim, 4 * embed_dim), nn.ReLU(), nn.Linear(4 * embed_dim, embed_dim))
        self.residual_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.ln_attention(x)).view(batch, length, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        # attention_mask (True = may attend) already holds causality; without it (no padding) is_causal
        # lets torch pick its fused kernel
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attention_mask, is_causal=attention_mask is None,
            dropout_p=self.dropout if self.training else 0.0,
        )  # fmt: skip
        x = x + self.residual_dropout(self.proj(y.transpose(1, 2).reshape(batch, length, width)))
        return x + self.residual_dropout(self.mlp(self.ln_mlp(x)))


class DecisionTransformer(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, args: Args, low: np.ndarray, high: np.ndarray):
        super().__init__()
        self.max_timestep = args.max_timestep
        self.embed_timestep = nn.Embedding(args.max_timestep, args.embed_dim)
        self.embed_return = nn.Linear(1, args.embed_dim)
        self.embed_state = nn.Linear(obs_dim, args.embed_dim)
        self.embed_action = nn.Linear(act_dim, args.embed_dim)
        self.embed_norm, self.embed_dropout = nn.LayerNorm(args.embed_dim), nn.Dropout(args.dropout)
        self.blocks = nn.ModuleList(Block(args.embed_dim, args.num_heads, args.dropout) for _ in range(args.num_layers))
        self.final_norm = nn.LayerNorm(args.embed_dim)
        self.action_head = nn.Sequential(nn.Linear(args.embed_dim, act_dim), nn.Tanh())
        self.register_buffer("action_scale", torch.tensor((high - low) / 2, dtype=torch.float32))
        self.register_buffer("action_bias", torch.tensor((high + low) / 2, dtype=torch.float32))

    def embed(self, returns_to_go, states, actions, timesteps) -> torch.Tensor:
        """(B, K, .) inputs -> (B, 3K, d) tokens in the order R_1, s_1, a_1, R_2, s_2, a_2, ...

        Stacking on a new axis 2 and flattening (K, 3) interleaves the three streams; concatenating
        them on the time axis would give R_1..R_K, s_1..s_K, a_1..a_K and break causality.
        """
        time = self.embed_timestep(timesteps.clamp(max=self.max_timestep - 1))
        return_tokens = self.embed_return(returns_to_go) + time
        state_tokens, action_tokens = self.embed_state(states) + time, self.embed_action(actions) + time
        tokens = torch.stack([return_tokens, state_tokens, action_tokens], dim=2)  # (B, K, 3, d)
        return tokens.reshape(states.shape[0], 3 * states.shape[1], -1)

    def hidden(self, returns_to_go, states, actions, timesteps, valid=None) -> torch.Tensor:
        """The last block's (normalised) output for every token, (B, 3K, d).

        valid (B, K) marks real timesteps; False = left padding before the episode's start, which no
        real token may attend to (a padded token attends to itself only, so no softmax row is empty).
        """
        x = self.embed_dropout(self.embed_norm(self.embed(returns_to_go, states, actions, timesteps)))
        attention_mask = None
        if valid is not None:
            length = x.shape[1]
            causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
            keys = valid.repeat_interleave(3, dim=1)[:, None, :] | torch.eye(length, dtype=torch.bool, device=x.device)
            attention_mask = (causal & keys)[:, None]  # (B, 1 head-broadcast, 3K queries, 3K keys)
        for block in self.blocks:
            x = block(x, attention_mask)
        return self.final_norm(x)

    def predict_action(self, state_token_hidden: torch.Tensor) -> torch.Tensor:
        return self.action_head(state_token_hidden) * self.action_scale + self.action_bias

    def forward(self, returns_to_go, states, actions, timesteps, valid=None) -> torch.Tensor:
        """(B, K, act_dim): a_t predicted from the hidden state of s_t (token 3t + 1)."""
        return self.predict_action(self.hidden(returns_to_go, states, actions, timesteps, valid)[:, 1::3])


def sample_windows(train: data.Transitions, episode_start: torch.Tensor, returns_to_go: torch.Tensor, batch_size, K):
    """K-step windows ending at uniform random transitions, built on the data's device.

    Episodes are contiguous, so window steps before the end's episode start (i - timesteps[i]) are
    left padding: zero inputs, valid = False (masked in attention and in the loss).
    """
    end = torch.randint(len(train), (batch_size, 1), device=train.rewards.device)
    index = end + torch.arange(1 - K, 1, device=end.device)  # (B, K)
    valid = index >= episode_start[end]
    index = torch.where(valid, index, end)  # any in-range index; zeroed below
    mask = valid[..., None].float()
    return (
        returns_to_go[index][..., None] * mask, train.observations[index] * mask, train.actions[index] * mask,
        train.timesteps[index] * valid, valid,
    )  # fmt: skip


def update(batch: tuple[torch.Tensor, ...], model: DecisionTransformer, optimizers: dict[str, torch.optim.Optimizer],
           args: Args) -> dict[str, torch.Tensor]:  # fmt: skip
    """One step on a batch of windows; the learning-rate schedule steps in the loop."""
    returns_to_go, states, actions, timesteps, valid = batch
    predicted = model(returns_to_go, states, actions, timesteps, valid)
    # L = E || pi(R_{<=t}, s_{<=t}, a_{<t}) - a_t ||^2 over the real (unpadded) steps of each window
    mask = valid[..., None].float()
    loss = (((predicted - actions) ** 2) * mask).sum() / (mask.sum() * actions.shape[-1])
    optimizers["model"].zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
    optimizers["model"].step()
    return {"losses/actor": loss.detach()}


def validation_mse(model: DecisionTransformer, valid_windows: tuple, K: int) -> dict[str, torch.Tensor]:
    """valid/action_mse on 1024 windows of the held-out episodes (none with --validation-fraction 0, the default)."""
    if len(valid_windows[0]) == 0:
        return {}
    model.eval()
    with torch.no_grad():
        windows = sample_windows(*valid_windows, 1024, K)
        predicted, mask = model(*windows), windows[-1][..., None].float()
        return {"valid/action_mse": (((predicted - windows[2]) ** 2) * mask).sum() / (mask.sum() * predicted.shape[-1])}


def return_conditioning(train: data.Transitions, args: Args) -> tuple[float, tuple[float, ...]]:
    """The returns-to-go scale (--rtg-scale, or the largest |episode return|) and the target returns to evaluate
    (--target-returns, or the best episode return and the midpoint of the worst and the best)."""
    episode_returns = train.episode_returns[train.episode_starts]
    rtg_scale = args.rtg_scale or float(episode_returns.abs().max().clamp_min(1e-6))
    best, worst = float(episode_returns.max()), float(episode_returns.min())
    return rtg_scale, tuple(args.target_returns or (best, (best + worst) / 2))


class ContextPolicy:
    """The evaluation policy: one context of the last K (R, s, a, t) per env of the vector env.

    evaluation.evaluate() calls policy(observations) then on_reward(rewards) every step; all envs start
    together, so every context has the same length and needs no padding. A batch of another size (the
    states of the expert action MSE, after an evaluation) starts fresh contexts: each state as a first step.
    """

    def __init__(self, model: DecisionTransformer, normalizer: data.Normalizer, K: int, rtg_scale: float):
        self.model, self.normalizer, self.K, self.rtg_scale = model, normalizer, K, rtg_scale

    def reset(self, target_return: float) -> None:
        """Call before each evaluate(): empty contexts, R_1 = the target return."""
        self.target_return, self.context = target_return, None

    def __call__(self, observations: torch.Tensor) -> torch.Tensor:
        n, device = observations.shape[0], observations.device
        if self.context is None or self.context[0].shape[0] != n:
            self.return_to_go, self.t = self.target_return / self.rtg_scale, 0
            widths = (1, observations.shape[1], self.model.action_scale.shape[0])
            self.context = [torch.zeros(n, 0, width, device=device) for width in widths]
            self.context.append(torch.zeros(n, 0, dtype=torch.long, device=device))  # timesteps
        # a_t is not known yet: a zero placeholder fills its token, which a_t's prediction cannot see
        step = [torch.as_tensor(self.return_to_go, dtype=torch.float32, device=device).expand(n)[:, None, None],
                self.normalizer(observations)[:, None], torch.zeros(n, 1, self.context[2].shape[2], device=device),
                torch.full((n, 1), self.t, dtype=torch.long, device=device)]  # fmt: skip
        self.context = [torch.cat([old, new], 1)[:, -self.K :] for old, new in zip(self.context, step)]
        action = self.model(*self.context)[:, -1]
        self.context[2][:, -1] = action
        return action

    def on_reward(self, rewards: np.ndarray) -> None:
        # R_{t+1} = R_t - r_t
        reward = torch.as_tensor(rewards, dtype=torch.float32, device=self.context[0].device)
        self.return_to_go = self.context[0][:, -1, 0] - reward / self.rtg_scale
        self.t += 1


def main(args: Args) -> training.RunResult:
    run = training.Run("dt", args)  # seeds, device, run folder, TensorBoard; with --resume the checkpoint's settings
    args, device, K = run.args, run.device, run.args.context_length

    # data: every transition (a validation split if asked), states normalised; windows are cut from (transitions,
    # the index of each one's episode start, returns-to-go / rtg_scale)
    dataset = data.load_dataset(args.dataset)
    train, valid = data.split_by_episode(data.to_transitions(dataset, device), args.validation_fraction)
    obs_dim, act_dim = train.observations.shape[1], train.actions.shape[1]
    normalizer = data.Normalizer.fit(train.observations) if args.normalize_obs else data.Normalizer.identity(obs_dim, device)
    rtg_scale, target_returns = return_conditioning(train, args)
    train_windows, valid_windows = [(t.with_observations(normalizer), torch.arange(len(t), device=device) - t.timesteps,
                                     t.returns_to_go / rtg_scale) for t in (train, valid)]  # fmt: skip

    model = DecisionTransformer(obs_dim, act_dim, args, dataset.action_space.low, dataset.action_space.high).to(device)
    # fused: one kernel per step; lr a tensor, so the warm-up schedule never makes --compile recompile
    learning_rate = torch.tensor(args.learning_rate, device=device)
    optimizers = {"model": torch.optim.AdamW(model.parameters(), learning_rate, weight_decay=args.weight_decay, fused=True)}
    warmup = args.warmup_steps if args.warmup_steps is not None else max(1, args.total_steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizers["model"], lambda step: min(1.0, (step + 1) / max(1, warmup)))
    update_step = training.compile_step(update, args.compile, args.cudagraphs, device)  # speed options; off = eager
    policy = ContextPolicy(model, normalizer, K, rtg_scale)

    # everything an exact continuation needs, the warm-up's position included
    models = {"model": model, "optimizer": optimizers["model"], "scheduler": scheduler}
    for step in run.steps(models, normalizer):
        model.train()
        metrics = update_step(sample_windows(*train_windows, args.batch_size, K), model, optimizers, args)
        scheduler.step()  # linear warm-up from 0 to --learning-rate over `warmup` updates
        if run.logging(step):
            metrics["charts/learning_rate"] = scheduler.get_last_lr()[0]
            run.log(step, metrics | validation_mse(model, valid_windows, K))
        if run.evaluating(step):
            model.eval()
            for i, target in enumerate(target_returns):  # the first is the headline score (default: the best return)
                policy.reset(target)
                run.evaluate(step, policy, dataset, tag=f"_target_{target:g}" if i else "", on_reward=policy.on_reward)
    return run.result()


def make_policy(
    args: Args, dataset: minari.MinariDataset, state: dict, device: torch.device
) -> Callable[[torch.Tensor], torch.Tensor]:  # fmt: skip
    """The policy whose score main() reports, rebuilt from a checkpoint's state (tools/evaluate.py reads any run's
    checkpoint.pt with it): raw observations in, actions out."""
    normalizer, low, high = data.Normalizer(**state["normalizer"]), dataset.action_space.low, dataset.action_space.high
    obs_dim, act_dim = normalizer.mean.shape[0], len(low)
    networks = {"model": DecisionTransformer(obs_dim, act_dim, args, low, high).to(device)}
    for name, network in networks.items():  # eval(): no dropout, as main() evaluates
        network.load_state_dict(state["models"][name])
        network.eval()
    train, _ = data.split_by_episode(data.to_transitions(dataset, device), args.validation_fraction)
    rtg_scale, target_returns = return_conditioning(train, args)
    policy = ContextPolicy(networks["model"], normalizer, args.context_length, rtg_scale)
    policy.reset(target_returns[0])  # the headline target; evaluate it with on_reward=policy.on_reward
    return policy


if __name__ == "__main__":
    main(training.cli(Args, RECIPES))
