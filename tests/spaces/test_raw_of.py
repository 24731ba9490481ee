"""User-facing values to raw sampler coordinates (`Param.raw_of`, `Space.raw_of`): the inverse of `map_raw`, checked
by formula and as round trips (issue 17: warm starts enqueue the paper's configuration as raw coordinates), and the
user-facing distributions the report's plots are computed over."""

import math

import numpy as np
import pytest

from spaces import (
    Categorical,
    Float,
    Grid,
    InexpressibleError,
    Int,
    Ratio,
    Simplex,
    ZeroInflatedLogUniform,
    get_space,
    list_spaces,
)
from spaces.base import same_value

TPE_SPACES = [("aikd_ablation", {}), ("aikd_design", {}), ("frskd", {"searcher": "tpe"}),
              ("cskd", {"searcher": "tpe"})]


def _expect(err, *keys):
    assert isinstance(err.value, InexpressibleError) and isinstance(err.value, ValueError)
    assert set(keys) <= set(err.value.keys), (keys, err.value.keys)
    assert "\n" not in str(err.value)


# -- each parameter kind, by formula --------------------------------------------------------------------------

def test_zlog_inverse_by_formula_and_at_its_edges():
    p = ZeroInflatedLogUniform("method.omega", 1e-3, 1.0, p_zero=0.125)
    # v in [low, high]: u = p0 + (1 - p0) * log(v / low) / log(high / low)
    for v in (1e-3, 0.01, 0.1, 0.5, 1.0):
        u = p.raw_of({"method.omega": v})["method.omega__u"]
        assert u == pytest.approx(0.125 + 0.875 * math.log(v / 1e-3) / math.log(1e3), abs=1e-15)
        assert p.map({"method.omega__u": u})["method.omega"] == pytest.approx(v, rel=1e-12)
    assert p.raw_of({"method.omega": 1e-3})["method.omega__u"] == 0.125  # low sits exactly at p_zero
    assert p.raw_of({"method.omega": 1.0})["method.omega__u"] == 1.0
    zero = p.raw_of({"method.omega": 0})["method.omega__u"]
    assert zero == 0.0625 and p.map({"method.omega__u": zero})["method.omega"] == 0.0  # middle of the zero mass
    for bad in (5e-4, 1.5, -0.1):
        with pytest.raises(ValueError) as e:
            p.raw_of({"method.omega": bad})
        _expect(e, "method.omega")
    with pytest.raises(ValueError) as e:
        ZeroInflatedLogUniform("w", 0.01, 1.0, p_zero=0.0).raw_of({"w": 0.0})
    _expect(e, "w")


def test_simplex_inverse_by_formula_and_at_its_corners():
    p = Simplex()
    # (a_CE, a_G, a_P) = (0.6, 0.1, 0.3): d = (0.2, 0.2, 0.6); u1 = 1 - (1 - 0.2)^2 = 0.36; u2 = 0.2 / 0.8 = 0.25
    raw = p.raw_of({"method.alpha_g": 0.1, "method.alpha_p": 0.3})
    assert raw == {"method.alpha_simplex__u1": pytest.approx(0.36, abs=1e-15),
                   "method.alpha_simplex__u2": pytest.approx(0.25, abs=1e-15)}
    corners = {(1.0, 0.0, 0.0): (1.0, 0.0), (0.5, 0.5, 0.0): (0.0, 1.0), (0.5, 0.0, 0.5): (0.0, 0.0)}
    for (ce, g, pp), (u1, u2) in corners.items():
        raw = p.raw_of({"method.alpha_ce": ce, "method.alpha_g": g, "method.alpha_p": pp})
        assert (raw["method.alpha_simplex__u1"], raw["method.alpha_simplex__u2"]) == pytest.approx((u1, u2))
        assert p.components(raw) == pytest.approx({"method.alpha_ce": ce, "method.alpha_g": g, "method.alpha_p": pp})
    # any two weights will do: the third is implied
    assert p.raw_of({"method.alpha_ce": 0.6, "method.alpha_g": 0.1}) == pytest.approx(
        p.raw_of({"method.alpha_g": 0.1, "method.alpha_p": 0.3}))
    rng = np.random.default_rng(4)
    for _ in range(500):
        want = p.map({n: rng.random() for n in p.raw_names})
        assert p.map(p.raw_of(want)) == pytest.approx(want, abs=1e-12)
    for values, keys in [({"method.alpha_g": 0.4, "method.alpha_p": 0.4}, ("method.alpha_g",)),  # a_CE 0.2 < 0.5
                         ({"method.alpha_g": -0.1, "method.alpha_p": 0.3}, ("method.alpha_g",)),
                         ({"method.alpha_ce": 0.6, "method.alpha_g": 0.1, "method.alpha_p": 0.2}, ()),  # sum 0.9
                         ({"method.alpha_g": 0.1}, ())]:
        with pytest.raises(ValueError) as e:
            p.raw_of(values)
        _expect(e, *keys)


