"""Build every local-suite dataset from scratch and tabulate build time, size and returns.

    MINARI_DATASETS_PATH=/tmp/suite python benchmarks/suite_stats.py --out benchmarks/results/datasets.md

Builds into the Minari root given by MINARI_DATASETS_PATH (use a fresh folder to time the builds).
"""

import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import tyro

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "algorithms"))
import data  # noqa: E402
import evaluation  # noqa: E402
import local_suite  # noqa: E402


@dataclass
class StatsArgs:
    dataset_ids: tuple[str, ...] = local_suite.LOCAL_SUITE
    """ids to build and describe"""
    num_transitions: int = local_suite.DEFAULT_TRANSITIONS
    """transitions per dataset"""
    out: str | None = None
    """write the markdown table here too"""


def main(args: StatsArgs) -> str:
    lines = [
        f"Local suite, {args.num_transitions} transitions each, built with `python algorithms/local_suite.py ID` "
        "(reference scores: mean return of 100 uniform-random and 100 scripted-expert episodes on the eval task).\n",
        "| dataset | build s | MB | episodes | behaviour return | ref min (random) | ref max (expert) | behaviour normalised |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dataset_id in args.dataset_ids:
        start = time.time()
        path = local_suite.build_local_dataset(dataset_id, args.num_transitions, force=True)
        seconds = time.time() - start
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
        dataset = data.load_dataset(dataset_id)
        returns = np.array([episode.rewards.sum() for episode in dataset.iterate_episodes()])
        metadata = dataset.storage.metadata
        normalised = evaluation.normalized_score(dataset, returns.mean()[None])[0]
        lines.append(
            f"| {dataset_id} | {seconds:.1f} | {size:.1f} | {len(returns)} | {returns.mean():.1f} ± {returns.std():.1f} "
            f"| {metadata['ref_min_score']:.1f} | {metadata['ref_max_score']:.1f} | {normalised:.1f} |"
        )
        print(lines[-1], flush=True)
    text = "\n".join(lines)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return text


if __name__ == "__main__":
    main(tyro.cli(StatsArgs))
