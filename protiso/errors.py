"""Exception types: every user-facing failure is a ProtisoError with a message that names the
file, line, record or value at fault. The CLI prints the message and exits non-zero."""


class ProtisoError(Exception):
    """Base class for errors shown to the user as a message, not a traceback."""


class InputError(ProtisoError):
    """Bad input data (a file, a record, a value); the store is left unchanged."""


class StoreBusyError(ProtisoError):
    """The store's catalog is locked by another process."""


class NotFoundError(ProtisoError):
    """A named thing (model, run, accession, pair set) does not exist."""


class QueryError(ProtisoError):
    """A user-supplied SQL query or expression failed to bind or run."""
