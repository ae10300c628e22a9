"""Offline-to-online fine-tuning (cal_ql.py, iql.py --online-steps): the calibrated conservative term is the paper's
equation, the reference value, the max backup and the Lagrange loss are the official code's, batches mix offline and
online data as asked, IQL's online phase keeps its learning rate and widens --clip-target's bound, both phases run
and log against env steps, and a run resumed in the middle of an online episode ends with the straight run's tensors
(its online data included)."""

import copy
import math
import os
from dataclasses import replace

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import gymnasium as gym

import cal_ql
import data
import checkpoints
import evaluation
import finetuning
import iql
from test_datasets import WIDTHS, assert_tags_in_vocabulary, standin  # noqa: F401 - standin is a fixture
from test_resume import FAST, TINY, assert_identical, keep_checkpoint_of_step

EPISODE = 200  # Pendulum-v1's time limit: the online phases below finish one episode and stop inside the next
NETWORKS = {k: v for k, v in TINY["cal_ql"].items() if k != "online_steps"}
ONLINE = {"cal_ql": NETWORKS, "iql": dict(TINY["iql"], actor_dropout=0.0)}


def constant_critics(obs_dim: int, act_dim: int, q: float, num_critics: int = 2) -> cal_ql.Critics:
    critics = cal_ql.Critics(obs_dim, act_dim, 8, 1, num_critics)
    last = critics.net[-1]
    last.weight.data.zero_()
    last.bias.data.fill_(q)  # Q(s, a) = q for every s, a
    return critics


@pytest.mark.parametrize("calibration", [True, False])
def test_calibrated_conservative_term_is_the_papers_equation(calibration):
    """With Q = c everywhere and pi's samples at a known log-density l, the Cal-QL objective gives per state
        gap(s) = log[ n exp(c + d log 2) + 2n exp(max(c, V(s)) - l) ] - c
    (n uniform actions of density 2^-d, n from pi(.|s), n from pi(.|s')); plain CQL has c in place of max(c, V(s))."""
    torch.manual_seed(0)
    batch_size, obs_dim, act_dim, n, c, log_pi = 4, 3, 2, 5, 1.0, -0.5
    reference = torch.tensor([-30.0, 0.0, 2.0, 7.0])  # V^mu(s): two below Q = 1, two above
    batch = batch_of(batch_size, obs_dim, act_dim, reference)
    actor = cal_ql.TanhGaussianActor(obs_dim, act_dim, 8, 1)

    def fixed_samples(mean, log_std, num=None):  # pi's samples: fixed actions, at log-density log_pi
        shape = mean.shape if num is None else (num, *mean.shape)
        return torch.zeros(shape), torch.full(shape[:-1], log_pi)

    actor.sample = fixed_samples
    critics = constant_critics(obs_dim, act_dim, c)
    log_alpha, log_alpha_prime = cal_ql.LogMultiplier(), cal_ql.LogMultiplier()
    optimizers = {name: torch.optim.SGD(module.parameters(), lr=0.0) for name, module in
                  (("actor", actor), ("critic", critics), ("alpha", log_alpha), ("alpha_prime", log_alpha_prime))}  # fmt: skip
    args = cal_ql.Args(cql_num_actions=n, cql_alpha=3.0, calibration=calibration, bc_steps=0)
    metrics = cal_ql.update(batch, actor, critics, constant_critics(obs_dim, act_dim, c), log_alpha, log_alpha_prime,
                            optimizers, args, bc_warm_start=False)  # fmt: skip

    def expected_term(policy_q: torch.Tensor) -> float:  # alpha * sum over the two critics of E_s gap(s)
        gap = torch.log(n * math.exp(c + act_dim * math.log(2)) + 2 * n * torch.exp(policy_q - log_pi)) - c
        return args.cql_alpha * 2 * float(gap.mean())

    plain = expected_term(torch.full((batch_size,), c))
    calibrated = expected_term(torch.maximum(torch.tensor(c), reference))
    assert calibrated > plain + 1  # V(s) = 2 and 7 lift pi's Q in the push-down term
    assert float(metrics["losses/cql"]) == pytest.approx(calibrated if calibration else plain, rel=1e-5)
    assert float(metrics["cal_ql/below_reference"]) == 0.5  # Q = 1 is below V(s) = 2 and 7


