"""The `compare` space (SPEC 11.3): AI-KD's main table, 5 methods x 6 datasets x 2 model families = 60 cells.

Every method uses AI-KD's recipe (SPEC 14 D19) so that only the loss differs. The cell names the model *family*;
the trainer picks the PreAct/CIFAR-stem variant on coarse sets and the 224 variant on fine-grained sets, and the
config applies each method's per-dataset presets (SPEC 11.3 last paragraph), so neither is set here.
"""

from __future__ import annotations

from . import paper as P
from .base import PAPER_PROTOCOL, Grid, Paper, Space, cell_key, check_searcher

BASE = {"optim.recipe": "aikd"}


def compare(searcher: str | None = None) -> Space:
    """Grid only: every cell is run with seeds 1-3 and set beside AI-KD Tables 2-3."""
    check_searcher("compare", searcher, ("grid",))
    params = (
        Grid("method.name", P.COMPARE_METHODS),
        Grid("data.dataset", P.COMPARE_DATASETS),
        Grid("model.family", P.COMPARE_FAMILIES),
    )
    cells = [{**m, **d, **f} for m in params[0].cells() for d in params[1].cells() for f in params[2].cells()]
    return Space(
        name="compare",
        description=("Method comparison (AI-KD Tables 2-3): method.name in {baseline, cskd, tfkd, pskd, aikd} x "
                     "data.dataset in {cifar100, tinyimagenet, cub200, dogs, mit67, aircraft} x model.family in "
                     "{resnet18, densenet121}, all on the aikd recipe; reports test top-1, top-5, macro-F1, ECE "
                     "(+TS)."),
        base=dict(BASE),
        params=params,
        searcher="grid",
        scheduler=None,
        **PAPER_PROTOCOL,
        num_samples=len(cells),
        paper=Paper(
            source="P-AIKD Tables 2-3",
            cells={
                cell_key(c): P.compare_entry(c["model.family"], c["method.name"], c["data.dataset"]) for c in cells
            },
            note="test metrics at the paper's setting; AI-KD CIFAR-100 ResNet-18 is 19.87 +/- 0.10 here "
                 "(+/- 0.07 in Tables 4-7)",
        ),
    )


SPACES = {"compare": compare}
