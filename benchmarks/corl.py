"""Our algorithm scripts beside CORL's own single-file trainers (github.com/tinkoff-ai/CORL): speed and fidelity.

    git clone https://github.com/tinkoff-ai/CORL /tmp/CORL                     # any checkout; nothing of it is copied here
    python benchmarks/corl.py speed --corl /tmp/CORL --out benchmarks/results/corl_speed.md
    python benchmarks/corl.py speed --corl /tmp/CORL --clock process --options eager matmul-precision=bf16 --baseline /tmp/main  # shared machine
    python benchmarks/corl.py speed --corl /tmp/CORL --clock process --options eager matmul-precision=bf16 compile+matmul-precision=bf16 --d3rlpy-python /tmp/d3env/bin/python
    python benchmarks/corl.py parity --corl /tmp/CORL --readme docs/benchmarks.md  # about 2.5 h on one 2-core VM
    python benchmarks/corl.py parity --corl /tmp/CORL --updates 100 --cql-updates 100 --seeds 0 --out /tmp/smoke

CORL's trainers import d4rl, wandb, pyrallis and the old `gym`. Nothing needs installing: before a trainer is
imported, small stand-ins for those four go into sys.modules (`corl_stubs`), so that CORL's own `train(config)`
runs unchanged on the data we hand it. `gym.make` returns an `OfflineEnv` holding one of our Minari datasets as
D4RL's arrays (`d4rl.qlearning_dataset`, `env.get_dataset()`); wandb.log is recorded; pyrallis.wrap is the identity.

speed: updates/s with one torch thread, CORL and ours alternating for --rounds rounds in one run, each timing in a
fresh interpreter. CORL: the trainer object its `train()` builds with its TrainConfig defaults (device cpu, env
hopper-medium-v2; train() is stopped right after building it), its `.train(batch)` timed on pre-drawn batches of a
Hopper-shaped random dataset (obs 11, act 3) at its config's batch size; DT has no trainer class, so its whole
`train()` loop is timed for N and 2N updates (the difference), sequence batches drawn in the main process
(num_workers 0; CORL's default 4 loader processes would add cores) and evaluation stubbed out. Ours: the script's
real `main()` on the same data written as a Minari dataset (tests/standins.py's Hopper stand-in) in a temporary
MINARI_DATASETS_PATH, N and 2N updates (benchmarks/throughput.py), --eval-episodes 0, with the flags that give
CORL's networks and batch (SPEED_FLAGS):

| algorithm | CORL's trainer at its defaults | ours | where they cannot match |
|---|---|---|---|
| bc | any_percent_bc `BC`: actor 2x256, batch 256 | `bc.py --hidden-dim 256 --batch-size 256` | — |
| td3_bc | `TD3_BC`: actor and 2 critics 2x256, batch 256 | `td3_bc.py --hidden-dim 256 --num-critics 2 --batch-size 256` | ours runs the critics as one batched ensemble |
| iql | `ImplicitQLearning`: Gaussian actor, twin Q, V, 2x256, batch 256 | `iql.py --hidden-dim 256 --num-critics 2 --batch-size 256` | — |
| cql | `ContinuousCQL`: actor and 2 critics 3x256, 10 sampled actions, batch 256 | `cql.py --hidden-dim 256 --hidden-layers 3 --cql-num-actions 10 --batch-size 256` | — |
| dt | `DecisionTransformer`: embed 128, 3 layers, 1 head, K 20, dropout 0.1, batch 64 | `dt.py --embed-dim 128 --num-layers 3 --num-heads 1 --context-length 20 --dropout 0.1 --batch-size 64` | MLP GELU (CORL) vs ReLU (ours) |

CORL's side excludes sampling (`.train(batch)` only, except DT) and ours includes it (the whole loop): the ratio
ours / CORL is, if anything, tilted towards CORL.

With --d3rlpy-python (the interpreter of a separate venv: `python3 -m venv /tmp/d3env; /tmp/d3env/bin/pip install
torch==2.13.0 d3rlpy==2.8.1`), d3rlpy's BC, TD3PlusBC, IQL, CQL and DecisionTransformer are timed after CORL in
each round, configured to CORL's nets and batch, on the same Hopper-shaped data (saved as .npz for that venv):
`algo.update(batch)` on batches its own sampler drew beforehand, as CORL's `.train(batch)`
(benchmarks/d3rlpy_speed.py says what is matched). A second table then gives one line per algorithm: CORL, d3rlpy
and ours under each option.

parity: both on the SAME local dataset, the same number of updates, nets, batch and seeds, and scored by the SAME
function, our evaluation (`evaluate()` in the dataset's eval env, 10 episodes from the start states our scripts
use for that --seed): CORL's `eval_actor` / `eval_rollout` are replaced by adapters that wrap CORL's actor (its
`act`, in eval mode) or DT model (through dt.py's ContextPolicy) as a policy callable behind CORL's own state
normalisation (the function its `wrap_env` installed). CORL gets our dataset's arrays: observations, actions,
rewards, next_observations and terminals (1 only at a true termination; a time-limit end bootstraps, as D4RL's
qlearning_dataset has it), and for DT `timeouts` (a time-limit end) to cut episodes. Actions are given to CORL
divided by the action box's half-width, the [-1, 1] box of D4RL that CORL's code assumes (IQL's tanh mean, CQL's
uniform proposals on [-1, 1]), and its actions are scaled back before stepping the env; pendulum's box is [-2, 2].
CORL's own state normalisation applies (normalize=True) and its reward normalisation is off (its default; it is
keyed on D4RL env names and would not act on ours anyway); ours get the same flags (PAIRS). CORL runs with its
TrainConfig defaults but for the budget, the device and what PAIRS sets:

| algorithm | ours | CORL (TrainConfig) | not matched |
|---|---|---|---|
| bc | `bc.py` 2x256, Adam 3e-4, states normalised | any_percent_bc, frac 1.0 | — |
| td3_bc | `td3_bc.py` defaults (alpha 2.5, noise 0.2/0.5, policy_freq 2) | defaults | the BC term: ours per action half-width, CORL raw; equal on [-1, 1] actions |
| iql | `iql.py --no-return-range-scale` (expectile 0.7, beta 3, Gaussian actor) | defaults (Gaussian actor) | log-std clamp: ours [-5, 2], CORL [-20, 2] |
| cql | `cql.py --actor-lr 3e-5 --cql-alpha 10 --normalize-obs`, 3x256 | defaults (3x256, orthogonal init) | CORL's log-std multiplier/offset, init |
| cal_ql | `cal_ql.py --online-steps 0 --critic-hidden-layers 3 --no-max-backup`, otherwise as cql | `offline_iterations`, `online_iterations 0`, `q_n_hidden_layers 3` | offline phase only; CORL's actor is 3 deep by construction, so both critics are set to 3; CORL's dataclass has the max backup off (its configs and Cal-QL's code: on), so ours is turned off |
| dt | `dt.py` defaults (embed 64, 1 layer, K 20, lr 1e-3, no dropout, warm-up 10%, batch 64) | the same sizes set in its config; reward_scale 1 / our rtg scale; our target returns | windows: ours end at a uniform transition (left padding), CORL's start in a trajectory drawn by length (right padding); GELU vs ReLU |

CQL and Cal-QL cost ~30x the others per update on a CPU and CORL's networks are 256 wide by construction (no
config field), so they get --cql-updates and --cql-batch-size on both sides alike. The runs go through a pool of
--workers processes (one torch thread each), appended to <out>.jsonl as they finish; a rerun skips finished ones
(benchmarks/sweep.py's run ids and its run_one for our side). Writes <out>.md (a table per algorithm x dataset:
final normalised score mean ± std over seeds of both, the difference and the verdict), <out>.png (both learning
curves) and, with --readme, the table into that page between the corl markers. The verdict is computed: "within the
seeds' spread" when |mean_ours - mean_CORL| <= the larger of the two standard deviations (over seeds, ddof 1),
otherwise "differs". The harness is tested without CORL (tests/test_corl_harness.py).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch
import tyro

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORL_FILES = {
    "bc": "algorithms/offline/any_percent_bc.py", "td3_bc": "algorithms/offline/td3_bc.py",
    "iql": "algorithms/offline/iql.py", "cql": "algorithms/offline/cql.py", "dt": "algorithms/offline/dt.py",
    "cal_ql": "algorithms/finetune/cal_ql.py",
}  # fmt: skip
CORL_TRAINERS = {"bc": "BC", "td3_bc": "TD3_BC", "iql": "ImplicitQLearning", "cql": "ContinuousCQL", "cal_ql": "CalQL"}  # dt has none
SPEED_DATASET = "mujoco/hopper/medium-v0"  # tests/standins.py writes a Hopper-shaped random stand-in under this id
SPEED_FLAGS = {  # ours at CORL's networks and batch (the table in the docstring)
    "bc": "--hidden-dim 256 --batch-size 256",
    "td3_bc": "--hidden-dim 256 --num-critics 2 --batch-size 256",
    "iql": "--hidden-dim 256 --num-critics 2 --batch-size 256",
    "cql": "--hidden-dim 256 --hidden-layers 3 --cql-num-actions 10 --batch-size 256",
    "dt": "--embed-dim 128 --num-layers 3 --num-heads 1 --context-length 20 --dropout 0.1 --batch-size 64",
}
SPEED_UPDATES = {"bc": 400, "td3_bc": 200, "iql": 200, "cql": 20, "dt": 10}  # N per timing, ~10-20 s each here
WITHIN, DIFFERS = "within the seeds' spread", "differs"
START, END = "<!-- corl:start -->", "<!-- corl:end -->"


def check_corl(path: str) -> str:
    """The absolute path of a CORL checkout; a user's wrong --corl ends the program with one sentence."""
    missing = [name for name in CORL_FILES.values() if not os.path.isfile(os.path.join(path, name))]
    if missing:
        raise SystemExit(f"--corl {path} is not a CORL checkout ({missing[0]} is missing): "
                         "git clone https://github.com/tinkoff-ai/CORL and pass its folder.")  # fmt: skip
    return os.path.abspath(path)


def cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or platform.machine()


# ----------------------------------------------------------------------------------------------
# Ours: every call into the project's modules is in this block (data.py; evaluation.py after the split).


def ours():
    """The project's shared modules: (data, evaluation)."""
    if os.path.join(ROOT, "algorithms") not in sys.path:
        sys.path.insert(0, os.path.join(ROOT, "algorithms"))
    import data

    try:
        import evaluation  # after data.py's split: envs, episodes and scores live there
    except ImportError:
        evaluation = data
    return data, evaluation


def corl_arrays(dataset_id: str) -> tuple[dict[str, np.ndarray], object, int]:
    """Our dataset as D4RL's arrays (actions divided by the box's half-width), the Minari dataset, its longest episode."""
    data, _ = ours()
    dataset = data.load_dataset(dataset_id)
    t = data.to_transitions(dataset, "cpu")
    low, high = dataset.action_space.low, dataset.action_space.high
    ends, terminals = t.episode_ends.numpy(), t.terminals.numpy()
    arrays = {
        "observations": t.observations.numpy(), "actions": ((t.actions.numpy() - (high + low) / 2) / ((high - low) / 2)).astype(np.float32),
        "rewards": t.rewards.numpy(), "next_observations": t.next_observations.numpy(), "terminals": terminals,
        "timeouts": (ends & (terminals == 0)).astype(np.float32),
    }  # fmt: skip
    return arrays, dataset, int(t.timesteps.max()) + 1


def our_evaluation(dataset, episodes: int, seed: int):
    """(evaluate(policy, on_reward=None) -> EvalResult, normalised score of returns) for one run of --seed `seed`."""
    _, evaluation = ours()
    envs = evaluation.make_eval_envs(dataset, episodes)
    start = 1_000 + 100_000 * seed  # data.Run.eval_seed(): our scripts' start states for this --seed

    def run(policy: Callable, on_reward: Callable | None = None):
        return evaluation.evaluate(policy, envs, dataset, seed=start, on_reward=on_reward)

    return run, lambda returns: evaluation.normalized_score(dataset, returns)


def our_dt_context(model, normalize: Callable, context_length: int, rtg_scale: float):
    """dt.py's evaluation context (R, s, a, t of the last K steps per env) around any model called like ours."""
    ours()
    import dt

    return dt.ContextPolicy(model, normalize, context_length, rtg_scale)


