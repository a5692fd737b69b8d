"""Read-only SQL: which statements a read-only store runs, decided by DuckDB's own parser.

A read-only DuckDB connection refuses writes to the catalog, but still runs COPY ... TO,
EXPORT DATABASE, ATTACH, SET, INSTALL/LOAD and table functions with side effects. So
`check_read_only` accepts only SELECT-like statements (SELECT/WITH/FROM/VALUES, DESCRIBE, SHOW,
SUMMARIZE, PIVOT), EXPLAIN [ANALYZE] of those, and a list of read-only PRAGMAs; every table
function a SELECT calls must be on an allowlist of readers. Statement kinds come from
`extract_statements`, the tree from `json_serialize_sql`, keywords from `duckdb.tokenize` —
never from regular expressions. `lock_down` then freezes the connection's settings, so that
nothing can change them, enable extension autoloading or installing, afterwards.
"""
from __future__ import annotations

import json

import duckdb

from protiso.errors import QueryError

_SELECT = duckdb.StatementType.SELECT
_EXPLAIN = duckdb.StatementType.EXPLAIN
_PRAGMA = duckdb.StatementType.PRAGMA

# PRAGMAs that only report (each also exists as a pragma_* table function).
READ_PRAGMAS = frozenset({
    "table_info", "show", "show_tables", "show_tables_expanded", "show_databases", "database_list",
    "database_size", "storage_info", "metadata_info", "version", "platform", "collations",
    "functions", "user_agent"})

# Table functions that only read. Anything else (checkpoint, enable_logging, query, ...) is refused.
READ_TABLE_FUNCTIONS = frozenset({
    "read_csv", "read_csv_auto", "read_parquet", "parquet_scan", "read_json", "read_json_auto",
    "read_json_objects", "read_json_objects_auto", "read_ndjson", "read_ndjson_auto",
    "read_ndjson_objects", "read_text", "read_blob", "parquet_metadata", "parquet_schema",
    "parquet_kv_metadata", "parquet_file_metadata", "parquet_full_metadata", "parquet_bloom_probe",
    "glob", "range", "generate_series", "unnest", "repeat", "repeat_row", "sniff_csv", "summary",
    "histogram", "histogram_values", "json_each", "json_tree", "icu_calendar_names",
    "pg_timezone_names", "query_table", "pragma_table_info", "pragma_show", "pragma_version",
    "pragma_platform", "pragma_database_size", "pragma_storage_info", "pragma_metadata_info",
    "pragma_collations", "pragma_user_agent"})
_WRITING_DUCKDB_FUNCTIONS = frozenset({"duckdb_logs", "duckdb_secrets"})   # harmless but not data

ALLOWED = ("SELECT/WITH/FROM, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN of those, and read-only PRAGMAs "
           f"({', '.join(sorted(READ_PRAGMAS))})")


def _refuse(statement: str, why: str) -> QueryError:
    text = " ".join(statement.split())
    text = text if len(text) <= 80 else text[:77] + "..."
    return QueryError(f"{why}: {text!r}; the store is read-only here, which allows only {ALLOWED}")


def _parse(con: duckdb.DuckDBPyConnection, query: str) -> list:
    try:
        return list(con.extract_statements(query))
    except duckdb.ParserException as exc:
        raise QueryError(f"query failed to parse: {' '.join(str(exc).split())}") from exc
    except ValueError as exc:
        raise _refuse(query, "statement of an unknown kind") from exc


