"""protiso: an embedding store and query database for the isotropy of protein language models."""
__version__ = "0.1.0"

from protiso.store import Store, open_store  # noqa: E402

__all__ = ["Store", "open_store", "__version__"]