def batch_of(batch_size: int, obs_dim: int, act_dim: int, reference: torch.Tensor) -> data.Transitions:
    """Random states and actions, rewards 0, no terminal, the given V^mu."""
    return data.Transitions(
        observations=torch.randn(batch_size, obs_dim), actions=torch.rand(batch_size, act_dim) * 2 - 1,
        rewards=torch.zeros(batch_size), next_observations=torch.randn(batch_size, obs_dim), terminals=torch.zeros(batch_size),
        next_actions=torch.zeros(batch_size, act_dim), next_action_known=torch.ones(batch_size),
        episode_starts=torch.zeros(batch_size, dtype=torch.bool), episode_ends=torch.zeros(batch_size, dtype=torch.bool),
        returns_to_go=reference, episode_returns=torch.zeros(batch_size), episode_ids=torch.zeros(batch_size, dtype=torch.long),
        timesteps=torch.zeros(batch_size, dtype=torch.long),
    )  # fmt: skip


def one_update(args: cal_ql.Args, batch: data.Transitions, actor, critics, critics_target, log_alpha_prime, lr: float = 0.0):
    """cal_ql.update once, with SGD at lr on log alpha' (0 elsewhere): the metrics, and log alpha' after the step."""
    log_alpha = cal_ql.LogMultiplier()
    optimizers = {name: torch.optim.SGD(module.parameters(), lr=lr if name == "alpha_prime" else 0.0) for name, module in
                  (("actor", actor), ("critic", critics), ("alpha", log_alpha), ("alpha_prime", log_alpha_prime))}  # fmt: skip
    return cal_ql.update(batch, actor, critics, critics_target, log_alpha, log_alpha_prime, optimizers, args, bc_warm_start=False)


def fixed_sampler(actions: list[float], log_pis: list[float]):
    """A stand-in for TanhGaussianActor.sample: with num samples, sample j is actions[j] (every state, every action
    dim) at log-density log_pis[j]; one sample is actions[0]."""

    def sample(mean, log_std, num=None):
        if num is None:
            return torch.full(mean.shape, actions[0]), torch.full(mean.shape[:-1], log_pis[0])
        shape = (num, *mean.shape)
        a = torch.tensor(actions[:num]).reshape(num, *[1] * mean.dim()).expand(shape)
        return a.clone(), torch.tensor(log_pis[:num]).reshape(num, *[1] * (mean.dim() - 1)).expand(shape[:-1]).clone()

    return sample


@pytest.mark.parametrize("backup_entropy", [False, True])
def test_max_backup_takes_the_max_over_actions_of_the_min_over_critics(backup_entropy):
    """Official order (conservative_sac.py:176-186): min over the critics for each sampled a', then the best a', whose
    log pi enters the soft backup. Q'_1(s', a) = a and Q'_2(s', a) = -a on a' in {-0.9, -0.2, 0.4, 0.9}: min_i = -|a|,
    its max -0.2 at a' = -0.2; the other order (rlkit's CQL, min_i max_j) would give 0.9."""
    torch.manual_seed(0)
    obs_dim, gamma, log_pis = 3, 0.9, [0.5, -1.5, -3.0, 1.0]
    target = cal_ql.Critics(obs_dim, 1, 8, 0, 2)  # no hidden layer: Q_i(s, a) = w_i . [s, a] + b_i
    target.net[0].weight.data.zero_()
    target.net[0].weight.data[:, obs_dim, 0] = torch.tensor([1.0, -1.0])
    target.net[0].bias.data.zero_()
    actor = cal_ql.TanhGaussianActor(obs_dim, 1, 8, 1)
    actor.sample = fixed_sampler([-0.9, -0.2, 0.4, 0.9], log_pis)
    args = cal_ql.Args(cql_num_actions=4, gamma=gamma, backup_entropy=backup_entropy)
    assert args.max_backup  # the official default
    critics = copy.deepcopy(target)  # the critics' own values do not enter the target
    metrics = one_update(args, batch_of(5, obs_dim, 1, torch.zeros(5)), actor, critics, target, cal_ql.LogMultiplier(1.0))
    entropy = -1.0 * log_pis[1] if backup_entropy else 0.0  # alpha_H = exp(0) = 1, log pi of the chosen a' = -0.2
    assert float(metrics["q/target_mean"]) == pytest.approx(gamma * (-0.2 + entropy), rel=1e-5)


