"""Searchers: Optuna (TPE, random, NSGA-II) that tells Optuna the truth about pruned and failed trials, with one or
two objectives; warm starts (the paper's best configuration, the method's defaults, another study's trials); and the
study in the user's names (what the report's importance, parallel-coordinate and history plots are computed on).

Functions the CLI calls: `objectives`, `make_optuna_search`, `warm_start_points`, `check_seed_study`,
`seed_from_study`, `user_facing_study`, `load_study`.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from aikd.config import TrainConfig
from search.objectives import objectives
from spaces import Space
from spaces.base import InexpressibleError, same_value
from trainables.protocol import FAILURE_KEY

RAY_TRIAL_ATTR = "ray_trial_id"
WARM_START_ATTR = "warm_start_from"  # user attribute of a trial copied from another study: "STUDY#NUMBER"
logger = logging.getLogger(__name__)


def _step(result: dict) -> int:
    """The epoch a result belongs to: our trainables report `epoch`; any other trainable Tune's
    `training_iteration`."""
    return int(result.get("epoch", result.get("training_iteration", 0)) or 0)


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


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

    Two objectives (`metric` and `mode` lists, as for Ray's OptunaSearch): Optuna keeps no intermediate values for a
    multi-objective study, so nothing is reported per epoch, and both values are told at the end. A stopped trial is
    PRUNED and a failed one FAIL as with one objective; Optuna takes `tell(state=PRUNED)` without values for a
    multi-objective study, and its samplers (TPE, NSGA-II) accept such trials. The study's objectives carry the
    metric names (`study.set_metric_names`), so optuna-dashboard labels its axes with them.

    User-facing values: with a `SpaceSuggester` space, every Optuna trial carries the values a person set, not the
    sampler's coordinates (`Space.user_values`: method.omega, method.alpha_ce, critic.fc2, ...), one user attribute
    per key, so that optuna-dashboard shows them beside the raw parameters.
    """

    def __init__(self, *args, max_epochs: int, journal: Path | str | None = None, num_samples: int | None = None,
                 **kwargs):
        for key in ("metric", "mode"):  # Ray's study setup recognises a list, not a tuple
            if isinstance(kwargs.get(key), tuple):
                kwargs[key] = list(kwargs[key])
        if isinstance(kwargs.get("metric"), list) and len(kwargs["metric"]) == 1:
            kwargs["metric"] = kwargs["metric"][0]  # one objective in a list: a plain metric, reported per epoch
            if isinstance(kwargs.get("mode"), list):
                kwargs["mode"] = kwargs["mode"][0]
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
                  and self._own_trials() >= self._num_samples):
                return Searcher.FINISHED
        new = trial_id not in self._ot_trials
        config = super().suggest(trial_id)
        if trial_id in self._ot_trials and (new or getattr(self, "_restored", False)):
            self._tag(self._ot_trials[trial_id], trial_id)
        return config

    @property
    def _multi(self) -> bool:
        return isinstance(self._metric, (list, tuple))

    def _own_trials(self) -> int:
        """Trials of this study, not those a warm start copied from another one (they are history, not samples)."""
        return sum(1 for t in self._ot_study.get_trials(deepcopy=False) if WARM_START_ATTR not in t.user_attrs)

    def _tag(self, ot_trial, trial_id: str) -> None:
        try:
            ot_trial.set_user_attr(RAY_TRIAL_ATTR, trial_id)
            if isinstance(self._space, SpaceSuggester):
                for key, value in self._space.space.user_values(ot_trial.params).items():
                    ot_trial.set_user_attr(key, value)
        except Exception as exc:  # bookkeeping only
            logger.warning("could not tag optuna trial of %s: %s", trial_id, exc)

    def _setup_study(self, mode):
        super()._setup_study(mode)
        names = list(self._metric) if self._multi else [self._metric]
        if all(isinstance(n, str) for n in names) and len(names) == len(self._ot_study.directions):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    if self._ot_study.metric_names != names:
                        self._ot_study.set_metric_names(names)
            except Exception as exc:  # a label for the dashboard: never stop the study for it
                logger.warning("could not name the objectives %s: %s", names, exc)

    def add_evaluated_point(self, parameters: dict, value, error: bool = False, pruned: bool = False,
                            intermediate_values: list | None = None):
        """Ray's, and for two objectives a list of values (no intermediate values: Optuna keeps none then)."""
        if not isinstance(value, (list, tuple)):
            return super().add_evaluated_point(parameters, value, error=error, pruned=pruned,
                                               intermediate_values=intermediate_values)
        if callable(self._space):
            raise TypeError("a define-by-run space cannot take evaluated points; give a distribution dict")
        state = TrialState.FAIL if error else TrialState.PRUNED if pruned else TrialState.COMPLETE
        self._ot_study.add_trial(optuna.trial.create_trial(
            state=state, values=[float(v) for v in value] if state == TrialState.COMPLETE else None,
            params=parameters, distributions=self._space))

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
        if self._multi:  # Optuna keeps no intermediate values for a multi-objective study
            return
        if self.metric not in result or trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        if result.get(FAILURE_KEY) or not _finite(result[self.metric]):
            return
        try:
            self._ot_trials[trial_id].report(float(result[self.metric]), _step(result))
        except Exception as exc:  # e.g. the journal holds the trial as finished: never stop the study for it
            logger.warning("optuna report failed for %s: %s", trial_id, exc)

    def _final_values(self, result: dict):
        """The value (one objective) or values (two) to tell; None if one is missing or not finite (a diverged
        trial reports NaN, since Tune wants the key)."""
        metrics = list(self._metric) if self._multi else [self._metric]
        values = [result.get(m) for m in metrics]
        if any(v is None or not _finite(v) for v in values):
            return None
        values = [float(v) for v in values]
        return values if self._multi else values[0]

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        result = result or {}
        value = self._final_values(result)
        step = _step(result)
        if value is not None and not self._multi and ("epoch" in result or "training_iteration" in result):
            ot_trial = self._ot_trials[trial_id]  # Tune skips on_trial_result for a trial's last result
            try:
                if step not in self._ot_study._storage.get_trial(ot_trial._trial_id).intermediate_values:
                    ot_trial.report(value, step)
            except Exception as exc:  # never stop the study for the searcher's bookkeeping
                logger.warning("optuna report failed for %s: %s", trial_id, exc)
        if error or result.get(FAILURE_KEY) or value is None:
            state, value = TrialState.FAIL, None
        elif step < self._max_epochs:
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
                       constants: dict | None = None, num_samples: int | None = None, metric=None, mode=None,
                       points_to_evaluate: list[dict] | None = None) -> PruneAwareOptunaSearch:
    """The study's searcher on its journal. `metric`/`mode`: see `search.objectives.objectives` (two metrics: a
    two-objective study, multi-objective TPE with "tpe", NSGA-II with "nsga2", or random). `points_to_evaluate`: raw
    points (a `WarmStart.points`) that are the first trials, in order."""
    metrics, modes = objectives(space, metric, mode)
    # one objective as a plain name: the single-objective form of Ray's OptunaSearch (a list is multi-objective)
    metric, mode = (metrics[0], modes[0]) if len(metrics) == 1 else (metrics, modes)
    return PruneAwareOptunaSearch(
        space=SpaceSuggester(space, constants), metric=metric, mode=mode,
        points_to_evaluate=[dict(p) for p in points_to_evaluate or []] or None,
        sampler=make_sampler(searcher, seed), study_name=study_name, storage=journal_storage(journal),
        max_epochs=max_epochs, journal=journal, num_samples=num_samples)


