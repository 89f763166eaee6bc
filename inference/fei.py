"""Follower elasticity of impressions (FEI paper sections 3.4, 4): curves, tiers, shapes, optimal
influencer size, and ``FeiAdvisor``, the fitted model the stream calls.

    FEI(F | x) = d h(log F, x) / d log F        (paper Eq. 9-10; h from Deep IV, by autograd)

- ``fei_curves`` / ``impression_curves``: per video over a log-follower grid; ``group_mean_band``
  averages a group's curves with a bootstrap 95% band for the mean (videos resampled with
  replacement, as the paper's Figures 6-8; the band does not include refit uncertainty of h).
- ``tier_means``: averages of the FEI curve over the six tiers of Table 4 (schemas.limits).
- ``classify_shape``: s_shaped (FEI rises then falls: S-shaped impressions), linear (FEI flat),
  concave (FEI falls from the low end), the paper's three campaign types (Tables 4-5).
- ``optimal_followers``: maximise value x E[impressions](F, x) - cost_per_1k x F / 1000 over the
  grid (section 4.4); ``optimum_heatmap`` is Figure 12 (optimum over a grid of cost and value).
- ``near_optimal_range`` (from ``inference.optimum``, with ``profit`` and ``optimal_followers``):
  the follower sizes around the optimum whose expected profit is within 95% of it.

Expected impressions are exp(h) times Duan's smearing factor mean_i exp(y_i - h(t_i, x_i)) taken on
the training data: h is the conditional mean of log impressions, and E[exp(e)] != exp(E[e]); the
smearing estimate needs no normality assumption. The advisor's grid is clipped to the training
support of log followers (0.5% - 99.5% quantiles): outside it h is an extrapolation.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from inference import vsvae as V
from inference.client import AdviceBatch, VideoBatch, VideoMeta
from inference.deepiv import ControlFunctionIV, DeepIV, load_iv_estimator
from inference.model_dir import require_files
from inference.optimum import NEAR_OPTIMAL_SHARE, near_optimal_range, optimal_followers, profit  # noqa: F401 (re-exported)
from schemas import limits as L

SHAPES = ("s_shaped", "linear", "concave")
TIER_NAMES = tuple(name for name, _, _ in L.FOLLOWER_TIERS)


@dataclass
class FeiConfig:
    grid_min_followers: float = 1e2  # the advisor's grid before clipping to the training support
    grid_max_followers: float = 1e7
    n_grid: int = 64
    support_quantiles: tuple[float, float] = (0.005, 0.995)
    # shape rule on the FEI curve over the grid (see classify_shape)
    flat_range: float = 0.15  # max - min FEI below this: linear
    rise_fraction: float = 0.4  # peak above the low end by this share of the range: s_shaped
    batch_size: int = 2048  # videos per advise() chunk


# --------------------------------------------------------------------------------------- covariates

COVARIATE_POST_STATS = (
    "verified",
    *(f"type_{t}" for t in L.VIDEO_TYPES),
    "log_length_s",
    "hour_sin",
    "hour_cos",
    "seg_fraction",
)


def covariates(r: np.ndarray, meta: VideoMeta) -> np.ndarray:
    """x = [r, post statistics] (N, R + len(COVARIATE_POST_STATS)); the instrument is not in x."""
    n = r.shape[0]
    vt = np.asarray(meta.video_type, dtype=np.int64)
    assert vt.shape == (n,), f"expected video_type ({n},), got {vt.shape}"
    onehot = np.zeros((n, len(L.VIDEO_TYPES)), np.float32)
    onehot[np.arange(n), np.clip(vt, 0, len(L.VIDEO_TYPES) - 1)] = 1.0
    hour = np.asarray(meta.create_hour, dtype=np.float64) * (2 * np.pi / 24)
    post = np.column_stack(
        [
            np.asarray(meta.verified, dtype=np.float32),
            onehot,
            np.log1p(np.asarray(meta.length_s, dtype=np.float64)),
            np.sin(hour),
            np.cos(hour),
            np.asarray(meta.n_segments, dtype=np.float64) / L.MAX_SEGMENTS,
        ]
    )
    return np.hstack([r.astype(np.float64), post])


POOLED_STATS = (
    "frame_mean",
    "frame_std",
    "motion_mean",
    "motion_std",
    "audio_mean",
    "audio_std",
    "title_mean",
)


def pooled_statistics(frame, motion, audio, seg_mask, title, title_mask) -> np.ndarray:
    """Per-modality pooled statistics (N, 7 D): mean and std over the real segments of frame, motion
    and audio, and the mean over the real title tokens (zeros where a video has none)."""
    m = np.asarray(seg_mask, dtype=np.float32)[..., None]  # (N, S, 1)
    n = np.maximum(m.sum(1), 1.0)  # (N, 1)
    out = []
    for a in (frame, motion, audio):
        a = np.asarray(a, dtype=np.float32)
        mean = (a * m).sum(1) / n
        var = (((a - mean[:, None, :]) ** 2) * m).sum(1) / n
        out += [mean, np.sqrt(np.maximum(var, 0.0))]
    tm = np.asarray(title_mask, dtype=np.float32)[..., None]
    out.append((np.asarray(title, dtype=np.float32) * tm).sum(1) / np.maximum(tm.sum(1), 1.0))
    return np.hstack(out)


SEGMENT_MEANS = ("frame_mean", "motion_mean", "audio_mean")  # the columns whose segment noise is known


def segment_noise_moments(frame, motion, audio, seg_mask) -> tuple[np.ndarray, int]:
    """Within-video scatter of the segment features: (sum over real segments of (x_s - mean_v)(x_s -
    mean_v)^T with x_s = [frame, motion, audio] (3 D x 3 D), its degrees of freedom (real segments
    minus videos with any)). Summed over chunks, divided, it is the segment noise covariance that
    ``PooledPCA.fit(noise=...)`` whitens by."""
    m = np.asarray(seg_mask, dtype=bool)
    x = np.concatenate([np.asarray(a, dtype=np.float32) for a in (frame, motion, audio)], axis=2)
    n = m.sum(1)
    mean = (x * m[..., None]).sum(1) / np.maximum(n, 1)[:, None]
    dev = (x - mean[:, None, :])[m]  # (real segments, 3 D)
    return dev.T.astype(np.float64) @ dev, int(n.sum() - (n > 0).sum())


@dataclass
class PooledPCA:
    """Content covariates without a learned encoder: pooled statistics, standardized, projected on
    their first k principal components and scaled to unit variance (fitted on the training videos).

    With ``noise`` (the segment noise covariance of [frame, motion, audio], ``segment_noise_moments``)
    the first ``snr_dim`` components are instead the directions of the per-video segment means with
    the most variance between videos per unit of segment noise (the generalized eigenproblem
    B v = lambda W v, B the covariance of the means, W the noise: a maximum-noise-fraction /
    unsupervised-LDA projection), and the remaining ``k - snr_dim`` are principal components of all
    the statistics. Scene clutter and sensor noise move single segments, content moves every segment
    of a video: whitening by W keeps how strongly a video shows its look, which plain PCA of 896
    standardized statistics mixes with noise (docs/fei.md, "Noise-whitened content"). The result is
    the same linear map, so ``transform`` and the saved state do not change."""

    mean: np.ndarray  # (P,)
    scale: np.ndarray  # (P,)
    components: np.ndarray  # (K, P)
    comp_scale: np.ndarray  # (K,)

    @classmethod
    def fit(
        cls,
        stats: np.ndarray,
        k: int = 16,
        max_rows: int = 30_000,
        seed: int = 0,
        noise: np.ndarray | None = None,
        snr_dim: int = 0,
    ) -> PooledPCA:
        stats = np.asarray(stats, dtype=np.float64)
        rng = np.random.default_rng(seed)
        if len(stats) > max_rows:
            stats = stats[np.sort(rng.choice(len(stats), max_rows, replace=False))]
        mean, scale = stats.mean(0), stats.std(0)
        scale = np.where(scale > 1e-8, scale, 1.0)
        zs = (stats - mean) / scale
        snr = np.zeros((0, zs.shape[1]))
        if noise is not None and snr_dim > 0:
            snr = _snr_directions(stats - mean, np.asarray(noise, dtype=np.float64), min(snr_dim, k)) * scale
        n_pca = max(min(k, zs.shape[1]) - len(snr), 0)
        pcs = np.linalg.svd(zs, full_matrices=False)[2][:n_pca] if n_pca else snr[:0]  # no SVD when unused
        comps = np.vstack([snr, pcs])
        scores = zs @ comps.T
        comp_scale = np.maximum(scores.std(0, ddof=1) if len(zs) > 1 else np.ones(len(comps)), 1e-8)
        return cls(mean, scale, comps, comp_scale)

    def transform(self, stats: np.ndarray) -> np.ndarray:
        zs = (np.asarray(stats, dtype=np.float64) - self.mean) / self.scale
        return (zs @ self.components.T) / self.comp_scale

    def state(self) -> dict:
        return {k: np.asarray(getattr(self, k)) for k in ("mean", "scale", "components", "comp_scale")}

    @classmethod
    def from_state(cls, st: dict) -> PooledPCA:
        return cls(
            *(np.asarray(st[k], dtype=np.float64) for k in ("mean", "scale", "components", "comp_scale"))
        )

    def with_direction(self, weights: np.ndarray) -> PooledPCA:
        """A copy with one more output: ``weights`` (P,) over the standardized statistics, scaled to
        unit variance like the others (``level_score`` appends its direction this way, so
        ``transform`` and the saved state keep their form)."""
        w = np.asarray(weights, dtype=np.float64)[None, :]
        return PooledPCA(
            self.mean, self.scale, np.vstack([self.components, w]), np.append(self.comp_scale, 1.0)
        )


@dataclass
class LevelScore:
    """A content direction fitted to say how many impressions a video earns at any follower count.

    Log impressions are regressed (ridge) on the standardized pooled statistics with the treatment
    (a linear spline of log followers) and the post covariates as unpenalized controls; blocks of
    statistics (``POOLED_STATS``) enter by greedy forward selection on 5-fold out-of-fold MSE, and
    the statistics' coefficients on the chosen blocks are the direction. The unsupervised
    components keep what varies most per unit of segment noise; the level of a video's impressions
    lives in a low-variance direction they miss (docs/fei.md, "Supervised level score"). The
    direction reaches the IV estimator's h only through its level (``DeepIVConfig.level_only``), so
    it cannot bend dh/dt."""

    weights: np.ndarray  # (P,) on standardized statistics, zero outside the chosen blocks
    scale: float  # std of the score on the fitting rows
    blocks: list[str]
    cv_mse: dict[str, float]  # out-of-fold MSE of the selection steps (and "none": controls only)

    @classmethod
    def fit(
        cls,
        zs: np.ndarray,
        t: np.ndarray,
        controls: np.ndarray,
        y: np.ndarray,
        ridge: float = 10.0,
        seed: int = 0,
    ) -> LevelScore:
        """zs (N, 7 D) standardized pooled statistics; t (N,) log followers; controls (N, C) other
        covariates; y (N,) log impressions. ``ridge``: penalty per 1,000 rows on each statistic."""
        zs = np.asarray(zs, dtype=np.float64)
        n, p = zs.shape
        d = p // len(POOLED_STATS)
        knots = np.quantile(t, np.linspace(0.05, 0.95, 8))
        base = np.column_stack([np.ones(n), t, *(np.maximum(t - k, 0.0) for k in knots), controls])
        fold = np.random.default_rng(seed).integers(0, 5, n)
        a = np.column_stack([base, zs])  # (N, B + P); statistics' columns start at nb
        nb = base.shape[1]
        # Gram matrices once: a fold's training Gram is the total minus the fold's own
        gram_f = [a[fold == f].T @ a[fold == f] for f in range(5)]
        rhs_f = [a[fold == f].T @ y[fold == f] for f in range(5)]
        gram, rhs = sum(gram_f), sum(rhs_f)

        def solve(cols: list[int], g: np.ndarray, r: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
            idx = np.r_[np.arange(nb), nb + np.asarray(cols, dtype=int)]
            # a tiny ridge on the controls too: they may be collinear (a one-hot and the intercept)
            pen = np.full(len(idx), 1e-6 * rows)
            pen[nb:] = ridge * rows / 1000.0
            return idx, np.linalg.solve(g[np.ix_(idx, idx)] + np.diag(pen), r[idx])

        def cv(cols: list[int]) -> float:
            err = 0.0
            for f in range(5):
                held = fold == f
                idx, beta = solve(cols, gram - gram_f[f], rhs - rhs_f[f], int((~held).sum()))
                err += float(np.sum((y[held] - a[held][:, idx] @ beta) ** 2))
            return err / n

        block_cols = {b: list(range(i * d, (i + 1) * d)) for i, b in enumerate(POOLED_STATS)}
        chosen: list[str] = []
        best = cv([])
        trace = {"none": best}
        while len(chosen) < len(POOLED_STATS):
            trials = {
                b: cv(sum((block_cols[c] for c in chosen + [b]), [])) for b in POOLED_STATS if b not in chosen
            }
            b, err = min(trials.items(), key=lambda kv: kv[1])
            if err > best * (1 - 1e-3):  # stop when a block buys less than 0.1% of the MSE
                break
            chosen.append(b)
            best = err
            trace["+" + b] = err
        w = np.zeros(p)
        if chosen:
            cols = sum((block_cols[c] for c in chosen), [])
            w[cols] = solve(cols, gram, rhs, n)[1][nb:]
        score = zs @ w
        return cls(w, float(score.std()) if score.std() > 0 else 1.0, chosen, trace)


def _snr_directions(centred: np.ndarray, noise: np.ndarray, k: int) -> np.ndarray:
    """(k, 7 D) loadings on the raw pooled statistics (zero outside the segment-mean columns) of the
    top-k solutions of B v = lambda W v, B the covariance of the segment means, W ``noise``."""
    d = centred.shape[1] // len(POOLED_STATS)
    cols = np.concatenate([np.arange(d) + POOLED_STATS.index(n) * d for n in SEGMENT_MEANS])
    if noise.shape != (len(cols), len(cols)):
        raise ValueError(f"noise: expected ({len(cols)}, {len(cols)}), got {noise.shape}")
    means = centred[:, cols]
    between = means.T @ means / max(len(means) - 1, 1)
    ridge = 1e-6 * np.trace(noise) / len(noise)  # features constant over segments have W = 0
    _, vecs = scipy.linalg.eigh(between, noise + ridge * np.eye(len(noise)))
    out = np.zeros((min(k, len(cols)), centred.shape[1]))
    out[:, cols] = vecs[:, ::-1][:, : len(out)].T
    return out


def treatment(followers) -> np.ndarray:
    """t = ln(followers), followers below 1 count as 1."""
    return np.log(np.maximum(np.asarray(followers, dtype=np.float64), 1.0))


def instrument(past_avg_hearts) -> np.ndarray:
    """z = log1p(past average hearts) as (N, 1)."""
    return np.log1p(np.maximum(np.asarray(past_avg_hearts, dtype=np.float64), 0.0))[:, None]


def outcome(impressions) -> np.ndarray:
    """y = ln(two-week impressions), zero impressions count as one."""
    return np.log(np.maximum(np.asarray(impressions, dtype=np.float64), 1.0))


# ------------------------------------------------------------------------------------------- curves


def _on_grid(x: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, g = x.shape[0], grid.shape[0]
    return np.tile(grid, n), np.repeat(x, g, axis=0)  # (N*G,), (N*G, P)


def fei_curves(est, x: np.ndarray, log_grid: np.ndarray) -> np.ndarray:
    """(N, G) FEI dh/dlogF of each video's x at each grid point (autograd for neural estimators)."""
    t, xx = _on_grid(x, log_grid)
    return est.marginal_effect(treatment=t, covariates=xx).reshape(x.shape[0], log_grid.shape[0])


