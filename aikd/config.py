"""Training configuration: typed sections, dotted overrides and the per-method/per-dataset presets.

Keys are the dotted paths of SPEC.md 0.3 and are used unchanged by the search spaces and MLflow params.
Fields left at their "auto" value (0, "" or None) are filled by `TrainConfig.resolved()` from the recipe of the
method (SPEC 8.4), the per-dataset defaults below and the method presets (SPEC 3, 4.3, 5.4, 6.1, 6.2), so that an
explicit user value always wins over a preset.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any


class ConfigError(ValueError):
    """A bad configuration value; the message names the key, the value and what is allowed."""


# --------------------------------------------------------------------------------------------------------------
# Tables the rest of the project reads (one place each).

METHODS = (
    "baseline", "aikd", "aikd_no_adv", "aikd_only_progressive", "aikd_only_guide",
    "frskd", "cskd", "tfkd", "pskd",
)
# The backbones a configuration may name (`model.name`, `--model`): the names `aikd.models` registers, less AI-KD's
# critic and FRSKD's self-teacher. Kept here, free of torch, so that a study's driver checks `--model` without
# importing torch (seconds); tests/aikd/test_models.py keeps this table and the registry in step.
BACKBONES = ("densenet121", "preact_resnet18", "resnet18", "resnet18_cifar", "small_cnn", "wrn16_2")
AIKD_PRESETS = {  # (alpha_g, alpha_p, omega); a_CE = 1 - a_G - a_P  (SPEC 3)
    "aikd": (0.1, 0.3, 0.1),
    "aikd_no_adv": (0.1, 0.3, 0.0),
    "aikd_only_progressive": (0.0, 0.3, 0.0),
    "aikd_only_guide": (0.1, 0.0, 0.0),
    "baseline": (0.0, 0.0, 0.0),
}
AUGMENTS = ("none", "cutout", "mixup", "cutmix")
MIXING = ("mixup", "cutmix")

# Milestones as fractions of the epoch count, so that a shortened run keeps the recipe's shape.
RECIPES = {
    "aikd": dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, gamma=0.1,
                 milestones=(150 / 300, 225 / 300), epochs=300, warmup_epochs=0),
    "pskd": dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, gamma=0.1,
                 milestones=(150 / 300, 225 / 300), epochs=300, warmup_epochs=0),
    "frskd": dict(lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4, gamma=0.1,
                  milestones=(100 / 200, 150 / 200), epochs=200, warmup_epochs=0),
    "cskd": dict(lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4, gamma=0.1,
                 milestones=(100 / 200, 150 / 200), epochs=200, warmup_epochs=0),
    "tfkd": dict(lr=0.1, momentum=0.9, nesterov=False, weight_decay=5e-4, gamma=0.2,
                 milestones=(60 / 200, 120 / 200, 160 / 200), epochs=200, warmup_epochs=1),
}
METHOD_RECIPE = {"frskd": "frskd", "cskd": "cskd"}  # every other method uses AI-KD's recipe (SPEC 6, D19)

COARSE_DATASETS = ("cifar10", "cifar100", "tinyimagenet")
FINE_DATASETS = ("cub200", "dogs", "mit67", "aircraft", "stanford40")
OFFLINE_DATASETS = ("digits", "synthetic")
# Per-dataset defaults: model (a model family, mapped per method and input size below, or a registered name),
# epochs (0 = the recipe's), batch size and the training protocol's split (val_fraction, label_noise,
# train_per_class: 0 = every image). digits' are small so that a whole offline study finishes in minutes on 2 CPU
# cores, and harder than the clean set: on 1,295 clean training images the small CNN errs on one or two of 142
# validation images whatever the configuration, so a search sees nothing but ties. So 70 % of the training split is
# held out for validation (one image is 0.1 % of error, not 0.7 %) and a fifth of the remaining 431 training labels
# are replaced by another class: few, noisy labels, the regime where distillation's soft targets are claimed to
# help, so the knobs act. Validation and test labels stay clean. benchmarks/RESULTS.md holds the measured spread.
_SPLIT = dict(val_fraction=0.1, label_noise=0.0, train_per_class=0)
DATASET_DEFAULTS = {
    **{ds: dict(family="resnet18", epochs=0, batch_size=128, **_SPLIT) for ds in COARSE_DATASETS},
    **{ds: dict(family="resnet18", epochs=0, batch_size=32, **_SPLIT) for ds in FINE_DATASETS},
    "digits": dict(model="small_cnn", epochs=15, batch_size=64, val_fraction=0.7, label_noise=0.2,
                   train_per_class=0),
    "synthetic": dict(model="small_cnn", epochs=10, batch_size=64, **_SPLIT),
}
# Model families map to the variant each paper uses for the input size (SPEC 7.9): PreAct ResNet-18 on the coarse
# sets for AI-KD, CS-KD, PS-KD, TF-KD and the baseline, the 224 ResNet-18 on the fine-grained sets.
FAMILIES = {
    "resnet18": {"coarse": ("preact_resnet18", {}), "fine": ("resnet18", {"stem": "imagenet"})},
    "densenet121": {"coarse": ("densenet121", {"stem": "cifar"}), "fine": ("densenet121", {"stem": "imagenet"})},
}
FRSKD_PRESETS = {"cifar100": (2.0, 100.0), "cifar10": (2.0, 100.0), "tinyimagenet": (3.0, 100.0)}  # else (1, 200)
# FRSKD's own ResNet-18 on CIFAR and Tiny-ImageNet is post-activation with a CIFAR stem (SPEC 7.5).
FRSKD_FAMILY = {"resnet18": {"coarse": ("resnet18_cifar", {}), "fine": ("resnet18", {"stem": "imagenet"})}}


def dataset_scale(dataset: str) -> str | None:
    """"coarse" (CIFAR, Tiny-ImageNet: 32 px), "fine" (the 224 px fine-grained sets), "offline" (digits,
    synthetic) or None for a name that is not a dataset. A paper's model is the paper's choice for one scale."""
    for scale, names in (("coarse", COARSE_DATASETS), ("fine", FINE_DATASETS), ("offline", OFFLINE_DATASETS)):
        if dataset in names:
            return scale
    return None


# --------------------------------------------------------------------------------------------------------------
# Field helpers: each field carries its allowed values so that checks and messages come from one place.

def _f(default, allowed: str = "", check=None, choices=None):
    meta = {"allowed": allowed, "check": check, "choices": choices}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


def _pos(v):
    return v > 0


def _nonneg(v):
    return v >= 0


def _unit(v):
    return 0 <= v <= 1


@dataclass
class DataConfig:
    dataset: str = _f("digits", choices=tuple(DATASET_DEFAULTS))
    root: str = _f("", "a folder (empty: $AIKD_DATA or ~/.cache/aikd/data)")
    download: bool = _f(False)
    val_fraction: float | None = _f(None, "in [0, 0.9] (None: the dataset's default)", lambda v: 0 <= v <= 0.9)
    # the training protocol's difficulty (DATASET_DEFAULTS says why digits has its own): a fraction of the
    # training subset's labels replaced by another class (seeded by split_seed; validation and test stay clean),
    # and at most this many training images per class (0: all)
    label_noise: float | None = _f(None, "in [0, 0.9) (None: the dataset's default)", lambda v: 0 <= v < 0.9)
    train_per_class: int | None = _f(None, ">= 0 (0: every training image; None: the dataset's default)", _nonneg)
    split_seed: int = _f(0, ">= 0", _nonneg)
    batch_size: int = _f(0, ">= 0 (0: the dataset's default)", _nonneg)
    eval_batch_size: int = _f(500, "> 0", _pos)
    augment: str = _f("none", choices=AUGMENTS)
    cutout_size: int = _f(0, ">= 0 (0: 16 px scaled with the input side)", _nonneg)
    mix_alpha: float = _f(0.0, ">= 0 (0: the method's default)", _nonneg)
    tiny_size: int = _f(32, "32 or 64", lambda v: v in (32, 64))
    num_workers: int = _f(2, ">= 0", _nonneg)
    synthetic_classes: int = _f(10, ">= 2", lambda v: v >= 2)


@dataclass
class ModelConfig:
    name: str = _f("", "a registered model (empty: the family's variant, else the dataset's default)")
    # the paper's variant per method and input size (SPEC 7.9), used when `name` is empty: `name` always wins
    family: str = _f("", choices=("", "resnet18", "densenet121"))
    stem: str = _f("auto", choices=("auto", "cifar", "imagenet"))


@dataclass
class MethodConfig:
    name: str = _f("baseline", choices=METHODS)
    # AI-KD (SPEC 2.7); None = the preset of `name`
    alpha_g: float | None = _f(None, "in [0, 1] with alpha_g + alpha_p <= 1", _unit)
    alpha_p: float | None = _f(None, "in [0, 1] with alpha_g + alpha_p <= 1", _unit)
    tau_g: float = _f(3.0, "> 0", _pos)
    tau_p: float = _f(1.0, "> 0", _pos)
    omega: float | None = _f(None, "in [0, 10]", lambda v: 0 <= v <= 10)
    prev_mode: str = _f("snapshot", choices=("snapshot", "cache"))
    prev_epoch0: str = _f("onehot", choices=("onehot", "skip", "init"))
    # FRSKD (SPEC 4), TF-KD (6.1) and CS-KD (5.4) share `alpha` / `temperature` names; None = per-method preset
    alpha: float | None = _f(None, ">= 0", _nonneg)
    beta: float | None = _f(None, ">= 0", _nonneg)
    width: int = _f(2, ">= 1", lambda v: v >= 1)
    depth: int = _f(2, ">= 1", lambda v: v >= 1)
    teacher_arch: str = _f("bifpnc", choices=("bifpnc", "bifpn"))
    channels: int = _f(128, "> 0", _pos)
    temperature: float | None = _f(None, "> 0", _pos)
    lambda_cls: float | None = _f(None, ">= 0", _nonneg)
    variant: str = _f("self", choices=("self", "reg"))
    multiplier: float | None = _f(None, ">= 0", _nonneg)
    alpha_T: float = _f(0.8, "in [0, 1]", _unit)


@dataclass
class CriticConfig:
    fc1: int = _f(64, "a positive int", _pos)
    fc2: int = _f(32, "a positive int", _pos)
    head: str = _f("leaky_mean", choices=("leaky_mean", "mean", "sum", "linear"))  # D6, aikd/models/critic.py
    input: str = _f("logits", choices=("logits", "probs"))
    norm: str = _f("batchnorm", choices=("batchnorm", "layernorm", "none"))
    bn_mode: str = _f("joint", choices=("joint", "separate"))  # D8, aikd/models/critic.py
    leaky_slope: float = _f(0.2, "in (0, 1)", lambda v: 0 < v < 1)
    lr: float = _f(1e-4, "> 0", _pos)
    betas: tuple = _f((0.0, 0.9), "two numbers in [0, 1)", lambda v: len(v) == 2 and all(0 <= b < 1 for b in v))
    lr_schedule: str = _f("constant", choices=("constant", "follow_student"))
    n_critic: int = _f(1, "an int >= 1", lambda v: v >= 1)
    gp_weight: float = _f(10.0, ">= 0", _nonneg)


@dataclass
class OptimConfig:
    recipe: str = _f("", "empty (the method's recipe) or one of " + ", ".join(RECIPES),
                     lambda v: v == "" or v in RECIPES)
    lr: float = _f(0.0, "> 0 (0: the recipe's)", _nonneg)
    momentum: float | None = _f(None, "in [0, 1)", lambda v: 0 <= v < 1)
    nesterov: bool | None = _f(None)
    weight_decay: float | None = _f(None, ">= 0", _nonneg)
    milestones: tuple = _f((), "epoch numbers (empty: the recipe's, scaled to the epoch count)",
                           lambda v: all(isinstance(m, int) and m >= 0 for m in v))
    gamma: float = _f(0.0, "in [0, 1] (0: the recipe's)", _unit)
    warmup_epochs: int | None = _f(None, ">= 0", _nonneg)


@dataclass
class TeacherConfig:
    seed: int = _f(1000, ">= 0 and not the student's seed", _nonneg)
    root: str = _f("", "a folder (empty: $AIKD_TEACHERS or ~/.cache/aikd/teachers)")


@dataclass
class MetricsConfig:
    ece_bins: int = _f(15, ">= 1", lambda v: v >= 1)


@dataclass
class DebugConfig:
    """Fault injection for the fault-tolerance tests; harmless at the defaults."""
    crash_at_epoch: int = _f(-1, "an epoch number (-1: never)")
    crash_marker: str = _f("", "a file path; the crash happens only while it does not exist")
    crash_kind: str = _f("raise", "raise: an InjectedCrash; kill: the process sends itself SIGKILL (a dying worker)",
                         choices=("raise", "kill"))
    nan_at_epoch: int = _f(-1, "an epoch number (-1: never)")
    nan_marker: str = _f("", "a file path; if set, only the run that creates it (atomically) goes NaN")


SECTIONS = {
    "data": DataConfig, "model": ModelConfig, "method": MethodConfig, "critic": CriticConfig,
    "optim": OptimConfig, "teacher": TeacherConfig, "metrics": MetricsConfig, "debug": DebugConfig,
}
TOP_LEVEL = {"epochs", "seed", "device"}


@dataclass
class TrainConfig:
    epochs: int = _f(0, ">= 1 (0: the dataset's or recipe's default)", _nonneg)
    seed: int = _f(1, ">= 0", _nonneg)
    device: str = _f("auto", choices=("auto", "cpu", "cuda"))
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)

    # ---- construction ------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict | None = None, overrides: list[str] | dict | None = None) -> TrainConfig:
        """Build from a flat (dotted) or nested dict, then apply `key=value` overrides; validates everything."""
        cfg = cls()
        for key, value in flatten(d or {}).items():
            cfg.set(key, value)
        if isinstance(overrides, dict):
            overrides = [f"{k}={v}" for k, v in overrides.items()]
        for item in overrides or ():
            key, value = parse_override(item)
            cfg.set(key, value)
        cfg.validate()
        return cfg

    def set(self, key: str, value: Any) -> None:
        section, name, f = _lookup(key)
        target = self if section is None else getattr(self, section)
        setattr(target, name, _coerce(key, f, value))

    def to_dict(self) -> dict:
        """Flat dotted dict (the MLflow params and Ray trial config use this form)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                for g in fields(value):
                    out[f"{f.name}.{g.name}"] = _plain(getattr(value, g.name))
            else:
                out[f.name] = _plain(value)
        return out

    def copy(self) -> TrainConfig:
        return TrainConfig.from_dict(self.to_dict())

    # ---- checks ------------------------------------------------------------------------------------------------
    def validate(self) -> None:
        m = self.method
        if m.alpha_g is not None and m.alpha_p is not None and m.alpha_g + m.alpha_p > 1 + 1e-9:
            raise ConfigError(
                f"method.alpha_g + method.alpha_p = {m.alpha_g + m.alpha_p:g}: the weights a_CE = 1 - a_G - a_P, "
                "a_G and a_P must sum to one, so alpha_g + alpha_p must be <= 1")
        mixing = self.data.augment in MIXING
        if mixing and m.name in ("pskd", "cskd"):
            raise ConfigError(f"data.augment={self.data.augment} is not allowed with method.name={m.name}: "
                              "it needs one sample index per image (allowed: none, cutout)")
        if mixing and is_aikd(m.name) and m.prev_mode == "cache":
            raise ConfigError(f"data.augment={self.data.augment} is not allowed with method.prev_mode=cache: "
                              "a mixed image has no single index (use prev_mode=snapshot or augment none/cutout)")
        if is_aikd(m.name) and m.prev_mode == "cache" and m.prev_epoch0 == "init":
            raise ConfigError("method.prev_epoch0=init needs method.prev_mode=snapshot (the cache holds no "
                              "predictions of the untrained model); allowed with cache: onehot, skip")
        if self.teacher.seed == self.seed and needs_teacher(self):
            raise ConfigError(f"teacher.seed={self.teacher.seed} equals seed={self.seed}: the phase-1 teacher must "
                              "not share the student's seed (allowed: any other int)")
        if self.critic.fc1 <= 0 or self.critic.fc2 <= 0:
            raise ConfigError("critic.fc1 and critic.fc2 must be positive ints")

    # ---- resolution of "auto" values ---------------------------------------------------------------------------
    def resolved(self) -> TrainConfig:
        """A copy with every auto value filled from recipe, dataset defaults and method presets."""
        c = self.copy()
        ds = c.data.dataset
        dd = DATASET_DEFAULTS[ds]
        m = c.method
        if not c.optim.recipe:
            c.optim.recipe = METHOD_RECIPE.get(m.name, "aikd")
        r = RECIPES[c.optim.recipe]
        if not c.epochs:
            c.epochs = dd["epochs"] or r["epochs"]
        if not c.data.batch_size:
            c.data.batch_size = dd["batch_size"]
        for key in ("val_fraction", "label_noise", "train_per_class"):
            if getattr(c.data, key) is None:
                setattr(c.data, key, dd[key])
        o = c.optim
        o.lr = o.lr or r["lr"]
        o.momentum = r["momentum"] if o.momentum is None else o.momentum
        o.nesterov = r["nesterov"] if o.nesterov is None else o.nesterov
        o.weight_decay = r["weight_decay"] if o.weight_decay is None else o.weight_decay
        o.gamma = o.gamma or r["gamma"]
        o.warmup_epochs = r["warmup_epochs"] if o.warmup_epochs is None else o.warmup_epochs
        if not o.milestones:
            o.milestones = tuple(sorted({int(round(f * c.epochs)) for f in r["milestones"]}))
        # model: an explicit model.name wins; else a family (given, or the dataset's default) maps to the paper's
        # variant for the method and the input size (SPEC 7.9)
        scale = "fine" if ds in FINE_DATASETS else "coarse"
        family = "" if c.model.name else (c.model.family or dd.get("family", ""))
        if family:
            families = FRSKD_FAMILY if (m.name == "frskd" and family in FRSKD_FAMILY) else FAMILIES
            c.model.name, kw = families[family][scale]
            c.model.stem = kw.get("stem", "auto")
        elif not c.model.name:
            c.model.name = dd["model"]
        if c.model.stem == "auto":
            c.model.stem = "imagenet" if scale == "fine" else "cifar"
        # method presets
        if m.name in AIKD_PRESETS:
            g, p, w = AIKD_PRESETS[m.name]
            m.alpha_g = g if m.alpha_g is None else m.alpha_g
            m.alpha_p = p if m.alpha_p is None else m.alpha_p
            m.omega = w if m.omega is None else m.omega
        elif m.name == "frskd":
            a, b = FRSKD_PRESETS.get(ds, (1.0, 200.0))
            m.alpha = a if m.alpha is None else m.alpha
            m.beta = b if m.beta is None else m.beta
            m.temperature = 4.0 if m.temperature is None else m.temperature
        elif m.name == "cskd":
            m.temperature = 4.0 if m.temperature is None else m.temperature
            m.lambda_cls = (3.0 if ds in FINE_DATASETS else 1.0) if m.lambda_cls is None else m.lambda_cls
        elif m.name == "tfkd":
            dense = "densenet" in c.model.name
            if m.variant == "self":
                a, t, mult = (0.9, 20.0, 50.0) if dense else (0.95, 6.0, 50.0)
            else:
                a, t, mult = (0.1, 40.0, 100.0) if dense else (0.1, 20.0, 100.0)
            m.alpha = a if m.alpha is None else m.alpha
            m.temperature = t if m.temperature is None else m.temperature
            m.multiplier = mult if m.multiplier is None else m.multiplier
        if c.data.mix_alpha == 0:
            fine = ds in FINE_DATASETS
            c.data.mix_alpha = 1.0 if (m.name != "frskd" or c.data.augment == "cutmix") else (0.3 if fine else 0.2)
        c.validate()
        return c

    def teacher_config(self) -> TrainConfig:
        """The phase-1 recipe: the same data, model and optimiser, plain CE, standard augmentation (SPEC 2.1)."""
        c = self.resolved().copy()
        c.method = MethodConfig(name="baseline")
        c.critic = CriticConfig()
        c.data.augment = "none"
        c.data.cutout_size = 0
        c.data.mix_alpha = 0.0
        c.seed = self.teacher.seed
        c.debug = DebugConfig()
        return c.resolved()


