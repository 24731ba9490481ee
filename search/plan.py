"""The plan of a study: its arguments, and everything checked before anything starts.

`build_plan` turns the command line into a `Plan` and raises `UsageError` (reported as one line, exit 2) for any
input the study could not run with, before Ray or MLflow start; `print_plan` is what `--dry-run` shows.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from datetime import datetime
from pathlib import Path

from aikd.config import BACKBONES, ConfigError, DataConfig, TrainConfig, dataset_scale

SMOKE = {"dataset": "digits", "model": "small_cnn", "max_epochs": 2, "num_samples": 4, "max_concurrent": 2,
         "grace_period": 1}
SEARCHERS = ("tpe", "random", "nsga2", "grid")


class UsageError(Exception):
    """Bad input: reported as one line with exit code 2 before anything starts."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python search/run.py",
                                description="Run a named hyperparameter search over self-KD methods.")
    p.add_argument("--space", help="named search space (see --list-spaces)")
    p.add_argument("--list-spaces", action="store_true", help="list the registered spaces and exit")
    p.add_argument("--dataset", help="dataset (default: the space's; digits runs offline)")
    p.add_argument("--model", help="registered model name")
    p.add_argument("--data-root", help="dataset folder (default $AIKD_DATA or ~/.cache/aikd/data)")
    p.add_argument("--download", action="store_true", help="download a missing dataset once, before the trials")
    p.add_argument("--num-samples", type=int, help="trials for tpe/random searchers (grid: all cells)")
    p.add_argument("--max-epochs", type=int, help="epochs per trial (ASHA's max_t)")
    p.add_argument("--grace-period", type=int,
                   help="ASHA grace period in epochs (default: a tenth of the epochs, at least 5, at most a third)")
    p.add_argument("--reduction-factor", type=float, default=3.0, help="ASHA reduction factor (default 3)")
    p.add_argument("--searcher", choices=SEARCHERS, help="default: the space's")
    p.add_argument("--scheduler", choices=("asha", "none"), help="default: the space's")
    p.add_argument("--protocol", choices=("search", "paper"),
                   help="search: select on a validation split; paper: the whole training set and the last epoch's "
                        "test metrics, as the papers report (default: the space's; paper for the paper-table grids)")
    p.add_argument("--seeds", type=int, default=1, help="train each configuration with K seeds (1..K), "
                                                        "reported as mean +/- std")
    p.add_argument("--gpus-per-trial", help="0, a whole number, 1/k (default 0.25 with GPUs, else 0), or auto: a "
                                            "probe of one trial on the GPU picks 1/k before the trials start")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--num-gpus", type=int, help="GPUs a local Ray cluster declares (default: those detected)")
    p.add_argument("--num-cpus", type=int, help="CPUs a local Ray cluster declares (default: all)")
    p.add_argument("--max-concurrent", type=int, help="at most this many trials at once")
    p.add_argument("--no-reuse-actors", dest="reuse_actors", action="store_false",
                   help="start a fresh worker process per trial (default: a finished trial's worker takes the next "
                        "trial, saving the process start and imports, several seconds per trial)")
    p.add_argument("--max-failures", type=int, default=2, help="retries of a crashed trial from its checkpoint")
    p.add_argument("--checkpoint-every", type=int, help="checkpoint a trial every K epochs (default 1), and always at "
                                                        "ASHA's decision epochs and the last")
    p.add_argument("--address", help="join a running Ray cluster: auto, host:port or ray://host:port")
    p.add_argument("--storage", default="studies", help="study folder root (shared FS or s3://, gs:// on clusters)")
    p.add_argument("--name", help="study name (default SPACE-DATE-TIME)")
    p.add_argument("--resume", action="store_true", help="resume the study --name after an interruption")
    p.add_argument("--mlflow-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--experiment", default="aikd-search", help="MLflow experiment name")
    p.add_argument("--no-tracking", action="store_true", help="run without MLflow")
    p.add_argument("--seed", type=int, default=0, help="searcher seed")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted config override for every trial (repeatable), e.g. method.tau_p=2")
    p.add_argument("--dry-run", action="store_true", help="print the resolved plan and start nothing")
    p.add_argument("--smoke-test", action="store_true", help="digits, small model, 2 epochs, 4 trials")
    p.add_argument("--top", type=int, default=10, help="rows in the summary table")
    p.add_argument("--metric", help="what the search optimises: one reported metric, or two separated by a comma "
                                    "(a two-objective study; ASHA stops on the first). Default: the space's")
    p.add_argument("--warm-start", metavar="paper|none|STUDY",
                   help="what the searcher tries first: paper (the paper's best configuration, then the method's "
                        "defaults; the default where the space has a paper best), none, or a finished study of the "
                        "same space under --storage (its trials seed the history on the same dataset, its best "
                        "configurations go first on another)")
    p.add_argument("--mode", help="min or max for each --metric, comma-separated (default: min for errors, NLL, ECE; "
                                  "max for F1)")
    args = p.parse_args(argv)
    if args.smoke_test:
        for k, v in SMOKE.items():
            if getattr(args, k) is None:
                setattr(args, k, v)
    return args