def test_lagrange_loss_on_a_fixed_gap_is_the_official_codes():
    """Q = c everywhere fixes the gap (the equation of the test above); log alpha' starts at 1. Critic loss
    alpha' w (gap - tau) per critic, multiplier loss -alpha' w (gap - tau) averaged over the critics
    (conservative_sac.py:288-296): one SGD step of size lr moves log alpha' by lr alpha' w (gap - tau)."""
    torch.manual_seed(0)
    obs_dim, act_dim, n, c, log_pi, w, tau, lr = 3, 2, 5, 1.0, -0.5, 5.0, 4.0, 0.01
    actor = cal_ql.TanhGaussianActor(obs_dim, act_dim, 8, 1)
    actor.sample = fixed_sampler([0.0] * n, [log_pi] * n)
    gap = math.log(n * math.exp(c + act_dim * math.log(2)) + 2 * n * math.exp(c - log_pi)) - c  # about 3.7
    log_alpha_prime = cal_ql.LogMultiplier(1.0)
    args = cal_ql.Args(cql_num_actions=n, cql_alpha=w, lagrange=True, target_action_gap=tau, calibration=False)
    metrics = one_update(args, batch_of(4, obs_dim, act_dim, torch.zeros(4)), actor, constant_critics(obs_dim, act_dim, c),
                         constant_critics(obs_dim, act_dim, c), log_alpha_prime, lr)  # fmt: skip
    assert float(metrics["alpha/cql_prime"]) == pytest.approx(math.e)
    assert float(metrics["losses/cql"]) == pytest.approx(2 * math.e * w * (gap - tau), rel=1e-5)  # two critics
    assert float(log_alpha_prime.value) == pytest.approx(1.0 + lr * math.e * w * (gap - tau), rel=1e-5)  # gap < tau: down


def test_reference_of_a_failed_sparse_episode_is_the_failure_reward_forever():
    """AntMaze's 10r - 5: a 300-step episode cut by the time limit that never reached the goal has V^mu = -5 / (1 -
    gamma) = -500 at every step (the official code's rule), not the discounted sum to the cut (-5 at its last step);
    an episode that reached the goal keeps its discounted sum; dense rewards have no failure reward."""
    length, gamma = 300, 0.99
    failed = data.episode_columns(0, np.zeros((length + 1, 2), np.float32), np.zeros((length, 1), np.float32),
                                  [-5.0] * length, [0] * length)  # fmt: skip
    succeeded = data.episode_columns(1, np.zeros((4, 2), np.float32), np.zeros((3, 1), np.float32), [-5.0, 5.0, 5.0], [0, 0, 1])
    t = data.Transitions(**{k: torch.from_numpy(np.concatenate([failed[k], succeeded[k]])) for k in failed})
    assert finetuning.sparse_failure_reward(t.rewards) == -5.0
    assert finetuning.sparse_failure_reward(torch.tensor([-1.0, -0.5, 0.0])) is None
    reference = finetuning.discounted_returns(t, gamma, failure_reward=-5.0)
    assert torch.allclose(reference[:length], torch.full((length,), -500.0))
    assert reference[length:].tolist() == pytest.approx([-5 + gamma * 5 + gamma**2 * 5, 5 + gamma * 5, 5.0])
    plain = finetuning.discounted_returns(t, gamma)
    assert plain[length - 1] == -5.0 and plain[0] == pytest.approx(-5 * (1 - gamma**length) / (1 - gamma), rel=1e-5)


def test_cal_ql_starts_the_lagrange_multiplier_at_log_1(local_dataset, run_dir):
    result = cal_ql.main(cal_ql.Args(dataset=local_dataset("pendulum/medium-v0"), total_steps=2, online_steps=0, lagrange=True,
                                     run_dir=run_dir, save_model=True, **dict(FAST, eval_episodes=0), **NETWORKS))  # fmt: skip
    state = checkpoints.load_checkpoint(os.path.join(result.run_path, "checkpoint.pt"), "cal_ql")["models"]
    assert float(state["log_alpha_prime"]["value"]) == pytest.approx(1.0, abs=1e-3)  # two Adam steps of 3e-4 from 1
    assert float(state["log_alpha"]["value"]) == pytest.approx(0.0, abs=1e-3)


def test_discounted_returns_restart_at_each_episode():
    t = data.Transitions(**{name: torch.from_numpy(array) for name, array in
                            {k: np.concatenate([a[k], b[k]]) for a, b in [(
                                data.episode_columns(0, np.zeros((4, 1), np.float32), np.zeros((3, 1), np.float32), [1, 2, 3], [0, 0, 1]),
                                data.episode_columns(1, np.zeros((3, 1), np.float32), np.zeros((2, 1), np.float32), [5, 7], [0, 0]),
                            )] for k in a}.items()})  # fmt: skip
    returns = finetuning.discounted_returns(t, 0.5)
    assert returns.tolist() == [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0, 5 + 0.5 * 7, 7.0]


