"""The layers of STYLE.md, enforced: imports point down only."""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

RUMA = Path(__file__).resolve().parent.parent / "ruma"

# Packages (or modules) of ruma, from the bottom layer up; what each may not import.
PURE = ("ruma.protocol", "ruma.errors", "ruma.config")
EDGE_LIBS = ("klein", "treq", "twisted.web", "twisted.words", "socket")
WIRING = ("ruma.tap", "ruma.cli")
EDGES = ("ruma.client", "ruma.federation", "ruma.appservice", "ruma.bridges", "ruma.admin")
# Modules that may touch the global reactor: only the wiring, which builds the graph.
REACTOR_OK = WIRING


def _module_name(path: Path, root: Path = RUMA) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, root: Path = RUMA) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    package = _module_name(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.append((node.lineno, mod))
            found.extend((node.lineno, f"{mod}.{a.name}") for a in node.names)
    return found


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _in_type_checking_block(path: Path) -> set[int]:
    """Line numbers of imports under ``if TYPE_CHECKING:`` (they never run)."""
    tree = ast.parse(path.read_text("utf-8"))
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import | ast.ImportFrom):
                    lines.add(sub.lineno)
    return lines


def violations() -> list[str]:
    bad: list[str] = []
    for path in sorted(RUMA.rglob("*.py")):
        me = _module_name(path)
        typing_only = _in_type_checking_block(path)
        for lineno, name in _imports(path):
            if lineno in typing_only:
                continue
            where = f"{path.relative_to(RUMA.parent)}:{lineno} imports {name}"
            if _under(me, ("ruma.protocol",)):
                if name.startswith("twisted") or _under(name, EDGE_LIBS):
                    bad.append(f"{where} (ruma.protocol is pure: no Twisted, no I/O)")
                if name.startswith("ruma.") and not _under(name, ("ruma.protocol", "ruma.errors")):
                    bad.append(f"{where} (ruma.protocol imports only itself and ruma.errors)")
            elif _under(me, PURE):
                if _under(name, EDGE_LIBS) or (
                    name.startswith("ruma.") and not _under(name, PURE)
                ):
                    bad.append(f"{where} ({me} is a pure layer)")
            if not _under(me, WIRING) and _under(name, WIRING):
                bad.append(f"{where} (only the wiring imports the wiring)")
            if not _under(me, EDGES + WIRING) and _under(name, EDGES):
                bad.append(f"{where} (services and storage never import the HTTP/IRC edges)")
            if not _under(me, EDGES + WIRING + ("ruma.storage",)) and _under(
                name, ("klein", "treq")
            ):
                bad.append(f"{where} (klein/treq belong to the edges)")
            if not _under(me, REACTOR_OK) and name == "twisted.internet.reactor":
                bad.append(f"{where} (the reactor is injected; only ruma.tap touches it)")
    return bad


class LayeringTests(SynchronousTestCase):
    def test_imports_point_down(self) -> None:
        """No module in ruma/ imports a layer above its own (STYLE.md, section 1)."""
        self.assertEqual(violations(), [])

    def test_checker_sees_the_tree(self) -> None:
        """The checker reads real modules, so an empty walk cannot pass for a clean one."""
        self.assertTrue(any(RUMA.rglob("protocol/*.py")))
        found = _imports_of("from . import sibling\nfrom twisted.internet import reactor\n")
        self.assertIn((1, "ruma.sibling"), found)
        self.assertIn((2, "twisted.internet.reactor"), found)


def _imports_of(source: str) -> list[tuple[int, str]]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "ruma" / "x.py"
        p.parent.mkdir()
        p.write_text(source)
        return _imports(p, root=p.parent)
