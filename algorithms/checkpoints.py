"""Checkpoints: what an exact continuation of a run needs, written safely and read back safely.

Lives here: saving (atomically, a full disk named, a dead process's temporary file removed), reading (torch.load
with weights_only=True: a checkpoint never runs code; a file that is not one is named), refusing another algorithm's
checkpoint, the Python/numpy/torch generator states, which flags --resume may change (RUN_CONTROL) while every other
one comes from the checkpoint, and the checkpoint's settings as its script's Args (saved_args).
Lives elsewhere: when to save and how to resume the loop (training.Run), the data (data.py).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import pickle
import random
import shutil
import warnings
from dataclasses import fields, replace

import numpy as np
import torch

import checks
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
    file, nor a temporary one, and the previous checkpoint stays as it was. The temporary files of processes that
    died while writing here (kill -9) are removed first."""
    state = {
        "algorithm": algorithm, "dataset": args["dataset"], "args": args, "step": step, "models": models,
        "normalizer": {"mean": normalizer.mean, "std": normalizer.std}, "rng": rng_state(),
    }  # fmt: skip
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    for stale in glob.glob(f"{glob.escape(path)}.tmp-*"):
        if not _alive(stale.rsplit("-", 1)[1]):
            with contextlib.suppress(OSError):
                os.remove(stale)
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


def _alive(pid: str) -> bool:
    """Whether the process `pid` runs (another user's counts); a name that is no pid is nobody's."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        pass
    return True


KEYS = ("algorithm", "dataset", "args", "step", "models", "normalizer", "rng")  # what save_checkpoint writes


def read_checkpoint(path: str, device: torch.device | str = "cpu") -> dict:
    """A checkpoint.pt as torch.load(weights_only=True) reads it, or one sentence on what to pass instead."""
    fix = "pass the checkpoint.pt of a run saved with --save-model (or --checkpoint-every, or stopped by Ctrl-C)"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint at '{path}': {fix}.")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:  # torch's message advises weights_only=False: never print that advice
        raise checks.UserError(f"'{path}' holds Python objects a checkpoint never has, so it is not loaded (that could "
                               f"run code): {fix}.") from error  # fmt: skip
    except Exception as error:  # noqa: BLE001 - not a torch file at all: text, an empty or truncated file, ...
        raise checks.UserError(f"'{path}' is not a checkpoint (torch cannot read it: {type(error).__name__}): {fix}.") from error
    missing = [key for key in KEYS if key not in state] if isinstance(state, dict) else list(KEYS)
    if missing:
        raise checks.UserError(f"'{path}' is a torch file but not a checkpoint of these scripts (no {', '.join(missing)}): {fix}.")
    return state


def load_checkpoint(path: str, algorithm: str | tuple[str, ...], device: torch.device | str = "cpu") -> dict:
    """Read a checkpoint; refuse one of another algorithm, naming the script that reads it."""
    state = read_checkpoint(path, device)
    expected = (algorithm,) if isinstance(algorithm, str) else algorithm
    if state.get("algorithm") not in expected:
        raise checks.UserError(
            f"Checkpoint '{path}' was written by {state.get('algorithm')}, not {' or '.join(expected)}: "
            f"load it with algorithms/{state.get('algorithm')}.py."
        )
    return state



# Flags that steer a run, not what it learns: --resume may change them; any other flag comes from the checkpoint.
RUN_CONTROL = ("total_steps", "online_steps", "resume", "progress", "eval_every", "eval_episodes", "log_every", "checkpoint_every",
               "save_model", "track", "wandb_project", "device", "threads", "compile", "cudagraphs", "run_dir", "capture_video")  # fmt: skip


def resumed_args(args, state: dict):
    """The checkpoint's own settings, with the run-control flags of this command line (RUN_CONTROL).

    A learning flag left at its default takes the checkpoint's value; one set to something else than the
    checkpoint's is refused: continuing with a mix of settings would be neither run.
    """
    defaults, saved = type(args)(), state["args"]
    unknown = [f"{name}={saved[name]}" for name in saved if not hasattr(args, name)]
    new = [f"--{f.name.replace('_', '-')}" for f in fields(args) if f.name not in saved and f.name not in RUN_CONTROL]
    if unknown or new:  # a checkpoint of another version of the script: say what does not carry over
        said = [f"its settings {', '.join(unknown)} are unknown here and ignored"] if unknown else []
        said += [f"it has no {', '.join(new)}: this command's values are used"] if new else []
        warnings.warn(f"The checkpoint {args.resume} comes from another version of this script: {'; '.join(said)}.", checks.Notice)
    conflicts = [
        f"--{name.replace('_', '-')} {getattr(args, name)} (the checkpoint's: {saved[name]})"
        for name in saved
        if name not in RUN_CONTROL and hasattr(args, name)
        and getattr(args, name) != getattr(defaults, name) and _plain(getattr(args, name)) != _plain(saved[name])
    ]  # fmt: skip
    if conflicts:
        raise checks.UserError(
            f"--resume continues the run in {args.resume} with its own settings, and this command changes "
            f"{', '.join(conflicts)}: drop those flags, or start a new run without --resume."
        )
    restored = saved_args(defaults, state)
    return replace(args, **{name: getattr(restored, name) for name in saved if name not in RUN_CONTROL and hasattr(args, name)})


def saved_args(defaults, state: dict):
    """The checkpoint's settings as its script's Args (`defaults`: Args()), tuples as tuples; a setting the script
    no longer has is left out, one it has gained keeps its default."""
    saved = {name: _restore_type(getattr(defaults, name), value) for name, value in state["args"].items() if hasattr(defaults, name)}
    return replace(defaults, **saved)


def _plain(value):
    return list(value) if isinstance(value, (tuple, list)) else value


def _restore_type(default, value):
    return tuple(value) if isinstance(default, tuple) else value
