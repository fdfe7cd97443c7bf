"""A storage that goes away for a while (a PostgreSQL restart, a full disk freed, a network blip) is waited
out, not fatal: told apart from a bad write by the exception's type, never by its message.

A slot whose run met the outage is interrupted (it runs again, with the same settings); the queue's planning and
claiming, and telling Optuna how a slot ended, are retried with backoff until the storage answers or
`PATIENCE_SECONDS` pass, when the worker stops with one clear line and nothing left RUNNING that a restart
will not recover.
"""

from __future__ import annotations

import errno
import logging
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
PATIENCE_SECONDS = 600.0
DISK_FULL_PATIENCE = 15.0  # a full disk is rarely freed within minutes: stop soon, say so, and let a rerun carry on
FIRST_WAIT, LONGEST_WAIT = 1.0, 8.0  # a store that comes back is found soon; a try is one cheap query
SQLITE_FULL = 13  # sqlite3's result code for "database or disk is full"


def _outage_types() -> tuple[type[BaseException], ...]:
    """Connection-level errors of the database stack: the server is unreachable, not the data wrong."""
    import sqlalchemy.exc

    types: list[type[BaseException]] = [sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError]
    try:
        import psycopg

        types.append(psycopg.OperationalError)  # AdminShutdown, connection refused: subclasses of it
    except ImportError:
        pass
    return tuple(types)


def _tracking_server_away(error: BaseException) -> bool:
    """The MLflow tracking server in use away past its client's own retries (MLflow wraps the HTTP error). Only
    its address counts: another download failing (a weights hub) says nothing about the stores."""
    import mlflow
    import requests.exceptions

    if not isinstance(error, (requests.exceptions.ConnectionError, requests.exceptions.RetryError,
                              requests.exceptions.Timeout)):
        return False
    url = getattr(getattr(error, "request", None), "url", None) or ""
    server = mlflow.get_tracking_uri().rstrip("/")
    return server.startswith("http") and url.startswith(server)


def _chain(error: BaseException | None):
    seen = 0
    while error is not None and seen < 10:
        yield error
        error, seen = error.__cause__ or error.__context__, seen + 1


def disk_full(error: BaseException | None) -> str | None:
    """Where the disk is full, if `error` or its cause says so by its type and code (ENOSPC, SQLITE_FULL,
    PostgreSQL's disk-full class); else None."""
    try:
        from psycopg.errors import DiskFull as PostgresDiskFull
    except ImportError:
        PostgresDiskFull = ()
    for e in _chain(error):
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return f"writing {e.filename}" if e.filename else "writing a file"
        if isinstance(e, sqlite3.Error) and getattr(e, "sqlite_errorcode", None) == SQLITE_FULL:
            return "writing an SQLite store"
        if PostgresDiskFull and isinstance(e, PostgresDiskFull):
            return "on the PostgreSQL server"
    return None


def free_space(error: BaseException | None) -> str:
    """', N MB free' on the disk of the file the error names (else of the working folder, where stores default)."""
    named = next((e.filename for e in _chain(error) if isinstance(e, OSError) and e.filename), None)
    try:
        folder = Path(named).parent if named else Path.cwd()
        return f", {shutil.disk_usage(folder).free / 2**20:.0f} MB free there"
    except OSError:
        return ""


class DiskFull(RuntimeError):
    """A run could not write for want of disk space: the worker stops, and a rerun carries on."""

    def __init__(self, where: str):
        super().__init__(f"the disk is full ({where}); finished work is kept: free some space and rerun the "
                         "same command (what was cut off runs again)")


def store_of(error: BaseException | None) -> str:
    """Which store went away, by the error's type: MLflow's tracking server (HTTP) or a database."""
    return "the MLflow tracking server" if any(_tracking_server_away(e) for e in _chain(error)) else "the storage"


def is_outage(error: BaseException | None) -> bool:
    """Whether `error`, or what caused it (Optuna wraps the database's errors), is the storage being away."""
    kinds = _outage_types()
    return any(isinstance(e, kinds) or _tracking_server_away(e) for e in _chain(error))


class TrackingRetries(logging.Handler):
    """MLflow's client waits out a tracking server that is away by itself (urllib3 retries with backoff, about
    four minutes in all) and only logs each retry: say so on stderr as the harness says its own waits. Told by
    the record's retry state (a `Retry`), not by its text."""

    def __init__(self, uri: str):
        super().__init__(logging.WARNING)
        self.uri = uri

    def emit(self, record: logging.LogRecord) -> None:
        from urllib3.util import Retry

        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) >= 2 and isinstance(args[0], Retry):
            left = args[0].total
            print(f"tracking server {self.uri} unreachable ({type(args[1]).__name__}); MLflow's client retries"
                  + (f", {left} tries left" if isinstance(left, int) else ""), file=sys.stderr, flush=True)


def announce_tracking_retries(uri: str) -> None:
    """Install `TrackingRetries` once for a tracking server `uri` (HTTP requests go through urllib3's pool)."""
    pool = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(h, TrackingRetries) for h in pool.handlers):
        pool.addHandler(TrackingRetries(uri))


class StorageGone(RuntimeError):
    """The storage stayed unreachable past the worker's patience."""


def retrying(action: Callable[[], T], what: str, patience: float = PATIENCE_SECONDS,
             sleep: Callable[[float], None] = time.sleep) -> T:
    """`action()`, again after an outage, waiting 1, 2, 4, 8, 8 ... s between tries, for up to `patience` seconds."""
    start, wait = time.monotonic(), FIRST_WAIT
    while True:
        try:
            return action()
        except Exception as error:
            if not is_outage(error):
                raise
            waited, full, store = time.monotonic() - start, disk_full(error), store_of(error)
            problem = f"the disk is full ({full}{free_space(error)})" if full else f"{store} stayed unreachable"
            if waited >= (min(patience, DISK_FULL_PATIENCE) if full else patience):
                raise StorageGone(f"{problem} for {waited:.0f} s while {what} ({type(error).__name__}); finished "
                                  "work is kept: rerun the same command once it is back") from error
            now = f"the disk is full ({full}): free some space" if full else f"{store.removeprefix('the ')} unreachable"
            print(f"{now} while {what} ({type(error).__name__}); retrying in {wait:.0f} s", file=sys.stderr,
                  flush=True)
            logging.getLogger("harness").debug("outage: %s", error)
            sleep(wait)
            wait = min(wait * 2, LONGEST_WAIT)
