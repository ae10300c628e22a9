"""Everything around a training loop, written once so that each script's main() shows its algorithm.

Lives here: `Run` (seeds, device, the run folder, TensorBoard and W&B, the step loop with its progress bar,
checkpoints as asked, on Ctrl-C/SIGTERM and when the loop stops on an error, resume, NaN stops, evaluation logging
and its videos, the final line), `RunResult` (what main() returns), the device choice, and the command line with
named recipes (`cli`: `script.py RECIPE [flags]`).
Lives elsewhere: the speed options (--compile, --cudagraphs, --matmul-precision: speed.py), the recipes themselves (beside each script's Args), writing and reading checkpoints (checkpoints.py),
running evaluation episodes (evaluation.py), the data (data.py), the online phase's env (finetuning.py).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import minari
import imageio.v3 as iio
import numpy as np
import torch
import tyro
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import checkpoints
import checks
import data
import evaluation


@dataclass
class RunResult:
    """What a training script's main() returns; benchmarks read these fields."""

    normalized_score: float  # the last evaluation's mean normalised score (NaN: no evaluation, or no reference scores)
    scores: list[float]  # every evaluation's mean normalised score, in order
    returns: list[float]  # every evaluation's mean raw return, in order
    updates_per_s: float  # gradient updates per second, evaluation time excluded
    run_path: str  # the run folder: TensorBoard logs and checkpoint.pt
    policy_scores: dict[str, float] = field(default_factory=dict)  # last score of each other policy evaluated, by tag
    success_rate: float = float("nan")  # the last evaluation's fraction of episodes reaching the goal (goal envs only)
    eval_steps: list[int] = field(default_factory=list)  # the update step of each score, in order (learning curves)
    task_success_rates: list[float] = field(default_factory=list)  # goal-conditioned: the last evaluation's rate per goal (task 1 first)



