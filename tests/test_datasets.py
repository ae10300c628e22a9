"""Every script on a stand-in of each D4RL family, under the real remote ids (tests/standins.py).

The real datasets need a network; the stand-ins have their structure (env spec and kwargs, eval env spec,
Box / Dict / nested-Dict observations, action boxes, reference scores), so a family that would break, or
silently train on the wrong inputs, breaks here: each script trains a few updates on each and evaluates one
episode in the env the dataset names, and the checkpoint's normaliser must have the family's width.
"""

import importlib
import math
import os
import re

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import data
import checkpoints
import evaluation
from standins import STANDINS, build_standin
from test_resume import TINY

SCRIPTS = ["bc", *TINY]
REPORTS_SUCCESS = ("D4RL/pointmaze/umaze-v2", "D4RL/antmaze/umaze-v1", "D4RL/pen/human-v2")  # info["success"]
TEST_TIME = {"opex": dict(betas=(0.1,)), "ttt": dict(ttt_steps=1, ttt_batch_size=8)}  # on a ddpg_bc.py checkpoint
METRICS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "metrics.md")


def vocabulary() -> set[str]:
    """The metric names docs/metrics.md's table lists."""
    text = open(METRICS).read()
    table = text[text.index("# Metric names"):].split("\n\n")[2]
    return {name for row in table.splitlines()[2:] for name in re.findall(r"`([a-z_]+/[a-z_]+(?:<k>)?)`", row.split("|")[1])}


def assert_tags_in_vocabulary(run_path: str) -> list[float]:
    """Every scalar the run wrote is a docs/metrics.md name (eval/ and mse/ with a policy tag); returns the eval returns."""
    events = EventAccumulator(run_path).Reload()
    tags, names = events.Tags()["scalars"], vocabulary()
    for tag in tags:
        untagged = re.sub(r"_(n\d+|beta[0-9.e-]+|ttt|target_[0-9.e+-]+)$", "", tag) if tag.startswith(("eval/", "mse/")) else tag
        untagged = re.sub(r"_task\d+", "_task<k>", untagged)  # one name for each evaluation goal k (OGBench's protocol)
        assert untagged in names, f"{tag} is not in docs/metrics.md's metric names"
    return [e.value for tag in tags if tag.startswith("eval/return") for e in events.Scalars(tag)]
TINY_RUN = dict(total_steps=6, batch_size=16, eval_every=6, eval_episodes=1, log_every=3, progress=False, save_model=True)
# what the network must see; D4RL's own observation (where it differs) in the comment
WIDTHS = {
    "mujoco/hopper/medium-v0": 11,  # Box(11), as D4RL's hopper
    "D4RL/pointmaze/umaze-v2": 8,  # x, y, vx, vy ++ achieved x, y ++ goal x, y (D4RL maze2d: 4, goal fixed)
    "D4RL/antmaze/umaze-v1": 31,  # 27 (torso z, quaternion, joints, velocities) ++ x, y ++ goal (D4RL: 29, no goal)
    "D4RL/pen/human-v2": 45,  # Box(45), as D4RL's pen
    "D4RL/kitchen/complete-v2": 81,  # 59 robot + objects ++ 11 achieved ++ 11 goal values of the 4 tasks (D4RL: 60)
}


@pytest.fixture(scope="session")
def standin(minari_root):
    built = set()

    def build(dataset_id: str) -> str:
        if dataset_id not in built:
            build_standin(dataset_id, num_episodes=4, episode_length=40)
            built.add(dataset_id)
        return dataset_id

    return build


@pytest.mark.parametrize("dataset_id", list(WIDTHS))
def test_each_family_flattens_to_its_documented_width(dataset_id, standin):
    dataset = data.load_dataset(standin(dataset_id))
    t = data.to_transitions(dataset)
    assert t.observations.shape == (4 * 40, WIDTHS[dataset_id]) == (4 * 40, STANDINS[dataset_id]["flat_obs_dim"])
    assert t.actions.shape[1] == STANDINS[dataset_id]["action_dim"] and t.actions.dtype == torch.float32
    envs = evaluation.make_eval_envs(dataset, 2)  # the eval env spec where the dataset has one
    observation, _ = envs.reset(seed=0)
    assert data.flatten_observation(observation).shape == (2, WIDTHS[dataset_id])  # the env gives what the data gave
    envs.close()
    if dataset_id == "D4RL/antmaze/umaze-v1":  # achieved_goal is the ant's x, y: it must reach the network
        episode = next(dataset.iterate_episodes())
        assert torch.equal(t.observations[:40, 27:29], torch.as_tensor(episode.observations["achieved_goal"][:-1], dtype=torch.float32))


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("dataset_id", list(WIDTHS))
def test_every_script_trains_and_evaluates_on_every_family(dataset_id, script, standin, run_dir):
    module = importlib.import_module(script)
    validation = {"validation_fraction": 0.25} if dataset_id == "D4RL/pen/human-v2" else {}  # valid/* names too
    result = module.main(module.Args(dataset=standin(dataset_id), run_dir=run_dir, **TINY_RUN, **validation, **TINY.get(script, {})))
    state = checkpoints.load_checkpoint(f"{result.run_path}/checkpoint.pt", script)
    assert state["normalizer"]["mean"].shape == (WIDTHS[dataset_id],)
    returns = assert_tags_in_vocabulary(result.run_path)
    assert returns and all(math.isfinite(r) for r in returns)
    # a normalised score wherever the dataset has reference scores (the hopper's v5 dataset has none)
    assert math.isfinite(result.normalized_score) == (STANDINS[dataset_id]["ref_max_score"] is not None)
    # a success rate wherever the env reports success (mazes, Adroit; not MuJoCo locomotion, not Kitchen)
    assert 0 <= result.success_rate <= 1 if dataset_id in REPORTS_SUCCESS else math.isnan(result.success_rate)


@pytest.mark.parametrize("script", TEST_TIME)
@pytest.mark.parametrize("dataset_id", list(WIDTHS))
def test_test_time_scripts_act_on_every_family(dataset_id, script, standin, run_dir):
    ddpg_bc, module = importlib.import_module("ddpg_bc"), importlib.import_module(script)
    trained = ddpg_bc.main(ddpg_bc.Args(dataset=standin(dataset_id), run_dir=run_dir, **dict(TINY_RUN, eval_episodes=0),
                                        **TINY["ddpg_bc"]))  # fmt: skip
    result = module.main(module.Args(checkpoint=f"{trained.run_path}/checkpoint.pt", run_dir=run_dir, eval_episodes=1,
                                     progress=False, **TEST_TIME[script]))  # fmt: skip
    returns = assert_tags_in_vocabulary(result.run_path)
    assert len(returns) >= 2 and all(math.isfinite(r) for r in returns)  # the base policy and the improved one
