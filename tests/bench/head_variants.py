"""Benchmark: GBM head recipes, alone and in the served blend, against the LightGBM baseline.

The served forecaster blends LAMM with a GBM head on the day input's tabular part x[..., H:]
(``inference.gbm_head``). Where LightGBM beats the blend (docs/lamm.md, "the content world"),
the head alone trails the baseline too. This fits, on ``liftstream evaluate``'s folds, seeds and
split (fit products, early stopping on the calibration products, MAE on z of the test products):

- ``head, baseline trees``: the head as served since v9 (``gbm_head.fit_gbm_head``: x[..., H:],
  the baseline's settings ``LGBM_PARAMS`` = ``HEAD_PARAMS``);
- ``head, v8 trees``: the same input with the served recipe until v8 (``V8_TREES``: learning
  rate 0.1, 15 leaves; a run from before v9 calls it ``head``), and three recipes between;
- ``head + ratios, ...``: x[..., H:] plus columns derived from it (``DERIVED``: engagement per
  impression, the category as one categorical column);
- ``LightGBM``: the baseline on its own table (``baselines.fit_predict_lightgbm``, the fixed
  recipe as before v10: ``tune=False``);
- with ``--lamm`` also ``stack``: the head's input plus LAMM's own forecast as one more column
  (LAMM's z on the fit products is in-sample), and ``residual``: the head fitted to LAMM's
  residual on the fit products, added to LAMM's forecast.

``--content-scores`` gives every model the content-lift channel as ``evaluate --content-scores``
does (the content model fitted on each fold's fit products).

With ``--lamm``, each fold's LAMM is trained as ``evaluate`` trains it (about 2 minutes a fold;
its calibration and test z are cached in ``--out``'s folder) and every head is also scored in the
blend, its weight chosen on the calibration products (``gbm_head.choose_weight``), as served.
Each head's size and LightGBM prediction cost (one thread, 100,000 rows) are recorded too.

    .venv/bin/python -m tests.bench.head_variants --data data/paper_content [--lamm] [--content-scores] [--folds-run 0,1,2,3,4] --out runs/bench/head_variants_content.json
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
from tests.bench.lightgbm_tuned import GRID, evaluate_fold, settings

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


def head_z(
    data,
    fit_p,
    cal_p,
    products_out,
    norm,
    params,
    seed: int,
    extra: bool,
    lamm=None,
    mode: str = "plain",
    timed: bool = True,
) -> tuple[list[np.ndarray], tuple[int, float]]:
    """The z of ``products_out`` from a head with ``params``, fitted as ``fit_gbm_head`` fits it,
    on x[..., H:] (``extra``: plus ``derived``), and its serving cost (trees, microseconds per row
    on one thread). ``lamm`` maps a products array's id to LAMM's (B, D-1) z on it: ``mode``
    "stack" adds it as a column, "residual" fits the head to y - z_lamm and returns z_lamm + the
    head. ``timed=False`` skips the timing (the cost's microseconds are then NaN)."""
    import lightgbm as lgb

    def xy(p):
        x, y = G._xy(data, p, norm)
        x = derived(x) if extra else x
        if mode == "plain":
            return x, y, 0.0
        zl = lamm[id(p)].reshape(-1)
        if mode == "stack":
            return np.column_stack([x, zl]).astype(np.float32), y, 0.0
        return x, y - zl, zl

    (x, y, _), (xv, yv, _) = xy(fit_p), xy(cal_p)
    cat = [x.shape[1] - 1 - (mode == "stack")] if extra else ()
    model = G.fit_lightgbm(x, y, xv, yv, seed=seed, threads=1, params=params, categorical=cat)
    booster = lgb.Booster(model_str=model.booster_.model_to_string(num_iteration=model.best_iteration_))
    out = []
    for p in products_out:
        xt, _, base = xy(p)
        out.append((base + booster.predict(xt, num_threads=1)).reshape(len(p), data.n_days - 1))
    if not timed:
        return out, (booster.num_trees(), float("nan"))
    # serving cost: one thread, 100,000 rows (the step benchmark's batch) tiled from the last products
    rows = np.resize(xt, (100_000, xt.shape[1]))
    t0 = time.perf_counter()
    booster.predict(rows, num_threads=1)
    return out, (booster.num_trees(), (time.perf_counter() - t0) / len(rows) * 1e6)


V8_TREES = {**G.LGBM_PARAMS, "learning_rate": 0.1, "num_leaves": 15}  # the head's recipe until v8
HEADS = {
    "head, v8 trees": (V8_TREES, False),
    "head, baseline trees": (G.LGBM_PARAMS, False),  # the served head since v9 (G.HEAD_PARAMS)
    "head, lr 0.05": ({**G.LGBM_PARAMS, "learning_rate": 0.05}, False),
    "head, lr 0.1, 31 leaves": ({**G.LGBM_PARAMS, "learning_rate": 0.1}, False),
    "head, lr 0.05, 15 leaves": ({**G.LGBM_PARAMS, "learning_rate": 0.05, "num_leaves": 15}, False),
    "head, 7 leaves": ({**G.LGBM_PARAMS, "num_leaves": 7}, False),  # what tuning the baseline picked most
    "head + ratios, v8 trees": (V8_TREES, True),
    "head + ratios, baseline trees": (G.LGBM_PARAMS, True),
}


def lamm_z(data, k, fit_p, cal_p, test_p, norm, tc, cache: Path) -> tuple[np.ndarray, ...]:
    """Fold k's LAMM (trained as ``evaluate`` trains it) z on the fit, calibration and test products."""
    import torch

    from inference.lamm import Lamm, LammConfig

    # the content channel changes LAMM's input: a run with and one without it never share a cache
    f = cache / f"lamm_fold{k}{'_content' if data.video_q is not None else ''}.npz"
    if not f.exists() or "fit" not in np.load(f).files:
        torch.manual_seed(tc.seed)
        model = Lamm(LammConfig(content_channel=data.video_q is not None))
        LT.fit(model, data, fit_p, cal_p, norm, tc, log=lambda *_: None)
        z = {n: LT.predict_z(model, data, p) for n, p in (("fit", fit_p), ("cal", cal_p), ("test", test_p))}
        np.savez(f, **z)
    z = np.load(f)
    return z["fit"], z["cal"], z["test"]


def main(argv: list[str] | None = None) -> dict:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/paper_content")
    ap.add_argument("--folds-run", default="0,1,2,3,4")
    ap.add_argument("--lamm", action="store_true", help="also train each fold's LAMM and score the blends")
    ap.add_argument(
        "--content-scores",
        action="store_true",
        help="every model with the content-lift channel (as evaluate)",
    )
    ap.add_argument(
        "--tuned",
        action="store_true",
        help="also 'head, tuned': per fold, the lightgbm_tuned grid's setting with the head's lowest "
        "calibration MAE (as tests.bench.lightgbm_tuned tunes the baseline)",
    )
    ap.add_argument("--only-heads", default="", help="HEADS names to run, ';'-separated (default: all)")
    ap.add_argument("--out", required=True, help="the table as json (LAMM's cached z beside it)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    out_path = Path(a.out)
    cache = out_path.parent / (out_path.stem + "_lamm")
    cache.mkdir(parents=True, exist_ok=True)
    data0 = load_lamm_data(a.data)
    tc0 = LT.TrainConfig(threads=1, content_scores=a.content_scores)
    fold_of = LT.fold_assignment(data0.n_products, 5, tc0.seed)
    res: dict[str, list[float]] = {}

    def put(name, z, true, norm, k):
        res.setdefault(name, []).append(LT.metrics(z, true, norm)["mae"])
        print(f"K{k + 1} {name}: MAE {res[name][-1]:.4f}", flush=True)

    for k in (int(s) for s in a.folds_run.split(",")):
        tc, fit_p, cal_p, test_p, data, norm = evaluate_fold(data0, fold_of, k, tc0)
        true, true_cal = LT.targets_z(data, test_p, norm), LT.targets_z(data, cal_p, norm)
        put(
            "LightGBM",
            B.fit_predict_lightgbm(data, fit_p, cal_p, test_p, norm, seed=tc.seed, threads=1, tune=False),
            true,
            norm,
            k,
        )
        if a.lamm:
            t0 = time.time()
            lam_fit, lam_cal, lam_test = lamm_z(data, k, fit_p, cal_p, test_p, norm, tc, cache)
            print(f"K{k + 1} LAMM ready ({time.time() - t0:.0f} s)", flush=True)
            put("LAMM", lam_test, true, norm, k)
            put("LAMM, fit products (in-sample)", lam_fit, LT.targets_z(data, fit_p, norm), norm, k)
            put("LAMM (calibration products)", lam_cal, true_cal, norm, k)
        lamm = {id(fit_p): lam_fit, id(cal_p): lam_cal, id(test_p): lam_test} if a.lamm else None
        only = [h for h in a.only_heads.split(";") if h]
        heads = {n: (p, e, "plain") for n, (p, e) in HEADS.items() if not only or n in only}
        if a.lamm:
            heads.update(
                {
                    "stack": (V8_TREES, False, "stack"),
                    "stack, baseline trees": (G.LGBM_PARAMS, False, "stack"),
                    "residual": (V8_TREES, False, "residual"),
                }
            )
        for name, (params, extra, mode) in heads.items():
            t0 = time.time()
            (z_test, z_cal), (trees, us) = head_z(
                data, fit_p, cal_p, (test_p, cal_p), norm, params, tc.seed, extra, lamm=lamm, mode=mode
            )
            print(f"K{k + 1} {name}: {time.time() - t0:.1f} s, {trees} trees, {us:.2f} us/row", flush=True)
            res.setdefault(f"{name} (trees)", []).append(trees)
            res.setdefault(f"{name} (us per row)", []).append(us)
            put(name, z_test, true, norm, k)
            if a.lamm:
                w = G.choose_weight(lam_cal, z_cal, true_cal)
                put(f"LAMM + {name} (blend)", (1 - w) * lam_test + w * z_test, true, norm, k)
                res.setdefault(f"LAMM + {name} (weight)", []).append(w)
        if a.tuned:
            t0, best = time.time(), None
            for params in settings():  # untimed: only the chosen head's serving cost is reported
                (z_cal,), _ = head_z(data, fit_p, cal_p, (cal_p,), norm, params, tc.seed, False, timed=False)
                cal_mae = LT.metrics(z_cal, true_cal, norm)["mae"]
                if best is None or cal_mae < best[0]:
                    best = (cal_mae, params)
            params = best[1]  # refitted (the same seed, the same trees) for its test z and its timing
            (z_test, z_cal), (trees, us) = head_z(
                data, fit_p, cal_p, (test_p, cal_p), norm, params, tc.seed, False
            )
            chosen = {g: params[g] for g in GRID}
            print(f"K{k + 1} head, tuned: {time.time() - t0:.0f} s, {chosen}, {trees} trees, {us:.2f} us/row")
            res.setdefault("head, tuned (setting)", []).append(chosen)
            res.setdefault("head, tuned (trees)", []).append(trees)
            res.setdefault("head, tuned (us per row)", []).append(us)
            put("head, tuned", z_test, true, norm, k)
            if a.lamm:
                w = G.choose_weight(lam_cal, z_cal, true_cal)
                put("LAMM + head, tuned (blend)", (1 - w) * lam_test + w * z_test, true, norm, k)
                res.setdefault("LAMM + head, tuned (weight)", []).append(w)
    from scipy import stats

    table = {}
    for name, v in res.items():
        if name.endswith("(setting)"):
            table[name] = {"folds": v}
            continue
        row = {"folds": v, "mean": float(np.mean(v))}
        per_fold_figure = name.endswith(("(trees)", "(us per row)", "(weight)", "(in-sample)", "products)"))
        if not per_fold_figure and name != "LightGBM" and len(v) > 1:
            row["p_vs_lightgbm"] = float(stats.ttest_rel(v, res["LightGBM"]).pvalue)
        table[name] = row
    print(json.dumps({k: round(v["mean"], 4) for k, v in table.items() if "mean" in v}, indent=0))
    out_path.write_text(json.dumps(table, indent=1))
    return table


if __name__ == "__main__":
    main()
