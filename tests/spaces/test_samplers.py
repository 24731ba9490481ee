"""Parameter types and their mapping functions (SPEC 11.2, 12 items 41-43)."""

import math

import numpy as np
import optuna
import pytest
from scipy import stats

from spaces import (
    Categorical,
    Float,
    Grid,
    Int,
    Ratio,
    Simplex,
    ZeroInflatedLogUniform,
    get_space,
    simplex_from_uniforms,
    zlog_value,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

N = 10_000


# -- item 41: simplex ----------------------------------------------------------------------------------------


def test_simplex_bounds_sum_and_beta_marginals():
    rng = np.random.default_rng(12345)
    param = Simplex()
    raw = [param.components({n: rng.random() for n in param.raw_names}) for _ in range(N)]
    ce = np.array([r["method.alpha_ce"] for r in raw])
    g = np.array([r["method.alpha_g"] for r in raw])
    p = np.array([r["method.alpha_p"] for r in raw])
    assert ce.min() >= 0.5 and g.min() >= 0.0 and p.min() >= 0.0
    assert np.abs(ce + g + p - 1.0).max() <= 1e-9
    beta12 = stats.beta(1, 2).cdf
    for x in ((ce - 0.5) / 0.5, g / 0.5, p / 0.5):
        assert stats.kstest(x, beta12).pvalue > 1e-3


def test_simplex_sample_stores_only_g_and_p():
    out = Simplex().sample(np.random.default_rng(0))
    assert set(out) == {"method.alpha_g", "method.alpha_p"}
    assert out["method.alpha_g"] + out["method.alpha_p"] <= 0.5 + 1e-12


def test_simplex_vectorised_matches_scalar_and_edges():
    u1, u2 = np.random.default_rng(1).random((2, 50))
    vec = simplex_from_uniforms(u1, u2, (0.5, 0.0, 0.0))
    for i in range(50):
        scalar = simplex_from_uniforms(u1[i], u2[i], (0.5, 0.0, 0.0))
        assert all(math.isclose(s, v[i], abs_tol=1e-15) for s, v in zip(scalar, vec))
    # the extreme uniforms stay on the constrained simplex
    for a, b in [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.999999, 0.999999)]:
        ce, g, p = simplex_from_uniforms(a, b, (0.5, 0.0, 0.0))
        assert ce >= 0.5 and g >= 0 and p >= 0 and abs(ce + g + p - 1) <= 1e-12
    # u1 = 0 gives d1 = 0 (alpha_ce at its bound); u2 = 0.5 then splits the free mass evenly
    ce, g, p = simplex_from_uniforms(0.0, 0.5, (0.5, 0.0, 0.0))
    assert ce == 0.5 and math.isclose(g, 0.25) and math.isclose(p, 0.25)


@pytest.mark.parametrize("lower", [(0.0, 0.0), (0.5, 0.6, 0.0), (-0.1, 0.5, 0.0), (0.4, 0.4, 0.4)])
def test_simplex_rejects_bad_bounds(lower):
    with pytest.raises(ValueError):
        simplex_from_uniforms(0.3, 0.3, lower)


# -- item 42: zero-inflated log-uniform ----------------------------------------------------------------------


def test_zlog_zero_share_and_log_uniform_tail():
    u = np.random.default_rng(2024).random(N)
    omega = zlog_value(u, 1e-3, 1.0, 0.125)
    zero_share = np.mean(omega == 0.0)
    assert abs(zero_share - 0.125) <= 0.01
    nz = omega[omega > 0]
    assert nz.min() >= 1e-3 - 1e-15 and nz.max() <= 1.0
    lo, hi = math.log(1e-3), 0.0
    assert stats.kstest(np.log(nz), stats.uniform(loc=lo, scale=hi - lo).cdf).pvalue > 1e-3


def test_zlog_scalar_formula_and_edges():
    assert zlog_value(0.0, 1e-3, 1.0, 0.125) == 0.0
    assert zlog_value(0.1249, 1e-3, 1.0, 0.125) == 0.0
    assert math.isclose(zlog_value(0.125, 1e-3, 1.0, 0.125), 1e-3)
    assert math.isclose(zlog_value(1.0, 1e-3, 1.0, 0.125), 1.0)
    u = 0.5
    expected = 1e-3 * (1.0 / 1e-3) ** ((u - 0.125) / (1 - 0.125))
    assert math.isclose(zlog_value(u, 1e-3, 1.0, 0.125), expected, rel_tol=1e-12)
    assert isinstance(zlog_value(u, 1e-3, 1.0, 0.125), float)
    with pytest.raises(ValueError):
        zlog_value(0.5, 0.0, 1.0, 0.1)
    with pytest.raises(ValueError):
        zlog_value(0.5, 1e-3, 1.0, 1.0)


def test_zlog_param_raw_name_and_mapping():
    p = ZeroInflatedLogUniform("method.omega", 1e-3, 1.0, p_zero=0.125)
    assert list(p.distributions()) == ["method.omega__u"]
    assert p.map({"method.omega__u": 0.0}) == {"method.omega": 0.0}
    assert p.outputs == ("method.omega",)


# -- item 43: critic widths ----------------------------------------------------------------------------------


