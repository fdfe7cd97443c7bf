"""Disk space as a worker meets it: whether an error is a full disk (by its type and code, never its message),
which store could not write and how much room is left on its disk, and how long this worker has found it full.

SQLite says neither which file nor which disk ("database or disk is full"), so the worker names its stores here
(`watch`) and the library that failed is told by the frames its error was raised through.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

SQLITE_FULL = 13  # sqlite3's result code for "database or disk is full"
LOW_SPACE = 64 * 2**20  # a checkpoint write that failed with less than this left on a store's disk: the disk is full
FIRST_WAIT, LONGEST_WAIT = 1.0, 8.0  # as the worker waits out an outage: doubling up to the longest


def chain(error: BaseException | None) -> Iterator[BaseException]:
    """`error` and what caused it, up to ten deep."""
    seen = 0
    while error is not None and seen < 10:
        yield error
        error, seen = error.__cause__ or error.__context__, seen + 1


_PLACES: dict[str, Path] = {}  # the stores this worker writes, by who writes them: what a full disk names


@contextlib.contextmanager
def watching(stores: Any) -> Iterator[None]:
    """While a worker runs: where `stores` (a harness.stores.Stores) write, so that a full disk names the store
    and the free space on its disk (an SQLite error says neither); a fresh count of how long the disk was full."""
    from harness.stores import parse_url

    global FULL
    _PLACES.clear()
    for writer, url in (("optuna", stores.optuna_url), ("mlflow", stores.mlflow_uri)):
        parsed = parse_url(url)
        if parsed.is_file:
            _PLACES[writer] = parsed.path
    _PLACES["root"] = stores.root
    FULL = _FullDisk()
    try:
        yield
    finally:
        _PLACES.clear()


def _modules(error: BaseException) -> Iterator[str]:
    """The modules `error` was raised through, innermost last."""
    tb: TracebackType | None = error.__traceback__
    while tb is not None:
        yield tb.tb_frame.f_globals.get("__name__", "")
        tb = tb.tb_next


def _writer(error: BaseException | None) -> str | None:
    """Which library's write failed, by the frames it was raised through: optuna, mlflow or torch's writer."""
    for e in chain(error):
        for module in _modules(e):
            if module == "torch.serialization":
                return "torch"
            for library in ("optuna", "mlflow"):
                if module.startswith(library + "."):
                    return library
    return None


_STORE_NAMES = {"optuna": "the Optuna storage", "mlflow": "the MLflow store"}


def free_bytes(path: Path) -> int | None:
    folder = next((p for p in (path, *path.parents) if p.is_dir()), None)
    try:
        return shutil.disk_usage(folder).free if folder is not None else None
    except OSError:
        return None


@dataclass
class _FullDisk:
    """One full disk, as every write of this worker meets it: the patience counts from the first error, however
    many writes (a trial's curve, its record, the next claim) wait in turn. An error after a quiet spell (the
    disk had room again) starts a new count."""

    since: float | None = None
    last: float | None = None
    waits: int = 0
    forgiven: bool = False
    seen: float = float("-inf")  # when a write last failed for want of space, by its error's type and code

    def evidence(self) -> None:
        self.seen = time.monotonic()

    def recent(self) -> bool:
        return 0 <= time.monotonic() - self.seen <= 2 * LONGEST_WAIT


    def note(self, now: float) -> float:
        """Seconds the disk has been full, counting this error."""
        if self.last is None or self.since is None or not 0 <= now - self.last <= 2 * LONGEST_WAIT:
            self.since, self.waits, self.forgiven = now, 0, False
        self.last = now
        return now - self.since

    def forgive(self, now: float) -> bool:
        """The disk has room again: count afresh from now, once (a disk that keeps failing with room on it, a
        quota say, still stops the worker)."""
        if self.forgiven:
            return False
        self.since, self.waits, self.forgiven = now, 0, True
        return True

    def next_wait(self) -> float:
        self.waits += 1
        return min(FIRST_WAIT * 2 ** (self.waits - 1), LONGEST_WAIT)


FULL = _FullDisk()


def _torch_write_failed(error: BaseException) -> Path | None:
    """A checkpoint torch could not write (it says so as a RuntimeError, without errno) while a store's disk is
    all but full, or just after a store's write failed for want of space: the watched place with the least room
    (else the root). Judged once, when first asked: the disk may be freed while the slot is recorded."""
    if not (isinstance(error, RuntimeError) and "torch.serialization" in _modules(error)):
        return None
    if not hasattr(error, "harness_full_place"):
        rooms = sorted((free, place) for place in _PLACES.values() if (free := free_bytes(place)) is not None)
        low = [place for free, place in rooms if free < LOW_SPACE]
        error.harness_full_place = low[0] if low else _PLACES.get("root") if FULL.recent() else None
    return error.harness_full_place


def disk_full(error: BaseException | None) -> str | None:
    """Where the disk is full, if `error` or its cause says so by its type and code (ENOSPC, SQLITE_FULL,
    PostgreSQL's disk-full class, a checkpoint torch could not write on an all but full disk); else None."""
    try:
        from psycopg.errors import DiskFull as PostgresDiskFull
    except ImportError:
        PostgresDiskFull = ()
    for e in chain(error):
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            FULL.evidence()
            if e.filename:
                return f"writing {e.filename}"
            return "writing MLflow's artifacts" if _writer(error) == "mlflow" else "writing a file"
        if isinstance(e, sqlite3.Error) and getattr(e, "sqlite_errorcode", None) == SQLITE_FULL:
            FULL.evidence()
            writer = _writer(error)
            if writer in _STORE_NAMES and writer in _PLACES:
                return f"writing {_STORE_NAMES[writer]} {_PLACES[writer]}"
            return f"writing an SQLite store in {_PLACES['root']}" if "root" in _PLACES else "writing an SQLite store"
        if PostgresDiskFull and isinstance(e, PostgresDiskFull):
            return "on the PostgreSQL server"
        if (place := _torch_write_failed(e)) is not None:
            return f"writing a checkpoint, in {place}" if place.is_dir() else f"writing a checkpoint, beside {place}"
    return None


def full_place(error: BaseException | None) -> Path | None:
    """The file or folder whose disk is full: the file the error names, the store that failed to write, else
    the stores' root (where they default)."""
    errors = list(chain(error))
    named = next((e.filename for e in errors if isinstance(e, OSError) and e.filename), None)
    if named:
        return Path(named)
    if torch := next(filter(None, map(_torch_write_failed, errors)), None):
        return torch
    sqlite_full = any(isinstance(e, sqlite3.Error) and getattr(e, "sqlite_errorcode", None) == SQLITE_FULL
                      for e in errors)
    return _PLACES.get(_writer(error) or "", _PLACES.get("root")) if sqlite_full else _PLACES.get("root")


def free_space(error: BaseException | None) -> str:
    """', N MB free there' on the disk of what `error` failed to write (else of the working folder)."""
    place = full_place(error) or Path.cwd()
    free = free_bytes(place.absolute())
    return "" if free is None else f", {free / 2**20:.0f} MB free there"


def device(error: BaseException) -> str:
    """Which disk is full, the same for every worker that meets it through whichever store on it."""
    place = full_place(error)
    folder = next((p for p in (place, *place.parents) if p.is_dir()), None) if place else None
    try:
        return f"device {os.stat(folder).st_dev}" if folder else "a disk"
    except OSError:
        return "a disk"
