"""protiso: an embedding store and query database for the isotropy of protein language models."""
from protiso._version import __version__
from protiso.wiring import Store, open_store

__all__ = ["Store", "open_store", "__version__"]
