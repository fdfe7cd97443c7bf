"""A storage that goes away for a while (a PostgreSQL restart, a full disk freed, a network blip) is waited
out, not fatal: told apart from a bad write by the exception's type, never by its message.

A slot whose run met the outage is interrupted (it runs again, with the same settings); the queue's planning and
claiming, and telling Optuna how a slot ended, are retried with backoff until the storage answers or
`PATIENCE_SECONDS` pass, when the worker stops with one clear line and nothing left RUNNING that a restart
will not recover.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from harness.run import space
from harness.run.space import FIRST_WAIT, LONGEST_WAIT, LOW_SPACE, chain, disk_full, free_space

T = TypeVar("T")
PATIENCE_SECONDS = 600.0
DISK_FULL_PATIENCE = 15.0  # a full disk is rarely freed within minutes: stop soon, say so, and let a rerun carry on
SQLITE_BUSY, SQLITE_LOCKED = 5, 6  # "database is locked": another connection holds the write lock
LOCK_PATIENCE = 10.0  # a cleanup write after Ctrl-C tries again this long (each try first waits out a lock for
# the store's own busy timeout), then gives up: the rerun closes what is left


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


def _disk_full_gone(error: BaseException, waited: float, what: str) -> StorageGone:
    return StorageGone(f"the disk is full ({disk_full(error)}{free_space(error)}) for {waited:.0f} s while {what}; "
                       "finished work is kept: free some space and rerun the same command (what was cut off runs "
                       "again)")


def wait_for_space(error: BaseException, what: str, sleep: Callable[[float], None] = time.sleep) -> None:
    """After a run met a full disk (`error`): go on at once if its disk has room again, else wait a while,
    silently, for space; past DISK_FULL_PATIENCE since the disk was first found full, StorageGone with the one
    line that says where and how much is free."""
    now = time.monotonic()
    waited = space.FULL.note(now)
    place = space.full_place(error)
    if place is not None and (space.free_bytes(place.absolute()) or 0) >= LOW_SPACE and space.FULL.forgive(now):
        return  # freed while the slot was recorded (its record may have waited most of the patience)
    if waited >= DISK_FULL_PATIENCE:
        raise _disk_full_gone(error, waited, what) from error
    sleep(min(space.FULL.next_wait(), DISK_FULL_PATIENCE - waited))


class StorageGone(RuntimeError):
    """The storage stayed unreachable (or its disk full) past the worker's patience."""


class DiskFull(RuntimeError):
    """A run could not write for want of disk space: the worker stops, and a rerun carries on."""

    def __init__(self, where: str):
        super().__init__(f"the disk is full ({where}); finished work is kept: free some space and rerun the "
                         "same command (what was cut off runs again)")


def gist(error: BaseException) -> str:
    """What a worker's stop is about, the same for every worker that meets it (a full disk: which disk; an
    outage: which store), so that a command of many workers says it once."""
    return f"disk full: {space.device(error)}" if disk_full(error) is not None else f"unreachable: {store_of(error)}"


def store_of(error: BaseException | None) -> str:
    """Which store went away, by the error's type: MLflow's tracking server (HTTP) or a database."""
    return "the MLflow tracking server" if any(_tracking_server_away(e) for e in chain(error)) else "the storage"


def is_outage(error: BaseException | None) -> bool:
    """Whether `error`, or what caused it (Optuna wraps the database's errors), is the storage being away."""
    kinds = _outage_types()
    return any(isinstance(e, kinds) or _tracking_server_away(e) for e in chain(error))


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


def retrying(action: Callable[[], T], what: str, patience: float = PATIENCE_SECONDS,
             sleep: Callable[[float], None] = time.sleep) -> T:
    """`action()`, again after an outage, waiting 1, 2, 4, 8, 8 ... s between tries, for up to `patience` seconds."""
    start, wait = time.monotonic(), FIRST_WAIT
    while True:
        try:
            return action()
        except Exception as error:
            full = disk_full(error)
            if full is None and not is_outage(error):
                raise
            logging.getLogger("harness").debug("outage: %s", error)
            if full is not None:  # waited out silently: the one line is the worker's when it stops
                waited = space.FULL.note(time.monotonic())
                if waited >= min(patience, DISK_FULL_PATIENCE):
                    raise _disk_full_gone(error, waited, what) from error
                sleep(min(space.FULL.next_wait(), DISK_FULL_PATIENCE - waited))
                continue
            waited, store = time.monotonic() - start, store_of(error)
            if waited >= patience:
                raise StorageGone(f"{store} stayed unreachable for {waited:.0f} s while {what} "
                                  f"({type(error).__name__}); finished work is kept: rerun the same command once it "
                                  "is back") from error
            print(f"{store.removeprefix('the ')} unreachable while {what} ({type(error).__name__}); retrying in "
                  f"{wait:.0f} s", file=sys.stderr, flush=True)
            sleep(wait)
            wait = min(wait * 2, LONGEST_WAIT)


def locked(error: BaseException | None) -> bool:
    """Whether `error`, or what caused it, is SQLite's "database is locked" (by its result code)."""
    return any(isinstance(e, sqlite3.Error) and getattr(e, "sqlite_errorcode", None) in (SQLITE_BUSY, SQLITE_LOCKED)
               for e in chain(error))


def settle(action: Callable[[], object], patience: float = LOCK_PATIENCE,
           sleep: Callable[[float], None] = time.sleep) -> BaseException | None:
    """A cleanup write after Ctrl-C (a run ended KILLED, a trial told interrupted): tried again, silently, while
    another worker's cleanup holds the store's lock (the same Ctrl-C reached every worker at once) or the store
    is away, for up to `patience` seconds. Returns None once it is written, else the last error: the caller says
    so in one line and the rerun repairs what is left (a dead worker's runs are closed by the next one)."""
    start, wait = time.monotonic(), FIRST_WAIT / 4
    while True:
        try:
            action()
            return None
        except Exception as error:  # noqa: BLE001 - after Ctrl-C: said in one line by the caller, never a traceback
            if not (locked(error) or is_outage(error)) or time.monotonic() - start >= patience:
                return error
            sleep(wait)
            wait = min(wait * 2, LONGEST_WAIT / 4)


def _reported(record: logging.LogRecord) -> bool:
    """False for a library's record of an error the harness reports itself (a full disk, a store that is away
    or locked: waited out, then said in one line), which would print chained tracebacks and retry lines above
    that line."""
    errors = [record.exc_info[1]] if record.exc_info and record.exc_info[1] is not None else []
    errors += [a for a in (record.args if isinstance(record.args, tuple) else ()) if isinstance(a, BaseException)]
    return not any(disk_full(e) is not None or is_outage(e) for e in errors)


def quiet_reported_errors() -> None:
    """Drop, from every handler logging has now (MLflow's, Optuna's, alembic's, the root's and Python's last
    resort, which SQLAlchemy's loggers reach), the records of errors the harness reports itself. Installed once
    per handler; called again after the stores are opened, since a migration can add handlers."""
    handlers = [*logging.getLogger().handlers, logging.lastResort]
    for logger in list(logging.Logger.manager.loggerDict.values()):
        handlers += getattr(logger, "handlers", [])
    for handler in handlers:
        if handler is not None and _reported not in handler.filters:
            handler.addFilter(_reported)
