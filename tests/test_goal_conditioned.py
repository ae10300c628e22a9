"""gcbc.py, gciql.py, crl.py: their losses on numbers, a value that learns the distance along a hand-made chain, and
each script (each extraction) training on a tiny goal-conditioned OGBench build and evaluated by OGBench's protocol;
a checkpoint's policy scores what its run's last evaluation scored."""

import copy
import dataclasses
import math
import re

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import checkpoints
import crl
import data
import evaluation
import gcbc
import gciql
import goals
import hiql
import ogbench_data
import ogbench_suite
import training
from test_datasets import assert_tags_in_vocabulary

DATASET = "ogbench/pointmaze-medium-navigate-v0"
EPISODES, LENGTH = 3, 101  # 300 transitions of OGBench's point maze
TINY = dict(dataset=DATASET, total_steps=40, batch_size=32, hidden_dim=32, hidden_layers=2, eval_every=40, eval_episodes=1, log_every=20, progress=False)
RUNS = [(gcbc, {}), (gciql, {}), (gciql, {"extraction": "awr"}), (crl, {"latent_dim": 16}), (crl, {"latent_dim": 16, "extraction": "awr"}),
        (hiql, {"rep_dim": 4, "subgoal_steps": 5}),
        (gciql, {"extraction": "awr", "value_data_fraction": 0.5}), (crl, {"latent_dim": 16, "policy_data_fraction": 0.5})]  # a cell of the data-scaling matrix each


@pytest.fixture(scope="module")
def maze_file():
    return ogbench_suite.generate(DATASET.split("/")[1], ogbench_data.directory(), EPISODES, LENGTH, seed=0, progress=False)


def chain(length: int = 30, episodes: int = 4) -> data.Transitions:
    """A 1-D chain walked one cell per step by the only action (+1): the steps from s to g are g - s."""
    columns = [data.episode_columns(e, np.arange(length + 1, dtype=np.float32)[:, None], np.ones((length, 1), np.float32),
                                    np.zeros(length), np.zeros(length)) for e in range(episodes)]  # fmt: skip
    return data.Transitions(**{k: torch.from_numpy(np.concatenate([c[k] for c in columns])) for k in columns[0]})


def test_gcbc_loss_is_half_the_squared_error_plus_a_constant():
    torch.manual_seed(0)
    actor = gcbc.GoalActor(3, 3, 2, 16, 2, -np.ones(2), np.ones(2))
    s, g, a = torch.randn(5, 3), torch.randn(5, 3), torch.rand(5, 2) * 2 - 1
    expected = -0.5 * ((a - actor(s, g)) ** 2).sum(-1) - math.log(2 * math.pi)  # two dimensions of N(mu, 1)
    assert torch.allclose(actor.log_prob(s, g, a), expected)
    assert (actor.act(s, 10 * g).abs() <= 1).all()  # acting: clipped to the action box


def test_contrastive_loss_is_binary_cross_entropy_with_each_rows_own_goal_positive():
    torch.manual_seed(0)
    critics = crl.BilinearCritics(2, 4, 3, 16, 2, 8, True)
    x, g = torch.randn(6, 4), torch.randn(6, 3)
    loss, logits = crl.contrastive_loss(critics, x, g)
    phi, psi = critics.phi(x), critics.psi(g)
    assert torch.allclose(logits, phi @ psi.transpose(1, 2) / math.sqrt(8), atol=1e-6)  # f(x_i, g_j) = phi^T psi / sqrt(d)
    assert torch.allclose(critics(x, g), logits.diagonal(dim1=1, dim2=2), atol=1e-6)  # Q(x_i, g_i): the diagonal
    p, eye = torch.sigmoid(logits), torch.eye(6)
    manual = -(eye * torch.log(p) + (1 - eye) * torch.log(1 - p)).mean()
    assert loss.item() == pytest.approx(manual.item(), rel=1e-5)


