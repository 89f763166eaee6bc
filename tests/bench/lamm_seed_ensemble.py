"""Benchmark: would averaging LAMM over initialisation seeds beat the LightGBM baseline?

Same folds, calibration split and normalisation as ``liftstream evaluate``. Per fold k, LAMM is
trained ``--members`` times with torch seeds k, 1000 + k, 2000 + k, ... (the first is exactly
the evaluated LAMM of that fold; the split stays the fold's), and the test predictions on z
are averaged. LightGBM is refitted as evaluated before v10 (the fixed recipe, ``tune=False``). Prints per-fold MAE on z (each member, the
average, LightGBM) and a paired t-test of the average against LightGBM over the folds; writes
``results.json`` to ``--out``. Each member's test predictions are cached there
(``pred_k{fold}_s{seed}.npy``), so a rerun only trains what is missing.

``--served`` asks the question for the served forecaster instead (docs/lamm.md "v10"): the
content-lift channel on, the GBM head tuned and fitted per fold as ``train_lamm`` fits it, its
blend weight chosen on the calibration products against the members' average, and LightGBM tuned
as ``evaluate``'s baseline row. It prints the blend with the first member (``evaluate``'s
LAMM+GBM row) and with the average, each against the tuned LightGBM (member predictions on the
calibration products are cached too: ``cal_k{fold}_s{seed}.npy``).

    .venv/bin/python -m tests.bench.lamm_seed_ensemble [--data data/paper] [--members 3] [--only-folds 0,1]
    .venv/bin/python -m tests.bench.lamm_seed_ensemble --served --out runs/lamm-seed-ensemble-served

A member takes about 145 s on one core of the 2-core machine at paper scale.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy import stats

import inference.baselines as B
from inference.gbm_head import choose_weight, fit_gbm_head, predict_gbm_z
from inference.lamm import Lamm, LammConfig
from inference.lamm_data import load_lamm_data
from inference.lamm_train import (
    TrainConfig,
    fit,
    fold_assignment,
    metrics,
    norm_constants,
    predict_z,
    split_calib,
    targets_z,
    with_content,
)


def member_seeds(fold: int, members: int) -> list[int]:
    """Torch seeds of a fold's members; the first is the evaluated LAMM's (``evaluate``: seed + k)."""
    return [fold + 1000 * m for m in range(members)]


def _ttest(a: list[float], b: list[float]) -> dict | None:
    if len(a) < 2:
        return None
    t = stats.ttest_rel(a, b)
    return {"diff": float(np.mean(a) - np.mean(b)), "t": float(t.statistic), "p": float(t.pvalue)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/paper")
    ap.add_argument("--out", default="runs/lamm-seed-ensemble")
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--only-folds", default="", help="comma-separated 0-based folds (default: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--served",
        action="store_true",
        help="the served forecaster's question: content channel, tuned GBM head blended with the members' average, tuned LightGBM",
    )
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_lamm_data(a.data, in_memory=False)
    tc0 = TrainConfig(threads=a.threads, content_scores=a.served)
    cfg = LammConfig(content_channel=a.served)
    fold_of = fold_assignment(data.n_products, a.folds, tc0.seed)
    folds = [int(k) for k in a.only_folds.split(",")] if a.only_folds else list(range(a.folds))
    res: dict = {"dataset": a.data, "members": a.members, "served": a.served, "per_fold": []}
    if a.served:
        print(
            "| fold | members (LAMM) | average (LAMM) | blend, first member | blend, average | weights | LightGBM tuned |"
        )
        print("|---|---|---|---|---|---|---|", flush=True)
    else:
        print("| fold | members | average | LightGBM |\n|---|---|---|---|", flush=True)
    for k in folds:
        tc = replace(tc0, seed=tc0.seed + k)  # as evaluate: the fold's split and LightGBM seed
        test_p = np.flatnonzero(fold_of == k)
        fit_p, cal_p = split_calib(np.flatnonzero(fold_of != k), tc.calib_frac, tc.seed)
        view = with_content(data, fit_p, log=lambda *_: None) if a.served else data
        norm = norm_constants(view, fit_p)
        true = targets_z(view, test_p, norm)
        preds, cals = [], []
        for s in member_seeds(k, a.members):
            cache, cal_cache = out / f"pred_k{k}_s{s}.npy", out / f"cal_k{k}_s{s}.npy"
            if not cache.exists() or (a.served and not cal_cache.exists()):
                t0 = time.time()
                torch.manual_seed(s)
                model = Lamm(cfg)
                fit(model, view, fit_p, cal_p, norm, replace(tc, seed=s), log=lambda *_: None)
                np.save(cache, predict_z(model, view, test_p))
                if a.served:
                    np.save(cal_cache, predict_z(model, view, cal_p))
                print(f"  fold {k + 1} seed {s}: trained in {time.time() - t0:.0f} s", flush=True)
            preds.append(np.load(cache))
            if a.served:
                cals.append(np.load(cal_cache))
        lgbm = B.fit_predict_lightgbm(
            view, fit_p, cal_p, test_p, norm, seed=tc.seed, threads=a.threads, tune=a.served
        )
        row = {
            "fold": k,
            "members_mae": [metrics(p, true, norm)["mae"] for p in preds],
            "average_mae": metrics(np.mean(preds, axis=0), true, norm)["mae"],
            "lightgbm_mae": metrics(lgbm, true, norm)["mae"],
        }
        if a.served:  # as train_lamm's _fit_head, with the weight chosen against each LAMM reading
            head = fit_gbm_head(view, fit_p, cal_p, norm, weight=1.0, seed=tc.seed, threads=a.threads)
            g_cal, g_test = predict_gbm_z(head, view, cal_p), predict_gbm_z(head, view, test_p)
            y_cal = targets_z(view, cal_p, norm)
            for name, cal, test in (
                ("first", cals[0], preds[0]),
                ("average", np.mean(cals, axis=0), np.mean(preds, axis=0)),
            ):
                w = choose_weight(cal, g_cal, y_cal)
                row[f"blend_{name}_weight"] = w
                row[f"blend_{name}_mae"] = metrics((1 - w) * test + w * g_test, true, norm)["mae"]
        res["per_fold"].append(row)
        mem = " / ".join(f"{m:.4f}" for m in row["members_mae"])
        if a.served:
            print(
                f"| K{k + 1} | {mem} | {row['average_mae']:.4f} | {row['blend_first_mae']:.4f} "
                f"| {row['blend_average_mae']:.4f} | {row['blend_first_weight']} / {row['blend_average_weight']} "
                f"| {row['lightgbm_mae']:.4f} |",
                flush=True,
            )
        else:
            print(f"| K{k + 1} | {mem} | {row['average_mae']:.4f} | {row['lightgbm_mae']:.4f} |", flush=True)
        (out / "results.json").write_text(json.dumps(res, indent=2))
    col = {
        c: [r[c] for r in res["per_fold"]]
        for c in res["per_fold"][0]
        if c.endswith("_mae") and c != "members_mae"
    }
    col["first_member_mae"] = [r["members_mae"][0] for r in res["per_fold"]]
    res["mean"] = {c.removesuffix("_mae"): float(np.mean(v)) for c, v in col.items()}
    print("mean: " + ", ".join(f"{c} {v:.4f}" for c, v in res["mean"].items()))
    against = ["average", "first_member"] + (["blend_first", "blend_average"] if a.served else [])
    for c in against:
        t = _ttest(col[f"{c}_mae"], col["lightgbm_mae"])
        if t is not None:
            res[f"{c}_vs_lightgbm"] = t
            print(
                f"{c} vs LightGBM: diff {t['diff']:+.4f}, t = {t['t']:.2f}, p = {t['p']:.3f} (t < 0: lower than LightGBM)"
            )
    (out / "results.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