class Run:
    """Everything around a training loop, once, so that each main() shows its algorithm:

        run = training.Run("td3_bc", args)           # seeds, device, a new run folder, TensorBoard
        args = run.args                           # with --resume: the checkpoint's own settings
        ... data and networks on run.device ...
        for step in run.steps(models, normalizer):   # progress bar, checkpoints, Ctrl-C / SIGTERM, resume
            metrics = update(...)
            if run.logging(step): run.log(step, metrics)
            if run.evaluating(step): run.evaluate(step, policy, dataset)
        return run.result()

    models maps names to everything with a state_dict (networks, targets, optimizers, schedulers): what an
    exact continuation needs. Metric names follow README's vocabulary; losses/* are checked for NaN.
    """

    def __init__(self, algorithm: str, args, variant: str = ""):
        checks.install_handler()  # from here on an uncaught refusal prints one line (CLEANOFFRL_DEBUG=1: the traceback)
        self.algorithm, self._state = algorithm, None
        resume = getattr(args, "resume", None)  # test-time scripts (opex, ttt) have no --resume
        if resume:
            self._state = checkpoints.load_checkpoint(resume, algorithm, "cpu")
            args = checkpoints.resumed_args(args, self._state)
            saved_offline_steps = self._state["args"]["total_steps"]
            if self._state["step"] > saved_offline_steps:  # in its online phase: the offline budget is history
                if args.total_steps not in (saved_offline_steps, type(args)().total_steps):
                    raise checks.UserError(
                        f"The checkpoint {args.resume} is in its online phase, which began after --total-steps "
                        f"{saved_offline_steps} offline updates: drop --total-steps, or pass a larger --online-steps."
                    )
                args = replace(args, total_steps=saved_offline_steps)
            if args.total_steps + getattr(args, "online_steps", 0) <= self._state["step"]:
                raise checks.UserError(
                    f"The checkpoint {args.resume} is already at step {self._state['step']} and --total-steps is "
                    f"{args.total_steps}: pass a larger --total-steps (or --online-steps) to train on."
                )
        checks.check_flags(args)  # before anything is built: each flag against its rule (checks.RULES)
        self.args = args
        # the loop's steps: the offline updates, then those of the online phase (fine-tuning scripts) if any
        self.last_step = getattr(args, "total_steps", 0) + getattr(args, "online_steps", 0)
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        torch.set_num_threads(args.threads)
        self.device = resolve_device(args.device)
        # test-time scripts (opex, ttt) have no --dataset: the run is named after their --checkpoint's
        self.dataset_id = args.dataset if hasattr(args, "dataset") else checkpoints.read_checkpoint(args.checkpoint)["dataset"]
        self._folder_name = "__".join([self.dataset_id.replace("/", "_"), args.exp_name + (f"_{variant}" if variant else ""), str(args.seed)])
        self._path = os.path.dirname(os.path.abspath(resume)) if resume else None
        self._writer = None
        self.scores, self.returns, self.eval_steps, self.policy_scores, self.success_rate, self._envs = [], [], [], {}, float("nan"), None
        self.task_success_rates: list[float] = []
        self.first_step, self.step, self._eval_seconds, self._start, self._progress = 1, 0, 0.0, time.time(), None
        self._interrupt, self._diverged = GracefulInterrupt(), False

    @property
    def path(self) -> str:
        """The run folder, made when the run first needs it: a run that fails while loading its data leaves none."""
        if self._path is None:
            self._path = new_run_folder(self.args.run_dir, self._folder_name)
        return self._path

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def checkpoint_path(self) -> str:
        return os.path.join(self.path, "checkpoint.pt")

    @property
    def writer(self) -> SummaryWriter:
        """TensorBoard (and W&B with --track), opened when the run first writes: its event file means "training"."""
        if self._writer is None:
            self._writer = SummaryWriter(self.path)
            hyperparameters = "\n".join(f"|{k}|{v}|" for k, v in asdict(self.args).items())
            self._writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + hyperparameters)
            if self.args.track:
                import wandb

                wandb.init(project=self.args.wandb_project, name=self.name, config=asdict(self.args), sync_tensorboard=True)
        return self._writer

    def steps(self, models: dict, normalizer: data.Normalizer):
        """Yield the steps to do; restore a resumed run first; checkpoint as asked, on Ctrl-C or SIGTERM, and when
        the loop stops on an error."""
        self.models, self.normalizer = models, normalizer
        if self._state is not None:
            for name, model in models.items():
                model.load_state_dict(self._state["models"][name])
            checkpoints.set_rng_state(self._state["rng"])  # the batches drawn from here on are the ones a straight run draws
            self.first_step = self._state["step"] + 1
        if self.args.eval_episodes > 0 or getattr(self.args, "online_steps", 0) > 0:
            # built now: a dataset whose env cannot be built here is found before step 1, not after training
            dataset = data.load_dataset(self.dataset_id)  # any id: Minari's, the local suite's, ogbench/*
            self._envs = evaluation.make_eval_envs(dataset, max(self.args.eval_episodes, 1), self.args.capture_video)
        args, _ = self.args, self.writer
        self._start = time.time()
        progress = tqdm(range(self.first_step, self.last_step + 1), disable=not args.progress, desc=self.name[:40], mininterval=1.0)
        self._progress = progress
        with self._interrupt as interrupt:
            for step in progress:
                try:
                    yield step
                except GeneratorExit:  # the loop's body raised (the scripts never leave the loop otherwise)
                    with interrupt.deferred():
                        self._keep_what_was_trained(step)
                    raise
                self.step = step
                # a resumed run keeps its checkpoint current, whether or not this command says --save-model
                last = step == self.last_step and (args.save_model or self._state is not None)
                if last or (args.checkpoint_every and step % args.checkpoint_every == 0):
                    self.save(step)
                if interrupt.requested:
                    self.save(step)
                    print(f"{interrupt.signal_name} at step {step}: checkpoint saved; resume with: {self.resume_command()}")
                    break

    def _keep_what_was_trained(self, step: int) -> None:
        """The loop stopped on an error at `step`: save the last state and say where (a NaN state excepted: the last
        good checkpoint stays); if not one step had finished, remove the new run folder: nothing was trained."""
        if self.step < self.first_step and self._state is None:
            self.writer.close()
            shutil.rmtree(self.path, ignore_errors=True)
        if self._diverged or self.step < self.first_step:
            return
        try:
            self.save(step)
        except Exception as error:  # noqa: BLE001 - the error that stopped the run is the one to raise; say this one
            print(f"The run stopped on an error at step {step}, and its last state could not be saved: {error}", file=sys.stderr)
            return
        print(f"The run stopped at step {step} (the reason follows); its last state is saved: resume with: "
              f"{self.resume_command()}", file=sys.stderr)  # fmt: skip

    def resume_command(self) -> str:
        online = f" --online-steps {self.args.online_steps}" if getattr(self.args, "online_steps", 0) else ""
        return f"python algorithms/{self.algorithm}.py --resume {self.checkpoint_path} --total-steps {self.args.total_steps}{online}"

    def save(self, step: int) -> None:
        """Write the checkpoint; a Ctrl-C while it is written waits for the write to end."""
        with self._interrupt.deferred():
            state_dicts = {name: model.state_dict() for name, model in self.models.items()}
            checkpoints.save_checkpoint(self.checkpoint_path, self.algorithm, asdict(self.args), step, state_dicts, self.normalizer)

    def logging(self, step: int) -> bool:
        return step % self.args.log_every == 0 or step == self.last_step

    def evaluating(self, step: int) -> bool:
        return self.args.eval_episodes > 0 and (step % self.args.eval_every == 0 or step == self.last_step)

    def checkpoint(self, algorithms: tuple[str, ...]) -> dict:
        """A test-time script's input: the --checkpoint of a training run by one of `algorithms`."""
        return checkpoints.load_checkpoint(self.args.checkpoint, algorithms, self.device)

    def eval_seed(self, round: int = 0) -> int:
        """The first env seed of an evaluation (evaluation.first_seed): the same start states every evaluation."""
        return evaluation.first_seed(self.args.seed, round, self.args.eval_episodes)

    def updates_per_s(self) -> float:
        return (self.step - self.first_step + 1) / max(time.time() - self._start - self._eval_seconds, 1e-9)

    def log(self, step: int, metrics: dict[str, torch.Tensor | float]) -> None:
        """Write scalars (the loop's one host sync); stop on a NaN loss, naming it and the step."""
        values = {name: float(value) for name, value in metrics.items()}
        losses = {name: value for name, value in values.items() if name.startswith("losses/")}
        self._diverged = not np.isfinite(list(losses.values())).all()  # then the last good checkpoint stays as it is
        check_finite(losses, step, self.checkpoint_path)
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)
        self.step = step
        self.writer.add_scalar("charts/updates_per_s", self.updates_per_s(), step)

    def evaluate(
        self, step: int, policy: Callable, dataset: minari.MinariDataset, mse_states: dict[str, torch.Tensor] | None = None,
        tag: str = "", on_reward: Callable | None = None, goal_conditioned: bool = False,
    ) -> evaluation.EvalResult:  # fmt: skip
        """--eval-episodes episodes in the dataset's env (goal_conditioned: for each of its evaluation goals, OGBench's
        protocol); eval/* scalars, and the action MSE to the local suite's scripted expert on the given states and on the
        visited ones (mse/<split>_expert, Park et al. 2024)."""
        started = time.time()
        if self._envs is None:
            self._envs = evaluation.make_eval_envs(dataset, self.args.eval_episodes, self.args.capture_video)
        result = evaluation.evaluate(policy, self._envs, dataset, self.eval_seed(), self.device, on_reward, goal_conditioned)
        states = {**(mse_states or {}), "eval": result.observations}
        self.record(step, result, {split: evaluation.expert_action_mse(policy, dataset.id, s, self.device) for split, s in states.items()}, tag)
        self._eval_seconds += time.time() - started
        return result

    def record(self, step: int, result: evaluation.EvalResult, expert_mse: dict[str, float], tag: str = "") -> None:
        """Log an evaluation (eval/*{tag}, mse/<split>_expert{tag} where finite) and keep its score: untagged, the run's
        score; tagged, a policy the script evaluates besides it (RunResult.policy_scores, keyed without the "_")."""
        self.writer.add_scalar(f"eval/return{tag}", result.mean, step)
        self.writer.add_scalar(f"eval/normalized_score{tag}", result.normalized_mean, step)
        if np.isfinite(result.success_rate):
            self.writer.add_scalar(f"eval/success_rate{tag}", result.success_rate, step)
        for task, rate in enumerate(result.task_success_rates if result.task_success_rates is not None else [], 1):
            self.writer.add_scalar(f"eval/success_rate_task{task}{tag}", rate, step)
        for split, mse in expert_mse.items():
            if np.isfinite(mse):
                self.writer.add_scalar(f"mse/{split}_expert{tag}", mse, step)
        if result.frames is not None:  # --capture-video
            evaluation.write_video(result.frames, os.path.join(self.path, "videos", f"step_{step}{tag}.mp4"), result.fps)
            self.add_gif(f"eval/video{tag}", result.frames, result.fps, step)
        if tag:
            self.policy_scores[tag.lstrip("_")] = result.normalized_mean
        else:
            self.scores.append(result.normalized_mean)
            self.eval_steps.append(step)
            self.returns.append(result.mean)
            self.success_rate = result.success_rate
            self.task_success_rates = [] if result.task_success_rates is None else result.task_success_rates.tolist()
            if self._progress is not None:
                self._progress.set_postfix(progress_postfix(result))

    def add_gif(self, tag: str, frames: np.ndarray, fps: float, step: int, max_frames: int = 100, max_side: int = 160) -> None:
        """An episode as an animated GIF in TensorBoard's Images tab, what SummaryWriter.add_video writes, without
        add_video's moviepy (it needs moviepy<2's moviepy.editor, unmaintained since 2020). Every image stays in
        the event file: a smaller copy, at most max_frames frames (every k-th, played k times faster) of at most
        max_side pixels a side."""
        every, stride = -(-len(frames) // max_frames), -(-max(frames.shape[1:3]) // max_side)
        small = np.ascontiguousarray(frames[::every, ::stride, ::stride])
        gif = iio.imwrite("<bytes>", small, extension=".gif", duration=1000 * every / fps, loop=0)
        image = Summary.Image(height=small.shape[1], width=small.shape[2], colorspace=3, encoded_image_string=gif)
        self.writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)

    def result(self) -> RunResult:
        """Close the run; print and return its numbers."""
        updates_per_s = self.updates_per_s()
        if self._envs is not None:
            self._envs.close()
        if self._writer is not None:
            self._writer.close()
        score = self.scores[-1] if self.scores else float("nan")
        said = f"normalized score {score:.1f} (return {self.returns[-1]:.1f})" if self.scores else "no evaluation"
        said += f", success {100 * self.success_rate:.0f}%" if np.isfinite(self.success_rate) else ""
        if self.task_success_rates:  # goal-conditioned (OGBench): success is the score, per evaluation goal and overall
            each = " ".join(f"{100 * rate:.0f}%" for rate in self.task_success_rates)
            said = f"success {100 * self.success_rate:.0f}% (goals 1-{len(self.task_success_rates)}: {each})"
        speed = f", {updates_per_s:.0f} updates/s" if self.step else ""
        print(f"{self.dataset_id} {self.algorithm} seed {self.args.seed}: {said}{speed}, logs in {self.path}")
        return RunResult(score, self.scores, self.returns, updates_per_s, self.path, self.policy_scores, self.success_rate, self.eval_steps,
                         self.task_success_rates)  # fmt: skip


