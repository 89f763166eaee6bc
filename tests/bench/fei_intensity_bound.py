"""Benchmark: how well could any estimator read a video's intensity from its features?

The FEI advisor's profit share is held under 0.95 by how little the covariates say about each
video's intensity k, which sets the height and place of its S-curve's rise (docs/fei.md,
"profit_bounds"). This computes what the simulator's own feature model allows, to tell an
estimator's shortfall from a limit of the world.

In ``inference.sim.features`` k enters the features in two places: each segment's frame and
motion vectors get (0.6 + 0.8 k) and (0.5 + 0.8 k) times the unit direction of the video's style,
under per-segment scene vectors (rank 8, shared by frame and motion) and white noise; and each
title token is a style word with probability 0.1 + 0.3 k. Audio does not depend on k.

- ``bayes``: the exact posterior mean of k under its Beta(2, 2) prior for an estimator that is
  told the style, the video's segment and token counts and every other latent (product on
  screen, presence, saliency, scene covariance; only the scene draws and the noise are left), and
  which title tokens are style words. Given those, the frame and motion means reduce to one
  Gaussian statistic of k (the GLS projection, Fisher information n * J_seg per video) and the
  title to a binomial count; both are drawn from each video's true k and the posterior is taken
  on a grid. Its R^2 is an upper bound for any reading of these features.
- ``probe``: a cross-fitted (two halves) least-squares probe of k, within each style, on the
  video's mean frame, mean motion and mean title vectors over its real segments / tokens (384
  columns): what a linear reading of the pooled features reaches. The same probe on the
  advisor's default content vector (16 noise-whitened directions) and on all 896 pooled
  statistics says what the fitted advisor reads and what it could.
- ``profit_share_level_known``: what each reading is worth, as ``bench_fei.profit_bounds``'
  ``content_intensity`` decision (true style and level, the intensity averaged over the reading's
  posterior) on the bench's 3,000-video sample.

    .venv/bin/python -m tests.bench.fei_intensity_bound [--dataset data/paper]     # under a minute on an idle 2-core machine

Writes ``intensity_bound.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq

import inference.fei as F
import inference.fei_train as FT
import inference.sim.world as W
import schemas.dataset as DS
from inference.sim import physics as PH
from inference.sim.features import NOISE
from tests.bench import bench_fei as BF

SLOPE = 0.8  # d(frame or motion) / dk along the style direction (inference.sim.features)
MOTION_SCENE = 0.7  # motion carries 0.7 x the segment's scene vector
SCENE_SCALE = 2.0
TITLE_P0, TITLE_P1 = 0.1, 0.3  # P(style word) = 0.1 + 0.3 k (inference.sim.world._titles)


def segment_information(style: int) -> float:
    """Fisher information about k of one segment's frame and motion vectors (the GLS projection)."""
    g = PH.geometry()
    d = g.scene.shape[1]
    ss = SCENE_SCALE**2 * g.scene.T.astype(np.float64) @ g.scene  # (d, d) scene covariance
    eye = NOISE**2 * np.eye(d)
    cov = np.block([[ss + eye, MOTION_SCENE * ss], [MOTION_SCENE * ss, MOTION_SCENE**2 * ss + eye]])
    grad = SLOPE * np.concatenate([g.style_frame[style], g.style_motion[style]]).astype(np.float64)
    return float(grad @ np.linalg.solve(cov, grad))


def draw_statistics(k: np.ndarray, info: np.ndarray, n_title: np.ndarray, rng: np.random.Generator):
    """Each video's sufficient statistics, drawn from its true k: the GLS statistic T ~ N(k, 1 /
    info) of its frame and motion means, and its style-word count c ~ Binomial(n_title, 0.1 + 0.3 k)."""
    t = k + rng.standard_normal(k.size) / np.sqrt(info)
    c = rng.binomial(n_title, TITLE_P0 + TITLE_P1 * k)
    return t, c


