"""README's and docs/'s commands, flags, functions and links are the project's own: every command parses (recipes
included), every flag a page names belongs to a script the page is about, every function a page points to exists,
every link resolves, and README keeps the two commands on its first screen.

A renamed flag or function would otherwise leave a page quietly wrong for the reader who copies it.
"""

import contextlib
import dataclasses
import glob
import importlib
import io
import os
import re
import shlex
import types
import typing

import pytest
import training
import tyro

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = {os.path.relpath(p, ROOT): open(p).read() for p in [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]}
ALGORITHMS = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "algorithms"))
                    if f.endswith(".py") and "\nclass Args" in open(os.path.join(ROOT, "algorithms", f)).read())  # fmt: skip
# a benchmark's or tool's options: the dataclass its command line parses (tyro.cli(XArgs) under __main__)
BENCHMARKS = {(folder, f[:-3]): m.group(1) for folder in ("benchmarks", "tools") for f in os.listdir(os.path.join(ROOT, folder))
              if f.endswith(".py") and (m := re.search(r"tyro\.cli\((\w+)\)", open(os.path.join(ROOT, folder, f)).read()))}  # fmt: skip
SHARED = ("data", "evaluation", "training", "checkpoints", "checks", "finetuning", "goals", "local_suite", "ogbench_data")  # functions any page may name
OTHER_TOOLS = {"logdir", "randomly-seed", "head"}  # flags of tensorboard, pytest-randomly, ray start
COMMAND = re.compile(r"python (algorithms|benchmarks|tools)/(\w+)\.py([^`\n;|]*)")
FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")


def options(folder: str, script: str) -> type:
    module = importlib.import_module(script)
    return module.Args if folder == "algorithms" else getattr(module, BENCHMARKS[folder, script])


def flags_of(cls) -> set[str]:
    """A dataclass's flags; a union of subcommands' (corl.py's speed | parity): the subcommands' names and flags."""
    if typing.get_origin(cls) in (typing.Union, types.UnionType):
        members = [typing.get_args(member)[0] for member in typing.get_args(cls)]  # Annotated[XArgs, subcommand(...)]
        return set.union(*(flags_of(member) for member in members))
    names = {"help"}
    for field in dataclasses.fields(cls):
        flag = field.name.replace("_", "-")
        names |= {flag, f"no-{flag}"}
    return names


def about(text: str) -> set[tuple[str, str]]:
    """The scripts a page is about: every algorithms/X.py, benchmarks/Y.py or tools/Z.py it names; a page naming no algorithm is
    about all of them (what every script shares: metrics, datasets, the run plumbing)."""
    named = {("algorithms", s) for s in ALGORITHMS if f"algorithms/{s}.py" in text or f"`{s}.py`" in text}
    named = named or {("algorithms", s) for s in ALGORITHMS}
    return named | {(folder, s) for folder, s in BENCHMARKS if f"{folder}/{s}.py" in text}


COMMANDS = [(page, *m.groups()) for page, text in PAGES.items() for m in COMMAND.finditer(text)
            if (m.group(2) in ALGORITHMS if m.group(1) == "algorithms" else m.groups()[:2] in BENCHMARKS)]  # fmt: skip


@pytest.mark.parametrize(("page", "folder", "script", "arguments"), COMMANDS)
def test_every_command_parses(page, folder, script, arguments):
    tokens = shlex.split(arguments.replace("$v", "0.5").replace("$p", "0.5"), comments=True)
    if "--help" in tokens or "..." in tokens:
        return
    with contextlib.redirect_stderr(io.StringIO()) as error, contextlib.redirect_stdout(io.StringIO()):
        try:
            if folder == "algorithms":  # a recipe's name may come first
                module = importlib.import_module(script)
                training.cli(module.Args, module.RECIPES, tokens)
            else:
                tyro.cli(options(folder, script), args=tokens)
        except SystemExit as exit:
            pytest.fail(f"{page}: python {folder}/{script}.py{arguments}: {exit.code or ''} {error.getvalue()[-500:]}")


@pytest.mark.parametrize("page", sorted(PAGES))
def test_flags_a_page_names_are_flags_of_its_scripts(page):
    text = COMMAND.sub(lambda m: m.group(0) if m.group(2) in ALGORITHMS else "", PAGES[page])
    named = set(FLAG.findall(text)) - OTHER_TOOLS
    scripts = about(PAGES[page])
    known = set.union(*(flags_of(options(folder, script)) for folder, script in scripts))
    assert not named - known, f"{page} names {sorted(named - known)}: not flags of {sorted(s for _, s in scripts)}"


@pytest.mark.parametrize("page", sorted(PAGES))
def test_functions_a_page_points_to_exist(page):
    """Pages point into the code by name (`update()`, `Critics`), never by line number, so an edit elsewhere cannot
    make them wrong; a renamed function can, and is caught here."""
    sources = [open(os.path.join(ROOT, folder, f"{script}.py")).read() for folder, script in about(PAGES[page])]
    sources += [open(os.path.join(ROOT, "algorithms", f"{module}.py")).read() for module in SHARED]
    for name in re.findall(r"`([\w.]+)\(\)`", PAGES[page]):
        last = name.split(".")[-1]
        assert any(re.search(rf"^\s*(def|class) {last}\b", source, re.M) for source in sources), f"{page} points to {name}(), which does not exist"
    assert not re.search(r"\b(line|lines) \d+", PAGES[page]), f"{page} refers to a line number: name the function instead"


@pytest.mark.parametrize("page", sorted(PAGES))
def test_links_resolve(page):
    for target in re.findall(r"\]\(([^)\s]+)\)", PAGES[page]):
        path = target.split("#")[0]
        if path and not re.match(r"[a-z]+://", path):
            assert os.path.exists(os.path.join(ROOT, os.path.dirname(page), path)), f"{page} links to {target}, which does not exist"


def test_every_algorithm_has_a_page_and_the_readme_links_it():
    pages = {page: text for page, text in PAGES.items() if page.startswith("docs/") and page != "docs/README.md"}
    for script in ALGORITHMS:
        found = [page for page, text in pages.items() if text.startswith("#") and f"algorithms/{script}.py" in text.split("\n")[0]]
        assert found, f"no docs page has algorithms/{script}.py in its title"
        assert f"({found[0]})" in PAGES["README.md"], f"README does not link {found[0]}"


def test_readme_keeps_the_two_commands_on_its_first_screen():
    first_screen = "\n".join(PAGES["README.md"].splitlines()[:40])
    assert "pip install -r requirements.txt && python algorithms/iql.py\n" in first_screen
    assert "pip install -r requirements.txt && python -m pytest" in first_screen
