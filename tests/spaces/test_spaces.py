"""The named spaces of SPEC 11.3: registry, cell counts, paper entries and config keys (SPEC 12 item 44)."""

import dataclasses
import math

import numpy as np
import pytest

import spaces
from spaces import Grid, Paper, Space, cell_key, get_space, list_spaces

# Normative dotted config keys a space may write (SPEC 0.3 and the keys agreed for the trial config).
CONFIG_KEYS = frozenset({
    "epochs", "seed", "data.dataset", "data.augment", "model.name", "model.family", "optim.recipe",
    "method.name", "method.omega", "method.tau_g", "method.tau_p", "method.alpha_g", "method.alpha_p",
    "method.prev_mode", "method.alpha", "method.beta", "method.width", "method.temperature", "method.lambda_cls",
    "critic.fc1", "critic.fc2", "critic.head", "critic.input", "critic.norm", "critic.bn_mode", "critic.betas",
})

SPEC_NAMES = [
    "aikd_ablation", "aikd_losses", "aikd_omega", "aikd_alpha", "aikd_temperature", "aikd_critic", "aikd_augment",
    "aikd_design", "frskd", "cskd", "compare",
]
GRID_COUNTS = {  # SPEC 11.3
    "aikd_losses": 5, "aikd_omega": 8, "aikd_alpha": 6, "aikd_temperature": 13, "aikd_critic": 15,
    "aikd_augment": 4, "frskd": 14, "cskd": 8, "compare": 60,
}
VARIANTS = [(n, {}) for n in SPEC_NAMES] + [
    ("aikd_temperature", {"full_grid": True}),
    ("aikd_design", {"searcher": "grid"}),
    ("frskd", {"searcher": "tpe"}),
    ("cskd", {"searcher": "tpe"}),
    ("aikd_ablation", {"searcher": "random"}),
]


def test_registry_lists_the_spec_spaces():
    assert list_spaces() == SPEC_NAMES


def test_unknown_space_lists_valid_names():
    for exc in (KeyError, ValueError):
        with pytest.raises(exc) as info:
            get_space("aikd_nope")
        msg = str(info.value)
        assert "aikd_nope" in msg and all(n in msg for n in SPEC_NAMES)


def test_unknown_option_and_searcher_rejected():
    with pytest.raises(ValueError, match="full_grid"):
        get_space("aikd_omega", full_grid=True)
    with pytest.raises(ValueError, match="searcher"):
        get_space("compare", searcher="tpe")
    with pytest.raises(ValueError):
        get_space("aikd_ablation", searcher="grid")


@pytest.mark.parametrize("name, options", VARIANTS)
def test_keys_are_config_keys(name, options):
    space = get_space(name, **options)
    assert set(space.base) <= CONFIG_KEYS, set(space.base) - CONFIG_KEYS
    assert set(space.outputs()) <= CONFIG_KEYS, set(space.outputs()) - CONFIG_KEYS
    for cell in space.grid_cells():
        assert set(cell) <= CONFIG_KEYS
    sample = space.sample(np.random.default_rng(0))
    assert set(sample) == set(space.outputs())
    # SPEC 11.1 val_error, on the test split under the paper protocol (SPEC 8.3: no validation split there)
    assert space.metric == ("test_error" if space.protocol == "paper" else "val_error") and space.mode == "min"
    if space.searcher == "grid":
        assert space.scheduler is None
    else:
        assert space.scheduler == "asha" and space.num_samples >= 1


@pytest.mark.parametrize("name", sorted(GRID_COUNTS))
def test_grid_cell_counts_and_paper_entry_for_every_cell(name):
    space = get_space(name)
    cells = space.grid_cells()
    assert space.searcher == "grid"
    assert len(cells) == GRID_COUNTS[name] == space.num_samples
    assert len({cell_key(c) for c in cells}) == len(cells)
    assert set(space.paper.cells) == {cell_key(c) for c in cells}
    for cell in cells:
        value = space.cell_paper_value(cell)  # a dict or an explicit None, never a KeyError
        assert value is None or ("top1" in value and "top1_std" in value)
        # base keys in the cell are ignored
        assert space.cell_paper_value({**space.base, **cell}) == value


