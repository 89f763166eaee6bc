"""The buyer's decision on an expected-impression curve (numpy only: the stand-in scorer and the
FEI advisor share it).

    profit(F) = value_per_impression x E[impressions](F) - cost_per_1k_followers x F / 1000

``optimal_followers`` maximises it over a follower grid (FEI paper section 4.4);
``near_optimal_range`` gives the sizes around the optimum whose expected profit is within
``NEAR_OPTIMAL_SHARE`` of it: how much room a buyer has when no creator of the optimal size is at
hand, and how sharp the optimum is (a wide range says the size hardly matters).
"""

from __future__ import annotations

import numpy as np


def profit(
    value_per_impression: float,
    cost_per_1k_followers: float,
    expected_impressions: np.ndarray,
    followers: np.ndarray,
) -> np.ndarray:
    return (
        value_per_impression * expected_impressions
        - cost_per_1k_followers * np.asarray(followers, dtype=np.float64) / 1000.0
    )


def check_economics(value: float, cost: float) -> None:
    """ValueError unless value per impression > 0 and cost per 1K followers >= 0, both finite: with
    a value <= 0 every size loses and the "optimum" would be the grid's smallest size."""
    if not (np.isfinite(value) and value > 0 and np.isfinite(cost) and cost >= 0):
        raise ValueError(
            f"need value per impression > 0 and cost per 1K followers >= 0, got {value} / {cost}"
        )


def optimal_followers(
    exp_imp_grid: np.ndarray, grid_followers: np.ndarray, value: float, cost: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per video (N, G) expected impressions -> (best grid index (N,), best profit (N,))."""
    check_economics(value, cost)
    p = profit(value, cost, exp_imp_grid, grid_followers[None, :])  # (N, G)
    best = p.argmax(1)
    return best, p[np.arange(p.shape[0]), best]


NEAR_OPTIMAL_SHARE = 0.95  # near_optimal_range: sizes whose expected profit is >= 95% of the best


def near_optimal_range(
    exp_imp_grid: np.ndarray,
    grid_followers: np.ndarray,
    value: float,
    cost: float,
    share: float = NEAR_OPTIMAL_SHARE,
) -> tuple[np.ndarray, np.ndarray]:
    """(lowest, highest) grid index (N,) of the contiguous run of grid sizes around each video's
    optimum whose expected profit is at least ``share`` x the optimal profit. Where the optimal
    profit is not positive (no size pays) the range is the optimum alone."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share}")
    p = profit(value, cost, exp_imp_grid, grid_followers[None, :])  # (N, G)
    n, g = p.shape
    best = p.argmax(1)
    p_best = p[np.arange(n), best]
    ok = (p >= share * p_best[:, None]) & (p_best[:, None] > 0)
    ok[np.arange(n), best] = True
    idx = np.arange(g)[None, :]
    # the run containing best ends at the first grid point on each side that is not ok
    below = np.where(~ok & (idx < best[:, None]), idx, -1).max(1) + 1
    above = np.where(~ok & (idx > best[:, None]), idx, g).min(1) - 1
    return below, above


__all__ = ["NEAR_OPTIMAL_SHARE", "check_economics", "near_optimal_range", "optimal_followers", "profit"]
