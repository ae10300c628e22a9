"""--compile trains the same networks as eager, in one graph per training step: the step through torch.compile, on CPU.

With inductor's random ops falling back to eager's generator, a compiled run and an eager run from the
same seed see the same batches and noise, so after a few updates every parameter and optimizer moment
must agree to float tolerance. --cudagraphs needs CUDA, and says so on CPU.
"""

import importlib
import os

import pytest
import torch
import torch._dynamo
import torch._inductor.config

import checkpoints
import checks
import speed
from test_resume import FAST, TINY

SCRIPTS = {"bc": dict(hidden_dim=16), "rebrac": dict(hidden_dim=16), **TINY}
# the default run compiles one script of each kind (~30 s each on a CPU); CLEANOFFRL_COMPILE_ALL=1 compiles them all
KINDS = ("td3_bc", "iql", "cql", "awr", "dt")  # a flag argument, one summed backward, two backwards, two step functions, AdamW
COMPILED = SCRIPTS if os.environ.get("CLEANOFFRL_COMPILE_ALL") else KINDS
# graphs per run: one per step function and value of its flag argument (update_actor, bc_warm_start) seen in 12 steps
GRAPHS = {"td3_bc": 2, "rebrac": 2, "cql": 2, "awr": 2, "ddpg_bc": 2, "sfbc": 2}


def assert_close(expected, actual, where="models"):
    if isinstance(expected, torch.Tensor):
        torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5, msg=lambda m: f"{where}: {m}")
    elif isinstance(expected, dict):
        # a parameter that never had a gradient (CQL's alpha' without --lagrange) has no Adam state in eager, and
        # the zero state speed.initial_state made in a compiled run
        for key in actual.keys() - expected.keys():
            assert where.endswith("/state") and all(not t.any() for t in actual[key].values()), f"{where}/{key}"
        assert expected.keys() <= actual.keys(), where
        for key in expected:
            assert_close(expected[key], actual[key], f"{where}/{key}")
    elif isinstance(expected, (list, tuple)):
        for i, (e, a) in enumerate(zip(expected, actual)):
            assert_close(e, a, f"{where}/{i}")


@pytest.mark.parametrize("script", COMPILED)
def test_compiled_run_matches_eager(script, local_dataset, run_dir):
    module = importlib.import_module(script)
    args = dict(dataset=local_dataset("pendulum/medium-v0"), total_steps=12, eval_every=12, save_model=True,
                run_dir=run_dir, **FAST, **SCRIPTS[script])  # fmt: skip
    runs = {}
    torch._dynamo.reset()  # no graphs cached from another test's networks
    torch._dynamo.utils.counters.clear()  # reset() keeps the counts
    # torch's own patch restores the config on exit (monkeypatch would delete the entry: issue 15);
    # fallback_random: inductor's random ops draw from eager's generator, so both runs see the same noise
    with torch._inductor.config.patch(fallback_random=True):
        for compile in (False, True):
            result = module.main(module.Args(compile=compile, exp_name=f"{script}_compile{compile}", **args))
            runs[compile] = checkpoints.load_checkpoint(os.path.join(result.run_path, "checkpoint.pt"), script)["models"]
        compiled_graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    torch._dynamo.reset()  # the next test starts with no compiled graphs of these networks
    # fullgraph=True (speed.compile_step) makes any graph break an error; this counts the recompiles too
    assert compiled_graphs == GRAPHS.get(script, 1), f"{compiled_graphs} graphs"
    assert_close(runs[False], runs[True])


def test_cudagraphs_without_cuda_is_refused(local_dataset, run_dir):
    module = importlib.import_module("td3_bc")
    with pytest.raises(ValueError, match="--cudagraphs needs a CUDA device, and this run is on cpu"):
        module.main(module.Args(dataset=local_dataset("pendulum/medium-v0"), device="cpu", cudagraphs=True,
                                total_steps=5, run_dir=run_dir, **FAST))  # fmt: skip


def test_bf16_detection_follows_the_cpu_flags():
    """bf16 matrix hardware is read off the CPU (never assumed): AVX512-BF16 or AMX, as /proc/cpuinfo lists them."""
    flags = set(open("/proc/cpuinfo").read().split()) if os.path.exists("/proc/cpuinfo") else set()
    if not flags:
        pytest.skip("no /proc/cpuinfo to compare with")
    assert speed.bf16_matmul_supported(torch.device("cpu")) == bool(flags & {"avx512_bf16", "amx_tile"})


def test_bf16_without_bf16_hardware_is_refused(local_dataset, run_dir, monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    module = importlib.import_module("td3_bc")
    with pytest.raises(checks.UserError) as refusal:
        module.main(module.Args(dataset=local_dataset("pendulum/medium-v0"), device="cpu", matmul_precision="bf16",
                                total_steps=5, run_dir=run_dir, **FAST))  # fmt: skip
    message = str(refusal.value)
    assert message.startswith("--matmul-precision bf16 needs bf16 matrix hardware") and message.count(". ") == 0, message


def test_bf16_trains_where_the_hardware_has_it(local_dataset, run_dir):
    """Where the CPU has bf16 matrix units: the update runs under autocast, its losses near fp32's after a few steps."""
    if not speed.bf16_matmul_supported(torch.device("cpu")):
        pytest.skip("this CPU has neither AVX512-BF16 nor AMX (the refusal is tested above)")
    module = importlib.import_module("td3_bc")
    args = dict(dataset=local_dataset("pendulum/medium-v0"), device="cpu", total_steps=40, eval_every=40, save_model=True,
                run_dir=run_dir, **FAST, hidden_dim=64)  # fmt: skip
    weights = {}
    for precision in ("fp32", "bf16"):
        result = module.main(module.Args(matmul_precision=precision, exp_name=f"td3_bc_{precision}", **args))
        weights[precision] = checkpoints.load_checkpoint(os.path.join(result.run_path, "checkpoint.pt"), "td3_bc")["models"]["critics"]
    for name, fp32 in weights["fp32"].items():
        bf16 = weights["bf16"][name]
        assert bf16.dtype == torch.float32 and torch.isfinite(bf16).all(), name  # the weights stay fp32
        assert not torch.equal(bf16, fp32), name  # the matmuls really ran in bf16
        torch.testing.assert_close(bf16, fp32, rtol=0, atol=0.05, msg=lambda m: f"{name}: {m}")  # and stayed near fp32
