"""Test setup: one torch thread, and tiny local datasets in a temporary Minari root (never the user's).

Each dataset id has one size for the whole session (SIZES); it is built on first request by the
`local_dataset` fixture. Learning tests ask for the larger ones.
"""

import os

import pytest
import torch

# Pinned before anything spins up OpenMP: two threads under load collapse throughput (NOTES.md).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
torch.set_num_threads(1)

SIZES = {
    "pendulum/random-v0": 6_000,
    "pendulum/medium-v0": 20_000,
    "pendulum/expert-v0": 6_000,
    "pendulum/mixed-v0": 6_000,
    "pointmaze/umaze-medium-v0": 3_000,
    "pointmaze/umaze-stitch-v0": 30_000,
}
REFERENCE_EPISODES = 10  # episodes for ref_min/ref_max scores of tiny datasets (100 for real ones)


@pytest.fixture(scope="session", autouse=True)
def minari_root(tmp_path_factory):
    """Every test (and every subprocess it starts) sees a temporary MINARI_DATASETS_PATH."""
    root = tmp_path_factory.mktemp("minari")
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    yield root
    if previous is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = previous


@pytest.fixture(scope="session", autouse=True)
def ogbench_folder(tmp_path_factory):
    """OGBench files (ogbench/* ids) are read and built in a temporary folder, never the user's ~/.ogbench/data."""
    previous = os.environ.get("CLEANOFFRL_OGBENCH_DIR")
    os.environ["CLEANOFFRL_OGBENCH_DIR"] = str(tmp_path_factory.mktemp("ogbench"))
    yield
    if previous is None:
        os.environ.pop("CLEANOFFRL_OGBENCH_DIR", None)
    else:
        os.environ["CLEANOFFRL_OGBENCH_DIR"] = previous


@pytest.fixture(scope="session")
def local_dataset(minari_root):
    """local_dataset(id) builds the session's tiny version of a local-suite id once and returns the id."""
    import local_suite

    def build(dataset_id: str) -> str:
        local_suite.build_local_dataset(dataset_id, SIZES.get(dataset_id, 2_000), ref_episodes=REFERENCE_EPISODES)
        return dataset_id

    return build


@pytest.fixture
def run_dir(tmp_path):
    return str(tmp_path / "runs")
