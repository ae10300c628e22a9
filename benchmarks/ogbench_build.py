"""Time small local builds of OGBench datasets and extrapolate to OGBench's full size (one core).

    taskset -c 0 python benchmarks/ogbench_build.py --rows 8000

Each dataset is built with OGBench's episode length and enough training episodes for about `--rows` env
steps (plus the val tenth, at least one episode) into a temporary folder. Env steps/s leaves out making the env (timed apart: it is paid once per
build); the full-size build time is OGBench's rows (episodes and their tenth for val, x episode length)
divided by that rate, plus the env's making; the full size scales the measured compressed bytes per row.
"""

import os
import sys
import tempfile
import time
from dataclasses import dataclass

import gymnasium as gym
import tyro

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "algorithms"))
import ogbench_suite  # noqa: E402

DEFAULT_NAMES = ("pointmaze-medium-navigate-v0", "pointmaze-medium-stitch-v0", "cube-single-play-v0",
                 "cube-double-play-v0", "scene-play-v0", "puzzle-3x3-play-v0")  # fmt: skip


@dataclass
class Args:
    names: tuple[str, ...] = DEFAULT_NAMES
    """OGBench ids to time"""
    rows: int = 8000
    """env steps (file rows) of training episodes per timed build, at OGBench's episode length"""
    seed: int = 0
    """build seed"""


def seconds_to_make(env_name: str, kind: str) -> float:
    """Making the env and its first reset, as a build does once."""
    start = time.perf_counter()
    kwargs = {"mode": "data_collection"} if kind in ("play", "noisy") else {}
    env = gym.make(env_name, terminate_at_goal=False, **kwargs)
    env.reset(seed=0)
    seconds = time.perf_counter() - start
    env.close()
    return seconds


def main(args: Args) -> str:
    lines = ["| dataset | timed rows | env steps/s | full size (episodes x steps) | full build, min | full files, MB |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for name in args.names:
        recipe = ogbench_suite.recipe_for(name)
        make = seconds_to_make(recipe.env_name, recipe.kind)
        with tempfile.TemporaryDirectory() as directory:
            episodes = -(-args.rows // recipe.episode_length)  # rounded up
            ogbench_suite.generate(name, directory, episodes, seed=args.seed, progress=False)
            paths = ogbench_suite.dataset_paths(name, directory)
            infos = [ogbench_suite.local_build_info(path) for path in paths]
            size = sum(path.stat().st_size for path in paths)
        rows = sum(info["rows"] for info in infos)
        rate = rows / max(infos[0]["build_seconds"] - make, 1e-9)
        full_rows = (recipe.episodes + recipe.episodes // 10) * recipe.episode_length
        lines.append(f"| {name} | {rows} | {rate:,.0f} | {recipe.episodes} x {recipe.episode_length} (+{recipe.episodes // 10} val) "
                     f"| {(full_rows / rate + make) / 60:.1f} | {size / rows * full_rows / 1e6:.0f} |")  # fmt: skip
        print(lines[-1], flush=True)
    return "\n".join(lines)


if __name__ == "__main__":
    main(tyro.cli(Args))
