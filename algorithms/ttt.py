"""Test-time training (TTT, Park et al. 2024): the policy keeps learning from the frozen Q on the states it visits.

"Is Value Learning Really the Main Bottleneck in Offline RL?" finds offline RL often limited by how the policy
generalises to the states it visits at test time (B3). TTT fine-tunes a copy pi of the trained policy pi_0
while acting: before each action, --ttt-steps Adam steps, Q = min(Q_1, Q_2) frozen, on
    min_pi E_{s ~ visited} [ -Q(s, pi(s)) / stopgrad(mean |Q|) + bc_weight ||pi(s) - pi_0(s)||^2 ]
over the current states and a batch of those visited since the last reset (--ttt-reset-per-episode).
Each evaluation scores the policy with and without TTT (eval/normalized_score_ttt, _base = untagged).
The policy and Q are trained here as ddpg_bc.py does (`diff ddpg_bc.py ttt.py`), or loaded from a
checkpoint of ddpg_bc.py or awr.py (--checkpoint; the networks are the same classes).
Two checkpoint flags: --checkpoint PATH skips training and only evaluates that trained policy with TTT;
--resume PATH continues a training run of this script where its checkpoint.pt left it (as in ddpg_bc.py).

Training, as in ddpg_bc.py: a value learner (--value iql|sarsa) and DDPG+BC policy extraction,
    max_pi E_{(s,a)~D} [ Q(s, mu(s)) / stopgrad(mean |Q|) + alpha log pi(a|s) ]   (Q term normalised as OGBench)
Value learning, the same in awr.py, ddpg_bc.py and sfbc.py (`diff` them: only the extraction differs):
    iql:   V(s) <- expectile tau of min_i Qbar_i(s,a);  Q_i(s,a) <- r + gamma V(s')      (Kostrikov et al. 2022)
    sarsa: Q_i(s,a) <- r + gamma min_j Qbar_j(s',a'), a' the dataset's next action: Q of the behaviour
           policy (one-step RL, Brandfonbrener et al. 2021); V(s) = E_{a~D}[Qbar(s,a)] by plain regression.
Value and policy learn from separately sized nested prefixes of the data (--value-data-fraction,
--policy-data-fraction): one sweep over the two flags is the paper's data-scaling matrix.
"""

import copy
import os
import random
import time
from dataclasses import asdict, dataclass, replace
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import tyro
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import data

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # bounds of the Gaussian policy's log std (IQL)
MSE_STATES = 2_000  # training and validation states on which the action MSE to the expert is measured
PRETRAINED = ("ddpg_bc", "awr", "opex", "ttt")  # checkpoints holding these networks (Actor, Critic, value mlp)
# with --checkpoint, the data and network settings (and the seed of the train/validation split) are the checkpoint's
CHECKPOINT_ARGS = (
    "dataset", "value", "seed", "total_steps", "hidden_dim", "layer_norm", "normalize_obs", "validation_fraction",
    "value_data_fraction", "policy_data_fraction", "reward_scale", "reward_shift", "return_range_scale",
)  # fmt: skip


