"""protiso: an embedding store and query database for the isotropy of protein language models.

`Store` and `open_store` are loaded on first use, so `import protiso` (and the start of the
command line, where a Ctrl-C must end in one line) stays light."""
from protiso._version import __version__

__all__ = ["Store", "open_store", "__version__"]


def __getattr__(name: str):
    if name in ("Store", "open_store"):
        from protiso import wiring     # imports every area, which registers its views and UDFs
        return getattr(wiring, name)
    raise AttributeError(f"module 'protiso' has no attribute {name!r}")
