"""What the command lines share: the store flags, and help that documents itself (argument groups, metavars,
defaults stated, registry names listed from the registries)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from harness import spec


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written, and every default stated (a flag without one says what it falls back to)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text \
                and action.option_strings:
            text += " (default: %(default)s)"
        return text


def at_most(limit: int) -> Callable[[str], int]:
    """A positive whole number no larger than `limit`: sizes past it would hang (drawing a billion search
    points under the study's lock) or exhaust memory long after the command started."""
    def parse(text: str) -> int:
        value = positive_int(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"must be at most {limit:,}, not {value:,}")
        return value

    return parse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text}")
    return value


STUDIES_DIR: Path | None = None  # None: the repository's studies/ (tests point it elsewhere)


def ui_port(text: str) -> int:
    """A TCP port number (argparse type)."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a whole number from 1 to 65535, not {text!r}")
    return int(text)


def add_store_flags(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """--root, --storage, --tracking-uri, --reports, --studies: where a study's records, reports and files are."""
    stores = parser.add_argument_group("stores", "where the records, reports and study files live")
    stores.add_argument("--root", type=Path, default=Path("mlruns"), metavar="DIR",
                        help="folder of every record a run leaves: mlflow.db, optuna.db, artifacts/, checkpoints/")
    stores.add_argument("--storage", metavar="URL", default=None,
                        help="Optuna storage: sqlite:///FILE (default: ROOT/optuna.db), journal:FILE, or "
                        "postgresql://USER@HOST:PORT/DB to share a study among machines")
    stores.add_argument("--tracking-uri", metavar="URI", default=None,
                        help="MLflow tracking store: sqlite:///FILE (default: ROOT/mlflow.db) or http://HOST:PORT, an "
                        "`mlflow server` every machine can reach")
    stores.add_argument("--reports", type=Path, default=None, metavar="DIR",
                        help="where reports go (default: ROOT/reports, beside the records they are built from, so a "
                        "run leaves a checkout clean; the committed example reports are in reports/)")
    stores.add_argument("--ui-port", type=ui_port, default=5000, metavar="PORT",
                        help="the port `mlflow ui` serves a local store on, for the links printed and written "
                        "(default 5000, mlflow ui's own)")
    stores.add_argument("--studies", type=Path, default=STUDIES_DIR or spec.STUDIES_DIR, metavar="DIR",
                        help="folder of study files")
    return stores


def reports_folder(args: argparse.Namespace) -> Path:
    """--reports, checked before anything runs: a file where a folder must be would lose the report at the end.
    Without the flag, ROOT/reports."""
    import os

    folder = args.reports if args.reports is not None else args.root / "reports"
    for existing in (folder, *folder.parents):
        if not existing.exists():
            continue
        if not existing.is_dir():
            raise ValueError(f"--reports {folder}: {existing} is a file, not a folder; give another --reports")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ValueError(f"--reports {folder}: {existing} is not writable; give another --reports")
        break
    return folder


def check_environment() -> None:
    """torch and torchvision load, as a matching pair: a broken install is the environment's to repair, said so
    with the versions and the fix (a study file that imports nothing of them would otherwise be blamed, or the
    checks end in a traceback)."""
    from importlib import metadata

    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401 - registers its C++ operators: where a mismatched pair fails
    except (ImportError, RuntimeError, OSError) as error:
        versions = []
        for package in ("torch", "torchvision"):
            try:
                versions.append(f"{package} {metadata.version(package)}")
            except metadata.PackageNotFoundError:
                versions.append(f"{package} not installed")
        raise ValueError(f"the Python environment is broken, not the study: {' and '.join(versions)} do not load "
                         f"({type(error).__name__}: {error}). Install a matching pair, e.g. `pip install "
                         "torch==2.14.1 torchvision==0.29.1` (pytorch.org lists the pairs), then rerun") from None


def exit_now(code: int) -> None:
    """End a finished command without the interpreter's teardown. Everything is recorded and closed by then
    (each worker ends its runs, the stores commit as they go), and after Ctrl-C a library thread cut off mid-call
    can abort the teardown ("terminate called ...") instead of exiting; it also spares a report's rebuild the
    collection of PyTorch's, MLflow's and SQLAlchemy's objects (reports/bench/)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def quiet_interrupt_cleanup() -> None:
    """After a Ctrl-C, SQLAlchemy logs (traceback and all) a cursor it cannot close once the interrupt cut its
    fetch short, and MLflow a write that met the other worker's cleanup write ("database is locked"): noise
    under the one line a Ctrl-C answers with, and nothing lost (the worker closes its runs after, and the next
    command closes what a dead worker left). Dropped from those loggers only when an interrupt caused them."""

    def not_after_an_interrupt(record: logging.LogRecord) -> bool:
        seen, todo = set(), [record.exc_info[1] if record.exc_info else None]
        while todo:
            error = todo.pop()
            if error is None or id(error) in seen:
                continue
            if isinstance(error, KeyboardInterrupt):
                return False
            seen.add(id(error))
            todo += [error.__context__, error.__cause__]
        return True

    pools = ("QueuePool", "NullPool", "SingletonThreadPool", "StaticPool", "AssertionPool")
    for name in (*(f"sqlalchemy.pool.impl.{pool}" for pool in pools), "mlflow.store.db.utils"):
        logging.getLogger(name).addFilter(not_after_an_interrupt)
