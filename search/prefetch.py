"""The report's plotting libraries, imported while the trials train rather than after the last one.

A study ends with its report (search/report.py), whose plots need matplotlib and Optuna's plotting and importance
modules; `optuna.importance` imports scikit-learn's forests as it loads. Imported at the end, those are seconds
of the study's serial tail that the researcher waits through after the last trial (benchmarks/RESULTS.md,
tune_overhead). Imported in the driver while the trials train, they cost no wall time where the trials run on
GPUs or other nodes and the driver's cores idle; on a host whose cores all train, they take the same CPU from the
trials instead of from the tail, about half of it in wall time on two cores."""

from __future__ import annotations

import threading

from ray import tune


def import_plotting() -> None:
    """What `search.report.optuna_plots` imports (search.report selects matplotlib's Agg backend, which it may do
    after pyplot's import: no figure exists yet)."""
    import matplotlib.pyplot  # noqa: F401
    import optuna.importance  # noqa: F401
    import optuna.visualization.matplotlib  # noqa: F401

    import search.report  # noqa: F401


_threads: list[threading.Thread] = []  # (module state, not the callback's: Tune may run a restored copy of it)


def wait_for_plotting() -> None:
    """Returns once the background import has ended; call it before importing `search.report` elsewhere.

    Python's per-module import lock does not cover this: `matplotlib.use` (search.report calls it as it loads)
    reads `sys.modules["matplotlib.pyplot"]` directly, and a pyplot still loading in the other thread is there
    half-initialized, so the report's import failed (AttributeError: ... 'switch_backend') when a short study's
    last result came while the thread was inside pyplot. Waiting costs nothing the import would not."""
    for thread in _threads:
        thread.join()


def _import_quietly() -> None:
    try:
        import_plotting()
    except Exception:  # the report imports them again, and says what fails where it is read
        pass


class ImportPlottingEarly(tune.Callback):
    """Starts `import_plotting` in a daemon thread on the study's first result: Tune has started its trials by
    then (the imports do not compete with its start), and the driver mostly waits for results until the end. The
    report is imported after `wait_for_plotting`."""

    started = False  # (a class default: a callback pickled with the Tuner is restored on --resume)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if not self.started:
            self.started = True
            thread = threading.Thread(target=_import_quietly, daemon=True, name="plotting-import")
            _threads.append(thread)
            thread.start()
