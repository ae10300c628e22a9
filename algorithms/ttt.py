"""Test-time training (TTT, Park et al. 2024): the policy keeps learning from the frozen Q on the states it visits.

"Is Value Learning Really the Main Bottleneck in Offline RL?" finds offline RL often limited by how the policy
generalises to the states it visits at test time (B3). TTT fine-tunes a copy pi of the trained policy pi_0
while acting: before each action, --ttt-steps Adam steps, Q = min(Q_1, Q_2) frozen, on
    min_pi E_{s ~ visited} [ -Q(s, pi(s)) / stopgrad(mean |Q|) + bc_weight ||(pi(s) - pi_0(s)) / h||^2 ]
(h = (high - low) / 2, the action box's half-width: the BC term in action-box units, as td3_bc.py's, so bc_weight
means the same for any action range; h = 1 on D4RL's [-1, 1] actions)
over its current state and a batch of those visited since the last reset. Each evaluation episode adapts its own
copy on its own states only (the states of the paper's protocol: an env whose episode ended, then auto-reset,
feeds nothing), from pi_0 at its start with --ttt-reset-per-episode, else carrying on from its env's last episode.
This script trains nothing offline: it loads the policy pi_0 and the critics of a ddpg_bc.py or awr.py run
saved with --save-model (the same network classes, rebuilt from that run's own settings, on its dataset and
with its normaliser), then scores pi_0 (untagged eval/normalized_score) and TTT (_ttt) on the same episodes.

    python algorithms/ddpg_bc.py --dataset pendulum/medium-v0 --save-model
    python algorithms/ttt.py --checkpoint runs/<run>/checkpoint.pt
"""

import copy
import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

import data
import evaluation
import training

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # bounds of the Gaussian policy's log std (IQL)
MSE_STATES = 2_000  # training and validation states on which the action MSE to the expert is measured
TRAINERS = ("ddpg_bc", "awr")  # the scripts whose checkpoints hold this Actor and these Critics


@dataclass
class Args:
    checkpoint: str
    """checkpoint.pt of a ddpg_bc.py or awr.py run saved with --save-model: its policy, critics, dataset and settings"""
    ttt_steps: int = 5
    """test-time gradient steps on the policy per environment step"""
    ttt_learning_rate: float = 1e-3
    """Adam learning rate of the test-time steps (0: TTT is the base policy)"""
    ttt_bc_weight: float = 0.1
    """weight of ||(pi(s) - pi_0(s)) / half-width||^2 (action-box units: the same for any action range), which keeps the adapted policy near the trained one (1.0: barely moves)"""
    ttt_batch_size: int = 256
    """visited states of the episode drawn (with replacement) per test-time step, on top of its current state"""
    ttt_reset_per_episode: bool = True
    """each episode starts from pi_0 (and no visited states); else each env's copy keeps adapting across rounds"""
    eval_rounds: int = 1
    """rounds of eval_episodes parallel episodes (new seeds each round); >1 makes the reset flag matter"""
    seed: int = 0
    """seed of torch, numpy, python and the evaluation envs (the training run's --seed: the episodes it was evaluated on)"""
    device: str = "auto"
    """auto (CUDA when present), cpu, cuda or cuda:N"""
    threads: int = 1
    """torch CPU threads; 1 is fastest whenever anything else runs on the machine"""
    eval_episodes: int = 10
    """episodes per round, run in parallel in a vector env (at least 1: evaluating is all this script does)"""
    capture_video: bool = False
    """record the first episode of each evaluation: run_dir/<run name>/videos/step_<N>.mp4 and TensorBoard's Images tab (MuJoCo without a display: MUJOCO_GL=egl, or MUJOCO_GL=osmesa with Debian's libosmesa6)"""
    run_dir: str = "runs"
    """TensorBoard logs go to run_dir/<run name>/"""
    exp_name: str = "ttt"
    """experiment name, part of the run name"""
    progress: bool = True
    """show a progress bar over the rounds (--no-progress for logs and CI)"""
    track: bool = False
    """mirror the scalars to Weights & Biases (needs `pip install wandb`)"""
    wandb_project: str = "cleanoffrl"
    """Weights & Biases project name"""


RECIPES: dict[str, dict] = {}  # `python algorithms/ttt.py RECIPE [flags]`: none: the TTT settings are ours, no published score to reproduce


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


def normalized_q_loss(q: torch.Tensor) -> torch.Tensor:
    # -Q / stopgrad(mean |Q|): the Q term's scale (and so alpha) no longer depends on the reward scale (OGBench)
    return -q.mean() / (q.abs().mean().detach() + 1e-6)


