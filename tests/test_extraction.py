"""The decoupled value-learning x policy-extraction family: awr.py, ddpg_bc.py, sfbc.py (Park et al. 2024).

Smoke runs of each script with each value learner on a tiny local dataset, SfBC's policy per N, the shared
code (the same in the three files; every critic its own LayerNorm), and unit checks of the three extractions:
AWR's weight clipping, DDPG+BC's Q normalisation, SfBC's argmax of min(Q1, Q2).
"""

import importlib
import inspect
import math

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import awr
import data
import checkpoints
import training
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
    assert math.isfinite(result.normalized_score) and -60 < result.normalized_score < 130
    assert result.updates_per_s > 0
    logged = scalars(result.run_path)
    assert logged["valid/critic"][-1] < logged["valid/critic"][0]  # the Q function learns
    assert all(np.isfinite(logged["valid/value"])) and all(np.isfinite(logged["valid/action_mse"]))
    tags = ["_n1", ""] if script == "sfbc" else [""]  # SfBC: N = 1 tagged, the last N (4) is the headline, untagged
    for tag in tags:  # pendulum has a scripted expert: the three MSEs of Park et al. 2024 are logged
        for split in ("train", "valid", "eval"):
            mse = logged[f"mse/{split}_expert{tag}"][-1]
            assert 0 <= mse <= 16  # actions in [-2, 2]
    assert logged["eval/normalized_score"][-1] == pytest.approx(result.normalized_score)
    assert not any(name.endswith("_n4") for name in logged)  # the headline policy is logged once, untagged
    if script == "sfbc":
        assert set(result.policy_scores) == {"n1"}
        assert logged["eval/normalized_score_n1"][-1] == pytest.approx(result.policy_scores["n1"])
        assert logged["valid/action_mse"][-1] < logged["valid/action_mse"][0]  # BC fits the held-out actions better
    else:
        assert result.policy_scores == {}

    # the checkpoint holds what OPEX/TTT need: the policy, the critics, the value net, the normaliser; they rebuild
    # the networks from the checkpoint's args as below
    state = checkpoints.load_checkpoint(f"{result.run_path}/checkpoint.pt", algorithm=script)
    assert set(state["models"]) == {"actor", "critic", "critic_target", "value", "actor_optimizer", "value_optimizer"}
    assert state["args"]["value"] == value
    saved, low, high = state["args"], np.full(1, -2.0), np.full(1, 2.0)
    module.Actor(3, 1, saved["hidden_dim"], low, high).load_state_dict(state["models"]["actor"])
    for name in ("critic", "critic_target"):
        critics = module.Critics(3, 1, saved["hidden_dim"], saved["num_critics"], saved["layer_norm"])
        critics.load_state_dict(state["models"][name])
    module.mlp(3, saved["hidden_dim"], 1, saved["layer_norm"]).load_state_dict(state["models"]["value"])


def test_sfbc_evaluates_every_n_and_the_last_n_is_the_headline(local_dataset, run_dir, monkeypatch):
    used, by_tag, real_action, real_evaluate = [], {}, sfbc.sfbc_action, training.Run.evaluate

    def spy_action(obs, actor, critics, num_samples, *rest):
        used.append(num_samples)
        return real_action(obs, actor, critics, num_samples, *rest)

    def spy_evaluate(run, step, policy, dataset, mse_states=None, tag=""):
        used.clear()
        result = real_evaluate(run, step, policy, dataset, mse_states, tag)
        by_tag[tag] = set(used)
        return result

    monkeypatch.setattr(sfbc, "sfbc_action", spy_action)
    monkeypatch.setattr(training.Run, "evaluate", spy_evaluate)
    args = sfbc.Args(dataset=local_dataset(DATASET), num_samples=(2, 8, 3), total_steps=10, batch_size=32, hidden_dim=16,
                     eval_episodes=1, run_dir=run_dir, progress=False)  # fmt: skip
    result = sfbc.main(args)
    assert by_tag == {"_n2": {2}, "_n8": {8}, "": {3}}  # the last N of --num-samples is the headline, not the largest
    assert set(result.policy_scores) == {"n2", "n8"} and len(result.scores) == 1
    with pytest.raises(ValueError, match=r"--num-samples must be at least 1, got \(4, 0\)"):
        sfbc.main(sfbc.Args(dataset=DATASET, num_samples=(4, 0), run_dir=run_dir))


def test_the_shared_parts_are_the_same_code_in_the_three_scripts():
    # `diff awr.py ddpg_bc.py` shows the extraction and little else: networks and value learning are copies
    shared = ("mlp", "EnsembleLinear", "EnsembleLayerNorm", "Critics", "Actor", "expectile_loss", "value_losses",
              "validation_losses", "update_value")  # fmt: skip
    for name in shared:
        for module in (awr, sfbc):
            assert inspect.getsource(getattr(module, name)) == inspect.getsource(getattr(ddpg_bc, name)), name
    # the same main() but for the script's name (SfBC's also evaluates one policy per N)
    assert inspect.getsource(awr.main).replace('"awr"', '"ddpg_bc"') == inspect.getsource(ddpg_bc.main)


