"""benchmarks/corl.py without CORL (CI has no checkout of it): the data CORL is handed, the stand-ins of its imports
and our evaluation behind them (on a small trainer file written here in CORL's shape), the verdict and the tables."""

import os
import subprocess
import sys
import textwrap

import corl
import numpy as np
import pytest
import torch
import tyro

# A trainer file with CORL's imports and calls (gym.make, d4rl.qlearning_dataset, wrap_env's TransformObservation,
# eval_actor, env.get_normalized_score, wandb.log): what the harness must answer, nothing of CORL's learning.
FAKE_TRAINER = '''
from dataclasses import dataclass
import d4rl, gym, numpy as np, pyrallis, wandb

@dataclass
class TrainConfig:
    device: str = "cuda"
    env: str = "halfcheetah-medium-expert-v2"
    seed: int = 0
    eval_freq: int = 2
    n_episodes: int = 10
    max_timesteps: int = 4
    buffer_size: int = 2_000_000

class Actor:
    training = True
    def eval(self): self.training = False
    def train(self): self.training = True
    def act(self, state, device="cpu"):  # a unit action from the normalised state, deterministic when evaluated
        assert not self.training
        return np.tanh(state[:1])

def eval_actor(env, actor, device, n_episodes, seed):
    raise NotImplementedError("the harness answers evaluation")

@pyrallis.wrap()
def train(config):
    env = gym.make(config.env)
    dataset = d4rl.qlearning_dataset(env)
    mean = dataset["observations"].mean(0)
    env = gym.wrappers.TransformObservation(env, lambda state: state - mean)
    actor = Actor()
    for t in range(config.max_timesteps):
        if (t + 1) % config.eval_freq == 0:
            score = env.get_normalized_score(eval_actor(env, actor, config.device, config.n_episodes, config.seed).mean())
            wandb.log({"d4rl_normalized_score": 100 * score}, step=t + 1)
'''


def test_a_wrong_checkout_is_refused_in_one_sentence(tmp_path):
    with pytest.raises(SystemExit) as error:
        corl.check_corl(str(tmp_path))
    message = str(error.value)
    assert "\n" not in message and str(tmp_path) in message and "git clone https://github.com/tinkoff-ai/CORL" in message
    command = [sys.executable, os.path.join(corl.ROOT, "benchmarks", "corl.py"), "speed", "--corl", str(tmp_path / "nowhere")]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"--corl {tmp_path / 'nowhere'} is not a CORL checkout "
                                                 "(algorithms/offline/any_percent_bc.py is missing): git clone "
                                                 "https://github.com/tinkoff-ai/CORL and pass its folder."]  # fmt: skip


def test_the_hopper_stand_in_has_hoppers_shapes():
    dataset_id = corl.hopper_standin(num_episodes=3, episode_length=40)
    arrays, dataset, longest = corl.corl_arrays(dataset_id)
    assert dataset.observation_space.shape == (11,) and dataset.action_space.shape == (3,)
    assert arrays["observations"].shape == arrays["next_observations"].shape == (120, 11)
    assert arrays["actions"].shape == (120, 3) and np.abs(arrays["actions"]).max() <= 1
    assert arrays["rewards"].shape == arrays["terminals"].shape == arrays["timeouts"].shape == (120,)
    # each episode ends once, by a termination (done, not bootstrapped) or by a time limit (bootstrapped), never both
    ends = arrays["terminals"] + arrays["timeouts"]
    assert ends.max() == 1 and np.flatnonzero(ends).tolist() == [39, 79, 119] and arrays["terminals"].sum() == 2
    assert longest == 40


def test_corl_gets_our_data_in_unit_actions(local_dataset):
    data, _ = corl.ours()
    dataset_id = local_dataset("pendulum/random-v0")
    arrays, _, _ = corl.corl_arrays(dataset_id)
    t = data.to_transitions(data.load_dataset(dataset_id))
    # pendulum's box is [-2, 2]: CORL sees D4RL's [-1, 1], the rest unchanged
    np.testing.assert_allclose(arrays["actions"] * 2, t.actions.numpy(), atol=1e-6)
    assert np.abs(arrays["actions"]).max() > 0.5 and np.abs(arrays["actions"]).max() <= 1
    np.testing.assert_array_equal(arrays["next_observations"], t.next_observations.numpy())
    np.testing.assert_array_equal(arrays["terminals"], t.terminals.numpy())


def test_a_corl_shaped_trainer_is_run_and_scored_by_our_evaluation(local_dataset, tmp_path):
    dataset_id = local_dataset("pendulum/random-v0")
    trainer = tmp_path / "CORL" / corl.CORL_FILES["td3_bc"]
    trainer.parent.mkdir(parents=True)
    trainer.write_text(textwrap.dedent(FAKE_TRAINER))
    config = {"id": "fake", "side": "corl", "script": "td3_bc", "dataset": dataset_id, "seed": 3, "eval_episodes": 2,
              "corl_config": {"device": "cpu", "env": dataset_id, "eval_freq": 2, "n_episodes": 2, "max_timesteps": 4}}  # fmt: skip
    record = corl.run_corl(config, str(tmp_path / "CORL"), str(tmp_path / "logs"))
    assert record["status"] == "ok", record.get("error")
    assert record["eval_steps"] == [2, 4]
    # the same policy scored by our evaluation directly: CORL's normalisation, its unit action scaled back to [-2, 2]
    arrays, dataset, _ = corl.corl_arrays(dataset_id)
    mean = torch.as_tensor(arrays["observations"].mean(0))
    evaluate, normalized = corl.our_evaluation(dataset, 2, seed=3)
    expected = normalized(evaluate(lambda obs: 2 * torch.tanh(obs[:, :1] - mean[:1])).returns.mean())
    assert record["scores"] == pytest.approx([float(expected)] * 2, rel=1e-5)
    assert "d4rl" not in sys.modules and "wandb" not in sys.modules  # the stand-ins are gone after the run


