"""Search-space building blocks: parameter types, the `Paper` record and the `Space` record (SPEC 11.1-11.2).

Everything here is plain data plus pure mapping functions, so a space can be inspected, sampled and tested without
Ray, MLflow or the training library. Optuna is used only for its distribution types and the define-by-run trial.

Raw vs mapped values: a parameter may suggest *raw* variables that are not config keys (the zlog uniform
`method.omega__u`, the simplex uniforms, the width ratio `critic.fc2__r`, the label of a joint grid cell) and maps
them to *dotted config overrides* (`method.omega`, `method.alpha_g`, ...). Raw names that are not config keys always
contain `RAW_SEP` ("__"); a raw name without it is the config key itself and its raw value is the config value.

User-facing values go both ways: `Space.raw_of` inverts `map_raw` (a configuration a person wrote, such as the paper's
best, becomes the raw point an Optuna study can enqueue), `Space.user_values` gives what a person reads for a raw
point (the config keys plus a simplex's implied weight) and `Space.user_distributions` the ranges of those values, so
that importance and parallel-coordinate plots can be computed over the names the user asked about.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

SEARCHERS = ("tpe", "grid", "random", "nsga2")
SCHEDULERS = ("asha", None)
MODES = ("min", "max")
RAW_SEP = "__"
# How a study trains and what it reports (SPEC 8.3). "search": a validation hold-out (data.val_fraction) for selection,
# test metrics logged only. "paper": the papers' protocol, for comparing with their tables: the whole training set
# (data.val_fraction = 0, also for the phase-1 teacher) and the last epoch's test metrics; no validation split
# exists, so the study's metric is a test metric and nothing may select or stop on it (grid spaces, no scheduler).
PROTOCOLS = ("search", "paper")
PROTOCOL_LINES = {
    "search": "search (validation split data.val_fraction for selection; test metrics logged, never optimised)",
    "paper": "paper (whole training set, last-epoch test metrics)",
}
PAPER_PROTOCOL = {"protocol": "paper", "metric": "test_error"}  # the Space fields of a paper-table grid

_PRIMITIVE = (type(None), bool, int, float, str)


# --------------------------------------------------------------------------------------------------------------
# Pure mapping functions (public: tests and the report use them directly)
# --------------------------------------------------------------------------------------------------------------


def zlog_value(u, low: float, high: float, p_zero: float):
    """Zero-inflated log-uniform (SPEC 11.2): 0 if u < p_zero, else log-uniform on [low, high].

    One continuous variable, so TPE models it directly; works on scalars (returns float) and numpy arrays.
    """
    if not (0 < low < high):
        raise ValueError(f"zlog needs 0 < low < high, got low={low}, high={high}")
    if not (0 <= p_zero < 1):
        raise ValueError(f"zlog needs 0 <= p_zero < 1, got {p_zero}")
    u_arr = np.asarray(u, dtype=float)
    t = np.clip((u_arr - p_zero) / (1.0 - p_zero), 0.0, 1.0)
    value = np.where(u_arr < p_zero, 0.0, low * (high / low) ** t)
    return float(value) if value.ndim == 0 else value


def simplex_from_uniforms(u1, u2, lower=(0.5, 0.0, 0.0)):
    """Map two uniforms to a point of the 3-simplex with lower bounds (SPEC 11.2).

    d1 = 1 - sqrt(1 - u1) (Beta(1, 2) inverse CDF), d2 = (1 - d1) * u2, d3 = 1 - d1 - d2, so d ~ Dirichlet(1, 1, 1);
    alpha_i = l_i + (1 - sum l) * d_i. Valid by construction (no rejection). Scalars give a tuple of floats, arrays
    a tuple of arrays.
    """
    lower = tuple(float(x) for x in lower)
    if len(lower) != 3:
        raise ValueError(f"simplex_from_uniforms handles three components, got lower={lower}")
    free = 1.0 - sum(lower)
    if free <= 0 or min(lower) < 0:
        raise ValueError(f"simplex lower bounds must be >= 0 and sum to < 1, got {lower}")
    a1 = np.asarray(u1, dtype=float)
    a2 = np.asarray(u2, dtype=float)
    d1 = 1.0 - np.sqrt(np.clip(1.0 - a1, 0.0, 1.0))
    d2 = (1.0 - d1) * a2
    d3 = np.maximum(1.0 - d1 - d2, 0.0)  # only guards a -1e-17 rounding residue
    out = tuple(lo + free * d for lo, d in zip(lower, (d1, d2, d3)))
    if np.ndim(out[0]) == 0:
        return tuple(float(x) for x in out)
    return out


def ratio_value(of_value: int, ratio: int) -> int:
    """Critic width fc2 = fc1 // r (SPEC 11.2): fixed choice sets for TPE and fc2 < fc1 for r >= 2."""
    return int(of_value) // int(ratio)


