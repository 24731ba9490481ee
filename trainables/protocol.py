"""The contract between the driver and a trial, spelled once: the config keys the driver writes (`_study`: base
config, seeds, name, metric, checkpoint policy; `cell`; the searcher's dotted keys), the report keys a trial sends
and how its reports are read back. A report is the epoch's metrics (mean over seeds, `*_std`) plus string-valued
keys (no searcher or logger takes them for metrics) for what the driver cannot know: `OPEN_KEY` in an attempt's
first report (node, resumed, restored epochs), `RELIABILITY_KEY` in the last, `TAGS_KEY` with a failure.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from aikd.config import TrainConfig

STUDY_KEY = "_study"
CELL_KEY = "cell"
FAILURE_KEY = "failure"
OPEN_KEY = "trial_open"
RELIABILITY_KEY = "trial_reliability"
TAGS_KEY = "trial_tags"
REBUILT_KEY = "rebuilt_from"  # a result.json line that resume rebuilt from a checkpoint
# Metrics reported per epoch (kept under ~30 keys per trial); method loss parts are added as they appear.
REPORTED = ("epoch", "lr", "train_loss", "val_error", "val_top5_error", "val_nll", "val_ece", "val_f1",
            "test_error", "test_top5_error", "test_nll", "test_ece", "test_f1", "test_error_best", "epoch_seconds",
            "gpu_peak_mem_mb")
FINAL_ONLY = ("test_ece_ts", "test_nll_ts", "temperature", "test_recall1")
# what a study may optimise (--metric): every epoch's evaluation metrics, and the final-only ones (not the first)
EPOCH_METRICS = tuple(k for k in REPORTED if k.startswith(("val_", "test_")))
SPREAD = ("val_error", "test_error", "test_ece")
MAX_OBJECTIVES = 2


# ---- what a study optimises --------------------------------------------------------------------------------------

def objectives(space, metric=None, mode=None) -> tuple[list[str], list[str]]:
    """The metrics a study optimises (--metric / --mode) and the mode of each: one or two metrics a trial reports.

    `metric` / `mode`: a name, a comma-separated string or a list. Without a metric, the space's (`space.metric`;
    a mode given then must be the space's). A metric without a mode is minimised, except the space's own (its
    mode) and an F1 (maximised). The first metric must be reported every epoch (ASHA stops on it); a final-only
    one may come second. ValueError, one line naming the value, for anything else.
    """
    from spaces.base import MODES

    def split(x) -> list[str]:
        if x is None or x == "":
            return []
        return [p.strip() for p in x.split(",")] if isinstance(x, str) else [str(p).strip() for p in x]

    def shown(x) -> str:
        return x if isinstance(x, str) else ",".join(map(str, x))

    metrics, modes = split(metric), split(mode)
    if not metrics:
        if modes and modes != [space.mode]:
            raise ValueError(f"--mode {shown(mode)}: the space's metric {space.metric} is optimised {space.mode}; "
                             "pass --metric to optimise another")
        return [space.metric], [space.mode]
    one_or_two = "one metric, or two different ones separated by a comma"
    if any(not m for m in metrics):
        raise ValueError(f"--metric {shown(metric)}: give one or two metric names, e.g. val_error or "
                         "val_error,val_ece")
    if len(metrics) > MAX_OBJECTIVES:
        raise ValueError(f"--metric {shown(metric)}: at most {MAX_OBJECTIVES} objectives: {one_or_two}")
    if len(set(metrics)) != len(metrics):
        raise ValueError(f"--metric {shown(metric)}: the objectives must differ: {one_or_two}")
    allowed = EPOCH_METRICS + tuple(k for k in FINAL_ONLY if k != "temperature")
    for m in metrics:
        if m not in allowed:
            raise ValueError(f"--metric {m}: not a metric a trial reports; allowed: {', '.join(allowed)}")
    if metrics[0] not in EPOCH_METRICS:
        raise ValueError(f"--metric {metrics[0]}: the first metric is reported every epoch (ASHA stops on it); "
                         f"{metrics[0]} is known only at the end: put it second")
    if not modes:
        return metrics, [space.mode if m == space.metric else "max" if m.endswith("_f1") else "min" for m in metrics]
    if len(modes) != len(metrics) or set(modes) - set(MODES):
        raise ValueError(f"--mode {shown(mode)}: one mode per metric, allowed {', '.join(MODES)}, for each of the "
                         f"{len(metrics)} metric(s) {', '.join(metrics)}")
    return metrics, modes


# ---- the config -------------------------------------------------------------------------------------------------

def study_config(base: dict, seeds: list[int], name: str, metric: str, **extra) -> dict:
    """What the driver puts under STUDY_KEY in every trial's config."""
    return {"base": dict(base), "seeds": list(seeds), "name": name, "metric": metric, **extra}