def load_study(study_name: str, journal: Path) -> optuna.Study:
    return optuna.load_study(study_name=study_name, storage=journal_storage(journal))


# --------------------------------------------------------------------------------------------------------------
# Warm starts
# --------------------------------------------------------------------------------------------------------------


def _fmt_config(config: dict) -> str:
    return " ".join(f"{k.split('.')[-1]}={v:g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                    for k, v in config.items())


@dataclass
class WarmStart:
    """What a warm start puts first. `points`: raw points for `points_to_evaluate` (enqueued in this order), with
    `configs` (their user-facing values) and `sources` (where each came from); `seeded`: trials added to the study
    as history; `notes`: what was skipped, and why."""

    points: list[dict] = field(default_factory=list)
    configs: list[dict] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    seeded: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, raw: dict, config: dict, source: str) -> bool:
        """Append a point unless one with the same values is there already (then say so in `notes`)."""
        for seen, where in zip(self.configs, self.sources):
            if seen.keys() == config.keys() and all(same_value(seen[k], config[k]) for k in config):
                self.notes.append(f"{source}: the same configuration as {where}, enqueued once")
                return False
        self.points.append(dict(raw))
        self.configs.append(dict(config))
        self.sources.append(source)
        return True

    def extend(self, other: "WarmStart") -> "WarmStart":
        for raw, config, source in zip(other.points, other.configs, other.sources):
            self.add(raw, config, source)
        self.seeded += other.seeded
        self.notes.extend(other.notes)
        return self

    def lines(self) -> list[str]:
        """For the plan: one line per enqueued point, the seeded history, then the notes."""
        out = [f"warm start {i + 1}: {src}: {_fmt_config(cfg)}"
               for i, (cfg, src) in enumerate(zip(self.configs, self.sources))]
        return out + [f"warm start: {n}" for n in self.notes]


