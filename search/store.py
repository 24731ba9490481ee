"""Where a study's tracking goes, decided without importing MLflow: search/tracking.py imports it, with its SQL
store, which costs seconds of CPU (benchmarks/RESULTS.md) that the driver spends in the background while Ray starts,
not before (`InBackground`). Also a local `mlflow server` over a store, for the tests and scripts that read a study
over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
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


# ------------------------------------------------------------------------------------------------------------
# A local `mlflow server` (the REST store): on loopback only, in its own process group so that stopping it stops
# its gunicorn/uvicorn workers too
# ------------------------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on at the moment."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    """Whether the MLflow server at `url` answers its /health endpoint."""
    import urllib.request  # here: the study driver imports this module on its way to start Ray
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def start_server(backend_uri: str, port: int, workdir: Path, log_name: str = "server.log",
                 artifacts: Path | None = None, timeout_s: float = 180.0) -> subprocess.Popen:
    """`mlflow server` on 127.0.0.1:`port` over `backend_uri`, one worker, artifacts served from `artifacts` where
    given, run in `workdir` with its output in `workdir / log_name`; returns once /health answers. Where the server
    exits or does not answer within `timeout_s`, it is stopped and RuntimeError gives the end of its log."""
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow_cli)] if mlflow_cli.exists() else [sys.executable, "-m", "mlflow"]
    cmd += ["server", "--host", "127.0.0.1", "--port", str(port), "--backend-store-uri", backend_uri, "--workers", "1"]
    if artifacts is not None:
        cmd += ["--serve-artifacts", "--artifacts-destination", str(artifacts)]
    log_path = Path(workdir) / log_name
    with open(log_path, "w") as log:
        # MLflow 3 also starts several job consumers (GenAI jobs) by default: nothing here needs them, and on a
        # small machine they make the server much slower to answer
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True,
                                env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    url = f"http://127.0.0.1:{port}"
    end = time.time() + timeout_s
    while not healthy(url):
        if proc.poll() is not None or time.time() > end:
            code = proc.poll()
            stop_server(proc)
            raise RuntimeError(f"mlflow server did not answer {url}/health (exit {code}):\n"
                               + log_path.read_text()[-3000:])
        time.sleep(0.3)
    return proc


def stop_server(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stop the server's whole process group: `sig` (SIGTERM: a shutdown; SIGKILL: an outage), SIGKILL where the
    leader lingers, then SIGKILL to the group once more, for a worker that outlived its leader."""
    for s, wait_s in ((sig, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, s)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
