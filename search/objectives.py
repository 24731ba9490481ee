"""What a study optimises (--metric / --mode): one or two of the metrics a trial reports, each with its mode.

Its own module because the plan (checking the flags) and the searcher (telling Optuna) both need it, and the
searcher module is imported by the plan."""

from __future__ import annotations

from spaces.base import MODES
from trainables.protocol import EPOCH_METRICS, FINAL_ONLY

MAX_OBJECTIVES = 2


def objectives(space, metric=None, mode=None) -> tuple[list[str], list[str]]:
    """The metrics a study optimises (--metric / --mode) and the mode of each: one or two metrics a trial reports.

    `metric` / `mode`: a name, a comma-separated string or a list. Without a metric, the space's (`space.metric`;
    a mode given then must be the space's). A metric without a mode is minimised, except the space's own (its
    mode) and an F1 (maximised). The first metric must be reported every epoch (ASHA stops on it); a final-only
    one may come second. ValueError, one line naming the value, for anything else.
    """
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