def progress_postfix(result: evaluation.EvalResult) -> dict[str, str]:
    """What the progress bar shows after an evaluation: the normalised score where the dataset has reference scores,
    else the success rate where the env reports one (OGBench), else the return."""
    if np.isfinite(result.normalized_mean):
        return {"score": f"{result.normalized_mean:.1f}"}
    if np.isfinite(result.success_rate):
        return {"success": f"{100 * result.success_rate:.0f}%", "return": f"{result.mean:.0f}"}
    return {"return": f"{result.mean:.1f}"}


def new_run_folder(run_dir: str, name: str) -> str:
    """run_dir/<name>__<time>, created here: two runs started in the same second get -2, -3, ... (never one folder)."""
    base = os.path.join(run_dir, f"{name}__{int(time.time())}")
    for attempt in range(1, 1000):
        path = base if attempt == 1 else f"{base}-{attempt}"
        try:
            os.makedirs(path, exist_ok=False)
        except FileExistsError:
            continue
        except OSError as error:
            raise OSError(
                f"Cannot write the run folder '{path}' ({error.strerror or error}): pass --run-dir a folder you can write to."
            ) from error
        return path
    raise OSError(f"Could not create a new run folder under {run_dir}: remove old runs named {name}.")


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; anything else must be a device torch knows."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise checks.UserError(f"Unknown --device '{name}': use auto, cpu, cuda or cuda:N.") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise checks.UserError(f"--device {name} was asked for but CUDA is not available here: use --device cpu or auto.")
    return device


