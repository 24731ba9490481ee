"""The report's plotting libraries are imported in the background on a study's first result, once, by a callback
that survives the Tuner's pickling (a fresh interpreter: this test process has imported them already)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, pickle, sys, threading
from ray.tune.experiment import Trial
from search.prefetch import ImportPlottingEarly
PLOTTING = ("matplotlib.pyplot", "optuna.importance", "optuna.visualization.matplotlib", "search.report")
before = [m for m in PLOTTING if m in sys.modules]
cb = pickle.loads(pickle.dumps(ImportPlottingEarly()))  # as Tune keeps it in tuner.pkl
started, start = [], threading.Thread.start
def counted(self):
    started.append(self)
    start(self)
threading.Thread.start = counted
trial = Trial("t", stub=True)
for i in range(3):
    cb.on_trial_result(i, [trial], trial, {"val_error": 1.0})
threading.Thread.start = start
threads = [t for t in started if t.name == "plotting-import"]
for t in threads:
    t.join()
import matplotlib
print(json.dumps({"before": before, "threads": len(threads), "daemon": all(t.daemon for t in threads),
                  "after": [m for m in PLOTTING if m in sys.modules],
                  "backend": matplotlib.get_backend().lower(), "pickled": len(pickle.dumps(cb)) > 0}))
"""


def _last_line_of(code: str) -> str:
    """What `code`, run in a fresh interpreter (none of the plotting modules imported), prints last."""
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "MPLBACKEND": ""}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_first_result_imports_the_plotting_libraries_once_in_the_background():
    got = json.loads(_last_line_of(CHILD))
    assert got["before"] == []  # importing the callback does not import them
    assert got["threads"] == 1 and got["daemon"]  # three results, one import thread, which no exit waits for
    assert got["after"] == ["matplotlib.pyplot", "optuna.importance", "optuna.visualization.matplotlib",
                            "search.report"]
    assert got["backend"] == "agg"
    assert got["pickled"]


RACE = r"""
from ray.tune.experiment import Trial
from search.prefetch import ImportPlottingEarly, wait_for_plotting
trial = Trial("t", stub=True)
ImportPlottingEarly().on_trial_result(0, [trial], trial, {"val_error": 1.0})
wait_for_plotting()  # as the study does when its last result comes while the thread is inside pyplot
from search.report import summarize
print("imported")
"""


def test_the_report_imports_at_once_after_the_first_result():
    # without the wait, `matplotlib.use` in search.report finds the other thread's half-loaded pyplot and fails
    assert _last_line_of(RACE) == "imported"
