"""Views over Parquet parts. Their file lists change as parts are written, so they are built
in Python at every connect (and after writes) rather than kept as static SQL in sql/views.

Each entry is a function (store) -> None that creates TEMP views; one per area."""
from __future__ import annotations

from typing import Callable

DYNAMIC_VIEWS: list[Callable] = []


def _pair_views(store) -> None:
    from protiso.pairs.views import create_pair_views

    create_pair_views(store)


DYNAMIC_VIEWS.append(_pair_views)


def _embedding_views(store) -> None:
    from protiso.embed import create_embedding_views

    create_embedding_views(store)


DYNAMIC_VIEWS.append(_embedding_views)


def parquet_source(paths) -> str:
    """A read_parquet(...) SQL fragment for a list of part paths (caller ensures non-empty)."""
    quoted = ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)
    return f"read_parquet([{quoted}])"
