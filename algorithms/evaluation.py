"""Evaluation: how well a policy does in the dataset's environment.

Lives here: the dataset's evaluation env, N episodes in a vector env with one batched policy call per step,
the seeds of those episodes, the frames of the first one (--capture-video) and the video file they make, the D4RL
normalised score, the success rate of goal tasks, OGBench's goal-conditioned protocol (each of the env's evaluation
goals, `reset(options=dict(task_id=k))`, the policy given info["goal"], success at the end of the episode; per goal
and overall), and the action MSE against the local suite's scripted expert (the
training / validation / evaluation MSE of Park et al. 2024).
Lives elsewhere: loading the data (data.py), logging the results of an evaluation during training, the video in
TensorBoard included (training.Run.evaluate / record), and the online phase's env (finetuning.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import os
import warnings

import gymnasium as gym
import imageio.v3 as iio
import minari
import numpy as np
import torch

import data


@dataclass
class EvalResult:
    returns: np.ndarray  # raw undiscounted return per episode
    lengths: np.ndarray
    normalized: np.ndarray  # 100 * (return - ref_min) / (ref_max - ref_min); NaN without references
    observations: np.ndarray  # flat observations the policy visited (for evaluation MSE)
    successes: np.ndarray | None = None  # per episode: the env's info["success"] was ever true (goal tasks); None: no such info
    frames: np.ndarray | None = None  # the first episode as rendered, (T, H, W, 3) uint8; None: not recorded
    fps: float = 30.0  # the env's render_fps: the frame rate of the video the frames make
    task_success_rates: np.ndarray | None = None  # goal-conditioned: the success rate of each evaluation goal (task 1 first)

    @property
    def mean(self) -> float:
        return float(self.returns.mean())

    @property
    def normalized_mean(self) -> float:
        return float(self.normalized.mean())

    @property
    def success_rate(self) -> float:
        """The fraction of episodes that reached the goal (mazes, Adroit); NaN where the env reports no success."""
        return float(self.successes.mean()) if self.successes is not None else float("nan")


def make_env(dataset: minari.MinariDataset, render_mode: str | None = None) -> gym.Env:
    """The dataset's evaluation env (its eval_env_spec where it has one): what the policy is scored in."""
    if render_mode == "rgb_array":  # pygame (classic control) draws off-screen: no display needed, nor its warning
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    if data.is_local(dataset.id):
        return data.local_builder(dataset.id).make_env(dataset.id, render_mode=render_mode)
    try:
        return dataset.recover_environment(eval_env=True, render_mode=render_mode)
    except Exception as error:  # noqa: BLE001 - no env recorded (env=None), a missing package, ...: one sentence
        raise data.DatasetError(
            f"Dataset '{dataset.id}' has no evaluation env that can be built here ({type(error).__name__}: {error}): pass "
            "--eval-episodes 0 to train without evaluating (fine-tuning needs the env), or install what the env needs."
        ) from error


def make_eval_envs(dataset: minari.MinariDataset, num_envs: int, capture_video: bool = False) -> gym.vector.VectorEnv:
    """num_envs copies of the dataset's evaluation env, stepped in lockstep; with capture_video the first one renders
    frames (rgb_array), which run_episodes() keeps for its first episode. Rendering changes no state: the same
    seeds give the same episodes with or without video."""
    render_modes = ["rgb_array" if capture_video and i == 0 else None for i in range(num_envs)]
    return gym.vector.SyncVectorEnv([lambda mode=mode: make_env(dataset, mode) for mode in render_modes])


def first_seed(seed: int, round: int = 0, episodes_per_round: int = 0) -> int:
    """Env i of the vector env starts from seed first_seed(--seed) + i: disjoint across --seed (up to 100k episodes
    each), so that "± std over seeds" counts different start states, not the same ones again."""
    return 1_000 + 100_000 * seed + round * episodes_per_round


