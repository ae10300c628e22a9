"""Nothing nonsensical is accepted in silence, and every refusal is one line naming the problem and the fix (issue 26):
the flag rules of every script, the data's checks on load, checkpoint files, and the one-line handler itself.
docs/reliability.md lists each case with what it prints."""

import dataclasses
import importlib
import os
import pickle
import re
import subprocess
import sys
import warnings

import h5py
import minari
import numpy as np
import pytest
import torch

import bc
import checkpoints
import checks
import data
import td3_bc
from test_data import episode, write_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "algorithms"))
                 if f.endswith(".py") and "\nclass Args" in open(os.path.join(ROOT, "algorithms", f)).read())  # fmt: skip
FAST = dict(batch_size=32, hidden_dim=16, eval_episodes=0, log_every=100, progress=False, total_steps=20)


def default_args(script: str, **flags):
    """A script's Args with its defaults (the test-time scripts' required --checkpoint filled in) and `flags`."""
    required = {"checkpoint": "runs/x/checkpoint.pt"} if script in ("opex", "ttt") else {}
    return importlib.import_module(script).Args(**required, **flags)


# ----------------------------------------------------------------------------------------------
# Flags: one table of rules (checks.RULES), by field name, for every script.


def numeric_fields(script: str) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(importlib.import_module(script).Args) if re.search(r"\b(int|float)\b", str(f.type))]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_numeric_flag_has_a_rule_and_the_defaults_pass_them(script):
    ruled = {name for names, _, _ in checks.RULES for name in names} | set(checks.ANY_NUMBER)
    assert not {f.name for f in numeric_fields(script)} - ruled, "give each new numeric flag a rule in checks.RULES"
    checks.check_flags(default_args(script))


BREAKERS = (0, -1, 1.5, 1.0, 2**32)  # for each rule, the first of these it refuses


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_rule_refuses_naming_the_flag_its_value_and_default(script):
    checked = 0
    for field in numeric_fields(script):
        rule = next(((test, what) for names, test, what in checks.RULES if field.name in names), None)
        if rule is None:
            continue
        bad = next(v for v in BREAKERS if not rule[0](v))
        value = (bad,) if "tuple" in str(field.type) else bad
        flag = field.name.replace("_", "-")
        with pytest.raises(checks.UserError, match=re.escape(f"--{flag} must be {rule[1]}, got {value}")):
            checks.check_flags(default_args(script, **{field.name: value}))
        checked += 1
    assert checked == len([f for f in numeric_fields(script) if f.name not in checks.ANY_NUMBER]) >= 4


@pytest.mark.parametrize(("script", "flags", "says"), [
    ("bc", dict(hidden_dim=0), r"--hidden-dim must be at least 1, got 0 \(the default is 256\)\."),
    ("td3_bc", dict(gamma=1.5), r"--gamma must be in \(0, 1\], got 1.5 \(the default is 0.99\)\."),
    ("td3_bc", dict(tau=2.0), r"--tau must be in \(0, 1\], got 2.0"),
    ("bc", dict(eval_every=0), r"--eval-every must be at least 1, got 0"),
    ("td3_bc", dict(actor_lr=-3e-4), r"--actor-lr must be positive, got -0.0003"),
    ("bc", dict(seed=-1), r"--seed must be in \[0, 2\*\*32\), got -1"),
    ("bc", dict(validation_fraction=1.0), r"--validation-fraction must be in \[0, 1\), got 1.0"),
    ("bc", dict(top_fraction=0.0), r"--top-fraction must be in \(0, 1\], got 0.0"),
    ("td3_bc", dict(reward_scale=0.0), r"--reward-scale must be nonzero \(0 would make every reward --reward-shift\)"),
    ("td3_bc", dict(reward_shift=float("inf")), r"--reward-shift must be a finite number, got inf"),
    ("iql", dict(expectile=1.0), r"--expectile must be in \(0, 1\), got 1.0"),
    ("dt", dict(embed_dim=30, num_heads=4), r"--embed-dim 30 must be divisible by --num-heads 4"),
    ("sfbc", dict(num_samples=()), r"--num-samples needs one or more positive integers"),
])  # fmt: skip
def test_a_bad_flag_is_refused_before_anything_is_built(script, flags, says, run_dir):
    module = importlib.import_module(script)
    fast = {name: value for name, value in FAST.items() if hasattr(module.Args, name)}
    with pytest.raises(checks.UserError, match=says):  # the dataset does not exist: the flags were checked before it
        module.main(module.Args(dataset="nowhere/never-built-v0", run_dir=run_dir, **{**fast, **flags}))
    assert not os.path.exists(run_dir)


def test_a_test_time_script_without_episodes_is_refused():
    for script in ("opex", "ttt"):
        with pytest.raises(checks.UserError, match="--eval-episodes must be at least 1, got 0: evaluating is all this script does"):
            checks.check_flags(default_args(script, eval_episodes=0))


# ----------------------------------------------------------------------------------------------
# Data: checked once on load.


