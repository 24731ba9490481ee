"""Study report: leaderboard, mean +/- std over seeds, paper-vs-ours table, Optuna plots, best weights.

Run at the end of every study, and again at any time from storage alone: python search/report.py STUDY_DIR
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")

from trainables.protocol import (  # noqa: E402
    CELL_KEY,
    FAILURE_KEY,
    STATE_FILE,
    WEIGHTS_FILE,
    newest_checkpoint,
    read_results,
    trial_train_config,
)

# ------------------------------------------------------------------------------------------------------------
# Reading the study folder (no Ray needed)

def collect_rows(study_dir: Path, epochs: int) -> list[dict]:
    """One row per trial from Ray's trial folders: config, last metrics, epochs run and the outcome (done, pruned,
    failed, interrupted: cut short by a stopped study, which `--resume` continues; not started)."""
    from search.resume import snapshot_trials
    unfinished = {t for t, status in snapshot_trials(study_dir).items() if status not in ("TERMINATED", "ERROR")}
    rows = []
    for d in sorted(p for p in Path(study_dir).iterdir() if (p / "params.json").exists()):
        config = json.loads((d / "params.json").read_text())
        results = read_results(d / "result.json")
        last = results[-1] if results else {}
        flat, seeds = trial_train_config(config)
        run = int(last.get("epoch", 0))
        if last.get(FAILURE_KEY) or (d / "error.txt").exists() and run < epochs:
            outcome = "failed"
        elif run < epochs and d.name[len("trial_"):] in unfinished:
            outcome = "interrupted"
        elif run < epochs:
            outcome = "pruned" if results else "not started"
        else:
            outcome = "done"
        rows.append({"dir": str(d), "trial_id": last.get("trial_id", d.name), "config": flat, "seeds": seeds,
                     "cell": config.get(CELL_KEY), "metrics": last, "epochs": run, "outcome": outcome,
                     "history": results})
    return rows


def _fmt(v, std=None, digits=2):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    s = f"{v:.{digits}f}"
    return s + (f" +/- {std:.{digits}f}" if std is not None else "")


def _varied_keys(space, rows) -> list[str]:
    keys = [k for k in space.outputs()] if space.params else []
    return keys or sorted({k for r in rows for k in (r["cell"] or {})})


def tie_break(metric: str) -> str:
    """The metric that orders trials whose primary metric is equal (a few hundred validation images give few
    distinct error values): the NLL of the same split for an error, else that split's error."""
    split = metric.split("_")[0]
    return f"{split}_nll" if metric.endswith("_error") else f"{split}_error"


def _value(r, metric, sign):
    v = r["metrics"].get(metric)
    return sign * v if isinstance(v, (int, float)) and math.isfinite(v) else math.inf


def leaderboard(space, rows, metric: str, mode: str) -> list[dict]:
    """Finished trials first, then pruned ones; each by `metric`, ties by `tie_break(metric)` (both in `mode`)."""
    ranked = [r for r in rows if r["outcome"] in ("done", "pruned") and metric in r["metrics"]]
    sign, second = (1 if mode == "min" else -1), tie_break(metric)
    ranked.sort(key=lambda r: (r["outcome"] != "done", _value(r, metric, sign), _value(r, second, sign)))
    return ranked


def pareto_front(rows, metrics: list[str], modes: list[str]) -> list[dict]:
    """The finished trials no other finished trial dominates (as good in both metrics, better in one)."""
    signs = [1 if m == "min" else -1 for m in modes]
    done = [r for r in rows if r["outcome"] == "done"
            and all(math.isfinite(_value(r, m, s)) for m, s in zip(metrics, signs))]
    points = [tuple(_value(r, m, s) for m, s in zip(metrics, signs)) for r in done]

    def dominated(p):
        return any(all(q_i <= p_i for q_i, p_i in zip(q, p)) and q != p for q in points)
    front = [r for r, p in zip(done, points) if not dominated(p)]
    return sorted(front, key=lambda r: _value(r, metrics[0], signs[0]))


