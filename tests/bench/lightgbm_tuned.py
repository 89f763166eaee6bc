"""Benchmark: the LightGBM baseline tuned the way a practitioner would tune it, against the served blend.

The baseline in ``liftstream evaluate`` runs one recipe (``gbm_head.LGBM_PARAMS``: learning rate
0.03, 31 leaves, 20 rows per leaf, 80% of rows and columns, L2 1, early stopping). A user who picks
LightGBM instead of LAMM would tune it. This searches a grid of the settings that matter most
(leaves, rows per leaf, column share, L2) per fold, each setting fitted on the fold's fit
products and early-stopped on its calibration products, exactly as the baseline; the setting with
the lowest MAE on the calibration products is the fold's tuned LightGBM, scored on the test
products (which no choice sees). Same folds, seeds, split and (``--content-scores``) content-lift
channel as ``liftstream evaluate``.

``--blend-from`` reads an ``evaluate`` results.json (same data, same options) and sets the tuned
LightGBM against its served blend (LAMM+GBM) fold by fold, with a paired t-test. Since v10
``evaluate``'s own LightGBM row is tuned too, over ``gbm_head.TUNE_GRID`` (12 of these 60 points);
``tuned_served_grid`` is that pick, here recomputed from the same fits.

    .venv/bin/python -m tests.bench.lightgbm_tuned --data data/paper --content-scores \\
        --blend-from runs/eval-avx2/results.json --out runs/bench/lightgbm_tuned.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

import inference.baselines as B
import inference.gbm_head as G
import inference.lamm_train as LT
from inference.lamm_data import load_lamm_data

GRID = {
    "num_leaves": (3, 7, 15, 31, 63),
    "min_child_samples": (20, 100, 300),
    "colsample_bytree": (0.5, 0.8),
    "reg_lambda": (1.0, 10.0),
}


def settings() -> list[dict]:
    """Every GRID point as LightGBM params (the baseline's recipe with the grid's fields replaced)."""
    return G.tune_settings(GRID)


def tuned_fold(data, fit_p, cal_p, test_p, norm, seed: int, threads: int, log=print) -> dict:
    """Every setting's calibration and test MAE on one fold, and the one the calibration picks."""
    cat = [B.LGBM_FEATURES.index("category")]
    (x, y), (xv, yv), (xt, _) = (B.lgbm_xy(data, p, norm) for p in (fit_p, cal_p, test_p))
    true_cal, true_test = LT.targets_z(data, cal_p, norm), LT.targets_z(data, test_p, norm)

    def mae(model, x_rows, products, true):
        z = model.predict(x_rows).reshape(len(products), data.n_days - 1)
        return LT.metrics(z, true, norm)["mae"]

    rows = []
    for params in settings():
        t0 = time.time()
        model = G.fit_lightgbm(x, y, xv, yv, seed=seed, threads=threads, categorical=cat, params=params)
        cal, test = mae(model, xv, cal_p, true_cal), mae(model, xt, test_p, true_test)
        rows.append(
            {
                **{k: params[k] for k in GRID},
                "trees": int(model.best_iteration_ or params["n_estimators"]),
                "cal_mae": cal,
                "test_mae": test,
                "seconds": time.time() - t0,
            }
        )
        log(f"  {[params[k] for k in GRID]}: cal {cal:.4f} test {test:.4f} ({rows[-1]['trees']} trees)")
    default = next(r for r in rows if all(r[k] == G.LGBM_PARAMS[k] for k in GRID))
    best = min(rows, key=lambda r: r["cal_mae"])
    return {"settings": rows, "default": default, "tuned": best, "tuned_served_grid": served_grid_pick(rows)}


def served_grid_pick(rows: list[dict]) -> dict:
    """The row ``evaluate``'s LightGBM picks: lowest calibration MAE among the points of
    ``gbm_head.TUNE_GRID`` (a subset of GRID; the fields it leaves out at ``LGBM_PARAMS``)."""
    served = [r for r in rows if all(r[k] in G.TUNE_GRID.get(k, (G.LGBM_PARAMS[k],)) for k in GRID)]
    assert len(served) == len(G.tune_settings()), "GRID must contain every TUNE_GRID point"
    return min(served, key=lambda r: r["cal_mae"])


