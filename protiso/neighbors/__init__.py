"""Nearest neighbours over embedding runs (FAISS indexes kept in the store, SQL-filtered
lookup joined with protein metadata) and isotropy-correcting transforms as derived runs."""
from protiso.neighbors.index import (DEFAULT_KIND, KINDS, METRICS, IndexInfo, build_index, extend_index,
                                     get_index_info, index_state, list_indexes)
from protiso.neighbors.kinds import DEFAULT_PARAMS
from protiso.neighbors.search import NeighborResult, neighbors, search_vectors

__all__ = ["DEFAULT_KIND", "DEFAULT_PARAMS", "KINDS", "METRICS", "IndexInfo", "NeighborResult", "build_index",
           "extend_index", "get_index_info", "index_state", "list_indexes", "neighbors", "search_vectors"]
