"""Where a study's records live, and opening them: MLflow's tracking store and experiment, Optuna's storage.

One parser (`parse_url`) tells every kind of store URL apart; the rest of the package asks it, never the text.
What the stores hold is `harness.schema`.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEARTBEAT_SECONDS = 5  # a running trial proves its worker alive this often (RDB storages)
GRACE_SECONDS = 30  # ... and is taken for dead after this long without a beat
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}  # MLflow 3 opens it on the runs
STORAGE_SCHEMES = ("sqlite:///FILE", "journal:FILE", "postgresql://USER@HOST:PORT/DB")
TRACKING_SCHEMES = ("sqlite:///FILE", "http://HOST:PORT")


@dataclass(frozen=True)
class StoreURL:
    """A store URL taken apart: `kind` is sqlite | journal | postgresql | http | file | other; `path` the
    file of a SQLite or journal store.

    >>> parse_url("sqlite:///mlruns/optuna.db")
    StoreURL(kind='sqlite', path=PosixPath('mlruns/optuna.db'))
    >>> parse_url("https://host:5000").kind, parse_url("postgresql+psycopg://u@h/db").kind
    ('http', 'postgresql')
    """

    kind: str
    path: Path | None = None

    @property
    def is_file(self) -> bool:
        return self.path is not None


def parse_url(url: str) -> StoreURL:
    scheme, sep, rest = url.partition(":")
    scheme = scheme.split("+")[0].lower()  # postgresql+psycopg: the dialect, whatever the driver
    if not sep:
        return StoreURL("other")
    if scheme == "sqlite" and rest.startswith("///"):
        return StoreURL("sqlite", Path(rest.removeprefix("///").split("?")[0]))
    if scheme == "journal" and rest:
        return StoreURL("journal", Path(rest))
    if scheme in ("postgresql", "postgres"):
        return StoreURL("postgresql")
    if scheme in ("http", "https"):
        return StoreURL("http")
    if scheme == "file":  # MLflow's old file store: read-only here (MLflow 3.13+ refuses to write one)
        return StoreURL("file")
    return StoreURL("other")


@dataclass(frozen=True)
class Stores:
    """Where a run's records live: MLflow's SQLite store and artifacts, Optuna's storage, checkpoints."""

    root: Path = Path("mlruns")
    tracking_uri: str | None = None  # default sqlite:///<root>/mlflow.db
    storage: str | None = None  # default sqlite:///<root>/optuna.db; journal:<file> for many workers

    @property
    def mlflow_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def optuna_url(self) -> str:
        return self.storage or f"sqlite:///{self.root / 'optuna.db'}"

    @property
    def remote_tracking(self) -> bool:
        """A tracking server: workers on other machines, judged by their heartbeat rather than their pid."""
        return parse_url(self.mlflow_uri).kind == "http"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"


def optuna_study_name(study: str, arm: str) -> str:
    return f"{study}/{arm}"


def confirm_study_name(study: str, arm: str) -> str:
    return f"{optuna_study_name(study, arm)}/confirm"


def lock_file(url: str, root: Path, name: str = "") -> Path:
    """Beside the Optuna storage file, so every process that shares the storage shares the lock."""
    suffix = f".{name}" if name else ""
    parsed = parse_url(url)
    if parsed.is_file:
        return parsed.path.parent / f".{parsed.path.name}{suffix}.lock"
    return root / f".harness{suffix}.lock"


def use_tracking(stores: Stores) -> None:
    """Point MLflow at the study's tracking store; every harness command passes here before MLflow reads."""
    import mlflow

    # the records' artifacts are a few small files: no tqdm bar on stderr for each (a user's setting wins)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if stores.tracking_uri is None:
        stores.root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(stores.mlflow_uri)


def experiment_id(stores: Stores, name: str, create: bool = True) -> str | None:
    """The MLflow experiment for a study, created with its artifacts under <root>/artifacts/<name> (a tracking
    server keeps its own), shown in the UI's model-training view."""
    import mlflow

    use_tracking(stores)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    if not create:
        return None
    location = None if stores.remote_tracking else (stores.artifacts / name).resolve().as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location, tags=EXPERIMENT_TAGS)
    except mlflow.exceptions.MlflowException:  # another worker created it first
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def use_wal(url: str) -> None:
    """SQLite in write-ahead-log mode: readers no longer block the one writer, so several local workers can
    share a store. The mode is a property of the file: set once, it stays."""
    parsed = parse_url(url)
    if parsed.kind == "sqlite":
        import sqlite3

        parsed.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(parsed.path, timeout=60)) as db:
            db.execute("PRAGMA journal_mode=WAL")