def cli(args_type: type, recipes: dict[str, dict], argv: list[str] | None = None):
    """The command line of a training script: `script.py [flags]` as ever, or `script.py RECIPE [flags]`, where the
    recipe's flags replace the defaults and the flags after it override them. --help lists the recipes with their
    flags, source and published scores; `script.py RECIPE --help` shows the values the recipe sets."""
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = os.path.basename(sys.argv[0])
    if argv and not argv[0].startswith("-"):
        if argv[0] not in recipes:
            raise SystemExit(f"{argv[0]} is not a recipe of this script: use one of {', '.join(recipes) or '(none)'} "
                             f"before the flags, or flags alone.")  # fmt: skip
        recipe = recipes[argv[0]]
        about = f"Recipe {argv[0]}: {recipe_flags(recipe['flags'])}. Source: {recipe['source']}. Published: {recipe['published']}."
        return tyro.cli(args_type, args=argv[1:], default=replace(args_type(), **recipe["flags"]), prog=f"{prog} {argv[0]}", description=about)
    listing = "".join(f"\n\n{name}: {recipe_flags(r['flags'])} (source: {r['source']}; published: {r['published']})" for name, r in recipes.items())
    return tyro.cli(args_type, args=argv, prog=prog, description=f"Recipes: {prog} RECIPE [flags]{listing}" if recipes else None)


