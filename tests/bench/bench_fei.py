"""FEI benchmark: content representation + IV estimator on the simulator against its true FEI curves.

    .venv/bin/python -m tests.bench.bench_fei --dataset data/fei_paper            # all parts
    .venv/bin/python -m tests.bench.bench_fei --dataset data/fei_paper --parts scale --ns 10000,500000

(the dataset is made by ``simulate("paper", seed=0).write_dataset("data/fei_paper")``; it is
generated on first use when missing). Writes runs/bench/fei/*.json and *.png and prints figures.

Parts
- ``fit``: content representation (``--content``: pooled statistics + PCA by default, or the
  paper's VS-VAE) + the IV estimator (``--estimator``: the control function by default, or Deep
  IV) on the world's videos (fit_advisor), cached in runs/bench/fei/advisor.
- ``eval``: on every video, FEI error of the advisor's estimator / Deep IV (fitted here when the
  advisor's is the control function; ``--skip-deepiv`` skips it) / naive neural regression / 2SLS against the true
  FEI (inference.sim.truth.true_fei) over the truth grid (ln F from 100 to 10M, 64 points) kept
  inside the observed support of followers (0.5%-99.5% quantiles), and also over the central 95%;
  shape accuracy; profit of the chosen follower size under the true response (value 0.02, cost 10
  per 1k, the paper's Walmart case, plus a grid of conditions); gamma for the valid instrument
  and for an invalid one; VS-VAE reconstruction against the NIR (Table 2); tier table (Table 4);
  average FEI curve with a bootstrap band (Figure 6); optimum heatmap (Figure 12); advise speed.
- ``scale``: FEI error and fit time vs n. (t, x, z, y) for n videos are built from the simulator's
  own generative functions, not by generating n videos' segment features: video rows (content
  vector r and post statistics -> x, and the true curve parameters) are resampled with
  replacement from the paper world, then for each row a fresh influencer is drawn exactly as
  inference.sim.world does it: z ~ N(0,1), u ~ N(0,1),
  ln F = clip(F_MEAN + instrument_strength z + confounder_followers u + N(0,1), LN_F_MIN, LN_F_MAX),
  past hearts = exp(3.3 + 1.3 z), and ln R = true_log_impressions(ln F, params) +
  confounder_impressions u + N(0, impression_noise). One influencer per row (the world shares
  influencers across ~2.3 videos; that only affects clustering, not the estimand).

The invalid instrument: the same z, with the outcome given a direct effect of z,
y_bad = y + 0.5 sin(3 z_std). A direct effect that is a smooth monotone function of z cannot be
detected by this check with one instrument: the IV fit itself absorbs it into h through t (the
moment condition E[y - h | x, z] = 0 is what the fit enforces); see docs/fei.md.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from inference import fei as F
from inference import fei_train as FT
from inference import vsvae as V
from inference.deepiv import (
    IV_ESTIMATORS,
    DeepIVConfig,
    IVEnsemble,
    NaiveNeuralRegression,
    TwoStageLeastSquares,
    instrument_validity,
)
from inference.sim import physics as PH
from inference.sim import truth as T
from inference.sim import world as W

OUT = Path("runs/bench/fei")
PH_STYLE_CODE = {name: i for i, name in enumerate(PH.STYLES)}  # truth/videos.parquet style -> code
VALUE, COST = 0.02, 10.0  # the paper's Walmart case: $0.02 per impression, $10 per 1k followers
HEAT_VALUES = np.array([0.02, 0.04, 0.06, 0.08, 0.10, 0.12, 0.14, 0.16, 0.18, 0.20])
HEAT_COSTS = np.array([5.0, 10.0, 15.0, 20.0, 25.0, 50.0, 75.0, 100.0])
IV_CFG = DeepIVConfig(batch_size=1024, n_samples=4, max_epochs=40, patience=5, progress=True)  # Deep IV's


def fit_config(args) -> FT.FitConfig:
    """The advisor's FitConfig for --content / --estimator (Deep IV with the benchmark's IV_CFG)."""
    return FT.FitConfig(
        content=args.content,
        pooled_dim=args.pooled_dim,
        snr_dim=args.snr_dim,
        level_dim=args.level_dim,
        level_score=args.level_score,
        saliency_level=args.saliency_level,
        estimator=args.estimator,
        members=args.members,
        vsvae=V.VSVAEConfig(max_train_videos=args.vae_train_videos, max_epochs=args.vae_epochs),
        deepiv=replace(IV_CFG, seed=args.seed),
        control=replace(FT.FitConfig().control, seed=args.seed, **dict(_setting(kv) for kv in args.control)),
    )


def _setting(kv: str) -> tuple[str, float | tuple[int, ...]]:
    """'weight_decay=3e-4' -> ('weight_decay', 0.0003), 'second_hidden=256/128/64' -> a tuple, for --control."""
    key, _, value = kv.partition("=")
    if key not in DeepIVConfig.__dataclass_fields__ or not value:
        raise SystemExit(f"--control {kv!r}: expected FIELD=NUMBER (or N/N/N) with a DeepIVConfig field")
    default = getattr(DeepIVConfig(), key)
    if isinstance(default, tuple):
        return key, tuple(int(v) for v in value.split("/") if v)
    return key, type(default)(float(value))


def fit_estimator(kind: str, t, x, z, y, args, progress: bool = True):
    """An IV estimator of ``kind`` fitted with the advisor's settings for covariates x, whose first
    x.shape[1] - len(F.COVARIATE_POST_STATS) columns are the content vector."""
    cfg = replace(fit_config(args), estimator=kind)
    return FT.fit_iv(cfg, x.shape[1] - len(F.COVARIATE_POST_STATS), t, x, z, y, progress=progress)


def _json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, default=F._json_default))


def ensure_world(path: Path) -> None:
    """The paper world in ``path``: generated when missing, or when it was written by another
    simulator version (its truth would not be this code's)."""
    from inference.sim import simulate, stale_world

    why = stale_world(path)
    if why or not (path / "meta.json").exists():
        print(f"{why + '; ' if why else ''}generating the paper world into {path} ...")
        simulate("paper", seed=0).write_dataset(path, progress=True)


def truth_params(path: Path) -> dict[str, np.ndarray]:
    t = pq.read_table(path / "truth" / "videos.parquet")
    vid = pq.read_table(path / "videos.parquet").column("video_id").to_pylist()
    assert t.column("video_id").to_pylist() == vid, "truth/videos.parquet rows must follow videos.parquet"
    return {k: t.column(k).to_numpy() for k in T.PARAM_NAMES}


def eval_grid(t: np.ndarray, q: tuple[float, float]) -> np.ndarray:
    lo, hi = np.quantile(t, q)
    return T.GRID[(lo <= T.GRID) & (hi >= T.GRID)]


def true_expected_impressions(log_grid: np.ndarray, params: dict, sim) -> np.ndarray:
    """E[impressions | do(F), content] = exp(g) E[exp(b_u u + eps)], u ~ N(0,1), eps ~ N(0, s^2)."""
    return np.exp(
        T.true_log_impressions(log_grid, params)
        + 0.5 * (sim.confounder_impressions**2 + sim.impression_noise**2)
    )


# ----------------------------------------------------------------------------------------------- fit


def part_fit(dataset: Path, args) -> dict:
    cache = OUT / "advisor"
    npz = OUT / "paper_xtzy.npz"
    if (cache / "config.json").exists() and npz.exists() and args.refit_iv:
        # keep the content encoder and its x; fit the IV estimator again (e.g. another estimator)
        adv, d = F.FeiAdvisor.load(cache), np.load(npz)
        x, t, z, y = d["x"], d["t"], d["z"], d["y"]
        t0 = time.time()
        est = fit_estimator(args.estimator, t, x, z, y, args)
        secs = time.time() - t0
        adv.estimator, adv.smearing, adv.model_version = est, F.smearing_factor(est, t, x, y), ""
        adv.report.update(FT.iv_report(est, fit_config(args), t, x, z, y))
        adv.report.setdefault("seconds", {})["iv"] = round(secs, 1)
        adv.save(cache)
        _json(OUT / "fit.json", {**adv.report, "model_version": adv.model_version})
        print(f"refit {args.estimator}: {secs:.0f} s, model {adv.model_version}")
        return adv.report
    if (cache / "config.json").exists() and npz.exists() and not args.refit:
        print(f"using the cached fit in {cache}")
        return {"cached": True}
    t0 = time.time()
    fit = FT.fit_advisor(dataset, fit_config(args))
    secs = time.time() - t0
    fit.advisor.save(cache)
    np.savez(npz, x=fit.x, t=fit.t, z=fit.z, y=fit.y, r=fit.r)
    rep = {"seconds_total": secs, **fit.advisor.report, "model_version": fit.advisor.model_version}
    _json(OUT / "fit.json", rep)
    print(f"fit: {secs:.0f} s, model {fit.advisor.model_version}")
    return rep


# ---------------------------------------------------------------------------------------------- eval


def fei_errors(est, x, params, grid, n_eval, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(x), min(n_eval, len(x)), replace=False)
    est_c = F.fei_curves(est, x[idx], grid)
    true_c = T.true_fei(grid, {k: v[idx] for k, v in params.items()})
    return {
        "mae": float(np.abs(est_c - true_c).mean()),
        "by_grid": np.abs(est_c - true_c).mean(0),
        "idx": idx,
        "est": est_c,
        "true": true_c,
    }


INTENSITY_GRID = np.linspace(0.02, 0.98, 25)  # the intensity values a posterior decision averages over
INTENSITY_PRIOR = INTENSITY_GRID * (1 - INTENSITY_GRID)  # Beta(2, 2), the simulator's prior, up to a constant


class PosteriorDecision:
    """Profit share at (VALUE, COST) of follower sizes chosen on the simulator's own curve family:
    each video's true style and (unless given) level, its intensity averaged over posterior
    weights on ``INTENSITY_GRID``, the size maximising that expected profit; scored on the true
    curves of the videos ``idx``, as the advisor's share is."""

    def __init__(self, params: dict, idx: np.ndarray, styles: np.ndarray, adv, sim):
        self.idx, self.adv, self.sim = idx, adv, sim
        self.intercept = params["intercept"][idx]
        self.style_i = np.array([PH_STYLE_CODE[st] for st in styles])
        self.true_grid = true_expected_impressions(adv.log_grid, {k: v[idx] for k, v in params.items()}, sim)
        _, self.p_true = F.optimal_followers(self.true_grid, adv.grid_followers, VALUE, COST)
        self.pos = self.p_true > 0

    def share(self, weights: np.ndarray, intercept: np.ndarray | None = None, factor: float = 1.0) -> float:
        from inference.sim.content import curve_params

        icpt = self.intercept if intercept is None else intercept
        expected = np.zeros_like(self.true_grid)
        for j, kj in enumerate(INTENSITY_GRID):
            p = curve_params(self.style_i, np.full(len(self.idx), kj), icpt)
            expected += (
                weights[:, j : j + 1] * true_expected_impressions(self.adv.log_grid, p, self.sim) * factor
            )
        best, _ = F.optimal_followers(expected, self.adv.grid_followers, VALUE, COST)
        got = F.profit(
            VALUE, COST, self.true_grid[np.arange(len(self.idx)), best], self.adv.grid_followers[best]
        )
        return float(got[self.pos].sum() / self.p_true[self.pos].sum())


def profit_bounds(
    dataset: Path, params: dict, r: np.ndarray, idx: np.ndarray, adv, sim, x: np.ndarray | None = None
) -> dict:
    """Profit shares at (VALUE, COST) of decisions that know each video's true style and level
    (intercept) and the simulator's curve family, and know the intensity (which sets the S-curve's
    peak) only as well as the content does: ``style_only`` averages the curve over the intensity
    prior, ``content_intensity`` over its posterior given a cross-fitted within-style least-squares
    estimate from the content vector r (normal likelihood with the residual variance), each
    video's follower size maximising expected profit: what an estimator that reads r perfectly
    could reach (knowing the true intensity too would reach 1). ``content_intensity_and_level``
    also knows the level only as well as the advisor's covariates x read it (a cross-fitted
    least-squares probe of the intercept, times exp(residual variance / 2)): the level moves the
    optimum of every curve shape, so this is the bound for an estimator that reads x."""
    tv = pq.read_table(dataset / "truth" / "videos.parquet", columns=["style", "intensity"])
    styles = np.array([str(v) for v in tv.column("style").to_pylist()])
    k = tv.column("intensity").to_numpy()
    fold = np.arange(len(k)) % 2

    def cross_fitted(features: np.ndarray, target: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Least-squares predictions of target[rows] from features, each half fitted on the other."""
        a = np.column_stack([features, np.ones(len(features))])
        out = np.zeros_like(target)
        for f in (0, 1):
            tr, te = rows & (fold != f), rows & (fold == f)
            out[te] = a[te] @ np.linalg.lstsq(a[tr], target[tr], rcond=None)[0]
        return out

    k_hat, resid_var = np.zeros_like(k), {}
    for st in np.unique(styles):
        k_hat[styles == st] = cross_fitted(r, k, styles == st)[styles == st]
        resid_var[st] = float(np.mean((k[styles == st] - k_hat[styles == st]) ** 2))
    ks, prior = INTENSITY_GRID, INTENSITY_PRIOR
    share = PosteriorDecision(params, idx, styles[idx], adv, sim).share
    flat = np.tile(prior / prior.sum(), (len(idx), 1))
    var = np.array([resid_var[st] for st in styles[idx]])[:, None]
    post = prior[None, :] * np.exp(-0.5 * (k_hat[idx][:, None] - ks[None, :]) ** 2 / var)
    post /= post.sum(1, keepdims=True)
    out = {"style_only": share(flat), "content_intensity": share(post)}
    if x is not None:
        icpt = params["intercept"]
        i_hat = cross_fitted(x, icpt, np.ones(len(icpt), bool))
        s2 = float(np.mean((icpt - i_hat) ** 2))
        out["content_intensity_and_level"] = share(post, i_hat[idx], float(np.exp(s2 / 2)))
        out["level_r2_from_x"] = float(1 - s2 / np.var(icpt))
    return {
        **out,
        "intensity_r2_within_style": {
            str(st): float(1 - resid_var[st] / np.var(k[styles == st])) for st in np.unique(styles)
        },
    }


def part_eval(dataset: Path, args) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    adv = F.FeiAdvisor.load(OUT / "advisor")
    d = np.load(OUT / "paper_xtzy.npz")
    x, t, z, y = d["x"], d["t"], d["z"], d["y"]
    params = truth_params(dataset)
    sim = W.SimConfig(
        **{
            k: v
            for k, v in json.loads((dataset / "meta.json").read_text())["sim_config"].items()
            if k in W.SimConfig.__dataclass_fields__
        }
    )
    res: dict = {"n_videos": int(len(t)), "model_version": adv.model_version}
    grid_sup, grid_c95 = eval_grid(t, (0.005, 0.995)), eval_grid(t, (0.025, 0.975))
    res["grid"] = {
        "support_0.5_99.5": [float(grid_sup[0]), float(grid_sup[-1]), len(grid_sup)],
        "central_95": [float(grid_c95[0]), float(grid_c95[-1]), len(grid_c95)],
    }

    # estimators: the advisor's, Deep IV (the paper's), naive, 2SLS
    kind = adv.report.get("estimator", "deepiv")
    res["estimator"] = kind
    ests = {kind: adv.estimator}
    if kind != "deepiv" and not args.skip_deepiv:
        print("fitting Deep IV for comparison ...")
        t0 = time.time()
        ests["deepiv"] = fit_estimator("deepiv", t, x, z, y, args)
        res["seconds_deepiv_fit"] = time.time() - t0
    print("fitting the baselines ...")
    naive_cfg = replace(
        IV_CFG, progress=False, max_epochs=args.baseline_epochs
    )  # the same network as Deep IV
    # as many naive fits as the advisor averages (seeds as IVEnsemble.of), so the ratio compares like with like
    n_members = len(getattr(adv.estimator, "members", [None]))
    naive = [
        NaiveNeuralRegression(replace(naive_cfg, seed=naive_cfg.seed + i)).fit(
            treatment=t, covariates=x, outcome=y
        )
        for i in range(n_members)
    ]
    ests["naive"] = naive[0] if n_members == 1 else IVEnsemble(naive)
    ests["2sls"] = TwoStageLeastSquares().fit(treatment=t, covariates=x, instruments=z, outcome=y)
    errs = {}
    for name, est in ests.items():
        e_sup = fei_errors(est, x, params, grid_sup, args.n_eval)
        e_c95 = fei_errors(est, x, params, grid_c95, args.n_eval)
        errs[name] = e_sup
        res[f"fei_mae_{name}"] = {"support": e_sup["mae"], "central_95": e_c95["mae"]}
        print(f"FEI MAE {name:8s} support grid {e_sup['mae']:.4f}   central 95% {e_c95['mae']:.4f}")
    res["advisor_over_naive"] = res[f"fei_mae_{kind}"]["support"] / res["fei_mae_naive"]["support"]

    # shapes (the advisor's curves on the advisor's rule, over the advisor's grid)
    e = errs[kind]
    idx = e["idx"]
    est_adv = F.fei_curves(adv.estimator, x[idx], adv.log_grid)
    shapes = F.classify_shape(est_adv, adv.config.flat_range, adv.config.rise_fraction)
    true_shape = np.array(T.CURVE_NAMES)[params["curve"][idx].astype(int)]
    res["shape_accuracy"] = float(np.mean(shapes == true_shape))
    res["shape_confusion"] = {
        ts: {ps: int(np.sum((true_shape == ts) & (shapes == ps))) for ps in F.SHAPES} for ts in F.SHAPES
    }
    print(f"shape accuracy {res['shape_accuracy']:.3f}  confusion {res['shape_confusion']}")

    # profit of the chosen follower size under the true response
    sub = {k: v[idx] for k, v in params.items()}
    true_grid = true_expected_impressions(adv.log_grid, sub, sim)  # (N, G)
    est_grid = np.exp(F.impression_curves(adv.estimator, x[idx], adv.log_grid)) * adv.smearing
    conds = [(VALUE, COST)] + [(v, c) for v in (0.01, 0.05, 0.1) for c in (5.0, 25.0, 100.0)]
    res["profit"] = []
    for v, c in conds:
        best_est, _ = F.optimal_followers(est_grid, adv.grid_followers, v, c)
        best_true, p_true = F.optimal_followers(true_grid, adv.grid_followers, v, c)
        p_chosen = F.profit(v, c, true_grid[np.arange(len(idx)), best_est], adv.grid_followers[best_est])
        pos = p_true > 0
        # the advised near-optimal range (sizes within 95% of the advised optimum's expected profit)
        lo, hi = F.near_optimal_range(est_grid, adv.grid_followers, v, c)
        end_share = {}
        for end, k in (("low", lo), ("high", hi)):  # the true profit if the buyer takes that end
            got = F.profit(v, c, true_grid[np.arange(len(idx)), k], adv.grid_followers[k])
            end_share[end] = float(got[pos].sum() / p_true[pos].sum())

        row = {
            "value": v,
            "cost": c,
            "share_of_true_optimal_profit_total": float(p_chosen[pos].sum() / p_true[pos].sum()),
            "median_ratio": float(np.median(p_chosen[pos] / p_true[pos])),
            "videos_at_95pct_of_true_optimum": float(
                np.mean(p_chosen[pos] >= F.NEAR_OPTIMAL_SHARE * p_true[pos])
            ),
            "range_holds_true_optimum": float(np.mean((lo <= best_true) & (best_true <= hi))),
            "range_holds_true_optimum_positive": float(np.mean(((lo <= best_true) & (best_true <= hi))[pos])),
            "range_low_end_share_total": end_share["low"],
            "range_high_end_share_total": end_share["high"],
            "median_range_decades": float(
                np.median(np.log10(adv.grid_followers[hi] / adv.grid_followers[lo]))
            ),
            "videos_with_positive_optimum": int(pos.sum()),
            "median_log10_ratio_chosen_to_true_F": float(
                np.median(np.log10(adv.grid_followers[best_est] / adv.grid_followers[best_true]))
            ),
        }
        res["profit"].append(row)
    p0 = res["profit"][0]
    print(
        f"profit share of the true optimum at value {VALUE}, cost {COST}: {p0['share_of_true_optimal_profit_total']:.4f} (median per video {p0['median_ratio']:.4f})"
    )
    print(
        f"near-optimal range (advised sizes within {F.NEAR_OPTIMAL_SHARE:.0%} of the advised optimum's profit): "
        f"holds the true optimum for {p0['range_holds_true_optimum_positive']:.3f} of videos with a positive "
        f"optimum; median width {p0['median_range_decades']:.2f} decades; profit share at its low / high end "
        f"{p0['range_low_end_share_total']:.4f} / {p0['range_high_end_share_total']:.4f}; "
        f"{p0['videos_at_95pct_of_true_optimum']:.3f} of videos get >= 95% of their true optimum at the advised size"
    )

    res["profit_bounds"] = profit_bounds(
        dataset, params, x[:, : x.shape[1] - len(F.COVARIATE_POST_STATS)], idx, adv, sim, x
    )
    print(
        f"profit share bounds (decisions on the true curve family; see profit_bounds): {res['profit_bounds']}"
    )

    # smearing check: predicted vs true mean impressions at the actual follower counts
    res["smearing"] = adv.smearing
    res["expected_impressions_ratio_at_actual"] = float(
        (np.exp(adv.estimator.predict(treatment=t[idx], covariates=x[idx])) * adv.smearing).mean()
        / true_expected_impressions(t[idx][:, None], {k: v for k, v in sub.items()}, sim)[:, 0].mean()
    )

    # instrument validity: valid z and an invalid one (direct effect sin(3 z_std) on the outcome)
    resid = y - adv.estimator.predict(treatment=t, covariates=x)
    res["gamma"] = {
        "valid": FT.validity_gamma(adv.estimator, resid, x, z),
        "valid_all_covariates": instrument_validity(resid, x, z),  # verified included
    }
    if not args.skip_invalid:
        zs = (z[:, 0] - z[:, 0].mean()) / z[:, 0].std()
        y_bad = y + 0.5 * np.sin(3 * zs)
        bad = fit_estimator(kind, t, x, z, y_bad, args, progress=False)
        res["gamma"]["invalid_sin_direct_effect"] = FT.validity_gamma(
            bad, y_bad - bad.predict(treatment=t, covariates=x), x, z
        )
    print(f"gamma {res['gamma']}")

    # VS-VAE Table 2
    res["vsvae_reconstruction"] = adv.report.get("vsvae", {}).get("reconstruction_test")

    # Table 4 by true curve type, Figure 6 average with band, Figure 12 heatmap
    tiers = F.tier_means(F.fei_curves(adv.estimator, x[idx], T.GRID), T.GRID)
    tiers_true = F.tier_means(e["true"] if len(grid_sup) == len(T.GRID) else T.true_fei(T.GRID, sub), T.GRID)
    res["tier_table"] = {
        ts: {
            "fitted": {k: float(np.nanmean(v[true_shape == ts])) for k, v in tiers.items()},
            "true": {k: float(np.nanmean(v[true_shape == ts])) for k, v in tiers_true.items()},
        }
        for ts in F.SHAPES
    }
    band = F.group_mean_band(est_adv, n_boot=200)
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    ax[0].plot(adv.log_grid, band["mean"], label=f"{kind} mean FEI")
    ax[0].fill_between(adv.log_grid, band["lower"], band["upper"], alpha=0.3, label="95% bootstrap band")
    ax[0].plot(adv.log_grid, T.true_fei(adv.log_grid, sub).mean(0), "k--", label="true mean FEI")
    ax[0].set_xlabel("ln followers")
    ax[0].legend()
    for ts in F.SHAPES:
        m = true_shape == ts
        ax[1].plot(adv.log_grid, est_adv[m].mean(0), label=f"{kind} {ts}")
        ax[1].plot(
            adv.log_grid,
            T.true_fei(adv.log_grid, {k: v[m] for k, v in sub.items()}).mean(0),
            "--",
            label=f"true {ts}",
        )
    ax[1].set_xlabel("ln followers")
    ax[1].legend(fontsize=7)
    for name in errs:
        ax[2].plot(grid_sup, errs[name]["by_grid"], label=name)
    ax[2].set_xlabel("ln followers")
    ax[2].set_ylabel("mean |FEI error|")
    ax[2].legend()
    fig.tight_layout()
    fig.savefig(OUT / "fei_curves.png", dpi=100)
    plt.close(fig)
    heat = F.optimum_heatmap(est_grid.mean(0), adv.grid_followers, HEAT_VALUES, HEAT_COSTS)
    F.plot_heatmap(
        heat,
        HEAT_VALUES,
        HEAT_COSTS,
        OUT / "optimum_heatmap.png",
        f"optimal followers of the average video ({kind})",
    )
    res["heatmap_optimal_followers"] = heat

    # advise throughput (content encode + curves + optimum), batches of 256 from the dataset
    videos, meta, rows = FT.read_video_meta(dataset)
    from schemas import dataset as DS

    feats = DS.load_features(dataset)
    bs, nb = 256, 8
    batches = []
    for b in range(nb):
        r = rows[b * bs : (b + 1) * bs]
        vb = FT.VideoBatch(
            *(
                np.asarray(feats[k][r], dtype=bool if "mask" in k else np.float32)
                for k in ("frame", "motion", "audio", "seg_mask", "title", "title_mask")
            )
        )
        batches.append((vb, F._meta_slice(meta, slice(b * bs, (b + 1) * bs))))
    adv.advise(*batches[0], VALUE, COST)  # warm-up
    t0 = time.time()
    for vb, m in batches:
        adv.advise(vb, m, VALUE, COST)
    res["advise_videos_per_s"] = nb * bs / (time.time() - t0)
    print(f"advise throughput {res['advise_videos_per_s']:.0f} videos/s (batches of {bs})")
    for v in errs.values():
        v.pop("est"), v.pop("true"), v.pop("idx")
    res["fei_error_by_grid"] = {"grid": grid_sup, **{k: v["by_grid"] for k, v in errs.items()}}
    _json(OUT / "eval.json", res)
    return res


# --------------------------------------------------------------------------------------------- scale


def scaled_data(n: int, x_src: np.ndarray, params_src: dict, sim, seed: int):
    """(t, x, z, y, params) for n rows from the simulator's popularity / impressions functions."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(x_src), n)
    params = {k: v[rows] for k, v in params_src.items()}
    z = rng.standard_normal(n)
    u = rng.standard_normal(n)
    ln_f = np.clip(
        W.F_MEAN + sim.instrument_strength * z + sim.confounder_followers * u + rng.normal(0, 1.0, n),
        W.LN_F_MIN,
        W.LN_F_MAX,
    )
    ln_f = np.log(np.maximum(np.exp(ln_f).round(), 1))  # integer follower counts, as the world stores them
    hearts = np.exp(3.3 + 1.3 * z).round(1)
    y = (
        T.true_log_impressions(ln_f, params)
        + sim.confounder_impressions * u
        + rng.normal(0, sim.impression_noise, n)
    )
    y = np.log(
        np.maximum(np.floor(np.exp(y)), 1.0)
    )  # stored as integer impressions, read back as F.outcome does
    return ln_f, x_src[rows], F.instrument(hearts), y, params


def scaled_profit_share(est, t, x, y, params, sim, n_eval: int, seed: int = 0) -> float:
    """The eval part's profit share at (VALUE, COST) for an estimator fitted on scaled rows: the
    advisor's grid (``fei.follower_grid`` within the training support of t) and Duan's smearing
    factor on the fitted rows, scored on the true curves of n_eval rows."""
    cfg = F.FeiConfig()
    grid_f = F.follower_grid(cfg, tuple(float(q) for q in np.quantile(t, cfg.support_quantiles)))
    idx = np.random.default_rng(seed).choice(len(x), min(n_eval, len(x)), replace=False)
    est_grid = np.exp(F.impression_curves(est, x[idx], np.log(grid_f))) * F.smearing_factor(est, t, x, y)
    true_grid = true_expected_impressions(np.log(grid_f), {k: v[idx] for k, v in params.items()}, sim)
    best, _ = F.optimal_followers(est_grid, grid_f, VALUE, COST)
    _, p_true = F.optimal_followers(true_grid, grid_f, VALUE, COST)
    got = F.profit(VALUE, COST, true_grid[np.arange(len(idx)), best], grid_f[best])
    pos = p_true > 0
    return float(got[pos].sum() / p_true[pos].sum())


def part_scale(dataset: Path, args) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = np.load(OUT / "paper_xtzy.npz")
    params_src = truth_params(dataset)
    sim = W.SimConfig(
        **{
            k: v
            for k, v in json.loads((dataset / "meta.json").read_text())["sim_config"].items()
            if k in W.SimConfig.__dataclass_fields__
        }
    )
    path = OUT / "scale.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    for n in [int(s) for s in args.ns.split(",")]:
        t, x, z, y, params = scaled_data(n, d["x"], params_src, sim, seed=n)
        grid = eval_grid(t, (0.005, 0.995))
        t0 = time.time()
        est = fit_estimator(args.estimator, t, x, z, y, args)
        secs = time.time() - t0
        e = fei_errors(est, x, params, grid, args.n_eval)
        e95 = fei_errors(est, x, params, eval_grid(t, (0.025, 0.975)), args.n_eval)
        row = {
            "n": n,
            "fit_seconds": secs,
            "fei_mae_support": e["mae"],
            "fei_mae_central_95": e95["mae"],
            "profit_share": scaled_profit_share(est, t, x, y, params, sim, args.n_eval),
            "estimator": args.estimator,
            "epochs": [
                [len(v) for v in h.values() if isinstance(v, list)]
                for h in est.history.get("members", [est.history])
            ],
        }
        if args.scale_naive:
            nv = NaiveNeuralRegression(replace(IV_CFG, progress=False)).fit(
                treatment=t, covariates=x, outcome=y
            )
            row["naive_fei_mae_support"] = fei_errors(nv, x, params, grid, args.n_eval)["mae"]
        res[f"{args.estimator}:{n}"] = row
        print(
            f"n={n:>7}: {args.estimator} fit {secs:.0f} s, FEI MAE support {e['mae']:.4f}, central 95% {e95['mae']:.4f}, "
            f"profit share at {VALUE} / {COST} {row['profit_share']:.4f}, epochs {row['epochs']}",
            flush=True,
        )
        _json(path, res)
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for kind in sorted({r.get("estimator", "deepiv") for r in res.values()}):
        rows = sorted((r for r in res.values() if r.get("estimator", "deepiv") == kind), key=lambda r: r["n"])
        n = [r["n"] for r in rows]
        ax[0].plot(n, [r["fei_mae_support"] for r in rows], "o-", label=f"{kind}, support grid")
        ax[0].plot(n, [r["fei_mae_central_95"] for r in rows], "s--", label=f"{kind}, central 95%")
        ax[1].plot(n, [r["fit_seconds"] / 60 for r in rows], "o-", label=kind)
    ax[0].axhline(0.05, color="k", ls=":")
    ax[0].set_xscale("log")
    ax[0].set_xlabel("videos")
    ax[0].set_ylabel("mean |FEI error|")
    ax[0].legend(fontsize=7)
    ax[1].axhline(15, color="k", ls=":")
    ax[1].set_xscale("log")
    ax[1].set_xlabel("videos")
    ax[1].set_ylabel("fit minutes (2-core machine)")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "fei_error_vs_n.png", dpi=100)
    plt.close(fig)
    return res


def main(argv: list[str] | None = None) -> int:
    global IV_CFG, OUT
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="data/fei_paper")
    p.add_argument("--parts", default="fit,eval,scale")
    p.add_argument("--ns", default="10000,50000,100000,250000,500000")
    p.add_argument("--n-eval", type=int, default=3000, help="videos whose curves are compared with the truth")
    p.add_argument(
        "--content",
        choices=FT.CONTENT_KINDS,
        default=FT.FitConfig.content,
        help="content representation of the fit: pooled statistics (default; see --snr-dim) or the VS-VAE",
    )
    p.add_argument(
        "--pooled-dim", type=int, default=FT.FitConfig.pooled_dim, help="pooled content components"
    )
    p.add_argument(
        "--snr-dim",
        type=int,
        default=FT.FitConfig.snr_dim,
        help="of which noise-whitened directions of the segment means (fei.PooledPCA)",
    )
    p.add_argument(
        "--level-dim",
        type=int,
        default=FT.FitConfig.level_dim,
        help="principal components added that reach h only through its level (DeepIVConfig.level_only)",
    )
    p.add_argument(
        "--level-score", action="store_true", help="add the supervised level score (fei.LevelScore)"
    )
    p.add_argument(
        "--saliency-level",
        action="store_true",
        help="add the annotation-trained mean saliency as a level-only column (FitConfig.saliency_level)",
    )
    p.add_argument("--members", type=int, default=FT.FitConfig.members, help="IV fits averaged (IVEnsemble)")
    p.add_argument("--seed", type=int, default=0, help="seed of the IV fits (and of the PCA sample)")
    p.add_argument(
        "--control",
        action="append",
        default=[],
        metavar="FIELD=NUMBER",
        help="override a DeepIVConfig field of the control function, e.g. --control weight_decay=3e-4",
    )
    p.add_argument("--out", type=Path, default=OUT, help="output folder")
    p.add_argument("--vae-train-videos", type=int, default=30_000)
    p.add_argument("--vae-epochs", type=int, default=8)
    p.add_argument(
        "--estimator",
        choices=tuple(IV_ESTIMATORS),
        default=FT.FitConfig.estimator,
        help="the advisor's IV estimator (fit, scale): control function (default) or Deep IV",
    )
    p.add_argument("--refit", action="store_true", help="fit the content encoder and the IV estimator again")
    p.add_argument(
        "--refit-iv", action="store_true", help="keep the cached content encoder, fit the IV estimator again"
    )
    p.add_argument("--skip-deepiv", action="store_true", help="eval: no Deep IV comparison fit")
    p.add_argument(
        "--response", default=None, help="Deep IV response head: basis | mlp (default: DeepIVConfig's)"
    )
    p.add_argument("--scale-naive", action="store_true")
    p.add_argument("--skip-invalid", action="store_true", help="skip the refit with an invalid instrument")
    p.add_argument(
        "--baseline-epochs", type=int, default=IV_CFG.max_epochs, help="max epochs of the naive regression"
    )
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    OUT = a.out
    OUT.mkdir(parents=True, exist_ok=True)
    if a.response:
        IV_CFG = replace(IV_CFG, response=a.response)
    dataset = Path(a.dataset)
    ensure_world(dataset)
    parts = a.parts.split(",")
    if "fit" in parts:
        part_fit(dataset, a)
    if "eval" in parts:
        part_eval(dataset, a)
    if "scale" in parts:
        part_scale(dataset, a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
