"""The prune-aware Optuna searcher on real Optuna studies (journal-backed or in memory), no mocks.

1. our searcher against Ray's stock OptunaSearch;
2. Ray's own OptunaSearch tests (ray-project/ray python/ray/tune/tests/test_searchers.py: InvalidValuesTest,
   AddEvaluatedPointTest, SaveRestoreCheckpointTest, MultiObjectiveTest, testOptunaReportTooOften; and
   test_sample.py: testConvertOptuna, testSampleBoundsOptuna, testPointsToEvaluateOptuna), ported to
   `PruneAwareOptunaSearch` and driven as Tune drives a searcher (suggest, on_trial_result, on_trial_complete,
   save/restore, set_search_properties); the same contract through a real Tune run is in
   test_searcher_contract_through_tune;
3. one or two objectives, PRUNED/FAIL from `epoch` or `training_iteration`, metric names, user-facing attributes;
4. warm starts (issue 17 acceptance 4) and the study in the user's names (acceptance 5).
"""

import json
import math
from copy import deepcopy

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from search.objectives import objectives
from search.searchers import (
    RAY_TRIAL_ATTR,
    WARM_START_ATTR,
    PruneAwareOptunaSearch,
    SpaceSuggester,
    check_seed_study,
    journal_storage,
    load_study,
    make_optuna_search,
    method_defaults,
    seed_from_study,
    user_facing_study,
    warm_start_points,
)
from spaces import RAW_SEP, get_space
from tests.search.conftest import ROOT, run_cli

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _drive(searcher, outcomes):
    for i, (epochs, extra) in enumerate(outcomes):
        tid = f"t{i}"
        cfg = searcher.suggest(tid)
        assert "method.omega" in cfg and "critic.fc2" in cfg
        for e in range(1, epochs + 1):
            searcher.on_trial_result(tid, {"val_error": 10.0 + e, "epoch": e, "training_iteration": e})
        searcher.on_trial_complete(tid, {"val_error": 10.0 + epochs, "epoch": epochs, **extra})


OUTCOMES = [(5, {}), (2, {}), (1, {"failure": "non-finite loss"}), (5, {})]


# ---- 1. why our searcher exists ------------------------------------------------------------------------------------

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


def test_a_list_valued_metric_is_told_both_values():
    """The bug of issue 17: on_trial_result / on_trial_complete indexed result[self.metric] with a list
    (TypeError: unhashable type: 'list'), which aborted the Tune run and left trials RUNNING."""
    space = {"a": optuna.distributions.FloatDistribution(0, 1)}
    s = PruneAwareOptunaSearch(space=space, metric=["x", "y"], mode=["min", "max"], max_epochs=1,
                               sampler=optuna.samplers.RandomSampler(seed=0))
    s.suggest("t")
    s.on_trial_result("t", {"x": 1.0, "y": 2.0, "training_iteration": 1})
    s.on_trial_complete("t", {"x": 1.0, "y": 2.0, "training_iteration": 1})
    t = s._ot_study.trials[0]
    assert t.state == TrialState.COMPLETE and t.values == [1.0, 2.0] and not t.intermediate_values
    tuples = PruneAwareOptunaSearch(space=space, metric=("x", "y"), mode=("min", "max"), max_epochs=1)
    assert [d.name for d in tuples._ot_study.directions] == ["MINIMIZE", "MAXIMIZE"]


# ---- 2. Ray's OptunaSearch tests, ported ------------------------------------------------------------------------

RAY_CONFIG = {"report": tune.uniform(0.0, 5.0), "list": [1, 2, 3], "num": 4}


def _invalid_value(x: float) -> float:
    """Ray's _invalid_objective: inf, -inf, NaN or the value itself."""
    if x > 4:
        return float("inf")
    if x > 3:
        return float("-inf")
    if x > 2:
        return float("nan")
    return float(x) or 0.1


def test_ray_invalid_values(tmp_path):
    """InvalidValuesTest.testOptuna: NaN, inf and -inf results never stop the study; ours tells them FAIL (Ray's tells
    inf as COMPLETE), and the best COMPLETE trial is the best finite one. The searcher pickles (Tune's snapshots)."""
    s = PruneAwareOptunaSearch(sampler=optuna.samplers.RandomSampler(seed=1234), max_epochs=1)
    assert s.set_search_properties("_metric", "max", RAY_CONFIG)
    told = []
    for i in range(16):
        cfg = s.suggest(str(i))
        v = _invalid_value(cfg["report"])
        told.append(v)
        s.on_trial_result(str(i), {"_metric": v, "training_iteration": 1})
        s.on_trial_complete(str(i), {"_metric": v, "training_iteration": 1})
    assert any(math.isnan(v) for v in told) and float("inf") in told and float("-inf") in told
    trials = s._ot_study.trials
    for t, v in zip(trials, told):
        assert t.state == (TrialState.COMPLETE if math.isfinite(v) else TrialState.FAIL)
    best = s._ot_study.best_trial
    assert best.params["report"] <= 2.0 and best.value == max(v for v in told if math.isfinite(v))
    s.save_to_dir(str(tmp_path))  # Tune's snapshot: no "Can't pickle local object"
    assert list(tmp_path.iterdir())