def recipe_flags(flags: dict) -> str:
    """A recipe's flags as typed on a command line: {"expectile": 0.9, "normalize_obs": False} -> --expectile 0.9 --no-normalize-obs."""
    def flag(name, value):
        name = name.replace("_", "-")
        if isinstance(value, bool):
            return f"--{name}" if value else f"--no-{name}"
        return f"--{name} " + (" ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value))
    return " ".join(flag(name, value) for name, value in flags.items())


def check_finite(losses: dict[str, float], step: int, checkpoint_path: str | None = None) -> None:
    """Stop on a NaN/inf loss, naming the loss and the step; the last good checkpoint is left as it was."""
    for name, value in losses.items():
        if not np.isfinite(value):
            kept = f" The last good checkpoint is {checkpoint_path}." if checkpoint_path and os.path.exists(checkpoint_path) else ""
            raise Diverged(
                f"{name} became {value} at step {step}: lower the learning rate or check the data's scale.{kept}"
            )


class Diverged(checks.UserError, FloatingPointError):
    """A loss became NaN or infinite: the run stops, naming it and the step."""


class GracefulInterrupt:
    """While active, Ctrl-C and SIGTERM (what SLURM, Ray and Kubernetes send on preemption) set `.requested`
    instead of stopping the process, so the loop finishes its step, checkpoints and says how to resume. A second
    one stops at once (the loop then saves what it has), except while a checkpoint is written: it is ignored then."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested, self.signal_name, self.saving, self._previous = False, "", False, {}

    def __enter__(self) -> GracefulInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._request) for sig in self.SIGNALS}
        return self

    def _request(self, signum, frame) -> None:
        if self.requested and not self.saving:
            raise KeyboardInterrupt
        self.requested, self.signal_name = True, signal.Signals(signum).name

    @contextlib.contextmanager
    def deferred(self):
        """Signals that arrive inside only set `.requested` (a checkpoint being written is never cut short)."""
        saving, self.saving = self.saving, True
        try:
            yield
        finally:
            self.saving = saving

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