def method_defaults(space: Space) -> tuple[dict | None, str]:
    """What `aikd.config.TrainConfig` resolves for the space's base when the searched keys are left unset, for those
    keys (e.g. omega 0.1, alpha_g 0.1, alpha_p 0.3, tau_g 3, tau_p 1 for AI-KD), and "" ; or None and why not."""
    try:
        resolved = TrainConfig.from_dict(dict(space.base)).resolved().to_dict()
    except (ValueError, KeyError, TypeError) as exc:
        return None, f"method defaults: not resolved for the base {space.base} ({exc})"
    keys = space.outputs()
    missing = [k for k in keys if resolved.get(k) is None]
    if missing:
        return None, f"method defaults: the configuration sets no default for {', '.join(missing)}"
    return {k: resolved[k] for k in keys}, ""


def _add_point(ws: WarmStart, space: Space, point: dict, source: str) -> None:
    try:
        raw = space.raw_of(point)
    except InexpressibleError as exc:
        ws.notes.append(f"{source}: skipped, the space cannot express {', '.join(exc.keys)} ({exc})")
        return
    ws.add(raw, space.user_values(raw), source)


def warm_start_points(space: Space, source: str = "paper") -> WarmStart:
    """`source` "paper": the paper's best configuration (`space.paper.best`; keys it does not give take the method's
    defaults), then the method's defaults (`method_defaults`), as raw points for `points_to_evaluate`. A point the
    space cannot express is skipped and `notes` says which keys; a duplicate is enqueued once. "none": nothing.
    A grid space has nothing to warm-start (every cell is run)."""
    ws = WarmStart()
    if source == "none":
        return ws
    if source != "paper":
        raise ValueError(f"warm start {source!r}: allowed paper, none (a study is seeded by seed_from_study)")
    if space.is_grid:
        ws.notes.append(f"space {space.name} is a grid: every cell is run, nothing to warm-start")
        return ws
    defaults, why = method_defaults(space)
    best = dict(space.paper.best) if space.paper is not None and space.paper.best else None
    if best is None:
        ws.notes.append(f"space {space.name} has no paper best configuration")
    else:
        filled = [k for k in space.outputs() if k not in best and defaults and k in defaults]
        best.update({k: defaults[k] for k in filled})
        label = f"paper best ({space.paper.source})"
        if filled:
            label += f", with the method's defaults for {', '.join(filled)}"
        _add_point(ws, space, best, label)
    if defaults is None:
        ws.notes.append(why)
    else:
        base = ", ".join(f"{k}={space.base[k]}" for k in ("method.name", "data.dataset") if k in space.base)
        _add_point(ws, space, defaults, f"method defaults ({base})" if base else "method defaults")
    return ws


def _study_objectives(study: optuna.Study, space: Space) -> list[str]:
    """The study's metric names; a single-objective study written before objectives were named optimised the
    space's metric (the only one there was)."""
    names = study.metric_names
    if names:
        return list(names)
    if len(study.directions) == 1:
        return [space.metric]
    return [f"objective {i}" for i in range(len(study.directions))]


