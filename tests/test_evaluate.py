"""Videos of evaluations (--capture-video) and tools/evaluate.py: a checkpoint's policy rebuilt by its script's
make_policy scores what its run's last evaluation scored on the same episodes; the exported policy runs with torch
alone and acts as the checkpoint's; a push to the Hub and a pull from it (a local folder standing in) round-trip."""

import contextlib
import dataclasses
import glob
import inspect
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import tyro
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import bc
import checkpoints
import data
import dt
import evaluate
import evaluation
import gciql
import iql
import ogbench_data
import ogbench_suite
import onestep_rl
import sfbc
import td3_bc
from test_copies import MODULES, SCRIPTS, imports_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET = "pendulum/medium-v0"  # Pendulum-v1 renders with pygame, no display needed; 200-step episodes
TINY = dict(total_steps=200, batch_size=64, eval_every=100, eval_episodes=3, log_every=100, progress=False)
SIZES = {bc: dict(hidden_dim=32), td3_bc: dict(hidden_dim=32), iql: dict(hidden_dim=32), sfbc: dict(hidden_dim=32, num_samples=(4,)),
         onestep_rl: dict(hidden_dim=32, improvement="easy_bcq"), dt: dict(embed_dim=16, num_layers=1, context_length=4)}  # fmt: skip
TRAINERS = [s for s in SCRIPTS if s not in ("opex", "ttt")]  # the scripts that write checkpoints


@pytest.fixture(scope="module")
def trained(local_dataset, tmp_path_factory):
    """trained(script): a tiny run on DATASET saved with --save-model (two evaluations), once per module."""
    runs = {}

    def train(script):
        if script not in runs:
            run_dir = str(tmp_path_factory.mktemp(script.__name__))
            runs[script] = script.main(script.Args(dataset=local_dataset(DATASET), run_dir=run_dir, save_model=True, **TINY, **SIZES[script]))
        return runs[script]

    return train


def checkpoint_of(result) -> str:
    return os.path.join(result.run_path, "checkpoint.pt")


