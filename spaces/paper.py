"""Published numbers transcribed from SPEC.md section 10, for the report's paper-vs-ours tables.

Kept apart from the space definitions so that each number is written once. Entry keys (all explicit about what
they are):

- `top1`, `top1_std`, `top5`, `top5_std`: top-1 / top-5 **error** in %, mean and std over the paper's 3 runs;
- `top1_acc`, `top1_acc_std`: top-1 **accuracy** in % as printed (FRSKD); such entries also carry `top1` =
  100 - acc so that every entry can be compared with our `val_error` / `test_error`;
- `f1`, `f1_std`: macro-F1 as a fraction; `ece`: ECE in % (no std published); `ece_ts`: AI-KD's ECE after
  temperature scaling (AI-KD rows only);
- `table`: where the number is printed; `note`: caveats (e.g. a suspected copy error kept as published).
"""

from __future__ import annotations

# ------------------------------------------------------------------------------------------------------------
# entry helpers
# ------------------------------------------------------------------------------------------------------------


def error_entry(top1, top1_std, top5=None, top5_std=None, table="", note=""):
    """An entry of error numbers (%)."""
    e = {"top1": top1, "top1_std": top1_std}
    if top5 is not None:
        e.update(top5=top5, top5_std=top5_std)
    if table:
        e["table"] = table
    if note:
        e["note"] = note
    return e


def acc_entry(acc, acc_std, table="", note=""):
    """An accuracy entry (%), with the equivalent error beside it (std is unchanged by 100 - x)."""
    e = {"top1_acc": acc, "top1_acc_std": acc_std, "top1": round(100.0 - acc, 2), "top1_std": acc_std}
    if table:
        e["table"] = table
    if note:
        e["note"] = note
    return e


# ------------------------------------------------------------------------------------------------------------
# AI-KD ablations, PreAct ResNet-18 on CIFAR-100 (SPEC 10.5, P-AIKD Tables 4-7): (top1, std, top5, std)
# ------------------------------------------------------------------------------------------------------------

AIKD_ABLATION_SETTING = {"data.dataset": "cifar100", "model.name": "preact_resnet18"}

AIKD_BEST = (19.87, 0.07, 4.81, 0.04)  # Tables 4-7 (Table 2 prints 19.87 +/- 0.10)

AIKD_TABLE4 = {  # method.name -> numbers
    "aikd": (19.87, 0.07, 4.81, 0.04),
    "aikd_no_adv": (20.34, 0.28, 4.86, 0.10),
    "aikd_only_progressive": (21.26, 0.06, 5.66, 0.06),
    "aikd_only_guide": (22.17, 0.05, 6.21, 0.22),
    "baseline": (23.97, 0.29, 6.80, 0.02),
}

AIKD_TABLE5 = {  # method.omega -> numbers
    0.0: (20.34, 0.28, 4.86, 0.10),
    0.01: (19.91, 0.17, 4.82, 0.14),
    0.05: (19.97, 0.22, 4.85, 0.25),
    0.1: (19.87, 0.07, 4.81, 0.04),
    0.25: (19.97, 0.09, 4.89, 0.09),
    0.5: (20.17, 0.12, 4.90, 0.22),
    0.75: (20.42, 0.04, 5.27, 0.29),
    1.0: (20.42, 0.04, 5.27, 0.29),
}
AIKD_TABLE5_NOTE = "rows 0.75 and 1.00 are identical in the paper (likely copy error); recorded as published"

AIKD_TABLE6 = {  # (a_CE, a_G, a_P) -> numbers, omega = 0.1
    (0.6, 0.1, 0.3): (19.87, 0.07, 4.81, 0.04),
    (0.6, 0.2, 0.2): (21.29, 0.12, 5.46, 0.09),
    (0.6, 0.3, 0.1): (22.05, 0.17, 5.62, 0.11),
    (0.7, 0.1, 0.2): (20.98, 0.09, 5.24, 0.12),
    (0.7, 0.2, 0.1): (21.79, 0.13, 5.48, 0.07),
    (0.8, 0.1, 0.1): (21.46, 0.11, 5.16, 0.20),
}