# ------------------------------------------------------------------------------------------------------------
# Planning and validation (no Ray here)

@dataclasses.dataclass
class Plan:
    space: object
    base: dict
    searcher: str
    scheduler: str | None
    num_samples: int
    epochs: int
    grace_period: int
    seeds: list
    cpus: float
    gpus: float
    storage: str
    name: str
    study_dir: str
    tracking_uri: str | None
    configs: list  # every grid cell's config, or a sample of TPE configs (validated)
    space_options: dict
    resolved_configs: list  # the same configs as TrainConfig, defaults filled in
    metrics: list = dataclasses.field(default_factory=lambda: ["val_error"])  # the first decides for ASHA
    modes: list = dataclasses.field(default_factory=lambda: ["min"])
    warm_start: dict = dataclasses.field(default_factory=lambda: {"kind": "none"})
    checkpoint_every: int | None = None
    gpus_auto: bool = False  # --gpus-per-trial auto on a machine with a GPU: probed when the study starts
    gpus_note: str = ""
    reduction_factor: float = 3.0

    @property
    def metric(self) -> str:
        return self.metrics[0]

    @property
    def mode(self) -> str:
        return self.modes[0]


def _space_options(args) -> dict:
    opts = {}
    for item in list(args.set):
        if item.startswith("full_grid="):
            opts["full_grid"] = item.split("=", 1)[1]
            args.set.remove(item)
    if args.searcher:
        opts["searcher"] = args.searcher
    return opts


def _load_space(args, options: dict):
    from spaces import get_space, list_spaces
    if not args.space:
        raise UsageError("--space is required (one of: " + ", ".join(list_spaces()) + ")")
    try:
        return get_space(args.space, **options)
    except (KeyError, ValueError) as e:
        raise UsageError(str(e).strip("'\"")) from None


def _check_model(name: str):
    if name not in BACKBONES:
        raise UsageError(f"--model {name!r} is not a registered model; valid: {', '.join(BACKBONES)}")


def _detected_gpus(args) -> int:
    """The GPUs a local Ray will find here: counted as `ray.init` counts them (NVML, capped by
    CUDA_VISIBLE_DEVICES), which is what trials can ask for; asking torch would import it (seconds) for nothing."""
    if args.num_gpus is not None:
        return args.num_gpus
    from ray._private import accelerators
    manager = accelerators.get_accelerator_manager_for_resource("GPU")
    n = manager.get_current_node_num_accelerators()
    visible = manager.get_current_process_visible_accelerator_ids()
    return n if visible is None else min(n, len(visible))


def check_dataset(cfg: TrainConfig, download: bool):
    from aikd.data import DatasetNotFoundError, get_dataset
    d = cfg.data
    try:
        get_dataset(d.dataset, root=d.root or None, split="train", download=download)
    except DatasetNotFoundError as e:
        raise UsageError(f"{str(e).splitlines()[0]} (pass --download, or run offline with --dataset digits)") \
            from None


def _check_address_form(address: str) -> None:
    """auto, HOST:PORT (the head's GCS) or ray://HOST:PORT (the head's Ray Client server)."""
    if address != "auto":
        from search.client import parse_address
        try:
            parse_address(address)
        except ValueError as e:
            raise UsageError(f"--address {e}") from None