class TTTPolicy:
    """pi, one copy of pi_0 per evaluation episode, each taking ttt_steps gradient steps on its own episode's states.

    Raw observations in, as evaluation.evaluate wants: row i is vector env i's state. Env i's episode has its own adapted
    copy (actors[i], optimizers[i]) and its own buffer of visited states (visited[i]); only the envs whose episode
    is still running (alive) adapt, so an auto-reset env's next-episode states are never learnt from. The envs must
    be wrapped in EpisodeTracker (track()), which starts the episodes at each envs.reset (fresh copies of pi_0 when
    --ttt-reset-per-episode, else each env's copy keeps adapting through the episodes run in it) and marks an env
    dead at its first termination or truncation. Called without one, each row is an episode that never ends.
    Keeps the (raw state, action taken) pairs of the alive envs, the visited states, for the evaluation MSE.
    """

    def __init__(self, actor: Actor, critic: Critics, normalizer: data.Normalizer, args: Args):
        self.reference = copy.deepcopy(actor).requires_grad_(False)  # pi_0, frozen
        self.critic = copy.deepcopy(critic).requires_grad_(False)  # Q, frozen
        self.normalizer, self.args, self.taken = normalizer, args, []  # taken: (raw state, action) of every round
        self.actors, self.optimizers, self.visited, self.alive = [], [], [], None

    def start_episodes(self, num_envs: int) -> None:
        """A new episode in each of num_envs envs: from pi_0 when resetting per episode (or on the first episodes)."""
        if self.args.ttt_reset_per_episode or len(self.actors) != num_envs:
            self.actors = [copy.deepcopy(self.reference).requires_grad_(True) for _ in range(num_envs)]
            self.optimizers = [torch.optim.Adam(a.parameters(), lr=self.args.ttt_learning_rate) for a in self.actors]
            self.visited = [[] for _ in range(num_envs)]  # normalised states of each env's episode(s) since the reset
        self.alive = np.ones(num_envs, bool)

    def end_episodes(self, done: np.ndarray) -> None:
        self.alive &= ~np.asarray(done, bool)

    def track(self, envs: gym.vector.VectorEnv) -> "EpisodeTracker":
        return EpisodeTracker(envs, self)

    def adapt(self, i: int, s: torch.Tensor) -> None:
        """ttt_steps Adam steps of env i's copy on its current state s (1, obs_dim) and a batch of its visited ones."""
        actor, optimizer, visited = self.actors[i], self.optimizers[i], torch.cat(self.visited[i])
        half_width = (self.reference.action_high - self.reference.action_low) / 2
        with torch.enable_grad():  # evaluation.evaluate calls policies under no_grad
            for _ in range(self.args.ttt_steps):
                drawn = torch.randint(len(visited), (self.args.ttt_batch_size,), device=s.device)
                batch = torch.cat([s, visited[drawn]])  # the current state and a batch of this episode's visited ones
                action = actor(batch)
                q = self.critic(batch, action).min(0).values
                with torch.no_grad():
                    reference = self.reference(batch)
                # L_TTT = -Q(s, pi(s)) / sg(mean |Q|) + bc_weight ||(pi(s) - pi_0(s)) / h||^2,  s ~ visited states,
                # h = (high - low) / 2: the BC term in action-box units (as td3_bc's), the same for any action range
                bc = (((action - reference) / half_width) ** 2).sum(-1).mean()
                loss = normalized_q_loss(q) + self.args.ttt_bc_weight * bc
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        if self.alive is None:  # not run through track(): every row is its own never-ending episode
            self.start_episodes(len(obs))
        s = self.normalizer(obs)
        for i in np.flatnonzero(self.alive):  # a finished episode's env (auto-reset or not) neither adapts nor is kept
            self.visited[i].append(s[i : i + 1])
            self.adapt(i, s[i : i + 1])
        with torch.no_grad():
            # row i from env i's copy, each run on the whole batch: at learning rate 0, pi_0's actions bit for bit
            action = torch.stack([actor(s)[i] for i, actor in enumerate(self.actors)])
        alive = torch.as_tensor(self.alive, device=obs.device)
        self.taken.append((obs[alive], action[alive]))
        return action


