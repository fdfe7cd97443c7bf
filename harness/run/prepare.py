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
import sys
import tempfile
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
        """`ok`: the checks passed; wait for the child and move its files into place (never over a file that
        appeared meanwhile: another command on the same --root got there first, and its files are used).
        Otherwise stop the child. The temporary folder is removed either way."""
        try:
            if not ok:
                self.process.terminate()
            self.process.join()
            if ok and self.process.exitcode == 0:
                for name in FILES:
                    _move_no_clobber(self.folder / name, self.stores.root / name)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def start(spec: StudySpec, stores: Stores) -> Preparation | None:
    """Start preparing `stores` for `spec` where both are fresh local SQLite files; None otherwise."""
    targets = [parse_url(stores.mlflow_uri), parse_url(stores.optuna_url)]
    fresh = all(t.kind == "sqlite" and not t.path.exists() for t in targets)
    default = [t.path for t in targets] == [stores.root / name for name in FILES]
    if not (fresh and default) or "fork" not in multiprocessing.get_all_start_methods():
        return None
    folder = Path(tempfile.mkdtemp(prefix="harness-stores-"))
    process = multiprocessing.get_context("fork").Process(target=_prepare, args=(spec, stores, folder), daemon=True)
    process.start()
    return Preparation(process, folder, stores)


def _prepare(spec: StudySpec, stores: Stores, folder: Path) -> None:
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
            work = open_work(spec, there, None)  # the studies; each worker plans (that needs scipy: 1 s to import)
            with work.lock():
                pair(work.home, there, eid)
            work.storage.remove_session()
            close_connections(close=True)
    except BaseException:  # noqa: BLE001 - a Ctrl-C during the checks, a full temporary disk: no traceback,
        os._exit(1)  # no files; the workers make the stores themselves, and say so if something is really wrong
    sys.stdout.flush()


def _move_no_clobber(source: Path, target: Path) -> None:
    if not source.is_file():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copyfile(source, staged)  # the temporary folder may be on another file system
    try:
        os.link(staged, target)  # fails where the file exists: never replaces another command's store
    except FileExistsError:
        pass
    finally:
        staged.unlink()