def test_ray_report_too_often():
    """testOptunaReportTooOften: a result or completion after completion is ignored, never raised."""
    s = PruneAwareOptunaSearch(sampler=optuna.samplers.RandomSampler(seed=1234),
                               space=OptunaSearch.convert_search_space(RAY_CONFIG), metric="metric", mode="max",
                               max_epochs=2)
    s.suggest("trial_1")
    s.on_trial_result("trial_1", {"training_iteration": 1, "metric": 1})
    s.on_trial_complete("trial_1", {"training_iteration": 2, "metric": 1})
    s.on_trial_result("trial_1", {"training_iteration": 3, "metric": 1})
    s.on_trial_complete("trial_1", {"training_iteration": 4, "metric": 1})
    t = s._ot_study.trials[0]
    assert t.state == TrialState.COMPLETE and t.intermediate_values == {1: 1.0, 2: 1.0}


def test_ray_add_evaluated_point():
    """AddEvaluatedPointTest.testOptuna (without its tune.run analysis), plus a list of values for two objectives."""
    space = {"report": tune.uniform(0.0, 5.0)}
    s = PruneAwareOptunaSearch(space=space, metric="metric", mode="max", points_to_evaluate=[{"report": 1.0}],
                               evaluated_rewards=[1.0], max_epochs=1)
    assert len(s._ot_study.trials) > 0
    s = PruneAwareOptunaSearch(space=space, metric="metric", mode="max", max_epochs=1)
    assert len(s._ot_study.trials) == 0
    point = {"report": 1.0}
    s.add_evaluated_point(point, 1.0, intermediate_values=[0.8, 0.9])
    assert s._ot_study.trials[-1].state == TrialState.COMPLETE
    s.add_evaluated_point(point, 1.0, intermediate_values=[0.8, 0.9], error=True)
    assert s._ot_study.trials[-1].state == TrialState.FAIL
    s.add_evaluated_point(point, 1.0, intermediate_values=[0.8, 0.9], pruned=True)
    assert s._ot_study.trials[-1].state == TrialState.PRUNED and len(s._ot_study.trials) == 3
    s.suggest("1")
    copy = deepcopy(s)
    copy.add_evaluated_point(point, 2.0)
    assert len(copy._ot_study.trials) == 5 and len(s._ot_study.trials) == 4

    def dbr_space(trial):
        return {"report": trial.suggest_float("report", 0.0, 5.0)}

    with pytest.raises(TypeError):
        PruneAwareOptunaSearch(space=dbr_space, metric="metric", mode="max", max_epochs=1).add_evaluated_point(
            point, 1.0)
    two = PruneAwareOptunaSearch(space=space, metric=["m1", "m2"], mode=["max", "min"], max_epochs=1)
    two.add_evaluated_point(point, [1.0, 2.0])
    two.add_evaluated_point(point, [1.0, 2.0], pruned=True)
    assert [(t.state, t.values) for t in two._ot_study.trials] == [(TrialState.COMPLETE, [1.0, 2.0]),
                                                                   (TrialState.PRUNED, None)]


@pytest.mark.parametrize("metric,mode", [("metric", "max"), (["metric", "other"], ["max", "min"])])
def test_ray_save_restore(tmp_path, metric, mode):
    """SaveRestoreCheckpointTest.testOptuna, with one metric and with a list-valued metric and mode: a searcher built
    without arguments restores the saved one without another set_search_properties; a suggested trial that never
    completed is still tracked."""
    config = {"a": tune.uniform(0.0, 5.0)}
    path = str(tmp_path / "checkpoint.pkl")

    def callbacks(searcher, trial_id):
        result = {"training_iteration": 1, "metric": 1, "other": 2, "config/a": 1.0, "time_total_s": 1}
        searcher.on_trial_result(trial_id, result)
        searcher.on_trial_complete(trial_id, result)

    s = PruneAwareOptunaSearch(space=config, metric=metric, mode=mode, max_epochs=1)
    s.suggest("1")
    s.suggest("2")
    s.suggest("not_completed")
    callbacks(s, "1")
    s.save(path)

    restored = PruneAwareOptunaSearch(max_epochs=1)
    restored.restore(path)
    callbacks(restored, "2")
    restored.suggest("3")
    callbacks(restored, "3")
    assert "not_completed" in restored._ot_trials
    states = [t.state for t in restored._ot_study.trials]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.RUNNING, TrialState.COMPLETE]
    want = [1.0, 2.0] if isinstance(metric, list) else [1.0]
    assert all(t.values == want for t in restored._ot_study.trials if t.state == TrialState.COMPLETE)

    # set_search_properties path of the same test: a searcher without a space takes Tune's
    fresh = PruneAwareOptunaSearch(max_epochs=1)
    assert fresh.set_search_properties(metric="metric", mode="max", config=config)
    assert not fresh.set_search_properties(metric="metric", mode="max", config=config)  # has a space now
    assert 0.0 <= fresh.suggest("x")["a"] <= 5.0