# (flag, smallest allowed value) of the numeric flags that the other checks do not cover
MINIMUMS = (("top", 1), ("checkpoint_every", 1), ("max_failures", 0), ("num_cpus", 1), ("num_gpus", 0),
            ("max_concurrent", 1), ("seed", 0))
TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "file", "http", "https", "databricks")
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+=@")


def _check_flags(args) -> None:
    for flag, low in MINIMUMS:
        v = getattr(args, flag, None)
        if v is not None and v < low:
            raise UsageError(f"--{flag.replace('_', '-')}={v} must be >= {low}")
    if not args.experiment.strip():
        raise UsageError(f"--experiment {args.experiment!r}: an MLflow experiment needs a non-empty name")
    if args.name is not None and (not args.name or set(args.name) - NAME_CHARS or args.name.startswith(".")):
        raise UsageError(f"--name {args.name!r}: a study name is a folder name: letters, digits and - _ . + = @, "
                         "not starting with a dot")


def _writable_folder(path: Path, what: str) -> None:
    """`path` exists as a writable folder or can be made: a temporary folder is made (and removed) in its nearest
    existing ancestor, so a dry run leaves nothing behind."""
    import tempfile
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        if not probe.is_dir():
            raise NotADirectoryError(f"{probe} is not a folder")
        Path(tempfile.mkdtemp(dir=probe, prefix=".aikd-probe-")).rmdir()
    except OSError as e:
        raise UsageError(f"{what} {path}: cannot be created or written ({e.strerror or e})") from None


def check_storage(storage: str) -> None:
    """A local folder that can be made and written, or an s3:// / gs:// URI with a bucket."""
    if "://" in storage:
        scheme, _, rest = storage.partition("://")
        if scheme not in ("s3", "gs", "gcs") or not rest.split("/")[0]:
            raise UsageError(f"--storage {storage}: a URI must be s3://BUCKET/PATH or gs://BUCKET/PATH")
        return
    _writable_folder(Path(storage), "--storage")


def check_tracking_uri(uri: str) -> None:
    """A scheme MLflow can track to; for a SQLite or file store, a folder the database can be written in."""
    scheme = uri.partition("://")[0].split("+")[0] if "://" in uri else ""
    if scheme and scheme not in TRACKING_SCHEMES:
        raise UsageError(f"--mlflow-uri {uri}: scheme {scheme!r} is not one MLflow tracks to; allowed: "
                         + ", ".join(TRACKING_SCHEMES) + " (or a local folder)")
    if scheme == "sqlite":
        _writable_folder(Path(uri[len("sqlite:///"):]).parent, "--mlflow-uri")
    elif scheme == "file" or not scheme:
        _writable_folder(Path(uri[len("file://"):] if scheme else uri), "--mlflow-uri")


def reserve_study_dir(plan: Plan, args) -> None:
    """Make the study's folder, so that studies started together never share one: a default name that another
    study took in the same second gets a suffix; a --name that names a finished or running study is refused."""
    if "://" in plan.study_dir or args.resume:
        return
    root, base = Path(plan.storage), plan.name
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1, 1000):
        name = base if i == 1 else f"{base}-{i}"
        try:
            (root / name).mkdir()
        except FileExistsError:
            if args.name:
                if (root / name / "study.json").exists():
                    raise UsageError(f"--name {name}: a study of that name is in {root}; pick another name, or "
                                     f"--resume it") from None
                return
            continue
        plan.name, plan.study_dir = name, str(root / name)
        return


