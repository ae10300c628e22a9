"""Evaluate, record and share a trained policy.

    python tools/evaluate.py runs/<run>/checkpoint.pt --episodes 50 --capture-video
    python tools/evaluate.py runs/<run>/checkpoint.pt --export policy.pt2     # the policy alone, for torch only
    python tools/evaluate.py runs/<run>/checkpoint.pt --push-to-hub <user>/<name>
    python tools/evaluate.py <user>/<name> --from-hub --episodes 50

A checkpoint names its algorithm: the policy is rebuilt by that script's own make_policy() (the policy whose score
main() reports) and evaluated as the run's evaluations are: in the dataset's eval env, one episode per env of a vector
env, env i from seed evaluation.first_seed(--seed) + i. With the run's --seed (the default) and --episodes equal to its
--eval-episodes, these are the episodes of the run's evaluations: the score is that of the run's last one.

An exported policy (.pt2) is a torch.export program: `torch.export.load(path).module()(observations)` maps a batch
of flat float32 observations to actions with torch alone, its settings and the dataset in the archive's extra file
cleanoffrl.json. This file imports the algorithm scripts; they never import it (tests/test_copies.py).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from typing import Annotated, Callable

import minari
import numpy as np
import torch
import tyro

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "algorithms"))
import checkpoints  # noqa: E402 - the shared modules of algorithms/, found through the path above
import data  # noqa: E402
import evaluation  # noqa: E402
import training  # noqa: E402

METADATA = "cleanoffrl.json"  # the exported program's extra file: what it was trained on, and how to evaluate it
MAX_BATCH = 1024  # the exported program takes 1 to MAX_BATCH observations per call (SfBC's sampling bounds it)


@dataclass
class Args:
    policy: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="POLICY")]
    """a run's checkpoint.pt, a policy.pt2 written by --export, or with --from-hub a Hugging Face Hub repo id (user/name)"""
    episodes: int = 10
    """episodes, run in parallel in a vector env (0 = none: only --export / --push-to-hub)"""
    seed: int | None = None
    """env i starts from seed evaluation.first_seed(seed) + i (default: the run's --seed, whose evaluations used the same episodes)"""
    capture_video: bool = False
    """record the first episode as <video-dir>/<algorithm>_step<N>.mp4 (MuJoCo without a display: MUJOCO_GL=egl, or MUJOCO_GL=osmesa with Debian's libosmesa6)"""
    video_dir: str | None = None
    """where --capture-video writes (default: videos/ beside the policy file)"""
    export: str | None = None
    """write the policy alone to this .pt2 file (torch.export): it runs with torch only, without this repository"""
    push_to_hub: str | None = None
    """upload the exported policy, the checkpoint, the scores, a model card and the video to this Hub repo (user/name; log in first: `hf auth login`)"""
    from_hub: bool = False
    """POLICY is a Hub repo id: download it into --download-dir and evaluate its policy.pt2 (or its checkpoint.pt)"""
    download_dir: str = "hub"
    """--from-hub downloads the repo into download_dir/<user>__<name>/"""
    device: str = "auto"
    """auto (CUDA when present), cpu, cuda or cuda:N, for a checkpoint's policy (an exported one runs on the CPU)"""
    threads: int = 1
    """torch CPU threads"""


@dataclass
class Evaluated:
    """What main() returns: the scores, the files written, and what was evaluated."""

    normalized_score: float  # mean normalised score of the episodes (NaN: none, or no reference scores)
    mean_return: float
    success_rate: float  # NaN where the env reports no success
    result: evaluation.EvalResult | None  # every episode (None with --episodes 0)
    metadata: dict  # algorithm, dataset, step, seed, eval_episodes, args of the training run
    video_path: str | None = None
    export_path: str | None = None


class ExportedPolicy(torch.nn.Module):
    """A policy callable as one module, for torch.export: its networks' weights become constants of the program."""

    def __init__(self, policy: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.policy = policy

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:  # observations; a goal-conditioned policy's goals too
        return self.policy(*inputs)


def load_policy(path: str, device: torch.device) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict, minari.MinariDataset]:
    """(policy, metadata, dataset) of a checkpoint.pt (through its script's make_policy) or of an exported .pt2."""
    if path.endswith(".pt2"):
        extra = {METADATA: ""}
        program = torch.export.load(path, extra_files=extra)
        metadata = json.loads(extra[METADATA])
        return program.module(), metadata, data.load_dataset(metadata["dataset"])
    state = checkpoints.read_checkpoint(path, device)
    script = importlib.import_module(state["algorithm"])
    if not hasattr(script, "make_policy"):
        raise ValueError(f"{path} was written by {state['algorithm']}.py, which has no make_policy(): evaluate it with that script.")
    args = checkpoints.saved_args(script.Args(), state)
    dataset = data.load_dataset(args.dataset)
    metadata = {"algorithm": state["algorithm"], "dataset": args.dataset, "step": state["step"], "seed": args.seed,
                "eval_episodes": args.eval_episodes, "args": state["args"], "goal_conditioned": goal_conditioned(args.dataset)}  # fmt: skip
    return script.make_policy(args, dataset, state, device), metadata, dataset


