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
# A trial's checkpoint folder: STATE_FILE (every seed's complete state, for exact resume) and, in the checkpoint of
# the last epoch, WEIGHTS_FILE (the first seed's model weights alone), which the report logs for the best trial by
# copying a file, with no torch in the driver.
STATE_FILE = "state.pt"
WEIGHTS_FILE = "model_weights.pt"
# Metrics reported per epoch (kept under ~30 keys per trial); method loss parts are added as they appear.
REPORTED = ("epoch", "lr", "train_loss", "val_error", "val_top5_error", "val_nll", "val_ece", "val_f1",
            "test_error", "test_top5_error", "test_nll", "test_ece", "test_f1", "test_error_best", "epoch_seconds",
            "gpu_peak_mem_mb")
FINAL_ONLY = ("test_ece_ts", "test_nll_ts", "temperature", "test_recall1")
# what a study may optimise (--metric): every epoch's evaluation metrics, and the final-only ones (not the first)
EPOCH_METRICS = tuple(k for k in REPORTED if k.startswith(("val_", "test_")))
SPREAD = ("val_error", "test_error", "test_ece")


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


def newest_checkpoint(trial_dir) -> Path | None:
    """A trial's newest checkpoint folder that holds a complete state, or None. A write cut short (a killed worker,
    a stop inside torch.save) leaves a folder with only a `.part` file, or an empty one, which Ray never registered
    and which no reader may take for the newest checkpoint: STATE_FILE appears only once whole (a rename)."""
    folders = sorted(Path(trial_dir).glob("checkpoint_*"))  # (Ray's names are zero-padded: the order is numeric)
    return next((f for f in reversed(folders) if (f / STATE_FILE).is_file()), None)


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
