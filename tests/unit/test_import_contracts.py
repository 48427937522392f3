"""Imports flow one way, ``kefu`` → ``services`` → ``libs``, and no service imports another.

Every ``.py`` under kefu/, services/ and libs/ is parsed (never imported, so this is fast and needs nothing
installed), and every import is checked, including those inside functions and ``TYPE_CHECKING`` blocks (a
deferred import is still a dependency) and ``importlib.import_module("…")`` calls with a literal name. Forbidden:

* ``services/<a>`` importing ``services.<b>`` (a ≠ b): services share code through ``libs`` and talk through
  events, so each one can be deployed, scaled and changed on its own;
* ``libs`` importing ``services`` or ``kefu``: the shared code must not depend on what uses it;
* ``services`` importing ``kefu``: the CLI and supervisor sit on top; a service runs without them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("kefu", "services", "libs")

#: Known violations that this change could not fix, as (file, imported module) → why, and what removes it. An
#: entry that no longer matches an import fails too, so the list only shrinks.
ALLOWED: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    module: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: imports {self.module} ({self.rule})"


def _module_of(path: Path) -> list[str]:
    """The dotted name of the module a file defines, as parts (``services/ingest/__init__.py`` → services, ingest)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imported(path: Path, tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``tree``; ``from m import x`` yields ``m`` and ``m.x``."""
    package = _module_of(path) if path.name == "__init__.py" else _module_of(path)[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this file's package
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:  # "from services import ingest" names a module too
                yield node.lineno, f"{module}.{alias.name}"
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name not in ("import_module", "__import__"):
                continue
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                yield node.lineno, arg.value
            elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
                # f"services.{name}.app": only the literal head is known; enough for the top-level rules.
                head = str(arg.values[0].value).split(".")
                yield node.lineno, ".".join(head[:-1]) if len(head) > 1 else head[0]


def _rule(owner: list[str], module: str) -> str | None:
    target = module.split(".")
    top = owner[0]
    if top == "libs" and target[0] in ("services", "kefu"):
        return f"libs must not import {target[0]}"
    if top == "services" and target[0] == "kefu":
        return "services must not import kefu"
    same_tree = top == target[0] == "services" and len(owner) > 1 and len(target) > 1
    if same_tree and target[1] != owner[1]:
        return f"services/{owner[1]} must not import services/{target[1]}"
    return None


def scan() -> list[Violation]:
    found: set[Violation] = set()
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if ".venv" in path.parts or "__pycache__" in path.parts:
                continue
            rel = path.relative_to(ROOT).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
            owner = _module_of(path)
            for line, module in _imported(path, tree):
                rule = _rule(owner, module)
                if rule:
                    # "from services.x import y" also yields "services.x.y"; report the module once per line.
                    found.add(Violation(rel, line, module, rule))
    return sorted(_outermost(found), key=lambda v: (v.path, v.line, v.module))


def _outermost(found: set[Violation]) -> set[Violation]:
    """Drop ``m.x`` where ``m`` is already reported on the same line."""
    return {
        v
        for v in found
        if not any(o.path == v.path and o.line == v.line and v.module.startswith(o.module + ".") for o in found)
    }


def _allowed(v: Violation) -> bool:
    return any(v.path == path and (v.module == m or v.module.startswith(m + ".")) for path, m in ALLOWED)


def test_imports_flow_from_kefu_to_services_to_libs() -> None:
    bad = [v for v in scan() if not _allowed(v)]
    assert not bad, "import contract broken (see this test's docstring):\n" + "\n".join(map(str, bad))


def test_every_allowed_violation_still_exists() -> None:
    violations = scan()
    stale = [
        f"{path} → {module}"
        for path, module in ALLOWED
        if not any(v.path == path and (v.module == module or v.module.startswith(module + ".")) for v in violations)
    ]
    assert not stale, "remove these ALLOWED entries, the imports are gone:\n" + "\n".join(stale)


def test_the_checker_catches_each_rule() -> None:
    """The rules themselves, on names alone, so a broken checker cannot pass silently."""
    assert _rule(["services", "feedback", "release"], "services.ingest.publish")
    assert _rule(["services", "feedback", "release"], "services.feedback.errors") is None
    assert _rule(["libs", "datasets", "store"], "services.ingest")
    assert _rule(["libs", "common", "db"], "kefu.registry")
    assert _rule(["services", "builder", "sidecars"], "kefu.registry")
    assert _rule(["kefu", "cli"], "services.ingest.app") is None
    src = ROOT / "services" / "feedback" / "_probe.py"  # a path inside the tree, parsed from a string only
    tree = ast.parse("def f():\n    from services.ingest import cli\n    import importlib\n"
                     "    importlib.import_module('kefu.registry')\n")  # fmt: skip
    modules = {m for _, m in _imported(src, tree)}
    assert {"services.ingest", "services.ingest.cli", "kefu.registry"} <= modules
    relative = ast.parse("from ..ingest import cleaning\n")
    assert "services.ingest.cleaning" in {m for _, m in _imported(src, relative)}