def posterior(t, c, info, n_title, grid: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """(N, len(grid)) posterior weights of k on ``grid`` under the Beta(2, 2) prior."""
    log_prior = np.log(grid) + np.log1p(-grid)
    pg = TITLE_P0 + TITLE_P1 * grid
    out = np.empty((t.size, grid.size))
    for lo in range(0, t.size, chunk):
        sl = slice(lo, lo + chunk)
        ll = -0.5 * info[sl, None] * (t[sl, None] - grid[None, :]) ** 2
        ll += c[sl, None] * np.log(pg)[None, :] + (n_title[sl] - c[sl])[:, None] * np.log1p(-pg)[None, :]
        w = np.exp(ll + log_prior[None, :] - (ll + log_prior[None, :]).max(1, keepdims=True))
        out[sl] = w / w.sum(1, keepdims=True)
    return out


def bayes_sq_errors(k, t, c, info, n_title) -> np.ndarray:
    """Per video squared error of the posterior mean of k (grid of 399 inner points)."""
    grid = np.linspace(0.0, 1.0, 401)[1:-1]
    return (posterior(t, c, info, n_title, grid) @ grid - k) ** 2


def probe_predictions(x: np.ndarray, k: np.ndarray, style: np.ndarray) -> np.ndarray:
    """Cross-fitted (alternate rows) within-style least-squares predictions of k from x."""
    pred = np.empty_like(k)
    half = np.arange(k.size) % 2
    for s in np.unique(style):
        for h in (0, 1):
            tr, te = (style == s) & (half != h), (style == s) & (half == h)
            a = np.column_stack([x[tr], np.ones(tr.sum())])
            coef = np.linalg.lstsq(a, k[tr], rcond=None)[0]
            pred[te] = np.column_stack([x[te], np.ones(te.sum())]) @ coef
    return pred


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="data/paper")
    ap.add_argument("--out", default="runs/bench/fei_intensity_bound")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-eval", type=int, default=3000, help="videos scored for the profit ceilings")
    a = ap.parse_args(argv)
    root, out = Path(a.dataset), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tv = pq.read_table(
        root / "truth" / "videos.parquet",
        columns=["feature_row", "style", "intensity", "title_names_product"],
    )
    rows = tv.column("feature_row").to_numpy()
    style = np.array([PH.STYLES.index(str(s)) for s in tv.column("style").to_pylist()])
    k = tv.column("intensity").to_numpy().astype(np.float64)
    names = tv.column("title_names_product").to_numpy(zero_copy_only=False).astype(bool)
    feat = root / "features"
    n_seg = np.asarray(np.load(feat / "seg_mask.npy", mmap_mode="r")[rows]).sum(1)
    # tokens that can be style words: the real ones but the brand word and the noun after it
    n_title = np.asarray(np.load(feat / "title_mask.npy", mmap_mode="r")[rows]).sum(1) - 2 * names
    n_title = np.maximum(n_title, 0)
    j_seg = np.array([segment_information(s) for s in range(len(PH.STYLES))])
    info = n_seg * j_seg[style]
    var_k = float(k.var())
    rng = np.random.default_rng(a.seed)
    res: dict = {
        "dataset": str(root),
        "n_videos": int(k.size),
        "var_k": var_k,
        "segment_information": j_seg.tolist(),
    }
    t, c = draw_statistics(k, info, n_title, rng)
    err_all = bayes_sq_errors(k, t, c, info, n_title)
    err_video = bayes_sq_errors(k, t, np.zeros_like(c), info, np.zeros_like(n_title))  # frame + motion only
    res["bayes_r2"] = 1 - float(err_all.mean()) / var_k
    res["bayes_r2_frame_motion_only"] = 1 - float(err_video.mean()) / var_k
    by_n = {}
    for lo, hi in ((1, 2), (3, 4), (5, 8), (9, 20)):
        m = (n_seg >= lo) & (n_seg <= hi)
        by_n[f"{lo}-{hi}"] = {"share": float(m.mean()), "bayes_r2": 1 - float(err_all[m].mean()) / var_k}
    res["bayes_r2_by_segments"] = by_n
    # the pooled statistics (inference.fei.pooled_statistics, one pass over the features): their
    # frame, motion and title means are the linear readings below; all of them and the advisor's
    # default content vector (16 noise-whitened directions of them) are read too
    _, _, vrows = FT.read_video_meta(root)
    assert np.array_equal(vrows, rows), "truth/videos.parquet rows must follow videos.parquet"
    feats = DS.load_features(root)
    stats = FT.dataset_pooled(feats, rows, progress=False)
    d = stats.shape[1] // len(F.POOLED_STATS)
    block = {name: stats[:, i * d : (i + 1) * d] for i, name in enumerate(F.POOLED_STATS)}
    x = np.hstack([block["frame_mean"], block["motion_mean"], block["title_mean"]]).astype(np.float64)
    pred = probe_predictions(x, k, style)
    res["probe_r2"] = 1 - float(((pred - k) ** 2).mean()) / var_k
    res["probe_r2_frame_motion_only"] = (
        1 - float(((probe_predictions(x[:, : 2 * d], k, style) - k) ** 2).mean()) / var_k
    )
    # a reading whose weight on each video's own shrinkage can follow its segment count
    inter = np.column_stack([x, x / n_seg[:, None], 1.0 / n_seg])
    pred_n = probe_predictions(inter, k, style)
    res["probe_r2_with_segment_interactions"] = 1 - float(((pred_n - k) ** 2).mean()) / var_k
    fc = FT.FitConfig()
    noise = FT.dataset_segment_noise(feats, rows, seed=fc.deepiv.seed)
    pooled = F.PooledPCA.fit(
        stats, fc.pooled_dim, seed=fc.deepiv.seed, noise=noise, snr_dim=min(fc.snr_dim, fc.pooled_dim)
    )
    pred_r = probe_predictions(pooled.transform(stats), k, style)
    pred_s = probe_predictions((stats - pooled.mean) / pooled.scale, k, style)
    res["advisor_content_r2"] = 1 - float(((pred_r - k) ** 2).mean()) / var_k
    res["pooled_statistics_r2"] = 1 - float(((pred_s - k) ** 2).mean()) / var_k
    res["profit_share_level_known"] = profit_ceilings(
        root,
        style,
        k,
        {"advisor_content": pred_r, "pooled_statistics": pred_s, "means": pred, "means_x_segments": pred_n},
        (t, c, info, n_title),
        a.n_eval,
    )
    (out / "intensity_bound.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


def profit_ceilings(
    root: Path, style: np.ndarray, k: np.ndarray, probes: dict, stats: tuple, n_eval: int
) -> dict:
    """Profit shares at bench_fei's (VALUE, COST) of decisions on the simulator's curve family that
    know each video's style and level and read its intensity through: the prior alone, each
    probe (Gaussian posterior with the per-style residual variance, as bench_fei.profit_bounds),
    the Bayes posterior above, and the true value (nearest grid point). bench_fei's 3,000-video
    rule (seed 0) on the advisor's default follower grid."""
    params = BF.truth_params(root)
    meta = json.loads((root / "meta.json").read_text())["sim_config"]
    sim = W.SimConfig(**{kk: v for kk, v in meta.items() if kk in W.SimConfig.__dataclass_fields__})
    cfg = F.FeiConfig()
    lo, hi = np.quantile(params_log_followers(root), cfg.support_quantiles)
    grid = F.follower_grid(cfg, (float(lo), float(hi)))
    adv = SimpleNamespace(grid_followers=grid, log_grid=np.log(grid))
    idx = np.random.default_rng(0).choice(k.size, min(n_eval, k.size), replace=False)
    styles = np.array(PH.STYLES)[style[idx]]
    decide = BF.PosteriorDecision(params, idx, styles, adv, sim)
    ks, prior = BF.INTENSITY_GRID, BF.INTENSITY_PRIOR
    out = {"prior_only": decide.share(np.tile(prior / prior.sum(), (idx.size, 1)))}
    for name, pred in probes.items():
        var = np.array([np.mean((k[style == s] - pred[style == s]) ** 2) for s in range(len(PH.STYLES))])
        w = prior[None, :] * np.exp(-0.5 * (pred[idx, None] - ks[None, :]) ** 2 / var[style[idx], None])
        out[name] = decide.share(w / w.sum(1, keepdims=True))
    t, c, info, n_title = stats
    out["bayes"] = decide.share(posterior(t[idx], c[idx], info[idx], n_title[idx], ks))
    known = np.zeros((idx.size, ks.size))
    known[np.arange(idx.size), np.abs(k[idx, None] - ks[None, :]).argmin(1)] = 1.0
    out["intensity_known"] = decide.share(known)
    return out


def params_log_followers(root: Path) -> np.ndarray:
    return pq.read_table(root / "truth" / "videos.parquet", columns=["log_followers"]).column(0).to_numpy()


if __name__ == "__main__":
    main()