def goal_conditioned(dataset_id: str) -> bool:
    """OGBench's goal-conditioned ids (no `singletask`): their policies act as policy(observations, goals) and are
    scored on the env's evaluation goals (evaluation.evaluate(goal_conditioned=True)), as the goal-conditioned
    scripts' runs are."""
    return dataset_id.startswith("ogbench/") and "singletask" not in dataset_id


def export(policy: Callable, metadata: dict, example: torch.Tensor, path: str) -> str:
    """The policy as a torch.export program at `path`, for 1 to MAX_BATCH observations a call (and as many goals,
    each a whole observation, for a goal-conditioned policy), metadata inside."""
    if hasattr(policy, "on_reward"):  # dt.ContextPolicy
        raise ValueError(f"{metadata['algorithm']}'s policy acts on its history of returns, states and actions, not on the "
                         "state alone: --export covers state-only policies; share its checkpoint.pt (--push-to-hub) instead.")  # fmt: skip
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    # goals are observations (OGBench); a copy, as one tensor given twice would be traced as one input
    inputs = (example, example.clone()) if metadata.get("goal_conditioned") else (example,)
    program = torch.export.export(ExportedPolicy(policy), inputs, dynamic_shapes={"inputs": tuple({0: batch} for _ in inputs)})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.export.save(program, path, extra_files={METADATA: json.dumps(metadata)})
    return path