def _tokens(text: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of each token of `text`, by DuckDB's tokenizer."""
    raw = duckdb.tokenize(text)
    out = []
    for i, (pos, kind) in enumerate(raw):
        end = raw[i + 1][0] if i + 1 < len(raw) else len(text)
        out.append((pos, end, str(kind).rsplit(".", 1)[-1]))
    return out


def _word(text: str, token: tuple[int, int, str]) -> str:
    return text[token[0]:token[1]].strip().strip('"').lower()


def _table_functions(tree) -> list[str]:
    found = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "TABLE_FUNCTION" and isinstance(node.get("function"), dict):
                found.append(str(node["function"].get("function_name", "")).lower())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _check_select(con: duckdb.DuckDBPyConnection, text: str) -> None:
    """A SELECT whose table functions are all readers."""
    try:
        serialized = con.execute("SELECT json_serialize_sql($q)", {"q": text}).fetchall()[0][0]
    except duckdb.Error as exc:
        raise QueryError(f"query failed to parse: {' '.join(str(exc).split())}") from exc
    tree = json.loads(serialized)
    if tree.get("error"):
        raise _refuse(text, f"statement DuckDB cannot describe ({tree.get('error_message', '')})")
    macros = None
    for name in _table_functions(tree):
        if name in READ_TABLE_FUNCTIONS or (name.startswith("duckdb_") and name not in _WRITING_DUCKDB_FUNCTIONS):
            continue
        if macros is None:   # protiso's own table macros (sql/views): a read-only connection cannot make any
            macros = {n for (n,) in con.execute(
                "SELECT function_name FROM duckdb_functions() WHERE function_type = 'table_macro' "
                "AND database_name = 'temp'").fetchall()}
        if name not in macros:
            raise _refuse(text, f"table function {name}() is not allowed")


def _check_explain(con: duckdb.DuckDBPyConnection, text: str) -> None:
    """EXPLAIN [ANALYZE] [(options)] of a read statement (EXPLAIN ANALYZE runs it)."""
    toks = _tokens(text)
    i = 1
    if i < len(toks) and _word(text, toks[i]) in ("analyze", "analyse"):
        i += 1
    if i < len(toks) and text[toks[i][0]:toks[i][1]].strip() == "(":
        depth = 0
        while i < len(toks):
            sym = text[toks[i][0]:toks[i][1]].strip()
            depth += (sym == "(") - (sym == ")")
            i += 1
            if depth == 0:
                break
    if i >= len(toks):
        raise _refuse(text, "EXPLAIN of nothing")
    inner = _parse(con, text[toks[i][0]:])
    try:
        kinds = [st.type for st in inner]
    except ValueError:
        kinds = []
    if len(inner) != 1 or kinds != [_SELECT]:
        raise _refuse(text, "EXPLAIN of a statement that is not a read")
    _check_select(con, inner[0].query)


def _check_pragma(text: str) -> None:
    toks = _tokens(text)
    if len(toks) < 2 or _word(text, toks[0]) != "pragma" or _word(text, toks[1]) not in READ_PRAGMAS:
        raise _refuse(text, "this PRAGMA is not read-only")
    if any(text[a:b].strip() == "=" for a, b, _ in toks[2:]):
        raise _refuse(text, "a PRAGMA that assigns a setting")


def check_read_only(con: duckdb.DuckDBPyConnection, query: str) -> list[str]:
    """The statements of `query` if every one of them only reads; else a QueryError naming the
    first that does not."""
    statements = _parse(con, query)
    if not statements:
        raise QueryError("the query is empty")
    out = []
    for st in statements:
        text = st.query
        try:
            kind = st.type
        except ValueError:    # a statement type the Python binding does not know (e.g. UPDATE EXTENSIONS)
            raise _refuse(text, "statement of an unknown kind") from None
        if kind == _SELECT:
            _check_select(con, text)
        elif kind == _EXPLAIN:
            _check_explain(con, text)
        elif kind == _PRAGMA:
            _check_pragma(text)
        else:
            raise _refuse(text, f"{str(kind).rsplit('.', 1)[-1]} statement")
        out.append(text)
    return out


# Settings fixed on read-only connections before `lock_configuration` freezes them all.
LOCK_DOWN = ("SET autoinstall_known_extensions = false", "SET autoload_known_extensions = false",
             "SET allow_community_extensions = false", "SET lock_configuration = true")


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """No extension autoloading or installing, then no setting can change any more."""
    for statement in LOCK_DOWN:
        con.execute(statement)
