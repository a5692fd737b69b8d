"""The top of the house: imports the areas that register SQL views and UDFs with the store, so
every store opened through `protiso.open_store` has them. The store itself imports none of this."""
from protiso import integrity  # noqa: F401 - declares the areas' files and repairs (verify/repair)
from protiso import udfs  # noqa: F401 - registers the UDFs
from protiso.pairs import views as _pair_views  # noqa: F401 - registers the pair views
from protiso.runs import views as _run_views  # noqa: F401 - registers the embedding views
from protiso.store import Store, open_store

__all__ = ["Store", "open_store"]
