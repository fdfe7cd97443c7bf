"""Fresh local stores prepared beside the checks: a forked child creates MLflow's and Optuna's SQLite files (their
schemas, the study's experiment and Optuna studies) in a temporary folder while the command imports PyTorch
and checks the study; once the checks pass they are moved into place, and the workers open stores that exist.

A first run otherwise spends about 2 s after its workers start on this (MLflow's schema migrations, Optuna's
tables, one worker waiting for the other), while one of the two cores sat idle during the checks. Nothing is
written under --root before the checks pass; where they fail, the temporary folder is removed. Stores that
exist already, a tracking server, PostgreSQL or a journal file: nothing to prepare, the workers open them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.spec import StudySpec
from harness.stores import Stores, experiment_id, parse_url, use_wal

FILES = ("mlflow.db", "optuna.db")


@dataclass
class Preparation:
    process: Any  # the forked child
    folder: Path  # where it writes the two files
    stores: Stores  # the real ones

    def finish(self, ok: bool) -> None:
        """`ok`: the checks passed; wait for the child and hand its two files over together, or neither (under
        the queue's lock, where another command on the same --root may be making its own: then its are used).
        Otherwise stop the child. The temporary folder is removed either way."""
        try:
            if not ok:
                self.process.terminate()
            self.process.join()
            if ok and self.process.exitcode == 0:
                _hand_over(self.folder, self.stores)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def beside(spec: StudySpec, stores: Stores) -> Iterator[None]:
    """Prepare `stores` while the block runs (the checks); hand them over if it ends well, else drop them."""
    preparation = start(spec, stores)
    try:
        yield
    except BaseException:
        if preparation is not None:
            preparation.finish(ok=False)
        raise
    if preparation is not None:
        preparation.finish(ok=True)


def start(spec: StudySpec, stores: Stores) -> Preparation | None:
    """Start preparing `stores` for `spec` where both are fresh local SQLite files; None otherwise."""
    targets = [parse_url(stores.mlflow_uri), parse_url(stores.optuna_url)]
    fresh = all(t.kind == "sqlite" and not t.path.exists() for t in targets)
    default = [t.path for t in targets] == [stores.root / name for name in FILES]
    if not (fresh and default) or "fork" not in multiprocessing.get_all_start_methods():
        return None
    folder = Path(tempfile.mkdtemp(prefix="harness-stores-"))
    process = multiprocessing.get_context("fork").Process(target=_prepare, args=(spec, stores, folder, os.getpid()),
                                                          daemon=True)
    process.start()
    return Preparation(process, folder, stores)


def _prepare(spec: StudySpec, stores: Stores, folder: Path, parent: int) -> None:
    """In the child: the same calls a worker makes on fresh stores (its experiment's artifacts under the real
    --root), into `folder`; every connection closed after, so each file is whole without its write-ahead log."""
    from harness.run.launch import close_connections
    from harness.run.pairing import pair
    from harness.run.work import open_work

    try:
        with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):  # MLflow's "creating tables" lines
            there = dataclasses.replace(stores, tracking_uri=f"sqlite:///{folder / FILES[0]}",
                                        storage=f"sqlite:///{folder / FILES[1]}")
            use_wal(there.mlflow_uri)
            eid = experiment_id(there, spec.name)
            work = open_work(spec, there, None)  # the studies; each worker plans (planning imports scipy)
            with work.lock():
                pair(work.home, there, eid)
            work.storage.remove_session()
            close_connections(close=True)
    except BaseException:  # noqa: BLE001 - a Ctrl-C during the checks, a full temporary disk: no traceback,
        os._exit(1)  # no files; the workers make the stores themselves, and say so if something is really wrong
    if os.getppid() != parent:  # the command was killed during its checks: nobody will take these
        shutil.rmtree(folder, ignore_errors=True)


def _hand_over(folder: Path, stores: Stores) -> None:
    """Both files into --root, or neither: one without the other reads as a store that lost its partner."""
    from harness.run.queue import store_lock

    stores.root.mkdir(parents=True, exist_ok=True)
    staged = {name: stores.root / f".{name}.{os.getpid()}.tmp" for name in FILES}
    placed: list[Path] = []
    try:
        for name, path in staged.items():
            shutil.copyfile(folder / name, path)  # the temporary folder may be on another file system
        with store_lock(stores.optuna_url, stores.root):
            if any((stores.root / name).exists() for name in FILES):
                return  # another command got there first: its stores are used
            for name, path in staged.items():
                os.link(path, stores.root / name)  # fails where the file exists: never replaces another's
                placed.append(stores.root / name)
    except BaseException:
        for path in placed:  # half a pair is worse than none: the workers make both
            path.unlink(missing_ok=True)
        raise
    finally:
        for path in staged.values():
            path.unlink(missing_ok=True)
