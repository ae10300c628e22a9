"""d3rlpy's updates/s of one algorithm, configured to CORL's networks and batch: the d3rlpy side of
`benchmarks/corl.py speed --d3rlpy-python <python of a venv with d3rlpy>`.

    python benchmarks/d3rlpy_speed.py ARRAYS.npz iql 200 1 process   # prints updates/s

Runs in d3rlpy's own interpreter (its venv needs torch, numpy and d3rlpy only: nothing of this project is imported).
ARRAYS.npz holds the Hopper-shaped random dataset the CORL side is timed on (corl.py writes it: observations,
actions in [-1, 1], rewards, terminals, timeouts). The dataset becomes a d3rlpy MDPDataset; 16 batches are drawn
from it by d3rlpy's own sampler (transitions, or DT's trajectory windows of its context size) before the clock
starts, and `algo.update(batch)` is timed over 2N calls after 20 warm-up calls: what `fit()` does per step, less the
sampling (as on CORL's side, whose `.train(batch)` is timed the same way).

| algorithm | d3rlpy at CORL's sizes | not matched |
|---|---|---|
| bc | `BC`: deterministic policy 2x256, batch 256 | — |
| td3_bc | `TD3PlusBC`: actor and 2 critics 2x256, batch 256 | — |
| iql | `IQL`: Gaussian actor, 2 Q, V, 2x256, batch 256 | — |
| cql | `CQL`: actor and 2 critics 3x256, 10 sampled actions, batch 256, fixed alpha (CORL's cql_lagrange off) | d3rlpy samples its actions with its own scheme |
| dt | `DecisionTransformer`: state embedding Linear(obs, 128), 3 layers, 1 head, context 20, dropout 0.1, GELU, batch 64 | d3rlpy's Adam, no warm-up schedule or gradient clipping (CORL: AdamW, warm-up, clip 0.25) |
"""

from __future__ import annotations

import sys
import time

import numpy as np


def algorithm_config(algorithm: str):
    """d3rlpy's config of `algorithm` at CORL's networks, batch and (where it changes the work) settings."""
    import d3rlpy

    mlp = lambda *units: d3rlpy.models.VectorEncoderFactory(hidden_units=list(units))  # noqa: E731
    if algorithm == "bc":
        return d3rlpy.algos.BCConfig(batch_size=256, learning_rate=3e-4, encoder_factory=mlp(256, 256))
    if algorithm == "td3_bc":
        return d3rlpy.algos.TD3PlusBCConfig(batch_size=256, actor_encoder_factory=mlp(256, 256), critic_encoder_factory=mlp(256, 256))
    if algorithm == "iql":
        return d3rlpy.algos.IQLConfig(batch_size=256, actor_encoder_factory=mlp(256, 256), critic_encoder_factory=mlp(256, 256),
                                      value_encoder_factory=mlp(256, 256))  # fmt: skip
    if algorithm == "cql":
        return d3rlpy.algos.CQLConfig(batch_size=256, actor_encoder_factory=mlp(256, 256, 256), critic_encoder_factory=mlp(256, 256, 256),
                                      n_action_samples=10, conservative_weight=10.0, actor_learning_rate=3e-5, alpha_learning_rate=0.0)  # fmt: skip
    if algorithm == "dt":
        state_embedding = d3rlpy.models.VectorEncoderFactory(hidden_units=[128], exclude_last_activation=True)
        return d3rlpy.algos.DecisionTransformerConfig(batch_size=64, context_size=20, num_heads=1, num_layers=3, encoder_factory=state_embedding,
                                                      activation_type="gelu", max_timestep=1000)  # fmt: skip
    raise KeyError(f"no d3rlpy configuration for {algorithm}")


def updates_per_second(arrays_path: str, algorithm: str, updates: int, threads: int, clock: str) -> float:
    import d3rlpy
    import torch

    torch.set_num_threads(threads)
    now = time.process_time if clock == "process" else time.perf_counter
    arrays = np.load(arrays_path)
    dataset = d3rlpy.dataset.MDPDataset(arrays["observations"], arrays["actions"], arrays["rewards"], arrays["terminals"], arrays["timeouts"])
    config = algorithm_config(algorithm)
    algo = config.create(device="cpu:0")
    algo.build_with_dataset(dataset)
    if algorithm == "dt":
        batches = [dataset.sample_trajectory_batch(config.batch_size, length=config.context_size) for _ in range(16)]
    else:
        batches = [dataset.sample_transition_batch(config.batch_size) for _ in range(16)]
    for i in range(20):  # warm-up: allocator, first-call costs
        algo.update(batches[i % len(batches)])
    start = now()
    for i in range(2 * updates):
        algo.update(batches[i % len(batches)])
    return 2 * updates / (now() - start)


if __name__ == "__main__":
    path, algorithm, updates, threads, clock = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    print(updates_per_second(path, algorithm, updates, threads, clock))