def test_ray_convert_search_space():
    """testConvertOptuna: a converted Tune space, an Optuna distribution dict and define-by-run functions (with
    constants) give the same first suggestion for the same seed; a define-by-run function returning a non-dict or
    a dict that cannot be unflattened raises TypeError; branching define-by-run works."""
    from ray.tune.search import sample

    with pytest.raises(ValueError):
        PruneAwareOptunaSearch.convert_search_space({"grid": tune.grid_search([0, 1])})
    config = {"a": sample.Categorical([2, 3, 4]).uniform(),
              "b": {"x": sample.Integer(0, 5).quantized(2), "y": 4, "z": sample.Float(1e-4, 1e-2).loguniform()}}
    converted = PruneAwareOptunaSearch.convert_search_space(config)
    optuna_config = {"a": optuna.distributions.CategoricalDistribution([2, 3, 4]),
                     "b": {"x": optuna.distributions.IntDistribution(0, 5, step=2),
                           "z": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}}

    def dbr(t):
        t.suggest_categorical("a", [2, 3, 4])
        t.suggest_int("b/x", 0, 5, step=2)
        t.suggest_float("b/z", 1e-4, 1e-2, log=True)

    def dbr_constants(t):
        dbr(t)
        return {"constant": 1}

    def dbr_invalid(t):
        dbr(t)
        return 1

    def make(space):
        return PruneAwareOptunaSearch(space=space, sampler=optuna.samplers.RandomSampler(seed=1234), metric="a",
                                      mode="max", max_epochs=1)

    with_constant = make(dbr_constants).suggest("0")
    assert with_constant.pop("constant") == 1
    with pytest.raises(TypeError):
        make(dbr_invalid).suggest("0")
    c1, c2, c3 = make(converted).suggest("0"), make(optuna_config).suggest("0"), make(dbr).suggest("0")
    assert c1 == c2 == c3 == with_constant
    assert c1["a"] in [2, 3, 4] and c1["b"]["x"] in range(5) and 1e-4 < c1["b"]["z"] < 1e-2

    def branching_invalid(t):
        if t.suggest_categorical("a", [1, 2]) == 1:
            t.suggest_int("a/b", 0, 3)
        else:
            t.suggest_int("a/b", 4, 10)

    with pytest.raises(TypeError):
        make(branching_invalid).suggest("0")

    def branching(t):
        if t.suggest_categorical("a", ["1", "2"]) == "1":
            t.suggest_int("nest/b", 0, 3)
            t.suggest_int("nest/first", 2, 8)
        else:
            t.suggest_int("nest/b", 4, 10)
            t.suggest_float("nest/second", -0.4, 0.4)

    s = make(branching)
    for i in range(8):
        cfg = s.suggest(str(i))
        if cfg["a"] == "1":
            assert cfg["nest"]["b"] < 4 and 2 <= cfg["nest"]["first"] <= 8
        else:
            assert cfg["nest"]["b"] > 3 and -0.4 <= cfg["nest"]["second"] <= 0.4
    mixed = PruneAwareOptunaSearch(space={"a": tune.uniform(5, 6), "b": tune.uniform(8, 9)}, metric="a", mode="max",
                                   max_epochs=1).suggest("0")
    assert 5 <= mixed["a"] <= 6 and 8 <= mixed["b"] <= 9