def noisy_episodes(count=4, length=30, rewards=None, constant_dim=None, seed=0):
    rng = np.random.default_rng(seed)
    episodes = []
    for i in range(count):
        observations = rng.normal(size=(length + 1, 2)).astype(np.float32)
        if constant_dim is not None:
            observations[:, constant_dim] = 3.0
        actions = rng.uniform(-1, 1, (length, 1)).astype(np.float32)
        episodes.append(episode(rng.normal(size=length) if rewards is None else rewards, i % 2 == 0, observations, actions))
    return episodes


def test_a_dataset_id_that_is_a_path_is_refused_without_asking_the_network(monkeypatch):
    monkeypatch.setattr(minari, "load_dataset", lambda *a, **k: pytest.fail("asked Minari for a path"))
    for path in ("../../etc/passwd", "/etc/passwd-v0", "pendulum/../../x-v0"):
        with pytest.raises(data.DatasetError, match=r"is not a dataset id: ids are namespace/name-vN, e\.g\. pendulum/medium-v0"):
            data.load_dataset(path)


def test_a_typo_of_a_local_namespace_is_named_at_once(monkeypatch):
    monkeypatch.setattr(minari, "load_dataset", lambda *a, **k: pytest.fail("asked the Minari servers"))
    with pytest.raises(data.DatasetError, match=r"Unknown dataset id 'pendulm/medium-v0': did you mean pendulum/medium-v0"):
        data.load_dataset("pendulm/medium-v0")