def evaluate_fold(data0, fold_of: np.ndarray, k: int, tc0):
    """Fold k as ``liftstream evaluate`` sets it up: its train config (seed + k), fit / calibration /
    test products, data (with the content channel fitted on the fit products when
    ``tc0.content_scores``) and normalisation."""
    tc = replace(tc0, seed=tc0.seed + k)  # evaluate's per-fold seed (split and models)
    test_p = np.flatnonzero(fold_of == k)
    fit_p, cal_p = LT.split_calib(np.flatnonzero(fold_of != k), tc.calib_frac, tc.seed)
    data = LT.with_content(data0, fit_p, log=lambda *_: None) if tc0.content_scores else data0
    return tc, fit_p, cal_p, test_p, data, LT.norm_constants(data, fit_p)


def main(argv: list[str] | None = None) -> dict:
    from scipy import stats

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/paper")
    ap.add_argument("--folds-run", default="0,1,2,3,4")
    ap.add_argument("--content-scores", action="store_true", help="the content-lift channel, as evaluate's")
    ap.add_argument("--blend-from", type=Path, help="an evaluate results.json with the LAMM+GBM row")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/lightgbm_tuned.json"))
    a = ap.parse_args(argv)
    data0 = load_lamm_data(a.data)
    tc0 = LT.TrainConfig(threads=a.threads, content_scores=a.content_scores)
    fold_of = LT.fold_assignment(data0.n_products, 5, tc0.seed)
    folds = []
    for k in (int(s) for s in a.folds_run.split(",")):
        tc, fit_p, cal_p, test_p, data, norm = evaluate_fold(data0, fold_of, k, tc0)
        print(f"K{k + 1}: {len(settings())} settings", flush=True)
        f = tuned_fold(data, fit_p, cal_p, test_p, norm, tc.seed, a.threads)
        f["fold"] = k
        folds.append(f)
        print(
            f"K{k + 1}: default {f['default']['test_mae']:.4f}, tuned {f['tuned']['test_mae']:.4f} "
            f"({ {g: f['tuned'][g] for g in GRID} }), best on test {min(r['test_mae'] for r in f['settings']):.4f}",
            flush=True,
        )
    res: dict = {
        "data": a.data,
        "content_scores": a.content_scores,
        "grid": GRID,
        "folds": folds,
        "mean": {
            "default": float(np.mean([f["default"]["test_mae"] for f in folds])),
            "tuned": float(np.mean([f["tuned"]["test_mae"] for f in folds])),
            "tuned_served_grid": float(np.mean([f["tuned_served_grid"]["test_mae"] for f in folds])),
            "best_on_test_per_fold": float(
                np.mean([min(r["test_mae"] for r in f["settings"]) for f in folds])
            ),
        },
    }
    tuned = [f["tuned"]["test_mae"] for f in folds]
    default = [f["default"]["test_mae"] for f in folds]
    if len(folds) > 1:
        res["p_tuned_vs_default"] = float(stats.ttest_rel(tuned, default).pvalue)
    if a.blend_from:
        ev = json.loads(a.blend_from.read_text())
        by_fold = {pf["fold"]: pf["models"] for pf in ev["per_fold"]}
        blend = [by_fold[f["fold"]]["LAMM+GBM"]["mae"] for f in folds]
        evaluated = [by_fold[f["fold"]]["LightGBM"]["mae"] for f in folds]
        res["blend"] = {"folds": blend, "mean": float(np.mean(blend))}
        # the TUNE_GRID pick is evaluate's LightGBM row (v10; before v10 the default setting is):
        # a check that the folds are the same (LightGBM's histograms differ with the thread count)
        served = [f["tuned_served_grid"]["test_mae"] for f in folds]
        res["evaluate_lightgbm_max_abs_diff"] = {
            "tuned_served_grid": float(np.max(np.abs(np.subtract(served, evaluated)))),
            "default": float(np.max(np.abs(np.subtract(default, evaluated)))),
        }
        if len(folds) > 1:
            res["p_blend_vs_tuned"] = float(stats.ttest_rel(blend, tuned).pvalue)
            res["blend_lower_on_folds"] = int(np.sum(np.array(blend) < np.array(tuned)))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k not in ("folds", "grid")}, indent=1))
    return res


if __name__ == "__main__":
    main()