def test_crl_critic_learns_which_goals_follow_which_states():
    """On the chain the critic's goals are later cells at a Geometric(1 - gamma) offset: after training, the loss is below
    what knowing only the base rate (1 positive in 64) gives, and Q ranks a goal a few cells ahead above one far ahead
    and far above one behind."""
    torch.manual_seed(0)
    sampler = goals.GoalSampler(chain(), 0.9, goals.GoalMix(geometric=True), goals.GoalMix())
    critics = crl.BilinearCritics(2, 2, 1, 64, 2, 16, True)
    optimizer = torch.optim.Adam(critics.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)

    def loss_on(batch: goals.GoalBatch) -> torch.Tensor:
        return crl.contrastive_loss(critics, torch.cat([batch.observations, batch.actions], -1), batch.value_goals)[0]

    for _ in range(1_500):
        loss = loss_on(sampler.sample(64, generator))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        held_out = torch.stack([loss_on(sampler.sample(64, generator)) for _ in range(20)]).mean().item()
        q = {g: critics(torch.tensor([[10.0, 1.0]]), torch.tensor([[g]])).min(0).values.item() for g in (3.0, 14.0, 28.0)}
    p = 1 / 64
    base_rate = -(p * math.log(p) + (1 - p) * math.log(1 - p))  # 0.0805: a constant logit's best
    assert held_out < 0.96 * base_rate, held_out
    assert q[14.0] > q[28.0] and q[14.0] > q[3.0] + 2, q


def test_gciql_value_learns_the_discounted_steps_to_the_goal():
    """GC-SARSA (expectile 0.5) on the chain: V(s, g) -> -(1 - gamma^(g - s)) / (1 - gamma), 0 at the goal."""
    torch.manual_seed(0)
    gamma = 0.8
    args = gciql.Args(discount=gamma, expectile=0.5, hidden_dim=64, hidden_layers=2, target_update_rate=0.05, learning_rate=1e-3)
    sampler = goals.GoalSampler(chain(), gamma, goals.GoalMix(0.2, 0.0, geometric=True), goals.GoalMix())
    actor = gciql.GoalActor(1, 1, 1, 16, 1, -np.ones(1), np.ones(1))
    critic = gciql.GoalCritics(1, 1, 64, 2, True)
    value = gciql.GoalValue(1, 64, 2, True)
    target = copy.deepcopy(critic).requires_grad_(False)
    optimizers = {name: torch.optim.Adam(n.parameters(), lr=1e-3) for name, n in (("actor", actor), ("critic", critic), ("value", value))}
    generator = torch.Generator().manual_seed(1)
    for _ in range(1_500):
        batch = sampler.sample(64, generator)
        metrics = gciql.update(batch, batch, actor, critic, target, value, optimizers, args)
    assert all(math.isfinite(float(v)) for v in metrics.values())
    s = torch.full((5, 1), 5.0)
    steps = torch.tensor([0.0, 1.0, 2.0, 4.0, 8.0])
    with torch.no_grad():
        v = value(s, s + steps[:, None])
    expected = -(1 - gamma**steps) / (1 - gamma)
    assert torch.allclose(v, expected, atol=0.35), (v, expected)
    assert (v.diff() < 0).all()  # farther goals are worth less


@pytest.mark.parametrize("script", [gciql, crl])
def test_the_policy_learns_on_the_policy_batch_and_the_critics_on_the_value_batch(script):
    """The data-scaling matrix's two data sizes reach the losses apart: each loss, computed by hand from the networks as
    they were before the step, on its own batch only (DDPG+BC's BC term on the policy batch, the critics' on the other)."""
    torch.manual_seed(0)
    sampler = goals.GoalSampler(chain(), 0.9, goals.GoalMix(0.2, 0.3, geometric=True), goals.GoalMix())
    value_batch, policy_batch = sampler.sample(16, torch.Generator().manual_seed(1)), sampler.sample(16, torch.Generator().manual_seed(2))
    actor = gciql.GoalActor(1, 1, 1, 16, 1, -np.ones(1), np.ones(1)) if script is gciql else crl.GoalActor(1, 1, 1, 16, 1, -np.ones(1), np.ones(1))
    args = script.Args(alpha=0.7, discount=0.9)
    s, a, g = value_batch.observations, value_batch.actions, value_batch.value_goals
    if script is gciql:
        critic, value = gciql.GoalCritics(1, 1, 16, 2, True), gciql.GoalValue(1, 16, 2, True)
        target = copy.deepcopy(critic).requires_grad_(False)
        networks = (actor, critic, target, value)
        with torch.no_grad():
            critic_loss = ((critic(s, g, a) - (value_batch.rewards + 0.9 * value_batch.masks * value(value_batch.next_observations, g))) ** 2).mean(1).sum()
    else:
        critic, value = crl.BilinearCritics(2, 2, 1, 16, 2, 8, True), None
        networks = (actor, critic, value)
        with torch.no_grad():
            critic_loss = crl.contrastive_loss(critic, torch.cat([s, a], -1), g)[0]
    with torch.no_grad():
        bc_loss = -(0.7 * actor.log_prob(policy_batch.observations, policy_batch.actor_goals, policy_batch.actions)).mean()
    optimizers = {name: torch.optim.Adam(n.parameters(), lr=1e-3) for name, n in (("actor", actor), ("critic", critic), ("value", value)) if n is not None}
    metrics = script.update(value_batch, policy_batch, *networks, optimizers, args)
    assert metrics["losses/bc"].item() == pytest.approx(bc_loss.item(), rel=1e-5)
    assert metrics["losses/critic"].item() == pytest.approx(critic_loss.item(), rel=1e-5)


