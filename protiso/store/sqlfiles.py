"""The SQL that ships with protiso: numbered migrations, static views, and named queries.

Named queries follow aiosql's convention: in `sql/queries/<area>.sql` each statement starts with
`-- name: <name>`, followed by comment lines that are its docstring, then the statement. Python
code calls them by name and passes parameters (`$name` placeholders with a dict, or `?` with a
list); no SQL text is assembled from values.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

from protiso.errors import ProtisoError

_NAME_RE = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def sql_dir() -> Path:
    """Directory of the shipped SQL: inside the installed package, else the checkout's sql/."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "sql", here.parent / "sql"):
        if candidate.is_dir():
            return candidate
    raise ProtisoError(f"SQL files not found next to {here}; the installation is incomplete")


class Queries(dict):
    """Named statements of one area: `q["name"]` or `q.name` is the SQL text; `q.doc(name)` its
    docstring."""

    def __init__(self, area: str, statements: dict[str, tuple[str, str]]):
        super().__init__({k: sql for k, (sql, _) in statements.items()})
        self.area = area
        self._docs = {k: doc for k, (_, doc) in statements.items()}

    def __getattr__(self, name: str) -> str:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no query {name!r} in sql/queries/{self.area}.sql") from None

    def doc(self, name: str) -> str:
        return self._docs[name]


def parse_queries(text: str, area: str = "?") -> Queries:
    """Split a named-query file into {name: (sql, docstring)}."""
    heads = list(_NAME_RE.finditer(text))
    out: dict[str, tuple[str, str]] = {}
    for i, m in enumerate(heads):
        body = text[m.end():heads[i + 1].start() if i + 1 < len(heads) else len(text)]
        doc, sql = [], []
        for line in body.strip("\n").splitlines():
            if not sql and line.lstrip().startswith("--"):
                doc.append(line.lstrip()[2:].strip())
            else:
                sql.append(line)
        name = m.group(1)
        if name in out:
            raise ProtisoError(f"sql/queries/{area}.sql defines {name!r} twice")
        out[name] = ("\n".join(sql).strip().rstrip(";").strip(), " ".join(doc))
    return Queries(area, out)


@functools.cache
def queries(area: str) -> Queries:
    """The named queries of `sql/queries/<area>.sql` (read once per process)."""
    path = sql_dir() / "queries" / f"{area}.sql"
    if not path.is_file():
        raise ProtisoError(f"missing {path}; the installation is incomplete")
    return parse_queries(path.read_text(), area)