AIKD_TABLE7 = {  # data.augment -> numbers
    "none": (19.87, 0.07, 4.81, 0.04),
    "cutout": (19.75, 0.29, 4.90, 0.01),
    "mixup": (19.29, 0.16, 4.70, 0.12),
    "cutmix": (18.97, 0.25, 4.32, 0.10),
}

AIKD_DEFAULTS = {  # the paper's best setting (SPEC 2.2); Fig. 7 optimum for temperatures and critic widths
    "method.omega": 0.1,
    "method.tau_g": 3,
    "method.tau_p": 1,
    "method.alpha_g": 0.1,
    "method.alpha_p": 0.3,
    "critic.fc1": 64,
    "critic.fc2": 32,
}

# ------------------------------------------------------------------------------------------------------------
# FRSKD (SPEC 10.6; accuracies in %)
# ------------------------------------------------------------------------------------------------------------

FRSKD_GRID_SETTING = {"data.dataset": "cifar100", "model.name": "wrn16_2"}

FRSKD_TABLE6 = {  # BiFPNc width w -> (acc, std), WRN-16-2 on CIFAR-100 at the preset (alpha 2, beta 100)
    1: (71.70, 0.19),
    2: (73.27, 0.45),
}

FRSKD_PRESETS = (  # published per-dataset settings with their FRSKD numbers (Tables 1, 2)
    {"data.dataset": "cifar100", "model.name": "wrn16_2", "method.alpha": 2, "method.beta": 100, "method.width": 2,
     "acc": (73.27, 0.45), "table": "P-FRSKD Table 1"},
    {"data.dataset": "cifar100", "model.name": "resnet18_cifar", "method.alpha": 2, "method.beta": 100,
     "method.width": 2, "acc": (77.71, 0.14), "table": "P-FRSKD Table 1"},
    {"data.dataset": "tinyimagenet", "model.name": "wrn16_2", "method.alpha": 3, "method.beta": 100,
     "method.width": 2, "acc": (53.08, 0.33), "table": "P-FRSKD Table 1"},
    {"data.dataset": "tinyimagenet", "model.name": "resnet18_cifar", "method.alpha": 3, "method.beta": 100,
     "method.width": 2, "acc": (59.61, 0.31), "table": "P-FRSKD Table 1"},
    {"data.dataset": "cub200", "model.name": "resnet18", "method.alpha": 1, "method.beta": 200, "method.width": 2,
     "acc": (65.39, 0.13), "table": "P-FRSKD Table 2"},
    {"data.dataset": "mit67", "model.name": "resnet18", "method.alpha": 1, "method.beta": 200, "method.width": 2,
     "acc": (61.74, 0.67), "table": "P-FRSKD Table 2"},
    {"data.dataset": "dogs", "model.name": "resnet18", "method.alpha": 1, "method.beta": 200, "method.width": 2,
     "acc": (70.77, 0.20), "table": "P-FRSKD Table 2"},
)

# ------------------------------------------------------------------------------------------------------------
# CS-KD (SPEC 10.7 and 5.4; errors in %). The paper does not say which (T, lambda) cell won.
# ------------------------------------------------------------------------------------------------------------

CSKD_GRID_SETTING = {"data.dataset": "cifar100", "model.name": "preact_resnet18"}

CSKD_PRESETS = (  # README commands with the paper's Table 1 CS-KD numbers
    {"data.dataset": "cifar100", "model.name": "preact_resnet18", "method.temperature": 4, "method.lambda_cls": 1,
     "top1": 21.99, "top1_std": 0.13, "top5": 5.69, "top5_std": 0.03, "table": "P-CSKD Tables 1, 6; C-CSKD README"},
    {"data.dataset": "cub200", "model.name": "resnet18", "method.temperature": 4, "method.lambda_cls": 3,
     "top1": 33.28, "top1_std": 0.99, "top5": 13.07, "top5_std": 0.26, "table": "P-CSKD Tables 1, 6; C-CSKD README"},
)

# ------------------------------------------------------------------------------------------------------------
# AI-KD main table (SPEC 10.1-10.4, P-AIKD Tables 2-3)
# ------------------------------------------------------------------------------------------------------------

