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
# AI-KD main table (SPEC 10.1-10.4): key (model.family, method.name), values per dataset in COMPARE_DATASETS order
# ------------------------------------------------------------------------------------------------------------

COMPARE_DATASETS = ("cifar100", "tinyimagenet", "cub200", "dogs", "mit67", "aircraft")
COMPARE_METHODS = ("baseline", "cskd", "tfkd", "pskd", "aikd")
COMPARE_FAMILIES = ("resnet18", "densenet121")

COMPARE_TOP1 = {  # top-1 error %, (mean, std) [P-AIKD Table 2]
    ("resnet18", "baseline"): ((23.97, 0.29), (46.28, 0.19), (36.65, 0.87), (32.61, 0.55), (39.90, 0.16),
                               (18.61, 1.16)),
    ("resnet18", "cskd"): ((21.67, 0.25), (41.68, 0.15), (33.93, 0.29), (30.87, 0.05), (41.42, 0.45), (19.66, 0.02)),
    ("resnet18", "tfkd"): ((22.07, 0.38), (43.66, 0.08), (35.92, 0.58), (31.25, 0.27), (38.08, 0.55), (19.27, 0.49)),
    ("resnet18", "pskd"): ((21.16, 0.22), (43.45, 0.28), (34.01, 0.74), (29.20, 0.23), (37.55, 0.61), (16.80, 0.18)),
    ("resnet18", "aikd"): ((19.87, 0.10), (41.84, 0.10), (29.59, 0.27), (28.61, 0.21), (36.84, 0.34), (15.43, 0.15)),
    ("densenet121", "baseline"): ((19.71, 0.37), (40.38, 0.14), (34.69, 0.09), (33.19, 0.80), (37.59, 0.62),
                                  (17.71, 0.17)),
    ("densenet121", "cskd"): ((21.48, 0.32), (38.21, 0.17), (30.93, 0.82), (28.70, 0.14), (41.02, 1.28), (17.37, 0.36)),
    ("densenet121", "tfkd"): ((18.90, 0.22), (38.46, 0.36), (32.95, 0.65), (30.41, 0.29), (36.42, 0.66), (16.71, 0.40)),
    ("densenet121", "pskd"): ((18.69, 0.12), (38.62, 0.44), (34.28, 0.50), (30.54, 0.03), (35.92, 0.48), (16.38, 0.71)),
    ("densenet121", "aikd"): ((18.35, 0.18), (38.33, 0.07), (26.65, 0.29), (27.13, 0.16), (34.58, 0.75), (13.84, 0.38)),
}

COMPARE_F1 = {  # macro-F1 (fraction), (mean, std) [P-AIKD Table 2]
    ("resnet18", "baseline"): ((0.759, 0.003), (0.536, 0.002), (0.631, 0.008), (0.663, 0.006), (0.598, 0.004),
                               (0.821, 0.002)),
    ("resnet18", "cskd"): ((0.781, 0.002), (0.581, 0.002), (0.651, 0.005), (0.681, 0.001), (0.583, 0.002),
                           (0.804, 0.000)),
    ("resnet18", "tfkd"): ((0.779, 0.004), (0.563, 0.001), (0.638, 0.006), (0.678, 0.003), (0.621, 0.007),
                           (0.807, 0.005)),
    ("resnet18", "pskd"): ((0.788, 0.002), (0.560, 0.003), (0.657, 0.007), (0.697, 0.002), (0.623, 0.004),
                           (0.831, 0.002)),
    ("resnet18", "aikd"): ((0.801, 0.001), (0.581, 0.002), (0.701, 0.003), (0.703, 0.002), (0.624, 0.004),
                           (0.845, 0.001)),
    ("densenet121", "baseline"): ((0.802, 0.004), (0.594, 0.001), (0.650, 0.007), (0.656, 0.007), (0.620, 0.008),
                                  (0.824, 0.002)),
    ("densenet121", "cskd"): ((0.784, 0.005), (0.616, 0.001), (0.689, 0.007), (0.703, 0.002), (0.588, 0.014),
                              (0.826, 0.005)),
    ("densenet121", "tfkd"): ((0.811, 0.002), (0.617, 0.002), (0.668, 0.007), (0.686, 0.004), (0.633, 0.006),
                              (0.833, 0.005)),
    ("densenet121", "pskd"): ((0.813, 0.001), (0.609, 0.005), (0.655, 0.005), (0.681, 0.001), (0.635, 0.004),
                              (0.835, 0.008)),
    ("densenet121", "aikd"): ((0.816, 0.002), (0.617, 0.002), (0.730, 0.004), (0.714, 0.006), (0.649, 0.008),
                              (0.861, 0.004)),
}

