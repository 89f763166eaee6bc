"""The product-day input: the stream's scalar fast path equals the vectorised training path."""

from __future__ import annotations

import numpy as np

from inference.daily import PRODUCT_DIM, SIDE_DIM, day_input, product_features, product_vector, side_features


def test_product_vector_equals_product_features():
    rng = np.random.default_rng(0)
    for _ in range(200):
        units, price, rating = rng.integers(0, 2000), rng.uniform(1, 3000), rng.uniform(60, 100)
        k, new = int(rng.integers(0, 50)), int(rng.integers(0, 5))
        np.testing.assert_array_equal(product_vector(float(units), price, rating, k, new),
                                      product_features(units, price, rating, k, new))


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
