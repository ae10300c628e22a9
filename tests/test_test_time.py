"""Test-time policy improvement: opex.py (u <- clip(u + beta grad_u Q), u the action in box units) and ttt.py.

Unit checks of the OPEX step on hand-made Q functions with a known gradient, of TTT's parameter updates
(none at learning rate 0, a higher frozen Q on the visited states otherwise), and both scripts on checkpoints
written by ddpg_bc.py and awr.py (the same network classes): they train nothing, score the checkpoint's own
policy as its training run did, and refuse another algorithm's checkpoint.
"""

import dataclasses
import inspect
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import awr
import data
import checkpoints
import evaluation
import training
import ddpg_bc
import opex
import ttt

DATASET = "pendulum/medium-v0"  # 3-d observations, actions in [-2, 2], a scripted expert
TINY = dict(total_steps=200, batch_size=64, hidden_dim=32, eval_every=200, eval_episodes=2, log_every=100, progress=False)


def scalars(run_path: str) -> dict[str, list[float]]:
    events = EventAccumulator(run_path)
    events.Reload()
    return {tag: [event.value for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def networks(module, seed: int = 0, obs_dim: int = 3, act_dim: int = 1, high: float = 2.0):
    torch.manual_seed(seed)
    actor = module.Actor(obs_dim, act_dim, 32, np.full(act_dim, -high), np.full(act_dim, high))
    critic = module.Critics(obs_dim, act_dim, 32, 2, layer_norm=True)
    normalizer = data.Normalizer.fit(torch.randn(500, obs_dim) * 2 + 1)
    return actor, critic, normalizer


@pytest.fixture(scope="module")
def trained(local_dataset, tmp_path_factory):
    """trained(ddpg_bc or awr): a tiny run saved with --save-model (validation episodes held out), once per module."""
    runs = {}

    def train(trainer) -> training.RunResult:
        if trainer not in runs:
            args = trainer.Args(dataset=local_dataset(DATASET), run_dir=str(tmp_path_factory.mktemp(trainer.__name__)),
                                save_model=True, validation_fraction=0.1, **TINY)  # fmt: skip
            runs[trainer] = trainer.main(args)
        return runs[trainer]

    return train


def test_pretrained_networks_are_the_same_classes_in_every_script():
    # opex.py and ttt.py load ddpg_bc.py's and awr.py's state dicts into their own copies of these networks
    for name in ("mlp", "EnsembleLinear", "EnsembleLayerNorm", "Critics", "Actor"):
        source = inspect.getsource(getattr(ddpg_bc, name))
        for module in (awr, opex, ttt):
            assert inspect.getsource(getattr(module, name)) == source, f"{module.__name__}.{name} differs"


def test_test_time_scripts_train_nothing():
    # no value learning and no training flags: the policy and Q come from the checkpoint only
    for module in (opex, ttt):
        fields = {field.name for field in dataclasses.fields(module.Args)}
        assert not fields & {"dataset", "total_steps", "batch_size", "resume", "save_model", "learning_rate"}, module
        assert not any(hasattr(module, name) for name in ("update_value", "update_actor", "value_losses")), module
        assert dataclasses.fields(module.Args)[0].name == "checkpoint"  # the one required flag


@pytest.mark.parametrize("normalize_gradient", [False, True])
def test_opex_beta_zero_is_the_plain_policy_bit_for_bit(normalize_gradient):
    actor, critic, normalizer = networks(opex)
    obs = torch.randn(256, 3) * 3
    policy = opex.OpexPolicy(actor, critic, normalizer, beta=0.0, normalize_gradient=normalize_gradient)
    with torch.no_grad():  # as evaluation.evaluate calls it
        adjusted = policy(obs)
        plain = actor(normalizer(obs))
    assert torch.equal(adjusted, plain)
    assert policy.grad_norms[-1] > 0  # the gradient was computed all the same


@pytest.mark.parametrize("high", [1.0, 2.0])  # D4RL's box and pendulum's: beta is a step in box units
def test_opex_moves_the_action_by_beta_times_the_gradient_of_q_and_clips_it(high):
    actor, _, normalizer = networks(opex, act_dim=2, high=high)
    obs = torch.randn(128, 3)
    with torch.no_grad():
        mu = actor(normalizer(obs))
    centre = torch.tensor([0.3, -0.2])
    quadratic = lambda s, a: -((a - centre) ** 2).sum(-1)[None]  # noqa: E731  grad_a Q = -2 (a - c), one member
    policy = opex.OpexPolicy(actor, quadratic, normalizer, beta=0.1, normalize_gradient=False)
    with torch.no_grad():
        moved = policy(obs)
    # a <- mu + beta * h^2 * grad_a Q, h = high: on [-2, 2] the step is 4 beta grad_a Q (u <- u + beta grad_u Q)
    torch.testing.assert_close(moved, mu + 0.1 * high**2 * (-2) * (mu - centre))  # within the box: no clipping
    torch.testing.assert_close(policy.grad_norms[-1], (2 * (mu - centre)).norm(dim=-1).mean())

    # twin Qs: the step follows the smaller one; a linear Q with a large slope pushes every action onto the box
    twin = lambda s, a: torch.stack([50 * a[:, 0] - 50 * a[:, 1], 100 * a[:, 0] - 100 * a[:, 1] + 1e3])  # noqa: E731
    with torch.no_grad():
        small = opex.OpexPolicy(actor, twin, normalizer, beta=1e-3, normalize_gradient=False)(obs)
        clipped = opex.OpexPolicy(actor, twin, normalizer, beta=1.0, normalize_gradient=False)(obs)
    torch.testing.assert_close(small, torch.clamp(mu + 1e-3 * high**2 * torch.tensor([50.0, -50.0]), -high, high))
    assert torch.equal(clipped, torch.tensor([high, -high]).expand_as(clipped))

    # normalised gradient: a step of length beta * h along grad / ||grad||, whatever the slope
    linear = lambda s, a: (30 * a[:, 0] + 40 * a[:, 1])[None]  # noqa: E731  ||grad|| = 50
    policy = opex.OpexPolicy(actor, linear, normalizer, beta=0.05, normalize_gradient=True)
    with torch.no_grad():
        stepped = policy(obs)
    expected = torch.clamp(mu + 0.05 * high * torch.tensor([0.6, 0.8]), -high, high)
    torch.testing.assert_close(stepped, expected)
    assert policy.grad_norms[-1].item() == pytest.approx(50.0)


@pytest.mark.parametrize("normalize_gradient", [False, True])
def test_opex_beta_is_in_box_units_on_a_box_of_half_width_2(normalize_gradient):
    """The same problem written on [-1, 1] and on [-2, 2] (Q2(a) = Q1(a / 2), the policy's actions doubled): OPEX moves
    the action to the same place in box units, i.e. beta means the same whatever the action range."""
    obs = torch.randn(64, 3)
    centre = torch.tensor([0.3, -0.2])
    adjusted = {}
    for high in (1.0, 2.0):
        actor, _, normalizer = networks(opex, act_dim=2, high=high)  # the same weights (seed 0): mu_2(s) = 2 mu_1(s)
        q = lambda s, a, h=high: -((a / h - centre) ** 2).sum(-1)[None]  # noqa: E731  the same Q in box units
        with torch.no_grad():
            adjusted[high] = opex.OpexPolicy(actor, q, normalizer, beta=0.2, normalize_gradient=normalize_gradient)(obs) / high
            mu = actor(normalizer(obs)) / high
    torch.testing.assert_close(adjusted[2.0], adjusted[1.0])
    # and that place is the box-unit step u + beta grad_u Q, grad_u Q = -2 (u - c) (or its unit vector)
    grad = -2 * (mu - centre)
    step = grad / (grad.norm(dim=-1, keepdim=True) + 1e-6) if normalize_gradient else grad
    torch.testing.assert_close(adjusted[2.0], (mu + 0.2 * step).clamp(-1, 1))


def ttt_setup(local_dataset, **overrides):
    dataset = data.load_dataset(local_dataset(DATASET))
    envs = evaluation.make_eval_envs(dataset, 2)
    actor, critic, normalizer = networks(ttt, seed=1)
    args = ttt.Args(**{"checkpoint": "unused", "ttt_steps": 2, "ttt_batch_size": 32, "ttt_bc_weight": 0.0, **overrides})
    return dataset, envs, actor, critic, normalizer, ttt.TTTPolicy(actor, critic, normalizer, args)


def test_ttt_with_zero_learning_rate_leaves_the_policy_bit_identical(local_dataset):
    dataset, envs, actor, critic, normalizer, policy = ttt_setup(local_dataset, ttt_learning_rate=0.0)
    before = {name: p.clone() for name, p in actor.state_dict().items()}
    result = evaluation.evaluate(policy, policy.track(envs), dataset, seed=3)
    envs.close()
    assert len(policy.actors) == 2  # one copy per episode
    for adapted, optimizer in zip(policy.actors, policy.optimizers):
        steps = int(optimizer.state[adapted.net[0].weight]["step"])
        assert steps == 2 * 200  # the gradient steps did run: 2 per environment step of the 200-step episode
        for name, value in adapted.state_dict().items():
            assert torch.equal(value, before[name]), name
    # ... so TTT acted exactly as the plain policy, on every state it visited
    assert sum(len(obs) for obs, _ in policy.taken) == len(result.observations)
    with torch.no_grad():
        assert all(torch.equal(action, actor(normalizer(obs))) for obs, action in policy.taken)


class BoxCritic(torch.nn.Module):
    """Q(s, a) = inner(s, a / high): a critic of [-1, 1] actions, rescaled to the box [-high, high]."""

    def __init__(self, inner, high: float):
        super().__init__()
        self.inner, self.high = inner, high

    def forward(self, obs, actions):
        return self.inner(obs, actions / self.high)


def test_ttt_bc_term_is_in_action_box_units():
    # the same policy and critic on [-1, 1] actions and on pendulum's [-2, 2]: with the BC term measured in units of
    # the box's half-width the test-time loss, and so every Adam step, is the same; in raw units it would weigh 4x
    adapted = {}
    for high in (1.0, 2.0):
        actor, critic, normalizer = networks(ttt, seed=1, high=high)  # the same weights and normaliser for both
        critic = BoxCritic(critic, high)  # Q(s, a / high): the same critic in the box's units
        args = ttt.Args(checkpoint="unused", ttt_steps=4, ttt_batch_size=32, ttt_learning_rate=3e-2, ttt_bc_weight=1.0)
        policy = ttt.TTTPolicy(actor, critic, normalizer, args)
        torch.manual_seed(2)  # the same states and the same draws of visited states
        with torch.no_grad():  # as evaluation.evaluate calls it
            actions = torch.cat([policy(torch.randn(4, 3) * 2) for _ in range(5)])
            s = normalizer(torch.randn(64, 3) * 2)
            shift = (policy.actors[0](s) - actor(s)).abs().max() / high
        adapted[high] = actions, [p.detach() for copy in policy.actors for p in copy.net.parameters()]
    assert shift > 1e-3  # TTT did move the policy
    torch.testing.assert_close(adapted[2.0][0], 2 * adapted[1.0][0])
    for boxed, unit in zip(adapted[2.0][1], adapted[1.0][1]):
        torch.testing.assert_close(boxed, unit)


def test_ttt_raises_the_frozen_q_of_the_visited_states(local_dataset):
    dataset, envs, actor, critic, normalizer, policy = ttt_setup(local_dataset, ttt_learning_rate=1e-3)
    before = {name: p.clone() for name, p in actor.state_dict().items()}
    critic_before = {name: p.clone() for name, p in critic.state_dict().items()}
    evaluation.evaluate(policy, policy.track(envs), dataset, seed=3)
    envs.close()
    for copy, visited in zip(policy.actors, policy.visited):  # each episode's copy on its own episode's states
        s = torch.cat(visited)
        with torch.no_grad():
            q_adapted = critic(s, copy(s)).min(0).values.mean()
            q_base = critic(s, actor(s)).min(0).values.mean()
        assert q_adapted > q_base + 1e-3
    # the trained policy and the critic themselves are untouched (TTT adapts a copy against a frozen copy of Q)
    assert all(torch.equal(v, before[k]) for k, v in actor.state_dict().items())
    assert all(torch.equal(v, critic_before[k]) for k, v in critic.state_dict().items())
    assert all(p.requires_grad for p in critic.parameters())  # the caller's critic is not frozen by TTT


class CountingEnv(gym.Env):
    """Observation (env index, time step, episodes started so far); the episode ends after `length` steps."""

    def __init__(self, index: int, length: int):
        self.index, self.length, self.episodes, self.t = index, length, 0, 0
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)

    def observation(self) -> np.ndarray:
        return np.array([self.index, self.t, self.episodes], np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.episodes, self.t = self.episodes + 1, 0
        return self.observation(), {}

    def step(self, action):
        self.t += 1
        return self.observation(), 0.0, self.t == self.length, False, {}


LENGTHS = (5, 9)  # env 0's episode ends (and its env auto-resets into a new one) while env 1's still runs


def counting_setup(**overrides):
    envs = gym.vector.SyncVectorEnv([lambda i=i, n=n: CountingEnv(i, n) for i, n in enumerate(LENGTHS)])
    actor, critic, _ = networks(ttt, seed=1)
    args = ttt.Args(**{"checkpoint": "unused", "ttt_steps": 2, "ttt_batch_size": 8, "ttt_learning_rate": 1e-2, **overrides})
    return envs, actor, ttt.TTTPolicy(actor, critic, data.Normalizer.identity(3), args)


def episode_states(policy, i: int) -> np.ndarray:
    return torch.cat(policy.visited[i]).numpy()  # the identity normaliser: the raw (index, t, episode) states


def test_ttt_adapts_each_episodes_copy_on_that_episodes_states_only():
    # the old protocol adapted one shared copy on every env's states, the auto-reset env 0's next episode included
    envs, actor, policy = counting_setup()
    torch.manual_seed(0)
    _, lengths, visited, _ = evaluation.run_episodes(policy, policy.track(envs), seed=0)
    assert list(lengths) == list(LENGTHS)
    assert len(policy.actors) == 2 and policy.actors[0] is not policy.actors[1]
    for i, length in enumerate(LENGTHS):
        states = episode_states(policy, i)
        # exactly its own episode's states, in order: env i, steps 0 .. length - 1 of its first episode
        np.testing.assert_array_equal(states, np.stack([np.full(length, i), np.arange(length), np.ones(length)], 1))
        actor_i, optimizer = policy.actors[i], policy.optimizers[i]
        assert int(optimizer.state[actor_i.net[0].weight]["step"]) == 2 * length  # 2 steps per step of its episode
    # the actions TTT took (its evaluation MSE's states) are those of the running episodes, as run_episodes' states
    taken = torch.cat([obs for obs, _ in policy.taken]).numpy()
    np.testing.assert_array_equal(taken, visited)
    assert (taken[:, 2] == 1).all()
    # the two episodes' copies moved apart, each from pi_0
    s = torch.randn(64, 3)
    with torch.no_grad():
        a0, a1, a = policy.actors[0](s), policy.actors[1](s), actor(s)
    assert (a0 - a).abs().max() > 1e-4 and (a1 - a).abs().max() > 1e-4 and (a0 - a1).abs().max() > 1e-4
    envs.close()


@pytest.mark.parametrize("reset", [True, False])
def test_ttt_reset_per_episode_gives_each_episode_a_fresh_copy(reset):
    envs, actor, policy = counting_setup(ttt_reset_per_episode=reset)
    tracked = policy.track(envs)
    evaluation.run_episodes(policy, tracked, seed=0)
    first = list(policy.actors)
    evaluation.run_episodes(policy, tracked, seed=1)
    rounds = 1 if reset else 2  # reset: each episode's copy starts from pi_0; else each env's copy carries on
    for i, length in enumerate(LENGTHS):
        assert (policy.actors[i] is first[i]) != reset
        states = episode_states(policy, i)
        assert len(states) == rounds * length and (states[:, 0] == i).all()  # its own env's states only ...
        assert len(np.unique(states[:, 2])) == rounds  # ... of its own episode(s): never an auto-reset one's
        assert np.array_equal(states[-length:, 1], np.arange(length))
        actor_i, optimizer = policy.actors[i], policy.optimizers[i]
        assert int(optimizer.state[actor_i.net[0].weight]["step"]) == rounds * 2 * length
    envs.close()


def test_opex_on_a_checkpoint(trained, run_dir):
    checkpoint = f"{trained(ddpg_bc).run_path}/checkpoint.pt"
    result = opex.main(opex.Args(checkpoint=checkpoint, run_dir=run_dir, betas=(0.03, 0.3), eval_episodes=2, progress=False))
    assert set(result.policy_scores) == {"beta0.03", "beta0.3"}  # beta 0, the plain policy, is the untagged score
    logged = scalars(result.run_path)
    assert "eval/normalized_score_beta0" not in logged  # ... evaluated once
    for tag in ("", "_beta0.03", "_beta0.3"):
        assert math.isfinite(logged[f"eval/normalized_score{tag}"][-1])
        assert logged[f"eval/grad_norm{tag}"][-1] > 0
        for split in ("train", "valid", "eval"):  # the checkpoint's own validation episodes
            assert 0 <= logged[f"mse/{split}_expert{tag}"][-1] <= 16  # actions in [-2, 2]
    assert logged["eval/normalized_score"][-1] == pytest.approx(result.normalized_score)
    assert logged["eval/normalized_score_beta0.3"][-1] == pytest.approx(result.policy_scores["beta0.3"])


def test_ttt_on_a_checkpoint(trained, run_dir):
    checkpoint = f"{trained(ddpg_bc).run_path}/checkpoint.pt"
    result = ttt.main(ttt.Args(checkpoint=checkpoint, run_dir=run_dir, eval_rounds=2, ttt_reset_per_episode=False,
                               ttt_steps=2, ttt_batch_size=32, eval_episodes=2, progress=False))  # fmt: skip
    assert math.isfinite(result.normalized_score) and math.isfinite(result.policy_scores["ttt"])
    logged = scalars(result.run_path)
    for tag in ("", "_ttt"):
        for split in ("train", "valid", "eval"):
            assert 0 <= logged[f"mse/{split}_expert{tag}"][-1] <= 16
    assert logged["eval/normalized_score_ttt"][-1] == pytest.approx(result.policy_scores["ttt"])
    assert logged["eval/normalized_score"][-1] == pytest.approx(result.normalized_score)
    assert logged["ttt/q_gain"][-1] > 0  # the adapted copy has a higher Q on the visited states
    assert logged["ttt/action_shift"][-1] > 0


@pytest.mark.parametrize("trainer", [ddpg_bc, awr])
def test_checkpoint_is_evaluated_without_training(trainer, trained, run_dir, tmp_path):
    run = trained(trainer)
    # the dataset and network settings come from the checkpoint (the training run's width is not the default)
    common = dict(checkpoint=f"{run.run_path}/checkpoint.pt", eval_episodes=2, run_dir=run_dir, progress=False)
    result = opex.main(opex.Args(betas=(0.1,), **common))
    assert result.updates_per_s == 0  # nothing trained
    # the same policy on the same evaluation seeds: beta 0 scores what ddpg_bc.py (awr.py) scored, bit for bit
    assert result.normalized_score == run.normalized_score
    assert result.scores == run.scores[-1:]
    # TTT at learning rate 0 is the same policy again
    result = ttt.main(ttt.Args(ttt_learning_rate=0.0, ttt_steps=1, ttt_batch_size=8, **common))
    assert result.normalized_score == result.policy_scores["ttt"] == run.normalized_score


@pytest.mark.parametrize("module", [opex, ttt])
def test_another_algorithms_checkpoint_and_no_evaluation_are_refused(module, run_dir, tmp_path):
    other = str(tmp_path / "bc.pt")
    checkpoints.save_checkpoint(other, "bc", {"dataset": DATASET}, 0, {}, data.Normalizer.identity(3))
    with pytest.raises(ValueError, match="written by bc, not ddpg_bc or awr: load it with algorithms/bc.py"):
        module.main(module.Args(checkpoint=other, run_dir=run_dir, progress=False))
    with pytest.raises(ValueError, match="--eval-episodes must be at least 1"):
        module.main(module.Args(checkpoint=other, run_dir=run_dir, eval_episodes=0))