def run_episodes(policy, envs, seed, to_numpy=False, device="cpu", on_reward=None, frames=None, options=None):
    """One episode per env. Returns (returns, lengths, visited flat observations, successes or None); a list passed
    as frames receives env 0's rendered frames of its first episode (make_eval_envs(capture_video=True)).
    With options (OGBench's dict(task_id=k)) the episode has a goal, the reset's info["goal"]: the policy is called
    as policy(observations, goals), and an episode succeeds if the env says so at its last step (OGBench's count)."""
    observation, reset_info = envs.reset(seed=seed, options=options)
    goal = data.flatten_observation(reset_info["goal"]) if options is not None else None
    num_envs = envs.num_envs
    returns, lengths = np.zeros(num_envs), np.zeros(num_envs, dtype=np.int64)
    alive, visited, successes = np.ones(num_envs, bool), [], None
    recorded = envs.unwrapped.envs[0] if frames is not None else None
    if recorded:
        try:
            frames.append(recorded.render())
        except Exception as error:  # noqa: BLE001 - MuJoCo and pygame fail in many ways without a display
            raise RuntimeError(
                f"--capture-video could not render {recorded.spec.id if recorded.spec else 'the env'} ({type(error).__name__}: "
                f"{error}): without a display, set MUJOCO_GL=egl, or MUJOCO_GL=osmesa after `apt-get install libosmesa6`."
            ) from error
    while alive.any():
        flat = data.flatten_observation(observation)
        visited.append(flat[alive])
        inputs = (flat,) if goal is None else (flat, goal)
        if to_numpy:
            action = np.asarray(policy(*inputs))
        else:
            with torch.no_grad():
                action = policy(*(torch.as_tensor(x, device=device) for x in inputs)).cpu().numpy()
        observation, reward, terminated, truncated, info = envs.step(action)
        returns += reward * alive
        lengths += alive
        if "success" in info:  # the goal envs say when the goal is reached
            success, successes = np.asarray(info["success"], bool), np.zeros(num_envs, bool) if successes is None else successes
            if goal is None:  # an episode succeeds if the goal is ever reached (D4RL mazes, Adroit)
                successes |= success & alive
            else:  # OGBench: whether it is reached at the episode's last step
                ending = alive & (terminated | truncated)
                successes[ending] = success[ending]
        if on_reward is not None:
            on_reward(reward)
        if recorded and alive[0]:  # the state the step led to, the last one included (the auto-reset comes a step later)
            frames.append(recorded.render())
        alive &= ~(terminated | truncated)
    return returns, lengths, np.concatenate(visited), successes


def evaluate(
    policy: Callable[[torch.Tensor], torch.Tensor], envs: gym.vector.VectorEnv, dataset: minari.MinariDataset,
    seed: int = 0, device: torch.device | str = "cpu", on_reward: Callable[[np.ndarray], None] | None = None,
    goal_conditioned: bool = False,
) -> EvalResult:  # fmt: skip
    """Run one episode in each of the vector env's copies with a batched policy.

    policy maps raw flat observations (num_envs, obs_dim) on `device` to actions; it does its own
    normalisation. on_reward (optional) sees each step's rewards, e.g. for a Decision Transformer's
    return-to-go. The vector env must not autoreset into a new episode that we count: we stop each
    copy at its first termination or truncation.
    goal_conditioned: OGBench's protocol: one episode per env for each of the env's evaluation goals (its
    task_infos, task_id 1 to 5), the policy called as policy(observations, goals); the result holds every episode,
    and the success rate of each goal (task_success_rates). The frames are those of the first goal's first episode.
    """
    first = envs.unwrapped.envs[0]
    frames = [] if first.render_mode == "rgb_array" else None  # make_eval_envs(capture_video=True): record env 0
    if goal_conditioned:
        tasks = goal_tasks(first)
        # each goal's episodes start from their own seeds: seed, seed + num_envs, ... (within first_seed's 100k)
        runs = [run_episodes(policy, envs, seed + k * envs.num_envs, device=device, frames=frames if k == 0 else None,
                             options=dict(task_id=k + 1)) for k in range(tasks)]  # fmt: skip
        returns, lengths, visited, successes = (np.concatenate(parts) for parts in zip(*runs))
        task_success_rates = np.array([run[3].mean() for run in runs])
    else:
        returns, lengths, visited, successes = run_episodes(policy, envs, seed, device=device, on_reward=on_reward, frames=frames)
        task_success_rates = None
    video = np.stack(frames) if frames else None
    fps = first.metadata.get("render_fps") or 30
    return EvalResult(returns, lengths, normalized_score(dataset, returns), visited, successes, video, fps, task_success_rates)


