"""Resume an interrupted study from its folder: Ray's experiment state plus the Optuna journal.

A driver killed hard (SIGKILL, lost machine) leaves three records that disagree: Ray's experiment snapshot (written
every ~10 s), the Optuna journal (written at once) and MLflow (written at once). Trials asked, run or finished after
the snapshot are known to the journal and MLflow but not to Ray. Resuming reconciles them:

- the searcher re-reads the journal on restore (`PruneAwareOptunaSearch.reconcile_with_journal`): TPE continues
  from the full history; trials the journal holds as finished are not told again; an unfinished trial that Ray
  forgot is rerun with the same parameters as the next new Ray trial; no trial beyond `num_samples` is asked;
- here, before Ray restores: a trial Ray forgot whose Optuna trial finished keeps its folder and MLflow child (it
  counts as one of the study's trials); one that did not finish is rerun under a new Ray trial, so its folder is set
  aside in `STUDY/.forgotten/` and its MLflow child deleted (tagged `forgotten=true` first): one child per trial.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

FORGOTTEN_DIR = ".forgotten"
TRIAL_PREFIX = "trial_"


def args_from_study(args):
    """The original command's arguments, read back from the study folder, with --resume kept."""
    from search.run import UsageError, parse_args
    storage = args.storage if "://" in args.storage else str(Path(args.storage).resolve())
    meta_path = Path(storage) / args.name / "study.json"
    if not meta_path.exists():
        raise UsageError(f"--resume: no study {args.name!r} under {storage} (no {meta_path})")
    meta = json.loads(meta_path.read_text())
    stored = parse_args([a for a in meta["argv"][1:] if a != "--resume"])
    stored.resume, stored.name, stored.storage = True, args.name, args.storage
    return stored


def snapshot_trials(study_dir: Path) -> dict[str, str]:
    """Ray trial id -> status in Ray's newest experiment snapshot."""
    states = sorted(Path(study_dir).glob("experiment_state-*.json"))
    if not states:
        return {}
    data = json.loads(states[-1].read_text())
    out = {}
    for trial_json, _meta in data.get("trial_data", []):
        t = json.loads(trial_json)
        out[t["trial_id"]] = t.get("status", "")
    return out


def journal_trials(study_dir: Path, study_name: str) -> list:
    """The Optuna trials of the study's journal (empty without one: grid studies)."""
    journal = Path(study_dir) / "optuna.journal"
    if not journal.exists():
        return []
    from search.searchers import load_study
    try:
        return load_study(study_name, journal).get_trials(deepcopy=False)
    except KeyError:  # the study was never created in the journal
        return []


def reconcile(study_dir: Path, study_name: str, tracking=None, out=print) -> dict:
    """Set aside what trials that Ray forgot left behind (see the module doc); returns what was done."""
    from search.searchers import RAY_TRIAL_ATTR
    study_dir = Path(study_dir)
    known = set(snapshot_trials(study_dir))
    finished = {}  # ray trial id -> Optuna state, for trials Ray forgot but the journal saw finish
    for t in journal_trials(study_dir, study_name):
        rid = t.user_attrs.get(RAY_TRIAL_ATTR)
        if rid and rid not in known and t.state.is_finished():
            finished[rid] = t.state.name
    keep = known | set(finished)
    moved = []
    for d in sorted(study_dir.glob(f"{TRIAL_PREFIX}*")):
        rid = d.name[len(TRIAL_PREFIX):]
        if d.is_dir() and rid not in keep:
            dest = study_dir / FORGOTTEN_DIR / d.name
            dest.parent.mkdir(exist_ok=True)
            shutil.move(str(d), str(dest))
            moved.append(rid)
    deleted, closed = [], []
    if tracking is not None and tracking.parent_run_id:
        from search.tracking import TRIAL_TAG
        for run in tracking.children():
            rid = run.data.tags.get(TRIAL_TAG)
            if rid and rid not in keep:
                tracking.forget_child(run.info.run_id)
                deleted.append(rid)
            elif rid in finished and run.info.status == "RUNNING":
                status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(finished[rid], "FAILED")
                tracking.set_trial_status(rid, run.info.run_name, status,
                                          {"pruned": "true"} if status == "KILLED" else None)
                closed.append(rid)
    if moved or deleted or finished:
        out(f"resume: Ray's snapshot knows {len(known)} trials; {len(finished)} more finished after it (kept); "
            f"{len(set(moved) | set(deleted))} unfinished ones it forgot are rerun with the same parameters "
            f"(folders moved to {FORGOTTEN_DIR}/: {len(moved)}, MLflow children deleted: {len(deleted)})")
    return {"known": sorted(known), "finished_forgotten": sorted(finished), "moved": moved, "deleted": deleted,
            "closed": closed}


def restore_tuner(plan, trainable, search_alg=None, tracking=None, out=print):
    """Ray's Tuner for the study folder, after reconciling it with the journal and MLflow.

    `search_alg` is unused: Ray restores the searcher it pickled, and that searcher re-reads the journal itself.
    """
    from ray import tune
    path = plan.study_dir
    if not tune.Tuner.can_restore(path):
        from search.run import UsageError
        raise UsageError(f"--resume: {path} holds no Ray Tune experiment state to restore")
    out(f"resuming {path}")
    if "://" not in path:
        reconcile(Path(path), plan.name, tracking, out=out)
    return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
