"""Refusals: what a user got wrong, said in one line, and the flag rules every script's Args obeys.

Lives here: `UserError` (the base of every refusal: one sentence naming the problem and the fix; data.DatasetError
is one), `Notice` (a warning a user should read, printed as one `warning:` line), the handler that prints an uncaught
refusal as one `error:` line with no traceback (`install_handler`, called by training.Run; CLEANOFFRL_DEBUG=1 shows
the traceback), and the flag rules (`RULES`), checked by name on any script's Args before anything is built.
Lives elsewhere: the checks of a dataset on load (data.py), of a checkpoint file (checkpoints.py), of an evaluation
env (evaluation.py); keeping what was trained when a run stops on an error (training.Run.steps).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import warnings


class UserError(ValueError):
    """A mistake a user can fix; its message is one sentence naming the problem and the fix."""


class Notice(UserWarning):
    """Something a run handles (and says how), but a user should know."""


# ----------------------------------------------------------------------------------------------
# One line per refusal, for every script.

REFUSALS = (UserError, OSError)  # ours, and the machine's (a full disk, a missing file, a permission): no bug to trace


def install_handler() -> None:
    """From now on an uncaught refusal prints `error: <sentence>` on stderr and exits with status 2, Ctrl-C prints
    `interrupted` (status 130), and a Notice prints as `warning: <sentence>`; any other exception (a bug) keeps its
    traceback. CLEANOFFRL_DEBUG=1 keeps Python's own output for everything."""
    if os.environ.get("CLEANOFFRL_DEBUG", "0") not in ("", "0"):
        return
    sys.excepthook, warnings.formatwarning = _print_refusal, _format_notice


def _print_refusal(kind, error, traceback) -> None:
    if not issubclass(kind, REFUSALS + (KeyboardInterrupt,)):
        return sys.__excepthook__(kind, error, traceback)
    sys.stdout.flush()
    print("interrupted" if issubclass(kind, KeyboardInterrupt) else f"error: {error}", file=sys.stderr, flush=True)
    sys.exit(130 if issubclass(kind, KeyboardInterrupt) else 2)  # SystemExit from the hook sets the exit status


def _format_notice(message, category, filename, lineno, line=None) -> str:
    if issubclass(category, Notice):
        return f"warning: {message}\n"
    return _PLAIN_FORMAT(message, category, filename, lineno, line)


_PLAIN_FORMAT = warnings.formatwarning


# ----------------------------------------------------------------------------------------------
# The flag rules, by field name: any script's Args gets them (training.Run checks them first). A new numeric field
# needs a rule here or a place in ANY_NUMBER (tests/test_reliability.py checks every script). Tuples: each value.

RULES = (
    (("total_steps", "batch_size", "hidden_dim", "hidden_layers", "critic_hidden_layers", "num_critics", "embed_dim",
      "num_heads", "num_layers", "context_length", "max_timestep", "cql_num_actions", "num_action_samples", "num_samples",
      "policy_freq", "eval_every", "log_every", "threads", "eval_rounds", "latent_dim", "subgoal_steps", "rep_dim"), lambda v: v >= 1, "at least 1"),
    (("checkpoint_every", "eval_episodes", "online_steps", "bc_steps", "ttt_steps", "ttt_batch_size", "warmup_steps",
      "alpha", "cql_alpha", "kl_coefficient", "temperature", "policy_noise", "noise_clip", "weight_decay",
      "ttt_bc_weight", "ttt_learning_rate", "rtg_scale", "target_action_gap", "betas", "actor_bc_coef", "critic_bc_coef",
      "high_alpha", "low_alpha"), lambda v: v >= 0, "0 or more"),
    (("learning_rate", "actor_lr", "critic_lr", "value_lr", "max_weight", "cql_temperature", "grad_clip"),
     lambda v: v > 0, "positive"),
    (("seed",), lambda v: 0 <= v < 2**32, "in [0, 2**32)"),
    (("gamma", "discount", "tau", "target_update_rate"), lambda v: 0 < v <= 1, "in (0, 1]"),
    (("validation_fraction", "dropout", "actor_dropout"), lambda v: 0 <= v < 1, "in [0, 1)"),
    (("top_fraction", "value_data_fraction", "policy_data_fraction"), lambda v: 0 < v <= 1, "in (0, 1]"),
    (("mixing_ratio",), lambda v: 0 <= v <= 1 or v == -1, "in [0, 1], or -1 for the union of offline and online data sampled uniformly"),
    (("value_current_goals", "value_random_goals", "actor_random_goals"), lambda v: 0 <= v <= 1, "in [0, 1]"),
    (("expectile",), lambda v: 0 < v < 1, "in (0, 1)"),
    (("reward_scale",), lambda v: v != 0, "nonzero (0 would make every reward --reward-shift)"),
)  # fmt: skip
ANY_NUMBER = ("reward_shift", "target_entropy", "target_returns")  # any finite value means something


def check_flags(args) -> None:
    """Refuse the first flag outside its rule (or not finite), naming it, its value and its default."""
    for field in dataclasses.fields(args):
        value = getattr(args, field.name)
        values = value if isinstance(value, tuple) else (value,)
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        rule = next(((test, what) for names, test, what in RULES if field.name in names), (math.isfinite, "a finite number"))
        broken = [v for v in numbers if not (math.isfinite(v) and rule[0](v))]
        if broken:
            default = "" if field.default is dataclasses.MISSING else f" (the default is {field.default})"
            raise UserError(f"--{field.name.replace('_', '-')} must be {rule[1]}, got {value}{default}.")
    values = dataclasses.asdict(args)
    if values.get("embed_dim", 0) % values.get("num_heads", 1):
        raise UserError(f"--embed-dim {args.embed_dim} must be divisible by --num-heads {args.num_heads}: each head gets an equal share.")
    if "num_samples" in values and not args.num_samples:
        raise UserError("--num-samples needs one or more positive integers, e.g. --num-samples 1 4 16 64.")
    if "total_steps" not in values and args.eval_episodes < 1:  # the test-time scripts: evaluating is all they do
        raise UserError(f"--eval-episodes must be at least 1, got {args.eval_episodes}: evaluating is all this script does.")
