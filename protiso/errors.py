"""Exception types: every user-facing failure is a ProtisoError with a message that names the
file, line, record or value at fault. The CLI prints the message and exits non-zero."""


class ProtisoError(Exception):
    """Base class for errors shown to the user as a message, not a traceback.

    `param` names the library parameter whose value is at fault (e.g. "model"); the library's
    message names values, and the CLI adds the option that sets the parameter."""

    def __init__(self, message: str = "", param: str | None = None):
        super().__init__(message)
        self.param = param


class InputError(ProtisoError):
    """Bad input data (a file, a record, a value); the store is left unchanged."""


class StoreBusyError(ProtisoError):
    """The store's catalog is locked by another process."""


class NotFoundError(ProtisoError):
    """A named thing (model, run, accession, pair set) does not exist."""


class QueryError(ProtisoError):
    """A user-supplied SQL query or expression failed to bind or run."""


class DamagedStoreError(ProtisoError):
    """A file the catalog lists is missing or changed (or the catalog itself is damaged)."""