def check_seed_study(space: Space, journal: Path | str, study_name: str, space_name: str | None = None,
                     metric=None, mode=None, same_dataset: bool = False) -> optuna.Study:
    """The other study of `seed_from_study`, loaded and checked; ValueError with one line if its journal or study
    does not exist, it belongs to another space (`space_name`, as its study.json says, or its parameters and
    distributions), or, with `same_dataset`, it did not optimise the same metrics (`metric`/`mode` as for
    `objectives`). The CLI can call this before Ray starts."""
    journal = Path(journal)
    if not journal.is_file():
        raise ValueError(f"warm-start study {study_name!r}: no Optuna journal at {journal}")
    if space_name is not None and space_name != space.name:
        raise ValueError(f"warm-start study {study_name!r} belongs to space {space_name!r}, not {space.name!r}")
    try:
        other = optuna.load_study(study_name=study_name, storage=journal_storage(journal))
    except KeyError:
        raise ValueError(f"warm-start study {study_name!r}: not in the journal {journal}") from None
    dists = space.distributions()
    with_params = 0
    for t in other.get_trials(deepcopy=False):
        for name, dist in t.distributions.items():
            if name not in dists:
                raise ValueError(f"warm-start study {study_name!r} belongs to another space: its parameter "
                                 f"{name!r} is not one of space {space.name!r} ({', '.join(dists)})")
            if dist != dists[name]:
                raise ValueError(f"warm-start study {study_name!r} belongs to another space: {name} is {dist}, "
                                 f"space {space.name!r} has {dists[name]}")
        with_params += bool(t.distributions)
    if not with_params:
        raise ValueError(f"warm-start study {study_name!r} has no trial with parameters")
    if same_dataset:
        ours, our_modes = objectives(space, metric, mode)
        theirs = _study_objectives(other, space)
        for m, md in zip(ours, our_modes):
            if m not in theirs:
                raise ValueError(f"warm-start study {study_name!r} optimised {','.join(theirs)}, not {m}: its values "
                                 f"cannot seed this study's history (same dataset)")
            direction = other.directions[theirs.index(m)]
            if (direction == StudyDirection.MINIMIZE) != (md == "min"):
                had = "minimised" if direction == StudyDirection.MINIMIZE else "maximised"
                raise ValueError(f"warm-start study {study_name!r} {had} {m}, this study "
                                 f"{'minimises' if md == 'min' else 'maximises'} it")
    return other


def _pareto_ranks(points: list[list[float]]) -> list[int]:
    """Non-dominated sorting (all objectives minimised): 0 for the front, 1 for the front without it, ..."""
    ranks = [-1] * len(points)
    left, rank = set(range(len(points))), 0
    while left:
        front = {i for i in left if not any(
            all(a <= b for a, b in zip(points[j], points[i])) and any(a < b for a, b in zip(points[j], points[i]))
            for j in left if j != i)}
        for i in front:
            ranks[i] = rank
        left -= front
        rank += 1
    return ranks


def _best_first(trials: list[FrozenTrial], directions) -> list[FrozenTrial]:
    """Completed trials, best first: by value with one objective; by Pareto rank, then the first objective, with
    two."""
    signs = [1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in directions]
    scored = [[s * v for s, v in zip(signs, t.values)] for t in trials]
    ranks = _pareto_ranks(scored) if len(directions) > 1 else [0] * len(trials)
    order = sorted(range(len(trials)), key=lambda i: (ranks[i], scored[i], trials[i].number))
    return [trials[i] for i in order]


