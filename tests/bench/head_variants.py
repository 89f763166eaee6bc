"""Benchmark: GBM head recipes, alone and in the served blend, against the LightGBM baseline.

The served forecaster blends LAMM with a GBM head on the day input's tabular part x[..., H:]
(``inference.gbm_head``). Where LightGBM beats the blend (docs/lamm.md, "the content world"),
the head alone trails the baseline too. This fits, on ``liftstream evaluate``'s folds, seeds and
split (fit products, early stopping on the calibration products, MAE on z of the test products):

- ``head``: the head as served (``gbm_head.fit_gbm_head``: x[..., H:], ``HEAD_PARAMS``);
- ``head, baseline trees``: the same input with the baseline's settings (``LGBM_PARAMS``);
- ``head + ratios``: x[..., H:] plus columns derived from it (``DERIVED``: engagement per
  impression, the category as one categorical column), ``HEAD_PARAMS``;
- ``head + ratios, baseline trees``;
- ``LightGBM``: the baseline on its own table (``baselines.fit_predict_lightgbm``).

With ``--lamm``, each fold's LAMM is trained as ``evaluate`` trains it (about 2 minutes a fold;
its calibration and test z are cached in ``--out``'s folder) and every head is also scored in the
blend, its weight chosen on the calibration products (``gbm_head.choose_weight``), as served.

    .venv/bin/python -m tests.bench.head_variants --data data/paper_content [--lamm] [--folds-run 0,1,2,3,4] --out runs/bench/head_variants_content.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import inference.baselines as B
import inference.gbm_head as G
import inference.lamm_train as LT
from inference.daily import PRODUCT_FEATURES, SIDE_DIM
from inference.lamm_data import load_lamm_data

_COL = {name: SIDE_DIM + i for i, name in enumerate(PRODUCT_FEATURES)}
_CATS = [_COL[n] for n in PRODUCT_FEATURES if n.startswith("category_")]


def derived(tab: np.ndarray) -> np.ndarray:
    """(N, F) x[..., H:] -> (N, F + 5): + log engagement per impression (likes, shares, comments,
    collects: today's log1p sums minus log1p impressions) + the category's index (NaN: unknown)."""
    imp = tab[:, _COL["sum_impressions"]]
    ratios = [tab[:, _COL[f"sum_{k}"]] - imp for k in ("likes", "shares", "comments", "collects")]
    onehot = tab[:, _CATS]
    cat = np.where(onehot.max(axis=1) > 0.5, onehot.argmax(axis=1), np.nan)
    return np.column_stack([tab, *ratios, cat]).astype(np.float32)


def head_z(data, fit_p, cal_p, products_out, norm, params, seed: int, extra: bool) -> list[np.ndarray]:
    """The test z (and any other products') of a head with ``params``, fitted as ``fit_gbm_head``
    fits it, on x[..., H:] (``extra``: plus ``derived``)."""
    import lightgbm as lgb

    def xy(p):
        x, y = G._xy(data, p, norm)
        return (derived(x) if extra else x), y

    (x, y), (xv, yv) = xy(fit_p), xy(cal_p)
    cat = [x.shape[1] - 1] if extra else ()
    model = G.fit_lightgbm(x, y, xv, yv, seed=seed, threads=1, params=params, categorical=cat)
    booster = lgb.Booster(model_str=model.booster_.model_to_string(num_iteration=model.best_iteration_))
    out = []
    for p in products_out:
        xt, _ = xy(p)
        out.append(booster.predict(xt, num_threads=1).reshape(len(p), data.n_days - 1))
    return out


HEADS = {
    "head": (G.HEAD_PARAMS, False),
    "head, baseline trees": (G.LGBM_PARAMS, False),
    "head + ratios": (G.HEAD_PARAMS, True),
    "head + ratios, baseline trees": (G.LGBM_PARAMS, True),
}


def lamm_z(data, k, fit_p, cal_p, test_p, norm, tc, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """Fold k's LAMM (trained as ``evaluate`` trains it) z on the calibration and test products."""
    import torch

    from inference.lamm import Lamm, LammConfig

    f = cache / f"lamm_fold{k}.npz"
    if not f.exists():
        torch.manual_seed(tc.seed)
        model = Lamm(LammConfig())
        LT.fit(model, data, fit_p, cal_p, norm, tc, log=lambda *_: None)
        np.savez(f, cal=LT.predict_z(model, data, cal_p), test=LT.predict_z(model, data, test_p))
    z = np.load(f)
    return z["cal"], z["test"]


def main(argv: list[str] | None = None) -> dict:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/paper_content")
    ap.add_argument("--folds-run", default="0,1,2,3,4")
    ap.add_argument("--lamm", action="store_true", help="also train each fold's LAMM and score the blends")
    ap.add_argument("--out", required=True, help="the table as json (LAMM's cached z beside it)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    out_path = Path(a.out)
    cache = out_path.parent / (out_path.stem + "_lamm")
    cache.mkdir(parents=True, exist_ok=True)
    data = load_lamm_data(a.data)
    tc0 = LT.TrainConfig(threads=1)
    fold_of = LT.fold_assignment(data.n_products, 5, tc0.seed)
    res: dict[str, list[float]] = {}

    def put(name, z, true, norm, k):
        res.setdefault(name, []).append(LT.metrics(z, true, norm)["mae"])
        print(f"K{k + 1} {name}: MAE {res[name][-1]:.4f}", flush=True)

    for k in (int(s) for s in a.folds_run.split(",")):
        tc = LT.TrainConfig(threads=1, seed=tc0.seed + k)  # evaluate's per-fold seed (split and models)
        test_p = np.flatnonzero(fold_of == k)
        fit_p, cal_p = LT.split_calib(np.flatnonzero(fold_of != k), tc.calib_frac, tc.seed)
        norm = LT.norm_constants(data, fit_p)
        true, true_cal = LT.targets_z(data, test_p, norm), LT.targets_z(data, cal_p, norm)
        put(
            "LightGBM",
            B.fit_predict_lightgbm(data, fit_p, cal_p, test_p, norm, seed=tc.seed, threads=1),
            true,
            norm,
            k,
        )
        if a.lamm:
            t0 = time.time()
            lam_cal, lam_test = lamm_z(data, k, fit_p, cal_p, test_p, norm, tc, cache)
            print(f"K{k + 1} LAMM ready ({time.time() - t0:.0f} s)", flush=True)
            put("LAMM", lam_test, true, norm, k)
        for name, (params, extra) in HEADS.items():
            z_test, z_cal = head_z(data, fit_p, cal_p, (test_p, cal_p), norm, params, tc.seed, extra)
            put(name, z_test, true, norm, k)
            if a.lamm:
                w = G.choose_weight(lam_cal, z_cal, true_cal)
                put(f"LAMM + {name} (blend)", (1 - w) * lam_test + w * z_test, true, norm, k)
                res.setdefault(f"LAMM + {name} (weight)", []).append(w)
    from scipy import stats

    table = {}
    for name, v in res.items():
        row = {"folds": v, "mean": float(np.mean(v))}
        if "weight" not in name and name != "LightGBM" and len(v) > 1:
            row["p_vs_lightgbm"] = float(stats.ttest_rel(v, res["LightGBM"]).pvalue)
        table[name] = row
    print(json.dumps({k: round(v["mean"], 4) for k, v in table.items()}, indent=0))
    out_path.write_text(json.dumps(table, indent=1))
    return table


if __name__ == "__main__":
    main()