def test_cell_order_is_stable():
    for name in GRID_COUNTS:
        assert get_space(name).grid_cells() == get_space(name).grid_cells()


def test_unknown_cell_raises():
    space = get_space("aikd_omega")
    with pytest.raises(KeyError):
        space.cell_paper_value({"method.omega": 0.3})
    with pytest.raises(KeyError):
        space.cell_paper_value({"method.tau_g": 3})


def test_aikd_ablation_tables():
    losses = get_space("aikd_losses")
    assert [c["method.name"] for c in losses.grid_cells()] == [
        "aikd", "aikd_no_adv", "aikd_only_progressive", "aikd_only_guide", "baseline"]
    assert losses.cell_paper_value({"method.name": "aikd_only_guide"})["top1"] == 22.17
    assert "method.name" not in losses.base and losses.base["optim.recipe"] == "aikd"

    omega = get_space("aikd_omega")
    assert [c["method.omega"] for c in omega.grid_cells()] == [0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0]
    assert omega.cell_paper_value({"method.omega": 0})["top1"] == 20.34  # equals Table 4's No Adv
    assert omega.cell_paper_value({"method.omega": 0.1})["top1_std"] == 0.07
    assert "note" in omega.cell_paper_value({"method.omega": 1.0})

    alpha = get_space("aikd_alpha")
    for cell in alpha.grid_cells():
        v = alpha.cell_paper_value(cell)
        assert math.isclose(v["alpha_ce"] + cell["method.alpha_g"] + cell["method.alpha_p"], 1.0)
    assert alpha.cell_paper_value({"method.alpha_g": 0.3, "method.alpha_p": 0.1})["top1"] == 22.05
    # tolerant lookup for floats computed elsewhere
    assert alpha.cell_paper_value({"method.alpha_g": 0.1 + 1e-15, "method.alpha_p": 0.3})["top1"] == 19.87

    aug = get_space("aikd_augment")
    assert aug.cell_paper_value({"data.augment": "cutmix"})["top1"] == 18.97
    assert aug.base["method.prev_mode"] == "snapshot"


def test_temperature_cells_and_full_grid():
    space = get_space("aikd_temperature")
    cells = {(c["method.tau_g"], c["method.tau_p"]) for c in space.grid_cells()}
    assert cells == {(g, 1) for g in range(1, 8)} | {(3, p) for p in range(1, 8)}
    assert "full_grid" in space.description
    full = get_space("aikd_temperature", full_grid="true")
    assert full.num_samples == len(full.grid_cells()) == 49
    assert cells <= {(c["method.tau_g"], c["method.tau_p"]) for c in full.grid_cells()}
    for s in (space, full):
        published = [c for c in s.grid_cells() if s.cell_paper_value(c) is not None]
        assert published == [{"method.tau_g": 3, "method.tau_p": 1}]


def test_critic_grid():
    space = get_space("aikd_critic")
    for c in space.grid_cells():
        assert c["critic.fc1"] in (16, 32, 64, 128, 256) and c["critic.fc2"] in (8, 16, 32, 64, 128)
        assert c["critic.fc2"] < c["critic.fc1"]
    assert space.cell_paper_value({"critic.fc1": 64, "critic.fc2": 32})["top1"] == 19.87
    assert space.cell_paper_value({"critic.fc1": 128, "critic.fc2": 32}) is None