class EpisodeTracker(gym.vector.VectorWrapper):
    """The vector env, telling a TTTPolicy when its episodes start (reset) and when each one ends (step)."""

    def __init__(self, envs: gym.vector.VectorEnv, policy: TTTPolicy):
        super().__init__(envs)
        self.policy = policy

    def reset(self, **kwargs):
        self.policy.start_episodes(self.num_envs)
        return super().reset(**kwargs)

    def step(self, actions):
        observations, rewards, terminated, truncated, infos = super().step(actions)
        self.policy.end_episodes(terminated | truncated)
        return observations, rewards, terminated, truncated, infos


def merge(results: list[evaluation.EvalResult]) -> evaluation.EvalResult:
    """One EvalResult from several rounds of episodes (the video, if any: the first round's)."""
    fields = ("returns", "lengths", "normalized", "observations")
    successes = None if any(r.successes is None for r in results) else np.concatenate([r.successes for r in results])
    merged = (np.concatenate([getattr(r, field) for r in results]) for field in fields)
    return evaluation.EvalResult(*merged, successes, results[0].frames, results[0].fps)


def main(args: Args) -> training.RunResult:
    run = training.Run("ttt", args)  # seeds, device, run folder, TensorBoard
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

    # the trained networks, built from the checkpoint's settings (TTT adapts a copy of the actor, Q stays frozen)
    obs_dim, act_dim = train.observations.shape[1], train.actions.shape[1]
    low, high = dataset.action_space.low, dataset.action_space.high
    actor = Actor(obs_dim, act_dim, saved["hidden_dim"], low, high).to(device)
    critics = Critics(obs_dim, act_dim, saved["hidden_dim"], saved["num_critics"], saved["layer_norm"]).to(device)
    actor.load_state_dict(trained["models"]["actor"])
    critics.load_state_dict(trained["models"]["critic"])
    base_policy = lambda obs: actor(normalizer(obs))  # noqa: E731 - raw observations in, the mean action out

    # each round: pi_0 and TTT on the same episodes (round 0: those the training run was evaluated on); TTT's envs
    # tell it when each episode starts and ends, so each episode adapts its own copy on its own states only
    ttt, rounds = TTTPolicy(actor, critics, normalizer, args), []
    envs = evaluation.make_eval_envs(dataset, args.eval_episodes, args.capture_video)
    for r in tqdm(range(args.eval_rounds), disable=not args.progress, desc=run.name[:40]):
        seed = run.eval_seed(round=r)  # new start states each round, disjoint across --seed
        base = evaluation.evaluate(base_policy, envs, dataset, seed=seed, device=device)
        rounds.append((base, evaluation.evaluate(ttt, ttt.track(envs), dataset, seed=seed, device=device)))
    envs.close()
    base, adapted = (merge(results) for results in zip(*rounds))

    # action MSE to the scripted expert on the training, validation and visited states: pi_0's; for TTT, the mean
    # over the last round's episodes of each episode's final copy's on the training and validation states and, on
    # the states TTT visited, that of the actions it took
    step, dataset_id = trained["step"], saved["dataset"]
    visited, taken = (torch.cat(x) for x in zip(*ttt.taken))
    base_mse = {k: evaluation.expert_action_mse(base_policy, dataset_id, x, device) for k, x in mse_states.items()}
    base_mse["eval"] = evaluation.expert_action_mse(base_policy, dataset_id, base.observations, device)
    copies = [lambda obs, pi=pi: pi(normalizer(obs)) for pi in ttt.actors]  # raw observations in, as base_policy
    ttt_mse = {k: float(np.mean([evaluation.expert_action_mse(pi, dataset_id, x, device) for pi in copies]))
               for k, x in mse_states.items()}  # fmt: skip
    ttt_mse["eval"] = evaluation.expert_action_mse(lambda _: taken, dataset_id, visited, device)
    run.record(step, base, base_mse)
    run.record(step, adapted, ttt_mse, tag="_ttt")
    with torch.no_grad():  # what TTT changed: each episode's final copy on that episode's (or env's) visited states
        q_gains, shifts = [], []
        for actor, states in zip(ttt.actors, ttt.visited):
            s = torch.cat(states)
            pi, pi_0 = actor(s), ttt.reference(s)
            q_gains.append(ttt.critic(s, pi).min(0).values - ttt.critic(s, pi_0).min(0).values)
            shifts.append(((pi - pi_0) ** 2).sum(-1))
        run.writer.add_scalar("ttt/q_gain", torch.cat(q_gains).mean().item(), step)
        run.writer.add_scalar("ttt/action_shift", torch.cat(shifts).mean().item(), step)
    return run.result()


if __name__ == "__main__":
    main(training.cli(Args, RECIPES))