def build_plan(args) -> Plan:
    from trainables.resources import ResourceError, check_cpus_per_trial, check_gpus_per_trial
    _check_flags(args)
    options = _space_options(args)
    space = _load_space(args, options)
    searcher = args.searcher or space.searcher
    if searcher == "grid" and not space.is_grid:
        raise UsageError(f"--searcher grid: space {space.name!r} has continuous parameters; allowed: tpe, random, "
                         "nsga2")
    if space.is_grid and searcher != "grid":
        raise UsageError(f"space {space.name!r} is a grid; its searcher is grid (tpe: the continuous variant, "
                         "where the space has one)")
    scheduler = space.scheduler if args.scheduler is None else (None if args.scheduler == "none" else "asha")
    protocol = args.protocol or space.protocol
    if protocol == "paper" and not space.is_grid:
        raise UsageError(f"--protocol paper: space {space.name!r} searches ({searcher}) and selects on a validation "
                         "split; the paper protocol runs a grid's cells on the whole training set (use --protocol "
                         "search)")
    if protocol == "paper" and scheduler:
        raise UsageError("--scheduler asha with --protocol paper would stop trials on test metrics (there is no "
                         "validation split); use --scheduler none, or --protocol search")
    space = space.with_protocol(protocol)  # its metric on the protocol's split: test_error under paper
    base = dict(space.base)
    if protocol == "paper":
        base["data.val_fraction"] = 0.0  # the whole training set, for the student and its phase-1 teacher
    if args.dataset:
        space_dataset = base.get("data.dataset", DataConfig().dataset)
        if dataset_scale(args.dataset) != dataset_scale(space_dataset) and not args.model:
            # the space's model is the paper's choice for its dataset's scale (CIFAR and Tiny-ImageNet alike): it
            # stays within the scale; another scale brings its own default from aikd.config (digits: a small CNN,
            # fine-grained sets: the 224 ResNet-18); --model overrides
            base.pop("model.name", None)
            base.pop("model.family", None)
        base["data.dataset"] = args.dataset
    if args.model:
        _check_model(args.model)
        base["model.name"] = args.model
        base.pop("model.family", None)
    if args.data_root:
        base["data.root"] = str(Path(args.data_root).resolve())
    if args.max_epochs is not None:
        if args.max_epochs < 1:
            raise UsageError(f"--max-epochs={args.max_epochs} must be >= 1")
        base["epochs"] = args.max_epochs
    if args.download:
        base["data.download"] = False  # the driver downloads once; trials never do
    try:
        cfg = TrainConfig.from_dict(base, overrides=args.set)
        base = {k: v for k, v in cfg.to_dict().items() if k in set(base) | {o.split("=")[0] for o in args.set}}
        resolved = cfg.resolved()
    except ConfigError as e:
        raise UsageError(str(e)) from None
    if args.seeds < 1:
        raise UsageError(f"--seeds={args.seeds} must be >= 1")
    if args.num_samples is not None and args.num_samples < 1:
        raise UsageError(f"--num-samples={args.num_samples} must be >= 1")
    if protocol == "paper" and resolved.data.val_fraction != 0:
        raise UsageError(f"data.val_fraction={resolved.data.val_fraction:g} contradicts --protocol paper (the whole "
                         "training set, data.val_fraction=0); drop it, or use --protocol search")
    from search.objectives import objectives
    try:
        metrics, modes = objectives(space, args.metric, args.mode)
    except ValueError as e:
        raise UsageError(str(e)) from None
    for m in metrics:
        if m.startswith("val_") and resolved.data.val_fraction == 0:
            raise UsageError(f"the search metric {m} needs a validation split: data.val_fraction must be > 0 "
                             "(the whole training set is --protocol paper, for grid spaces)")
    # every config the study will run must be valid: all grid cells, or a sample of the TPE space
    if space.is_grid:
        cells = space.grid_cells()
    else:
        import numpy as np
        rng = np.random.default_rng(0)
        cells = [space.sample(rng) for _ in range(32)]
    configs, resolved_configs = [], []
    for cell in cells:
        flat = {**base, **cell}  # as the trainable merges them: a cell or suggestion wins over the base
        try:
            resolved_configs.append(TrainConfig.from_dict(flat).resolved())
        except ConfigError as e:
            raise UsageError(f"{e} (in cell {cell})") from None
        configs.append(flat)
    for m in {c.model.name for c in resolved_configs}:
        _check_model(m)
    gpus_auto, gpus_note, wanted = False, "", args.gpus_per_trial
    if wanted == "auto":
        gpus_auto = bool(_detected_gpus(args))
        wanted = 0.0
        if not gpus_auto:
            gpus_note = "--gpus-per-trial auto: no GPU here, so 0 GPUs per trial (trials run on CPUs)"
    elif wanted is not None:
        try:
            wanted = float(wanted)
        except ValueError:
            raise UsageError(f"--gpus-per-trial {wanted}: allowed 0, a whole number, 1/k or auto") from None
    try:
        gpus = check_gpus_per_trial(wanted if wanted is not None
                                    else (0.25 if (_detected_gpus(args) and not args.address) else 0.0))
        cpus = check_cpus_per_trial(args.cpus_per_trial)
    except ResourceError as e:
        raise UsageError(str(e)) from None
    if gpus > 0 and not args.address and _detected_gpus(args) == 0:
        raise UsageError(f"--gpus-per-trial={gpus:g} but this machine has no GPU (trials would wait forever); "
                         "use --gpus-per-trial 0, or --address to join a cluster with GPUs")
    if args.address:
        _check_address_form(args.address)
    epochs = resolved.epochs
    grace = args.grace_period if args.grace_period is not None else default_grace_period(epochs)
    if grace < 1 or grace > epochs:
        raise UsageError(f"--grace-period={grace} must be in [1, {epochs}] (the epochs per trial)")
    if args.reduction_factor <= 1:
        raise UsageError(f"--reduction-factor={args.reduction_factor:g} must be > 1")
    num_samples = len(cells) if space.is_grid else (args.num_samples or space.num_samples)
    name = args.name or f"{space.name}-{datetime.now():%Y%m%d-%H%M%S}"
    storage = args.storage if "://" in args.storage else str(Path(args.storage).resolve())
    check_storage(storage)
    study_dir = f"{storage.rstrip('/')}/{name}"
    tracking_uri = None
    if not args.no_tracking:
        from search.store import resolve_tracking_uri
        tracking_uri = resolve_tracking_uri(args.mlflow_uri)
        check_tracking_uri(tracking_uri)
    warm = warm_start(args, space, searcher, storage, resolved.data.dataset, metrics, modes)
    return Plan(space, base, searcher, scheduler, num_samples, epochs, grace, list(range(1, args.seeds + 1)), cpus,
                gpus, storage, name, study_dir, tracking_uri, configs, options, resolved_configs, metrics, modes,
                warm, checkpoint_every=args.checkpoint_every, reduction_factor=args.reduction_factor,
                gpus_auto=gpus_auto, gpus_note=gpus_note)


