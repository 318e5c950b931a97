"""The house rules that keep the layers apart, checked on the import graph of bot/ and cogs/.

The graph is read from the source with `ast` (nothing is imported), and counts every import: at
module level, inside functions, and under `if TYPE_CHECKING:`. A type-only import is still a
dependency of the design: a module that names the whole bot in a type annotation is built to take
the whole bot.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path

import pytest

from bot.bot import EXTENSIONS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "cogs")


@cache
def sources() -> dict[str, Path]:
    """Our modules by dotted name (a package by its own name: bot/web/__init__.py is bot.web)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in ROOT.joinpath(package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imported_names(module: str) -> Iterator[str]:
    """Every dotted name `module` imports (`from a import b` gives a and a.b: b may be a module)."""
    path = sources()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


@cache
def imports(module: str) -> frozenset[str]:
    """What `module` imports: our modules by their name, third-party packages by their top level."""
    ours = sources()
    found: set[str] = set()
    for name in _imported_names(module):
        if name.split(".")[0] not in PACKAGES:
            found.add(name.split(".")[0])
            continue
        while name and name not in ours:  # `from bot.models import MJTask` is bot.models
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)
    return frozenset(found)


def reachable(module: str) -> set[str]:
    """`module` and everything it imports, directly or through our other modules."""
    seen = {module}
    todo = [module]
    while todo:
        for name in imports(todo.pop()):
            if name in sources() and name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


def in_room(module: str, room: str) -> bool:
    return module == room or module.startswith(room + ".")


def offenders(modules: set[str], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    """Among `modules`, each one that imports something in a `forbidden` room (or package), with what."""
    found = {
        module: sorted(name for name in imports(module) if any(in_room(name, room) for room in forbidden))
        for module in sorted(modules)
    }
    return {module: names for module, names in found.items() if names}


def import_graph() -> dict[str, list[str]]:
    """Each of our modules -> the modules of ours it imports."""
    return {module: sorted(name for name in imports(module) if name in sources()) for module in sources()}


def import_cycles(graph: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """The strongly connected groups of `graph` with more than one module (Tarjan). Pure."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        order[module] = low[module] = len(order)
        stack.append(module)
        on_stack.add(module)
        for name in graph[module]:
            if name not in order:
                visit(name)
                low[module] = min(low[module], low[name])
            elif name in on_stack:
                low[module] = min(low[module], order[name])
        if low[module] == order[module]:
            group: list[str] = []
            while not group or group[-1] != module:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in graph:
        if module not in order:
            visit(module)
    return cycles


def room(name: str) -> set[str]:
    return {module for module in sources() if in_room(module, name)}


# ---- the rules --------------------------------------------------------------------------------------


def test_every_cog_has_setup_and_is_listed() -> None:
    modules = {f"cogs.{p.stem}" for p in ROOT.joinpath("cogs").glob("*.py") if not p.stem.startswith("_")}
    assert modules == set(EXTENSIONS)
    for name in modules:
        assert callable(getattr(importlib.import_module(name), "setup", None)), name


def test_bot_package_never_imports_cogs() -> None:
    assert offenders(room("bot"), ("cogs",)) == {}


def test_api_client_knows_nothing_about_discord() -> None:
    # Nor does anything it builds on: the client is usable (and tested) without discord.py.
    assert offenders(reachable("bot.upstream.client"), ("discord",)) == {}


def test_render_imports_no_storage_web_or_upstream_module() -> None:
    # Rendering is pure: a record in, message parts out. Not even through another module.
    forbidden = ("bot.storage", "bot.web", "bot.upstream")
    assert [module for module in reachable("bot.render") if any(in_room(module, r) for r in forbidden)] == []


def test_storage_imports_no_config() -> None:
    # A backend is opened with what it needs (a path or URL, an owner, a lease length), not the settings.
    reached = set().union(*(reachable(module) for module in room("bot.storage")))
    assert offenders(reached, ("bot.config",)) == {}


def test_web_receives_what_it_needs_not_the_whole_bot() -> None:
    assert offenders(room("bot.web"), ("bot.bot", "cogs")) == {}
    from bot.web.server import WebServer

    parameters = list(inspect.signature(WebServer.__init__).parameters.values())[1:]
    annotations = [str(parameter.annotation) for parameter in parameters]
    assert [a for a in annotations if "Bot" in a or "Client" in a or a == "Any"] == [], annotations


def test_no_import_cycles() -> None:
    assert import_cycles(import_graph()) == []


# ---- the checks themselves ------------------------------------------------------------------------


def test_the_import_graph_sees_every_kind_of_import() -> None:
    assert "bot.jobs" in imports("bot.tracking.posting")  # under `if TYPE_CHECKING:`
    assert "discord" in imports("bot.render")  # `import discord`: a third-party package by its top level
    assert "bot.render" in imports("bot.tracking.writer")  # `from bot import render`
    assert "bot.tracking.pacing" in imports("bot.tracking.writer")  # `from bot.tracking.pacing import ...`
    assert "bot.upstream.simulator" in imports("bot.bot")  # inside a function
    assert {"bot.tracking.writer", "bot.tracking.pacing"} <= reachable("bot.tracking.tracker")


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": ["b"], "b": ["c"], "c": []}, []),
        ({"a": ["b"], "b": ["a"], "c": ["a"]}, [["a", "b"]]),
        ({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}, [["a", "b", "c"]]),
    ],
)
def test_import_cycles_are_found(graph: dict[str, list[str]], expected: list[list[str]]) -> None:
    assert import_cycles(graph) == expected