COMPARE_DATASETS = ("cifar100", "tinyimagenet", "cub200", "dogs", "mit67", "aircraft")
COMPARE_METHODS = ("baseline", "cskd", "tfkd", "pskd", "aikd")
COMPARE_FAMILIES = ("resnet18", "densenet121")

# One row per cell, so that every number stands beside the cell it belongs to:
# (model.family, method.name, data.dataset) -> (top-1 error %, std, top-5 error %, std, macro-F1, std, ECE %).
# Top-1 and F1 are printed in Table 2, top-5 and ECE in Table 3; F1 is a fraction; no std is published for ECE.
_COMPARE_CELLS = {
    # ResNet-18
    ("resnet18", "baseline", "cifar100"): (23.97, 0.29, 6.80, 0.02, 0.759, 0.003, 11.90),
    ("resnet18", "baseline", "tinyimagenet"): (46.28, 0.19, 22.61, 0.20, 0.536, 0.002, 10.51),
    ("resnet18", "baseline", "cub200"): (36.65, 0.87, 15.33, 0.27, 0.631, 0.008, 7.18),
    ("resnet18", "baseline", "dogs"): (32.61, 0.55, 9.67, 0.53, 0.663, 0.006, 7.64),
    ("resnet18", "baseline", "mit67"): (39.90, 0.16, 16.19, 0.27, 0.598, 0.004, 12.80),
    ("resnet18", "baseline", "aircraft"): (18.61, 1.16, 4.94, 0.23, 0.821, 0.002, 3.98),
    ("resnet18", "cskd", "cifar100"): (21.67, 0.25, 5.63, 0.15, 0.781, 0.002, 5.50),
    ("resnet18", "cskd", "tinyimagenet"): (41.68, 0.15, 19.42, 0.12, 0.581, 0.002, 3.73),
    ("resnet18", "cskd", "cub200"): (33.93, 0.29, 13.74, 0.05, 0.651, 0.005, 15.45),
    ("resnet18", "cskd", "dogs"): (30.87, 0.05, 8.52, 0.04, 0.681, 0.001, 9.75),
    ("resnet18", "cskd", "mit67"): (41.42, 0.45, 16.97, 0.44, 0.583, 0.002, 15.58),
    ("resnet18", "cskd", "aircraft"): (19.66, 0.02, 4.34, 0.26, 0.804, 0.000, 6.24),
    ("resnet18", "tfkd", "cifar100"): (22.07, 0.38, 5.61, 0.07, 0.779, 0.004, 11.03),
    ("resnet18", "tfkd", "tinyimagenet"): (43.66, 0.08, 21.17, 0.30, 0.563, 0.001, 10.64),
    ("resnet18", "tfkd", "cub200"): (35.92, 0.58, 14.09, 0.25, 0.638, 0.006, 8.01),
    ("resnet18", "tfkd", "dogs"): (31.25, 0.27, 8.78, 0.32, 0.678, 0.003, 8.13),
    ("resnet18", "tfkd", "mit67"): (38.08, 0.55, 15.57, 0.56, 0.621, 0.007, 12.82),
    ("resnet18", "tfkd", "aircraft"): (19.27, 0.49, 4.74, 0.13, 0.807, 0.005, 4.97),
    ("resnet18", "pskd", "cifar100"): (21.16, 0.22, 5.29, 0.12, 0.788, 0.002, 1.37),
    ("resnet18", "pskd", "tinyimagenet"): (43.45, 0.28, 20.53, 0.22, 0.560, 0.003, 21.41),
    ("resnet18", "pskd", "cub200"): (34.01, 0.74, 13.67, 0.53, 0.657, 0.007, 24.88),
    ("resnet18", "pskd", "dogs"): (29.20, 0.23, 7.90, 0.19, 0.697, 0.002, 30.05),
    ("resnet18", "pskd", "mit67"): (37.55, 0.61, 14.35, 0.86, 0.623, 0.004, 20.44),
    ("resnet18", "pskd", "aircraft"): (16.80, 0.18, 3.89, 0.14, 0.831, 0.002, 24.45),
    ("resnet18", "aikd", "cifar100"): (19.87, 0.10, 4.81, 0.04, 0.801, 0.001, 14.10),
    ("resnet18", "aikd", "tinyimagenet"): (41.84, 0.10, 19.87, 0.21, 0.581, 0.002, 15.00),
    ("resnet18", "aikd", "cub200"): (29.59, 0.27, 11.47, 0.23, 0.701, 0.003, 26.43),
    ("resnet18", "aikd", "dogs"): (28.61, 0.21, 8.17, 0.06, 0.703, 0.002, 20.41),
    ("resnet18", "aikd", "mit67"): (36.84, 0.34, 15.55, 0.37, 0.624, 0.004, 20.29),
    ("resnet18", "aikd", "aircraft"): (15.43, 0.15, 4.06, 0.15, 0.845, 0.001, 18.74),
    # DenseNet-121
    ("densenet121", "baseline", "cifar100"): (19.71, 0.37, 4.77, 0.15, 0.802, 0.004, 7.74),
    ("densenet121", "baseline", "tinyimagenet"): (40.38, 0.14, 17.73, 0.19, 0.594, 0.001, 4.60),
    ("densenet121", "baseline", "cub200"): (34.69, 0.09, 12.94, 0.47, 0.650, 0.007, 5.06),
    ("densenet121", "baseline", "dogs"): (33.19, 0.80, 8.56, 0.50, 0.656, 0.007, 4.69),
    ("densenet121", "baseline", "mit67"): (37.59, 0.62, 14.75, 0.78, 0.620, 0.008, 9.63),
    ("densenet121", "baseline", "aircraft"): (17.71, 0.17, 4.31, 0.18, 0.824, 0.002, 2.38),
    ("densenet121", "cskd", "cifar100"): (21.48, 0.32, 6.67, 0.08, 0.784, 0.005, 14.66),
    ("densenet121", "cskd", "tinyimagenet"): (38.21, 0.17, 16.82, 0.21, 0.616, 0.001, 2.14),
    ("densenet121", "cskd", "cub200"): (30.93, 0.82, 11.36, 0.38, 0.689, 0.007, 7.27),
    ("densenet121", "cskd", "dogs"): (28.70, 0.14, 7.23, 0.19, 0.703, 0.002, 2.83),
    ("densenet121", "cskd", "mit67"): (41.02, 1.28, 16.52, 0.80, 0.588, 0.014, 8.74),
    ("densenet121", "cskd", "aircraft"): (17.37, 0.36, 4.06, 0.11, 0.826, 0.005, 3.14),
    ("densenet121", "tfkd", "cifar100"): (18.90, 0.22, 4.20, 0.07, 0.811, 0.002, 9.87),
    ("densenet121", "tfkd", "tinyimagenet"): (38.46, 0.36, 16.32, 0.40, 0.617, 0.002, 5.81),
    ("densenet121", "tfkd", "cub200"): (32.95, 0.65, 11.98, 0.11, 0.668, 0.007, 4.18),
    ("densenet121", "tfkd", "dogs"): (30.41, 0.29, 7.20, 0.30, 0.686, 0.004, 4.48),
    ("densenet121", "tfkd", "mit67"): (36.42, 0.66, 12.61, 0.27, 0.633, 0.006, 10.64),
    ("densenet121", "tfkd", "aircraft"): (16.71, 0.40, 3.74, 0.17, 0.833, 0.005, 2.75),
    ("densenet121", "pskd", "cifar100"): (18.69, 0.12, 4.06, 0.11, 0.813, 0.001, 1.34),
    ("densenet121", "pskd", "tinyimagenet"): (38.62, 0.44, 17.01, 0.30, 0.609, 0.005, 24.16),
    ("densenet121", "pskd", "cub200"): (34.28, 0.50, 13.18, 0.34, 0.655, 0.005, 26.57),
    ("densenet121", "pskd", "dogs"): (30.54, 0.03, 7.76, 0.15, 0.681, 0.001, 33.64),
    ("densenet121", "pskd", "mit67"): (35.92, 0.48, 13.18, 0.34, 0.635, 0.004, 20.56),
    ("densenet121", "pskd", "aircraft"): (16.38, 0.71, 3.59, 0.08, 0.835, 0.008, 27.80),
    ("densenet121", "aikd", "cifar100"): (18.35, 0.18, 4.14, 0.06, 0.816, 0.002, 5.11),
    ("densenet121", "aikd", "tinyimagenet"): (38.33, 0.07, 16.50, 0.44, 0.617, 0.002, 1.89),
    ("densenet121", "aikd", "cub200"): (26.65, 0.29, 9.46, 0.14, 0.730, 0.004, 26.66),
    ("densenet121", "aikd", "dogs"): (27.13, 0.16, 6.34, 0.13, 0.714, 0.006, 20.14),
    ("densenet121", "aikd", "mit67"): (34.58, 0.75, 12.44, 0.82, 0.649, 0.008, 19.26),
    ("densenet121", "aikd", "aircraft"): (13.84, 0.38, 3.53, 0.09, 0.861, 0.004, 18.20),
}
_COMPARE_ECE_TS = {  # AI-KD's ECE % after temperature scaling [Table 3], per dataset in COMPARE_DATASETS order
    "resnet18": (2.95, 1.63, 2.80, 3.39, 4.80, 1.89),
    "densenet121": (1.70, 1.67, 1.99, 1.73, 4.06, 1.46),
}