def test_ray_sample_bounds():
    """testSampleBoundsOptuna: 1000 suggestions stay inside every converted domain and cover the integer ones."""
    config = {
        "uniform": tune.uniform(-5, -1), "quniform": tune.quniform(3.2, 5.4, 0.2),
        "loguniform": tune.loguniform(1e-4, 1e-2), "choice": tune.choice([2, 3, 4]), "randint": tune.randint(-9, 15),
        "lograndint": tune.lograndint(1, 10), "qrandint": tune.qrandint(-21, 12, 3),
        "qrandint_q1": tune.qrandint(1, 5, 1),
    }
    s = PruneAwareOptunaSearch(space=OptunaSearch.convert_search_space(config), metric="a", mode="max",
                               sampler=optuna.samplers.RandomSampler(seed=0), max_epochs=1)
    outs = [s.suggest(f"trial_{i}") for i in range(1000)]
    col = {k: [o[k] for o in outs] for k in config}
    assert all(-5 <= v < -1 for v in col["uniform"])
    assert all(3.2 <= v <= 5.4 and math.isclose(v / 0.2, round(v / 0.2)) for v in col["quniform"])
    assert all(1e-4 <= v < 1e-2 for v in col["loguniform"])
    assert set(col["choice"]) == {2, 3, 4}
    assert set(col["randint"]) == set(range(-9, 15)) and all(isinstance(v, int) for v in col["randint"])
    assert set(col["lograndint"]) == set(range(1, 10))
    assert set(col["qrandint"]) == set(range(-21, 13, 3))
    assert set(col["qrandint_q1"]) == set(range(1, 6))


def test_ray_points_to_evaluate():
    """testPointsToEvaluateOptuna: the given points are the first suggestions, exactly, then the sampler's."""
    config = {"metric": tune.choice([1, 2, 3, 4]), "a": tune.choice(["t1", "t2", "t3", "t4"]),
              "b": tune.randint(0, 5), "c": tune.loguniform(1e-4, 1e-1)}
    rng = np.random.default_rng(7)
    points = [{"metric": int(rng.integers(1, 5)), "a": f"t{int(rng.integers(1, 5))}", "b": int(rng.integers(0, 5)),
               "c": float(10 ** rng.uniform(-4, -1))} for _ in range(2)]
    s = PruneAwareOptunaSearch(points_to_evaluate=points, max_epochs=1)
    assert s.set_search_properties("metric", "max", config)
    got = [s.suggest(str(i)) for i in range(5)]
    assert got[:2] == points
    for i, cfg in enumerate(got):
        s.on_trial_complete(str(i), {"metric": cfg["metric"], "training_iteration": 1})
    assert all(t.state == TrialState.COMPLETE for t in s._ot_study.trials) and len(s._ot_study.trials) == 5


def test_ray_multi_objective():
    """MultiObjectiveTest.testOptuna: three objectives (max a, min b, max c) are told as three values per trial."""
    config = {"a": tune.uniform(0, 1), "b": tune.uniform(0, 1), "c": tune.uniform(0, 1)}
    s = PruneAwareOptunaSearch(sampler=optuna.samplers.RandomSampler(seed=1234), metric=["a", "b", "c"],
                               mode=["max", "min", "max"], max_epochs=1)
    assert s.set_search_properties(None, None, config)
    for i in range(16):
        cfg = s.suggest(str(i))
        result = {"a": cfg["a"] * 100, "b": cfg["b"] * -100, "c": cfg["c"], "training_iteration": 1}
        s.on_trial_result(str(i), result)
        s.on_trial_complete(str(i), result)
    study = s._ot_study
    assert study.metric_names == ["a", "b", "c"] and len(study.directions) == 3
    trials = study.trials
    assert all(t.values == [t.params["a"] * 100, t.params["b"] * -100, t.params["c"]] for t in trials)
    assert all(not t.intermediate_values for t in trials)
    assert max(trials, key=lambda t: t.values[0]).params["a"] >= 0.8
    assert min(trials, key=lambda t: t.values[1]).params["b"] >= 0.8
    assert max(trials, key=lambda t: t.values[2]).params["c"] >= 0.8


