"""The prune-aware Optuna searcher against Ray's stock OptunaSearch, on a real journal-backed Optuna study."""

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from search.searchers import SpaceSuggester, journal_storage, load_study, make_optuna_search
from spaces import get_space


def _drive(searcher, outcomes):
    for i, (epochs, extra) in enumerate(outcomes):
        tid = f"t{i}"
        cfg = searcher.suggest(tid)
        assert "method.omega" in cfg and "critic.fc2" in cfg
        for e in range(1, epochs + 1):
            searcher.on_trial_result(tid, {"val_error": 10.0 + e, "epoch": e, "training_iteration": e})
        searcher.on_trial_complete(tid, {"val_error": 10.0 + epochs, "epoch": epochs, **extra})


OUTCOMES = [(5, {}), (2, {}), (1, {"failure": "non-finite loss"}), (5, {})]


def test_stopped_trials_become_pruned_and_failures_fail(tmp_path):
    space = get_space("aikd_ablation")
    s = make_optuna_search(space, "tpe", 0, "st", tmp_path / "j.journal", max_epochs=5)
    _drive(s, OUTCOMES)
    study = load_study("st", tmp_path / "j.journal")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
                                               TrialState.COMPLETE]
    pruned = study.trials[1]
    assert pruned.intermediate_values == {1: 11.0, 2: 12.0}
    assert study.trials[0].value == 15.0


def test_stock_searcher_records_a_stopped_trial_as_complete(tmp_path):
    """Why our searcher exists: Ray's OptunaSearch tells Optuna COMPLETE with the partial value."""
    space = get_space("aikd_ablation")
    storage = journal_storage(tmp_path / "stock.journal")
    s = OptunaSearch(space=SpaceSuggester(space), metric="val_error", mode="min", study_name="stock",
                     storage=storage, sampler=optuna.samplers.TPESampler(seed=0))
    _drive(s, OUTCOMES[:2])
    study = optuna.load_study(study_name="stock", storage=storage)
    assert study.trials[1].state == TrialState.COMPLETE and study.trials[1].value == 12.0
