"""The live progress line's "best so far" is the best of each trial's latest value (what a trial is ranked on when
it ends), on Tune's own Trial objects."""

import math

import pytest
from ray.tune.experiment import Trial

from search.progress import ProgressCallback


def _best_in(line: str) -> str:
    return line.rsplit("so far: ", 1)[1]


@pytest.mark.parametrize("mode", ["min", "max"])
def test_best_so_far_follows_each_trials_latest_value(mode):
    lines = []
    cb = ProgressCallback("val_error", mode, max_epochs=3, every_s=0.0, out=lines.append)
    a, b = Trial("t", stub=True), Trial("t", stub=True)
    reports = [(a, 5.0), (b, 7.0), (a, 9.0), (b, 6.0), (a, math.nan)]
    for n, (trial, value) in enumerate(reports, 1):
        cb.on_trial_result(n, [a, b], trial, {"val_error": value})
        latest = {}
        for t, v in reports[:n]:  # by hand: each trial's last finite report, a NaN drops the trial
            if math.isfinite(v):
                latest[t.trial_id] = v
            else:
                latest.pop(t.trial_id, None)
        want = (min if mode == "min" else max)(latest.values())
        assert _best_in(lines[-1]) == f"{want:.3f}", (n, lines[-1])
    # a's best epoch (5.0 when minimising) is not what it ended on: the line does not name it
    assert _best_in(lines[-1]) == "6.000"


def test_no_value_yet_shows_a_dash():
    lines = []
    cb = ProgressCallback("val_error", "min", max_epochs=3, every_s=0.0, out=lines.append)
    a = Trial("t", stub=True)
    cb.on_trial_result(1, [a], a, {"epoch": 1})
    assert _best_in(lines[-1]) == "-"
