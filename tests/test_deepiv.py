"""Deep IV, the control-function IV, the baselines and the instrument validity check on
self-contained synthetic data.

The data have a known response g(t, x), a hidden confounder u in both t and y, and an instrument
z that moves t only: the naive regression is biased, the two IV estimators are not.
"""

from __future__ import annotations

import numpy as np
import pytest

from inference.deepiv import (
    ControlFunctionIV,
    DeepIV,
    DeepIVConfig,
    IVEnsemble,
    NaiveNeuralRegression,
    TwoStageLeastSquares,
    instrument_validity,
    load_iv_estimator,
)

SMALL = DeepIVConfig(
    first_hidden=(32, 16), second_hidden=(32, 16), max_epochs=25, patience=5, batch_size=256, n_components=3
)


def confounded(n: int, seed: int = 0, direct: float = 0.0):
    """y = g(t, x) + u + noise (+ direct * sin(3 z): an invalid instrument), t = z + 0.3 x0 + 0.8 u + noise."""
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, 2))
    u, z = r.normal(size=n), r.normal(size=n)
    t = z + 0.3 * x[:, 0] + 0.8 * u + 0.5 * r.normal(size=n)
    slope = 0.3 + 0.15 * np.tanh(x[:, 1])  # heterogeneous: the effect depends on x

    def g(t, x):
        return (0.3 + 0.15 * np.tanh(x[:, 1])) * t + x[:, 0]

    y = slope * t + x[:, 0] + u + 0.3 * r.normal(size=n) + direct * np.sin(3 * z)
    return t, x, z, y, g


def fei_error(est, x, g, grid=np.linspace(-1.5, 1.5, 7)) -> float:
    errs = []
    for t0 in grid:
        t = np.full(len(x), t0)
        true = (g(t + 1e-4, x) - g(t - 1e-4, x)) / 2e-4
        errs.append(np.abs(est.marginal_effect(treatment=t, covariates=x) - true).mean())
    return float(np.mean(errs))


@pytest.fixture(scope="module")
def data():
    return confounded(6000)


@pytest.fixture(scope="module")
def fitted(data):
    t, x, z, y, _ = data
    return DeepIV(SMALL).fit(treatment=t, covariates=x, instruments=z, outcome=y)


@pytest.fixture(scope="module")
def naive(data):
    t, x, _, y, _ = data
    return NaiveNeuralRegression(SMALL).fit(treatment=t, covariates=x, outcome=y)


@pytest.mark.slow
def test_deep_iv_beats_naive_regression_under_confounding(data, fitted, naive):
    t, x, z, y, g = data
    e_iv, e_naive = fei_error(fitted, x[:1000], g), fei_error(naive, x[:1000], g)
    # the naive slope is biased by cov(t, u) / var(t) ~ 0.38; Deep IV removes most of it
    assert e_naive > 0.25, e_naive
    assert e_iv < 0.5 * e_naive, (e_iv, e_naive)
    assert fitted.first_stage_r2(treatment=t, covariates=x, instruments=z) > 0.4


def test_two_stage_least_squares_recovers_a_constant_slope():
    r = np.random.default_rng(1)
    n = 20000
    x, u, z = r.normal(size=(n, 2)), r.normal(size=n), r.normal(size=n)
    t = z + 0.5 * x[:, 0] + u + 0.3 * r.normal(size=n)
    y = 0.4 * t + x @ np.array([1.0, -0.5]) + u + 0.3 * r.normal(size=n)
    est = TwoStageLeastSquares().fit(treatment=t, covariates=x, instruments=z, outcome=y)
    me = est.marginal_effect(treatment=t[:5], covariates=x[:5])
    assert me.shape == (5,) and np.allclose(me, me[0])
    assert abs(me[0] - 0.4) < 0.03
    assert est.predict(treatment=t, covariates=x).shape == (n,)


def test_predict_and_marginal_effect_agree(fitted, data):
    t, x, *_ = data
    eps = 1e-3
    up = fitted.predict(treatment=t[:200] + eps, covariates=x[:200])
    dn = fitted.predict(treatment=t[:200] - eps, covariates=x[:200])
    assert np.allclose(
        (up - dn) / (2 * eps), fitted.marginal_effect(treatment=t[:200], covariates=x[:200]), atol=2e-3
    )


def test_state_round_trip_gives_identical_predictions(fitted, data):
    t, x, *_ = data
    again = DeepIV.from_state(fitted.state())
    assert np.array_equal(
        again.predict(treatment=t[:50], covariates=x[:50]),
        fitted.predict(treatment=t[:50], covariates=x[:50]),
    )