def impression_curves(est, x: np.ndarray, log_grid: np.ndarray) -> np.ndarray:
    """(N, G) h(log F, x): expected log impressions of each video at each grid point."""
    t, xx = _on_grid(x, log_grid)
    return est.predict(treatment=t, covariates=xx).reshape(x.shape[0], log_grid.shape[0])


def group_mean_band(
    curves: np.ndarray, n_boot: int = 200, seed: int = 0, level: float = 0.95
) -> dict[str, np.ndarray]:
    """Mean curve of a group (N, G) with a bootstrap band for the mean (resampling videos)."""
    assert curves.ndim == 2 and curves.shape[0] > 0, f"expected (N>0, G), got {curves.shape}"
    rng = np.random.default_rng(seed)
    n = curves.shape[0]
    boots = np.stack([curves[rng.integers(0, n, n)].mean(0) for _ in range(n_boot)])  # (B, G)
    a = (1 - level) / 2
    return {
        "mean": curves.mean(0),
        "lower": np.quantile(boots, a, axis=0),
        "upper": np.quantile(boots, 1 - a, axis=0),
    }


def tier_means(curves: np.ndarray, log_grid: np.ndarray) -> dict[str, np.ndarray]:
    """Mean FEI over the grid points inside each Table 4 tier: name -> (N,) (NaN if the tier has no point)."""
    f = np.exp(log_grid)
    out = {}
    for name, lo, hi in L.FOLLOWER_TIERS:
        sel = (f >= lo) & (f < (hi if hi is not None else np.inf))
        out[name] = curves[:, sel].mean(1) if sel.any() else np.full(curves.shape[0], np.nan)
    return out


