"""README's commands and flags are the scripts' own: every command parses, every flag it names exists.

A renamed flag would otherwise leave README (its recipes above all) quietly wrong for the reader who copies it.
"""

import contextlib
import dataclasses
import importlib
import io
import os
import re
import shlex

import pytest
import tyro

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(ROOT, "README.md")).read()
# the algorithm scripts: every module of algorithms/ with an Args dataclass (the shared modules and suites have none)
SCRIPTS = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "algorithms"))
                 if f.endswith(".py") and "\nclass Args" in open(os.path.join(ROOT, "algorithms", f)).read())  # fmt: skip


def flags_of(script: str) -> set[str]:
    names = set()
    for field in dataclasses.fields(importlib.import_module(script).Args):
        flag = field.name.replace("_", "-")
        names |= {flag, f"no-{flag}"}
    return names | {"help"}


COMMANDS = [(m.group(1), m.group(2)) for m in re.finditer(r"python algorithms/(\w+)\.py([^`\n;]*)", README) if m.group(1) in SCRIPTS]


@pytest.mark.parametrize(("script", "arguments"), COMMANDS)
def test_every_readme_command_parses(script, arguments):
    tokens = [t for t in shlex.split(arguments.replace("$v", "0.5").replace("$p", "0.5"))]
    if "--help" in tokens:
        return
    with contextlib.redirect_stderr(io.StringIO()) as error:
        try:
            tyro.cli(importlib.import_module(script).Args, args=tokens)
        except SystemExit:
            pytest.fail(f"python algorithms/{script}.py{arguments}: {error.getvalue()[-500:]}")


def sections() -> list[tuple[list[str], set[str]]]:
    """(the scripts a part of README is about, the flags it names): each script's section (its command lines left
    to the test above), and each row of the recipe table (the scripts the row names)."""
    parts = []
    for block in re.split(r"\n(?=##)", README):
        heading, body = block.split("\n", 1)[0], re.sub(r"python algorithms/\w+\.py[^`\n;]*", "", block)
        named = [s for s in SCRIPTS if f"{s}.py" in heading]
        if named:
            parts.append((named, body))
        if heading.startswith("## D4RL recipes"):
            parts += [([s for s in SCRIPTS if f"`{s}.py`" in row], row) for row in block.splitlines() if row.startswith("| `")]
    found = [(named, set(re.findall(r"(?<![\w-])--([a-z][a-z0-9-]*)", text))) for named, text in parts]
    return [(named, flags) for named, flags in found if flags]


SECTIONS = sections()


def test_readme_names_flags_for_every_script():
    assert {s for named, _ in SECTIONS for s in named} == set(SCRIPTS)


@pytest.mark.parametrize(("scripts", "named"), SECTIONS, ids=[f"{'+'.join(s)}-{i}" for i, (s, _) in enumerate(SECTIONS)])
def test_flags_a_section_names_exist(scripts, named):
    known = set.union(*(flags_of(s) for s in scripts))
    assert not named - known, f"README names {sorted(named - known)} for {scripts}: not flags of theirs"