def test_the_verdict_compares_the_gap_with_the_larger_spread():
    assert corl.verdict([50, 52, 48], [51, 55, 47]) == corl.WITHIN
    assert corl.verdict([90, 91, 89], [50, 52, 48]) == corl.DIFFERS
    assert corl.verdict([10, 50, 90], [60, 61, 62]) == corl.WITHIN  # one noisy side: a 10-point gap is inside its std 40
    assert corl.verdict([60, 61, 62], [70, 71, 72]) == corl.DIFFERS  # std 1 each, 10 apart


def test_the_parity_table_has_both_sides_and_the_verdict():
    records = [{"status": "ok", "algorithm": "iql", "dataset": "pendulum/medium-v0", "side": side, "normalized_score": s}
               for side, scores in (("ours", (48, 50, 52)), ("corl", (40, 41, 42))) for s in scores]  # fmt: skip
    records.append({"status": "failed", "algorithm": "iql", "dataset": "pendulum/medium-v0", "side": "ours"})
    table = corl.parity_table(corl.parity_rows(records))
    assert table.splitlines()[2] == "| iql | pendulum/medium-v0 | 50.0 ± 2.0 (3) | 41.0 ± 1.0 (3) | +9.0 | differs |"


def test_the_speed_table_gives_medians_and_their_ratio():
    rows = [{"algorithm": "bc", "flags": "--hidden-dim 256", "corl": [100.0, 110.0, 90.0], "ours": [200.0, 190.0, 230.0]}]
    lines = corl.speed_table(rows, "### header").splitlines()
    assert lines[0] == "### header"
    assert lines[4] == "| bc | 100.0 | 200.0 | 2.00x | 100.0, 110.0, 90.0 | 200.0, 190.0, 230.0 | `--hidden-dim 256` |"


def test_the_speed_tables_add_d3rlpy_beside_corl_when_it_was_timed():
    rows = [{"algorithm": "bc", "script": "bc", "option": "eager", "flags": "--hidden-dim 256", "corl": [100.0, 120.0], "d3rlpy": [50.0, 30.0],
             "ours": [200.0, 180.0]},
            {"algorithm": "bc compile", "script": "bc", "option": "compile", "flags": "--hidden-dim 256 --compile", "corl": [100.0, 120.0],
             "d3rlpy": [50.0, 30.0], "ours": [330.0, 330.0]},
            {"algorithm": "bc (baseline)", "script": "bc", "option": None, "flags": "--hidden-dim 256", "corl": [100.0, 120.0],
             "d3rlpy": [50.0, 30.0], "ours": [1.0, 1.0]}]  # fmt: skip
    table = corl.speed_table(rows, "### header").splitlines()
    assert table[2].startswith("| algorithm | CORL updates/s | d3rlpy updates/s | ours updates/s | ours / CORL | ours / d3rlpy |")
    assert table[4] == "| bc | 110.0 | 40.0 | 190.0 | 1.73x | 4.75x | 100.0, 120.0 | 50.0, 30.0 | 200.0, 180.0 | `--hidden-dim 256` |"
    summary = corl.speed_summary(rows, ("eager", "compile")).splitlines()
    assert summary[0] == "| algorithm | CORL | d3rlpy | ours eager | ours compile |"
    assert summary[2:] == ["| bc | 110.0 | 40.0 | 190.0 (1.73x; 4.75x) | 330.0 (3.00x; 8.25x) |"]  # the baseline row is left out
    without = corl.speed_summary([{**row, "d3rlpy": []} for row in rows[:1]], ("eager",)).splitlines()
    assert without[2] == "| bc | 110.0 | 190.0 (1.73x) |"


@pytest.mark.parametrize("algorithm", ["bc", "td3_bc", "iql", "cql", "cal_ql", "dt"])
def test_our_side_of_every_pair_is_flags_our_scripts_take(local_dataset, algorithm):
    import importlib

    dataset_id = local_dataset("pendulum/random-v0")
    flags, corl_config = corl.pair(algorithm, dataset_id, corl.ParityArgs(corl="unused", updates=1000, cql_updates=200))
    module = importlib.import_module(algorithm)
    args = tyro.cli(module.Args, args=["--dataset", dataset_id, *corl.flag_text(flags).split()])
    steps = 200 if algorithm in ("cql", "cal_ql") else 1000
    assert args.total_steps == steps and args.eval_every == steps // 10
    budget = corl_config.get("max_timesteps", corl_config.get("offline_iterations", corl_config.get("update_steps")))
    assert budget == steps  # both sides train as long
    if algorithm == "dt":  # CORL's DT sees returns-to-go on our scale and is conditioned on our target returns
        rtg_scale, targets = corl.our_dt_conditioning(dataset_id)
        assert corl_config["reward_scale"] == pytest.approx(1 / rtg_scale) and corl_config["target_returns"] == targets
        assert (args.embed_dim, args.num_layers, args.batch_size) == (corl_config["embedding_dim"], corl_config["num_layers"], corl_config["batch_size"])
    if algorithm == "cal_ql":  # CORL's actor is 3 deep by construction; its dataclass's backup is one a' (ours: max over 10)
        assert (args.hidden_layers, args.critic_hidden_layers) == (3, corl_config["q_n_hidden_layers"])
        assert args.max_backup == corl_config.get("cql_max_target_backup", False) == False  # noqa: E712