@pytest.mark.slow
def test_searcher_contract_through_tune(tmp_path):
    """The ported tests that Ray runs through tune: invalid values, a list-valued metric and mode (which aborted the
    Tune run before) and points_to_evaluate, with a real local Ray (started by search.cluster.connect)."""
    proc = run_cli([str(ROOT / "tests" / "search" / "tune_contract.py"), str(tmp_path)], cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads((tmp_path / "contract.json").read_text())
    invalid = out["invalid"]
    assert invalid["best_report"] <= 2.0 and invalid["list"] == [1, 2, 3] and invalid["num"] == 4
    assert invalid["states"].count("COMPLETE") == sum(math.isfinite(v) for v in invalid["values"])
    multi = out["multi"]
    assert multi["errors"] == 0 and multi["n"] == 16 and multi["metric_names"] == ["a", "b", "c"]
    assert multi["best_a"] >= 0.8 and multi["best_b"] >= 0.8 and multi["best_c"] >= 0.8
    assert all(s == "COMPLETE" for s in multi["states"])
    assert out["points"]["first"] == out["points"]["given"]


# ---- 3. our additions: two objectives, epochs, names, user-facing values --------------------------------------------

@pytest.mark.parametrize("searcher", ["tpe", "nsga2", "random"])
def test_two_objectives_tell_both_values_and_prune_without_them(tmp_path, searcher):
    space = get_space("aikd_ablation")
    s = make_optuna_search(space, searcher, 0, "mo", tmp_path / "j.journal", max_epochs=3,
                           metric="val_error,val_ece")
    outcomes = [(3, {}), (1, {}), (2, {"failure": "diverged"}), (3, {"val_ece": float("nan")})]
    outcomes += [(3, {})] * 8  # past TPE's startup trials: its multi-objective model sees the pruned trial
    for i, (epochs, extra) in enumerate(outcomes):
        tid = f"t{i}"
        s.suggest(tid)
        for e in range(1, epochs + 1):
            s.on_trial_result(tid, {"val_error": 10.0 - e, "val_ece": 5.0 + e, "epoch": e})
        s.on_trial_complete(tid, {"val_error": 10.0 - epochs + i, "val_ece": 5.0 + epochs - i, "epoch": epochs,
                                  **extra})
    study = load_study("mo", tmp_path / "j.journal")
    assert study.metric_names == ["val_error", "val_ece"]
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    states = [t.state for t in study.trials]
    assert states[:4] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.FAIL]
    assert all(st == TrialState.COMPLETE for st in states[4:]) and len(states) == 12
    assert study.trials[0].values == [7.0, 8.0] and study.trials[1].values is None
    assert all(not t.intermediate_values for t in study.trials)


def test_pruned_is_decided_from_training_iteration_without_epoch(tmp_path):
    """on_trial_complete falls back to `training_iteration` as on_trial_result does (a trainable without `epoch`)."""
    space = get_space("aikd_ablation")
    s = make_optuna_search(space, "tpe", 0, "ti", tmp_path / "j.journal", max_epochs=4)
    for tid, its in (("stopped", 2), ("full", 4)):
        s.suggest(tid)
        for it in range(1, its):
            s.on_trial_result(tid, {"val_error": 20.0 - it, "training_iteration": it})
        s.on_trial_complete(tid, {"val_error": 20.0 - its, "training_iteration": its})
    stopped, full = load_study("ti", tmp_path / "j.journal").trials
    assert stopped.state == TrialState.PRUNED and stopped.intermediate_values == {1: 19.0, 2: 18.0}
    assert full.state == TrialState.COMPLETE and full.value == 16.0 and full.last_step == 4


def test_objectives_defaults_and_bad_values():
    space = get_space("aikd_ablation")
    assert objectives(space) == (["val_error"], ["min"])
    assert objectives(space, "val_nll") == (["val_nll"], ["min"])
    assert objectives(space, ["val_error"], ["min"]) == (["val_error"], ["min"])
    assert objectives(space, "val_error,val_ece") == (["val_error", "val_ece"], ["min", "min"])
    assert objectives(space, "val_error, val_ece", "min,max") == (["val_error", "val_ece"], ["min", "max"])
    for metric, mode, said in [("a,b,c", None, "at most 2"), ("val_error,val_ece", "min", "one mode per metric"),
                               ("val_error", "up", "allowed min, max"), ("val_error,val_error", None, "must differ"),
                               ("val_error,", None, "one or two")]:
        with pytest.raises(ValueError, match=said) as e:
            objectives(space, metric, mode)
        assert "\n" not in str(e.value)


def test_one_objective_is_named_and_a_list_of_one_is_a_plain_metric(tmp_path):
    space = get_space("aikd_ablation")
    s = make_optuna_search(space, "tpe", 0, "one", tmp_path / "j.journal", max_epochs=2, metric=["val_nll"])
    assert s.metric == "val_nll" and s.mode == "min"
    assert load_study("one", tmp_path / "j.journal").metric_names == ["val_nll"]


