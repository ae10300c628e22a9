"""The single-file design's promises, checked: copies meant to be identical are, the scripts share one update()
argument order, no script imports another (each imports only the shared modules), and the shared modules stay small,
one job each, with no import circle among algorithms/ modules."""

import ast
import glob
import importlib
import inspect
import os

import pytest

ALGORITHMS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "algorithms")
SHARED = ("data", "evaluation", "training", "checkpoints", "finetuning", "checks", "goals", "ogbench_data")  # what scripts may import; README's table lists them
SUITES = ("local_suite", "ogbench_suite")  # the builders of local datasets: they import the shared modules, nothing imports them
MODULES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ALGORITHMS, "*.py")))
SCRIPTS = [m for m in MODULES if m not in SHARED + SUITES]


def imports_of(module: str) -> set[str]:
    """The top-level names a module imports, at the top or inside a function."""
    tree = ast.parse(open(os.path.join(ALGORITHMS, f"{module}.py")).read())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return imported | {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


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
    ("GoalActor", ("gcbc", "gciql", "crl", "hiql"), 4),  # the goal-conditioned scripts' policy and its MLP (OGBench's)
    ("mlp", ("gcbc", "gciql", "crl", "hiql"), 4),
    ("EnsembleMLP", ("gciql", "crl", "hiql"), 3),
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
def test_scripts_import_only_the_shared_modules(script):
    imported = imports_of(script)
    assert not imported & set(SCRIPTS + list(SUITES)), f"{script} imports {imported & set(SCRIPTS + list(SUITES))}"
    assert "data" in imported


def test_no_import_circle_among_the_algorithms_modules():
    """Shared modules import only shared modules (data.py finds a builder by name, through LOCAL_BUILDERS), suites
    import shared modules, and following the imports from any module never leads back to it."""
    graph = {m: imports_of(m) & set(MODULES) for m in MODULES}
    for module in SHARED:
        assert graph[module] <= set(SHARED), f"{module} imports {graph[module] - set(SHARED)}"
    for suite in SUITES:
        assert graph[suite] <= set(SHARED), f"{suite} imports {graph[suite] - set(SHARED)}"

    def reachable(start: str) -> set[str]:
        seen, todo = set(), list(graph[start])
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo += graph[m]
        return seen

    circles = [m for m in MODULES if m in reachable(m)]
    assert not circles, f"import circle through {circles}"


@pytest.mark.parametrize("module", SHARED + SUITES)
def test_shared_modules_are_small_and_say_what_lives_where(module):
    source = open(os.path.join(ALGORITHMS, f"{module}.py")).read()
    docstring = ast.get_docstring(ast.parse(source)) or ""
    assert source.count("\n") <= 460, f"{module}.py has {source.count(chr(10))} lines: give the new job its own module"
    if module in SHARED:
        assert "Lives here" in docstring and "Lives elsewhere" in docstring, f"{module}.py's docstring must say what lives there"