def test_ablation_critic_widths_divide():
    space = get_space("aikd_ablation")
    rng = np.random.default_rng(7)
    seen = set()
    for _ in range(2000):
        cfg = space.sample(rng)
        fc1, fc2 = cfg["critic.fc1"], cfg["critic.fc2"]
        assert fc2 < fc1 and fc1 % fc2 == 0
        seen.add((fc1, fc2))
    assert len(seen) == 12  # 4 fc1 x 3 ratios, all reachable


def test_ratio_needs_its_width():
    r = Ratio()
    assert r.map({"critic.fc2__r": 4}, {"critic.fc1": 128}) == {"critic.fc2": 32}
    with pytest.raises(KeyError):
        r.map({"critic.fc2__r": 4}, {})
    with pytest.raises(ValueError):
        Ratio(ratios=(1, 2))


# -- other parameter types -----------------------------------------------------------------------------------


def test_float_int_categorical_sampling_ranges():
    rng = np.random.default_rng(3)
    f = Float("method.beta", 25.0, 800.0, log=True)
    i = Int("method.tau_g", 1, 7)
    c = Categorical("critic.betas", [(0.0, 0.9), (0.9, 0.999)])
    fs = [f.sample(rng)["method.beta"] for _ in range(2000)]
    ints = {i.sample(rng)["method.tau_g"] for _ in range(500)}
    cs = {c.sample(rng)["critic.betas"] for _ in range(100)}
    assert 25.0 <= min(fs) and max(fs) <= 800.0
    assert stats.kstest(np.log(fs), stats.uniform(math.log(25), math.log(32)).cdf).pvalue > 1e-3
    assert ints == set(range(1, 8))
    assert cs == {(0.0, 0.9), (0.9, 0.999)}
    # non-primitive choices go through string labels and map back
    assert c.distributions()["critic.betas"].choices == ("0.0,0.9", "0.9,0.999")
    assert c.map({"critic.betas": "0.9,0.999"}) == {"critic.betas": (0.9, 0.999)}


def test_joint_grid_cells_and_labels():
    g = Grid(("critic.fc1", "critic.fc2"), [(64, 32), (128, 16)])
    assert g.cells() == [{"critic.fc1": 64, "critic.fc2": 32}, {"critic.fc1": 128, "critic.fc2": 16}]
    (name, dist), = g.distributions().items()
    assert "__" in name and dist.choices == ("64,32", "128,16")
    assert g.map({name: "128,16"}) == {"critic.fc1": 128, "critic.fc2": 16}
    with pytest.raises(ValueError):
        Grid(("critic.fc1", "critic.fc2"), [(64, 32), 16])
    with pytest.raises(ValueError):
        Grid("method.omega", [0.1, 0.1])


# -- a real Optuna study -------------------------------------------------------------------------------------


def _check_ablation_config(cfg):
    g, p = cfg["method.alpha_g"], cfg["method.alpha_p"]
    assert g >= 0 and p >= 0 and 1.0 - g - p >= 0.5 - 1e-12
    om = cfg["method.omega"]
    assert om == 0.0 or 1e-3 - 1e-15 <= om <= 1.0
    for k in ("method.tau_g", "method.tau_p"):
        assert isinstance(cfg[k], int) and 1 <= cfg[k] <= 7
    assert cfg["critic.fc1"] in (32, 64, 128, 256)
    assert cfg["critic.fc2"] < cfg["critic.fc1"] and cfg["critic.fc1"] % cfg["critic.fc2"] == 0


def test_optuna_tpe_study_on_ablation_gives_valid_configs():
    space = get_space("aikd_ablation")
    configs = []

    def objective(trial):
        cfg = space.suggest(trial)
        configs.append(cfg)
        # a smooth fake objective with its optimum near the paper's setting
        return (
            (math.log10(cfg["method.omega"] + 1e-4) + 1) ** 2
            + (cfg["method.tau_g"] - 3) ** 2
            + (cfg["method.alpha_p"] - 0.3) ** 2
        )

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(objective, n_trials=30)
    assert len(configs) == 30
    for cfg in configs:
        _check_ablation_config(cfg)
    # the raw params recorded by optuna map back to the same config
    for trial, cfg in zip(study.trials, configs):
        assert space.map_raw(trial.params) == cfg
    assert set(study.best_params) == set(space.raw_names())


def test_ask_with_fixed_distributions_and_random_sampling():
    space = get_space("aikd_ablation")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        trial = study.ask(space.distributions())
        _check_ablation_config(space.map_raw(trial.params))
        study.tell(trial, 0.0)
    rng = np.random.default_rng(0)
    for _ in range(200):
        _check_ablation_config(space.sample(rng))
    assert space.sample(np.random.default_rng(5)) == space.sample(np.random.default_rng(5))


def test_grid_sampler_enumerates_every_cell_once():
    space = get_space("aikd_critic")
    seen = []

    def objective(trial):
        seen.append(space.suggest(trial))
        return 0.0

    study = optuna.create_study(sampler=optuna.samplers.GridSampler(space.optuna_grid(), seed=0))
    study.optimize(objective, n_trials=space.num_samples)
    key = lambda c: (c["critic.fc1"], c["critic.fc2"])  # noqa: E731
    assert sorted(map(key, seen)) == sorted(map(key, space.grid_cells()))