def test_frskd_grid_and_accuracy_conversion():
    space = get_space("frskd")
    assert space.base["model.name"] == "wrn16_2" and space.base["optim.recipe"] == "frskd"
    cells = [(c["method.alpha"], c["method.beta"], c["method.width"]) for c in space.grid_cells()]
    assert cells[:12] == [(a, b, 2) for a in (1, 2, 3) for b in (50, 100, 200, 500)]
    assert sorted(cells[12:]) == [(2, 100, 1), (2, 100, 3)]
    w2 = space.cell_paper_value({"method.alpha": 2, "method.beta": 100, "method.width": 2})
    w1 = space.cell_paper_value({"method.alpha": 2, "method.beta": 100, "method.width": 1})
    assert w2["top1_acc"] == 73.27 and w2["top1"] == pytest.approx(26.73)
    assert w1["top1_acc"] == 71.70 and w1["top1"] == pytest.approx(28.30)
    assert space.cell_paper_value({"method.alpha": 2, "method.beta": 100, "method.width": 3}) is None
    assert space.cell_paper_value({"method.alpha": 1, "method.beta": 200, "method.width": 2}) is None
    mit = [p for p in space.paper.presets if p["data.dataset"] == "mit67"]
    assert mit and mit[0]["top1_acc"] == 61.74 and (mit[0]["method.alpha"], mit[0]["method.beta"]) == (1, 200)

    tpe = get_space("frskd", searcher="tpe")
    d = tpe.distributions()
    assert (d["method.alpha"].low, d["method.alpha"].high) == (0.5, 4.0)
    assert (d["method.beta"].low, d["method.beta"].high, d["method.beta"].log) == (25.0, 800.0, True)
    assert d["method.width"].choices == (1, 2, 3)
    assert tpe.paper.best == {"method.alpha": 2, "method.beta": 100, "method.width": 2}


def test_cskd_grid_has_no_published_cells():
    space = get_space("cskd")
    cells = {(c["method.temperature"], c["method.lambda_cls"]) for c in space.grid_cells()}
    assert cells == {(t, lam) for t in (1, 4) for lam in (1, 2, 3, 4)}
    assert all(space.cell_paper_value(c) is None for c in space.grid_cells())
    presets = {p["data.dataset"]: p for p in space.paper.presets}
    assert (presets["cifar100"]["top1"], presets["cifar100"]["method.lambda_cls"]) == (21.99, 1)
    assert (presets["cub200"]["top1"], presets["cub200"]["method.lambda_cls"]) == (33.28, 3)
    tpe = get_space("cskd", searcher="tpe")
    d = tpe.distributions()
    assert (d["method.temperature"].low, d["method.temperature"].high) == (1.0, 8.0)
    assert (d["method.lambda_cls"].low, d["method.lambda_cls"].high) == (0.5, 4.0)


def test_compare_cells_and_values():
    space = get_space("compare")
    assert space.base == {"optim.recipe": "aikd"}
    cells = space.grid_cells()
    assert {c["method.name"] for c in cells} == {"baseline", "cskd", "tfkd", "pskd", "aikd"}
    assert {c["model.family"] for c in cells} == {"resnet18", "densenet121"}
    v = space.cell_paper_value({"method.name": "aikd", "data.dataset": "cifar100", "model.family": "resnet18"})
    assert (v["top1"], v["top1_std"], v["top5"], v["f1"], v["ece"], v["ece_ts"]) == (19.87, 0.10, 4.81, 0.801, 14.10,
                                                                                        2.95)
    v = space.cell_paper_value({"method.name": "cskd", "data.dataset": "aircraft", "model.family": "densenet121"})
    assert (v["top1"], v["top5"], v["f1"], v["ece"]) == (17.37, 4.06, 0.826, 3.14) and "ece_ts" not in v
    for c in cells:
        v = space.cell_paper_value(c)
        assert {"top1", "top1_std", "top5", "top5_std", "f1", "f1_std", "ece"} <= set(v)
        assert v["top5"] <= v["top1"] and 0 < v["f1"] < 1


def test_design_space():
    space = get_space("aikd_design")
    assert space.searcher == "tpe" and space.scheduler == "asha"
    grid = get_space("aikd_design", searcher="grid")
    assert grid.num_samples == 4 * 2 * 4 * 2 * 2  # head x input x (norm, bn_mode) x prev_mode x betas
    norm_batching = {(c["critic.norm"], c["critic.bn_mode"]) for c in grid.grid_cells()}
    assert norm_batching == {("batchnorm", "joint"), ("batchnorm", "separate"), ("layernorm", "joint"),
                             ("none", "joint")}
    assert {c["critic.head"] for c in grid.grid_cells()} == {"leaky_mean", "mean", "sum", "linear"}
    sampled = {space.sample(np.random.default_rng(i))["critic.bn_mode"] for i in range(40)}
    assert sampled == {"joint", "separate"}  # the TPE variant searches both batchings too
    assert all(grid.cell_paper_value(c) is None for c in grid.grid_cells())
    assert {tuple(c["critic.betas"]) for c in grid.grid_cells()} == {(0.0, 0.9), (0.9, 0.999)}


