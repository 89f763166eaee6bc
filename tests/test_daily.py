"""The product-day input: the stream's scalar fast path equals the vectorised training path."""

from __future__ import annotations

import numpy as np
import pytest

from inference.daily import (
    CAMPAIGN_AT,
    HISTORY_AT,
    N_TRAILING,
    PRODUCT_DIM,
    PRODUCT_FEATURES,
    SIDE_DIM,
    TRAILING_DAYS,
    day_input,
    product_features,
    product_vector,
    side_features,
    trailing_units,
    trailing_vector,
)
from schemas import limits as L

WD = slice(PRODUCT_FEATURES.index("weekday_0"), PRODUCT_FEATURES.index("weekday_6") + 1)


def test_product_vector_equals_product_features():
    rng = np.random.default_rng(0)
    for _ in range(200):
        units, price, rating = rng.integers(0, 2000), rng.uniform(1, 3000), rng.uniform(60, 100)
        k, new = int(rng.integers(0, 50)), int(rng.integers(0, 5))
        np.testing.assert_array_equal(
            product_vector(float(units), price, rating, k, new),
            product_features(units, price, rating, k, new),
        )
        sums = rng.integers(0, 10**6, size=5).astype(np.float64)
        wd = int(rng.integers(0, 7))
        v = product_vector(float(units), price, rating, k, new, sums=sums, weekday=wd)
        np.testing.assert_array_equal(
            v, product_features(units, price, rating, k, new, sums=sums, weekday=wd)
        )
        assert v.shape == (PRODUCT_DIM,) and v[WD].sum() == 1 and v[WD][wd] == 1