@pytest.mark.parametrize(("script", "flags"), RUNS, ids=lambda x: getattr(x, "__name__", None) or "-".join(f"{k}={v}" for k, v in x.items()))
def test_each_script_trains_and_is_scored_on_every_evaluation_goal(maze_file, script, flags, run_dir):
    result = script.main(script.Args(run_dir=run_dir, save_model=True, **TINY, **flags))
    events = EventAccumulator(result.run_path).Reload()
    logged = {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    assert len(result.task_success_rates) == 5 and result.success_rate == pytest.approx(np.mean(result.task_success_rates))
    assert [logged[f"eval/success_rate_task{k}"][-1] for k in range(1, 6)] == pytest.approx(result.task_success_rates)
    assert logged["eval/success_rate"][-1] == pytest.approx(result.success_rate)
    assert all(math.isfinite(v[-1]) for tag, v in logged.items() if tag.startswith("losses/"))
    if script in (gciql, crl):  # one extraction's losses, never the other's
        assert ("losses/q" in logged) == (flags.get("extraction", "ddpg_bc") == "ddpg_bc") != ("actor/weight_mean" in logged)
    assert_tags_in_vocabulary(result.run_path)

    # the checkpoint's policy, rebuilt by make_policy, scores what the run's last evaluation scored, on the same episodes
    state = checkpoints.read_checkpoint(f"{result.run_path}/checkpoint.pt")
    dataset = data.load_dataset(DATASET)
    policy = script.make_policy(checkpoints.saved_args(script.Args(), state), dataset, state, torch.device("cpu"))
    envs = evaluation.make_eval_envs(dataset, TINY["eval_episodes"])
    again = evaluation.evaluate(policy, envs, dataset, seed=evaluation.first_seed(0), goal_conditioned=True)
    assert again.task_success_rates.tolist() == result.task_success_rates and again.mean == result.returns[-1]


def test_hiql_acts_through_the_subgoal_representation_and_weights_by_the_advantages_sign():
    assert hiql.expectile_weights(torch.tensor([-1.0, 0.0, 2.0]), 0.7).tolist() == pytest.approx([0.3, 0.7, 0.7])
    torch.manual_seed(0)
    high = hiql.GoalActor(2, 2, 4, 16, 2, -np.full(4, np.inf), np.full(4, np.inf))
    low = hiql.GoalActor(2, 4, 2, 16, 2, -np.ones(2), np.ones(2))
    s, g = torch.randn(6, 2), torch.randn(6, 2)
    subgoal = hiql.length_normalize(high(s, g))
    assert torch.allclose(subgoal.norm(dim=-1), torch.full((6,), 2.0))  # length sqrt(rep_dim)
    assert torch.equal(hiql.hierarchical_policy(high, low)(s, g), low.act(s, subgoal))


def test_stitch_datasets_draw_half_the_actor_goals_at_random_unless_told():
    assert gciql.Args().actor_random_goals is None and crl.Args().actor_random_goals is None  # by dataset: goals.actor_random_share
    with pytest.raises(Exception, match=re.escape("--actor-random-goals must be in [0, 1], got 1.5")):
        training.checks.check_flags(dataclasses.replace(gciql.Args(), actor_random_goals=1.5))