def test_ablation_paper_best():
    space = get_space("aikd_ablation")
    assert space.searcher == "tpe" and space.scheduler == "asha" and space.num_samples == 64
    best = space.paper.best
    assert best == {"method.omega": 0.1, "method.tau_g": 3, "method.tau_p": 1, "method.alpha_g": 0.1,
                    "method.alpha_p": 0.3, "critic.fc1": 64, "critic.fc2": 32}
    assert space.cell_paper_value(best)["top1"] == 19.87
    assert space.cell_paper_value({**best, "method.omega": 0.2}) is None


def test_spaces_are_fresh_copies_and_overridable():
    a = get_space("aikd_omega")
    a.base["data.dataset"] = "cub200"
    assert get_space("aikd_omega").base["data.dataset"] == "cifar100"
    b = get_space("aikd_omega").with_base({"data.dataset": "dogs", "model.name": "resnet18"})
    assert b.config({"method.omega": 0.5})["data.dataset"] == "dogs"
    c = dataclasses.replace(get_space("aikd_ablation"), num_samples=8)
    assert c.num_samples == 8


def test_grid_space_without_full_paper_is_rejected():
    grid = Grid("method.omega", (0.0, 0.1))
    good = Paper(source="x", cells={cell_key({"method.omega": 0.0}): None, cell_key({"method.omega": 0.1}): None})
    Space("ok", "", {}, (grid,), searcher="grid", scheduler=None, num_samples=2, paper=good)
    partial = Paper(source="x", cells={cell_key({"method.omega": 0.0}): None})
    with pytest.raises(ValueError):
        Space("bad", "", {}, (grid,), searcher="grid", scheduler=None, num_samples=2, paper=partial)
    with pytest.raises(ValueError):
        Space("bad", "", {}, (grid,), searcher="grid", scheduler=None, num_samples=3, paper=good)


def test_no_forbidden_imports():
    """spaces must stay importable without Ray, MLflow or the (concurrently written) training library."""
    import ast
    import pathlib

    for path in pathlib.Path(spaces.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = [node.module.split(".")[0]]
            else:
                continue
            assert not {"ray", "mlflow", "aikd", "torch"} & set(roots), (path.name, roots)


@pytest.mark.parametrize("name, options", VARIANTS)
def test_spaces_pickle_round_trip(name, options):
    """Ray ships the space (inside a define-by-run closure) to other processes."""
    import pickle

    space = get_space(name, **options)
    clone = pickle.loads(pickle.dumps(space))
    assert clone == space
    assert clone.sample(np.random.default_rng(3)) == space.sample(np.random.default_rng(3))


PAPER_TABLE_SPACES = ["aikd_losses", "aikd_omega", "aikd_alpha", "aikd_temperature", "aikd_critic", "aikd_augment",
                      "frskd", "cskd", "compare"]


@pytest.mark.parametrize("name, options", VARIANTS)
def test_paper_table_grids_default_to_the_paper_protocol(name, options):
    space = get_space(name, **options)
    paper = name in PAPER_TABLE_SPACES and space.is_grid
    assert space.protocol == ("paper" if paper else "search")
    assert space.metric == ("test_error" if paper else "val_error")


def test_with_protocol_moves_the_metric_to_the_protocols_split():
    omega = get_space("aikd_omega")
    searched = omega.with_protocol("search")
    assert (searched.protocol, searched.metric) == ("search", "val_error")
    back = searched.with_protocol("paper")
    assert (back.protocol, back.metric) == ("paper", "test_error") and back.grid_cells() == omega.grid_cells()
    assert spaces.protocol_metric("val_ece", "paper") == "test_ece"
    assert spaces.protocol_metric("test_f1", "search") == "val_f1"
    assert spaces.protocol_metric("train_loss", "paper") == "train_loss"
    with pytest.raises(ValueError, match="grid"):  # nothing may select or stop on test metrics
        get_space("aikd_ablation").with_protocol("paper")
    with pytest.raises(ValueError, match="protocol"):
        omega.with_protocol("final")
    with pytest.raises(ValueError, match="test metric"):
        dataclasses.replace(omega, metric="val_error")
