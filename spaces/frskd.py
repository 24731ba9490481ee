"""FRSKD search space (SPEC 11.3): the appendix sensitivity grid plus the self-teacher width, at WRN-16-2/CIFAR-100.

The grid is the paper's own (alpha x beta from appendix Fig. 4, width from Table 6); only the width cells have
legible numbers. `searcher="tpe"` gives the continuous alternative of 11.3.
"""

from __future__ import annotations

from . import paper as P
from .base import PAPER_PROTOCOL, Categorical, Float, Grid, Paper, Space, cell_key, check_searcher

BASE = {
    "data.dataset": "cifar100",
    "model.name": "wrn16_2",
    "optim.recipe": "frskd",
    "method.name": "frskd",
}
ALPHAS = (1, 2, 3)
BETAS = (50, 100, 200, 500)
NOTE = ("FRSKD reports last-epoch test accuracy; entries hold it as top1_acc and as top1 = 100 - acc (error). "
        "alpha x beta cells: appendix Fig. 4 values not legible (none published)")


def frskd_cells() -> list[tuple[int, int, int]]:
    """(alpha, beta, width): 12 cells at width 2, then widths 1 and 3 at the preset (2, 100)."""
    return [(a, b, 2) for a in ALPHAS for b in BETAS] + [(2, 100, 1), (2, 100, 3)]


def _best():
    return {"method.alpha": 2, "method.beta": 100, "method.width": 2}


def _presets():
    return tuple(
        {**{k: v for k, v in p.items() if k != "acc"}, **P.acc_entry(*p["acc"], table=p["table"])}
        for p in P.FRSKD_PRESETS
    )


def frskd(searcher: str | None = None) -> Space:
    """Grid (14 cells) by default; tpe/random/nsga2 sample alpha, log-beta and width instead."""
    searcher = check_searcher("frskd", searcher, ("grid", "tpe", "random", "nsga2"))
    best_value = P.acc_entry(*P.FRSKD_TABLE6[2], table="P-FRSKD Tables 1, 6")
    if searcher != "grid":
        return Space(
            name="frskd",
            description=("FRSKD continuous search: alpha ~ float[0.5, 4], beta ~ log-float[25, 800], "
                         "width in {1, 2, 3}."),
            base=dict(BASE),
            params=(
                Float("method.alpha", 0.5, 4.0),
                Float("method.beta", 25.0, 800.0, log=True),
                Categorical("method.width", (1, 2, 3)),
            ),
            searcher=searcher,
            scheduler="asha",
            num_samples=64,
            paper=Paper(source="P-FRSKD Tables 1, 6", setting=dict(P.FRSKD_GRID_SETTING), best=_best(),
                        best_value=best_value, presets=_presets(), note=NOTE),
        )
    grid = Grid(("method.alpha", "method.beta", "method.width"), tuple(frskd_cells()))
    cells = grid.cells()

    def lookup(c):
        a, b, w = c["method.alpha"], c["method.beta"], c["method.width"]
        if (a, b) == (2, 100) and w in P.FRSKD_TABLE6:
            return P.acc_entry(*P.FRSKD_TABLE6[w], table="P-FRSKD Table 6")
        return None

    return Space(
        name="frskd",
        description=("FRSKD grid: alpha in {1, 2, 3} x beta in {50, 100, 200, 500} at width 2 (12 cells) plus "
                     "width in {1, 3} at (2, 100) (2 cells); get_space('frskd', searcher='tpe') for the "
                     "continuous alternative."),
        base=dict(BASE),
        params=(grid,),
        searcher="grid",
        scheduler=None,
        **PAPER_PROTOCOL,
        num_samples=len(cells),
        paper=Paper(source="P-FRSKD Tables 1, 6, appendix Fig. 4", setting=dict(P.FRSKD_GRID_SETTING),
                    cells={cell_key(c): lookup(c) for c in cells}, best=_best(), best_value=best_value,
                    presets=_presets(), note=NOTE),
    )


SPACES = {"frskd": frskd}