def classify_shape(curves: np.ndarray, flat_range: float = 0.15, rise_fraction: float = 0.4) -> np.ndarray:
    """(N,) shape names from FEI curves (N, G) on an increasing grid.

    linear: max - min < flat_range (elasticity about constant); s_shaped: the FEI peaks inside the
    grid and the peak stands above the low end by rise_fraction of the range (FEI rises then falls:
    S-shaped impressions); concave: otherwise (FEI highest at the low end and falling).
    """
    assert curves.ndim == 2, f"expected (N, G), got {curves.shape}"
    n, g = curves.shape
    edge = max(1, g // 8)
    lo_end = curves[:, :edge].mean(1)
    peak = curves.max(1)
    rng_ = peak - curves.min(1)
    arg = curves.argmax(1)
    s_like = (arg >= edge) & (peak - lo_end > rise_fraction * rng_)
    out = np.where(rng_ < flat_range, "linear", np.where(s_like, "s_shaped", "concave"))
    return out.astype(object)


def optimum_heatmap(
    exp_imp_grid: np.ndarray, grid_followers: np.ndarray, values: np.ndarray, costs: np.ndarray
) -> np.ndarray:
    """(len(values), len(costs)) optimal followers of one expected-impression curve (G,) (Figure 12)."""
    out = np.zeros((len(values), len(costs)))
    for i, v in enumerate(values):
        for j, c in enumerate(costs):
            best, _ = optimal_followers(exp_imp_grid[None, :], grid_followers, v, c)
            out[i, j] = grid_followers[best[0]]
    return out


def plot_heatmap(
    opt: np.ndarray, values: np.ndarray, costs: np.ndarray, path: str | Path, title: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6))
    im = ax.imshow(opt / 1000.0, cmap="viridis", aspect="auto")
    for i in range(opt.shape[0]):
        for j in range(opt.shape[1]):
            ax.text(j, i, f"{opt[i, j] / 1000:.0f}", ha="center", va="center", color="w", fontsize=8)
    ax.set_xticks(range(len(costs)), [f"{c:g}" for c in costs])
    ax.set_yticks(range(len(values)), [f"{v:g}" for v in values])
    ax.set_xlabel("$ cost / 1K followers")
    ax.set_ylabel("$ value / impression")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="optimal followers (thousands)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------- advisor


