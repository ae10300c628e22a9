"""Named recipes: `python algorithms/<script>.py RECIPE [flags]` sets exactly the recipe's flags, later flags override
them, the plain command line is unchanged, --help lists them, and the README's and docs' tables are the recipes' own."""

import dataclasses
import importlib
import os
import re
import shlex

import pytest
import recipes
import training
import tyro

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = [(script, name) for script, named in recipes.recipes().items() for name in named]


def script_of(script: str):
    return importlib.import_module(script)


def marked(path: str) -> str:
    text = open(os.path.join(ROOT, path)).read()
    return text.split(recipes.START, 1)[1].split(recipes.END, 1)[0].strip()


def test_scripts_have_recipes_and_every_one_names_its_source_and_score():
    assert {"bc", "td3_bc", "cql", "iql", "dt"} <= set(recipes.recipes())
    for script, name in RECIPES:
        recipe = script_of(script).RECIPES[name]
        assert set(recipe) == {"flags", "source", "published"} and recipe["source"] and recipe["published"]
        assert re.search(r"\d", recipe["published"]), f"{script} {name}: no published number"


@pytest.mark.parametrize(("script", "name"), RECIPES)
def test_a_recipe_sets_its_flags_and_later_flags_override_them(script, name):
    module = script_of(script)
    flags = module.RECIPES[name]["flags"]
    fields = {f.name: f for f in dataclasses.fields(module.Args)}
    assert set(flags) <= set(fields), f"{script} {name} sets {sorted(set(flags) - set(fields))}, not flags of {script}.py"
    parsed = training.cli(module.Args, module.RECIPES, [name])
    assert parsed == dataclasses.replace(module.Args(), **flags)
    assert {k: v for k, v in dataclasses.asdict(parsed).items() if k not in flags} == {
        k: v for k, v in dataclasses.asdict(module.Args()).items() if k not in flags}  # nothing else moved  # fmt: skip
    # a flag after the name wins over the recipe's value; the recipe's other values stay
    numeric = next(k for k, v in flags.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
    changed = flags[numeric] * 2 + 1
    overridden = training.cli(module.Args, module.RECIPES, [name, f"--{numeric.replace('_', '-')}", str(changed), "--seed", "7"])
    assert getattr(overridden, numeric) == changed and overridden.seed == 7
    assert overridden == dataclasses.replace(parsed, **{numeric: changed, "seed": 7})


@pytest.mark.parametrize("script", sorted(recipes.scripts()))
def test_the_plain_command_line_is_unchanged(script):
    module = script_of(script)
    if all(f.default is not dataclasses.MISSING for f in dataclasses.fields(module.Args)):  # opex, ttt need --checkpoint
        assert training.cli(module.Args, module.RECIPES, []) == module.Args() == tyro.cli(module.Args, args=[])
    tokens = ["--seed", "3", "--eval-episodes", "2"] + (["--checkpoint", "c.pt"] if script in ("opex", "ttt") else [])
    assert training.cli(module.Args, module.RECIPES, tokens) == tyro.cli(module.Args, args=tokens)


def test_an_unknown_recipe_is_named_with_the_known_ones():
    module = script_of("iql")
    with pytest.raises(SystemExit, match="antmze is not a recipe of this script: use one of antmaze, kitchen"):
        training.cli(module.Args, module.RECIPES, ["antmze"])


def test_help_lists_every_recipe_with_its_source_and_score(capsys):
    module = script_of("cql")
    with pytest.raises(SystemExit):
        training.cli(module.Args, module.RECIPES, ["--help"])
    shown = " ".join(capsys.readouterr().out.split())  # rich wraps lines; compare with single spaces
    for name, recipe in module.RECIPES.items():
        assert f"{name}: {training.recipe_flags(recipe['flags'])}" in shown
        assert " ".join(recipe["published"].split()) in shown
    with pytest.raises(SystemExit):  # a recipe's own --help shows its values as the defaults
        training.cli(module.Args, module.RECIPES, ["antmaze", "--help"])
    assert "(default: 40000)" in " ".join(capsys.readouterr().out.split())  # --bc-steps, 0 without the recipe


def test_the_tables_are_generated_from_the_recipes_and_each_row_sets_what_its_recipe_does():
    assert marked("README.md") == recipes.table(full=False), "README's recipe table is stale: python benchmarks/recipes.py --readme README.md"
    assert marked("docs/recipes.md") == recipes.table(), "docs/recipes.md is stale: python benchmarks/recipes.py --docs docs/recipes.md"
    rows = [row for row in marked("docs/recipes.md").splitlines() if row.startswith("| `python")]
    assert len(rows) == len(RECIPES)
    for row in rows:
        script, name, flags = re.match(r"\| `python algorithms/(\w+)\.py ([\w-]+)` \| `([^`]*)` \|", row).groups()
        module = script_of(script)
        # the row's flags typed on a plain command line give the same settings as the recipe's name
        assert tyro.cli(module.Args, args=shlex.split(flags)) == training.cli(module.Args, module.RECIPES, [name])