def test_a_truncated_file_says_corrupt_and_names_the_folder_to_delete():
    write_dataset("handmade/truncated-v0", noisy_episodes())
    path = minari.storage.get_dataset_path("handmade/truncated-v0")
    file = path / "data" / "main_data.hdf5"
    with open(file, "r+b") as f:
        f.truncate(file.stat().st_size // 2)
    with pytest.raises(data.DatasetError, match=rf"at {re.escape(str(path))} could not be read \(OSError: .*truncated file.*delete that folder"):
        data.to_transitions(data.load_dataset("handmade/truncated-v0"))


def test_episodes_without_a_step_are_left_out_with_a_warning():
    write_dataset("handmade/empty-episode-v0", noisy_episodes(count=3))
    with h5py.File(minari.storage.get_dataset_path("handmade/empty-episode-v0") / "data" / "main_data.hdf5", "r+") as f:
        middle = f["episode_1"]  # as a recorder that closed an episode right after its reset writes it
        for name, shape in (("observations", (1, 2)), ("actions", (0, 1)), ("rewards", (0,)), ("terminations", (0,)), ("truncations", (0,))):
            dtype = middle[name].dtype
            del middle[name]
            middle.create_dataset(name, data=np.zeros(shape, dtype))
        middle.attrs["total_steps"] = 0
    with pytest.warns(data.DataWarning, match="1 of its episodes have no step; they are left out"):
        t = data.to_transitions(data.load_dataset("handmade/empty-episode-v0"))
    assert len(t) == 60 and t.num_episodes == 2


def test_constant_observation_dimensions_are_named_in_a_warning():
    with pytest.warns(data.DataWarning, match=r"observation dimension\(s\) 1 have the same value in every transition"):
        t = data.to_transitions(write_dataset("handmade/constant-v0", noisy_episodes(constant_dim=1)))
    assert float(data.Normalizer.fit(t.observations)(t.observations)[:, 1].abs().max()) == 0  # and they normalise to 0


def test_rewards_that_would_overflow_are_refused_naming_the_reward_flags(run_dir):
    write_dataset("handmade/huge-rewards-v0", noisy_episodes(rewards=np.full(30, 1e30)))
    with pytest.raises(data.DatasetError, match=r"Rewards reach 1e\+30 .*overflow float32; pass --reward-scale 1e-30"):
        td3_bc.main(td3_bc.Args(dataset="handmade/huge-rewards-v0", run_dir=run_dir, **FAST))
    assert not os.path.exists(run_dir)
    result = td3_bc.main(td3_bc.Args(dataset="handmade/huge-rewards-v0", run_dir=run_dir, reward_scale=1e-30, **FAST))
    assert result.updates_per_s > 0  # the flag it names fixes it


def test_a_dataset_without_an_env_is_refused_before_step_1_unless_no_evaluation(run_dir, monkeypatch):
    write_dataset("handmade/no-env-v0", noisy_episodes())
    updates = []
    monkeypatch.setattr(bc, "update", lambda *a: updates.append(1) or {"losses/actor": torch.tensor(0.0)})
    with pytest.raises(data.DatasetError, match="has no evaluation env that can be built here .*env_spec is None.*pass --eval-episodes 0"):
        bc.main(bc.Args(dataset="handmade/no-env-v0", run_dir=run_dir, **dict(FAST, eval_episodes=1)))
    assert updates == [] and not os.path.exists(run_dir)  # nothing trained, nothing left behind
    bc.main(bc.Args(dataset="handmade/no-env-v0", run_dir=run_dir, **FAST))
    assert len(updates) == FAST["total_steps"]


# ----------------------------------------------------------------------------------------------
# Checkpoint files.


class Payload:
    def __reduce__(self):
        return (os.system, ("touch ran-code",))


@pytest.mark.parametrize(("content", "says"), [
    (b"hello, not a checkpoint", r"is not a checkpoint \(torch cannot read it: KeyError\): pass the checkpoint\.pt of a run"),
    (b"", r"is not a checkpoint \(torch cannot read it: EOFError\)"),
    ("pickle", r"holds Python objects a checkpoint never has, so it is not loaded \(that could run code\)"),
    ("dict", r"is a torch file but not a checkpoint of these scripts \(no algorithm, dataset, args, step, models, normalizer, rng\)"),
])  # fmt: skip
def test_a_file_that_is_not_a_checkpoint_is_one_sentence_never_torchs_unsafe_advice(content, says, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "checkpoint.pt"
    if content == "pickle":
        path.write_bytes(pickle.dumps({"models": Payload()}))
    elif content == "dict":
        torch.save({"weight": torch.ones(2)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(checks.UserError, match=says) as refusal:
        bc.main(bc.Args(resume=str(path), **FAST))
    assert "weights_only" not in str(refusal.value) and not (tmp_path / "ran-code").exists()


def test_a_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No checkpoint at '.*nowhere.pt': pass the checkpoint.pt of a run saved with --save-model"):
        bc.main(bc.Args(resume=str(tmp_path / "nowhere.pt"), **FAST))


def test_a_checkpoint_of_another_version_of_the_script_says_what_does_not_carry_over(local_dataset, run_dir):
    result = bc.main(bc.Args(dataset=local_dataset("pendulum/medium-v0"), run_dir=run_dir, save_model=True, **FAST))
    path = os.path.join(result.run_path, "checkpoint.pt")
    state = checkpoints.read_checkpoint(path)
    state["args"]["dropout"] = 0.1  # a flag of a newer bc.py
    del state["args"]["top_fraction"]  # a flag this bc.py has and that one had not
    torch.save(state, path)
    with pytest.warns(checks.Notice, match=r"comes from another version of this script: its settings dropout=0.1 are unknown "
                                           r"here and ignored; it has no --top-fraction: this command's values are used"):  # fmt: skip
        bc.main(bc.Args(resume=path, **dict(FAST, total_steps=30)))
    assert checkpoints.read_checkpoint(path)["step"] == 30


# ----------------------------------------------------------------------------------------------
# One line on stderr, for every script: the handler training.Run installs.


def run_bc(*flags, **environment):
    return subprocess.run([sys.executable, os.path.join(ROOT, "algorithms", "bc.py"), "--no-progress", *flags],
                          capture_output=True, text=True, env={**os.environ, **environment})  # fmt: skip


@pytest.mark.parametrize(("flags", "says"), [
    (["--seed", "-1"], "error: --seed must be in [0, 2**32), got -1 (the default is 0)."),
    (["--dataset", "../../etc/passwd"], "error: --dataset '../../etc/passwd' is not a dataset id: ids are namespace/name-vN, e.g. pendulum/medium-v0."),
])  # fmt: skip
def test_a_refusal_is_one_line_on_stderr_with_exit_status_2(flags, says, run_dir):
    result = run_bc(*flags, "--run-dir", run_dir)
    assert result.returncode == 2 and result.stderr.strip() == says and "Traceback" not in result.stdout
    assert not os.path.exists(run_dir)


def test_cleanoffrl_debug_shows_the_traceback(run_dir):
    result = run_bc("--eval-every", "0", "--run-dir", run_dir, CLEANOFFRL_DEBUG="1")
    assert result.returncode == 1 and "Traceback" in result.stderr and "--eval-every must be at least 1" in result.stderr


def test_the_handler_one_lines_refusals_and_ctrl_c_and_keeps_a_bugs_traceback(capsys, monkeypatch):
    monkeypatch.delenv("CLEANOFFRL_DEBUG", raising=False)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # restored after the test
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    checks.install_handler()
    for error, status, said in ((checks.UserError("--x must be 1."), 2, "error: --x must be 1."),
                                (OSError(28, "No space left on device"), 2, "error: [Errno 28] No space left on device"),
                                (KeyboardInterrupt(), 130, "interrupted")):  # fmt: skip
        with pytest.raises(SystemExit) as exit:
            sys.excepthook(type(error), error, None)
        assert exit.value.code == status and capsys.readouterr().err == said + "\n"
    try:
        raise RuntimeError("a bug")
    except RuntimeError as bug:
        sys.excepthook(RuntimeError, bug, bug.__traceback__)  # a bug: Python's own output, traceback included
    assert "Traceback" in capsys.readouterr().err
    assert warnings.formatwarning("constant", data.DataWarning, "data.py", 1) == "warning: constant\n"
