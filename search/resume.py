"""Resume an interrupted study from its folder: Ray's experiment state plus the Optuna journal.

A driver killed hard (SIGKILL, lost machine) leaves three records that disagree: Ray's experiment snapshot (written
every ~10 s), the Optuna journal (written at once) and MLflow (written at once). Trials asked, run or finished after
the snapshot are known to the journal and MLflow but not to Ray. Resuming reconciles them:

- the searcher re-reads the journal on restore (`PruneAwareOptunaSearch.reconcile_with_journal`): TPE continues
  from the full history; trials the journal holds as finished are not told again; an unfinished trial that Ray
  forgot is rerun with the same parameters as the next new Ray trial; no trial beyond `num_samples` is asked;
- here, before Ray restores: a trial Ray forgot whose Optuna trial finished keeps its folder and MLflow child (it
  counts as one of the study's trials); one that did not finish is rerun under a new Ray trial, so its folder is set
  aside in `STUDY/.forgotten/` and its MLflow child deleted (tagged `forgotten=true` first): one child per trial;
- a kept trial's Ray logs (`params.json`, `result.json`) may be missing or short: the driver copies them to the
  study folder with its snapshots, while the worker uploads each checkpoint at once. They are rebuilt from the
  trial's newest checkpoint (every seed's per-epoch history) and its Optuna parameters, so the report and the
  leaderboard count the trial.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from search.plan import UsageError, parse_args
from trainables.protocol import REBUILT_KEY, STUDY_KEY, epoch_rows, read_results, study_config

FORGOTTEN_DIR = ".forgotten"
TRIAL_PREFIX = "trial_"


def args_from_study(args):
    """The original command's arguments, read back from the study folder, with --resume kept."""
    if not args.name:
        raise UsageError("--resume needs --name STUDY (the folder under --storage)")
    storage = args.storage if "://" in args.storage else str(Path(args.storage).resolve())
    meta_path = Path(storage) / args.name / "study.json"
    if not meta_path.exists():
        raise UsageError(f"--resume: no study {args.name!r} under {storage} (no {meta_path})")
    meta = json.loads(meta_path.read_text())
    stored = parse_args([a for a in meta["argv"][1:] if a != "--resume"])
    stored.resume, stored.name, stored.storage = True, args.name, args.storage
    stored.argv = meta["argv"]  # what study.json keeps: a second --resume reads the original command again
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


def drop_gone_checkpoints(study_dir: Path, finished: set[str]) -> list[str]:
    """Take out of Ray's newest snapshot the trials the journal saw finish whose checkpoint there is gone; returns
    their ids.

    Ray's checkpoint manager deletes a trial's older checkpoints (`num_to_keep`) as newer ones come, and the next
    snapshot may never record the newer ones before a SIGKILL: Ray then fails to restore the trial ("does not exist
    on storage anymore") until the trial errors out. Taken out of the snapshot, such a trial is one Ray forgot: its
    folder is kept and its logs rebuilt from its newest checkpoint, like any trial that finished after the snapshot.
    """
    import functools
    import os

    from ray.tune.utils.serialization import TuneFunctionDecoder
    states = sorted(Path(study_dir).glob("experiment_state-*.json"))
    if not states or not finished:
        return []
    path = states[-1]
    data = json.loads(path.read_text())
    # the study's own snapshot, which Ray's restore unpickles the same way
    decoder = functools.partial(TuneFunctionDecoder, allow_cloudpickle=True)
    kept, dropped = [], []
    for entry in data.get("trial_data", []):
        trial = json.loads(entry[0])
        if trial["trial_id"] in finished and trial.get("status") not in ("TERMINATED", "ERROR"):
            try:
                latest = json.loads(entry[1], cls=decoder)["checkpoint_manager"].latest_checkpoint_result
                gone = latest is not None and not Path(latest.checkpoint.path).exists()
            except Exception:  # another Ray version's layout: leave the trial to Ray
                gone = False
            if gone:
                dropped.append(trial["trial_id"])
                continue
        kept.append(entry)
    if dropped:
        data["trial_data"] = kept
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
    return dropped


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