@pytest.mark.slow
def test_instrument_validity_gamma_near_zero_when_valid_and_positive_when_not(fitted, data):
    t, x, z, y, _ = data
    gamma_valid = instrument_validity(y - fitted.predict(treatment=t, covariates=x), x, z)
    t2, x2, z2, y2, _ = confounded(6000, direct=0.5)  # z also enters the outcome directly
    bad = DeepIV(SMALL).fit(treatment=t2, covariates=x2, instruments=z2, outcome=y2)
    gamma_invalid = instrument_validity(y2 - bad.predict(treatment=t2, covariates=x2), x2, z2)
    assert abs(gamma_valid) < 0.02, gamma_valid
    assert gamma_invalid > 0.05, gamma_invalid


@pytest.fixture(scope="module")
def fitted_cf(data):
    t, x, z, y, _ = data
    return ControlFunctionIV(SMALL).fit(treatment=t, covariates=x, instruments=z, outcome=y)


def test_control_function_beats_naive_regression_under_confounding(data, fitted_cf, naive):
    t, x, z, y, g = data
    e_cf, e_naive = fei_error(fitted_cf, x[:1000], g), fei_error(naive, x[:1000], g)
    assert e_naive > 0.25, e_naive
    assert e_cf < 0.4 * e_naive, (e_cf, e_naive)
    # k(V) took the confounding: u enters y with weight 1 and V ~ (0.8 u + 0.5 e) / 0.94
    assert 0.6 < fitted_cf.history["control_slope"] * fitted_cf.y_scaler.std[0] < 1.1, fitted_cf.history
    # predict is E[y | do(t), x]: over the sample it averages to the outcome's mean
    assert abs(fitted_cf.predict(treatment=t, covariates=x).mean() - y.mean()) < 0.05


def test_control_function_excluding_a_covariate_the_treatment_causes():
    """m follows the treatment (like ``verified`` follows follower count) and moves y; h holds it
    fixed. Left in the first stage, it makes the control variable depend on m and the slope
    biased; left out, the slope is recovered."""
    r = np.random.default_rng(3)
    n = 20000
    u, z, x0 = r.normal(size=n), r.normal(size=n), r.normal(size=n)
    t = z + 1.2 * u + 0.5 * r.normal(size=n)
    m = (r.random(n) < 1 / (1 + np.exp(-3 * (t - 1)))).astype(float)
    y = 0.4 * t + 0.6 * m + 0.5 * x0 + u + 0.3 * r.normal(size=n)
    x = np.column_stack([x0, m])
    slopes = {}
    for excl in ((), (1,)):
        est = ControlFunctionIV(SMALL, first_stage_exclude=excl).fit(
            treatment=t, covariates=x, instruments=z, outcome=y
        )
        slopes[excl] = float(est.marginal_effect(treatment=t, covariates=x).mean())
    assert abs(slopes[(1,)] - 0.4) < 0.08, slopes
    assert abs(slopes[()] - 0.4) > abs(slopes[(1,)] - 0.4), slopes


def test_first_stage_exclude_is_checked():
    t, x, z, y, _ = confounded(100)
    with pytest.raises(ValueError, match="first_stage_exclude: columns \\[5\\]"):
        ControlFunctionIV(SMALL, first_stage_exclude=(5,)).fit(
            treatment=t, covariates=x, instruments=z, outcome=y
        )
    with pytest.raises(ValueError, match="is for ControlFunctionIV"):
        DeepIV(SMALL, first_stage_exclude=(1,)).fit(treatment=t, covariates=x, instruments=z, outcome=y)


def test_load_iv_estimator_restores_the_class_that_saved_it(fitted, fitted_cf, data):
    t, x, *_ = data
    for est in (fitted, fitted_cf):
        again = load_iv_estimator(est.state())
        assert type(again) is type(est)
        assert np.array_equal(
            again.marginal_effect(treatment=t[:50], covariates=x[:50]),
            est.marginal_effect(treatment=t[:50], covariates=x[:50]),
        )
    with pytest.raises(ValueError, match="unknown IV estimator kind 'Nope'"):
        load_iv_estimator({**fitted.state(), "kind": "Nope"})


