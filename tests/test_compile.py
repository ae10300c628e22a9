"""--compile trains the same networks as eager: the update step through torch.compile, on CPU.

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
from test_resume import FAST, TINY

SCRIPTS = {"bc": dict(hidden_dim=16), **TINY}


def assert_close(expected, actual, where="models"):
    if isinstance(expected, torch.Tensor):
        torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5, msg=lambda m: f"{where}: {m}")
    elif isinstance(expected, dict):
        assert expected.keys() == actual.keys(), where
        for key in expected:
            assert_close(expected[key], actual[key], f"{where}/{key}")
    elif isinstance(expected, (list, tuple)):
        for i, (e, a) in enumerate(zip(expected, actual)):
            assert_close(e, a, f"{where}/{i}")


@pytest.mark.parametrize("script", SCRIPTS)
def test_compiled_run_matches_eager(script, local_dataset, run_dir):
    module = importlib.import_module(script)
    args = dict(dataset=local_dataset("pendulum/medium-v0"), total_steps=12, eval_every=12, save_model=True,
                run_dir=run_dir, **FAST, **SCRIPTS[script])  # fmt: skip
    runs = {}
    torch._dynamo.reset()  # no graphs cached from another test's networks
    # torch's own patch restores the config on exit (monkeypatch would delete the entry: issue 15);
    # fallback_random: inductor's random ops draw from eager's generator, so both runs see the same noise
    with torch._inductor.config.patch(fallback_random=True):
        for compile in (False, True):
            result = module.main(module.Args(compile=compile, exp_name=f"{script}_compile{compile}", **args))
            runs[compile] = checkpoints.load_checkpoint(os.path.join(result.run_path, "checkpoint.pt"), script)["models"]
        compiled_graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    torch._dynamo.reset()  # the next test starts with no compiled graphs of these networks
    assert compiled_graphs > 0  # the compiled run really went through dynamo
    assert_close(runs[False], runs[True])


def test_cudagraphs_without_cuda_is_refused(local_dataset, run_dir):
    module = importlib.import_module("td3_bc")
    with pytest.raises(ValueError, match="--cudagraphs needs a CUDA device, and this run is on cpu"):
        module.main(module.Args(dataset=local_dataset("pendulum/medium-v0"), device="cpu", cudagraphs=True,
                                total_steps=5, run_dir=run_dir, **FAST))  # fmt: skip
