"""The decoupled value-learning x policy-extraction family: awr.py, ddpg_bc.py, sfbc.py (Park et al. 2024).

Smoke runs of each script with each value learner on a tiny local dataset, and unit checks of the
three extractions: AWR's weight clipping, DDPG+BC's Q normalisation, SfBC's argmax of min(Q1, Q2).
"""

import importlib
import math

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import awr
import data
import ddpg_bc
import sfbc

DATASET = "pendulum/mixed-v0"


def scalars(run_path: str) -> dict[str, list[float]]:
    events = EventAccumulator(run_path)
    events.Reload()
    return {tag: [event.value for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.mark.parametrize("value", ["iql", "sarsa"])
@pytest.mark.parametrize("script", ["awr", "ddpg_bc", "sfbc"])
def test_smoke(script, value, local_dataset, run_dir):
    module = importlib.import_module(script)
    extra = {"num_samples": (1, 4)} if script == "sfbc" else {}
    # the sarsa runs also check separate, nested value and policy data
    fractions = {"value_data_fraction": 0.6, "policy_data_fraction": 0.3} if value == "sarsa" else {}
    args = module.Args(
        dataset=local_dataset(DATASET), value=value, total_steps=200, batch_size=64, hidden_dim=32,
        eval_every=200, eval_episodes=2, log_every=50, run_dir=run_dir, progress=False, save_model=True,
        validation_fraction=0.2, **extra, **fractions,
    )  # fmt: skip
    result = module.main(args)

    # pendulum's normalised score: 0 = random, 100 = the scripted expert; a 200-update policy lands in between-ish
    assert math.isfinite(result["normalized_score"]) and -60 < result["normalized_score"] < 130
    assert result["updates_per_s"] > 0
    logged = scalars(result["run_path"])
    assert logged["valid/critic_loss"][-1] < logged["valid/critic_loss"][0]  # the Q function learns
    assert all(np.isfinite(logged["valid/value_loss"])) and all(np.isfinite(logged["valid/action_mse"]))
    suffixes = ["_n1", "_n4"] if script == "sfbc" else [""]
    for suffix in suffixes:  # pendulum has a scripted expert: the three MSEs of Park et al. 2024 are logged
        for split in ("train", "valid", "eval"):
            mse = logged[f"mse/{split}_expert{suffix}"][-1]
            assert 0 <= mse <= 16  # actions in [-2, 2]
    assert logged["eval/normalized_score"][-1] == pytest.approx(result["normalized_score"])
    assert logged["mse/eval_expert"][-1] == logged[f"mse/eval_expert{suffixes[-1]}"][-1]  # the headline policy
    if script == "sfbc":
        assert set(result["scores_by_policy"]) == {"_n1", "_n4"}
        assert logged["valid/action_mse"][-1] < logged["valid/action_mse"][0]  # BC fits the held-out actions better

    # the checkpoint holds what OPEX/TTT need: the policy, the critics, the value net, the normaliser
    state = data.load_checkpoint(f"{result['run_path']}/checkpoint.pt", algorithm=script)
    assert {"actor", "critic", "critic_target", "value"} <= set(state["models"])
    assert state["args"]["value"] == value


def test_awr_weights_are_clipped_at_the_max():
    advantage = torch.tensor([-1.0, 0.0, 1.0, 10.0, 1e4])
    weights = awr.awr_weights(advantage, alpha=3.0, max_weight=100.0)
    expected = torch.tensor([math.exp(-3.0), 1.0, math.exp(3.0), 100.0, 100.0])
    torch.testing.assert_close(weights, expected)


def test_ddpg_bc_q_term_is_normalised_by_stop_grad_mean_abs_q():
    q = torch.tensor([2.0, 4.0], requires_grad=True)
    loss = ddpg_bc.normalized_q_loss(q)
    assert loss.item() == pytest.approx(-1.0, abs=1e-5)  # -mean(Q) / mean|Q| = -3 / 3
    loss.backward()
    # with the denominator held fixed the gradient is -1 / (n mean|Q|) = -1/6 each; without the
    # stop-grad it would be exactly 0 here (the loss would be scale-free in Q)
    torch.testing.assert_close(q.grad, torch.full((2,), -1 / 6))
    assert ddpg_bc.normalized_q_loss(-100 * q.detach()).item() == pytest.approx(1.0, abs=1e-5)  # scale-invariant


class HandMadeActor:
    """Candidates a_j = s + offsets[j]: known samples instead of a Gaussian's."""

    offsets = torch.tensor([-0.9, -0.2, 0.3, 0.9])

    def sample(self, obs, num_samples):
        return obs[:, :1][None] + self.offsets[:num_samples, None, None]


def hand_made_critic(obs, actions):
    # Q1 = 2a, Q2 = 1 - a: min(Q1, Q2) peaks at a = 1/3, while Q1, Q2 or their mean pick an end
    return torch.stack([2 * actions[:, 0], 1 - actions[:, 0]])


def test_sfbc_picks_the_sample_with_the_highest_min_q():
    obs = torch.tensor([[0.0], [0.6]])  # candidates [-.9, -.2, .3, .9] and [-.3, .4, .9, 1.5]
    chosen = sfbc.sfbc_action(obs, HandMadeActor(), hand_made_critic, num_samples=4)
    torch.testing.assert_close(chosen, torch.tensor([[0.3], [0.4]]))
    # chunked (the path used on thousands of states) gives the same choices
    chunked = sfbc.sfbc_action(obs, HandMadeActor(), hand_made_critic, num_samples=4, max_rows=4)
    torch.testing.assert_close(chunked, chosen)
    # one sample: no choice to make
    torch.testing.assert_close(sfbc.sfbc_action(obs, HandMadeActor(), hand_made_critic, 1), obs - 0.9)


@pytest.mark.parametrize("script", ["awr", "ddpg_bc", "sfbc", "opex", "ttt"])
def test_sarsa_value_learning_leaves_out_time_limit_ends(script):
    from test_onestep_rl import time_limit_batch

    module = importlib.import_module(script)
    batch = time_limit_batch()
    torch.manual_seed(0)
    critic, value_net = module.Critic(3, 1, 16, layer_norm=False), module.mlp(3, 16, 1, layer_norm=False)
    args = module.Args(value="sarsa")
    loss = module.value_losses(batch, critic, critic, value_net, args)[0]
    assert torch.allclose(loss, module.value_losses(batch.index(torch.arange(3)), critic, critic, value_net, args)[0])
    unmasked = data.Transitions(**{**batch.__dict__, "next_action_known": torch.ones(4)})
    assert module.value_losses(unmasked, critic, critic, value_net, args)[0] > 10 * loss
    # IQL's target V(s') needs no a': every transition counts
    iql_args = module.Args(value="iql")
    assert not torch.allclose(module.value_losses(batch, critic, critic, value_net, iql_args)[0],
                              module.value_losses(batch.index(torch.arange(3)), critic, critic, value_net, iql_args)[0])  # fmt: skip