def test_each_critic_has_its_own_layer_norm():
    torch.manual_seed(0)
    critics = ddpg_bc.Critics(3, 1, 16, num_critics=2, layer_norm=True)
    obs, actions = torch.randn(5, 3), torch.randn(5, 1)
    before = critics(obs, actions)
    assert before.shape == (2, 5)
    with torch.no_grad():
        critics.net[1].weight[0] *= 3  # the first critic's first LayerNorm scale
    after = critics(obs, actions)
    assert not torch.allclose(after[0], before[0]) and torch.equal(after[1], before[1])


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


class BoxCritic(torch.nn.Module):
    """Q(s, a) = inner(s, (a - centre) / half_width): a critic of [-1, 1] actions, rescaled to another action box."""

    def __init__(self, inner, low, high):
        super().__init__()
        self.inner = inner
        self.low, self.high = torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32)

    def forward(self, obs, actions):
        return self.inner(obs, (actions - (self.high + self.low) / 2) / ((self.high - self.low) / 2))


def test_ddpg_bc_bc_term_is_in_action_box_units():
    # the same policy, critic and data on [-1, 1] actions and on a box of half-widths (2, 0.5), pendulum's [-2, 2] and
    # a shifted one: the BC term, measured in units of the half-width as TD3+BC's, and so the whole update, are equal
    from test_onestep_rl import time_limit_batch

    low, high = np.array([-2.0, 0.0]), np.array([2.0, 1.0])
    unit = time_limit_batch()
    unit = data.Transitions(**{**unit.__dict__, "actions": torch.rand(len(unit), 2) * 2 - 1})
    boxed_actions = unit.actions * torch.tensor([2.0, 0.5]) + torch.tensor([0.0, 0.5])  # a * half-width + centre
    boxed = data.Transitions(**{**unit.__dict__, "actions": boxed_actions})
    args, logs, grads = ddpg_bc.Args(alpha=0.7), [], []
    for batch, box in ((unit, (-np.ones(2), np.ones(2))), (boxed, (low, high))):
        torch.manual_seed(0)  # the same weights for both
        actor = ddpg_bc.Actor(3, 2, 16, *box)
        critics = BoxCritic(ddpg_bc.Critics(3, 2, 16, 2, layer_norm=False), *box)
        optimizers = {"actor": torch.optim.Adam(actor.parameters(), lr=1e-3)}
        with torch.no_grad():
            mu = actor(batch.observations)
        logs.append(ddpg_bc.update_actor(batch, actor, critics, None, optimizers, args))
        grads.append([p.grad for p in actor.net.parameters()])
    # -alpha E[log pi(a|s)] = alpha E[||mu(s) - a||^2] / 2 on the [-1, 1] batch (raw units: 4x and 1/4x on the box)
    with torch.no_grad():
        torch.manual_seed(0)
        mu_unit = ddpg_bc.Actor(3, 2, 16, -np.ones(2), np.ones(2))(unit.observations)
    expected = 0.7 * 0.5 * ((mu_unit - unit.actions) ** 2).sum(-1).mean()
    torch.testing.assert_close(logs[0]["losses/bc"], expected)
    torch.testing.assert_close(logs[1]["losses/bc"], expected)
    torch.testing.assert_close(logs[1]["losses/q"], logs[0]["losses/q"])
    for boxed_grad, unit_grad in zip(grads[1], grads[0]):
        torch.testing.assert_close(boxed_grad, unit_grad)
    assert not torch.allclose(mu, mu_unit)  # ... while the actions themselves differ


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


@pytest.mark.parametrize("script", ["awr", "ddpg_bc", "sfbc"])
def test_sarsa_value_learning_leaves_out_time_limit_ends(script):
    from test_onestep_rl import time_limit_batch

    module = importlib.import_module(script)
    batch = time_limit_batch()
    torch.manual_seed(0)
    critic, value_net = module.Critics(3, 1, 16, 2, layer_norm=False), module.mlp(3, 16, 1, layer_norm=False)
    args = module.Args(value="sarsa")
    loss = module.value_losses(batch, critic, critic, value_net, args)[0]
    assert torch.allclose(loss, module.value_losses(batch.index(torch.arange(3)), critic, critic, value_net, args)[0])
    unmasked = data.Transitions(**{**batch.__dict__, "next_action_known": torch.ones(4)})
    assert module.value_losses(unmasked, critic, critic, value_net, args)[0] > 10 * loss
    # IQL's target V(s') needs no a': every transition counts
    iql_args = module.Args(value="iql")
    assert not torch.allclose(module.value_losses(batch, critic, critic, value_net, iql_args)[0],
                              module.value_losses(batch.index(torch.arange(3)), critic, critic, value_net, iql_args)[0])  # fmt: skip
