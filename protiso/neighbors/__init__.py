"""Nearest neighbours over embedding runs (FAISS indexes kept in the store, SQL-filtered
lookup joined with protein metadata) and isotropy-correcting transforms as derived runs."""
from protiso.neighbors.index import (KINDS, METRICS, IndexInfo, build_index, extend_index,
                                     get_index_info, index_state, list_indexes)
from protiso.neighbors.search import NeighborResult, neighbors, search_vectors

__all__ = ["KINDS", "METRICS", "IndexInfo", "NeighborResult", "build_index", "extend_index",
           "get_index_info", "index_state", "list_indexes", "neighbors", "search_vectors"]