def follower_grid(config: FeiConfig, log_f_support: tuple[float, float]) -> np.ndarray:
    """The advisor's follower sizes: ``n_grid`` log-spaced whole counts between the config's bounds,
    clipped to the training support of ln followers (the support alone where they do not overlap).
    Whole counts, so an advised size and its profit refer to the same number."""
    lo = max(np.log(config.grid_min_followers), log_f_support[0])
    hi = min(np.log(config.grid_max_followers), log_f_support[1])
    if hi <= lo:
        lo, hi = log_f_support
    return np.unique(np.round(np.exp(np.linspace(lo, hi, config.n_grid))))


@dataclass
class FeiAdvisor:
    """Content encoder + IV estimator (control function or Deep IV) behind ``advise()``
    (inference.client's advisor interface).

    The content vector is the pooled-statistics PCA (``pooled``, the default fit) when set, else the
    VS-VAE posterior mean (the paper's encoder)."""

    vsvae: V.VSVAE | None
    vsvae_scale: dict | None
    estimator: DeepIV | ControlFunctionIV
    smearing: float  # Duan's factor: E[impressions] = exp(h) * smearing
    log_f_support: tuple[float, float]  # training quantiles of ln followers; the grid lives inside
    config: FeiConfig = field(default_factory=FeiConfig)
    report: dict = field(default_factory=dict)  # fit diagnostics (saved alongside)
    model_version: str = ""
    pooled: PooledPCA | None = None

    def __post_init__(self) -> None:
        self.grid_followers = follower_grid(self.config, self.log_f_support)
        self.log_grid = np.log(self.grid_followers)

    # features -> covariates
    def encode(self, videos: VideoBatch, meta: VideoMeta) -> np.ndarray:
        """(N, R) content vectors: pooled-statistics PCA scores, or VS-VAE posterior means."""
        if self.pooled is not None:
            return self.pooled.transform(
                pooled_statistics(
                    videos.frame,
                    videos.motion,
                    videos.audio,
                    videos.seg_mask,
                    videos.title,
                    videos.title_mask,
                )
            )
        feats = {
            k: getattr(videos, k) for k in ("frame", "motion", "audio", "seg_mask", "title", "title_mask")
        }
        ed = V.editing_features(
            videos.frame, videos.motion, videos.audio, videos.seg_mask, np.asarray(meta.length_s)
        )
        src = V.FeatureSource(feats, ed, self.vsvae_scale)
        return V.encode(self.vsvae, src)

    def covariates(self, videos: VideoBatch, meta: VideoMeta) -> np.ndarray:
        return covariates(self.encode(videos, meta), meta)

    def advise(
        self, videos: VideoBatch, meta: VideoMeta, value_per_impression: float, cost_per_1k_followers: float
    ) -> AdviceBatch:
        n = len(videos)
        assert np.asarray(meta.followers).shape == (n,), (
            f"expected meta.followers ({n},), got {np.asarray(meta.followers).shape}"
        )
        parts = [
            self._advise_chunk(
                videos.take(slice(i, i + self.config.batch_size)),
                _meta_slice(meta, slice(i, i + self.config.batch_size)),
                value_per_impression,
                cost_per_1k_followers,
            )
            for i in range(0, n, self.config.batch_size)
        ]
        return AdviceBatch.concat(parts)

    def advise_x(self, x: np.ndarray, followers: np.ndarray, value: float, cost: float) -> AdviceBatch:
        """advise() from covariates x (N, P) already built (evaluation and benchmarks use this)."""
        t = treatment(followers)
        fei_actual = self.estimator.marginal_effect(treatment=t, covariates=x)  # (N,)
        h_actual = self.estimator.predict(treatment=t, covariates=x)  # (N,)
        curves = fei_curves(self.estimator, x, self.log_grid)  # (N, G)
        h_grid = impression_curves(self.estimator, x, self.log_grid)  # (N, G)
        exp_grid = np.exp(h_grid) * self.smearing
        best, p_best = optimal_followers(exp_grid, self.grid_followers, value, cost)
        low, high = near_optimal_range(exp_grid, self.grid_followers, value, cost)
        exp_actual = np.exp(h_actual) * self.smearing
        return AdviceBatch(
            fei=fei_actual,
            curve_shape=list(classify_shape(curves, self.config.flat_range, self.config.rise_fraction)),
            expected_impressions=exp_actual,
            optimal_followers=self.grid_followers[best],
            optimal_followers_low=self.grid_followers[low],
            optimal_followers_high=self.grid_followers[high],
            expected_impressions_optimal=exp_grid[np.arange(len(best)), best],
            profit_actual=profit(value, cost, exp_actual, followers),
            profit_optimal=p_best,
        )

    def _advise_chunk(self, videos, meta, value, cost) -> AdviceBatch:
        return self.advise_x(
            self.covariates(videos, meta), np.asarray(meta.followers, dtype=np.float64), value, cost
        )

    # persistence: a directory with config.json and weights.pt
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        weights: dict = {"iv": self.estimator.state()}
        if self.vsvae is not None:
            weights["vsvae"] = V.save_state(self.vsvae, self.vsvae_scale)
        if self.pooled is not None:
            weights["pooled"] = self.pooled.state()
        buf = io.BytesIO()
        torch.save(weights, buf)
        blob = buf.getvalue()
        if not self.model_version:
            self.model_version = "fei-" + hashlib.sha256(blob).hexdigest()[:12]
        (path / "weights.pt").write_bytes(blob)
        cfg = {
            "model_version": self.model_version,
            "smearing": self.smearing,
            "log_f_support": list(self.log_f_support),
            "config": asdict(self.config),
            "content": "pooled_pca" if self.pooled is not None else "vsvae",
            "covariates": (
                [f"pc{i}" for i in range(len(self.pooled.comp_scale))]
                if self.pooled is not None
                else ["r"] * self.vsvae.cfg.latent_dim
            )
            + list(COVARIATE_POST_STATS),
            "report": self.report,
        }
        (path / "config.json").write_text(json.dumps(cfg, indent=2, default=_json_default))
        return path

    @classmethod
    def load(cls, path: str | Path) -> FeiAdvisor:
        path = require_files(path, ("config.json", "weights.pt"), "fit-fei")
        cfg = json.loads((path / "config.json").read_text())
        weights = torch.load(path / "weights.pt", weights_only=False)
        model, scale = V.load_state(weights["vsvae"]) if "vsvae" in weights else (None, None)
        pooled = PooledPCA.from_state(weights["pooled"]) if "pooled" in weights else None
        fc = FeiConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg["config"].items()})
        return cls(
            model,
            scale,
            load_iv_estimator(weights["iv"] if "iv" in weights else weights["deepiv"]),
            float(cfg["smearing"]),
            tuple(cfg["log_f_support"]),
            fc,
            cfg.get("report", {}),
            cfg["model_version"],
            pooled,
        )


def _meta_slice(meta: VideoMeta, sl: slice) -> VideoMeta:
    return VideoMeta(
        *(
            np.asarray(getattr(meta, f))[sl]
            for f in (
                "followers",
                "past_avg_hearts",
                "verified",
                "video_type",
                "length_s",
                "create_hour",
                "n_segments",
            )
        )
    )


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serializable: {type(o)}")


def smearing_factor(est, t: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Duan's smearing estimate mean exp(y - h(t, x)) on the training rows."""
    resid = y - est.predict(treatment=t, covariates=x)
    return float(np.mean(np.exp(np.clip(resid, -20, 20))))