def write_pareto(space, front, metrics, report_dir: Path) -> list[str]:
    """The front as a table (pareto.md, pareto.csv) and a plot of every finished trial with the front marked."""
    keys = _varied_keys(space, front)
    header = [*metrics, *keys, "test_error", "trial_id"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    with open(report_dir / "pareto.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in front:
            m = r["metrics"]
            w.writerow([*[m.get(k) for k in metrics], *[r["config"].get(k) for k in keys], m.get("test_error"),
                        r["trial_id"]])
            lines.append("| " + " | ".join([*[_fmt(m.get(k)) for k in metrics], *[_short(r["config"].get(k))
                                                                                   for k in keys],
                                             _fmt(m.get("test_error")), r["trial_id"]]) + " |")
    (report_dir / "pareto.md").write_text("\n".join(lines) + "\n")
    return lines


def pareto_plot(rows, front, metrics, path: Path) -> None:
    import matplotlib.pyplot as plt
    done = [r for r in rows if r["outcome"] == "done"]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter([r["metrics"].get(metrics[0]) for r in done], [r["metrics"].get(metrics[1]) for r in done],
               c="0.6", s=18, label="finished trials")
    ax.plot([r["metrics"][metrics[0]] for r in front], [r["metrics"][metrics[1]] for r in front], "o-", c="C3",
            label="Pareto front")
    ax.set_xlabel(metrics[0])
    ax.set_ylabel(metrics[1])
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_leaderboard(space, ranked, metric, path_csv: Path, path_md: Path, top: int) -> list[str]:
    """The ranked trials, with the tie-break beside the metric (so that equal values show why they are ordered) and
    the test metrics each once."""
    keys = _varied_keys(space, ranked)
    shown = list(dict.fromkeys([metric, tie_break(metric), "test_error", "test_ece", "test_ece_ts"]))
    header = ["rank", *keys, *shown, "epochs", "outcome", "trial_id"]
    lines = []
    with open(path_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i, r in enumerate(ranked, 1):
            m = r["metrics"]
            w.writerow([i, *[r["config"].get(k) for k in keys], *[m.get(k) for k in shown], r["epochs"],
                        r["outcome"], r["trial_id"]])
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for i, r in enumerate(ranked[:top], 1):
        m = r["metrics"]
        cells = [str(i), *[_short(r["config"].get(k)) for k in keys],
                 *[_fmt(m.get(k), m.get(f"{k}_std") if k in (metric, "test_error") else None) for k in shown],
                 str(r["epochs"]), r["outcome"], r["trial_id"]]
        lines.append("| " + " | ".join(cells) + " |")
    path_md.write_text("\n".join(lines) + "\n")
    return lines


def _short(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def paper_table(space, rows) -> list[str]:
    """Grid spaces: our test top-1 error (mean +/- std over seeds, last epoch) beside the paper's number, under a
    line naming the protocol the study ran in (the papers' numbers are of the paper protocol)."""
    if not space.is_grid:
        return []
    from spaces import PROTOCOL_LINES, cell_key
    by_cell = {cell_key(r["cell"]): r for r in rows if r["cell"] is not None}
    lines = [f"protocol: {PROTOCOL_LINES[space.protocol]}", "",
             "| cell | ours: test top-1 error (%) | paper: top-1 error (%) | ours: val error | outcome |",
             "|---|---|---|---|---|"]
    for cell in space.grid_cells():
        r = by_cell.get(cell_key(cell))
        paper = space.cell_paper_value(cell)
        p = "none published"
        if paper and paper.get("top1") is not None:
            p = _fmt(paper["top1"], paper.get("top1_std"))
        if r is None:
            ours, val, outcome = "-", "-", "not run"
        else:
            m = r["metrics"]
            ours = _fmt(m.get("test_error"), m.get("test_error_std"))
            val, outcome = _fmt(m.get("val_error"), m.get("val_error_std")), r["outcome"]
        label = ", ".join(f"{k}={_short(v)}" for k, v in cell.items())
        lines.append(f"| {label} | {ours} | {p} | {val} | {outcome} |")
    return lines


def plot_study(space, study_name: str, journal: Path):
    """The study the plots are computed on: the journal's trials with the user's names and values."""
    from search.searchers import load_study, user_facing_study
    return user_facing_study(space, load_study(study_name, journal))


def optuna_plots(space, study_name: str, journal: Path, out_dir: Path) -> list[Path]:
    """Parameter importances, parallel coordinates and optimisation history, computed on the study with the user's
    names and values (method.omega, method.alpha_g, critic.fc2, ...), not the sampler's coordinates; with two
    objectives, one set per objective."""
    if not journal.exists():
        return []
    import warnings

    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # e.g. "no complete trials": the summary says so
    study = plot_study(space, study_name, journal)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    names = list(study.metric_names or ["objective"])
    targets = [(None, "")] if len(names) == 1 else [
        (lambda t, i=i: t.values[i], f"_{n}") for i, n in enumerate(names)]
    paths = []
    for target, suffix in targets:
        kw = {} if target is None else {"target": target, "target_name": suffix[1:]}
        plots = [(f"optimization_history{suffix}.png", ovm.plot_optimization_history),
                 (f"parallel_coordinates{suffix}.png", ovm.plot_parallel_coordinate)]
        if len(done) >= 2:
            plots.append((f"param_importances{suffix}.png", ovm.plot_param_importances))
        for name, fn in plots:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ax = fn(study, **kw)
                fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
                fig.set_size_inches(9, 5)
                fig.tight_layout()
                fig.savefig(out_dir / name, dpi=90)
                plt.close(fig)
                paths.append(out_dir / name)
            except Exception as e:  # too few trials for a plot is not an error of the study
                print(f"note: {name} skipped ({type(e).__name__}: {e})")
    return paths


def best_weights(row, out_path: Path) -> Path | None:
    """The best trial's model weights (first seed), from its newest complete checkpoint: the weights file it wrote
    there (linked, else copied), or, from a checkpoint written without one, taken out of its state with torch."""
    newest = newest_checkpoint(row["dir"])
    if newest is None:
        return None
    weights = newest / WEIGHTS_FILE
    if weights.exists():
        try:
            os.link(weights, out_path)
        except OSError:  # another file system, or one without hard links
            shutil.copyfile(weights, out_path)
        return out_path
    import torch
    states = torch.load(newest / STATE_FILE, map_location="cpu", weights_only=True)["states"]
    torch.save(states[0]["model"], out_path)
    return out_path


# ------------------------------------------------------------------------------------------------------------

def summarize(plan, results, tracking, args, out=print) -> dict:
    """Print and store the study summary; log it to the parent run."""
    study_dir = Path(plan.study_dir)
    return build_report(plan.space, study_dir, plan.name, plan.epochs, tracking, top=getattr(args, "top", 10),
                        out=out, metrics=plan.metrics, modes=plan.modes)


def build_report(space, study_dir: Path, name: str, epochs: int, tracking=None, top: int = 10, out=print,
                 metrics: list | None = None, modes: list | None = None) -> dict:
    metrics, modes = list(metrics or [space.metric]), list(modes or [space.mode])
    metric, mode = metrics[0], modes[0]
    rows = collect_rows(study_dir, epochs)
    ranked = leaderboard(space, rows, metric, mode)
    report_dir = study_dir / "report"
    report_dir.mkdir(exist_ok=True)
    lines = write_leaderboard(space, ranked, metric, report_dir / "leaderboard.csv", report_dir / "leaderboard.md",
                              top)
    counts = {o: sum(r["outcome"] == o for r in rows) for o in ("done", "pruned", "failed", "interrupted",
                                                                  "not started")}
    budget = len(rows) * epochs
    used = sum(r["epochs"] for r in rows)
    out("")
    out(f"top trials by {metric} ({mode}), ties broken by {tie_break(metric)} ({mode}); test metrics at the last "
        "epoch, mean +/- std over seeds:")
    for line in lines:
        out(line)
    cut = f", {counts['interrupted']} interrupted (resumable)" if counts["interrupted"] else ""
    saved = budget - used - sum(epochs - r["epochs"] for r in rows if r["outcome"] in ("interrupted", "not started"))
    out(f"trials: {counts['done']} done, {counts['pruned']} pruned, {counts['failed']} failed{cut}; "
        f"epochs run {used} of {budget} ({saved} saved by early stopping)")
    summary = {"study": name, "space": space.name, "metric": metric, "mode": mode, "tie_break": tie_break(metric),
               "metrics": metrics, "modes": modes, "counts": counts, "epochs_budget": budget, "epochs_run": used}
    best = next((r for r in ranked if r["outcome"] == "done"), None)

    def entry(r):
        return {"config": r["config"], "seeds": r["seeds"], "trial_id": r["trial_id"],
                **{k: r["metrics"].get(k) for k in (*metrics, tie_break(metric), "test_error")}}
    front = pareto_front(rows, metrics, modes) if len(metrics) == 2 else []
    if front:
        out("")
        out(f"Pareto front of {metrics[0]} ({modes[0]}) and {metrics[1]} ({modes[1]}): {len(front)} of "
            f"{counts['done']} finished trials")
        for line in write_pareto(space, front, metrics, report_dir):
            out(line)
        pareto_plot(rows, front, metrics, report_dir / "pareto.png")
        summary["front"] = [entry(r) for r in front]
        (study_dir / "best_config.json").write_text(json.dumps(
            {"metrics": metrics, "modes": modes, "front": summary["front"]}, indent=1, sort_keys=True))
        out(f"Pareto front: {study_dir / 'best_config.json'}")
    elif best is not None:
        best_cfg = {**entry(best), "tie_break": tie_break(metric)}
        (study_dir / "best_config.json").write_text(json.dumps(best_cfg, indent=1, sort_keys=True))
        summary["best"] = best_cfg
        out(f"best configuration: {study_dir / 'best_config.json'}")
    ptable = paper_table(space, rows)
    if ptable:
        (report_dir / "paper_table.md").write_text("\n".join(ptable) + "\n")
        out("")
        out("ours beside the paper (grid cells):")
        for line in ptable:
            out(line)
    plots = optuna_plots(space, name, study_dir / "optuna.journal", report_dir)
    (report_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    if tracking is not None:
        try:
            for f in sorted(report_dir.iterdir()):
                tracking.log_artifact(f, "report")
            tracking.log_best(summary)
            if best is not None:
                with tempfile.TemporaryDirectory() as d:
                    w = best_weights(best, Path(d) / "best_model_weights.pt")
                    if w:
                        tracking.log_artifact(w, "best_model")
                        child = tracking.child_of(best["trial_id"])
                        if child is not None:
                            tracking.log_artifact(w, "model", run_id=child.info.run_id)
            out(f"MLflow: report logged to parent run {tracking.parent_run_id} ({tracking.uri}); "
                f"{tracking.browse_hint()}")
        except Exception as e:
            out(f"warning: could not log the report to MLflow: {e}")
    out(f"results: {study_dir} (report in {report_dir}; {len(plots)} plots)")
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python search/report.py", description=__doc__.splitlines()[0])
    p.add_argument("study", help="the study folder (STORAGE/NAME), or a name under ./studies")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--no-tracking", action="store_true", help="do not log the report to MLflow")
    args = p.parse_args(argv)
    study_dir = Path(args.study)
    if not (study_dir / "study.json").exists() and (Path("studies") / args.study / "study.json").exists():
        study_dir = Path("studies") / args.study
    if not (study_dir / "study.json").exists():
        print(f"error: {study_dir} is not a study folder (no study.json)", file=sys.stderr)
        return 2
    meta = json.loads((study_dir / "study.json").read_text())
    from spaces import get_space
    # a study from before protocols existed ran with a validation split
    space = get_space(meta["space"], **meta.get("space_options", {})).with_protocol(meta.get("protocol", "search"))
    tracking = None
    if meta.get("tracking_uri") and meta.get("parent_run_id") and not args.no_tracking:
        from search.tracking import StudyTracking
        tracking = StudyTracking(meta["tracking_uri"], meta["name"], meta.get("experiment", "aikd-search"))
        tracking.parent_run_id = meta["parent_run_id"]
    build_report(space, study_dir, meta["name"], meta["epochs"], tracking, top=args.top, metrics=meta.get("metrics"),
                 modes=meta.get("modes"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