@pytest.mark.parametrize("mixing_ratio", [0.25, 1.0])
def test_online_batches_mix_offline_and_online_data_as_asked(local_dataset, mixing_ratio):
    dataset = data.load_dataset(local_dataset("pendulum/medium-v0"))
    offline = data.to_transitions(dataset)
    online = finetuning.OnlineInteraction(dataset, seed=0, device="cpu", prepare=lambda t: t)
    assert len(online.sample(offline, 64, mixing_ratio)) == 64  # before any online episode ended: offline only
    for _ in range(EPISODE):
        online.step(np.zeros(1, np.float32))
    assert online.episodes == 1 and len(online.data) == EPISODE and online.data.episode_ends[-1]
    assert online.last_return == pytest.approx(float(online.data.rewards.sum()), rel=1e-6)
    restored = finetuning.OnlineInteraction(dataset, seed=0, device="cpu", prepare=lambda t: t)
    restored.load_state_dict(online.state_dict())  # checkpointed as a new episode begins: no action taken in it yet
    assert torch.equal(restored.observation, online.observation) and len(restored.data) == EPISODE
    batch = online.sample(offline, 64, mixing_ratio)
    if mixing_ratio == 1.0:  # each episode is prepared alone as it ends: the same as preparing all the data at once
        discounted = lambda t: replace(t, returns_to_go=finetuning.discounted_returns(t, 0.9))  # noqa: E731
        growing = finetuning.OnlineInteraction(dataset, seed=0, device="cpu", prepare=discounted)
        for _ in range(2 * EPISODE):
            growing.step(np.ones(1, np.float32))
        assert growing.episodes == 2 and torch.equal(growing.batches.returns_to_go, discounted(growing.data).returns_to_go)
    from_online = torch.isin(batch.observations, online.data.observations).all(1)  # torque 0: states no dataset had
    assert int(from_online.sum()) == 64 - round(64 * mixing_ratio)


def test_mixing_ratio_minus_1_samples_the_union_of_offline_and_online_data_uniformly(local_dataset):
    """IQL's official code keeps one replay buffer: a batch then holds online transitions in proportion to their share."""
    torch.manual_seed(0)
    dataset = data.load_dataset(local_dataset("pendulum/medium-v0"))
    offline = data.to_transitions(dataset).index(torch.arange(3 * EPISODE))
    online = finetuning.OnlineInteraction(dataset, seed=0, device="cpu", prepare=lambda t: t)
    for _ in range(EPISODE):
        online.step(np.zeros(1, np.float32))
    batches = [online.sample(offline, 256, -1.0) for _ in range(40)]
    from_online = torch.cat([torch.isin(b.observations, online.data.observations).all(1) for b in batches])
    assert all(len(b) == 256 for b in batches)
    assert float(from_online.float().mean()) == pytest.approx(EPISODE / (4 * EPISODE), abs=0.02)  # 200 of 800


def test_iql_clip_target_bound_takes_in_online_rewards_above_the_offline_range(local_dataset, run_dir, monkeypatch):
    """Pendulum's rewards are <= 0, so --clip-target's bound from the offline data is [r_min / (1 - gamma), 0]. Online
    rewards raised by 1000 must widen it once their episode ends: the online transitions' targets (about 1000) then
    reach the critic, and its loss on them is large; bounded by the offline rewards alone, they were clipped to 0."""
    make_env = evaluation.make_env
    monkeypatch.setattr(evaluation, "make_env", lambda dataset, *mode: gym.wrappers.TransformReward(make_env(dataset, *mode), lambda r: r + 1000.0))
    result = iql.main(iql.Args(dataset=local_dataset("pendulum/medium-v0"), total_steps=20, online_steps=EPISODE + 20,
                               clip_target=True, return_range_scale=False, mixing_ratio=0.5, eval_every=1000, run_dir=run_dir,
                               **dict(FAST, log_every=10), **ONLINE["iql"]))  # fmt: skip
    losses = {e.step: e.value for e in EventAccumulator(result.run_path).Reload().Scalars("losses/critic")}
    assert max(v for step, v in losses.items() if step < 20 + EPISODE) < 1e3  # offline data only: rewards in [-16.3, 0]
    assert losses[20 + EPISODE + 20] > 1e5  # half the batch from the online episode, targets near 1000


