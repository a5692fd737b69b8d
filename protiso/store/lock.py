"""Opening the catalog under DuckDB's file lock, and telling live jobs from dead ones.

DuckDB lets one process open a database file read-write, or any number of processes open it
read-only, never both at once. protiso keeps every hold short (a long job opens the catalog
read-write only while it commits), so a process that finds the lock taken waits a bounded time
(`lock_timeout`, $PROTISO_LOCK_TIMEOUT) with a notice, then fails with StoreBusyError naming the
process that holds it.
"""
from __future__ import annotations

import os
import random
import re
import socket
import sys
import time
from pathlib import Path
from typing import Callable

import duckdb

from protiso.errors import DamagedStoreError, ProtisoError, StoreBusyError

DEFAULT_LOCK_TIMEOUT = 60.0
NOTICE_AFTER = 1.0           # seconds of waiting before the notice is shown
_PID_RE = re.compile(r"\(PID (\d+)\)")


def _stderr_notice(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


# Where "waiting for the lock" notices go; the CLI points it at its warning printer.
on_wait: Callable[[str], None] = _stderr_notice


def lock_timeout(wait: float | None = None) -> float:
    """Seconds to wait for the catalog lock: `wait` if given, else $PROTISO_LOCK_TIMEOUT, else 60."""
    if wait is not None:
        return max(0.0, float(wait))
    raw = os.environ.get("PROTISO_LOCK_TIMEOUT")
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            raise ProtisoError(f"PROTISO_LOCK_TIMEOUT={raw!r} is not a number of seconds") from None
    return DEFAULT_LOCK_TIMEOUT


def is_lock_error(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def holder(exc: BaseException) -> str:
    """'PID n' of the process DuckDB names as holding the lock, or 'another process'."""
    m = _PID_RE.search(str(exc))
    return f"process {m.group(1)}" if m else "another process"


def connect(catalog: Path, read_only: bool, wait: float | None = None) -> duckdb.DuckDBPyConnection:
    """Open the catalog, retrying while another process holds a conflicting lock, for at most
    `lock_timeout(wait)` seconds; then StoreBusyError. Other open failures are ProtisoErrors."""
    deadline = time.monotonic() + lock_timeout(wait)
    started = time.monotonic()
    noticed = False
    delay = 0.01
    while True:
        try:
            return duckdb.connect(str(catalog), read_only=read_only)
        except duckdb.Error as exc:
            if not is_lock_error(exc):
                raise catalog_error(catalog, exc) from exc
            now = time.monotonic()
            if now >= deadline:
                mode = "read" if read_only else "write"
                raise StoreBusyError(
                    f"store {catalog.parent} is in use by another process ({holder(exc)} holds its catalog); "
                    f"gave up after waiting {now - started:.0f} s to {mode}. Try again when that process "
                    f"has finished its commit or command, or wait longer with PROTISO_LOCK_TIMEOUT=SECONDS") from exc
            if not noticed and now - started >= NOTICE_AFTER:
                noticed = True
                on_wait(f"waiting for store {catalog.parent}: {holder(exc)} holds its catalog "
                        f"(up to {lock_timeout(wait):.0f} s)")
            time.sleep(min(delay, max(0.0, deadline - now)) * (0.5 + random.random()))
            delay = min(delay * 2, 0.1)


def catalog_error(catalog: Path, exc: BaseException) -> ProtisoError:
    """A one-line error for a catalog DuckDB cannot open or read."""
    text = " ".join(str(exc).split())
    if is_lock_error(exc):
        return StoreBusyError(f"store {catalog.parent} is in use by another process ({holder(exc)})")
    if "checksum" in text.lower() or "corrupt" in text.lower() or "not a valid duckdb" in text.lower():
        return DamagedStoreError(f"store catalog {catalog} is damaged ({text[:300]}); restore it from a "
                                 "backup (the Parquet parts under data/ are intact files of their own)")
    return ProtisoError(f"cannot open store catalog {catalog}: {text[:300]}")


# -- which process runs a job ------------------------------------------------------------------

def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of a process (Linux), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _start_ticks(pid: int) -> int | None:
    """The process's start time, to tell a reused pid apart."""
    stat = _proc_stat(pid)
    return None if stat is None else stat[1]


def this_process() -> dict:
    """{'pid', 'host', 'pid_start'} of the current process, recorded with a job it runs."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "pid_start": _start_ticks(os.getpid())}


def process_alive(host: str | None, pid: int | None, pid_start: int | None = None) -> bool:
    """Whether the process that recorded (host, pid, pid_start) still runs. A process on another
    host cannot be checked and counts as alive; a pid whose start time differs was reused."""
    if pid is None:
        return True
    if host and host != socket.gethostname():
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    stat = _proc_stat(int(pid))
    if stat is not None:
        if stat[0] in ("Z", "X"):          # exited, not yet reaped by its parent
            return False
        if pid_start is not None and stat[1] != int(pid_start):
            return False
    return True
