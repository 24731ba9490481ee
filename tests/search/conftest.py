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