def warm_start(args, space, searcher: str, storage: str, dataset: str, metrics: list, modes: list) -> dict:
    """--warm-start, checked: {"kind": "none" | "paper" | "study", ...}; a study must be a finished one of the same
    space under --storage (or a study folder's path)."""
    choice = args.warm_start
    if searcher == "grid":
        if choice not in (None, "none"):
            raise UsageError(f"--warm-start {choice}: space {space.name!r} is a grid (every cell runs)")
        return {"kind": "none"}
    if choice is None:
        return {"kind": "paper" if space.paper is not None and space.paper.best else "none"}
    if choice in ("paper", "none"):
        return {"kind": choice}
    folder = Path(choice) if Path(choice).is_dir() else Path(storage) / choice
    meta_path = folder / "study.json"
    if "://" in storage or not meta_path.exists():
        raise UsageError(f"--warm-start {choice}: no finished study of that name under {storage} (no {meta_path}); "
                         "allowed: paper, none or a study's name")
    meta = json.loads(meta_path.read_text())
    if meta.get("space") != space.name:
        raise UsageError(f"--warm-start {choice}: that study searched space {meta.get('space')!r}, not "
                         f"{space.name!r}")
    same = meta.get("base", {}).get("data.dataset", dataset) == dataset
    from search.searchers import check_seed_study
    try:
        check_seed_study(space, folder / "optuna.journal", meta["name"], space_name=meta["space"],
                         metric=metrics, mode=modes, same_dataset=same)
    except ValueError as e:
        raise UsageError(f"--warm-start {choice}: {e}") from None
    return {"kind": "study", "name": meta["name"], "journal": str(folder / "optuna.journal"), "same_dataset": same}


def _span(values) -> str:
    """One value, or the range the study's configurations take (a searched or per-cell batch size or lr)."""
    values = sorted(set(values))
    return f"{values[0]:g}" if len(values) == 1 else f"{values[0]:g} to {values[-1]:g} (varies by trial)"


