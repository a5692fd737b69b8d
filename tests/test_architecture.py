"""The house's rules, checked from the source: no import cycles (module-level and function-level
imports alike), and a bottom floor (`protiso.store`) that imports nothing above it."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "protiso"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> protiso modules it imports anywhere in its source (a `from a import b` where b
    is a submodule counts as importing a.b)."""
    files = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = module.split(".") if is_pkg else module.split(".")[:-1]
                    pkg = pkg[:len(pkg) - node.level + 1]
                    base = ".".join(pkg + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for t in targets:
                while t and t not in files:
                    t = t.rpartition(".")[0]
                if t and t != module:
                    graph[module].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (iterative DFS with colours)."""
    state: dict[str, int] = {}
    for start in sorted(graph):
        if state.get(start):
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif not state.get(child):
                state[child] = 1
                stack.append((child, iter(sorted(graph.get(child, ())))))
                path.append(child)
    return None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_planted_cycle(tmp_path):
    pkg = tmp_path / "protiso"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("")
    (pkg / "a" / "x.py").write_text("def f():\n    from protiso.b import g\n")
    (pkg / "b.py").write_text("from protiso.a import x\n")
    cycle = find_cycle(import_graph(pkg))
    assert cycle is not None and set(cycle) == {"protiso.a.x", "protiso.b"}


def test_bottom_floor_imports_nothing_above_it():
    allowed = {"protiso.errors", "protiso._version"}
    graph = import_graph()
    offenders = {m: sorted(t for t in deps if not t.startswith("protiso.store") and t not in allowed)
                 for m, deps in graph.items() if m.startswith("protiso.store")}
    assert not any(offenders.values()), offenders


def test_sql_lives_in_sql_files():
    """Named queries parse, every area's file has docstrings, and none is defined twice."""
    from protiso.store.sqlfiles import queries, sql_dir

    for path in sorted((sql_dir() / "queries").glob("*.sql")):
        q = queries(path.stem)
        assert q, path
        for name in q:
            assert q.doc(name), f"{path.name}: {name} has no docstring comment"
