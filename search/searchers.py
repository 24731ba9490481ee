"""Searchers: Optuna (TPE, random, NSGA-II) that tells Optuna the truth about pruned and failed trials."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from spaces import Space
from trainables.protocol import FAILURE_KEY

RAY_TRIAL_ATTR = "ray_trial_id"
logger = logging.getLogger(__name__)


class SpaceSuggester:
    """Define-by-run function for OptunaSearch; a class in an importable module so Ray can pickle it."""

    def __init__(self, space: Space, constants: dict | None = None):
        self.space, self.constants = space, dict(constants or {})

    def __call__(self, trial) -> dict:
        return {**self.constants, **self.space.suggest(trial)}


class PruneAwareOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch records a trial that ASHA stopped as COMPLETE with its partial value, which misleads
    TPE; here it becomes PRUNED (with its intermediate values), a failed or diverged trial FAIL.

    Resume after a hard kill: Ray restores this searcher from its last snapshot, but the Optuna journal may have
    moved on (trials asked or finished after it). `restore` re-reads the journal, so TPE sees the full history;
    trials the journal holds as finished are never reported to again; a trial asked after the snapshot (Ray forgot
    it) is handed, with its parameters, to the next new Ray trial instead of asking a fresh one; and no fresh trial
    is asked once the journal holds `num_samples`. Each Optuna trial carries its Ray trial id (user attribute
    `ray_trial_id`), so the resume code can find what such a forgotten trial left behind.
    """

    def __init__(self, *args, max_epochs: int, journal: Path | str | None = None, num_samples: int | None = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self._max_epochs = int(max_epochs)
        self._journal = str(journal) if journal else None
        self._num_samples = num_samples
        self._adoptable: list[int] = []
        self._restored = False

    def suggest(self, trial_id: str):
        if trial_id not in self._ot_trials and self._ot_study is not None:
            adopted = self._adopt()
            if adopted is not None:
                self._ot_trials[trial_id] = adopted
            elif (getattr(self, "_restored", False) and self._num_samples
                  and len(self._ot_study.get_trials(deepcopy=False)) >= self._num_samples):
                return Searcher.FINISHED
        new = trial_id not in self._ot_trials
        config = super().suggest(trial_id)
        if trial_id in self._ot_trials and (new or getattr(self, "_restored", False)):
            try:
                self._ot_trials[trial_id].set_user_attr(RAY_TRIAL_ATTR, trial_id)
            except Exception as exc:  # bookkeeping only
                logger.warning("could not tag optuna trial of %s: %s", trial_id, exc)
        return config

    def _adopt(self):
        while getattr(self, "_adoptable", None):
            tid = self._adoptable.pop(0)
            if self._ot_study._storage.get_trial(tid).state == TrialState.RUNNING:
                return optuna.Trial(self._ot_study, tid)
        return None

    def restore(self, checkpoint_path: str):
        super().restore(checkpoint_path)
        self.reconcile_with_journal()

    def reconcile_with_journal(self) -> None:
        """Bring the state restored from Ray's snapshot up to date with the Optuna journal (see the class doc)."""
        if getattr(self, "_journal", None):
            self._ot_study = optuna.load_study(study_name=self._study_name,
                                               storage=journal_storage(Path(self._journal)),
                                               sampler=self._sampler, pruner=optuna.pruners.NopPruner())
        trials = {t._trial_id: t for t in self._ot_study.get_trials(deepcopy=False)}
        mapped = set()
        for ray_id, ot_trial in list(self._ot_trials.items()):
            tid = ot_trial._trial_id
            mapped.add(tid)
            frozen = trials.get(tid)
            if frozen is None or frozen.state.is_finished():
                self._completed_trials.add(ray_id)  # finished after the snapshot: its result is in the journal
            else:
                self._ot_trials[ray_id] = optuna.Trial(self._ot_study, tid)
        self._adoptable = [tid for tid, t in sorted(trials.items())
                           if tid not in mapped and t.state == TrialState.RUNNING]
        if len(trials) > len(mapped):  # the restored sampler would replay the draws made after the snapshot
            self._sampler.reseed_rng()
        self._restored = True

    def on_trial_result(self, trial_id: str, result: dict):
        if self.metric not in result or trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        if result.get(FAILURE_KEY) or not math.isfinite(result[self.metric]):
            return
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        try:
            self._ot_trials[trial_id].report(float(result[self.metric]), step)
        except Exception as exc:  # e.g. the journal holds the trial as finished: never stop the study for it
            logger.warning("optuna report failed for %s: %s", trial_id, exc)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        result = result or {}
        value = result.get(self.metric)
        if value is not None and not math.isfinite(value):  # a diverged trial reports NaN (Tune wants the key)
            value = None
        if value is not None and "epoch" in result:  # Tune skips on_trial_result for a trial's last result
            ot_trial = self._ot_trials[trial_id]
            step = int(result["epoch"])
            try:
                if step not in self._ot_study._storage.get_trial(ot_trial._trial_id).intermediate_values:
                    ot_trial.report(float(value), step)
            except Exception as exc:  # never stop the study for the searcher's bookkeeping
                logger.warning("optuna report failed for %s: %s", trial_id, exc)
        if error or result.get(FAILURE_KEY) or value is None:
            state, value = TrialState.FAIL, None
        elif int(result.get("epoch", 0)) < self._max_epochs:
            state, value = TrialState.PRUNED, None
        else:
            state = TrialState.COMPLETE
        try:
            self._ot_study.tell(self._ot_trials[trial_id], value, state=state)
        except Exception as exc:  # e.g. the journal already holds this trial as finished (resume)
            logger.warning("optuna tell failed for %s: %s", trial_id, exc)
        self._completed_trials.add(trial_id)


def journal_storage(path: Path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def make_sampler(searcher: str, seed: int):
    if searcher == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if searcher == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if searcher == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    raise ValueError(f"no Optuna sampler for searcher {searcher!r}")


def make_optuna_search(space: Space, searcher: str, seed: int, study_name: str, journal: Path, max_epochs: int,
                       constants: dict | None = None, num_samples: int | None = None) -> PruneAwareOptunaSearch:
    return PruneAwareOptunaSearch(
        space=SpaceSuggester(space, constants), metric=space.metric, mode=space.mode,
        sampler=make_sampler(searcher, seed), study_name=study_name, storage=journal_storage(journal),
        max_epochs=max_epochs, journal=journal, num_samples=num_samples)


def load_study(study_name: str, journal: Path) -> optuna.Study:
    return optuna.load_study(study_name=study_name, storage=journal_storage(journal))