def protocol_metric(metric: str, protocol: str) -> str:
    """The same metric on the split a protocol has: val_X under "search", test_X under "paper" (no val split)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} is not one of {PROTOCOLS}")
    src, dst = ("val_", "test_") if protocol == "paper" else ("test_", "val_")
    return dst + metric[len(src):] if metric.startswith(src) else metric


def freeze(value: Any) -> Any:
    """Hashable, JSON-like normal form of a config value: lists become tuples, numpy scalars Python scalars."""
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def cell_key(cell: Mapping[str, Any]) -> tuple:
    """Order-independent hashable key of a grid cell (dict of dotted overrides)."""
    return tuple(sorted((k, freeze(v)) for k, v in cell.items()))


def _close(a: Any, b: Any) -> bool:
    a, b = freeze(a), freeze(b)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def same_value(a: Any, b: Any) -> bool:
    """Whether two config values are the same (floats to 1e-9 relative, tuples element-wise, True is not 1)."""
    return _close(a, b)


def _label(value: Any) -> str:
    """Optuna categorical choices must be primitives; a tuple value is represented by a readable label."""
    if isinstance(value, tuple):
        return ",".join(_label(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


class InexpressibleError(ValueError):
    """A configuration that a space cannot produce (a value out of range, off the simplex, not a choice, missing).

    `keys` names the offending dotted keys, so that a caller can say which ones (e.g. a warm start that is skipped)."""

    def __init__(self, message: str, keys: tuple[str, ...] = ()):
        super().__init__(message)
        self.keys = tuple(keys)


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InexpressibleError(f"{key}={value!r} is not a number", (key,))
    return float(value)


def _in_range(key: str, value: Any, low: float, high: float) -> float:
    """`value` as a float in [low, high]; a value outside by rounding only is put on the bound."""
    v = _number(key, value)
    if _close(v, low):
        return float(low)
    if _close(v, high):
        return float(high)
    if not low <= v <= high:
        raise InexpressibleError(f"{key}={value!r} is outside [{low:g}, {high:g}]", (key,))
    return v


def display_value(value: Any) -> Any:
    """A float rounded to 12 significant digits (0.1 rather than the 0.10000000000000006 a round trip through the
    raw coordinates gives), for what a person reads; other values unchanged (tuples element-wise)."""
    value = freeze(value)
    if isinstance(value, tuple):
        return tuple(display_value(v) for v in value)
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.12g}")
    return value


def _need(values: Mapping[str, Any], key: str) -> Any:
    if key not in values:
        raise InexpressibleError(f"{key} is not given", (key,))
    return values[key]


# --------------------------------------------------------------------------------------------------------------
# Raw suggestion / sampling for any optuna distribution
# --------------------------------------------------------------------------------------------------------------


def suggest_raw(trial: optuna.trial.BaseTrial, name: str, dist: BaseDistribution) -> Any:
    """Suggest one raw variable through the public define-by-run API."""
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    raise TypeError(f"unsupported distribution {dist!r}")


def sample_raw(rng: np.random.Generator, dist: BaseDistribution) -> Any:
    """Plain random draw from an optuna distribution (uniforms in [low, high), ints inclusive)."""
    if isinstance(dist, FloatDistribution):
        if dist.log:
            return float(math.exp(rng.uniform(math.log(dist.low), math.log(dist.high))))
        return float(dist.low + (dist.high - dist.low) * rng.random())
    if isinstance(dist, IntDistribution):
        if dist.log or dist.step != 1:
            raise NotImplementedError("only plain integer ranges are sampled")
        return int(rng.integers(dist.low, dist.high + 1))
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[int(rng.integers(len(dist.choices)))]
    raise TypeError(f"unsupported distribution {dist!r}")


# --------------------------------------------------------------------------------------------------------------
# Parameter types (SPEC 11.2)
# --------------------------------------------------------------------------------------------------------------


class Param:
    """Common protocol: raw optuna distributions in, dotted config overrides out.

    Subclasses define `outputs` (config keys written), `distributions()` and `map(raw, context)`; `context` holds the
    overrides resolved so far (and the space's base), which `Ratio` needs for the width it divides.
    """

    @property
    def outputs(self) -> tuple[str, ...]:
        raise NotImplementedError

    def distributions(self) -> dict[str, BaseDistribution]:
        raise NotImplementedError

    def map(self, raw: Mapping[str, Any], context: Mapping[str, Any] | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def raw_of(self, values: Mapping[str, Any], context: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Inverse of `map`: raw values whose mapping gives `values` (InexpressibleError if none does)."""
        raise NotImplementedError

    def user_values(self, raw: Mapping[str, Any], context: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """What a person reads for this raw point: `map`'s values (a Simplex adds its implied weight)."""
        return self.map(raw, context)

    def user_distributions(self, values_of) -> dict[str, BaseDistribution]:
        """Optuna distributions over the user-facing values of `outputs`. `values_of(key)` gives the finite set of
        values another key can take (or None), which `Ratio` needs for the widths it divides."""
        raise NotImplementedError

    def suggest(self, trial: optuna.trial.BaseTrial, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
        raw = {name: suggest_raw(trial, name, dist) for name, dist in self.distributions().items()}
        return self.map(raw, context)

    def sample(self, rng: np.random.Generator, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
        raw = {name: sample_raw(rng, dist) for name, dist in self.distributions().items()}
        return self.map(raw, context)


class _KeyParam(Param):
    """A parameter that writes one config key, `key`, from one raw variable `raw_name`: the key itself, or where the
    raw value is not the config value, the key with `RAW_SEP` and the class's `raw_suffix` (module docstring)."""

    raw_suffix = ""

    @property
    def outputs(self):
        return (self.key,)

    @property
    def raw_name(self) -> str:
        return f"{self.key}{RAW_SEP}{self.raw_suffix}" if self.raw_suffix else self.key


@dataclass(frozen=True)
class Float(_KeyParam):
    """Uniform or log-uniform float."""

    key: str
    low: float
    high: float
    log: bool = False

    def __post_init__(self):
        if not self.low < self.high or (self.log and self.low <= 0):
            raise ValueError(f"{self.key}: bad float range [{self.low}, {self.high}] (log={self.log})")

    def distributions(self):
        return {self.key: FloatDistribution(float(self.low), float(self.high), log=self.log)}

    def map(self, raw, context=None):
        return {self.key: float(raw[self.key])}

    def raw_of(self, values, context=None):
        return {self.key: _in_range(self.key, _need(values, self.key), self.low, self.high)}

    def user_distributions(self, values_of):
        return self.distributions()


@dataclass(frozen=True)
class Int(_KeyParam):
    """Integer uniform on [low, high], both ends included."""

    key: str
    low: int
    high: int

    def __post_init__(self):
        if not self.low <= self.high:
            raise ValueError(f"{self.key}: bad int range [{self.low}, {self.high}]")

    def distributions(self):
        return {self.key: IntDistribution(int(self.low), int(self.high))}

    def map(self, raw, context=None):
        return {self.key: int(raw[self.key])}

    def raw_of(self, values, context=None):
        v = _in_range(self.key, _need(values, self.key), self.low, self.high)
        if v != int(v):
            raise InexpressibleError(f"{self.key}={values[self.key]!r} is not an integer", (self.key,))
        return {self.key: int(v)}

    def user_distributions(self, values_of):
        return self.distributions()


@dataclass(frozen=True)
class Categorical(Param):
    """Finite choice set. `key` may be a tuple of keys, then every choice is a tuple with one value per key
    (a joint cell such as (fc1, fc2)). Non-primitive choices are suggested through string labels."""

    key: str | tuple[str, ...]
    choices: tuple

    def __post_init__(self):
        keys = (self.key,) if isinstance(self.key, str) else tuple(self.key)
        object.__setattr__(self, "key", keys[0] if len(keys) == 1 and isinstance(self.key, str) else keys)
        object.__setattr__(self, "choices", tuple(freeze(c) for c in self.choices))
        if not self.choices:
            raise ValueError(f"{self.key}: empty choice set")
        if len(keys) > 1 and not all(isinstance(c, tuple) and len(c) == len(keys) for c in self.choices):
            raise ValueError(f"{self.key}: every choice must be a tuple of {len(keys)} values")
        if len(set(self.raw_choices)) != len(self.choices):
            raise ValueError(f"{self.key}: duplicate choices {self.choices}")

    @property
    def outputs(self):
        return (self.key,) if isinstance(self.key, str) else self.key

    @property
    def raw_name(self) -> str:
        return self.key if isinstance(self.key, str) else "+".join(self.key) + RAW_SEP + "cell"

    @property
    def raw_choices(self) -> tuple:
        """Optuna-storable choices: the values themselves when primitive, else string labels."""
        if isinstance(self.key, str) and all(isinstance(c, _PRIMITIVE) for c in self.choices):
            return self.choices
        return tuple(_label(c) for c in self.choices)

    def distributions(self):
        return {self.raw_name: CategoricalDistribution(self.raw_choices)}

    def value_of(self, raw_choice: Any) -> Any:
        pairs = list(zip(self.raw_choices, self.choices))
        for raw, value in pairs:  # exact first, so that True and 1 or 1 and 1.0 stay distinct where both occur
            if type(raw) is type(raw_choice) and raw == raw_choice:
                return value
        for raw, value in pairs:
            if _close(raw, raw_choice):
                return value
        raise ValueError(f"{self.raw_name}: {raw_choice!r} is not one of {self.raw_choices}")

    def map(self, raw, context=None):
        value = self.value_of(raw[self.raw_name])
        if isinstance(self.key, str):
            return {self.key: value}
        return dict(zip(self.key, value))

    def raw_of(self, values, context=None):
        if isinstance(self.key, str):
            wanted = freeze(_need(values, self.key))
        else:
            wanted = tuple(freeze(_need(values, k)) for k in self.key)
        pairs = list(zip(self.raw_choices, self.choices))
        for exact in (True, False):  # exact types first, as in value_of
            for raw, choice in pairs:
                if (type(choice) is type(wanted) and choice == wanted) if exact else _close(choice, wanted):
                    return {self.raw_name: raw}
        keys = self.outputs
        raise InexpressibleError(f"{'+'.join(keys)}={wanted!r} is not one of {self.choices}", keys)

    def values_of(self, key: str) -> tuple:
        """The distinct values one output key takes, in choice order."""
        i = self.outputs.index(key)
        seen: list = []
        for c in self.choices:
            v = c if isinstance(self.key, str) else c[i]
            if not any(type(v) is type(s) and v == s for s in seen):
                seen.append(v)
        return tuple(seen)

    def user_distributions(self, values_of):
        out = {}
        for key in self.outputs:
            vals = self.values_of(key)
            if all(isinstance(v, _PRIMITIVE) for v in vals):
                out[key] = CategoricalDistribution(vals)
            else:  # tuples (e.g. critic.betas) are shown by their labels, as the raw choices are
                out[key] = CategoricalDistribution(tuple(_label(v) for v in vals))
        return out

    def cells(self) -> list[dict[str, Any]]:
        """Each choice as a dict of overrides, in the listed order."""
        if isinstance(self.key, str):
            return [{self.key: c} for c in self.choices]
        return [dict(zip(self.key, c)) for c in self.choices]


class Grid(Categorical):
    """A categorical that a grid search enumerates (Space.grid_cells takes the product over Grid params).

    `Grid(key, values)`; as for Categorical, a tuple `key` makes each value a joint cell, which is how non-product
    grids (the 13 temperature cells, the 15 critic widths with fc2 < fc1) are expressed."""

    def __init__(self, key, values):
        super().__init__(key, tuple(values))

    @property
    def values(self) -> tuple:
        return self.choices


@dataclass(frozen=True)
class ZeroInflatedLogUniform(_KeyParam):
    """omega ~ zlog(low, high, p_zero): raw `f"{key}__u"` uniform on [0, 1], mapped by `zlog_value`."""

    key: str
    low: float
    high: float
    p_zero: float
    raw_suffix = "u"

    def __post_init__(self):
        zlog_value(0.5, self.low, self.high, self.p_zero)  # validates the arguments

    def distributions(self):
        return {self.raw_name: FloatDistribution(0.0, 1.0)}

    def map(self, raw, context=None):
        return {self.key: zlog_value(raw[self.raw_name], self.low, self.high, self.p_zero)}

    def raw_of(self, values, context=None):
        """0 -> u = p_zero / 2, the middle of the zero mass; v in [low, high] -> u = p_zero + (1 - p_zero) t with
        t = log(v / low) / log(high / low)."""
        v = _number(self.key, _need(values, self.key))
        if v == 0:
            if self.p_zero == 0:
                raise InexpressibleError(f"{self.key}=0 needs p_zero > 0 (it is 0)", (self.key,))
            return {self.raw_name: self.p_zero / 2}
        v = _in_range(self.key, v, self.low, self.high)
        t = math.log(v / self.low) / math.log(self.high / self.low)
        return {self.raw_name: min(1.0, max(self.p_zero, self.p_zero + (1.0 - self.p_zero) * t))}

    def user_distributions(self, values_of):
        return {self.key: FloatDistribution(0.0, float(self.high))}  # no log axis: 0 is a value


@dataclass(frozen=True)
class Simplex(Param):
    """Weights on a simplex with lower bounds (SPEC 11.2), from two raw uniforms.

    `keys` names the three components, `lower` their bounds; only `store` goes into the config (AI-KD stores
    alpha_g and alpha_p; alpha_ce is implied as 1 - alpha_g - alpha_p)."""

    keys: tuple[str, ...] = ("method.alpha_ce", "method.alpha_g", "method.alpha_p")
    lower: tuple[float, ...] = (0.5, 0.0, 0.0)
    store: tuple[str, ...] = ("method.alpha_g", "method.alpha_p")
    name: str = "method.alpha_simplex"

    def __post_init__(self):
        object.__setattr__(self, "keys", tuple(self.keys))
        object.__setattr__(self, "lower", tuple(float(x) for x in self.lower))
        object.__setattr__(self, "store", tuple(self.store))
        if len(self.keys) != 3 or len(self.lower) != 3:
            raise ValueError("Simplex supports exactly three components")
        if not set(self.store) <= set(self.keys):
            raise ValueError(f"Simplex store {self.store} must be a subset of {self.keys}")
        simplex_from_uniforms(0.5, 0.5, self.lower)  # validates the bounds

    @property
    def outputs(self):
        return self.store

    @property
    def raw_names(self) -> tuple[str, str]:
        return (f"{self.name}{RAW_SEP}u1", f"{self.name}{RAW_SEP}u2")

    def distributions(self):
        return {n: FloatDistribution(0.0, 1.0) for n in self.raw_names}

    def components(self, raw: Mapping[str, Any]) -> dict[str, float]:
        """All three weights (including the implied one), for reporting."""
        u1, u2 = (raw[n] for n in self.raw_names)
        return dict(zip(self.keys, simplex_from_uniforms(u1, u2, self.lower)))

    def map(self, raw, context=None):
        comps = self.components(raw)
        return {k: comps[k] for k in self.store}

    def user_values(self, raw, context=None):
        return self.components(raw)

    def raw_of(self, values, context=None):
        """Inverse of `simplex_from_uniforms`: d_i = (alpha_i - l_i) / (1 - sum l), u1 = 1 - (1 - d1)^2,
        u2 = d2 / (1 - d1) (any u2 when d1 = 1: 0). A missing component is 1 minus the other two."""
        given = {k: _number(k, values[k]) for k in self.keys if k in values}
        missing = [k for k in self.keys if k not in given]
        if len(missing) > 1:
            raise InexpressibleError(f"{self.name} needs two of {self.keys}, got {sorted(given)}", tuple(missing))
        if missing:
            given[missing[0]] = 1.0 - sum(given.values())
        elif not _close(sum(given.values()), 1.0):
            raise InexpressibleError(f"{self.name}: {given} do not sum to 1", self.keys)
        free = 1.0 - sum(self.lower)
        d = []
        for k, lo in zip(self.keys, self.lower):
            di = (given[k] - lo) / free
            if di < -1e-9 or di > 1 + 1e-9:
                raise InexpressibleError(f"{k}={given[k]:g} is outside [{lo:g}, {lo + free:g}]",
                                         tuple(k2 for k2 in self.keys if k2 in values) or (k,))
            d.append(min(1.0, max(0.0, di)))
        u1 = min(1.0, max(0.0, 1.0 - (1.0 - d[0]) ** 2))
        u2 = 0.0 if d[0] >= 1.0 else min(1.0, max(0.0, d[1] / (1.0 - d[0])))
        return dict(zip(self.raw_names, (u1, u2)))

    def user_distributions(self, values_of):
        free = 1.0 - sum(self.lower)
        return {k: FloatDistribution(lo, lo + free) for k, lo in zip(self.keys, self.lower) if k in self.store}


@dataclass(frozen=True)
class Ratio(_KeyParam):
    """Width derived from another width: value = context[of] // r, r categorical (raw `f"{key}__r"`)."""

    key: str = "critic.fc2"
    of: str = "critic.fc1"
    ratios: tuple[int, ...] = (2, 4, 8)
    raw_suffix = "r"

    def __post_init__(self):
        object.__setattr__(self, "ratios", tuple(int(r) for r in self.ratios))
        if not self.ratios or min(self.ratios) < 2:
            raise ValueError(f"{self.key}: ratios must be >= 2 so that {self.key} < {self.of}")

    def distributions(self):
        return {self.raw_name: CategoricalDistribution(self.ratios)}

    def map(self, raw, context=None):
        if context is None or self.of not in context:
            raise KeyError(f"{self.key} = {self.of} // r needs {self.of} to be resolved first")
        return {self.key: ratio_value(context[self.of], raw[self.raw_name])}

    def raw_of(self, values, context=None):
        wanted = _need(values, self.key)
        if context is None or self.of not in context:
            raise InexpressibleError(f"{self.key} = {self.of} // r needs {self.of}", (self.key, self.of))
        of = context[self.of]
        for r in self.ratios:  # the first ratio that gives it (two can, for widths below max(ratios))
            if _close(ratio_value(of, r), wanted):
                return {self.raw_name: r}
        options = sorted({ratio_value(of, r) for r in self.ratios})
        raise InexpressibleError(f"{self.key}={wanted!r} is not {self.of} // r for {self.of}={of} and r in "
                                 f"{self.ratios} (possible: {options})", (self.key,))

    def user_distributions(self, values_of):
        widths = values_of(self.of)
        if not widths:
            raise ValueError(f"{self.key}: the values of {self.of} are not a finite set")
        return {self.key: CategoricalDistribution(tuple(sorted({ratio_value(w, r) for w in widths
                                                                   for r in self.ratios})))}


# --------------------------------------------------------------------------------------------------------------
# Published numbers and the Space record
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Paper:
    """The paper's numbers for a space, for the report (never used for selection).

    Entry dicts use the keys documented in `spaces.paper` ("top1"/"top5" are errors in %, "*_acc" accuracies in %).
    `cells` (grid spaces): cell_key -> entry, or None meaning "none published" for that cell; every cell has an
    item. `best`/`best_value`: the paper's best configuration (dotted overrides) and its numbers. `setting`: where
    the numbers were measured (dataset, model), which may differ from a run's `--dataset`/`--model`.
    """

    source: str
    setting: dict = field(default_factory=dict)
    cells: dict | None = None
    best: dict | None = None
    best_value: dict | None = None
    presets: tuple = ()
    note: str = ""


@dataclass(frozen=True)
class Space:
    """A named search space: plain data (SPEC 11.1). See the module docstring for raw vs mapped values."""

    name: str
    description: str
    base: dict
    params: tuple
    metric: str = "val_error"
    mode: str = "min"
    searcher: str = "tpe"
    scheduler: str | None = "asha"
    num_samples: int = 64
    paper: Paper | None = None
    protocol: str = "search"  # see PROTOCOLS; `metric` is on the split the protocol has (val_* or test_*)

    def __post_init__(self):
        object.__setattr__(self, "params", tuple(self.params))
        object.__setattr__(self, "base", dict(self.base))
        if self.searcher not in SEARCHERS:
            raise ValueError(f"space {self.name}: searcher {self.searcher!r} not in {SEARCHERS}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"space {self.name}: scheduler {self.scheduler!r} not in {SCHEDULERS}")
        if self.mode not in MODES:
            raise ValueError(f"space {self.name}: mode {self.mode!r} not in {MODES}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"space {self.name}: protocol {self.protocol!r} not in {PROTOCOLS}")
        if self.protocol == "paper":
            if self.metric.startswith("val_"):
                raise ValueError(f"space {self.name}: the paper protocol has no validation split, so its metric "
                                 f"must be a test metric, not {self.metric}")
            if self.searcher != "grid" or self.scheduler is not None:
                raise ValueError(f"space {self.name}: the paper protocol runs every grid cell to its last epoch "
                                 f"(searcher grid, no scheduler), got {self.searcher}/{self.scheduler}: selecting "
                                 "or stopping on test metrics is not allowed")
        raw = [n for p in self.params for n in p.distributions()]
        if len(set(raw)) != len(raw):
            raise ValueError(f"space {self.name}: duplicate raw parameter names {raw}")
        outs = self.outputs()
        if len(set(outs)) != len(outs):
            raise ValueError(f"space {self.name}: two parameters write the same key: {outs}")
        if self.searcher == "grid":
            if not all(isinstance(p, Grid) for p in self.params):
                raise ValueError(f"space {self.name}: a grid space may hold Grid parameters only")
            n = len(self.grid_cells())
            if self.num_samples != n:
                raise ValueError(f"space {self.name}: num_samples {self.num_samples} != {n} grid cells")
            if self.paper is None or self.paper.cells is None:
                raise ValueError(f"space {self.name}: a grid space needs a paper entry for every cell")
            missing = [c for c in self.grid_cells() if cell_key(c) not in self.paper.cells]
            if missing or len(self.paper.cells) != n:
                raise ValueError(f"space {self.name}: paper cells do not match the grid (missing {missing[:3]})")
        elif self.num_samples < 1:
            raise ValueError(f"space {self.name}: num_samples must be >= 1")

    # -- structure -------------------------------------------------------------------------------------------

    @property
    def is_grid(self) -> bool:
        return self.searcher == "grid"

    def outputs(self) -> tuple[str, ...]:
        """Every dotted config key the parameters write."""
        return tuple(k for p in self.params for k in p.outputs)

    def distributions(self) -> dict[str, BaseDistribution]:
        """Raw optuna distributions of all parameters (a fixed search space for a searcher or `study.ask`)."""
        out: dict[str, BaseDistribution] = {}
        for p in self.params:
            out.update(p.distributions())
        return out

    def raw_names(self) -> tuple[str, ...]:
        return tuple(self.distributions())

    def optuna_grid(self) -> dict[str, list]:
        """Raw search space for `optuna.samplers.GridSampler` (grid spaces only)."""
        if not self.is_grid:
            raise ValueError(f"space {self.name} is not a grid space")
        return {name: list(dist.choices) for name, dist in self.distributions().items()}

    def grid_cells(self) -> list[dict[str, Any]]:
        """Every cell as a dict of mapped dotted overrides; product over the Grid params in declaration order."""
        grids = [p for p in self.params if isinstance(p, Grid)]
        if not grids:
            return []
        cells = []
        for combo in itertools.product(*(g.cells() for g in grids)):
            cell: dict[str, Any] = {}
            for part in combo:
                cell.update(part)
            cells.append(cell)
        return cells

    def cell_paper_value(self, cell: Mapping[str, Any]) -> dict | None:
        """Paper numbers for a cell (extra keys such as base keys are ignored), or None = none published.

        Grid spaces: KeyError if `cell` is not one of the grid's cells. Other spaces: the paper's best value when
        `cell` matches the paper's best configuration, else None.
        """
        paper = self.paper
        if paper is None:
            return None
        if paper.cells is None:
            if paper.best and paper.best_value and all(k in cell and _close(cell[k], v) for k, v in paper.best.items()):
                return dict(paper.best_value)
            return None
        keys = [k for p in self.params if isinstance(p, Grid) for k in p.outputs]
        missing = [k for k in keys if k not in cell]
        if missing:
            raise KeyError(f"space {self.name}: cell lacks the grid keys {missing}")
        sub = {k: cell[k] for k in keys}
        entry = paper.cells.get(cell_key(sub), ...)
        if entry is ...:
            for known in self.grid_cells():
                if all(_close(sub[k], known[k]) for k in keys):
                    entry = paper.cells[cell_key(known)]
                    break
            else:
                raise KeyError(f"space {self.name}: {sub} is not a cell of this grid")
        return None if entry is None else dict(entry)

    # -- sampling --------------------------------------------------------------------------------------------

    def map_raw(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Raw values (e.g. `trial.params`, `study.best_params`) -> dotted overrides."""
        out: dict[str, Any] = {}
        for p in self.params:
            out.update(p.map(raw, {**self.base, **out}))
        return out

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Define-by-run for Optuna: suggests the raw variables, returns the mapped dotted overrides."""
        out: dict[str, Any] = {}
        for p in self.params:
            out.update(p.suggest(trial, {**self.base, **out}))
        return out

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """Plain random sample of the mapped dotted overrides (same mapping as `suggest`)."""
        out: dict[str, Any] = {}
        for p in self.params:
            out.update(p.sample(rng, {**self.base, **out}))
        return out

    def config(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Flat trial config: `base` updated with `overrides`."""
        return {**self.base, **dict(overrides or {})}

    # -- user-facing values (see the module docstring) ---------------------------------------------------------

    def raw_of(self, dotted: Mapping[str, Any]) -> dict[str, Any]:
        """Inverse of `map_raw`: the raw point (e.g. for `study.enqueue_trial`) whose mapping gives `dotted`.

        `dotted` must give every key of `outputs()` (a simplex may give any two of its three weights); another key is
        accepted only if the space's base holds the same value. InexpressibleError (a ValueError naming every key
        at fault) when the space cannot produce the configuration.
        """
        context = {**self.base, **dict(dotted)}
        raw: dict[str, Any] = {}
        problems: list[InexpressibleError] = []
        for p in self.params:
            try:
                raw.update(p.raw_of(dotted, context))
            except InexpressibleError as e:
                problems.append(e)
        implied = {k for p in self.params if isinstance(p, Simplex) for k in p.keys}
        for key in sorted(set(dotted) - set(self.outputs()) - implied):
            if key not in self.base or not _close(self.base[key], dotted[key]):
                fixed = f"fixed at {self.base[key]!r}" if key in self.base else "not set by this space"
                problems.append(InexpressibleError(f"{key}={dotted[key]!r} is not searched ({fixed})", (key,)))
        if problems:
            keys = tuple(k for e in problems for k in e.keys)
            raise InexpressibleError(f"space {self.name} cannot express it: " + "; ".join(str(e) for e in problems),
                                     keys)
        return raw

    def user_values(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """What a person reads for a raw point: `map_raw`'s dotted values plus a simplex's implied weight (alpha_ce),
        `user_keys()` in order, floats rounded by `display_value`."""
        out: dict[str, Any] = {}
        for p in self.params:
            out.update(p.user_values(raw, {**self.base, **out}))
        return {k: display_value(v) for k, v in out.items()}

    def user_keys(self) -> tuple[str, ...]:
        """Keys of `user_values`: `outputs()` with every simplex weight, the implied one included."""
        return tuple(k for p in self.params for k in (p.keys if isinstance(p, Simplex) else p.outputs))

    def values_of(self, key: str) -> tuple | None:
        """The finite set of values `key` takes in this space (a base value counts as one), or None."""
        for p in self.params:
            if key in p.outputs:
                if isinstance(p, Categorical):
                    return p.values_of(key)
                if isinstance(p, Int) and p.high - p.low <= 4096:
                    return tuple(range(p.low, p.high + 1))
                return None
        return (self.base[key],) if key in self.base else None

    def user_distributions(self) -> dict[str, BaseDistribution]:
        """Optuna distributions over the user-facing values of `outputs()` (the independent ones: a simplex's implied
        weight is left out, its information is in the other two). A tuple value appears by its label."""
        out: dict[str, BaseDistribution] = {}
        for p in self.params:
            out.update(p.user_distributions(self.values_of))
        return out

    def user_params(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """`map_raw(raw)` in the form `user_distributions()` holds (tuples as labels, floats rounded by
        `display_value` and kept inside the range)."""
        dists = self.user_distributions()
        out = {}
        for key, value in self.map_raw(raw).items():
            dist = dists[key]
            value = display_value(value)
            if isinstance(value, tuple):
                value = _label(value)
            if isinstance(dist, FloatDistribution):
                value = min(dist.high, max(dist.low, float(value)))
            out[key] = value
        return out

    def with_base(self, overrides: Mapping[str, Any]) -> "Space":
        """Copy with extra base overrides (e.g. the CLI's --dataset / --model)."""
        return replace(self, base={**self.base, **dict(overrides)})

    def with_protocol(self, protocol: str) -> "Space":
        """Copy run under another protocol (the CLI's --protocol), its metric moved to that protocol's split.
        ValueError where the space cannot run so (the paper protocol on a TPE space)."""
        return replace(self, protocol=protocol, metric=protocol_metric(self.metric, protocol))


# --------------------------------------------------------------------------------------------------------------
# Option helpers for the space factories
# --------------------------------------------------------------------------------------------------------------


def check_searcher(space: str, searcher: str | None, allowed: tuple[str, ...]) -> str:
    """Resolve a searcher option (None = the space's default, the first allowed)."""
    if searcher is None:
        return allowed[0]
    if searcher not in allowed:
        raise ValueError(f"space {space!r} supports searcher in {allowed}, got {searcher!r}")
    return searcher


def as_bool(value) -> bool:
    """Options may arrive from `--set key=value` as strings."""
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {value!r}")
    return bool(value)
