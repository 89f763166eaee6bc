"""Benchmark: would averaging LAMM over initialisation seeds beat the LightGBM baseline?

Same folds, calibration split and normalisation as ``liftstream evaluate``. Per fold k, LAMM is
trained ``--members`` times with torch seeds k, 1000 + k, 2000 + k, ... (the first is exactly
the evaluated LAMM of that fold; the split stays the fold's), and the test predictions on z
are averaged. LightGBM is refitted as evaluated before v10 (the fixed recipe, ``tune=False``). Prints per-fold MAE on z (each member, the
average, LightGBM) and a paired t-test of the average against LightGBM over the folds; writes
``results.json`` to ``--out``. Each member's test predictions are cached there
(``pred_k{fold}_s{seed}.npy``), so a rerun only trains what is missing.

    .venv/bin/python -m tests.bench.lamm_seed_ensemble [--data data/paper] [--members 3] [--only-folds 0,1]

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
)


def member_seeds(fold: int, members: int) -> list[int]:
    """Torch seeds of a fold's members; the first is the evaluated LAMM's (``evaluate``: seed + k)."""
    return [fold + 1000 * m for m in range(members)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/paper")
    ap.add_argument("--out", default="runs/lamm-seed-ensemble")
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--only-folds", default="", help="comma-separated 0-based folds (default: all)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_lamm_data(a.data, in_memory=False)
    tc0 = TrainConfig(threads=a.threads)
    fold_of = fold_assignment(data.n_products, a.folds, tc0.seed)
    folds = [int(k) for k in a.only_folds.split(",")] if a.only_folds else list(range(a.folds))
    res: dict = {"dataset": a.data, "members": a.members, "per_fold": []}
    print("| fold | members | average | LightGBM |\n|---|---|---|---|", flush=True)
    for k in folds:
        tc = replace(tc0, seed=tc0.seed + k)  # as evaluate: the fold's split and LightGBM seed
        test_p = np.flatnonzero(fold_of == k)
        fit_p, cal_p = split_calib(np.flatnonzero(fold_of != k), tc.calib_frac, tc.seed)
        norm = norm_constants(data, fit_p)
        true = targets_z(data, test_p, norm)
        preds = []
        for s in member_seeds(k, a.members):
            cache = out / f"pred_k{k}_s{s}.npy"
            if not cache.exists():
                t0 = time.time()
                torch.manual_seed(s)
                model = Lamm(LammConfig())
                fit(model, data, fit_p, cal_p, norm, replace(tc, seed=s), log=lambda *_: None)
                np.save(cache, predict_z(model, data, test_p))
                print(f"  fold {k + 1} seed {s}: trained in {time.time() - t0:.0f} s", flush=True)
            preds.append(np.load(cache))
        lgbm = B.fit_predict_lightgbm(
            data, fit_p, cal_p, test_p, norm, seed=tc.seed, threads=a.threads, tune=False
        )
        row = {
            "fold": k,
            "members_mae": [metrics(p, true, norm)["mae"] for p in preds],
            "average_mae": metrics(np.mean(preds, axis=0), true, norm)["mae"],
            "lightgbm_mae": metrics(lgbm, true, norm)["mae"],
        }
        res["per_fold"].append(row)
        print(
            f"| K{k + 1} | {' / '.join(f'{m:.4f}' for m in row['members_mae'])} | {row['average_mae']:.4f} "
            f"| {row['lightgbm_mae']:.4f} |",
            flush=True,
        )
    avg = [r["average_mae"] for r in res["per_fold"]]
    lgb = [r["lightgbm_mae"] for r in res["per_fold"]]
    first = [r["members_mae"][0] for r in res["per_fold"]]
    res["mean"] = {
        "first_member": float(np.mean(first)),
        "average": float(np.mean(avg)),
        "lightgbm": float(np.mean(lgb)),
    }
    print(
        f"mean: one member {np.mean(first):.4f}, average of {a.members} {np.mean(avg):.4f}, LightGBM {np.mean(lgb):.4f}"
    )
    if len(avg) > 1:
        t = stats.ttest_rel(avg, lgb)
        res["average_vs_lightgbm"] = {"t": float(t.statistic), "p": float(t.pvalue)}
        print(f"average vs LightGBM: t = {t.statistic:.2f}, p = {t.pvalue:.3f} (t < 0: the average is lower)")
    (out / "results.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