def goal_tasks(env: gym.Env) -> int:
    """The number of evaluation goals of an OGBench goal-conditioned env (its task_infos), or one sentence on why not."""
    tasks = getattr(env.unwrapped, "task_infos", None)
    if not tasks or getattr(env.unwrapped, "_reward_task_id", None) is not None:
        raise data.DatasetError(
            f"{env.spec.id if env.spec else 'This env'} has no evaluation goals (task_infos) to reach: the goal-conditioned "
            "scripts evaluate on OGBench's goal-conditioned envs, e.g. --dataset ogbench/pointmaze-medium-navigate-v0 "
            "(a singletask id trains with the reward-based scripts)."
        )
    return len(tasks)


def write_video(frames: np.ndarray, path: str, fps: float) -> str:
    """frames (T, H, W, 3) uint8 as an H.264 mp4 at `path` (imageio-ffmpeg); as a GIF beside it where imageio-ffmpeg
    is not installed. Returns the path written."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        import imageio_ffmpeg  # noqa: F401 - the ffmpeg binary imageio writes mp4 with
    except ImportError:
        path = os.path.splitext(path)[0] + ".gif"
        warnings.warn(f"imageio-ffmpeg is not installed, so the video is a GIF ({path}): pip install imageio-ffmpeg for mp4.")
        iio.imwrite(path, frames, extension=".gif", duration=1000 / fps, loop=0)
        return path
    # macro_block_size 2: H.264's yuv420p needs even sides; imageio's default 16 would resize most renders
    iio.imwrite(path, frames, extension=".mp4", plugin="FFMPEG", fps=fps, macro_block_size=2)
    return path



def normalized_score(dataset: minari.MinariDataset, returns: np.ndarray) -> np.ndarray:
    """100 * (return - ref_min_score) / (ref_max_score - ref_min_score), as D4RL reports it."""
    metadata = dataset.storage.metadata
    if metadata.get("ref_min_score") is None or metadata.get("ref_max_score") is None:
        return np.full(np.shape(returns), np.nan)
    return 100.0 * minari.get_normalized_score(dataset, np.asarray(returns))


def expert_action_mse(policy: Callable, dataset_id: str, observations, device="cpu") -> float:
    """Mean squared error between policy(s) and the scripted expert's action on raw flat states s.

    NaN where the dataset has no scripted expert (remote ids). policy as in evaluate().
    """
    if not data.is_local(dataset_id):
        return float("nan")
    expert = data.local_builder(dataset_id).scripted_expert(dataset_id)
    if expert is None or len(observations) == 0:
        return float("nan")
    if torch.is_tensor(observations):
        observations = observations.detach().cpu().numpy()
    with torch.no_grad():
        actions = policy(torch.as_tensor(observations, dtype=torch.float32, device=device)).cpu().numpy()
    return float(np.mean((actions - expert(np.asarray(observations))) ** 2))



def validation_mse(policy: Callable, valid: data.Transitions) -> dict[str, torch.Tensor]:
    """valid/action_mse of policy on the held-out episodes (none with --validation-fraction 0, the default)."""
    if len(valid) == 0:
        return {}
    with torch.no_grad():
        return {"valid/action_mse": ((policy(valid.observations) - valid.actions) ** 2).mean()}