def pull_from_hub(repo_id: str, download_dir: str) -> str:
    """Download a Hub repo written by --push-to-hub; the path of its policy.pt2, or of its checkpoint.pt."""
    from huggingface_hub import snapshot_download

    folder = snapshot_download(repo_id, local_dir=os.path.join(download_dir, repo_id.replace("/", "__")))
    for name in ("policy.pt2", "checkpoint.pt"):
        if os.path.exists(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise FileNotFoundError(f"The Hub repo {repo_id} has neither policy.pt2 nor checkpoint.pt: push one with --push-to-hub.")


def push_to_hub(repo_id: str, evaluated: Evaluated, path: str, policy: Callable, dataset) -> str:
    """Upload the exported policy (exported here if it was not, and where it exports), the checkpoint (if `path` is
    one), scores.json, a model card and the video: the repo another user evaluates with --from-hub."""
    from huggingface_hub import HfApi

    with tempfile.TemporaryDirectory() as folder:
        exported = evaluated.export_path or (path if path.endswith(".pt2") else None)
        if exported:
            shutil.copy(exported, os.path.join(folder, "policy.pt2"))
        elif not hasattr(policy, "on_reward"):  # a state-only policy: export it (a Decision Transformer shares its checkpoint)
            export(policy, evaluated.metadata, example_observations(dataset), os.path.join(folder, "policy.pt2"))
        if not path.endswith(".pt2"):
            shutil.copy(path, os.path.join(folder, "checkpoint.pt"))
        if evaluated.video_path:
            shutil.copy(evaluated.video_path, os.path.join(folder, "video" + os.path.splitext(evaluated.video_path)[1]))
        with open(os.path.join(folder, "scores.json"), "w") as f:
            json.dump(scores(evaluated), f, indent=1)
        with open(os.path.join(folder, "README.md"), "w") as f:
            f.write(model_card(repo_id, evaluated, os.listdir(folder)))
        api = HfApi()
        api.create_repo(repo_id, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=f"{evaluated.metadata['algorithm']} on {evaluated.metadata['dataset']}")
    return f"https://huggingface.co/{repo_id}"


def example_observations(dataset) -> torch.Tensor:
    """Two flat observations of the eval env, on the CPU: what export() traces the policy with (two, as a batch
    of one would make torch.export fix the batch size to 1)."""
    envs = evaluation.make_eval_envs(dataset, 2)
    observations = torch.as_tensor(data.flatten_observation(envs.reset(seed=0)[0]))
    envs.close()
    return observations


def scores(evaluated: Evaluated) -> dict:
    result = evaluated.result
    return {"normalized_score": evaluated.normalized_score, "return": evaluated.mean_return, "success_rate": evaluated.success_rate,
            "episodes": 0 if result is None else len(result.returns), "seed": evaluated.metadata["seed"],
            "episode_returns": [] if result is None else result.returns.tolist()}  # fmt: skip


def model_card(repo_id: str, evaluated: Evaluated, files: list[str]) -> str:
    m, s = evaluated.metadata, scores(evaluated)
    usage = ("```python\nimport torch\n\npolicy = torch.export.load('policy.pt2').module()\n"
             + ("actions = policy(observations, goals)  # goal-conditioned: (batch, obs_dim) twice -> (batch, act_dim)\n```\n"
                if m.get("goal_conditioned") else
                "actions = policy(torch.as_tensor(observations, dtype=torch.float32))  # (batch, obs_dim) -> (batch, act_dim)\n```\n")
             + "Dict observations are flattened as cleanoffrl's `data.flatten_observation` does: observation, achieved_goal, "
             "desired_goal, then any other keys sorted, concatenated.\n") if "policy.pt2" in files else ""  # fmt: skip
    return (f"---\ntags: [reinforcement-learning, offline-reinforcement-learning, cleanoffrl]\n---\n\n"
            f"# {m['algorithm']} on {m['dataset']}\n\nTrained by cleanoffrl's `algorithms/{m['algorithm']}.py` for {m['step']} "
            f"updates (seed {m['seed']}). Normalised score {s['normalized_score']:.1f}, return {s['return']:.1f}"
            + (f", success rate {s['success_rate']:.2f}" if np.isfinite(s["success_rate"]) else "")
            + f" over {s['episodes']} episodes (scores.json).\n\n{usage}\nWith cleanoffrl: "
            f"`python tools/evaluate.py {repo_id} --from-hub --episodes 50 --capture-video`.\n\n"
            f"Training settings:\n\n```json\n{json.dumps(m['args'], indent=1)}\n```\n")  # fmt: skip


def main(args: Args) -> Evaluated:
    if args.episodes < 0 or (args.episodes == 0 and args.capture_video):
        raise ValueError(f"--episodes must be 0 or more (at least 1 with --capture-video), got {args.episodes}.")
    torch.set_num_threads(args.threads)
    path = pull_from_hub(args.policy, args.download_dir) if args.from_hub else args.policy
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No policy at '{path}': pass a run's checkpoint.pt, a policy.pt2, or a Hub repo id with --from-hub.")
    device = torch.device("cpu") if path.endswith(".pt2") else training.resolve_device(args.device)  # exported: for the CPU
    policy, metadata, dataset = load_policy(path, device)
    seed = metadata["seed"] if args.seed is None else args.seed
    evaluated = Evaluated(float("nan"), float("nan"), float("nan"), None, metadata)

    if args.episodes:
        envs = evaluation.make_eval_envs(dataset, args.episodes, args.capture_video)
        first = evaluation.first_seed(seed)
        result = evaluation.evaluate(policy, envs, dataset, seed=first, device=device, on_reward=getattr(policy, "on_reward", None),
                                     goal_conditioned=metadata.get("goal_conditioned", False))  # fmt: skip
        envs.close()
        evaluated = dataclasses.replace(evaluated, normalized_score=result.normalized_mean, mean_return=result.mean,
                                        success_rate=result.success_rate, result=result)  # fmt: skip
        spread = f" ± {result.normalized.std(ddof=1):.1f} (sample std over episodes)" if args.episodes > 1 else ""
        success = f", success {100 * result.success_rate:.0f}%" if np.isfinite(result.success_rate) else ""
        if result.task_success_rates is not None:  # OGBench's protocol: --episodes episodes for each evaluation goal
            success += f" (goals 1-{len(result.task_success_rates)}: " + " ".join(f"{100 * r:.0f}%" for r in result.task_success_rates) + ")"
        per_goal = " per evaluation goal" if result.task_success_rates is not None else ""
        print(f"{metadata['dataset']} {metadata['algorithm']} step {metadata['step']}, {args.episodes} episodes{per_goal} from env seed "
              f"{first}: normalized score {result.normalized_mean:.1f}{spread} (return {result.mean:.1f}){success}")  # fmt: skip
        if result.frames is not None:
            video_dir = args.video_dir or os.path.join(os.path.dirname(os.path.abspath(path)), "videos")
            video = os.path.join(video_dir, f"{metadata['algorithm']}_step{metadata['step']}.mp4")
            evaluated.video_path = evaluation.write_video(result.frames, video, result.fps)
            print(f"video of the first episode: {evaluated.video_path}")

    if args.export or args.push_to_hub:  # exported from the CPU: the program then runs on any machine's CPU
        policy = policy if device.type == "cpu" else load_policy(path, torch.device("cpu"))[0]
    if args.export:
        evaluated.export_path = export(policy, metadata, example_observations(dataset), args.export)
        print(f"exported the policy to {evaluated.export_path}: torch.export.load(path).module()(observations)")
    if args.push_to_hub:
        print(f"pushed to {push_to_hub(args.push_to_hub, evaluated, path, policy, dataset)}")
    return evaluated


if __name__ == "__main__":
    main(tyro.cli(Args))