def test_every_trial_carries_its_user_facing_values(tmp_path):
    """optuna-dashboard shows user attributes: each trial has the values a person set (by formula from its raw
    parameters), alpha_ce included, besides its Ray trial id."""
    space = get_space("aikd_ablation")
    s = make_optuna_search(space, "random", 3, "ua", tmp_path / "j.journal", max_epochs=5)
    _drive(s, [(5, {})] * 6)
    for t in load_study("ua", tmp_path / "j.journal").trials:
        attrs = t.user_attrs
        assert set(attrs) == {RAY_TRIAL_ATTR, *space.user_keys()}
        p = t.params
        u = (p["method.omega__u"] - 0.125) / 0.875
        assert attrs["method.omega"] == (0.0 if p["method.omega__u"] < 0.125
                                         else pytest.approx(1e-3 * 1000 ** u, rel=1e-10))
        d1 = 1 - math.sqrt(1 - p["method.alpha_simplex__u1"])
        d2 = (1 - d1) * p["method.alpha_simplex__u2"]
        assert attrs["method.alpha_ce"] == pytest.approx(0.5 + 0.5 * d1, abs=1e-11)
        assert attrs["method.alpha_g"] == pytest.approx(0.5 * d2, abs=1e-11)
        assert attrs["method.alpha_p"] == pytest.approx(0.5 * (1 - d1 - d2), abs=1e-11)
        assert attrs["critic.fc2"] == p["critic.fc1"] // p["critic.fc2__r"]
        assert attrs["method.tau_g"] == p["method.tau_g"] and attrs["critic.fc1"] == p["critic.fc1"]


# ---- 4. warm starts and the study in the user's names -----------------------------------------------------------

def test_warm_start_paper_the_journals_first_trial_is_the_papers_best(tmp_path):
    """Acceptance 4 (--warm-start paper), at the searcher level: built with the paper points, asked as Ray asks."""
    space = get_space("aikd_ablation")
    ws = warm_start_points(space, "paper")
    assert ws.sources[0].startswith("paper best") and ws.configs[0]["method.alpha_ce"] == pytest.approx(0.6)
    s = make_optuna_search(space, "tpe", 0, "ws", tmp_path / "j.journal", max_epochs=2, points_to_evaluate=ws.points)
    first = s.suggest("t0")
    second = s.suggest("t1")
    assert {k: first[k] for k in space.paper.best} == pytest.approx(space.paper.best)
    trials = load_study("ws", tmp_path / "j.journal").trials
    attrs = trials[0].user_attrs
    assert {k: attrs[k] for k in space.paper.best} == space.paper.best  # 0.1, 0.3: not 0.30000000000000004
    assert space.map_raw(trials[0].params) == pytest.approx(space.paper.best)
    assert {k: second[k] for k in space.paper.best} != pytest.approx(space.paper.best)


def test_warm_start_method_defaults_follow_train_config():
    """The defaults point is what TrainConfig resolves for the space's base (SPEC 2.2 for AI-KD: the paper's best,
    so it is enqueued once); on digits FRSKD's presets differ from its paper best, so both are tried."""
    ab = warm_start_points(get_space("aikd_ablation"))
    assert len(ab.points) == 1 and any("same configuration" in n for n in ab.notes)
    defaults, _ = method_defaults(get_space("aikd_ablation"))
    assert defaults == {"method.omega": 0.1, "method.tau_g": 3.0, "method.tau_p": 1.0, "method.alpha_g": 0.1,
                        "method.alpha_p": 0.3, "critic.fc1": 64, "critic.fc2": 32}
    frskd = get_space("frskd", searcher="tpe").with_base({"data.dataset": "digits"})
    ws = warm_start_points(frskd)
    assert [c for c in ws.configs] == [{"method.alpha": 2.0, "method.beta": 100.0, "method.width": 2},
                                       {"method.alpha": 1.0, "method.beta": 200.0, "method.width": 2}]
    assert [frskd.map_raw(p) for p in ws.points] == ws.configs
    design = warm_start_points(get_space("aikd_design"))
    assert len(design.points) == 1 and design.configs[0]["critic.betas"] == (0.0, 0.9)
    assert any("no paper best" in n for n in design.notes)
    grid = warm_start_points(get_space("aikd_omega"))
    assert not grid.points and "grid" in grid.notes[0]
    assert not warm_start_points(get_space("aikd_ablation"), "none").points
    with pytest.raises(ValueError, match="allowed paper, none"):
        warm_start_points(get_space("aikd_ablation"), "best")


def test_warm_start_skips_what_the_space_cannot_express():
    import dataclasses

    from spaces import Paper
    space = get_space("aikd_ablation")
    odd = dataclasses.replace(space, paper=Paper(source="x", best={**space.paper.best, "critic.fc2": 48,
                                                                     "method.omega": 5e-4}))
    ws = warm_start_points(odd)
    assert ws.sources == ["method defaults (method.name=aikd, data.dataset=cifar100)"]
    assert "critic.fc2" in ws.notes[0] and "method.omega" in ws.notes[0] and "skipped" in ws.notes[0]
    lines = ws.lines()
    assert lines[0].startswith("warm start 1: method defaults") and "fc2=32" in lines[0]


