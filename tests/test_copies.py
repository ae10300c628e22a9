"""The single-file design's promises, checked: copies meant to be identical are, the scripts share one update()
argument order, and no script imports another (each imports only the shared data module)."""

import ast
import glob
import importlib
import inspect
import os

import pytest

ALGORITHMS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "algorithms")
SCRIPTS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ALGORITHMS, "*.py")) if not p.endswith(("data.py", "local_suite.py")))


def sources(name: str, scripts) -> dict[str, str]:
    return {s: inspect.getsource(getattr(importlib.import_module(s), name)) for s in scripts if hasattr(importlib.import_module(s), name)}


@pytest.mark.parametrize(("name", "scripts", "at_least"), [
    ("EnsembleLinear", SCRIPTS, 9),  # every ensemble of critics, one batched matmul, (members, in, out)
    ("Critics", ("td3_bc", "iql", "onestep_rl"), 3),  # the plain twin critics
    ("Critics", ("awr", "ddpg_bc", "sfbc", "opex", "ttt"), 5),  # each critic with its own LayerNorm
    ("EnsembleLayerNorm", SCRIPTS, 5),
    ("value_losses", ("awr", "ddpg_bc", "sfbc"), 3),  # the extraction family's value learning
    ("expectile_loss", SCRIPTS, 4),
    ("TanhGaussianActor", ("cql", "cal_ql"), 2),  # Cal-QL is CQL with a calibrated conservative term
    ("Critics", ("cql", "cal_ql"), 2),
    ("LogMultiplier", ("cql", "cal_ql"), 2),
    ("step_optimizers", ("cql", "cal_ql"), 2),
])  # fmt: skip
def test_copies_meant_to_be_identical_are(name, scripts, at_least):
    found = sources(name, scripts)
    assert len(found) >= at_least, f"{name} is defined in {sorted(found)} only"
    first = next(iter(found))
    for script, source in found.items():
        assert source == found[first], f"{script}.{name} differs from {first}.{name}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_update_functions_share_one_argument_order(script):
    """update(batch, <networks>, optimizers, [args], [step]): the batch first, the optimizers after the networks."""
    tree = ast.parse(open(os.path.join(ALGORITHMS, f"{script}.py")).read())
    updates = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name.startswith("update")]
    assert updates or script in ("opex", "ttt"), f"{script} has no update()"
    for function in updates:
        names = [a.arg for a in function.args.args]
        assert names[0] == "batch" and "optimizers" in names, f"{script}.{function.name}{tuple(names)}"
        assert set(names[names.index("optimizers") + 1 :]) <= {"args", "step"}, f"{script}.{function.name}{tuple(names)}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_import_only_the_shared_data_module(script):
    tree = ast.parse(open(os.path.join(ALGORITHMS, f"{script}.py")).read())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & (set(SCRIPTS) | {"local_suite"}), f"{script} imports {imported & (set(SCRIPTS) | {'local_suite'})}"
    assert "data" in imported