@dataclass
class Args:
    dataset: str = "pendulum/mixed-v0"
    """Minari dataset id: the local suite (`python algorithms/local_suite.py` lists it) or a remote id"""
    value: Literal["iql", "sarsa"] = "iql"
    """value learning: iql (expectile V, Q <- r + gamma V(s')) or sarsa (Q of the behaviour policy)"""
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
    total_steps: int = 20_000
    """gradient updates, each one value update and one actor update (OGBench uses 1_000_000)"""
    batch_size: int = 256
    """transitions per batch; the value and the actor updates draw separate batches (OGBench/FQL: one batch for all losses, 1024 in OGBench, 256 in FQL)"""
    learning_rate: float = 3e-4
    """Adam learning rate of every network"""
    hidden_dim: int = 256
    """width of the two hidden layers of every network (OGBench: 512, three layers; FQL: 512, four; no depth flag here)"""
    layer_norm: bool = True
    """LayerNorm in the Q and V networks (OGBench)"""
    discount: float = 0.99
    """discount factor gamma"""
    target_update_rate: float = 0.005
    """Polyak rate of the target critics"""
    expectile: float = 0.9
    """IQL's expectile tau of V (0.9 mazes, 0.7 locomotion); unused by --value sarsa"""
    alpha: float = 1.0
    """weight of the behaviour cloning term log pi(a|s); large alpha is plain behaviour cloning (OGBench's default: 0.3)"""
    value_data_fraction: float = 1.0
    """fraction of the training episodes the Q and V functions learn from (nested prefixes)"""
    policy_data_fraction: float = 1.0
    """fraction of the training episodes the policy learns from (nested prefixes)"""
    reward_scale: float = 1.0
    """r <- r * reward_scale + reward_shift"""
    reward_shift: float = 0.0
    """r <- r * reward_scale + reward_shift (D4RL antmaze: -1)"""
    return_range_scale: bool = False
    """first scale rewards by 1000 / (max - min episode return) (D4RL locomotion)"""
    normalize_obs: bool = True
    """standardise observations with the training data's mean and std (OGBench and FQL: off)"""
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
    exp_name: str = "ttt"
    """experiment name, part of the run name"""
    checkpoint: str | None = None
    """evaluate this checkpoint.pt of ddpg_bc.py or awr.py (--save-model) instead of training; its dataset,
    data and network flags and seed replace these (CHECKPOINT_ARGS). To continue training, use --resume"""
    ttt_steps: int = 5
    """test-time gradient steps on the policy per environment step"""
    ttt_learning_rate: float = 1e-3
    """Adam learning rate of the test-time steps (0: TTT is the base policy)"""
    ttt_bc_weight: float = 0.1
    """weight of ||pi(s) - pi_0(s)||^2, which keeps the adapted policy near the trained one (1.0: barely moves)"""
    ttt_batch_size: int = 256
    """visited states drawn (with replacement) per test-time step, on top of the current states"""
    ttt_reset_per_episode: bool = True
    """restart from pi_0 (and forget the visited states) at each round of episodes; else keep adapting"""
    eval_rounds: int = 1
    """rounds of eval_episodes parallel episodes per evaluation (new seeds); >1 makes the reset flag matter"""
    save_model: bool = False
    """write run_dir/<run name>/checkpoint.pt (actor, critics, value net, normaliser) at the end"""
    checkpoint_every: int = 0
    """also write the checkpoint every this many updates (0 = never); Ctrl-C always writes one"""
    resume: str | None = None
    """continue the training run saved in this checkpoint.pt of ttt.py (same run folder, TensorBoard continues)"""
    progress: bool = True
    """show a progress bar (--no-progress for logs and CI)"""
    track: bool = False
    """mirror the scalars to Weights & Biases (needs `pip install wandb`)"""
    wandb_project: str = "cleanoffrl"
    """Weights & Biases project name"""


def mlp(in_dim: int, hidden_dim: int, out_dim: int, layer_norm: bool) -> nn.Sequential:
    norm = (lambda: nn.LayerNorm(hidden_dim)) if layer_norm else nn.Identity
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), norm(), nn.ReLU(),
        nn.Linear(hidden_dim, hidden_dim), norm(), nn.ReLU(),
        nn.Linear(hidden_dim, out_dim),
    )  # fmt: skip


