"""The recipe tables, generated from the scripts' RECIPES, so that no recipe is typed twice.

    python benchmarks/recipes.py                                            # print the full table
    python benchmarks/recipes.py --readme README.md --docs docs/recipes.md   # write both tables

A recipe is a name a training script takes before its flags (`python algorithms/iql.py antmaze`): the flags a paper
(or its official code, or CORL) used for a family of datasets, the file or table they come from, and the published
score they should reproduce. The text between `<!-- recipes:start -->` and `<!-- recipes:end -->` is replaced: in
README by a short table (command, published score), in the docs page by the full one (what each sets, its source).
"""

import importlib
import os
import sys
from dataclasses import dataclass

import report
import tyro

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "algorithms"))
import training  # noqa: E402 - the scripts' folder is on the path only from the line above

START, END = "<!-- recipes:start -->", "<!-- recipes:end -->"


@dataclass
class RecipesArgs:
    readme: str | None = None
    """write the short table (command, published score) into this README, between the recipes markers"""
    docs: str | None = None
    """write the full table (command, flags it sets, source, published score) into this page, between the markers"""


def scripts() -> list[str]:
    """Every algorithm script (a module of algorithms/ with an Args dataclass), in name order."""
    folder = os.path.join(ROOT, "algorithms")
    return sorted(f[:-3] for f in os.listdir(folder) if f.endswith(".py") and "\nclass Args" in open(os.path.join(folder, f)).read())


def recipes() -> dict[str, dict[str, dict]]:
    """script -> its RECIPES (scripts with none left out)."""
    found = {script: importlib.import_module(script).RECIPES for script in scripts()}
    return {script: named for script, named in found.items() if named}


def table(full: bool = True) -> str:
    """One row per recipe: its command and published score; `full` adds the flags it sets and their source."""
    head = ["command", "sets", "source", "published score to reproduce"] if full else ["command", "published score to reproduce"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for script, named in recipes().items():
        for name, recipe in named.items():
            cells = [f"`python algorithms/{script}.py {name}`", recipe["published"]]
            if full:
                cells[1:1] = [f"`{training.recipe_flags(recipe['flags'])}`", recipe["source"]]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(args: RecipesArgs) -> str:
    if args.readme:
        report.write_readme(args.readme, table(full=False), START, END)
    if args.docs:
        report.write_readme(args.docs, table(), START, END)
    text = table()
    print(text)
    return text


if __name__ == "__main__":
    main(tyro.cli(RecipesArgs))