def test_ensemble_averages_members_with_their_own_seeds_and_round_trips(data):
    t, x, z, y = (a[:2000] for a in data[:4])
    ens = IVEnsemble.of(ControlFunctionIV, SMALL, 2)
    assert [m.cfg.seed for m in ens.members] == [SMALL.seed, SMALL.seed + 1]
    ens.fit(treatment=t, covariates=x, instruments=z, outcome=y)
    tb, xb = t[:200], x[:200]
    each = np.array([m.marginal_effect(treatment=tb, covariates=xb) for m in ens.members])
    assert not np.allclose(each[0], each[1])  # the seeds gave different fits
    # member 0 is the single estimator with the ensemble's seed
    single = ControlFunctionIV(SMALL).fit(treatment=t, covariates=x, instruments=z, outcome=y)
    assert np.allclose(each[0], single.marginal_effect(treatment=tb, covariates=xb))
    assert np.allclose(ens.marginal_effect(treatment=tb, covariates=xb), each.mean(0))
    assert np.allclose(
        ens.predict(treatment=tb, covariates=xb),
        np.mean([m.predict(treatment=tb, covariates=xb) for m in ens.members], 0),
    )
    again = load_iv_estimator(ens.state())
    assert type(again) is IVEnsemble and len(again.members) == 2
    assert np.array_equal(
        again.marginal_effect(treatment=tb, covariates=xb), ens.marginal_effect(treatment=tb, covariates=xb)
    )
    assert len(ens.history["members"]) == 2 and ens.cfg == ens.members[0].cfg
    assert 0 < ens.first_stage_r2(treatment=t, covariates=x, instruments=z) < 1
    with pytest.raises(ValueError, match="at least one member"):
        IVEnsemble.of(ControlFunctionIV, SMALL, 0)


@pytest.mark.parametrize("cls", [DeepIV, ControlFunctionIV, NaiveNeuralRegression, TwoStageLeastSquares])
def test_input_validation_says_what_is_wrong(cls):
    t, x, z, y, _ = confounded(100)
    est = cls(SMALL) if cls is not TwoStageLeastSquares else cls()
    with pytest.raises(RuntimeError, match="not fitted"):
        est.predict(treatment=t, covariates=x)
    with pytest.raises(ValueError, match="outcome: expected 100 rows"):
        est.fit(treatment=t, covariates=x, instruments=z, outcome=y[:-1])
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="covariates: 1 NaN"):
        est.fit(treatment=t, covariates=bad, instruments=z, outcome=y)
    with pytest.raises(ValueError, match=r"treatment: expected shape \(N,\)"):
        est.fit(treatment=np.zeros((100, 2)), covariates=x, instruments=z, outcome=y)
    est.fit(treatment=t, covariates=x, instruments=z, outcome=y)
    with pytest.raises(ValueError, match="covariates: expected 2 columns"):
        est.predict(treatment=t, covariates=x[:, :1])
    with pytest.raises(ValueError, match="covariates: expected 100 rows"):
        est.marginal_effect(treatment=t, covariates=x[:50])


def test_deep_iv_needs_an_instrument():
    t, x, _, y, _ = confounded(100)
    with pytest.raises(ValueError, match="instruments is required"):
        DeepIV(SMALL).fit(treatment=t, covariates=x, instruments=None, outcome=y)


def test_level_only_columns_move_the_level_not_the_effect():
    """``level_only`` covariates reach h through a linear level term: rows that differ only there
    get the same dh/dt, the level they add is learned, and the state round-trips."""
    from dataclasses import replace

    t, x, z, y, g = confounded(6000, seed=3)
    r = np.random.default_rng(3)
    lev = r.normal(size=(len(t), 3))
    y = y + 0.8 * lev[:, 0] - 0.5 * lev[:, 2]  # content that earns impressions, at every t
    xa = np.column_stack([x, lev])
    cfg = replace(SMALL, level_only=(2, 3, 4), dropout=0.0, seed=1)
    est = ControlFunctionIV(cfg).fit(treatment=t, covariates=xa, instruments=z, outcome=y)
    other = xa.copy()
    other[:, 2:] = r.normal(size=(len(t), 3))
    t0 = np.full(len(t), 0.5)
    me = est.marginal_effect(treatment=t0, covariates=xa)
    np.testing.assert_allclose(est.marginal_effect(treatment=t0, covariates=other), me, rtol=1e-5, atol=1e-6)
    moved = est.predict(treatment=t0, covariates=other) - est.predict(treatment=t0, covariates=xa)
    true = 0.8 * (other[:, 2] - xa[:, 2]) - 0.5 * (other[:, 4] - xa[:, 4])
    assert np.corrcoef(moved, true)[0, 1] > 0.98
    assert fei_error(est, xa, lambda t, xx: g(t, xx[:, :2])) < 0.1
    back = load_iv_estimator(est.state())
    np.testing.assert_allclose(
        back.predict(treatment=t0, covariates=other), est.predict(treatment=t0, covariates=other), rtol=1e-5
    )
    with pytest.raises(ValueError, match="level_only"):
        ControlFunctionIV(replace(SMALL, level_only=(7,))).fit(
            treatment=t, covariates=xa, instruments=z, outcome=y
        )