COMPARE_TOP5 = {  # top-5 error %, (mean, std) [P-AIKD Table 3]
    ("resnet18", "baseline"): ((6.80, 0.02), (22.61, 0.20), (15.33, 0.27), (9.67, 0.53), (16.19, 0.27), (4.94, 0.23)),
    ("resnet18", "cskd"): ((5.63, 0.15), (19.42, 0.12), (13.74, 0.05), (8.52, 0.04), (16.97, 0.44), (4.34, 0.26)),
    ("resnet18", "tfkd"): ((5.61, 0.07), (21.17, 0.30), (14.09, 0.25), (8.78, 0.32), (15.57, 0.56), (4.74, 0.13)),
    ("resnet18", "pskd"): ((5.29, 0.12), (20.53, 0.22), (13.67, 0.53), (7.90, 0.19), (14.35, 0.86), (3.89, 0.14)),
    ("resnet18", "aikd"): ((4.81, 0.04), (19.87, 0.21), (11.47, 0.23), (8.17, 0.06), (15.55, 0.37), (4.06, 0.15)),
    ("densenet121", "baseline"): ((4.77, 0.15), (17.73, 0.19), (12.94, 0.47), (8.56, 0.50), (14.75, 0.78),
                                  (4.31, 0.18)),
    ("densenet121", "cskd"): ((6.67, 0.08), (16.82, 0.21), (11.36, 0.38), (7.23, 0.19), (16.52, 0.80), (4.06, 0.11)),
    ("densenet121", "tfkd"): ((4.20, 0.07), (16.32, 0.40), (11.98, 0.11), (7.20, 0.30), (12.61, 0.27), (3.74, 0.17)),
    ("densenet121", "pskd"): ((4.06, 0.11), (17.01, 0.30), (13.18, 0.34), (7.76, 0.15), (13.18, 0.34), (3.59, 0.08)),
    ("densenet121", "aikd"): ((4.14, 0.06), (16.50, 0.44), (9.46, 0.14), (6.34, 0.13), (12.44, 0.82), (3.53, 0.09)),
}

COMPARE_ECE = {  # ECE % (no std published) [P-AIKD Table 3]; "aikd_ts" = AI-KD after temperature scaling
    ("resnet18", "baseline"): (11.90, 10.51, 7.18, 7.64, 12.80, 3.98),
    ("resnet18", "cskd"): (5.50, 3.73, 15.45, 9.75, 15.58, 6.24),
    ("resnet18", "tfkd"): (11.03, 10.64, 8.01, 8.13, 12.82, 4.97),
    ("resnet18", "pskd"): (1.37, 21.41, 24.88, 30.05, 20.44, 24.45),
    ("resnet18", "aikd"): (14.10, 15.00, 26.43, 20.41, 20.29, 18.74),
    ("resnet18", "aikd_ts"): (2.95, 1.63, 2.80, 3.39, 4.80, 1.89),
    ("densenet121", "baseline"): (7.74, 4.60, 5.06, 4.69, 9.63, 2.38),
    ("densenet121", "cskd"): (14.66, 2.14, 7.27, 2.83, 8.74, 3.14),
    ("densenet121", "tfkd"): (9.87, 5.81, 4.18, 4.48, 10.64, 2.75),
    ("densenet121", "pskd"): (1.34, 24.16, 26.57, 33.64, 20.56, 27.80),
    ("densenet121", "aikd"): (5.11, 1.89, 26.66, 20.14, 19.26, 18.20),
    ("densenet121", "aikd_ts"): (1.70, 1.67, 1.99, 1.73, 4.06, 1.46),
}

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
