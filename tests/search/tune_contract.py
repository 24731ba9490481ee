"""Ray's OptunaSearch tests that go through Tune (InvalidValuesTest, MultiObjectiveTest, testPointsToEvaluateOptuna),
run with `PruneAwareOptunaSearch` in one local Ray session. Run by tests/search/test_searchers.py in a subprocess
(each study owns its Ray lifecycle): python tests/search/tune_contract.py OUT_DIR; writes OUT_DIR/contract.json."""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
from ray import tune

from search.cluster import connect
from search.searchers import PruneAwareOptunaSearch


def invalid_objective(config):
    x = config["report"]
    value = float("inf") if x > 4 else float("-inf") if x > 3 else float("nan") if x > 2 else float(x) or 0.1
    tune.report({"_metric": value})


def multi_objective(config):
    tune.report({"a": config["a"] * 100, "b": config["b"] * -100, "c": config["c"]})


def mock_objective(config):
    tune.report(dict(config))


def fit(trainable, out: Path, name: str, searcher, param_space, num_samples, metric=None, mode=None):
    tuner = tune.Tuner(trainable, param_space=param_space,
                       tune_config=tune.TuneConfig(search_alg=searcher, metric=metric, mode=mode,
                                                   num_samples=num_samples),
                       run_config=tune.RunConfig(name=name, storage_path=str(out), verbose=0))
    return tuner.fit()


def main(out: Path) -> None:
    connect(SimpleNamespace(address=None, num_cpus=2, num_gpus=0))
    report = {}

    searcher = PruneAwareOptunaSearch(sampler=optuna.samplers.RandomSampler(seed=1234), max_epochs=1)
    grid = fit(invalid_objective, out, "invalid", searcher, {"report": tune.uniform(0.0, 5.0), "list": [1, 2, 3],
                                                              "num": 4}, 8, metric="_metric", mode="max")
    best = grid.get_best_result()
    report["invalid"] = {"best_report": best.config["report"], "list": list(best.config["list"]),
                         "num": best.config["num"], "values": [r.metrics["_metric"] for r in grid],
                         "states": [t.state.name for t in searcher._ot_study.trials]}

    searcher = PruneAwareOptunaSearch(sampler=optuna.samplers.RandomSampler(seed=1234), metric=["a", "b", "c"],
                                      mode=["max", "min", "max"], max_epochs=1)
    grid = fit(multi_objective, out, "multi", searcher, {k: tune.uniform(0, 1) for k in "abc"}, 16)
    report["multi"] = {"errors": grid.num_errors, "n": len(grid),
                       "best_a": grid.get_best_result("a", "max").config["a"],
                       "best_b": grid.get_best_result("b", "min").config["b"],
                       "best_c": grid.get_best_result("c", "max").config["c"],
                       "metric_names": searcher._ot_study.metric_names,
                       "states": [t.state.name for t in searcher._ot_study.trials]}

    rng = np.random.default_rng(3)
    points = [{"metric": int(rng.integers(1, 5)), "a": f"t{int(rng.integers(1, 5))}", "b": int(rng.integers(0, 5)),
               "c": float(10 ** rng.uniform(-4, -1))} for _ in range(2)]
    space = {"metric": tune.choice([1, 2, 3, 4]), "a": tune.choice(["t1", "t2", "t3", "t4"]),
             "b": tune.randint(0, 5), "c": tune.loguniform(1e-4, 1e-1)}
    searcher = PruneAwareOptunaSearch(points_to_evaluate=points, max_epochs=1)
    grid = fit(mock_objective, out, "points", searcher, space, 5, metric="metric", mode="max")
    by_number = {t.user_attrs["ray_trial_id"]: t.number for t in searcher._ot_study.trials}  # the order asked
    first = sorted(grid, key=lambda r: by_number[r.metrics["trial_id"]])[:2]
    report["points"] = {"given": points, "first": [{k: r.config[k] for k in space} for r in first]}
    (out / "contract.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
