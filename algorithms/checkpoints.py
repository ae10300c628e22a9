"""Checkpoints: what an exact continuation of a run needs, written safely and read back safely.

Lives here: saving (atomically, a full disk named), reading (torch.load with weights_only=True: a checkpoint never
runs code), refusing another algorithm's checkpoint, the Python/numpy/torch generator states, and which flags
--resume may change (RUN_CONTROL) while every other one comes from the checkpoint.
Lives elsewhere: when to save and how to resume the loop (training.Run), the data (data.py).
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
from dataclasses import replace

import numpy as np
import torch

import data


def rng_state() -> dict:
    """Python, numpy, torch (and CUDA) generator states, in types torch.load(weights_only=True) reads."""
    numpy_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str, algorithm: str, args: dict, step: int, models: dict, normalizer: data.Normalizer) -> None:
    """Write a checkpoint atomically (temporary file, then rename): a crash or a full disk never leaves half a
    file, nor a temporary one, and the previous checkpoint stays as it was."""
    state = {
        "algorithm": algorithm, "dataset": args["dataset"], "args": args, "step": step, "models": models,
        "normalizer": {"mean": normalizer.mean, "std": normalizer.std}, "rng": rng_state(),
    }  # fmt: skip
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        torch.save(state, temporary)
        os.replace(temporary, path)
    except (OSError, RuntimeError) as error:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        # torch.save reports a full disk as "RuntimeError: [enforce fail at inline_container.cc] . unexpected pos"
        full = getattr(error, "errno", None) == errno.ENOSPC or "unexpected pos" in str(error) or shutil.disk_usage(folder).free < 2**20
        if not (full or isinstance(error, OSError)):
            raise
        kept = f" The previous checkpoint {path} is kept." if os.path.exists(path) else ""
        cause = "the disk is full: free some space" if full else f"{error.strerror or error}: fix that"
        raise OSError(f"Could not write the checkpoint in {folder} ({cause}), then resume.{kept}") from error


def read_checkpoint(path: str, device: torch.device | str = "cpu") -> dict:
    """A checkpoint.pt as torch.load(weights_only=True) reads it, or one sentence on what to pass instead."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint at '{path}': pass the checkpoint.pt a run saved with --save-model.")
    return torch.load(path, map_location=device, weights_only=True)


def load_checkpoint(path: str, algorithm: str | tuple[str, ...], device: torch.device | str = "cpu") -> dict:
    """Read a checkpoint; refuse one of another algorithm, naming the script that reads it."""
    state = read_checkpoint(path, device)
    expected = (algorithm,) if isinstance(algorithm, str) else algorithm
    if state.get("algorithm") not in expected:
        raise ValueError(
            f"Checkpoint '{path}' was written by {state.get('algorithm')}, not {' or '.join(expected)}: "
            f"load it with algorithms/{state.get('algorithm')}.py."
        )
    return state



# Flags that steer a run, not what it learns: --resume may change them; any other flag comes from the checkpoint.
RUN_CONTROL = ("total_steps", "online_steps", "resume", "progress", "eval_every", "eval_episodes", "log_every", "checkpoint_every",
               "save_model", "track", "wandb_project", "device", "threads", "compile", "cudagraphs", "run_dir")  # fmt: skip


def resumed_args(args, state: dict):
    """The checkpoint's own settings, with the run-control flags of this command line (RUN_CONTROL).

    A learning flag left at its default takes the checkpoint's value; one set to something else than the
    checkpoint's is refused: continuing with a mix of settings would be neither run.
    """
    defaults, saved = type(args)(), state["args"]
    conflicts = [
        f"--{name.replace('_', '-')} {getattr(args, name)} (the checkpoint's: {saved[name]})"
        for name in saved
        if name not in RUN_CONTROL and hasattr(args, name)
        and getattr(args, name) != getattr(defaults, name) and _plain(getattr(args, name)) != _plain(saved[name])
    ]  # fmt: skip
    if conflicts:
        raise ValueError(
            f"--resume continues the run in {args.resume} with its own settings, and this command changes "
            f"{', '.join(conflicts)}: drop those flags, or start a new run without --resume."
        )
    learned = {name: _restore_type(getattr(defaults, name), saved[name]) for name in saved if name not in RUN_CONTROL and hasattr(args, name)}
    return replace(args, **learned)


def _plain(value):
    return list(value) if isinstance(value, (tuple, list)) else value


def _restore_type(default, value):
    return tuple(value) if isinstance(default, tuple) else value
