"""A storage that goes away for a while (a PostgreSQL restart, a full disk freed, a network blip) is waited
out, not fatal: told apart from a bad write by the exception's type, never by its message.

A slot whose run met the outage is interrupted (it runs again, with the same settings); the queue's planning and
claiming, and telling Optuna how a slot ended, are retried with backoff until the storage answers or
`PATIENCE_SECONDS` pass, when the worker stops with one clear line and nothing left RUNNING that a restart
will not recover.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
PATIENCE_SECONDS = 600.0
FIRST_WAIT, LONGEST_WAIT = 1.0, 30.0


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


def is_outage(error: BaseException | None) -> bool:
    """Whether `error`, or what caused it (Optuna wraps the database's errors), is the storage being away."""
    kinds, seen = _outage_types(), 0
    while error is not None and seen < 10:
        if isinstance(error, kinds):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


class StorageGone(RuntimeError):
    """The storage stayed unreachable past the worker's patience."""


def retrying(action: Callable[[], T], what: str, patience: float = PATIENCE_SECONDS,
             sleep: Callable[[float], None] = time.sleep) -> T:
    """`action()`, again after an outage, waiting 1, 2, 4 ... 30 s between tries, for up to `patience` seconds."""
    start, wait = time.monotonic(), FIRST_WAIT
    while True:
        try:
            return action()
        except Exception as error:
            if not is_outage(error):
                raise
            waited = time.monotonic() - start
            if waited >= patience:
                raise StorageGone(f"the storage stayed unreachable for {waited:.0f} s while {what} "
                                  f"({type(error).__name__}); finished work is kept: rerun the same command "
                                  "once it is back") from error
            print(f"storage unreachable while {what} ({type(error).__name__}); retrying in {wait:.0f} s",
                  file=sys.stderr, flush=True)
            logging.getLogger("harness").debug("outage: %s", error)
            sleep(wait)
            wait = min(wait * 2, LONGEST_WAIT)
