"""CS-KD search space (SPEC 11.3): the paper's T x lambda grid, or a continuous TPE alternative.

The paper never says which cell won, so every cell is "none published"; the README presets and their published
errors are kept in `paper.presets` for the report.
"""

from __future__ import annotations

from . import paper as P
from .base import PAPER_PROTOCOL, Float, Grid, Paper, Space, cell_key, check_searcher

BASE = {
    "data.dataset": "cifar100",
    "model.name": "preact_resnet18",
    "optim.recipe": "cskd",
    "method.name": "cskd",
}
TEMPERATURES = (1, 4)
LAMBDAS = (1, 2, 3, 4)
NOTE = ("the paper does not say which (T, lambda) cell won: no per-cell values. README presets: CIFAR-100 "
        "(T 4, lambda 1) 21.99 +/- 0.13 with PreAct ResNet-18; CUB-200 (T 4, lambda 3) 33.28 +/- 0.99 with "
        "ResNet-18 (test top-1 error; CS-KD's code reports the best epoch, SPEC 9.7)")


def _presets():
    return tuple(dict(p) for p in P.CSKD_PRESETS)


def cskd(searcher: str | None = None) -> Space:
    """Grid (8 cells) by default; tpe/random/nsga2 sample T ~ float[1, 8], lambda ~ float[0.5, 4]."""
    searcher = check_searcher("cskd", searcher, ("grid", "tpe", "random", "nsga2"))
    if searcher != "grid":
        return Space(
            name="cskd",
            description="CS-KD continuous search: temperature ~ float[1, 8], lambda_cls ~ float[0.5, 4].",
            base=dict(BASE),
            params=(Float("method.temperature", 1.0, 8.0), Float("method.lambda_cls", 0.5, 4.0)),
            searcher=searcher,
            scheduler="asha",
            num_samples=64,
            # no best: the paper names no winning cell; the README presets are in `presets`.
            paper=Paper(source="P-CSKD Table 1; C-CSKD README", setting=dict(P.CSKD_GRID_SETTING),
                        presets=_presets(), note=NOTE),
        )
    grid_t = Grid("method.temperature", TEMPERATURES)
    grid_l = Grid("method.lambda_cls", LAMBDAS)
    cells = [{**a, **b} for a in grid_t.cells() for b in grid_l.cells()]
    return Space(
        name="cskd",
        description=("CS-KD grid: temperature in {1, 4} x lambda_cls in {1, 2, 3, 4} (8 cells, the paper's grid); "
                     "get_space('cskd', searcher='tpe') for the continuous alternative."),
        base=dict(BASE),
        params=(grid_t, grid_l),
        searcher="grid",
        scheduler=None,
        **PAPER_PROTOCOL,
        num_samples=len(cells),
        paper=Paper(source="P-CSKD §3.1 (grid), Table 1; C-CSKD README", setting=dict(P.CSKD_GRID_SETTING),
                    cells={cell_key(c): None for c in cells}, presets=_presets(), note=NOTE),
    )


SPACES = {"cskd": cskd}
