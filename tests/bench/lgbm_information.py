"""Benchmark: LightGBM on less information, same folds as ``liftstream evaluate``: where its edge over LAMM comes from.

LightGBM's table (``inference.baselines.LGBM_FEATURES``) holds things LAMM's day input x cannot
(history sales and videos come from the products table, which no stream event carries) as well as
the columns x has. This refits LightGBM per fold with groups of columns zeroed (a constant column
is never split on) and prints MAE on z per fold, so LAMM can be compared with trees that see the
same information:

- ``all``: the LightGBM baseline as evaluated;
- ``no history``: without log history sales / videos;
- ``x information``: only the columns LAMM's x also has (today's units, lags 1 / 2, 3- / 7-day
  means, weekday, price, rating, active / new video counts, the five engagement sums);
- ``x information + history``: those plus history sales / videos;
- with ``--one-at-a-time``: that plus each other column alone (what each is worth to the trees).

    .venv/bin/python -m tests.bench.lgbm_information [--data data/paper] [--out runs/lgbm-information] [--one-at-a-time]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import inference.baselines as B
from inference.lamm_data import load_lamm_data
from inference.lamm_train import TrainConfig, fold_assignment, metrics, norm_constants, split_calib, targets_z

HISTORY = {"log_history_sales", "log_history_videos"}
IN_X = {
    "log_units",
    "log_units_lag1",
    "log_units_lag2",
    "mean3",
    "mean7",
    "weekday",
    "log_price",
    "rating",
    "n_active",
    "n_new",
    "sum_likes",
    "sum_shares",
    "sum_comments",
    "sum_collects",
    "sum_impressions",
}
VARIANTS = {
    "all": set(),
    "no history": HISTORY,
    "x information": set(B.LGBM_FEATURES) - IN_X,
    "x information + history": set(B.LGBM_FEATURES) - IN_X - HISTORY,
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/paper")
    ap.add_argument("--out", default="runs/lgbm-information")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--one-at-a-time",
        action="store_true",
        help="also 'x information + history' plus each column x lacks, one at a time",
    )
    a = ap.parse_args(argv)
    assert set(B.LGBM_FEATURES) >= IN_X, f"unknown columns {IN_X - set(B.LGBM_FEATURES)}"
    variants = dict(VARIANTS)
    if a.one_at_a_time:
        base = VARIANTS["x information + history"]
        variants.update({f"x information + history + {c}": base - {c} for c in B.LGBM_FEATURES if c in base})
    data = load_lamm_data(a.data, in_memory=False)
    tc = TrainConfig()
    fold_of = fold_assignment(data.n_products, a.folds, tc.seed)  # as evaluate: same folds, same seeds
    full_table = B.lgbm_table
    res: dict = {name: [] for name in variants}
    try:
        for name, zeroed in variants.items():
            cols = [B.LGBM_FEATURES.index(c) for c in zeroed]

            def table(d, p, cols=cols):
                t = full_table(d, p)
                t[..., cols] = 0.0
                return t

            B.lgbm_table = table
            for k in range(a.folds):
                seed = tc.seed + k
                test_p = np.flatnonzero(fold_of == k)
                fit_p, cal_p = split_calib(np.flatnonzero(fold_of != k), tc.calib_frac, seed)
                norm = norm_constants(data, fit_p)
                pred = B.fit_predict_lightgbm(data, fit_p, cal_p, test_p, norm, seed=seed, threads=a.threads)
                res[name].append(metrics(pred, targets_z(data, test_p, norm), norm)["mae"])
            print(
                f"| {name} | " + " | ".join(f"{v:.4f}" for v in res[name]) + f" | {np.mean(res[name]):.4f} |",
                flush=True,
            )
    finally:
        B.lgbm_table = full_table
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"dataset": a.data, "mae": res}, indent=2))


if __name__ == "__main__":
    main()
