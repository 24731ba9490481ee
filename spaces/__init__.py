"""Named search spaces (SPEC 11): plain data plus samplers, no Ray or MLflow.

`get_space(name, **options)` builds a fresh `Space` (callers may modify the copy freely); `list_spaces()` lists the
names in SPEC 11.3 order. Options (all optional, strings accepted as from `--set key=value`):

- `searcher`: every space accepts its default; `aikd_ablation` and `aikd_design` also take tpe/random/nsga2
  (`aikd_design` also `grid`, 128 cells); `frskd` and `cskd` take tpe/random/nsga2 for their continuous alternative.
- `full_grid` (`aikd_temperature` only): all 49 (tau_g, tau_p) pairs instead of the 13 cells through (3, 1).

Other changes (num_samples, the CLI's --dataset/--model) go through `dataclasses.replace` or `Space.with_base`;
`Space.with_protocol` runs a space under the other protocol (the paper-table grids default to "paper": the whole
training set and last-epoch test metrics; every other space to "search": selection on a validation split).
"""

from __future__ import annotations

import inspect

from . import aikd as _aikd
from . import compare as _compare
from . import cskd as _cskd
from . import frskd as _frskd
from .base import (
    PROTOCOL_LINES,
    PROTOCOLS,
    RAW_SEP,
    Categorical,
    Float,
    Grid,
    InexpressibleError,
    Int,
    Paper,
    Param,
    Ratio,
    Simplex,
    Space,
    ZeroInflatedLogUniform,
    cell_key,
    protocol_metric,
    ratio_value,
    simplex_from_uniforms,
    zlog_value,
)

__all__ = [
    "PROTOCOLS",
    "PROTOCOL_LINES",
    "RAW_SEP",
    "Categorical",
    "Float",
    "Grid",
    "InexpressibleError",
    "Int",
    "Paper",
    "Param",
    "Ratio",
    "Simplex",
    "Space",
    "UnknownSpaceError",
    "ZeroInflatedLogUniform",
    "cell_key",
    "get_space",
    "list_spaces",
    "protocol_metric",
    "ratio_value",
    "simplex_from_uniforms",
    "zlog_value",
]

_FACTORIES = {**_aikd.SPACES, **_frskd.SPACES, **_cskd.SPACES, **_compare.SPACES}


class UnknownSpaceError(KeyError, ValueError):
    """Unknown space name; a KeyError (registry lookup) and a ValueError (bad user input) at once."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def list_spaces() -> list[str]:
    """All registered space names, in SPEC 11.3 order."""
    return list(_FACTORIES)


def get_space(name: str, **options) -> Space:
    """Build the named space; unknown names or options raise with the valid ones listed."""
    try:
        factory = _FACTORIES[name]
    except (KeyError, TypeError):
        raise UnknownSpaceError(f"unknown search space {name!r}; valid names: {', '.join(_FACTORIES)}") from None
    accepted = list(inspect.signature(factory).parameters)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"space {name!r} does not take option(s) {unknown}; accepted: {accepted}")
    return factory(**options)
