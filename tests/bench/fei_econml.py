"""The FEI advisor against the off-the-shelf tool a user would pick instead: EconML's DMLIV.

A practitioner who wants heterogeneous, non-linear effects of a continuous treatment with an
instrument reaches for EconML (``econml.iv.dml.DMLIV``): double machine learning with
cross-fitted nuisances, Y = theta(X) . phi(T) + g(X) + e, phi a spline basis of ln F
(``treatment_featurizer``), theta linear in X. This bench fits it on the same (t, x, z, y) as
bench_fei and scores it with the same truth, grids and decision rule as the advisor.

EconML needs numba, whose llvmlite is newer than the one lleaves (the served GBM head) builds
with, so it lives in its own environment, and the bench runs in three steps:

    make compare-env                                                         # .venv-compare: econml, lightgbm
    .venv/bin/python -m tests.bench.fei_econml export --bench runs/bench/fei  # needs bench_fei's fit part
    .venv-compare/bin/python -m tests.bench.fei_econml fit --bench runs/bench/fei     # 2, 3, 5 knots: ~2 min
    .venv/bin/python -m tests.bench.fei_econml score --bench runs/bench/fei --dataset data/fei_paper

``export`` writes the bench's rows and the evaluation grids (the same 3,000 videos as bench_fei's
eval), ``fit`` (numpy, scikit-learn, lightgbm and econml only) writes each EconML variant's
FEI and log-impression curves on those grids, ``score`` compares them and the advisor's with the
truth (FEI MAE on the support and central-95% grids, shape accuracy, profit share of the true
optimum at value 0.02 / cost 10 and the other conditions) into econml.json and econml_fei.png.

Levels: DMLIV estimates theta(X) only, not h(t, x). The impression curve a user would build
from it is h(t, x) = E[y | x] + theta(x) . (phi(t) - E[phi(t) | x]), the two conditional means
from the fit's own first-stage models (the cross-fitting folds' models averaged), then Duan's
smearing over the training rows as the advisor does.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

N_EVAL = 3000  # bench_fei's default --n-eval; the same rows (default_rng(0)) as its eval


def _rows(n: int, n_eval: int) -> np.ndarray:
    return np.random.default_rng(0).choice(n, min(n_eval, n), replace=False)  # as bench_fei.fei_errors


# ------------------------------------------------------------------------------------------- export


def export(bench: Path, n_eval: int) -> Path:
    from inference import fei as F
    from tests.bench import bench_fei as B

    adv = F.FeiAdvisor.load(bench / "advisor")
    d = np.load(bench / "paper_xtzy.npz")
    x, t, z, y = d["x"], d["t"], d["z"], d["y"]
    content_dim = x.shape[1] - len(F.COVARIATE_POST_STATS)
    out = bench / "econml_in.npz"
    np.savez(
        out,
        x=x,
        t=t,
        z=z,
        y=y,
        idx=_rows(len(x), n_eval),
        grid_sup=B.eval_grid(t, (0.005, 0.995)),
        grid_c95=B.eval_grid(t, (0.025, 0.975)),
        log_grid=adv.log_grid,
        verified=content_dim + F.COVARIATE_POST_STATS.index("verified"),
    )
    print(
        f"wrote {out}: {len(x):,} videos, x {x.shape[1]} columns, {n_eval} evaluated; advisor {adv.model_version}"
    )
    return out


# ---------------------------------------------------------------------------------------------- fit


def _lgbm(seed: int):
    from lightgbm import LGBMRegressor

    return LGBMRegressor(n_estimators=300, learning_rate=0.05, num_leaves=31, random_state=seed, verbose=-1)


class _MultiLGBM:
    """One LightGBM per output column (EconML hands the featurized treatment's nuisance a 2-D target)."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, X, y, **kw):
        y = np.asarray(y)
        self.models_ = [_lgbm(self.seed).fit(X, col) for col in (y.T if y.ndim == 2 else [y])]
        self.ndim_ = y.ndim
        return self

    def predict(self, X):
        p = np.column_stack([m.predict(X) for m in self.models_])
        return p if self.ndim_ == 2 else p[:, 0]

    def get_params(self, deep=True):
        return {"seed": self.seed}

    def set_params(self, **p):
        self.seed = p.get("seed", self.seed)
        return self


def _spline(n_knots: int):
    from sklearn.preprocessing import SplineTransformer

    return SplineTransformer(n_knots=n_knots, degree=3, include_bias=False, extrapolation="linear")


def _first_stage_mean(models, X: np.ndarray) -> np.ndarray:
    """The cross-fitting folds' fitted first-stage models (EconML's models_* lists) averaged."""
    flat = [m for group in models for m in (group if isinstance(group, list) else [group])]
    return np.mean([np.asarray(m.predict(X)) for m in flat], axis=0)


def fit_dmliv(x, t, z, y, n_knots: int, drop_verified: int | None, seed: int = 0):
    from econml.iv.dml import DMLIV
    from sklearn.linear_model import LinearRegression

    xx = np.delete(x, drop_verified, axis=1) if drop_verified is not None else x
    est = DMLIV(
        model_y_xw=_MultiLGBM(seed),
        model_t_xw=_MultiLGBM(seed),
        model_t_xwz=_MultiLGBM(seed),
        model_final=LinearRegression(fit_intercept=False),
        fit_cate_intercept=True,
        treatment_featurizer=_spline(n_knots),
        cv=3,
        random_state=seed,
    )
    est.fit(y, t.reshape(-1, 1), Z=z, X=xx)  # 2-D: the spline featurizer wants a column
    return est, xx


class DmlivCurves:
    """h(t, x) and dh/dt from a fitted DMLIV (see the module docstring for the level)."""

    def __init__(self, est):
        self.est = est
        self.feat = est.transformer  # the fitted treatment featurizer (EconML's jacobian wrapper)
        self.m_y = lambda X: _first_stage_mean(est.models_y_xw, X)
        self.m_phi = lambda X: _first_stage_mean(est.models_t_xw, X)

    def theta(self, X: np.ndarray) -> np.ndarray:  # (N, K)
        return np.asarray(self.est.const_marginal_effect(X)).reshape(len(X), -1)

    def level(self, X: np.ndarray, th: np.ndarray) -> np.ndarray:  # (N,) E[y | x] - theta(x) . E[phi(t) | x]
        return self.m_y(X).reshape(len(X)) - np.einsum("nk,nk->n", th, self.m_phi(X).reshape(len(X), -1))

    def h_at(self, X: np.ndarray, t: np.ndarray) -> np.ndarray:
        """(N,) h at each row's own treatment (the smearing's residuals)."""
        th = self.theta(X)
        return self.level(X, th) + np.einsum("nk,nk->n", th, self.feat.transform(t[:, None]))

    def curves(self, X: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, G) log impressions h and FEI dh/dt of each row of X at each grid point."""
        th = self.theta(X)  # (N, K)
        phi = self.feat.transform(grid[:, None])  # (G, K)
        eps = 1e-3
        dphi = (self.feat.transform(grid[:, None] + eps) - self.feat.transform(grid[:, None] - eps)) / (
            2 * eps
        )
        return self.level(X, th)[:, None] + th @ phi.T, th @ dphi.T


def fit(bench: Path, knots: list[int], variants: list[str]) -> None:
    d = np.load(bench / "econml_in.npz")
    x, t, z, y, idx = d["x"], d["t"], d["z"], d["y"], d["idx"]
    results = {}
    for variant, n_knots in ((v, k) for v in variants for k in knots):
        name = f"{variant}_k{n_knots}"
        drop = int(d["verified"]) if variant == "dmliv_no_verified" else None
        print(
            f"fitting EconML DMLIV ({name}, {n_knots} spline knots on ln F, LightGBM nuisances, 3-fold cross-fitting) ..."
        )
        t0 = time.time()
        est, xx = fit_dmliv(x, t, z, y, n_knots, drop)
        secs = time.time() - t0
        cur = DmlivCurves(est)
        h_rows = np.concatenate([cur.h_at(xx[i : i + 8192], t[i : i + 8192]) for i in range(0, len(t), 8192)])
        smearing = float(np.mean(np.exp(y - h_rows)))
        out = {"seconds_fit": secs, "smearing": smearing}
        for g in ("grid_sup", "grid_c95", "log_grid"):
            h, fei = cur.curves(xx[idx], d[g])
            out[f"fei_{g}"], out[f"h_{g}"] = fei, h
        results[name] = out
        print(f"  {secs:.0f} s, smearing {smearing:.3f}")
    path = bench / "econml_out.npz"
    kept = dict(np.load(path)) if path.exists() else {}  # earlier variants stay unless refitted here
    kept = {k: v for k, v in kept.items() if k.split("__")[0] not in results}
    np.savez(path, **kept, **{f"{k}__{kk}": v for k, o in results.items() for kk, v in o.items()})
    print(f"wrote {path}")


# -------------------------------------------------------------------------------------------- score


def score(bench: Path, dataset: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from inference import fei as F
    from inference.sim import truth as T
    from tests.bench import bench_fei as B

    d = np.load(bench / "econml_in.npz")
    o = np.load(bench / "econml_out.npz")
    adv = F.FeiAdvisor.load(bench / "advisor")
    x, idx = d["x"], d["idx"]
    params = B.truth_params(dataset)
    sim = B.W.SimConfig(
        **{
            k: v
            for k, v in json.loads((dataset / "meta.json").read_text())["sim_config"].items()
            if k in B.W.SimConfig.__dataclass_fields__
        }
    )
    sub = {k: v[idx] for k, v in params.items()}
    true_shape = np.array(T.CURVE_NAMES)[params["curve"][idx].astype(int)]
    true_grid = B.true_expected_impressions(adv.log_grid, sub, sim)
    conds = [(B.VALUE, B.COST)] + [(v, c) for v in (0.01, 0.05, 0.1) for c in (5.0, 25.0, 100.0)]

    curves = {
        "advisor": {
            "fei_grid_sup": F.fei_curves(adv.estimator, x[idx], d["grid_sup"]),
            "fei_grid_c95": F.fei_curves(adv.estimator, x[idx], d["grid_c95"]),
            "fei_log_grid": F.fei_curves(adv.estimator, x[idx], adv.log_grid),
            "h_log_grid": F.impression_curves(adv.estimator, x[idx], adv.log_grid),
            "smearing": adv.smearing,
        }
    }
    for key in o.files:
        name, field = key.split("__")
        curves.setdefault(name, {})[field] = o[key]

    res: dict = {"n_eval": int(len(idx)), "advisor": adv.model_version, "models": {}}
    for name, c in curves.items():
        r = {
            "fei_mae_support": float(np.abs(c["fei_grid_sup"] - T.true_fei(d["grid_sup"], sub)).mean()),
            "fei_mae_central_95": float(np.abs(c["fei_grid_c95"] - T.true_fei(d["grid_c95"], sub)).mean()),
        }
        shapes = F.classify_shape(c["fei_log_grid"], adv.config.flat_range, adv.config.rise_fraction)
        r["shape_accuracy"] = float(np.mean(shapes == true_shape))
        est_grid = np.exp(c["h_log_grid"]) * float(c["smearing"])
        r["profit"] = []
        for v, cost in conds:
            best, _ = F.optimal_followers(est_grid, adv.grid_followers, v, cost)
            _, p_true = F.optimal_followers(true_grid, adv.grid_followers, v, cost)
            got = F.profit(v, cost, true_grid[np.arange(len(idx)), best], adv.grid_followers[best])
            pos = p_true > 0
            r["profit"].append(
                {
                    "value": v,
                    "cost": cost,
                    "share_of_true_optimal_profit_total": float(got[pos].sum() / p_true[pos].sum()),
                    "median_ratio": float(np.median(got[pos] / p_true[pos])),
                }
            )
        if "seconds_fit" in c:
            r["seconds_fit"] = float(c["seconds_fit"])
        r["smearing"] = float(c["smearing"])
        res["models"][name] = r
        p0 = r["profit"][0]
        print(
            f"{name:18s} FEI MAE support {r['fei_mae_support']:.4f} (central 95% {r['fei_mae_central_95']:.4f})"
            f"  shape accuracy {r['shape_accuracy']:.3f}  profit share {p0['share_of_true_optimal_profit_total']:.4f}"
            f" (median {p0['median_ratio']:.4f})"
        )
    (bench / "econml.json").write_text(json.dumps(res, indent=1))

    fig, ax = plt.subplots(1, 3, figsize=(15, 4), sharey=True)
    for a, shape in zip(ax, F.SHAPES, strict=True):
        m = true_shape == shape
        a.plot(
            d["grid_sup"],
            T.true_fei(d["grid_sup"], {k: v[m] for k, v in sub.items()}).mean(0),
            "k--",
            label="true",
        )
        for name, c in curves.items():
            a.plot(d["grid_sup"], c["fei_grid_sup"][m].mean(0), label=name)
        a.set_title(f"{shape} ({m.sum()} videos): mean FEI")
        a.set_xlabel("ln followers")
    ax[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(bench / "econml_fei.png", dpi=100)
    plt.close(fig)
    print(f"wrote {bench / 'econml.json'} and {bench / 'econml_fei.png'}")
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=["export", "fit", "score"])
    p.add_argument("--bench", type=Path, default=Path("runs/bench/fei"), help="bench_fei's output folder")
    p.add_argument("--dataset", type=Path, default=Path("data/fei_paper"))
    p.add_argument("--n-eval", type=int, default=N_EVAL)
    p.add_argument(
        "--knots", default="2,3,5", help="spline knots of phi(ln F), comma-separated: one fit each"
    )
    p.add_argument(
        "--variants",
        default="dmliv",
        help="dmliv (x as the advisor's) and/or dmliv_no_verified (x without verified)",
    )
    a = p.parse_args(argv)
    if a.step == "export":
        export(a.bench, a.n_eval)
    elif a.step == "fit":
        fit(a.bench, [int(k) for k in a.knots.split(",")], a.variants.split(","))
    else:
        score(a.bench, a.dataset)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
