"""The speed options of every training script, off by default: --compile, --cudagraphs and --matmul-precision.

Lives here: `compile_step`, which hands back a script's training step as it is (eager), through torch.compile as one
graph (--compile), captured whole as a CUDA graph (--cudagraphs) and with its matrix multiplies in bf16
(--matmul-precision bf16); `traceable`, which lets torch.compile trace an Adam optimizer into that graph.
Lives elsewhere: the training loop (training.py). Measured gains: benchmarks/results/throughput.md.

A step is a function of Python flags alone (its batch drawn inside it, so that sampling is part of the graph), e.g.

    def train_step(update_actor: bool):
        return update(train_batches.sample(args.batch_size), actor, ..., optimizers, args, update_actor)

or of a batch drawn outside it. It returns a dict of metric tensors, read only at logging steps.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch._dynamo
from torch.optim.adam import adam as functional_adam

import checks

WARMUP_STEPS = 3  # eager steps per flag value before a CUDA graph is captured (autograd and allocator settle first)


def compile_step(step: Callable, args, device: torch.device, optimizers: dict[str, torch.optim.Optimizer]) -> Callable:
    """`step` as the flags in `args` ask: itself (default), compiled, captured as CUDA graphs, with bf16 matmuls.

    --compile: torch.compile makes one graph of the whole step (tests/test_compile.py counts them): the backward
    passes are traced into it (dynamo's trace_autograd_ops) and each optimizer is made `traceable`. A Python flag
    argument (TD3+BC's update_actor) gives one graph per value, compiled once each; nothing recompiles after that.
    --cudagraphs (CUDA): after WARMUP_STEPS eager steps per flag value, the step (compiled or not) is captured as one
    CUDA graph and then replayed: one launch per update, sampling included. Optimizers turn capturable at the first
    step, after a --resume has loaded its saved settings (which say otherwise), their learning rates device tensors
    that an lr scheduler fills in place (a float would stay what it was at capture).
    --matmul-precision bf16: the step runs under autocast to bfloat16: matrix multiplies take bf16 inputs and
    accumulate in fp32 (AVX512-BF16 or AMX CPUs, CUDA GPUs of compute capability 8.0 or later); elementwise work,
    losses and optimizer states stay fp32. Refused where the hardware has no bf16 matrix unit.
    """
    compile, cudagraphs = args.compile, args.cudagraphs
    if cudagraphs and device.type != "cuda":
        raise checks.UserError(f"--cudagraphs needs a CUDA device, and this run is on {device}: drop it (--compile works on CPU).")
    bf16 = getattr(args, "matmul_precision", "fp32") == "bf16"
    if bf16 and not bf16_matmul_supported(device):
        raise checks.UserError(
            f"--matmul-precision bf16 needs bf16 matrix hardware (a CPU with AVX512-BF16 or AMX, or a CUDA GPU of compute "
            f"capability 8.0 or later), and this run's {device} has none: drop the flag (fp32 is the default)."
        )
    if compile:
        for optimizer in optimizers.values():
            traceable(optimizer)
        step = torch._dynamo.config.patch(trace_autograd_ops=True)(torch.compile(step, fullgraph=True))  # backward() inside; a break is an error
    if bf16:
        # no autocast cache: a weight cast once would be reused after an optimizer step in the same update has changed it
        step = torch.autocast(device.type, torch.bfloat16, cache_enabled=False)(step)
    if cudagraphs:
        return CudaGraphStep(step, optimizers)
    return step


def bf16_matmul_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def traceable(optimizer: torch.optim.Optimizer) -> None:
    """Let torch.compile trace this Adam/AdamW optimizer into the step's graph.

    Optimizer.step() breaks a graph on purpose (torch/optim/optimizer.py's _use_grad), zero_grad() is never traced,
    and the fused kernel is not traceable. So, on this object only, zero_grad() becomes `p.grad = None` and step()
    the same Adam written as torch's functional `adam` (foreach, capturable: step counts stay tensors) on the
    optimizer's own state and settings: state_dict() and checkpoints are unchanged, and the numbers agree with the
    fused kernel to float rounding.
    """
    if getattr(optimizer, "traceable", False):
        return
    if not isinstance(optimizer, torch.optim.Adam) or any(group["amsgrad"] for group in optimizer.param_groups):
        raise TypeError(f"--compile traces Adam and AdamW (without amsgrad) only, not {type(optimizer).__name__}.")
    eager_zero_grad, eager_step = optimizer.zero_grad, optimizer.step  # what runs outside a compiled step

    def zero_grad(set_to_none: bool = True) -> None:
        if not torch.compiler.is_compiling():
            return eager_zero_grad(set_to_none)
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None

    @torch.no_grad()
    def step() -> None:
        if not torch.compiler.is_compiling():
            return eager_step()
        for group in optimizer.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            state = [optimizer.state[p] for p in params]
            functional_adam(
                params, [p.grad for p in params], [s["exp_avg"] for s in state], [s["exp_avg_sq"] for s in state], [],
                [s["step"] for s in state], foreach=True, capturable=True,
                decoupled_weight_decay=group["decoupled_weight_decay"], amsgrad=False, beta1=group["betas"][0],
                beta2=group["betas"][1], lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"],
                maximize=group["maximize"],
            )  # fmt: skip

    # an lr scheduler checks that step() is still its own counting wrapper; this one is called before each
    # scheduler.step() all the same (the loop's order), which is what that check is for
    step._wrapped_by_lr_sched, optimizer._opt_called = True, True
    optimizer.zero_grad, optimizer.step, optimizer.traceable = zero_grad, step, True
    initial_state(optimizer)


def initial_state(optimizer: torch.optim.Optimizer) -> None:
    """Adam's state before its first step, as fused Adam makes it: made here, since a graph that adds it recompiles
    once its dict holds it. A --resume replaces it with the saved state. A parameter that never gets a gradient (CQL's
    alpha' without --lagrange) keeps this zero state, where eager Adam would make none."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            if not optimizer.state[p]:
                optimizer.state[p] = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                                      "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}  # fmt: skip


class CudaGraphStep:
    """A step captured as one CUDA graph per value of its non-tensor arguments, and replayed.

    The first WARMUP_STEPS calls of each value run as they are (real steps, on a side stream as torch's CUDA graph
    notes ask); the next one is captured, then replayed, and so is every later one: each call is one real update,
    none is added or skipped. Tensor arguments (a batch drawn outside the step) are copied into the graph's own
    inputs before a replay. The outputs are the graph's own tensors, overwritten by its next replay: the loop reads
    them at logging steps, before that, so nothing is cloned.
    """

    def __init__(self, step: Callable, optimizers: dict[str, torch.optim.Optimizer]):
        self.step, self.optimizers, self.graphs, self.calls = step, optimizers, {}, {}

    def __call__(self, *args, **kwargs):
        leaves = flatten((args, kwargs))
        key = tuple((x.shape, x.dtype) if isinstance(x, torch.Tensor) else x for x in leaves)
        if key in self.graphs:
            graph, inputs, outputs = self.graphs[key]
            for static, new in zip(inputs, (x for x in leaves if isinstance(x, torch.Tensor))):
                static.copy_(new)
            graph.replay()
            return outputs
        self.calls[key] = self.calls.get(key, 0) + 1
        for optimizer in self.optimizers.values():  # after --resume loaded its settings, before the first capture
            for group in optimizer.param_groups:
                group["capturable"] = True
                if not isinstance(group["lr"], torch.Tensor):  # a graph would keep a float; a scheduler fills this tensor
                    group["lr"] = torch.tensor(group["lr"], device=group["params"][0].device)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        if self.calls[key] <= WARMUP_STEPS:
            with torch.cuda.stream(side):
                outputs = self.step(*args, **kwargs)
            torch.cuda.current_stream().wait_stream(side)
            return outputs
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # records the kernels without running them: the replay below does this step
            outputs = self.step(*args, **kwargs)
        self.graphs[key] = (graph, [x for x in leaves if isinstance(x, torch.Tensor)], outputs)
        graph.replay()
        return outputs


def flatten(tree) -> list:
    """The leaves of nested tuples, lists, dicts and dataclasses (a Transitions batch), in a fixed order."""
    if isinstance(tree, (tuple, list)):
        return [leaf for item in tree for leaf in flatten(item)]
    if isinstance(tree, dict):
        return [leaf for key in sorted(tree, key=str) for leaf in flatten(tree[key])]
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        return [leaf for f in dataclasses.fields(tree) for leaf in flatten(getattr(tree, f.name))]
    return [tree]