def our_dt_conditioning(dataset_id: str) -> tuple[float, tuple[float, ...]]:
    """dt.py's default returns-to-go scale and target returns on this dataset: CORL's DT gets the same."""
    data, _ = ours()
    import dt

    return dt.return_conditioning(data.to_transitions(data.load_dataset(dataset_id), "cpu"), dt.Args(dataset=dataset_id))


def hopper_standin(num_episodes: int = 10, episode_length: int = 1000) -> str:
    """A Hopper-shaped random dataset (obs 11, act 3) written into $MINARI_DATASETS_PATH; its id."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import standins

    standins.build_standin(SPEED_DATASET, num_episodes=num_episodes, episode_length=episode_length)
    return SPEED_DATASET


# ----------------------------------------------------------------------------------------------
# CORL's imports, stood in for: gym (make, wrappers), d4rl, wandb, pyrallis.


class Space:
    """What CORL reads of a gym Box: shape, high, low, seed()."""

    def __init__(self, dim: int, bound: float):
        self.shape, self.high, self.low = (dim,), np.full(dim, bound, np.float32), np.full(dim, -bound, np.float32)

    def seed(self, seed=None) -> None:
        pass


class OfflineEnv:
    """The env CORL's train() gets from gym.make: D4RL's dataset API over our arrays, the spaces (actions in
    [-1, 1]), the reference scores. It is never stepped: evaluation goes through our code (Evaluation)."""

    def __init__(self, arrays: dict[str, np.ndarray], max_episode_steps: int, normalized_score: Callable | None = None):
        self.arrays, self._max_episode_steps, self.normalized_score = arrays, max_episode_steps, normalized_score
        self.observation_space = Space(arrays["observations"].shape[1], np.inf)
        self.action_space = Space(arrays["actions"].shape[1], 1.0)
        self.ref_min_score = 0.0  # read by Cal-QL only with is_sparse_reward (off)

    def seed(self, seed=None) -> None:
        pass

    def reset(self) -> np.ndarray:  # Cal-QL resets its online env once before its (here absent) online phase
        return self.arrays["observations"][0]

    def get_normalized_score(self, returns):
        """D4RL's score as a fraction (CORL multiplies it by 100): our normalised score / 100."""
        return np.nan * np.asarray(returns) if self.normalized_score is None else self.normalized_score(np.asarray(returns)) / 100

    def get_dataset(self) -> dict[str, np.ndarray]:
        return {k: self.arrays[k].copy() for k in ("observations", "actions", "rewards", "terminals", "timeouts")}

    def qlearning_dataset(self) -> dict[str, np.ndarray]:
        return {k: self.arrays[k].copy() for k in ("observations", "actions", "rewards", "next_observations", "terminals")}


class Transform:
    """gym.wrappers.TransformObservation / TransformReward: keeps CORL's function and forwards the rest to the env."""

    def __init__(self, env, f: Callable):
        self.env, self.f = env, f

    def __getattr__(self, name: str):
        return getattr(self.env, name)


class TransformObservation(Transform):
    def reset(self):
        return self.f(self.env.reset())


class TransformReward(Transform):
    pass


def transform_of(env, kind: type) -> Callable:
    """The function a TransformObservation or TransformReward in CORL's wrapped env applies (identity if none)."""
    while isinstance(env, Transform):
        if isinstance(env, kind):
            return env.f
        env = env.env
    return lambda x: x


SERVED: list = []  # [the OfflineEnv gym.make returns]
LOGGED: list[tuple[int, dict]] = []  # every wandb.log(values, step) of the CORL run in this process


@contextlib.contextmanager
def corl_stubs(env: OfflineEnv):
    """sys.modules gets gym, d4rl, wandb and pyrallis stand-ins while CORL's trainer is imported and run."""
    gym = types.ModuleType("gym")
    gym.Env, gym.make = OfflineEnv, lambda name, **kwargs: SERVED[0]
    gym.wrappers = types.SimpleNamespace(TransformObservation=TransformObservation, TransformReward=TransformReward)
    d4rl = types.ModuleType("d4rl")
    d4rl.qlearning_dataset = lambda env, **kwargs: env.qlearning_dataset()
    wandb = types.ModuleType("wandb")
    wandb.init, wandb.run = lambda **kwargs: None, types.SimpleNamespace(save=lambda *a, **k: None)
    wandb.log = lambda values, step=None, **kwargs: LOGGED.append((step, dict(values)))
    pyrallis = types.ModuleType("pyrallis")
    pyrallis.wrap, pyrallis.dump = lambda *a, **k: (lambda f: f), lambda *a, **k: None
    stubs = {"gym": gym, "d4rl": d4rl, "wandb": wandb, "pyrallis": pyrallis}
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    SERVED[:], LOGGED[:] = [env], []
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def load_corl(corl: str, algorithm: str) -> types.ModuleType:
    """Import CORL's trainer file (under corl_stubs) as the module corl_<algorithm>."""
    name = f"corl_{algorithm}"
    spec = importlib.util.spec_from_file_location(name, os.path.join(corl, CORL_FILES[algorithm]))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


class Built(Exception):
    def __init__(self, trainer):
        super().__init__("CORL's trainer is built")
        self.trainer = trainer


def built_trainer(module: types.ModuleType, algorithm: str, config):
    """CORL's trainer object exactly as its train(config) builds it (nets, optimizers, kwargs); train() stops there."""
    name = CORL_TRAINERS[algorithm]
    trainer_class = getattr(module, name)

    def build(**kwargs):
        raise Built(trainer_class(**kwargs))

    setattr(module, name, build)
    try:
        module.train(config)
    except Built as built:
        return built.trainer
    finally:
        setattr(module, name, trainer_class)
    raise RuntimeError(f"CORL's {algorithm} train() returned without building {name}")


# ----------------------------------------------------------------------------------------------
# speed