def _smoke_study(journal, name="smoke", metric=None, n=6, space=None):
    """A finished small study: n trials told through our searcher, values 10 + i (trial 2 pruned)."""
    space = space or get_space("aikd_ablation")
    s = make_optuna_search(space, "random", 11, name, journal, max_epochs=2, metric=metric)
    for i in range(n):
        tid = f"{name}{i}"
        s.suggest(tid)
        epochs = 1 if i == 2 else 2
        s.on_trial_complete(tid, {"val_error": 10.0 + (i * 7) % n, "val_ece": 3.0 - i % 3, "epoch": epochs})
    return load_study(name, journal)


def test_warm_start_study_same_dataset_seeds_the_history(tmp_path):
    """Acceptance 4 (--warm-start STUDY, same dataset): the smoke study's completed trials become our history; the
    searcher's num_samples does not count them; a second seeding adds nothing."""
    space = get_space("aikd_ablation")
    other = _smoke_study(tmp_path / "smoke.journal")
    done = [t for t in other.trials if t.state == TrialState.COMPLETE]
    s = make_optuna_search(space, "tpe", 0, "ours", tmp_path / "ours.journal", max_epochs=2, num_samples=2)
    ws = seed_from_study(space, s._ot_study, tmp_path / "smoke.journal", "smoke", same_dataset=True,
                         space_name="aikd_ablation")
    assert ws.seeded == len(done) == 5 and not ws.points
    again = seed_from_study(space, s._ot_study, tmp_path / "smoke.journal", "smoke", same_dataset=True)
    assert ws.lines() == ["warm start: 5 completed trials of study 'smoke' seed the Optuna history"]
    assert again.seeded == 0 and "seeded before" in again.notes[0]
    ours = load_study("ours", tmp_path / "ours.journal").trials
    assert [(t.params, t.values, t.state) for t in ours] == [(t.params, t.values, t.state) for t in done]
    assert [t.user_attrs[WARM_START_ATTR] for t in ours] == [f"smoke#{t.number}" for t in done]
    assert all(RAY_TRIAL_ATTR not in t.user_attrs and t.user_attrs["critic.fc1"] == t.params["critic.fc1"]
               for t in ours)
    s.suggest("a")  # TPE proposes from the seeded history
    s.on_trial_complete("a", {"val_error": 1.0, "epoch": 2})
    s.suggest("b")
    snap = tmp_path / "snap"
    snap.mkdir()
    s.save_to_dir(str(snap))
    restored = make_optuna_search(space, "tpe", 0, "ours", tmp_path / "ours.journal", max_epochs=2, num_samples=2)
    restored.restore_from_dir(str(snap))
    assert restored.suggest("c") == "FINISHED"  # its own 2 trials are num_samples; the 5 seeded ones do not count
    # the report's plots are computed on this study's own trials unless asked for the seeded ones too
    assert len(user_facing_study(space, restored._ot_study).trials) == 2
    assert len(user_facing_study(space, restored._ot_study, include_seeded=True).trials) == 7