@pytest.mark.parametrize("script", ["cal_ql", "iql"])
def test_both_phases_run_and_log_against_env_steps(script, local_dataset, run_dir):
    module = {"cal_ql": cal_ql, "iql": iql}[script]
    offline_steps, online_steps = 20, EPISODE + 20
    result = module.main(module.Args(dataset=local_dataset("pendulum/medium-v0"), total_steps=offline_steps,
                                     online_steps=online_steps, eval_every=offline_steps, save_model=True, run_dir=run_dir,
                                     **FAST, **ONLINE[script]))  # fmt: skip
    assert result.eval_steps == [20 * k for k in range(1, 13)]  # every 20 updates through both phases
    events = EventAccumulator(result.run_path).Reload()
    env_steps = {e.step: e.value for e in events.Scalars("charts/env_steps")}
    assert min(env_steps) > offline_steps and all(env_steps[step] == step - offline_steps for step in env_steps)
    assert [e.step for e in events.Scalars("online/episode_return")][0] >= offline_steps + EPISODE
    assert_tags_in_vocabulary(result.run_path)
    state = checkpoints.load_checkpoint(os.path.join(result.run_path, "checkpoint.pt"), script)["models"]["online"]
    assert state["env_steps"] == online_steps and state["episodes"] == 1 and len(state["actions"]) == online_steps - EPISODE
    assert len(state["data"]["rewards"]) == EPISODE and state["last_return"] == pytest.approx(float(state["data"]["rewards"].sum()), rel=1e-6)
    if script == "iql":  # a fine-tuning run keeps the actor's learning rate, as the official fine-tuning config
        assert [e.value for e in events.Scalars("charts/actor_lr")] == pytest.approx([module.Args().actor_lr] * 12)


@pytest.mark.parametrize("script", ["cal_ql", "iql"])
def test_run_resumed_inside_an_online_episode_ends_with_the_straight_runs_tensors(script, local_dataset, run_dir, tmp_path, monkeypatch):
    """Checkpointed 30 steps into the second online episode: the resumed run replays that episode's actions from its
    seed and goes on; networks, optimizers, random state and the online data all end bit-identical."""
    module = {"cal_ql": cal_ql, "iql": iql}[script]
    offline_steps, online_steps, checkpoint_step = 20, EPISODE + 60, 20 + EPISODE + 30
    middle = tmp_path / "middle" / "checkpoint.pt"
    keep_checkpoint_of_step(checkpoint_step, middle, monkeypatch)
    args = dict(dataset=local_dataset("pendulum/medium-v0"), total_steps=offline_steps, online_steps=online_steps,
                checkpoint_every=checkpoint_step, eval_every=1000, **FAST, **ONLINE[script])  # fmt: skip
    straight = module.main(module.Args(run_dir=run_dir, save_model=True, **args))
    expected = checkpoints.load_checkpoint(os.path.join(straight.run_path, "checkpoint.pt"), script)
    assert len(checkpoints.load_checkpoint(str(middle), script)["models"]["online"]["actions"]) == 30  # mid-episode

    with pytest.raises(ValueError, match="in its online phase, which began after --total-steps 20 offline updates"):
        module.main(module.Args(resume=str(middle), **dict(args, total_steps=10)))
    module.main(module.Args(resume=str(middle), **args))
    resumed = checkpoints.load_checkpoint(str(middle), script)
    assert resumed["step"] == expected["step"] == offline_steps + online_steps
    assert_identical(expected["models"], resumed["models"])


@pytest.mark.parametrize("dataset_id", list(WIDTHS))
def test_online_phase_acts_in_every_familys_env(dataset_id, standin, run_dir):  # noqa: F811 - the fixture
    """Dict and nested observations, remote eval env specs: the online phase flattens the env's observations as the
    data was flattened, steps the env and trains on the mixed batches."""
    result = cal_ql.main(cal_ql.Args(dataset=standin(dataset_id), total_steps=4, online_steps=6, batch_size=16, eval_every=10,
                                     eval_episodes=1, log_every=5, run_dir=run_dir, save_model=True, progress=False,
                                     **NETWORKS))  # fmt: skip
    online = checkpoints.load_checkpoint(f"{result.run_path}/checkpoint.pt", "cal_ql")["models"]["online"]
    assert online["env_steps"] == 6 and online["observation"].shape == (WIDTHS[dataset_id],)
    assert_tags_in_vocabulary(result.run_path)