def trial_train_config(config: dict) -> tuple[dict, list[int]]:
    """The dotted TrainConfig dict and the seeds of a trial config (raw sampler variables `*__*` dropped)."""
    study = config.get(STUDY_KEY, {})
    flat = dict(study.get("base", {}))
    flat.update(config.get(CELL_KEY, {}) or {})
    flat.update({k: v for k, v in config.items() if "." in k and "__" not in k or k in ("epochs", "seed")})
    seeds = list(study.get("seeds") or [flat.get("seed", 1)])
    return flat, seeds


def seed_configs(config: dict) -> tuple[list[TrainConfig], list[int]]:
    """The resolved TrainConfig of each of a trial's seeds, and the seeds."""
    flat, seeds = trial_train_config(config)
    return [TrainConfig.from_dict({**flat, "seed": s}).resolved() for s in seeds], seeds


# ---- the reports ------------------------------------------------------------------------------------------------

def aggregate(per_seed: list[dict]) -> dict:
    """Mean over seeds of every numeric metric; the sample std of the headline ones when K > 1."""
    out = {}
    keys = [k for k in per_seed[0] if isinstance(per_seed[0][k], (int, float))]
    for k in keys:
        vals = [m[k] for m in per_seed if k in m]
        out[k] = float(np.mean(vals))
        if k in SPREAD and len(vals) > 1:
            out[f"{k}_std"] = float(np.std(vals, ddof=1))
    return out


def reported(metrics: dict) -> dict:
    """The metrics of a report (or of a result.json line): what the trial's MLflow run holds."""
    return {k: v for k, v in metrics.items()
            if k in REPORTED or k in FINAL_ONLY or k.endswith("_std") or (k.startswith("train_") and len(k) < 24)}


def epoch_rows(histories: list[list[dict]], start: int = 0) -> list[dict]:
    """The reports of epochs start+1.. that every seed's history holds (from a checkpoint), as the trial made them."""
    return [{**reported(aggregate([h[e] for h in histories])), "epoch": e + 1}
            for e in range(start, min(len(h) for h in histories))]


def opening(node_id: str, resumed: bool, restored: list[dict]) -> dict:
    """The keys of an attempt's first report: where it runs, and the epochs its checkpoint restored (an attempt
    before it may have died before the driver logged them)."""
    return {OPEN_KEY: json.dumps({"tags": {"ray.node_id": node_id, "resumed": str(resumed)}, "restored": restored})}


def read_opening(result: dict) -> dict:
    return json.loads(result[OPEN_KEY]) if OPEN_KEY in result else {"tags": {}, "restored": []}


def closing(reliability: dict) -> dict:
    """The keys of a trial's last report: its reliability bins (val, test), drawn by the driver."""
    return {RELIABILITY_KEY: json.dumps(reliability)}


def failure(epoch: int, why: str, error: str, metric: str) -> dict:
    """A failed trial's last report: the study's metric as NaN (Tune requires the key in every result; the searcher
    and ASHA skip the value) and the tags its MLflow run gets."""
    tags = {FAILURE_KEY: why, "error": error[:500]}
    return {"epoch": epoch, FAILURE_KEY: why, metric: float("nan"), TAGS_KEY: json.dumps(tags)}


def read_json_key(result: dict, key: str):
    return json.loads(result[key]) if key in result else None


def read_results(path) -> list[dict]:
    """The reports in a trial's result.json (Ray's log), skipping a line cut by a killed driver."""
    out = []
    path = Path(path)
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out