def test_capture_video_writes_each_evaluations_first_episode_and_changes_no_score(local_dataset, tmp_path):
    args = bc.Args(dataset=local_dataset(DATASET), run_dir=str(tmp_path), **TINY, **SIZES[bc])
    recorded = bc.main(dataclasses.replace(args, capture_video=True))
    assert recorded.scores == bc.main(args).scores  # rendering changes no state: the same episodes, the same scores

    videos = sorted(glob.glob(os.path.join(recorded.run_path, "videos", "*")))
    assert [os.path.basename(v) for v in videos] == ["step_100.mp4", "step_200.mp4"]
    frames = iio.imread(videos[-1], plugin="FFMPEG")
    assert frames.shape == (201, 500, 500, 3)  # the reset state and each of the episode's 200 steps
    moving = [np.abs(frames[i].astype(int) - frames[0]).mean() for i in (50, 100, 150, 200)]
    assert min(moving) > 0.1 and frames.std() > 10, moving  # a pendulum that swings, not a blank or still image

    events = EventAccumulator(recorded.run_path, size_guidance={"images": 0}).Reload()
    images = events.Images("eval/video")
    assert [image.step for image in images] == [100, 200]
    gif = iio.imread(images[-1].encoded_image_string, extension=".gif", index=None)  # animated, as add_video's
    assert len(gif) > 10 and max(gif.shape[1:3]) <= 160 and np.abs(gif[len(gif) // 2].astype(int) - gif[0]).mean() > 0.1


def test_without_imageio_ffmpeg_the_video_is_a_gif(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails, as where it is not installed
    frames = np.random.default_rng(0).integers(0, 255, (5, 8, 10, 3), dtype=np.uint8)
    with pytest.warns(UserWarning, match="pip install imageio-ffmpeg"):
        path = evaluation.write_video(frames, str(tmp_path / "videos" / "step_1.mp4"), fps=30)
    assert path.endswith("step_1.gif") and np.array_equal(iio.imread(path, index=None)[..., :3], frames)


@pytest.mark.parametrize("script", [bc, td3_bc, iql, dt], ids=lambda m: m.__name__)
def test_evaluate_scores_a_checkpoint_as_its_runs_last_evaluation(trained, script):
    result = trained(script)
    evaluated = evaluate.main(evaluate.Args(checkpoint_of(result), episodes=TINY["eval_episodes"]))
    assert len(result.scores) == 2 and evaluated.metadata["step"] == TINY["total_steps"]
    # the run's --seed and --eval-episodes: the same episodes, so the same returns to the last bit
    assert (evaluated.normalized_score, evaluated.mean_return) == (result.scores[-1], result.returns[-1])
    other = evaluate.main(evaluate.Args(checkpoint_of(result), episodes=TINY["eval_episodes"], seed=7))
    assert not np.array_equal(other.result.returns, evaluated.result.returns)  # --seed picks other start states


def test_exported_policies_run_with_torch_alone_and_act_as_their_checkpoints(trained, tmp_path):
    observations = torch.randn(7, 3) * torch.tensor([1.0, 1.0, 4.0])  # a batch size other than the traced one
    expected = {}
    for script in (bc, iql, sfbc, onestep_rl):  # deterministic, and sampling (SfBC, easy BCQ: same seed, same draws)
        path = str(tmp_path / f"{script.__name__}.pt2")
        evaluated = evaluate.main(evaluate.Args(checkpoint_of(trained(script)), episodes=0, export=path))
        assert evaluated.export_path == path
        state = checkpoints.read_checkpoint(checkpoint_of(trained(script)))
        args = checkpoints.saved_args(script.Args(), state)
        policy = script.make_policy(args, data.load_dataset(DATASET), state, torch.device("cpu"))
        torch.manual_seed(0)
        expected[path] = policy(observations)
    torch.save(observations, tmp_path / "observations.pt")
    program = f"""
import sys, torch
observations = torch.load("observations.pt")
for path in {sorted(expected)!r}:
    policy = torch.export.load(path).module()
    torch.manual_seed(0)
    torch.save(policy(observations), path + ".actions")
    assert policy(observations[:1]).shape == (1, 1)
ours = [m for m in ("data", "evaluation", "training", "checkpoints", "bc", "iql", "sfbc", "onestep_rl") if m in sys.modules]
assert not ours, ours
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    for path, actions in expected.items():
        assert torch.equal(torch.load(path + ".actions"), actions), path
    assert not torch.equal(expected[str(tmp_path / "bc.pt2")], expected[str(tmp_path / "iql.pt2")])


def test_a_goal_conditioned_policy_is_scored_on_each_evaluation_goal_and_exported_with_its_goals(tmp_path):
    """A GC-IQL checkpoint: the run's last evaluation again, goal by goal (OGBench's protocol); the exported program takes
    (observations, goals), acts as the checkpoint's policy and scores the same."""
    dataset = "ogbench/pointmaze-medium-navigate-v0"
    ogbench_suite.generate(dataset.split("/")[1], ogbench_data.directory(), 3, 101, seed=0, progress=False)
    result = gciql.main(gciql.Args(dataset=dataset, run_dir=str(tmp_path), save_model=True, total_steps=40, batch_size=32, hidden_dim=32,
                                   hidden_layers=2, eval_every=40, eval_episodes=2, log_every=20, progress=False))  # fmt: skip
    path = str(tmp_path / "gciql.pt2")
    evaluated = evaluate.main(evaluate.Args(checkpoint_of(result), episodes=2, export=path))
    assert evaluated.result.task_success_rates.tolist() == result.task_success_rates and len(result.task_success_rates) == 5
    assert evaluated.mean_return == result.returns[-1] and evaluated.metadata["goal_conditioned"]
    state = checkpoints.read_checkpoint(checkpoint_of(result))
    policy = gciql.make_policy(checkpoints.saved_args(gciql.Args(), state), data.load_dataset(dataset), state, torch.device("cpu"))
    observations, goals = torch.randn(5, 2) * 5, torch.randn(5, 2) * 5  # pointmaze: (x, y)
    assert torch.equal(torch.export.load(path).module()(observations, goals), policy(observations, goals))
    exported = evaluate.main(evaluate.Args(path, episodes=2))
    assert exported.result.task_success_rates.tolist() == result.task_success_rates


def test_an_exported_policy_scores_as_its_checkpoint(trained, tmp_path):
    result = trained(bc)
    path = str(tmp_path / "policy.pt2")
    evaluate.main(evaluate.Args(checkpoint_of(result), episodes=0, export=path))
    evaluated = evaluate.main(evaluate.Args(path, episodes=TINY["eval_episodes"]))
    assert evaluated.normalized_score == result.scores[-1] and evaluated.metadata["algorithm"] == "bc"


def test_a_decision_transformer_is_not_exported_and_says_why(trained, tmp_path):
    with pytest.raises(ValueError, match="history of returns, states and actions"):
        evaluate.main(evaluate.Args(checkpoint_of(trained(dt)), episodes=0, export=str(tmp_path / "dt.pt2")))


@pytest.fixture
def local_hub(tmp_path, monkeypatch):
    """huggingface_hub's HfApi and snapshot_download, standing in with a local folder: no network."""
    import huggingface_hub

    hub = tmp_path / "hub"

    class LocalApi:
        def create_repo(self, repo_id, exist_ok=False):
            (hub / repo_id).mkdir(parents=True, exist_ok=exist_ok)

        def upload_folder(self, repo_id, folder_path, commit_message):
            shutil.copytree(folder_path, hub / repo_id, dirs_exist_ok=True)

    def snapshot_download(repo_id, local_dir):
        shutil.copytree(hub / repo_id, local_dir)
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "HfApi", LocalApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return hub


def test_push_to_hub_and_evaluate_from_it(trained, local_hub, tmp_path):
    for script, repo in ((bc, "someone/bc-pendulum"), (dt, "someone/dt-pendulum")):
        result = trained(script)
        pushed = evaluate.main(evaluate.Args(checkpoint_of(result), episodes=TINY["eval_episodes"], capture_video=True,
                                             video_dir=str(tmp_path / "videos"), push_to_hub=repo))  # fmt: skip
        files = set(os.listdir(local_hub / repo))
        shared = {"checkpoint.pt", "scores.json", "README.md", "video.mp4"}
        assert files == (shared | {"policy.pt2"} if script is bc else shared)  # DT: its checkpoint, no export
        assert json.loads((local_hub / repo / "scores.json").read_text())["normalized_score"] == result.scores[-1]
        assert f"{script.__name__} on {DATASET}" in (local_hub / repo / "README.md").read_text()

        pulled = evaluate.main(evaluate.Args(repo, from_hub=True, download_dir=str(tmp_path / "downloads"), episodes=TINY["eval_episodes"]))
        assert pulled.normalized_score == pushed.normalized_score == result.scores[-1]
        assert os.path.exists(tmp_path / "downloads" / repo.replace("/", "__") / ("policy.pt2" if script is bc else "checkpoint.pt"))


def test_every_script_has_the_same_capture_video_flag_and_make_policy_preamble():
    flags, preamble = set(), inspect.getsource(bc.make_policy).splitlines()[:7]  # signature, docstring, data
    load = inspect.getsource(bc.make_policy).split("\n    for name, network")[1].split("\n    return")[0]
    for script in SCRIPTS:
        module = __import__(script)
        lines = inspect.getsource(module.Args).splitlines()
        at = next(i for i, line in enumerate(lines) if line.strip().startswith("capture_video:"))
        flags.add("\n".join(lines[at : at + 2]))
        if script in TRAINERS:
            source = inspect.getsource(module.make_policy)
            assert source.splitlines()[:7] == preamble and load in source, script
    assert len(flags) == 1, flags  # one --capture-video text, everywhere


def test_no_module_of_algorithms_imports_the_tools():
    tools = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "tools", "*.py"))}
    assert "evaluate" in tools
    for module in MODULES:
        assert not imports_of(module) & tools, f"{module} imports {imports_of(module) & tools}"


def test_cli_evaluates_a_checkpoint(trained):
    result = trained(bc)
    run = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "evaluate.py"), checkpoint_of(result), "--episodes", "3"],
                         capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"pendulum/medium-v0 bc step 200, 3 episodes from env seed 1000: normalized score {result.scores[-1]:.1f}" in run.stdout


def test_readmes_evaluate_commands_parse():
    readme = open(os.path.join(ROOT, "README.md")).read()
    commands = re.findall(r"python tools/evaluate\.py([^`\n#]*)", readme)
    assert len(commands) >= 4
    for arguments in commands:
        with contextlib.redirect_stderr(io.StringIO()) as error:
            try:
                tyro.cli(evaluate.Args, args=shlex.split(arguments))
            except SystemExit:
                pytest.fail(f"python tools/evaluate.py{arguments}: {error.getvalue()[-500:]}")
