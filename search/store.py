"""Where a study's tracking goes, decided without importing MLflow: search/tracking.py imports it, with its SQL
store, which costs seconds of CPU (benchmarks/RESULTS.md) that the driver spends in the background while Ray starts,
not before (`InBackground`)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

# MLflow's REST client retries a refused connection inside every call for minutes (7 retries, backoff factor 2): that
# would stall the writer for a whole outage. The writer retries with its own backoff and keeps what it could not
# send, so each call fails fast instead. Values set by the user win.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
                 # with a server URI, set_terminated otherwise fetches the run once more and prints two "View run"
                 # lines per trial into the study's progress output (the driver prints the parent's URL once)
                 "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


def fail_fast_http() -> None:
    for k, v in HTTP_DEFAULTS.items():
        os.environ.setdefault(k, v)


def resolve_tracking_uri(uri: str | None) -> str:
    """--mlflow-uri, else MLFLOW_TRACKING_URI, else MLflow's local SQLite store in the working directory."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())  # workers run in other folders
    return uri


def is_local_store(uri: str) -> bool:
    return uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri


def import_tracking(uri: str) -> None:
    """Import MLflow's client and, for a database URI, its SQLAlchemy store (SQLAlchemy, alembic)."""
    import mlflow.tracking  # noqa: F401
    if "://" in uri and uri.split("://")[0] not in ("http", "https"):
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401


class InBackground:
    """`fn()` in a daemon thread, started at once; `result()` waits for it and returns its value or raises its
    error. The driver overlaps what waits on other processes (Ray's start and stop) with its own work this way."""

    def __init__(self, fn, name: str):
        self._value, self._error = None, None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True, name=name)
        self._thread.start()

    def _run(self, fn) -> None:
        try:
            self._value = fn()
        except BaseException as e:  # handed to the caller of result()
            self._error = e

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def store_lock(uri: str):
    """A file lock beside a SQLite store: creating (or upgrading) its schema from two processes at once fails in
    one of them ("table ... already exists"). Other stores need none (a server serialises its own)."""
    import contextlib

    from filelock import FileLock
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(path) + ".lock", timeout=300)
    return contextlib.nullcontext()