# --------------------------------------------------------------------------------------------------------------
def is_aikd(method_name: str) -> bool:
    return method_name.startswith("aikd") or method_name == "baseline"


def needs_teacher(cfg: TrainConfig) -> bool:
    """Whether a phase-1 model S_sup is needed: AI-KD with a guide or adversary, or TF-KD's self variant."""
    m = cfg.method
    if m.name == "tfkd":
        return m.variant == "self"
    if m.name in AIKD_PRESETS:
        g, _, w = AIKD_PRESETS[m.name]
        g = g if m.alpha_g is None else m.alpha_g
        w = w if m.omega is None else m.omega
        return g > 0 or w > 0
    return False


def all_keys() -> list[str]:
    keys = sorted(TOP_LEVEL)
    for section, cls in SECTIONS.items():
        keys += [f"{section}.{f.name}" for f in fields(cls)]
    return keys


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def parse_override(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value (e.g. method.omega=0.05)")
    key, value = item.split("=", 1)
    return key.strip(), value.strip()


def _lookup(key: str):
    parts = key.split(".")
    if len(parts) == 1 and key in TOP_LEVEL:
        return None, key, next(f for f in fields(TrainConfig) if f.name == key)
    if len(parts) == 2 and parts[0] in SECTIONS:
        for f in fields(SECTIONS[parts[0]]):
            if f.name == parts[1]:
                return parts[0], parts[1], f
    near = difflib.get_close_matches(key, all_keys(), n=1, cutoff=0.5)
    hint = f" (did you mean {near[0]}?)" if near else " (see `python -m aikd.train --list-keys`)"
    raise ConfigError(f"unknown config key {key!r}{hint}")


def _allowed(f) -> str:
    if f.metadata.get("choices"):
        return "one of " + ", ".join(map(str, f.metadata["choices"]))
    return f.metadata.get("allowed") or str(f.type)


def _coerce(key: str, f, value: Any):
    """Convert `value` (possibly a command-line string) to the field's type and check its range."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    optional = "None" in kind
    try:
        if optional and (value is None or (isinstance(value, str) and value.lower() in ("none", "null", ""))):
            return None
        if kind.startswith("bool"):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                value = value.lower() in ("true", "1", "yes")
            elif not isinstance(value, (bool, int)) or value not in (0, 1):
                raise ValueError
            out = bool(value)
        elif kind.startswith("int"):
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                value = int(value)
            out = int(value)
        elif kind.startswith("float"):
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
            if not math.isfinite(out):
                raise ValueError
        elif kind.startswith("tuple"):
            if isinstance(value, str):
                text = value.strip().strip("()[]")
                value = [json.loads(x) for x in text.split(",") if x.strip()]
            out = tuple(value)
            if key == "optim.milestones":
                if any(isinstance(x, float) and not x.is_integer() for x in out):
                    raise ValueError
                out = tuple(int(x) for x in out)
            else:
                out = tuple(float(x) for x in out)
        else:
            if not isinstance(value, str):
                raise ValueError
            out = value
    except (ValueError, TypeError, json.JSONDecodeError):
        raise ConfigError(f"{key}={value!r} has the wrong type: expected {kind.replace(' | None', '')} "
                          f"({_allowed(f)})") from None
    choices = f.metadata.get("choices")
    if choices and out not in choices:
        raise ConfigError(f"{key}={out!r} is not allowed: {_allowed(f)}")
    check = f.metadata.get("check")
    if check is not None and out is not None and not check(out):
        raise ConfigError(f"{key}={value!r} is out of range: allowed {_allowed(f)}")
    return out


def _plain(v):
    return list(v) if isinstance(v, tuple) else v
