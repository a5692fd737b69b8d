"""GO term names wherever a GO id is shown: `label(store, keys)` turns group keys, filters or
any text holding GO ids into 'GO:0005737 (cytoplasm)'; `names(store, ids)` gives the bare names.

Names come from the store's ontology (`protiso ingest go.obo`); alt ids resolve to their
term's name. Without an ontology, or for ids it lacks, text is left as it is: names are
for reading, never an error. SQL has the same as `go_label(x)` and the view `go_term_names`.
"""
from __future__ import annotations

import re
from typing import Iterable

from protiso.store import Store, queries

Q = queries("go")
GO_ID = re.compile(r"\bGO:\d{7}\b")


def names(store: Store, ids: Iterable[str]) -> dict[str, str]:
    """{id: name} for the ids the ontology knows (primary or alt ids); others are absent."""
    wanted = sorted({i for i in ids if isinstance(i, str) and GO_ID.fullmatch(i)})
    if not wanted:
        return {}
    table = store.sql(Q.names_of, {"ids": wanted})
    return {i: n for i, n in zip(table.column("id").to_pylist(), table.column("name").to_pylist())
            if n is not None}


def label(store: Store, keys: Iterable) -> dict:
    """{key: display text} for each key: every GO id in it followed by its name in parentheses
    ('GO:0005737' -> 'GO:0005737 (cytoplasm)'; a filter such as
    "go_under(accession, 'GO:0005737')" gets the name after the id too). Keys without a known
    GO id (other group keys, None) map to themselves."""
    keys = list(dict.fromkeys(keys))
    found = {m for k in keys if isinstance(k, str) for m in GO_ID.findall(k)}
    known = names(store, found)
    out = {}
    for k in keys:
        if isinstance(k, str) and known:
            out[k] = GO_ID.sub(lambda m: f"{m.group(0)} ({known[m.group(0)]})"
                               if m.group(0) in known else m.group(0), k)
        else:
            out[k] = k
    return out