def restore_trial_logs(trial_dir: Path, ot_trial, study_meta: dict, space) -> int:
    """Rebuild the Ray logs of a finished trial that its newest checkpoint knows more of; returns epochs added."""
    import optuna
    import torch

    from search.searchers import SpaceSuggester
    from trainables.protocol import STATE_FILE, newest_checkpoint
    newest = newest_checkpoint(trial_dir)
    if newest is None:
        return 0
    saved = torch.load(newest / STATE_FILE, map_location="cpu", weights_only=True)
    histories = [s["history"] for s in saved["states"]]
    rid = trial_dir.name[len(TRIAL_PREFIX):]
    if not (trial_dir / "params.json").exists():
        config = {**ot_trial.params, **SpaceSuggester(space)(optuna.trial.FixedTrial(ot_trial.params))}
        study = study_config(study_meta.get("base", {}), saved["seeds"], study_meta.get("name"), space.metric,
                             rebuilt=True)
        (trial_dir / "params.json").write_text(json.dumps({STUDY_KEY: study, **config}, indent=2, sort_keys=True))
    logged = read_results(trial_dir / "result.json")
    have = int(logged[-1].get("epoch", 0)) if logged else 0
    # the driver's writer died with the driver, perhaps before logging these epochs: settle() checks the child run
    added = [{**row, "trial_id": rid, "training_iteration": row["epoch"], REBUILT_KEY: newest.name}
             for row in epoch_rows(histories, start=have)]
    if added:
        with open(trial_dir / "result.json", "a") as f:
            for row in added:
                f.write(json.dumps(row) + "\n")
    return len(added)


def reconcile(study_dir: Path, study_name: str, tracking=None, out=print, space=None) -> dict:
    """Set aside what trials that Ray forgot left behind (see the module doc); returns what was done."""
    from search.searchers import RAY_TRIAL_ATTR
    study_dir = Path(study_dir)
    journal = [t for t in journal_trials(study_dir, study_name) if t.user_attrs.get(RAY_TRIAL_ATTR)]
    dropped = drop_gone_checkpoints(study_dir, {t.user_attrs[RAY_TRIAL_ATTR] for t in journal
                                                if t.state.is_finished()})
    if dropped:
        out(f"resume: {len(dropped)} finished trials whose snapshot checkpoint is gone are rebuilt from their newest "
            f"checkpoint: {', '.join(dropped)}")
    snapshot = snapshot_trials(study_dir)
    known = set(snapshot)
    finished = {}  # ray trial id -> Optuna trial, for trials Ray forgot but the journal saw finish
    for t in journal:
        rid = t.user_attrs[RAY_TRIAL_ATTR]
        if rid not in known and t.state.is_finished():
            finished[rid] = t
    rebuilt = {}
    meta_path = study_dir / "study.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if space is not None and finished:
        for rid, t in finished.items():
            d = study_dir / f"{TRIAL_PREFIX}{rid}"
            if d.is_dir():
                n = restore_trial_logs(d, t, meta, space)
                if n:
                    rebuilt[rid] = n
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
                status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(finished[rid].state.name, "FAILED")
                tracking.set_trial_status(rid, run.info.run_name, status,
                                          {"pruned": "true"} if status == "KILLED" else None)
                closed.append(rid)
            elif snapshot.get(rid) == "TERMINATED" and run.info.status == "RUNNING":
                # Ray saw it end, but the driver died before its writer set the status; Ray will not end it again
                from search.tracking import final_status
                last = (read_results(study_dir / f"{TRIAL_PREFIX}{rid}" / "result.json") or [{}])[-1]
                tracking.set_trial_status(rid, run.info.run_name, *final_status(last, int(meta.get("epochs", 0))))
                closed.append(rid)
    if moved or deleted or finished:
        out(f"resume: Ray's snapshot knows {len(known)} trials; {len(finished)} more finished after it (kept); "
            f"{len(set(moved) | set(deleted))} unfinished ones it forgot are rerun with the same parameters "
            f"(folders moved to {FORGOTTEN_DIR}/: {len(moved)}, MLflow children deleted: {len(deleted)})")
    if rebuilt:
        out(f"resume: rebuilt the Ray logs of {len(rebuilt)} finished trial(s) from their checkpoints "
            f"({sum(rebuilt.values())} epochs the driver had not copied to the study folder)")
    return {"known": sorted(known), "finished_forgotten": sorted(finished), "moved": moved, "deleted": deleted,
            "closed": closed, "rebuilt": rebuilt}


def restore_tuner(plan, trainable, tracking=None, out=print):
    """Ray's Tuner for the study folder, after reconciling it with the journal and MLflow. Ray restores the searcher
    it pickled, and that searcher re-reads the journal itself."""
    from ray import tune
    path = plan.study_dir
    if not tune.Tuner.can_restore(path):
        raise UsageError(f"--resume: {path} holds no Ray Tune experiment state to restore")
    out(f"resuming {path}")
    if "://" not in path:
        reconcile(Path(path), plan.name, tracking, out=out, space=plan.space)
    return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