def open_storage(stores: Stores, heartbeat: bool = False) -> Any:
    """Optuna storage: `journal:<file>`, SQLite (waiting up to a minute for another worker's write), or any RDB
    URL (PostgreSQL for many machines; with `heartbeat`, a running trial's worker proves itself alive)."""
    import optuna

    url, parsed = stores.optuna_url, parse_url(stores.optuna_url)
    if parsed.kind == "journal":
        from optuna.storages.journal import JournalFileBackend

        parsed.path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(parsed.path)))
    kwargs: dict = {}
    if parsed.kind == "sqlite":
        parsed.path.parent.mkdir(parents=True, exist_ok=True)
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    elif heartbeat:
        kwargs.update(heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable since 2.9
        return optuna.storages.RDBStorage(url, **kwargs)


def check_stores(stores: Stores) -> None:
    """Fail before anything is written when a store cannot be used: a --root below a file, an unknown URL,
    an unwritable or corrupted SQLite file, a server that does not answer. Each message names the store."""
    for folder in (stores.root, *stores.root.parents):
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"--root {stores.root}: {folder} is a file, not a folder; choose another --root")
    url, parsed = stores.optuna_url, parse_url(stores.optuna_url)
    if parsed.kind in ("sqlite", "journal"):
        _check_file(parsed.path, "Optuna storage", parsed.kind == "sqlite", made_here=stores.storage is None)
        if parsed.kind == "journal":
            _check_journal(parsed.path)
    elif parsed.kind == "postgresql":
        if stores.tracking_uri is None:  # whichever worker starts first: a shared study, a private log
            raise ValueError(f"--storage {url}: a PostgreSQL storage is shared with other workers, but this worker's "
                             f"MLflow store is local ({stores.root / 'mlflow.db'}); give every worker the same "
                             "--tracking-uri (an MLflow server: docs/workers.md)")
        _check_postgres(url)
    else:
        raise ValueError(f"--storage {url!r}: unknown kind of storage; choices: {', '.join(STORAGE_SCHEMES)}")
    uri, parsed = stores.mlflow_uri, parse_url(stores.mlflow_uri)
    if parsed.kind == "sqlite":
        _check_file(parsed.path, "MLflow store", True, made_here=stores.tracking_uri is None)
    elif parsed.kind == "http":
        _check_server(uri)
    else:
        raise ValueError(f"--tracking-uri {uri!r}: unknown kind of tracking store; choices: "
                         f"{', '.join(TRACKING_SCHEMES)}")


def _check_file(path: Path, what: str, sqlite: bool, made_here: bool = False) -> None:
    """`made_here`: a file inside --root, whose folders the harness makes; a file named by URL must have its
    folder already (a typo in a path should not grow a new tree of stores)."""
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder, not a file; name a file in it, e.g. {path / 'optuna.db'}")
    existing = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("/"))
    if not existing.is_dir():
        raise ValueError(f"{what} {path}: {existing} is a file, not a folder")
    if not made_here and existing != path.parent:
        raise ValueError(f"{what} {path}: its folder {path.parent} does not exist; create it, or fix the path")
    if not os.access(existing, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"{what} {path}: not writable here; choose another --root or fix the permissions")
    if sqlite and path.is_file() and path.stat().st_size:
        import sqlite3

        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                db.execute("SELECT name FROM sqlite_master").fetchall()
        except sqlite3.DatabaseError as error:
            raise ValueError(f"{what} {path} is not a readable SQLite database ({error}); move it away to "
                             "start afresh, or use another --root") from None


def _check_journal(path: Path) -> None:
    """An existing journal file's first record must be an Optuna journal operation (JSON with an op_code)."""
    if not path.is_file() or not path.stat().st_size:
        return
    with path.open("rb") as journal:
        first = journal.readline(1 << 20)
    try:
        record = json.loads(first)
    except ValueError:
        record = None
    if not isinstance(record, dict) or "op_code" not in record:
        raise ValueError(f"Optuna storage {path} is not an Optuna journal (its first line is not a journal record); "
                         "move it away to start afresh, or name another file")


def _check_postgres(url: str) -> None:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 10})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as error:  # noqa: BLE001 - the driver's many errors all mean: not usable
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"--storage {url}: cannot use this PostgreSQL database ({first}); is the server "
                         "running, and does the database exist (createdb)?") from None


def _check_server(uri: str) -> None:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10) as response:
            response.read()
    except OSError as error:
        raise ValueError(f"--tracking-uri {uri}: no MLflow server answers there ({error}); start one with "
                         "`mlflow server` (see docs/workers.md) or check the address") from None