def test_ratio_inverse_divides_the_width_it_is_given():
    p = Ratio("critic.fc2", of="critic.fc1", ratios=(2, 4, 8))
    for fc1 in (32, 64, 128, 256):
        for r in (2, 4, 8):
            raw = p.raw_of({"critic.fc2": fc1 // r}, {"critic.fc1": fc1})
            assert raw == {"critic.fc2__r": r} and p.map(raw, {"critic.fc1": fc1}) == {"critic.fc2": fc1 // r}
    with pytest.raises(ValueError, match=r"possible: \[8, 16, 32\]") as e:
        p.raw_of({"critic.fc2": 48}, {"critic.fc1": 64})
    _expect(e, "critic.fc2")
    with pytest.raises(ValueError) as e:
        p.raw_of({"critic.fc2": 32}, {})
    _expect(e, "critic.fc1")


def test_float_int_categorical_inverses():
    f = Float("method.alpha", 0.5, 4.0)
    assert f.raw_of({"method.alpha": 0.5}) == {"method.alpha": 0.5}
    assert f.raw_of({"method.alpha": 4}) == {"method.alpha": 4.0}
    assert f.raw_of({"method.alpha": 4.0 + 1e-13}) == {"method.alpha": 4.0}  # rounding only: onto the bound
    i = Int("method.tau_g", 1, 7)
    assert i.raw_of({"method.tau_g": 3.0}) == {"method.tau_g": 3} and i.raw_of({"method.tau_g": 7}) == {
        "method.tau_g": 7}
    c = Categorical("critic.fc1", (32, 64, 128, 256))
    assert c.raw_of({"critic.fc1": 64}) == {"critic.fc1": 64} and c.raw_of({"critic.fc1": 64.0}) == {"critic.fc1": 64}
    betas = Categorical("critic.betas", ((0.0, 0.9), (0.9, 0.999)))
    assert betas.raw_of({"critic.betas": [0.9, 0.999]}) == {"critic.betas": "0.9,0.999"}
    joint = Grid(("method.tau_g", "method.tau_p"), ((3, 1), (2, 1)))
    assert joint.raw_of({"method.tau_g": 2, "method.tau_p": 1}) == {"method.tau_g+method.tau_p__cell": "2,1"}
    for param, values, key in [(f, {"method.alpha": 4.5}, "method.alpha"), (f, {"method.alpha": "x"}, "method.alpha"),
                               (i, {"method.tau_g": 3.5}, "method.tau_g"), (i, {"method.tau_g": 0}, "method.tau_g"),
                               (c, {"critic.fc1": 48}, "critic.fc1"), (c, {}, "critic.fc1"),
                               (joint, {"method.tau_g": 3, "method.tau_p": 2}, "method.tau_p")]:
        with pytest.raises(ValueError) as e:
            param.raw_of(values)
        _expect(e, key)


# -- whole spaces ---------------------------------------------------------------------------------------------

def _same(got: dict, want: dict) -> bool:
    return got.keys() == want.keys() and all(same_value(got[k], want[k]) for k in want)


def _corner(dist, end: int):
    """A corner of the raw box: the low (end 0) or high (end 1) bound, or the first or last choice."""
    if hasattr(dist, "choices"):
        return dist.choices[-end]
    return dist.high if end else dist.low


@pytest.mark.parametrize("name,options", TPE_SPACES)
def test_space_raw_of_round_trips_map_raw(name, options):
    """map_raw(raw_of(x)) == x for random configurations of every searchable space, and at the raw box's corners."""
    space = get_space(name, **options)
    rng = np.random.default_rng(17)
    dists = space.distributions()
    for _ in range(300):
        want = space.sample(rng)
        raw = space.raw_of(want)
        assert set(raw) == set(dists) and all(d._contains(d.to_internal_repr(raw[k])) for k, d in dists.items())
        assert _same(space.map_raw(raw), want)
    for end in (0, 1):
        want = space.map_raw({n: _corner(d, end) for n, d in dists.items()})
        assert _same(space.map_raw(space.raw_of(want)), want)


def test_ablation_raw_of_the_papers_best_and_omega_zero():
    space = get_space("aikd_ablation")
    raw = space.raw_of(space.paper.best)
    assert raw["critic.fc2__r"] == 2 and raw["method.tau_g"] == 3 and raw["critic.fc1"] == 64
    assert raw["method.omega__u"] == pytest.approx(0.125 + 0.875 * 2 / 3)
    assert space.map_raw(raw) == pytest.approx(space.paper.best)
    zero = space.raw_of({**space.paper.best, "method.omega": 0.0})
    assert space.map_raw(zero)["method.omega"] == 0.0
    # a key the space does not search: fine when the base holds that value, an error otherwise
    assert space.raw_of({**space.paper.best, "method.name": "aikd"}) == raw
    with pytest.raises(ValueError, match="not searched") as e:
        space.raw_of({**space.paper.best, "method.name": "baseline"})
    _expect(e, "method.name")
    with pytest.raises(ValueError) as e:  # every problem at once
        space.raw_of({**space.paper.best, "critic.fc2": 48, "method.tau_p": 9})
    _expect(e, "critic.fc2", "method.tau_p")


def test_user_values_add_the_implied_weight_and_round_for_display():
    space = get_space("aikd_ablation")
    raw = space.raw_of(space.paper.best)
    values = space.user_values(raw)
    assert list(values) == list(space.user_keys())
    assert values == {**space.paper.best, "method.alpha_ce": 0.6}  # exactly: 0.1, not 0.10000000000000006
    assert space.user_keys() == ("method.omega", "method.tau_g", "method.tau_p", "method.alpha_ce", "method.alpha_g",
                                 "method.alpha_p", "critic.fc1", "critic.fc2")


@pytest.mark.parametrize("name,options", TPE_SPACES)
def test_user_distributions_hold_every_user_value(name, options):
    """What the report's importance / parallel-coordinate plots are computed on: one distribution per config key the
    space writes (no raw coordinate), containing the value of every sample."""
    space = get_space(name, **options)
    dists = space.user_distributions()
    assert tuple(dists) == space.outputs() and not any("__" in k for k in dists)
    rng = np.random.default_rng(2)
    for _ in range(200):
        raw = {n: v for n, v in space.raw_of(space.sample(rng)).items()}
        params = space.user_params(raw)
        assert set(params) == set(dists)
        for k, v in params.items():
            assert dists[k]._contains(dists[k].to_internal_repr(v)), (k, v, dists[k])


def test_ablation_user_distributions():
    d = get_space("aikd_ablation").user_distributions()
    assert (d["method.omega"].low, d["method.omega"].high, d["method.omega"].log) == (0.0, 1.0, False)
    assert (d["method.alpha_g"].low, d["method.alpha_g"].high) == (0.0, 0.5)
    assert d["critic.fc1"].choices == (32, 64, 128, 256)
    assert d["critic.fc2"].choices == tuple(sorted({a // r for a in (32, 64, 128, 256) for r in (2, 4, 8)}))


def test_every_registered_space_inverts_its_own_samples():
    for name in list_spaces():
        space = get_space(name)
        rng = np.random.default_rng(0)
        for _ in range(20):
            want = space.sample(rng)
            assert _same(space.map_raw(space.raw_of(want)), want)