class EnsembleLinear(nn.Module):
    """num_members independent linear layers applied as one batched matmul: (E, B, in) -> (E, B, out)."""

    def __init__(self, in_dim: int, out_dim: int, num_members: int):
        super().__init__()
        bound = 1 / in_dim**0.5  # nn.Linear's default initialisation, per member
        self.weight = nn.Parameter(torch.empty(num_members, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_members, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class Critic(nn.Module):
    """Q_1..Q_E(s, a): an ensemble of MLPs computed together; returns (E, B)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, layer_norm: bool, num_critics: int = 2):
        super().__init__()
        norm = (lambda: nn.LayerNorm(hidden_dim)) if layer_norm else nn.Identity
        self.num_critics = num_critics
        self.net = nn.Sequential(
            EnsembleLinear(obs_dim + act_dim, hidden_dim, num_critics), norm(), nn.ReLU(),
            EnsembleLinear(hidden_dim, hidden_dim, num_critics), norm(), nn.ReLU(),
            EnsembleLinear(hidden_dim, 1, num_critics),
        )  # fmt: skip

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, actions], -1).expand(self.num_critics, -1, -1)
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


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    # L2^tau(u) = |tau - 1(u < 0)| u^2 (IQL); tau = 0.5 is half the squared error: plain regression
    return torch.abs(expectile - (diff < 0).float()) * diff**2


def value_losses(batch: data.Transitions, critic: Critic, critic_target: Critic, value_net: nn.Module, args: Args):
    """(critic loss, value loss) on a batch: the training objective, also measured on validation data."""
    s, a, s_next = batch.observations, batch.actions, batch.next_observations
    with torch.no_grad():
        q_data = critic_target(s, a).min(0).values
        if args.value == "iql":
            next_value = value_net(s_next).squeeze(-1)  # V(s'), the in-sample maximum for tau -> 1
        else:
            next_value = critic_target(s_next, batch.next_actions).min(0).values  # Qbar(s', a'), a' ~ D
        # Q target: r + gamma (1 - done) V(s')   |   r + gamma (1 - done) Qbar(s', a')
        q_target = batch.rewards + args.discount * (1.0 - batch.terminals) * next_value
    # L_Q = E_D [ sum_i (Q_i(s, a) - q_target)^2 ]; under sarsa without the time-limit ends, where no a' was taken
    squared_error = ((critic(s, a) - q_target) ** 2).sum(0)
    if args.value == "sarsa":
        critic_loss = (squared_error * batch.next_action_known).sum() / batch.next_action_known.sum().clamp_min(1)
    else:
        critic_loss = squared_error.mean()
    # L_V = E_D [ L2^tau(Qbar(s, a) - V(s)) ]  (tau = 0.5 under sarsa: V(s) = E_{a~D} Qbar(s, a))
    expectile = args.expectile if args.value == "iql" else 0.5
    value_loss = expectile_loss(q_data - value_net(s).squeeze(-1), expectile).mean()
    return critic_loss, value_loss


def update_value(batch, critic, critic_target, value_net, value_optimizer, args: Args) -> dict[str, torch.Tensor]:
    critic_loss, value_loss = value_losses(batch, critic, critic_target, value_net, args)
    value_optimizer.zero_grad(set_to_none=True)
    (critic_loss + value_loss).backward()  # disjoint parameters: one backward serves both
    value_optimizer.step()
    with torch.no_grad():  # Qbar <- (1 - rate) Qbar + rate Q, in place
        torch._foreach_lerp_(list(critic_target.parameters()), list(critic.parameters()), args.target_update_rate)
    return {"critic_loss": critic_loss.detach(), "value_loss": value_loss.detach()}


def normalized_q_loss(q: torch.Tensor) -> torch.Tensor:
    # -Q / stopgrad(mean |Q|): the Q term's scale (and so alpha) no longer depends on the reward scale (OGBench)
    return -q.mean() / (q.abs().mean().detach() + 1e-6)


def update_actor(batch, actor, critic, value_net, actor_optimizer, args: Args) -> dict[str, torch.Tensor]:
    s, a = batch.observations, batch.actions
    mean_action = actor(s)
    critic.requires_grad_(False)  # gradients flow through Q into the action only, not into the critic
    q = critic(s, mean_action).min(0).values
    critic.requires_grad_(True)
    # log pi(a|s) with OGBench's constant std 1: -||mu(s) - a||^2 / 2 + const (the learned std stays unused)
    log_prob = -0.5 * ((mean_action - a) ** 2).sum(-1)
    # J_DDPG+BC(pi) = E_{(s,a)~D} [ Q(s, mu(s)) + alpha log pi(a|s) ], maximised, the Q term normalised
    q_loss, bc_loss = normalized_q_loss(q), -args.alpha * log_prob.mean()
    actor_loss = q_loss + bc_loss
    actor_optimizer.zero_grad(set_to_none=True)
    actor_loss.backward()
    actor_optimizer.step()
    return {"actor_loss": actor_loss.detach(), "q_loss": q_loss.detach(), "bc_loss": bc_loss.detach()}


class TTTPolicy:
    """pi, a copy of pi_0 that takes ttt_steps gradient steps on the visited states before each action.

    Raw observations in, as data.evaluate wants; every parallel env's state feeds the one shared copy.
    Keeps the (raw state, action taken) pairs of the rollouts for the evaluation MSE.
    """

    def __init__(self, actor: Actor, critic: Critic, normalizer: data.Normalizer, args: Args):
        self.reference = copy.deepcopy(actor).requires_grad_(False)  # pi_0, frozen
        self.critic = copy.deepcopy(critic).requires_grad_(False)  # Q, frozen
        self.normalizer, self.args, self.taken = normalizer, args, []  # taken: (raw state, action) of every round
        self.reset()

    def reset(self) -> None:
        self.actor = copy.deepcopy(self.reference).requires_grad_(True)
        self.optimizer = torch.optim.Adam(self.actor.parameters(), lr=self.args.ttt_learning_rate)
        self.visited = []  # normalised states since the reset

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        s = self.normalizer(obs)
        self.visited.append(s)
        visited = torch.cat(self.visited)
        with torch.enable_grad():  # data.evaluate calls policies under no_grad
            for _ in range(self.args.ttt_steps):
                drawn = torch.randint(len(visited), (self.args.ttt_batch_size,), device=s.device)
                batch = torch.cat([s, visited[drawn]])  # the current states and a batch of the visited ones
                action = self.actor(batch)
                q = self.critic(batch, action).min(0).values
                with torch.no_grad():
                    reference = self.reference(batch)
                # L_TTT = -Q(s, pi(s)) / sg(mean |Q|) + bc_weight ||pi(s) - pi_0(s)||^2,  s ~ visited states
                loss = normalized_q_loss(q) + self.args.ttt_bc_weight * ((action - reference) ** 2).sum(-1).mean()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
        with torch.no_grad():
            action = self.actor(s)
        self.taken.append((obs, action))
        return action


def merge(results: list[data.EvalResult]) -> data.EvalResult:
    """One EvalResult from several rounds of episodes."""
    fields = ("returns", "lengths", "normalized", "observations")
    return data.EvalResult(*(np.concatenate([getattr(r, field) for r in results]) for field in fields))


def load_pretrained(path: str, device: torch.device) -> dict:
    """A checkpoint of ddpg_bc.py or awr.py (or opex.py/ttt.py): the same Actor, Critic and value networks."""
    for algorithm in PRETRAINED:
        try:
            return data.load_checkpoint(path, algorithm, device)
        except ValueError:
            continue
    raise ValueError(f"Checkpoint '{path}' is not one of {', '.join(PRETRAINED)}: use ddpg_bc.py --save-model.")


def main(args: Args) -> dict:
    if args.total_steps <= 0 or args.batch_size <= 0:
        raise ValueError("--total-steps and --batch-size must be positive integers.")
    if args.ttt_steps < 0 or args.ttt_learning_rate < 0 or args.ttt_batch_size < 0 or args.eval_rounds <= 0:
        raise ValueError("--ttt-steps, --ttt-learning-rate, --ttt-batch-size must be >= 0 and --eval-rounds > 0.")
    if args.checkpoint and args.resume:
        raise ValueError("--checkpoint evaluates a trained policy, --resume continues a training run: pass only one.")
    device = data.resolve_device(args.device)
    pretrained = load_pretrained(args.checkpoint, device) if args.checkpoint else None
    if pretrained is not None:
        args = replace(args, **{key: pretrained["args"][key] for key in CHECKPOINT_ARGS})
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    run_name = f"{args.dataset.replace('/', '_')}__{args.exp_name}_{args.value}__{args.seed}__{int(time.time())}"
    run_path = os.path.dirname(os.path.abspath(args.resume)) if args.resume else os.path.join(args.run_dir, run_name)
    checkpoint_path = os.path.join(run_path, "checkpoint.pt")

    # data: episodes split into train/validation; value and policy data are nested prefixes of train
    dataset = data.load_dataset(args.dataset)
    transitions = data.to_transitions(dataset, device)
    train, valid = data.split_by_episode(transitions, args.validation_fraction)
    train, valid = data.transform_rewards(train, valid, args.reward_scale, args.reward_shift, args.return_range_scale)
    value_train = data.subsample(train, args.value_data_fraction, seed=args.seed)
    policy_train = data.subsample(train, args.policy_data_fraction, seed=args.seed)
    if args.batch_size > min(len(value_train), len(policy_train)):
        raise ValueError(f"--batch-size {args.batch_size} is larger than the value or policy training data.")
    obs_dim, act_dim = train.observations.shape[1], train.actions.shape[1]
    larger = value_train if args.value_data_fraction >= args.policy_data_fraction else policy_train
    normalizer = data.Normalizer.fit(larger.observations) if args.normalize_obs else data.Normalizer.identity(obs_dim, device)
    if pretrained is not None:
        normalizer = data.Normalizer(**pretrained["normalizer"])
    value_batches = value_train.with_observations(normalizer)
    policy_batches = policy_train.with_observations(normalizer)
    valid_batch = valid.with_observations(normalizer)
    mse_states = {  # fixed random subsets of raw states: the MSE analysis stays cheap on 100k-transition datasets
        "train": policy_train.observations[torch.randperm(len(policy_train), device=device)[:MSE_STATES]],
        "valid": valid.observations[torch.randperm(len(valid), device=device)[:MSE_STATES]],
    }

    critic = Critic(obs_dim, act_dim, args.hidden_dim, args.layer_norm).to(device)
    critic_target = Critic(obs_dim, act_dim, args.hidden_dim, args.layer_norm).to(device).requires_grad_(False)
    critic_target.load_state_dict(critic.state_dict())
    value_net = mlp(obs_dim, args.hidden_dim, 1, args.layer_norm).to(device)
    actor = Actor(obs_dim, act_dim, args.hidden_dim, dataset.action_space.low, dataset.action_space.high).to(device)
    value_optimizer = torch.optim.Adam([*critic.parameters(), *value_net.parameters()], lr=args.learning_rate, fused=True)
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=args.learning_rate, fused=True)
    # speed options (off = eager): both update steps through torch.compile, or CUDA graphs
    value_step = data.compile_step(update_value, args.compile, args.cudagraphs, device)
    actor_step = data.compile_step(update_actor, args.compile, args.cudagraphs, device)
    base_policy = lambda obs: actor(normalizer(obs))  # noqa: E731  raw observations in, mean action out
    eval_envs = data.make_eval_envs(dataset, args.eval_episodes)
    models = {"actor": actor, "critic": critic, "critic_target": critic_target, "value": value_net,
              "actor_optimizer": actor_optimizer, "value_optimizer": value_optimizer}  # fmt: skip

    def save(step: int) -> None:  # everything an exact continuation needs
        state_dicts = {name: model.state_dict() for name, model in models.items()}
        data.save_checkpoint(checkpoint_path, "ttt", asdict(args), step, state_dicts, normalizer)

    first_step = 1
    if args.resume:
        state = data.load_checkpoint(args.resume, "ttt", device, dataset_id=args.dataset)
        for name, model in models.items():
            model.load_state_dict(state["models"][name])
        data.set_rng_state(state["rng"])  # the batches drawn after the checkpoint are the ones a straight run draws
        first_step = state["step"] + 1
    if pretrained is not None:  # --checkpoint: the trained networks, evaluated as they are (no optimizer steps)
        for name in ("actor", "critic", "critic_target", "value"):
            models[name].load_state_dict(pretrained["models"][name])

    writer = SummaryWriter(data.writable_run_dir(run_path))
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in asdict(args).items()))
    if args.track:
        import wandb

        wandb.init(project=args.wandb_project, name=run_name, config=asdict(args), sync_tensorboard=True)

    scores, scores_by_policy = [], {"_base": [], "_ttt": []}

    def run_evaluation(step: int) -> data.EvalResult:
        ttt = TTTPolicy(actor, critic, normalizer, args)  # pi_0: the policy as trained so far
        rounds = {"_base": [], "_ttt": []}
        for r in range(args.eval_rounds):
            seed = args.seed + 1_000 + r
            rounds["_base"].append(data.evaluate(base_policy, eval_envs, dataset, seed=seed, device=device))
            if r > 0 and args.ttt_reset_per_episode:
                ttt.reset()
            rounds["_ttt"].append(data.evaluate(ttt, eval_envs, dataset, seed=seed, device=device))
        # TTT's evaluation MSE is that of the actions it took; its train/valid MSE that of the last adapted copy
        visited, taken = (torch.cat(x) for x in zip(*ttt.taken))
        for suffix, result in ((suffix, merge(results)) for suffix, results in rounds.items()):
            scores_by_policy[suffix].append(result.normalized_mean)
            policy = base_policy if suffix == "_base" else lambda obs: ttt.actor(normalizer(obs))
            expert_mse = {k: data.expert_action_mse(policy, args.dataset, x, device) for k, x in mse_states.items()}
            # action MSE to the scripted expert on the visited states: the base policy's, or the actions TTT took
            states, eval_policy = (result.observations, policy) if suffix == "_base" else (visited, lambda _: taken)
            expert_mse["eval"] = data.expert_action_mse(eval_policy, args.dataset, states, device)
            for tag in [suffix] + ([""] if suffix == "_base" else []):  # untagged: the base policy
                writer.add_scalar(f"eval/return{tag}", result.mean, step)
                writer.add_scalar(f"eval/normalized_score{tag}", result.normalized_mean, step)
                for split, mse in expert_mse.items():
                    if np.isfinite(mse):
                        writer.add_scalar(f"mse/{split}_expert{tag}", mse, step)
            if suffix == "_base":
                base = result
        with torch.no_grad():  # what TTT changed on all visited states: Q gain and action shift of the last copy
            s = normalizer(visited)
            pi, pi_0 = ttt.actor(s), ttt.reference(s)
            q_gain = ttt.critic(s, pi).min(0).values - ttt.critic(s, pi_0).min(0).values
            writer.add_scalar("ttt/q_gain", q_gain.mean().item(), step)
            writer.add_scalar("ttt/action_shift", ((pi - pi_0) ** 2).sum(-1).mean().item(), step)
        scores.append(base.normalized_mean)
        progress.set_postfix(base=f"{base.normalized_mean:.1f}", ttt=f"{scores_by_policy['_ttt'][-1]:.1f}")
        return base

    start_time, eval_seconds = time.time(), 0.0
    train_steps = 0 if pretrained is not None else args.total_steps  # --checkpoint: evaluate only
    step = first_step - 1  # the last update done
    progress = tqdm(range(first_step, train_steps + 1), disable=not args.progress, desc=run_name[:40], mininterval=1.0)
    with data.GracefulInterrupt() as interrupt:
        for step in progress:
            value_batch, policy_batch = value_batches.sample(args.batch_size), policy_batches.sample(args.batch_size)
            logs = value_step(value_batch, critic, critic_target, value_net, value_optimizer, args)
            logs |= actor_step(policy_batch, actor, critic, value_net, actor_optimizer, args)

            if step % args.log_every == 0 or step == args.total_steps:
                logs = {name: value.item() for name, value in logs.items()}  # the only host sync, once per log_every
                data.check_finite({f"losses/{name}": value for name, value in logs.items()}, step, checkpoint_path)
                for name, value in logs.items():
                    writer.add_scalar(f"losses/{name}", value, step)
                writer.add_scalar("charts/updates_per_s", (step - first_step + 1) / (time.time() - start_time - eval_seconds), step)
                if len(valid) > 0:
                    critic_loss, value_loss = value_losses(valid_batch, critic, critic_target, value_net, args)
                    writer.add_scalar("valid/critic_loss", critic_loss.item(), step)
                    writer.add_scalar("valid/value_loss", value_loss.item(), step)
                    with torch.no_grad():
                        action_mse = ((actor(valid_batch.observations) - valid.actions) ** 2).mean()  # the actor's mean
                        writer.add_scalar("valid/action_mse", action_mse.item(), step)

            if step % args.eval_every == 0 or step == args.total_steps:
                eval_start = time.time()
                result = run_evaluation(step)
                eval_seconds += time.time() - eval_start

            if (args.checkpoint_every and step % args.checkpoint_every == 0) or (args.save_model and step == args.total_steps):
                save(step)
            if interrupt.requested:
                save(step)
                print(f"interrupted at step {step}; resume with: python algorithms/ttt.py --resume {checkpoint_path} "
                      f"--dataset {args.dataset} --total-steps {args.total_steps}")  # fmt: skip
                break
    if pretrained is not None:
        result = run_evaluation(args.total_steps)  # the only evaluation with --checkpoint

    updates_per_s = (step - first_step + 1) / (time.time() - start_time - eval_seconds)
    eval_envs.close()
    writer.close()
    if not scores:
        return {"normalized_score": float("nan"), "scores": [], "updates_per_s": updates_per_s, "run_path": run_path}
    print(
        f"{args.dataset} ttt({args.value}) seed {args.seed}: normalized score {scores[-1]:.1f} base, "
        f"{scores_by_policy['_ttt'][-1]:.1f} with TTT (base return {result.mean:.1f} +- {result.std:.1f}), "
        f"{updates_per_s:.0f} updates/s, logs in {run_path}"
    )
    return {
        "normalized_score": scores[-1], "normalized_score_ttt": scores_by_policy["_ttt"][-1], "scores": scores,
        "scores_by_policy": scores_by_policy, "updates_per_s": updates_per_s, "run_path": run_path,
    }  # fmt: skip


if __name__ == "__main__":
    main(tyro.cli(Args))