@dataclass
class SpeedArgs:
    corl: str
    """a checkout of github.com/tinkoff-ai/CORL"""
    algorithms: tuple[str, ...] = ("bc", "td3_bc", "iql", "cql", "dt")
    """algorithms to time (CORL's trainer and our script of the same name)"""
    rounds: int = 3
    """alternating rounds: each times every algorithm, CORL then ours"""
    scale: float = 1.0
    """multiplies the timed updates of every algorithm (SPEED_UPDATES)"""
    threads: int = 1
    """torch CPU threads of both"""
    clock: Literal["wall", "process"] = "wall"
    """both sides' clock: wall seconds, or CPU seconds of the timing process (benchmarks/throughput.py --clock), for a machine others share"""
    options: tuple[str, ...] = ("eager",)
    """our speed options, a row each beside the same CORL timing: eager, or benchmarks/throughput.py's names (compile, matmul-precision=bf16)"""
    baseline: str | None = None
    """another checkout of this project (e.g. `git worktree add /tmp/main main`), timed eager in the same rounds: a row each"""
    d3rlpy_python: str | None = None
    """the python of a venv with d3rlpy (`pip install torch==2.13.0 d3rlpy==2.8.1`): d3rlpy's algorithms at CORL's nets and batch, timed after CORL in each round (benchmarks/d3rlpy_speed.py)"""
    out: str | None = None
    """append the markdown tables to this file"""


def random_batch(arrays: dict[str, np.ndarray], batch_size: int, rng: np.random.Generator) -> list[torch.Tensor]:
    """A batch as CORL's ReplayBuffer.sample returns it: states, actions, rewards (B, 1), next states, dones (B, 1)."""
    index = rng.integers(len(arrays["rewards"]), size=batch_size)
    columns = [arrays[k][index] for k in ("observations", "actions", "rewards", "next_observations", "terminals")]
    return [torch.as_tensor(c if c.ndim == 2 else c[:, None], dtype=torch.float32) for c in columns]


def corl_speed_worker() -> None:
    """In a fresh interpreter: CORL's updates/s of one algorithm on the Hopper stand-in, printed."""
    corl, algorithm, updates, threads, clock = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    now = time.process_time if clock == "process" else time.perf_counter
    torch.set_num_threads(threads)
    arrays, _, longest = corl_arrays(SPEED_DATASET)
    with corl_stubs(OfflineEnv(arrays, longest)):
        module = load_corl(corl, algorithm)
        if algorithm == "dt":  # no trainer class: the whole loop, N and 2N updates, evaluation answered at once
            module.eval_rollout = lambda *args, **kwargs: (0.0, 0.0)

            def loop(steps: int) -> float:
                config = module.TrainConfig(device="cpu", env_name="hopper-medium-v2", update_steps=steps, num_workers=0)
                start = now()
                module.train(config)
                return now() - start

            loop(5)  # warm-up
            print(updates / max(loop(2 * updates) - loop(updates), 1e-9))
            return
        config = module.TrainConfig(device="cpu", env="hopper-medium-v2", buffer_size=len(arrays["rewards"]))
        trainer = built_trainer(module, algorithm, config)
        rng = np.random.default_rng(0)
        batches = [random_batch(arrays, config.batch_size, rng) for _ in range(16)]
        for i in range(20):  # warm-up: allocator, first-call costs
            trainer.train(batches[i % len(batches)])
        start = now()
        for i in range(2 * updates):
            trainer.train(batches[i % len(batches)])
        print(2 * updates / (now() - start))