def _paper_rows(column: int, width: int) -> dict:
    """One metric of _COMPARE_CELLS laid out as the paper's tables are: (model.family, method.name) -> its values
    per dataset in COMPARE_DATASETS order, each the `width` numbers from `column` on (a (mean, std) pair), or the
    bare number where `width` is 1."""
    out = {}
    for family in COMPARE_FAMILIES:
        for method in COMPARE_METHODS:
            values = (_COMPARE_CELLS[(family, method, d)][column:column + width] for d in COMPARE_DATASETS)
            out[(family, method)] = tuple(v if width > 1 else v[0] for v in values)
    return out


def _ece_rows() -> dict:
    """COMPARE_ECE: the ECE rows, each AI-KD row followed by its temperature-scaled one ("aikd_ts")."""
    out = {}
    for (family, method), values in _paper_rows(6, 1).items():
        out[(family, method)] = values
        if method == "aikd":
            out[(family, "aikd_ts")] = _COMPARE_ECE_TS[family]
    return out


COMPARE_TOP1 = _paper_rows(0, 2)  # top-1 error %, (mean, std) [P-AIKD Table 2]
COMPARE_TOP5 = _paper_rows(2, 2)  # top-5 error %, (mean, std) [P-AIKD Table 3]
COMPARE_F1 = _paper_rows(4, 2)  # macro-F1 (fraction), (mean, std) [P-AIKD Table 2]
COMPARE_ECE = _ece_rows()  # ECE % (no std published) [P-AIKD Table 3]; "aikd_ts" = AI-KD after temperature scaling

_PSKD_TOP5_NOTE = "DenseNet-121 PS-KD top-5 is 13.18 +/- 0.34 on both CUB-200 and MIT67 (possible copy error)"
COMPARE_NOTES = {  # (family, method, dataset) -> caveat
    ("densenet121", "pskd", "cub200"): _PSKD_TOP5_NOTE,
    ("densenet121", "pskd", "mit67"): _PSKD_TOP5_NOTE,
}


def compare_entry(family: str, method: str, dataset: str) -> dict:
    """All published numbers of one `compare` cell (AI-KD Tables 2-3)."""
    j = COMPARE_DATASETS.index(dataset)
    top1, top1_std = COMPARE_TOP1[(family, method)][j]
    top5, top5_std = COMPARE_TOP5[(family, method)][j]
    f1, f1_std = COMPARE_F1[(family, method)][j]
    e = error_entry(top1, top1_std, top5, top5_std, table="P-AIKD Tables 2-3",
                    note=COMPARE_NOTES.get((family, method, dataset), ""))
    e.update(f1=f1, f1_std=f1_std, ece=COMPARE_ECE[(family, method)][j])
    if method == "aikd":
        e["ece_ts"] = COMPARE_ECE[(family, "aikd_ts")][j]
    return e