def test_product_features_vectorised_sums_and_weekday():
    sums = np.array([[[0, 1, 2, 3, np.e - 1]], [[0, 0, 0, 0, 0]]], dtype=np.float64)  # (2, 1, 5)
    x = product_features(
        np.zeros((2, 1)), 10.0, 90.0, np.array([[2], [0]]), 0, sums=sums, weekday=np.array([[6], [0]])
    )
    assert x.shape == (2, 1, PRODUCT_DIM)
    np.testing.assert_allclose(x[0, 0, 6:11], np.log1p([0, 1, 2, 3, np.e - 1]), rtol=1e-6)
    np.testing.assert_array_equal(x[0, 0, WD], [0, 0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(x[1, 0, WD], [1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(x[..., 11 : 11 + N_TRAILING], 0)  # trailing=None: zeros
    np.testing.assert_array_equal(x[..., HISTORY_AT:CAMPAIGN_AT], 0)  # history=None: unknown


def test_product_history_columns():
    """history: log1p sales and videos plus a known flag; NaN (or None in the scalar path) = unknown,
    all three zero, so an unknown history never passes for a product that sold nothing before."""
    hist = np.array([[120.0, 4.0], [np.nan, np.nan]])  # (2, 2): known, unknown
    x = product_features(np.zeros(2), 10.0, 90.0, 1, 0, history=hist)
    np.testing.assert_allclose(x[0, HISTORY_AT:CAMPAIGN_AT], [np.log1p(120), np.log1p(4), 1.0], rtol=1e-6)
    np.testing.assert_array_equal(x[1, HISTORY_AT:CAMPAIGN_AT], [0, 0, 0])
    np.testing.assert_array_equal(x[0, :HISTORY_AT], x[1, :HISTORY_AT])
    np.testing.assert_array_equal(product_vector(0.0, 10.0, 90.0, 1, 0, history=(120, 4)), x[0])
    np.testing.assert_array_equal(product_vector(0.0, 10.0, 90.0, 1, 0), x[1])
    np.testing.assert_array_equal(
        product_vector(0.0, 10.0, 90.0, 1, 0, history=(0, 0))[HISTORY_AT:CAMPAIGN_AT], [0, 0, 1]
    )


def test_trailing_units_by_hand():
    u = np.array([3.0, 0.0, 8.0, 1.0, 5.0, 2.0, 7.0, 4.0, 9.0])
    y = np.log1p(u)
    tr = trailing_units(u[None])[0]  # (D, 4): lag 1, lag 2, mean 3, mean 7
    assert tr.shape == (len(u), N_TRAILING)
    np.testing.assert_allclose(tr[0], [0, 0, y[0], y[0]])  # day 0: no earlier days, means over what exists
    np.testing.assert_allclose(tr[1], [y[0], 0, y[:2].mean(), y[:2].mean()])
    np.testing.assert_allclose(tr[4], [y[3], y[2], y[2:5].mean(), y[:5].mean()])
    np.testing.assert_allclose(tr[8], [y[7], y[6], y[6:9].mean(), y[2:9].mean()])


def test_trailing_vector_equals_trailing_units():
    """The stream's one-day path (units of earlier days as a list) == training's whole-sequence path."""
    rng = np.random.default_rng(1)
    u = rng.integers(0, 3000, size=12).astype(np.float64)
    ref = trailing_units(u)
    for t in range(len(u)):
        prev = list(u[:t])
        np.testing.assert_allclose(trailing_vector(u[t], prev), ref[t], rtol=1e-10)
        # the stream keeps only the last TRAILING_DAYS days: enough for every column
        np.testing.assert_allclose(trailing_vector(u[t], prev[-TRAILING_DAYS:]), ref[t], rtol=1e-10)
        v = product_vector(u[t], 10.0, 90.0, 1, 0, previous=prev)
        lag = PRODUCT_FEATURES.index("units_lag1")
        np.testing.assert_allclose(v[lag : lag + N_TRAILING], ref[t].astype(np.float32), rtol=1e-6)


def test_side_features_broadcast_and_values():
    s = side_features([0, 9], [1, 1], [0, 0], [0, 0], [0, np.e**4 - 1], [0, 7], [0, 10])
    assert s.shape == (2, SIDE_DIM) and s.dtype == np.float32
    np.testing.assert_allclose(s[1], [np.log(10), np.log(2), 0, 0, 1.0, 0.5, np.log(11) / 4], rtol=1e-6)


def test_day_input_means_active_videos_and_zeroes_without_videos():
    h = np.array([[1.0, 3.0], [3.0, 5.0]], dtype=np.float32)
    side = np.ones((2, SIDE_DIM), dtype=np.float32)
    prod = np.arange(PRODUCT_DIM, dtype=np.float32)
    x = day_input(h, side, prod)
    np.testing.assert_array_equal(x, np.concatenate([[2.0, 4.0], np.ones(SIDE_DIM), prod]).astype(np.float32))
    x0 = day_input(np.zeros((0, 2), np.float32), np.zeros((0, SIDE_DIM), np.float32), prod)
    np.testing.assert_array_equal(x0[: 2 + SIDE_DIM], 0)


def test_campaign_vector_equals_campaign_features():
    """The stream's scalar path and the batched definition agree, unknown category included."""
    from inference.daily import campaign_features, campaign_vector

    rng = np.random.default_rng(0)
    for cat in (-1, 0, 5, 12):
        args = (
            float(rng.integers(0, 500)),
            int(rng.integers(0, 30)),
            float(rng.normal(0, 0.2)),
            float(rng.uniform(0, 80)),
            float(rng.integers(0, 10**6)),
            int(rng.integers(0, 40)),
            float(rng.integers(0, 10**7)),
            cat,
        )
        np.testing.assert_allclose(campaign_vector(*args), campaign_features(*args), rtol=1e-12)
        assert campaign_vector(*args)[7:].sum() == (cat >= 0)
    # the product's clock stops at the window: a later day reads like the 14th
    late = campaign_features(0, [13, 14, 40], 0, 0, 0, 0, 0, -1)[:, 1]
    np.testing.assert_allclose(late, [13 / L.WINDOW_DAYS, 1.0, 1.0])
    assert campaign_vector(0, 40, 0, 0, 0, 0, 0, -1)[1] == 1.0


@pytest.mark.parametrize("block", ["sums", "trailing", "campaign"])
def test_product_features_refuses_a_block_of_the_wrong_width(block):
    """Each optional block is checked for its width and named in the refusal; None is zeros."""
    base = dict(units=3.0, price=20.0, rating=90.0, n_active=2, n_new=1)
    with pytest.raises(AssertionError, match=rf"expected {block} \(\.\.\., "):
        product_features(**base, **{block: np.ones(2)})
    zero = product_features(**base)
    assert zero.shape == (len(PRODUCT_FEATURES),)
    assert not zero[PRODUCT_FEATURES.index("sum_likes")] and not zero[PRODUCT_FEATURES.index("units_lag1")]
