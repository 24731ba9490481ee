import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_cli(args, cwd, timeout=600, env=None):
    """Run search/run.py (or another script) in a subprocess, so each study owns its Ray lifecycle."""
    e = dict(os.environ)
    e.update(env or {})
    e["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=e)


@pytest.fixture(scope="session")
def teacher_root(tmp_path_factory):
    return tmp_path_factory.mktemp("teachers")


@pytest.fixture
def local_study(tmp_path, monkeypatch):
    """start(name): a study's tracker with its parent run, in a SQLite store under tmp_path. StudyTracking sets
    MLflow's HTTP variables in this process; monkeypatch undoes that after the test."""
    from search.store import HTTP_DEFAULTS
    from search.tracking import StudyTracking
    for k in HTTP_DEFAULTS:
        monkeypatch.setenv(k, os.environ.get(k, HTTP_DEFAULTS[k]))

    def start(name: str) -> StudyTracking:
        tracking = StudyTracking(f"sqlite:///{tmp_path}/mlflow.db", name)
        tracking.start_parent({}, {})
        return tracking
    return start