def test_warm_start_study_other_dataset_enqueues_its_best(tmp_path):
    """Another dataset: the smoke study's best top_n configurations (by its values) are the first trials."""
    space = get_space("aikd_ablation")
    other = _smoke_study(tmp_path / "smoke.journal")
    done = sorted((t for t in other.trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    ws = seed_from_study(space, None, tmp_path / "smoke.journal", "smoke", same_dataset=False, top_n=3)
    assert ws.seeded == 0 and ws.points == [t.params for t in done[:3]]
    assert ws.sources[0] == f"study smoke trial {done[0].number} (val_error {done[0].value:g})"
    s = make_optuna_search(space, "tpe", 0, "ours", tmp_path / "ours.journal", max_epochs=2,
                           points_to_evaluate=ws.points)
    firsts = [s.suggest(f"t{i}") for i in range(3)]
    assert [{k: c[k] for k in space.raw_names()} for c in firsts] == ws.points
    # two objectives: the Pareto front first (by formula: (10, 3), (11, 2), (15, 1); (13, 3) and (14, 2) dominated)
    mo = _smoke_study(tmp_path / "mo.journal", "mo", metric="val_error,val_ece")
    ranked = seed_from_study(space, None, tmp_path / "mo.journal", "mo", same_dataset=False, top_n=10)
    by_values = {tuple(t.values): t.params for t in mo.trials if t.state == TrialState.COMPLETE}
    assert sorted(by_values) == [(10.0, 3.0), (11.0, 2.0), (13.0, 3.0), (14.0, 2.0), (15.0, 1.0)]
    assert ranked.points == [by_values[v] for v in [(10.0, 3.0), (11.0, 2.0), (15.0, 1.0), (13.0, 3.0), (14.0, 2.0)]]


def test_warm_start_study_errors_are_one_line(tmp_path):
    space = get_space("aikd_ablation")
    _smoke_study(tmp_path / "smoke.journal")
    _smoke_study(tmp_path / "cskd.journal", "cs", space=get_space("cskd", searcher="tpe"))
    ours = make_optuna_search(space, "tpe", 0, "ours", tmp_path / "ours.journal", max_epochs=2,
                              metric="val_error,val_ece")._ot_study
    cases = [
        (dict(other_journal=tmp_path / "nope.journal", other_study_name="smoke"), "no Optuna journal"),
        (dict(other_journal=tmp_path / "smoke.journal", other_study_name="other"), "not in the journal"),
        (dict(other_journal=tmp_path / "cskd.journal", other_study_name="cs"), "belongs to another space"),
        (dict(other_journal=tmp_path / "smoke.journal", other_study_name="smoke", space_name="frskd"),
         "belongs to space 'frskd'"),
    ]
    for kw, said in cases:
        with pytest.raises(ValueError, match=said) as e:
            seed_from_study(space, None, same_dataset=False, **kw)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="optimised val_error, not val_ece"):
        seed_from_study(space, ours, tmp_path / "smoke.journal", "smoke", same_dataset=True)
    with pytest.raises(ValueError, match="minimised"):
        check_seed_study(space, tmp_path / "smoke.journal", "smoke", metric="val_error", mode="max",
                         same_dataset=True)
    assert check_seed_study(space, tmp_path / "smoke.journal", "smoke", same_dataset=True).study_name == "smoke"


def test_user_facing_study_has_the_users_names_only(tmp_path):
    """Acceptance 5: the parameters the importance plot is computed on are the user-facing ones (no sampler
    coordinate), with the values, states and objectives of the journal's trials."""
    space = get_space("aikd_ablation")
    s = make_optuna_search(space, "random", 5, "uf", tmp_path / "j.journal", max_epochs=3)
    rng = np.random.default_rng(0)
    for i in range(14):
        cfg = s.suggest(f"t{i}")
        epochs = 1 if i % 5 == 4 else 3
        for e in range(1, epochs + 1):
            s.on_trial_result(f"t{i}", {"val_error": 20.0 - e, "epoch": e})
        value = 10 * cfg["method.alpha_g"] + cfg["method.tau_g"] + rng.normal(0, 0.01)
        s.on_trial_complete(f"t{i}", {"val_error": value, "epoch": epochs,
                                      **({"failure": "x"} if i == 7 else {})})
    study = load_study("uf", tmp_path / "j.journal")
    uf = user_facing_study(space, study)
    names = set(space.outputs())
    assert names == {"method.omega", "method.tau_g", "method.tau_p", "method.alpha_g", "method.alpha_p",
                     "critic.fc1", "critic.fc2"}
    assert all(set(t.params) == names and set(t.distributions) == names for t in uf.trials)
    importances = optuna.importance.get_param_importances(uf, evaluator=optuna.importance.FanovaImportanceEvaluator(
        seed=0))
    assert set(importances) == names and not any(RAW_SEP in k for k in importances)
    assert [(t.state, t.values, t.intermediate_values) for t in uf.trials] == \
        [(t.state, t.values, t.intermediate_values) for t in study.trials]
    for t, u in zip(study.trials, uf.trials):
        mapped = space.map_raw(t.params)
        assert u.params == pytest.approx(mapped, rel=1e-11) and u.datetime_start == t.datetime_start
    assert [tr.params for tr in uf.trials] == [tr.params for tr in user_facing_study(space, study).trials]


def test_user_facing_study_keeps_two_objectives_and_labels(tmp_path):
    space = get_space("aikd_design")
    s = make_optuna_search(space, "nsga2", 1, "d", tmp_path / "j.journal", max_epochs=1, metric="val_error,val_ece",
                           mode="min,max")
    for i in range(4):
        s.suggest(str(i))
        s.on_trial_complete(str(i), {"val_error": float(i), "val_ece": float(-i), "epoch": 1})
    uf = user_facing_study(space, load_study("d", tmp_path / "j.journal"))
    assert uf.metric_names == ["val_error", "val_ece"] and [d.name for d in uf.directions] == ["MINIMIZE", "MAXIMIZE"]
    assert all(t.params["critic.betas"] in ("0.0,0.9", "0.9,0.999") for t in uf.trials)
    assert [t.values for t in uf.trials] == [[float(i), float(-i)] for i in range(4)]