def seed_from_study(space: Space, our_study: optuna.Study | None, other_journal: Path | str, other_study_name: str,
                    same_dataset: bool, top_n: int = 8, space_name: str | None = None) -> WarmStart:
    """Warm-start from a finished study of the same space (checked: `check_seed_study`).

    Same dataset: its completed trials are added to `our_study` as history (`create_trial` + `add_trial`, with the
    space's raw distributions, the values of our objectives, the user-facing values and `warm_start_from` =
    "STUDY#NUMBER" as user attributes; a trial seeded before is not added twice). The searcher's `num_samples` does
    not count them. Their values are taken as they are: they compare with ours if the other study trained for the
    same epochs. Another dataset: its values are not comparable, so its best `top_n` configurations (by its own
    objectives: value, or Pareto rank then first objective) come back as raw points to enqueue first.
    """
    if same_dataset and our_study is None:
        raise ValueError("seed_from_study: the same dataset seeds our study's history, give our_study")
    metric = mode = None
    if same_dataset:
        names = _study_objectives(our_study, space)
        metric = names
        mode = ["min" if d == StudyDirection.MINIMIZE else "max" for d in our_study.directions]
    other = check_seed_study(space, other_journal, other_study_name, space_name=space_name, metric=metric,
                             mode=mode, same_dataset=same_dataset)
    raw_names = set(space.distributions())
    done = [t for t in other.get_trials(deepcopy=False)
            if t.state == TrialState.COMPLETE and set(t.params) == raw_names]
    ws = WarmStart()
    if not done:
        ws.notes.append(f"study {other_study_name!r} has no completed trial: nothing to seed")
        return ws
    if not same_dataset:
        for t in _best_first(done, other.directions)[:max(0, int(top_n))]:
            values = ", ".join(f"{n} {v:g}" for n, v in zip(_study_objectives(other, space), t.values))
            ws.add({k: t.params[k] for k in space.raw_names()}, space.user_values(t.params),
                   f"study {other_study_name} trial {t.number} ({values})")
        return ws
    theirs = _study_objectives(other, space)
    index = [theirs.index(m) for m in metric]
    seen = {t.user_attrs.get(WARM_START_ATTR) for t in our_study.get_trials(deepcopy=False)}
    dists = space.distributions()
    for t in done:
        tag = f"{other_study_name}#{t.number}"
        if tag in seen:
            continue
        our_study.add_trial(optuna.trial.create_trial(
            state=TrialState.COMPLETE, values=[t.values[i] for i in index],
            params={k: t.params[k] for k in dists}, distributions=dists,
            user_attrs={**space.user_values(t.params), WARM_START_ATTR: tag}))
        ws.seeded += 1
    if ws.seeded:
        ws.notes.append(f"{ws.seeded} completed trials of study {other_study_name!r} seed the Optuna history")
    if ws.seeded < len(done):
        ws.notes.append(f"{len(done) - ws.seeded} trials of study {other_study_name!r} were seeded before")
    return ws


# --------------------------------------------------------------------------------------------------------------
# The study in the user's names
# --------------------------------------------------------------------------------------------------------------


def user_facing_study(space: Space, study: optuna.Study, include_seeded: bool = False) -> optuna.Study:
    """An in-memory copy of `study` whose parameters are the user-facing keys and values (`Space.user_params`, over
    `Space.user_distributions`: method.omega, method.alpha_g, critic.fc2, ... instead of method.omega__u,
    method.alpha_simplex__u1, critic.fc2__r), with the same directions, metric names, states, values, intermediate
    values, user attributes and times: what importance, parallel-coordinate and history plots are computed on.

    Trials without a full raw point (a WAITING trial not yet asked) are left out; so are trials a warm start copied
    from another study, unless `include_seeded`.
    """
    out = optuna.create_study(directions=study.directions)
    if study.metric_names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            out.set_metric_names(list(study.metric_names))
    dists: dict[str, BaseDistribution] = space.user_distributions()
    raw_names = set(space.distributions())
    for t in study.get_trials(deepcopy=False):
        if not raw_names <= set(t.params) or (WARM_START_ATTR in t.user_attrs and not include_seeded):
            continue
        params = space.user_params(t.params)
        out.add_trial(FrozenTrial(
            number=t.number, state=t.state, value=None, values=t.values, datetime_start=t.datetime_start,
            datetime_complete=t.datetime_complete, params=params, distributions={k: dists[k] for k in params},
            user_attrs=dict(t.user_attrs), system_attrs={}, intermediate_values=dict(t.intermediate_values),
            trial_id=t._trial_id))
    return out
