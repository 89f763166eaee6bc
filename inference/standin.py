"""Clearly named simple models that stand in where a trained model is not loaded.

- ``SeasonalNaiveForecaster``: tomorrow's units = today's units; the interval comes from an
  exponentially weighted mean absolute error of that rule on the product's own history. It is
  also the "seasonal naive" baseline of the LAMM evaluation.
- ``ConstantElasticityAdvisor``: impressions proportional to followers^elasticity with one fixed
  elasticity; it knows nothing of content and exists so the advice path runs without a fitted
  Deep IV model.

Both speak the ``inference.client`` interface, so swapping in LAMM / Deep IV changes nothing else.
"""

from __future__ import annotations

import numpy as np

from inference.client import AdviceBatch, StepOutput, VideoBatch, VideoMeta
from inference.daily import PRODUCT_DIM
from inference.optimum import near_optimal_range

Z80 = 1.2815515655446004  # standard normal quantile for a central 80% interval
MAE_TO_SIGMA = 1.2533141373155001  # sqrt(pi/2): sigma of a normal from its mean absolute deviation


class SeasonalNaiveForecaster:
    model_version = "seasonal-naive-v1"
    hidden_dim = 128
    state_dim = 3  # [has_history, ewm_abs_error, last_point]

    def __init__(self, level: float = 0.8, alpha: float = 0.3):
        assert abs(level - 0.8) < 1e-9, "the stand-in only knows the 80% interval"
        self.level, self.alpha = level, alpha

    def encode(self, videos: VideoBatch) -> np.ndarray:
        m = videos.seg_mask[..., None].astype(np.float32)  # (N, S, 1)
        return (videos.frame * m).sum(1) / np.maximum(m.sum(1), 1.0)  # (N, D) masked mean frame

    def init_state(self, n: int) -> np.ndarray:
        return np.zeros((n, self.state_dim), dtype=np.float32)

    def step(self, state: np.ndarray, x: np.ndarray) -> StepOutput:
        assert state.ndim == 2 and state.shape[1] == self.state_dim, (
            f"expected state (N, {self.state_dim}), got {state.shape}"
        )
        units = np.expm1(x[:, -PRODUCT_DIM].astype(np.float64))  # today's units (see inference.daily)
        has, err, last = state[:, 0] > 0, state[:, 1].astype(np.float64), state[:, 2].astype(np.float64)
        abs_err = np.abs(units - last)
        err = np.where(has, (1 - self.alpha) * err + self.alpha * abs_err, np.maximum(0.5 * units, 1.0))
        point = units
        half = Z80 * MAE_TO_SIGMA * err
        new_state = np.stack([np.ones_like(point), err, point], axis=1).astype(np.float32)
        return StepOutput(new_state, point, np.maximum(point - half, 0.0), point + half, self.level)


class ConstantElasticityAdvisor:
    model_version = "constant-elasticity-v1"

    def __init__(
        self, elasticity: float = 0.6, impressions_per_follower: float = 0.5, grid=np.logspace(2, 7, 101)
    ):
        self.elasticity, self.scale, self.grid = (
            elasticity,
            impressions_per_follower,
            np.asarray(grid, dtype=np.float64),
        )

    def _impressions(self, f: np.ndarray) -> np.ndarray:
        # anchored at 10k followers: E[impr] = scale * 1e4 * (F / 1e4) ** elasticity
        return self.scale * 1e4 * (np.asarray(f, dtype=np.float64) / 1e4) ** self.elasticity

    def advise(
        self, videos: VideoBatch, meta: VideoMeta, value_per_impression: float, cost_per_1k_followers: float
    ) -> AdviceBatch:
        f = np.asarray(meta.followers, dtype=np.float64).clip(1)
        n = f.shape[0]
        imp = self._impressions(f)
        profit = value_per_impression * imp - cost_per_1k_followers * f / 1000.0
        grid_profit = (
            value_per_impression * self._impressions(self.grid) - cost_per_1k_followers * self.grid / 1000.0
        )
        best = int(np.argmax(grid_profit))
        lo, hi = near_optimal_range(
            self._impressions(self.grid)[None, :], self.grid, value_per_impression, cost_per_1k_followers
        )
        return AdviceBatch(
            fei=np.full(n, self.elasticity),
            curve_shape=["linear"] * n,
            expected_impressions=imp,
            optimal_followers=np.full(n, self.grid[best]),
            optimal_followers_low=np.full(n, self.grid[lo[0]]),
            optimal_followers_high=np.full(n, self.grid[hi[0]]),
            expected_impressions_optimal=np.full(n, self._impressions(self.grid[best])),
            profit_actual=profit,
            profit_optimal=np.full(n, grid_profit[best]),
        )