def corl_updates_per_second(corl: str, algorithm: str, updates: int, threads: int, clock: str = "wall") -> float:
    worker = f"import sys; sys.path[:0] = [{os.path.join(ROOT, 'benchmarks')!r}]; import corl; corl.corl_speed_worker()"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), TQDM_DISABLE="1")
    done = subprocess.run([sys.executable, "-c", worker, corl, algorithm, str(updates), str(threads), clock], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"timing CORL's {algorithm} failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def d3rlpy_updates_per_second(python: str, arrays: str, algorithm: str, updates: int, threads: int, clock: str = "wall") -> float:
    """d3rlpy's updates/s of one algorithm in its own venv's interpreter, on the arrays saved at `arrays` (.npz)."""
    script = os.path.join(ROOT, "benchmarks", "d3rlpy_speed.py")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), TQDM_DISABLE="1")
    done = subprocess.run([python, script, arrays, algorithm, str(updates), str(threads), clock], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"timing d3rlpy's {algorithm} failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def speed_table(rows: list[dict], header: str) -> str:
    """Markdown: per algorithm the median updates/s of each side over the rounds, every round, and ours / CORL (with
    d3rlpy's columns beside them when the rows have its timings)."""
    d3 = any(row.get("d3rlpy") for row in rows)
    each = lambda xs: ", ".join(f"{x:.1f}" for x in xs)  # noqa: E731
    lines = [header, "", "| algorithm | CORL updates/s | " + ("d3rlpy updates/s | " if d3 else "") + "ours updates/s | ours / CORL | "
             + ("ours / d3rlpy | " if d3 else "") + "CORL, each round | " + ("d3rlpy, each round | " if d3 else "")
             + "ours, each round | ours' flags |", "|---" * (10 if d3 else 7) + "|"]  # fmt: skip
    for row in rows:
        corl, mine = statistics.median(row["corl"]), statistics.median(row["ours"])
        theirs = statistics.median(row["d3rlpy"]) if d3 else 0.0
        lines.append(f"| {row['algorithm']} | {corl:.1f} | " + (f"{theirs:.1f} | " if d3 else "") + f"{mine:.1f} | {mine / corl:.2f}x | "
                     + (f"{mine / theirs:.2f}x | " if d3 else "") + f"{each(row['corl'])} | " + (f"{each(row['d3rlpy'])} | " if d3 else "")
                     + f"{each(row['ours'])} | `{row['flags']}` |")  # fmt: skip
    return "\n".join(lines) + "\n"


def speed_summary(rows: list[dict], options: tuple[str, ...]) -> str:
    """Markdown, one line per algorithm: CORL's (and d3rlpy's) median updates/s, and ours under each option with
    ours / CORL (and ours / d3rlpy) in brackets. Baseline rows are left out."""
    d3 = any(row.get("d3rlpy") for row in rows)
    lines = ["| algorithm | CORL | " + ("d3rlpy | " if d3 else "") + " | ".join(f"ours {option}" for option in options) + " |",
             "|---" * (2 + d3 + len(options)) + "|"]  # fmt: skip
    for script in dict.fromkeys(row["script"] for row in rows if row.get("option") is not None):
        mine = {row["option"]: statistics.median(row["ours"]) for row in rows if row["script"] == script and row.get("option") is not None}
        first = next(row for row in rows if row["script"] == script)
        corl = statistics.median(first["corl"])
        theirs = statistics.median(first["d3rlpy"]) if d3 else 0.0
        cells = [f"{mine[o]:.1f} ({mine[o] / corl:.2f}x" + (f"; {mine[o] / theirs:.2f}x)" if d3 else ")") for o in options if o in mine]
        lines.append(f"| {script} | {corl:.1f} | " + (f"{theirs:.1f} | " if d3 else "") + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def speed(args: SpeedArgs) -> str:
    """updates/s of CORL's trainers and of our scripts at CORL's nets and batch, alternating, one table."""
    import throughput

    corl = check_corl(args.corl)
    started = time.time()
    rows = [{"algorithm": a if option == "eager" else f"{a} {option}", "script": a, "option": option, "root": ROOT, "corl": [], "d3rlpy": [],
             "ours": [], "flags": " ".join([SPEED_FLAGS[a], *throughput.flags(option)])} for a in args.algorithms for option in args.options]  # fmt: skip
    if args.baseline:
        rows += [{"algorithm": f"{a} (baseline)", "script": a, "option": None, "root": os.path.abspath(args.baseline), "corl": [],
                  "d3rlpy": [], "ours": [], "flags": SPEED_FLAGS[a]} for a in args.algorithms]  # fmt: skip
    with tempfile.TemporaryDirectory() as root:
        previous = os.environ.get("MINARI_DATASETS_PATH")
        os.environ["MINARI_DATASETS_PATH"] = root  # the timing interpreters inherit it
        try:
            hopper_standin()
            arrays = os.path.join(root, "hopper.npz")  # the same data for d3rlpy's venv, as numpy arrays
            if args.d3rlpy_python:
                np.savez(arrays, **{k: v for k, v in corl_arrays(SPEED_DATASET)[0].items() if k != "next_observations"})
            for round in range(args.rounds):
                for algorithm in args.algorithms:  # CORL once, d3rlpy once, then each of our rows of this algorithm
                    updates = max(2, int(SPEED_UPDATES[algorithm] * args.scale))
                    corl_speed = corl_updates_per_second(corl, algorithm, updates, args.threads, args.clock)
                    d3rlpy_speed = None
                    if args.d3rlpy_python:
                        d3rlpy_speed = d3rlpy_updates_per_second(args.d3rlpy_python, arrays, algorithm, updates, args.threads, args.clock)
                    for row in (r for r in rows if r["script"] == algorithm):
                        row["corl"].append(corl_speed)
                        if d3rlpy_speed is not None:
                            row["d3rlpy"].append(d3rlpy_speed)
                        timing = throughput.ThroughputArgs(dataset=SPEED_DATASET, updates=updates, device="cpu", threads=args.threads, eval_episodes=0, clock=args.clock)
                        row["ours"].append(throughput.updates_per_second(algorithm, timing, row["flags"], row["root"]))
                        also = "" if d3rlpy_speed is None else f", d3rlpy {d3rlpy_speed:.1f}"
                        print(f"round {round + 1}: {row['algorithm']} CORL {corl_speed:.1f}{also}, ours {row['ours'][-1]:.1f} updates/s", flush=True)
        finally:
            if previous is None:
                os.environ.pop("MINARI_DATASETS_PATH", None)
            else:
                os.environ["MINARI_DATASETS_PATH"] = previous
    commit = subprocess.run(["git", "-C", corl, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    revision = lambda path: subprocess.run(["git", "-C", path, "describe", "--always", "--dirty"], capture_output=True, text=True, check=False).stdout.strip()  # noqa: E731
    baseline = f", baseline {revision(args.baseline)}" if args.baseline else ""
    if args.d3rlpy_python:
        version = subprocess.run([args.d3rlpy_python, "-c", "import d3rlpy; print(d3rlpy.__version__)"], capture_output=True, text=True, check=False)
        baseline += f", d3rlpy {version.stdout.strip()}"
    header = (f"### {time.strftime('%Y-%m-%d')}: CORL {commit or '(no git)'} vs ours {revision(ROOT)}{baseline}, {cpu_name()}, {os.cpu_count()} cores, "
              f"torch {torch.__version__}, {args.threads} thread(s), {args.clock} clock, {args.rounds} alternating rounds, "
              f"{(time.time() - started) / 60:.0f} min (`python benchmarks/corl.py speed`)")  # fmt: skip
    text = speed_table(rows, header)
    if len(args.options) > 1 or args.d3rlpy_python:  # the same medians, one line per algorithm
        ratios = "ours / CORL" + ("; ours / d3rlpy" if args.d3rlpy_python else "")
        text += f"\nThe same medians, updates/s (in brackets {ratios}):\n\n" + speed_summary(rows, args.options)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")
    return text


# ----------------------------------------------------------------------------------------------
# parity


@dataclass
class ParityArgs:
    corl: str
    """a checkout of github.com/tinkoff-ai/CORL"""
    algorithms: tuple[str, ...] = ("bc", "td3_bc", "iql", "cql", "cal_ql", "dt")
    """algorithms to compare (CORL's trainer and our script of the same name; bc = CORL's any_percent_bc at frac 1)"""
    datasets: tuple[str, ...] = ("pendulum/medium-v0", "pointmaze/umaze-medium-v0")
    """local-suite datasets (`python algorithms/local_suite.py` lists them; built on first use)"""
    seeds: tuple[int, ...] = (0, 1, 2)
    """seeds of both sides"""
    updates: int = 5_000
    """gradient updates of bc, td3_bc, iql, dt"""
    cql_updates: int = 1_000
    """gradient updates of cql and cal_ql (~30x slower per update on a CPU)"""
    cql_batch_size: int = 64
    """batch size of cql and cal_ql, both sides (CORL's: 256; 64 makes them ~3x cheaper)"""
    evaluations: int = 10
    """evaluations per run, evenly spaced (the learning curves); the last one is the final score"""
    eval_episodes: int = 10
    """episodes per evaluation"""
    workers: int = 2
    """parallel runs, one torch thread each"""
    out: str = "benchmarks/results/parity"
    """output path without extension: .jsonl (one record per run), .md, .png"""
    logs: str = "benchmarks/out/corl_logs"
    """each run's stdout/stderr"""
    readme: str | None = None
    """also write the table into this markdown page (docs/benchmarks.md), between the corl markers"""


def flag_text(flags: dict[str, str]) -> str:
    return " ".join(f"--{k.replace('_', '-')}" if v == "True" else f"--no-{k.replace('_', '-')}" if v == "False"
                    else f"--{k.replace('_', '-')} {v}" for k, v in flags.items())  # fmt: skip


def pair(algorithm: str, dataset_id: str, args: ParityArgs) -> tuple[dict[str, str], dict]:
    """(our flags as sweep's name=value strings, CORL's TrainConfig fields) for one algorithm: the same nets, batch,
    budget, normalisation and evaluation schedule (the table in the docstring)."""
    cql_like = algorithm in ("cql", "cal_ql")
    updates = args.cql_updates if cql_like else args.updates
    every = max(1, updates // args.evaluations)
    budget = {"total_steps": str(updates), "eval_every": str(every), "eval_episodes": str(args.eval_episodes), "log_every": str(every)}
    corl = {"device": "cpu", "env": dataset_id, "eval_freq": every, "n_episodes": args.eval_episodes, "max_timesteps": updates, "normalize": True}
    if algorithm == "bc":
        return {**budget, "top_fraction": "1.0", "hidden_dim": "256", "batch_size": "256", "normalize_obs": "True"}, {**corl, "frac": 1.0}
    if algorithm == "td3_bc":
        flags = {"hidden_dim": "256", "batch_size": "256", "alpha": "2.5", "normalize_obs": "True", "return_range_scale": "False"}
        return {**budget, **flags}, {**corl, "normalize_reward": False}
    if algorithm == "iql":
        flags = {"hidden_dim": "256", "batch_size": "256", "expectile": "0.7", "temperature": "3.0", "normalize_obs": "True",
                 "return_range_scale": "False", "target_update_rate": "0.005"}  # fmt: skip
        return {**budget, **flags}, {**corl, "normalize_reward": False}
    if cql_like:
        flags = {"hidden_dim": "256", "hidden_layers": "3", "batch_size": str(args.cql_batch_size), "actor_lr": "3e-5",
                 "cql_alpha": "10.0", "cql_num_actions": "10", "normalize_obs": "True", "return_range_scale": "False"}  # fmt: skip
        config = {**corl, "batch_size": args.cql_batch_size, "normalize_reward": False}
        if algorithm == "cql":
            return {**budget, **flags}, config
        del config["max_timesteps"]
        ours = {**budget, **flags, "online_steps": "0", "critic_hidden_layers": "3", "max_backup": "False"}
        return ours, {**config, "offline_iterations": updates, "online_iterations": 0, "q_n_hidden_layers": 3}
    if algorithm == "dt":
        rtg_scale, targets = our_dt_conditioning(dataset_id)
        flags = {"embed_dim": "64", "num_layers": "1", "num_heads": "1", "dropout": "0.0", "learning_rate": "1e-3",
                 "batch_size": "64", "context_length": "20", "weight_decay": "1e-4", "grad_clip": "0.25"}  # fmt: skip
        config = {"device": "cpu", "env_name": dataset_id, "update_steps": updates, "eval_every": every, "eval_episodes": args.eval_episodes,
                  "num_workers": 0, "embedding_dim": 64, "num_layers": 1, "num_heads": 1, "attention_dropout": 0.0,
                  "residual_dropout": 0.0, "embedding_dropout": 0.0, "learning_rate": 1e-3, "batch_size": 64, "seq_len": 20,
                  "weight_decay": 1e-4, "clip_grad": 0.25, "warmup_steps": max(1, updates // 10), "episode_len": 1000,
                  "reward_scale": 1 / rtg_scale, "target_returns": targets}  # fmt: skip
        return {**budget, **flags}, config
    raise KeyError(f"no parity settings for {algorithm}")


class Evaluation:
    """CORL's evaluation calls answered by ours: the policy CORL would act with, scored by our evaluate()."""

    def __init__(self, dataset, episodes: int, seed: int):
        self.run, self.normalized = our_evaluation(dataset, episodes, seed)
        low, high = dataset.action_space.low, dataset.action_space.high
        self.scale, self.bias = torch.tensor((high - low) / 2), torch.tensor((high + low) / 2)  # back from CORL's [-1, 1]
        self.finished: list = []  # DT: (return, length) of the episodes evaluated at once, handed out one per call

    def actor(self, env, actor, device: str = "cpu", n_episodes: int = 10, seed: int = 0):
        """CORL's eval_actor(env, actor, device, n_episodes, seed) -> episode returns: CORL's act() in eval mode."""
        normalize = transform_of(env, TransformObservation)

        def policy(observations: torch.Tensor) -> torch.Tensor:
            actions = np.stack([actor.act(state, device) for state in normalize(observations.cpu().numpy())])
            return torch.as_tensor(actions, dtype=torch.float32) * self.scale + self.bias

        actor.eval()
        result = self.run(policy)
        actor.train()
        return result

    def returns(self, *args, **kwargs) -> np.ndarray:
        return self.actor(*args, **kwargs).returns

    def returns_and_success(self, *args, **kwargs) -> tuple[np.ndarray, float]:  # Cal-QL's eval_actor
        result = self.actor(*args, **kwargs)
        return result.returns, result.success_rate

    def rollout(self, model, env, target_return: float, device: str = "cpu") -> tuple[float, float]:
        """CORL's eval_rollout(model, env, target_return) -> (scaled return, length) of one episode: the first call
        of a round evaluates all of them at once through dt.py's ContextPolicy around CORL's model."""
        if not self.finished:
            reward_scale = transform_of(env, TransformReward)(1.0)
            observation_normalize = transform_of(env, TransformObservation)
            normalize = lambda obs: torch.as_tensor(observation_normalize(obs.cpu().numpy()), dtype=torch.float32)  # noqa: E731
            context = our_dt_context(CorlSequenceModel(model), normalize, model.seq_len, 1 / reward_scale)
            context.reset(target_return / reward_scale)
            result = self.run(lambda obs: context(obs) * self.scale + self.bias, on_reward=context.on_reward)
            self.finished = list(zip(result.returns * reward_scale, result.lengths))
        return self.finished.pop(0)


class CorlSequenceModel:
    """CORL's DecisionTransformer called as dt.ContextPolicy calls ours: (R (n, K, 1), s, a, t) -> actions in [-1, 1]."""

    def __init__(self, model):
        self.model, self.action_scale = model, torch.ones(model.action_dim)

    def __call__(self, returns_to_go, states, actions, timesteps):
        return self.model(states, actions, returns_to_go.squeeze(-1), timesteps)


def score_curve(logged: list[tuple[int, dict]], algorithm: str, config) -> tuple[list[int], list[float]]:
    """(updates done, normalised score) of every evaluation CORL logged."""
    if algorithm == "dt":  # logged at its 0-based step, after step + 1 updates; the first target return is the headline
        key, offset = f"eval/{config.target_returns[0]}_normalized_score_mean", 1
    else:
        key, offset = ("eval/d4rl_normalized_score" if algorithm == "cal_ql" else "d4rl_normalized_score"), 0
    points = [(step + offset, float(values[key])) for step, values in logged if key in values]
    return [s for s, _ in points], [v for _, v in points]


def run_corl(config: dict, corl: str, logs: str) -> dict:
    """In a worker: CORL's train() on our dataset, evaluated by ours; a record like sweep.run_one's."""
    torch.set_num_threads(1)
    os.environ["TQDM_DISABLE"] = "1"
    record, start = dict(config), time.time()
    os.makedirs(logs, exist_ok=True)
    with open(os.path.join(logs, f"{config['id']}.log"), "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            algorithm = config["script"]
            arrays, dataset, longest = corl_arrays(config["dataset"])
            evaluation = Evaluation(dataset, config["eval_episodes"], config["seed"])
            with corl_stubs(OfflineEnv(arrays, longest, evaluation.normalized)):
                module = load_corl(corl, algorithm)
                module.eval_actor = evaluation.returns_and_success if algorithm == "cal_ql" else evaluation.returns
                module.eval_rollout = evaluation.rollout
                seed_field = "train_seed" if algorithm == "dt" else "seed"
                train_config = module.TrainConfig(**config["corl_config"], **{seed_field: config["seed"]})
                if algorithm != "dt":
                    train_config.buffer_size = len(arrays["rewards"])  # CORL's 2M-row default buffer, cut to the data
                module.train(train_config)
                steps, scores = score_curve(LOGGED, algorithm, train_config)
            record.update(status="ok", normalized_score=scores[-1], scores=scores, eval_steps=steps)
        except BaseException as error:  # noqa: BLE001 - a failed run is recorded, the others go on
            import traceback

            traceback.print_exc()
            record.update(status="failed", error=f"{type(error).__name__}: {error}"[-2000:])
    record["wall_time_s"] = time.time() - start
    return record


def run_any(config: dict, corl: str, logs: str, run_dir: str) -> dict:
    """One parity run in a fresh worker process: ours through sweep.run_one, CORL's through run_corl."""
    if config["side"] == "corl":
        return run_corl(config, corl, logs)
    import sweep

    return sweep.run_one(config, logs, run_dir)


def parity_runs(args: ParityArgs) -> list[dict]:
    """Every run, ours and CORL's interleaved so both sides progress together. A run's id names its side, algorithm,
    dataset, seed and budget, and a hash of both sides' settings: a rerun skips finished runs of the same settings."""
    import hashlib

    runs = []
    for dataset_id in args.datasets:
        for algorithm in args.algorithms:
            flags, corl_config = pair(algorithm, dataset_id, args)
            settings = hashlib.sha1(json.dumps([flags, corl_config], sort_keys=True, default=str).encode()).hexdigest()[:8]
            for seed in args.seeds:
                for side in ("ours", "corl"):
                    run_id = f"{side}__{algorithm}__{dataset_id.replace('/', '_')}__seed{seed}__n{flags['total_steps']}__{settings}"
                    runs.append({"id": run_id, "side": side, "algorithm": algorithm, "script": algorithm, "dataset": dataset_id,
                                 "seed": seed, "eval_episodes": args.eval_episodes, "flags": flags, "corl_config": corl_config})  # fmt: skip
    return runs


def final_scores(records: list[dict]) -> dict[tuple[str, str, str], list[float]]:
    """(algorithm, dataset, side) -> the final normalised score of each finished seed."""
    scores: dict = {}
    for r in records:
        if r.get("status") == "ok":
            scores.setdefault((r["algorithm"], r["dataset"], r["side"]), []).append(r["normalized_score"])
    return scores


def verdict(ours_scores: list[float], corl_scores: list[float]) -> str:
    """"within the seeds' spread" when the means differ by no more than the larger std over seeds (ddof 1)."""
    spread = max(float(np.std(ours_scores, ddof=1)), float(np.std(corl_scores, ddof=1)))
    return WITHIN if abs(float(np.mean(ours_scores)) - float(np.mean(corl_scores))) <= spread else DIFFERS


def parity_rows(records: list[dict]) -> list[dict]:
    scores, rows = final_scores(records), []
    for algorithm, dataset_id, side in sorted(scores):
        if side == "ours" and (algorithm, dataset_id, "corl") in scores:
            mine, theirs = np.array(scores[(algorithm, dataset_id, "ours")]), np.array(scores[(algorithm, dataset_id, "corl")])
            seeds = min(len(mine), len(theirs))
            shown = verdict(mine, theirs) if seeds > 1 else "one seed: no spread"
            rows.append({"algorithm": algorithm, "dataset": dataset_id, "ours": mine, "corl": theirs, "verdict": shown})
    return rows


def parity_table(rows: list[dict]) -> str:
    cell = lambda x: f"{x.mean():.1f} ± {x.std(ddof=1) if len(x) > 1 else 0.0:.1f} ({len(x)})"  # noqa: E731
    lines = ["| algorithm | dataset | ours | CORL | ours − CORL | verdict |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['algorithm']} | {r['dataset']} | {cell(r['ours'])} | {cell(r['corl'])} | "
                     f"{r['ours'].mean() - r['corl'].mean():+.1f} | {r['verdict']} |")  # fmt: skip
    return "\n".join(lines)


def plot_curves(records: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in records if r.get("status") == "ok" and r.get("scores")]
    algorithms = sorted({r["algorithm"] for r in ok})
    datasets = sorted({r["dataset"] for r in ok})
    figure, axes = plt.subplots(len(algorithms), len(datasets), figsize=(4.2 * len(datasets), 2.4 * len(algorithms)), squeeze=False)
    for i, algorithm in enumerate(algorithms):
        for j, dataset_id in enumerate(datasets):
            axis = axes[i][j]
            for side, color in (("ours", "tab:blue"), ("corl", "tab:orange")):
                runs = [r for r in ok if (r["algorithm"], r["dataset"], r["side"]) == (algorithm, dataset_id, side)]
                if not runs:
                    continue
                steps = sorted(set.intersection(*(set(r["eval_steps"]) for r in runs)))
                curve = np.array([[dict(zip(r["eval_steps"], r["scores"]))[s] for s in steps] for r in runs])
                axis.plot(steps, curve.mean(0), color=color, marker=".", label=f"{'ours' if side == 'ours' else 'CORL'} ({len(runs)})")
                axis.fill_between(steps, curve.mean(0) - curve.std(0), curve.mean(0) + curve.std(0), color=color, alpha=0.2)
            axis.set_title(f"{algorithm}, {dataset_id}", fontsize=8)
            axis.tick_params(labelsize=7)
            axis.legend(fontsize=6)
    figure.supxlabel("gradient updates")
    figure.supylabel("normalised score (mean ± std over seeds)")
    figure.tight_layout()
    figure.savefig(path, dpi=70)
    plt.close(figure)


def write_parity_report(args: ParityArgs, records: list[dict], stages: dict[str, float]) -> str:
    import report

    rows = parity_rows(records)
    table = parity_table(rows)
    plot_curves(records, f"{args.out}.png")
    settings = []
    for algorithm in args.algorithms:
        flags, corl_config = pair(algorithm, args.datasets[0], args)
        shown = {k: v for k, v in corl_config.items() if k not in ("device", "env", "env_name")}
        settings.append(f"- {algorithm}: ours `{flag_text(flags)}`; CORL `{shown}`")
    seconds = {side: sum(r.get("wall_time_s", 0.0) for r in records if r["side"] == side) for side in ("ours", "corl")}
    failed = [r["id"] for r in records if r.get("status") != "ok"]
    text = (
        f"# Parity with CORL: the same data, budget, networks, seeds and evaluation\n\n"
        f"`python benchmarks/corl.py parity --corl <CORL checkout>` ({cpu_name()}, torch {torch.__version__}, one thread "
        f"per run, {args.workers} runs at a time). Seeds {', '.join(map(str, args.seeds))}; {args.updates} updates "
        f"({args.cql_updates} for cql and cal_ql, batch {args.cql_batch_size}); evaluated {args.evaluations} times per run "
        f"on {args.eval_episodes} episodes by our evaluation code, CORL's policy wrapped with its own state normalisation "
        f"(benchmarks/corl.py says how). Final normalised score, mean ± std over seeds (ddof 1, n). Verdict: "
        f"\"{WITHIN}\" when |ours − CORL| is at most the larger std, else \"{DIFFERS}\". cal_ql: offline phase only.\n\n"
        f"{table}\n\n![learning curves]({os.path.basename(args.out)}.png)\n\n"
        f"Compute: ours {seconds['ours'] / 60:.0f} min, CORL {seconds['corl'] / 60:.0f} min of runs; "
        + ", ".join(f"{stage} {s / 60:.1f} min" for stage, s in stages.items()) + " wall time this invocation."
        + (f" Failed runs (see {args.logs}): {', '.join(failed)}." if failed else "")
        + "\n\nSettings (the first dataset's; DT's target returns and reward scale are per dataset):\n\n" + "\n".join(settings) + "\n"
    )  # fmt: skip
    with open(f"{args.out}.md", "w") as f:
        f.write(text)
    if args.readme:
        summary = (f"{len(args.seeds)} seeds, {args.updates} updates ({args.cql_updates} for CQL and Cal-QL), scored by the "
                   f"same evaluation code ([{os.path.basename(args.out)}.md]({os.path.relpath(args.out, os.path.dirname(os.path.abspath(args.readme)) or '.')}.md)):\n\n{table}")  # fmt: skip
        report.write_readme(args.readme, summary, START, END)
    return text


def parity(args: ParityArgs) -> str:
    """CORL's trainers and ours, run to the same budget on the same data, scored alike; table, curves, verdicts."""
    import functools

    import sweep

    corl = check_corl(args.corl)
    stages, started = {}, time.time()
    for dataset_id in args.datasets:  # built once here, not by two workers at once
        ours()[0].load_dataset(dataset_id)
    runs = parity_runs(args)
    stages["datasets and setup"] = time.time() - started
    done = sweep.finished_ids(f"{args.out}.jsonl")
    todo = [r for r in runs if r["id"] not in done]
    print(f"{len(runs)} runs, {len(runs) - len(todo)} already in {args.out}.jsonl, {len(todo)} to run", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)) or ".", exist_ok=True)
    started = time.time()
    run = functools.partial(run_any, corl=corl, logs=os.path.abspath(args.logs), run_dir=os.path.abspath(os.path.join(args.logs, "runs")))
    with multiprocessing.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
        for record in pool.imap_unordered(run, todo):
            with open(f"{args.out}.jsonl", "a") as f:
                f.write(json.dumps(record, default=float) + "\n")
            print(f"{record['id']}: {record['status']} {record.get('normalized_score', float('nan')):.1f} "
                  f"({record['wall_time_s']:.0f} s)", flush=True)  # fmt: skip
    stages["runs"] = time.time() - started
    import report

    text = write_parity_report(args, [r for r in report.load_records([f"{args.out}.jsonl"]) if r["id"] in {x["id"] for x in runs}], stages)
    print(text)
    return text


Command = (
    Annotated[SpeedArgs, tyro.conf.subcommand("speed", description="updates/s of CORL's trainers and ours (issue 28)")]
    | Annotated[ParityArgs, tyro.conf.subcommand("parity", description="scores of CORL's trainers and ours (issue 27)")]
)

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    chosen = tyro.cli(Command)
    speed(chosen) if isinstance(chosen, SpeedArgs) else parity(chosen)
