"""The GBM head (inference.gbm_head): LAMM's forecast blended with gradient-boosted trees on x[..., H:]."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from inference.daily import NO_VIDEO_FEATURES, PRODUCT_FEATURES, SIDE_DIM
from inference.gbm_head import (
    GbmHead,
    _xy,
    choose_weight,
    fit_gbm_head,
    fit_lightgbm,
    fit_lightgbm_tuned,
    predict_gbm_z,
    tune_settings,
)
from inference.lamm import LammConfig, LammForecaster
from inference.lamm_data import build_day_inputs, load_lamm_data, make_batch, tab_part
from inference.lamm_train import SERVED, TrainConfig, _served_summary, norm_constants, summarize, train_lamm


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from inference.sim import simulate

    root = tmp_path_factory.mktemp("gbm") / "tiny"
    simulate("tiny", seed=3).write_dataset(root)
    return load_lamm_data(root)


@pytest.fixture(scope="module")
def trained(world):
    torch.manual_seed(0)
    # a fixed weight: the tests below check the blend's algebra whatever the held-out products choose
    tc = TrainConfig(epochs=1, bf16=False, gbm_weight=0.5)
    fc, _ = train_lamm(world, LammConfig(), tc, log=lambda *_: None)
    return fc


def test_the_head_learns_the_next_day_from_the_tabular_part(world):
    """On the tiny world the head's trees split (it is not a constant) and its held-out error is
    below the no-change forecast's on the same scale: it reads the product part's lags."""
    p = np.arange(world.n_products)
    fit_p, cal_p = p[: world.n_products - 3], p[world.n_products - 3 :]
    norm = norm_constants(world, fit_p)
    head = fit_gbm_head(world, fit_p, cal_p, norm, seed=0)
    assert head.n_features == SIDE_DIM + len(PRODUCT_FEATURES)
    z = predict_gbm_z(head, world, cal_p)
    y = (world.log_units()[cal_p] - norm["y_mean"]) / norm["y_std"]
    assert z.shape == y[:, 1:].shape and np.std(z) > 0
    assert np.nanmean(np.abs(z - y[:, 1:])) < np.nanmean(np.abs(y[:, :-1] - y[:, 1:]))


def test_step_returns_the_blend_and_its_counterfactual(world, trained):
    """step = (1 - w) LSTM + w head, on the same x; the no-video baseline blends the head's forecast
    for x with the video columns zeroed (as Lamm.step builds the LSTM's)."""
    fc = trained
    assert fc.gbm is not None and fc.gbm.weight == 0.5
    lstm_only = LammForecaster(fc.model, fc.conformal, meta=fc.meta)
    b = make_batch(world, np.arange(world.n_products))
    with torch.inference_mode():
        x = build_day_inputs(fc.model.encode_packed(*b.videos()), b).numpy()[:, 3]  # (P, F) day 3
    s = np.random.default_rng(0).normal(size=(len(x), fc.state_dim)).astype(np.float32)
    out, ref = fc.step(s, x), lstm_only.step(s, x)
    np.testing.assert_array_equal(out.state, ref.state)
    d = fc.cfg.d_model
    tab = x[:, d:]
    w = fc.gbm.weight
    to_z = lambda u: (np.log1p(u) - float(fc.model.y_mean)) / float(fc.model.y_std)  # noqa: E731
    np.testing.assert_allclose(
        to_z(out.point), (1 - w) * to_z(ref.point) + w * fc.gbm.predict_z(tab), atol=1e-4
    )
    tab0 = tab.copy()
    tab0[:, :SIDE_DIM] = 0
    tab0[:, [SIDE_DIM + PRODUCT_FEATURES.index(k) for k in NO_VIDEO_FEATURES]] = 0
    np.testing.assert_allclose(
        to_z(out.baseline), (1 - w) * to_z(ref.baseline) + w * fc.gbm.predict_z(tab0), atol=1e-4
    )
    assert not np.allclose(fc.gbm.predict_z(tab0), fc.gbm.predict_z(tab))  # the head sees the videos
    # the interval is the one calibrated on the blend's held-out residuals, around the blend
    assert np.all(out.lower <= out.point) and np.all(out.point <= out.upper)


def test_save_load_round_trip_and_a_lamm_only_save_drops_the_head(world, trained, tmp_path):
    fc = trained
    fc.save(tmp_path / "ck")
    fc2 = LammForecaster.load(tmp_path / "ck")
    assert fc2.gbm is not None and fc2.model_version == fc.model_version
    x = tab_part(world, np.arange(4))[:, 2]
    np.testing.assert_array_equal(fc2.gbm.predict_z(x), fc.gbm.predict_z(x))
    lstm_only = LammForecaster(fc.model, fc.conformal, meta=fc.meta)
    assert lstm_only.model_version != fc.model_version  # the head is part of the version
    lstm_only.save(tmp_path / "ck")
    assert LammForecaster.load(tmp_path / "ck").gbm is None


def test_gbm_weight_zero_trains_lamm_alone(world):
    torch.manual_seed(0)
    fc, _ = train_lamm(
        world, LammConfig(), TrainConfig(epochs=1, bf16=False, gbm_weight=0), log=lambda *_: None
    )
    assert fc.gbm is None


def test_tuning_keeps_the_setting_with_the_lowest_held_out_mae():
    """fit_lightgbm_tuned fits every grid setting and keeps the one of lowest held-out MAE (NaN
    targets skipped): on an interaction that stumps cannot express, 31 leaves win although the
    grid lists the stumps first; on a target that is one step, where more leaves only fit noise, the
    same grid keeps fewer leaves; the reported MAE is the kept model's own."""
    rng = np.random.default_rng(0)
    x, xv = rng.normal(size=(3000, 4)), rng.normal(size=(1000, 4))
    grid = {"num_leaves": (2, 31)}
    assert [s["num_leaves"] for s in tune_settings(grid)] == [2, 31]
    for f, leaves in (
        (lambda a: np.sin(2 * a[:, 0]) * a[:, 1] + a[:, 2] * a[:, 3], 31),
        (lambda a: (a[:, 0] > 0) * 1.0, 2),
    ):
        y, yv = f(x) + 0.3 * rng.normal(size=len(x)), f(xv) + 0.3 * rng.normal(size=len(xv))
        yv[::9] = np.nan
        model, params, mae = fit_lightgbm_tuned(x, y, xv, yv, seed=0, threads=1, grid=grid)
        ok = ~np.isnan(yv)
        assert params["num_leaves"] == leaves
        assert mae == pytest.approx(np.mean(np.abs(model.predict(xv[ok]) - yv[ok])))
        for other in tune_settings(grid):  # no setting does better on the held-out rows
            m = fit_lightgbm(x, y, xv, yv, seed=0, threads=1, params=other)
            assert mae <= np.mean(np.abs(m.predict(xv[ok]) - yv[ok])) + 1e-12
    with pytest.raises(ValueError, match="no held-out"):
        fit_lightgbm_tuned(x, y, xv, np.full(len(xv), np.nan), seed=0, threads=1, grid=grid)


def test_the_head_is_the_tuned_model(world):
    """fit_gbm_head's trees are fit_lightgbm_tuned's on the same rows (tune=True, the default)."""
    p = np.arange(world.n_products)
    fit_p, cal_p = p[: world.n_products - 3], p[world.n_products - 3 :]
    norm = norm_constants(world, fit_p)
    (x, y), (xv, yv) = _xy(world, fit_p, norm), _xy(world, cal_p, norm)
    model, _, _ = fit_lightgbm_tuned(x, y, xv, yv, seed=0, threads=1)
    head = fit_gbm_head(world, fit_p, cal_p, norm, seed=0)
    assert head.model_str == model.booster_.model_to_string(num_iteration=model.best_iteration_)


def test_choose_weight_takes_the_lower_held_out_mae():
    rng = np.random.default_rng(0)
    y = rng.normal(size=4000)
    good, bad = y + 0.1 * rng.normal(size=y.size), y + rng.normal(size=y.size)
    assert choose_weight(bad, good, y) >= 0.9  # the head far better: (nearly) all head
    assert choose_weight(good, bad, y) <= 0.1  # LAMM far better: (nearly) LAMM alone
    assert choose_weight(y + 1.0, y - 1.0, y) == 0.5  # opposite biases cancel at 0.5 exactly
    # equally good, independent errors: near the middle; NaN targets are skipped
    a, b = y + 0.5 * rng.normal(size=y.size), y + 0.5 * rng.normal(size=y.size)
    y_nan = y.copy()
    y_nan[::7] = np.nan
    assert 0.35 <= choose_weight(a, b, y_nan) <= 0.65
    assert choose_weight(a, a, y) == 0.0  # a tie keeps the lower weight
    with pytest.raises(ValueError, match="no held-out"):
        choose_weight(a[:3], b[:3], np.full(3, np.nan))


def test_the_chosen_weight_is_the_best_on_the_held_out_products(world):
    """With gbm_weight None (the default) train_lamm picks the grid weight of lowest held-out MAE: the
    saved head's weight beats 0 (LAMM alone), 0.5 and 1 on exactly those products."""
    from inference.gbm_head import WEIGHT_GRID
    from inference.lamm_train import _blend_z, predict_z, split_calib, targets_z

    torch.manual_seed(0)
    tc = TrainConfig(epochs=1, bf16=False)
    assert tc.gbm_weight is None
    fc, info = train_lamm(world, LammConfig(), tc, log=lambda *_: None)
    fit_p, cal_p = split_calib(np.arange(world.n_products), tc.calib_frac, tc.seed)
    norm = {"y_mean": float(fc.model.y_mean), "y_std": float(fc.model.y_std)}
    y = targets_z(world, cal_p, norm)
    ok = ~np.isnan(y)
    z_lamm = predict_z(fc.model, world, cal_p)
    assert fc.gbm is not None  # one epoch of LAMM on the tiny world is far behind the head (weight 1)
    z_gbm = predict_gbm_z(fc.gbm, world, cal_p)
    mae = lambda w: np.mean(np.abs(((1 - w) * z_lamm + w * z_gbm - y)[ok]))  # noqa: E731
    assert fc.gbm.weight in WEIGHT_GRID
    assert all(mae(fc.gbm.weight) <= mae(w) + 1e-12 for w in WEIGHT_GRID)
    np.testing.assert_allclose(
        _blend_z(fc.model, fc.gbm, world, cal_p), (1 - fc.gbm.weight) * z_lamm + fc.gbm.weight * z_gbm
    )


def test_the_head_refuses_a_wrong_width_and_a_bad_weight(trained):
    with pytest.raises(AssertionError, match="tabular inputs"):
        trained.gbm.predict_z(np.zeros((2, 5), dtype=np.float32))
    with pytest.raises(AssertionError, match="weight"):
        GbmHead(trained.gbm.model_str, weight=0.0)
    with pytest.raises(AssertionError, match="gbm_weight"):
        TrainConfig(gbm_weight=1.5)


def test_served_summary_tests_the_blend_against_every_model():
    """LAMM+GBM gets a paired t-test against every other row; "beats all" needs each lower with p < 0.05."""
    rng = np.random.default_rng(0)
    folds = []
    for k in range(5):
        base = 0.42 + 0.003 * k
        m = lambda v: {"mae": v, "mse": v * v, "mape": v}  # noqa: E731
        folds.append(
            {
                "models": {
                    "LAMM": m(base + 0.004 + 1e-4 * rng.standard_normal()),
                    SERVED: m(base),
                    "LightGBM": m(base + 0.002 + 1e-4 * rng.standard_normal()),
                },
                "ablations": {},
                "coverage_gbm": {"covered": 0.8},
            }
        )
    s = summarize({"per_fold": folds})
    assert s["served"]["beats_all_p05"] and s["served"]["vs"]["LightGBM"]["p"] < 0.05
    assert s["served"]["coverage"]["mean"] == pytest.approx(0.8)
    for f in folds:  # one fold where LightGBM wins: no longer lower on the mean with p < 0.05
        f["models"]["LightGBM"]["mae"] = f["models"][SERVED]["mae"] - 0.001 + 1e-4 * rng.standard_normal()
    assert not _served_summary(folds, summarize({"per_fold": folds}))["beats_all_p05"]


def test_large_batches_go_through_the_compiled_trees_with_lightgbms_predictions(tmp_path, monkeypatch):
    """From COMPILE_MIN_ROWS rows on, the head predicts with the lleaves-compiled trees: the same
    forecasts as LightGBM's predict (NaN inputs and their default directions included), the
    compiled object cached on disk by the model's hash so a second head of the same model loads
    it; below that size, and with compile=False, LightGBM predicts."""
    import lightgbm as lgb

    import inference.gbm_head as G

    monkeypatch.setenv("LIFTSTREAM_TREE_CACHE", str(tmp_path))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 6)).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan
    y = (
        np.sin(2 * np.nan_to_num(x[:, 0]))
        + np.nan_to_num(x[:, 1]) * np.isnan(x[:, 2])
        + 0.1 * rng.standard_normal(3000)
    )
    booster = lgb.train(
        {"objective": "regression", "num_leaves": 31, "learning_rate": 0.1, "verbose": -1, "num_threads": 1},
        lgb.Dataset(x, y),
        num_boost_round=40,
    )
    rows = rng.standard_normal((G.COMPILE_MIN_ROWS + 10, 6)).astype(np.float32)
    rows[rng.random(rows.shape) < 0.1] = np.nan
    want = booster.predict(rows)
    head = GbmHead(booster.model_to_string())
    assert head._compiled is None  # nothing compiled before a large batch
    got = head.predict_z(rows)
    if sys.version_info < (3, 13):  # pyproject installs lleaves there (llvmlite 0.43's wheels)
        assert head._compiled is not None, (
            "lleaves is a dependency: the large batch must use the compiled trees"
        )
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    cached = list(tmp_path.glob("*.o"))
    assert len(cached) == (head._compiled is not None)
    before = [(f.stat().st_ino, f.stat().st_mtime_ns) for f in cached]
    again = GbmHead(booster.model_to_string())
    np.testing.assert_allclose(again.predict_z(rows), want, rtol=0, atol=1e-9)
    # the second head loaded the cached object: a recompile would have renamed a new file into place
    assert [(f.stat().st_ino, f.stat().st_mtime_ns) for f in tmp_path.glob("*.o")] == before
    small = GbmHead(booster.model_to_string())
    np.testing.assert_allclose(small.predict_z(rows[:100]), want[:100], rtol=0, atol=1e-12)
    assert small._compiled is None and not small._compile_tried
    off = GbmHead(booster.model_to_string(), compile=False)
    np.testing.assert_allclose(off.predict_z(rows), want, rtol=0, atol=1e-12)
    assert off._compiled is None


def test_without_lleaves_large_batches_fall_back_to_lightgbm(trained, monkeypatch):
    """A machine without lleaves (or where it fails) predicts every batch with LightGBM."""
    import inference.gbm_head as G

    monkeypatch.setitem(sys.modules, "lleaves", None)  # `import lleaves` raises ImportError
    head = GbmHead(trained.gbm.model_str)
    rows = np.random.default_rng(1).standard_normal((G.COMPILE_MIN_ROWS, head.n_features)).astype(np.float32)
    np.testing.assert_allclose(head.predict_z(rows), head._booster.predict(rows), rtol=0, atol=1e-12)
    assert head._compile_tried and head._compiled is None