def print_plan(plan: Plan, args, out=print) -> None:
    from spaces import PROTOCOL_LINES
    s = plan.space
    out(f"study       {plan.name}  ({plan.study_dir})")
    out(f"space       {s.name}: {s.description}")
    out(f"base        {json.dumps(plan.base, sort_keys=True)}")
    resolved = plan.resolved_configs
    datasets, models = sorted({c.data.dataset for c in resolved}), sorted({c.model.name for c in resolved})
    out(f"training    {', '.join(datasets)}; model {', '.join(models)}; "
        f"batch {_span(c.data.batch_size for c in resolved)}, lr {_span(c.optim.lr for c in resolved)}")
    params = ", ".join(s.outputs()) if s.params else "-"
    out(f"params      {params}")
    kind = f"{plan.num_samples} cells" if s.is_grid else f"{plan.num_samples} samples"
    objective = ", ".join(f"{m} ({d})" for m, d in zip(plan.metrics, plan.modes))
    out(f"search      {plan.searcher} ({kind}) x {len(plan.seeds)} seed(s), metric {objective}")
    out(f"protocol    {PROTOCOL_LINES[s.protocol]}")
    sched = (f"ASHA max_t={plan.epochs} grace={plan.grace_period} reduction={args.reduction_factor:g}"
             if plan.scheduler else "none")
    out(f"scheduler   {sched}; epochs per trial {plan.epochs}")
    gpus = "auto (probed at start)" if plan.gpus_auto else f"{plan.gpus:g}"
    if plan.gpus_note:
        out(plan.gpus_note)
    out(f"resources   {plan.cpus:g} CPU, {gpus} GPU per trial; max concurrent "
        f"{args.max_concurrent or 'unlimited'}; workers {'reused' if args.reuse_actors else 'fresh per trial'}; "
        f"ray {'address ' + args.address if args.address else 'local'}")
    out(f"tracking    {plan.tracking_uri or 'off'} (experiment {args.experiment})")
    for line in warm_start_lines(plan):
        out(f"warm start  {line}")


def warm_start_lines(plan: Plan) -> list[str]:
    from search.searchers import warm_start_points
    ws = plan.warm_start
    if ws["kind"] == "paper":
        return [line.removeprefix("warm start").lstrip(": ") for line in warm_start_points(plan.space).lines()]
    if ws["kind"] == "study":
        how = ("its completed trials seed the Optuna history" if ws["same_dataset"] else
               "another dataset: its best configurations are enqueued first")
        return [f"from study {ws['name']}: {how}"]
    return ["none"]


def check_data(plan: Plan, args) -> str:
    """"present", or (dry run only) why a dataset the study needs is missing; raises UsageError otherwise."""
    note = "present"
    for cfg in {json.dumps(dataclasses.asdict(c.data), sort_keys=True, default=str): c
                for c in plan.resolved_configs}.values():
        if dataset_scale(cfg.data.dataset) == "offline":  # bundled with scikit-learn, or generated: always there
            continue
        try:
            if not args.download:
                check_dataset(cfg, download=False)
        except UsageError as e:
            if not args.dry_run:
                raise
            note = f"MISSING: {e}"
    return note


def default_grace_period(epochs: int) -> int:
    """A tenth of the epochs, but at least 5 where the trial is long enough (never past a third of it): the first
    epoch or two of a short trial rank the warm-up and the first pass over the data, not the configuration, so
    ASHA at grace 1 stops trials on noise (on digits' 15 epochs it left 12 of 64 trials finished, with few
    distinct values to learn from)."""
    return max(1, min(epochs // 3, max(epochs // 10, 5)))


def decision_epochs(max_t: int, grace_period: int, reduction_factor: float) -> list[int]:
    """The epochs before max_t at which ASHA compares a trial with its rung: for each milestone
    grace_period * reduction_factor**k of Ray's single bracket, the first whole epoch that reaches it."""
    rungs = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)  # Ray's _Bracket (s = 0)
    return sorted({e for e in (math.ceil(grace_period * reduction_factor ** k) for k in range(rungs)) if e < max_t})


def study_schedule(every: int | None, epochs: int, grace_period: int | None, reduction_factor: float) -> dict:
    """The `_study` entries that tell the trials when to checkpoint . `grace_period` None: no ASHA;
    `every` None: the trials' default."""
    out = {"checkpoint_epochs": decision_epochs(epochs, grace_period, reduction_factor) if grace_period else []}
    if every is not None:
        out["checkpoint_every"] = int(every)
    return out
