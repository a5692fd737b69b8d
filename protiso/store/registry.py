"""What the floors above add to every catalog connection, without the store importing them.

Areas register Python UDFs (`udf`) and builders of views over their Parquet parts (`views`);
`protiso.wiring` imports the areas so their registrations exist before any store is opened.
The store only iterates these lists."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Udf:
    """A Python function exposed to SQL: name, function, DuckDB parameter types, return type."""

    name: str
    func: Callable
    params: tuple[str, ...]
    returns: str


UDFS: list[Udf] = []
VIEW_BUILDERS: list[Callable] = []   # each (store) -> None creates TEMP views


def udf(name: str, func: Callable, params: list[str], returns: str) -> None:
    """Register `func` as SQL function `name` on every connection (idempotent by name)."""
    UDFS[:] = [u for u in UDFS if u.name != name]
    UDFS.append(Udf(name, func, tuple(params), returns))


def views(builder: Callable) -> Callable:
    """Register a view builder (usable as a decorator); run at every connect and after writes."""
    if builder not in VIEW_BUILDERS:
        VIEW_BUILDERS.append(builder)
    return builder
