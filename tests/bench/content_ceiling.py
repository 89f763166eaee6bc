"""Benchmark: how much a video's content can be worth to a next-day forecast on a simulated world.

The simulator knows each video's true content quality (its log conversion, ``truth/videos.parquet``)
and each product-day's expected units (``truth/sales.parquet``). This refits the LightGBM
baseline per fold (same folds and split as ``liftstream evaluate``; its fixed recipe,
``tune=False``, as the documented figures were measured) with one oracle column added, so the
MAE on z says what a perfect reading of that information would buy:

- ``baseline``: the LightGBM baseline as evaluated before v10 (it sees no content);
- ``oracle quality``: plus log1p(sum over the active videos of exp(true quality) x today's
  impressions): the impression-weighted content quality a perfect video encoder could deliver;
- ``oracle expected units``: plus log1p of tomorrow's true expected units: the noise floor.

The gap between the first two is the ceiling of any content model (LAMM's ladder, its pooled
baselines, the modality ablation) on that world; docs/lamm.md compares it with the folds' noise.

    .venv/bin/python -m tests.bench.content_ceiling [--data data/paper] [--folds-run 0,1,2,3,4]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

import inference.baselines as B
from inference.lamm_data import _ranges, load_lamm_data
from inference.lamm_train import fold_assignment, metrics, norm_constants, split_calib, targets_z

VARIANTS = ("baseline", "oracle quality", "oracle expected units")


def oracle_columns(data, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """(V,) exp(true quality) of data's videos in data's order, (P, D) true expected units."""
    truth = pd.read_parquet(root / "truth" / "videos.parquet").set_index("video_id")["quality"]
    q = truth.reindex(data.video_ids).to_numpy()
    pid = {p: i for i, p in enumerate(data.product_ids)}
    assert len(q) == data.n_videos and not np.isnan(q).any(), "truth/videos.parquet does not match the videos"
    sales = pd.read_parquet(root / "truth" / "sales.parquet")
    sales = sales[sales["product_id"].isin(pid) & (sales["day"] < data.n_days)]
    expected = np.full((data.n_products, data.n_days), np.nan)
    expected[sales["product_id"].map(pid).to_numpy(), sales["day"].to_numpy()] = sales["expected_units"]
    return np.exp(q), expected


def table_with(plain, variant: str, exp_q: np.ndarray, expected: np.ndarray):
    """``plain`` (the unpatched ``B.lgbm_table``) with the variant's oracle column appended."""

    def table(data, products):
        t = plain(data, products)
        if variant == "baseline":
            return t
        p = np.asarray(products)
        b, d = len(p), data.n_days
        if variant == "oracle quality":
            pos = np.full(data.n_products, -1)
            pos[p] = np.arange(b)
            pairs = _ranges(data.pair_start, p)
            slot = pos[data.pair_product[pairs]] * d + data.pair_day[pairs]
            s = np.zeros(b * d)
            np.add.at(s, slot, exp_q[data.pair_video[pairs]] * data.pair_raw[pairs][:, 4])
            col = np.log1p(s.reshape(b, d))
        else:  # tomorrow's expected units, on row t
            col = np.full((b, d), np.nan)
            col[:, :-1] = np.log1p(expected[p][:, 1:])
        return np.concatenate([t, col[..., None]], axis=-1)

    return table


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/paper")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--folds-run", default="0,1,2,3,4", help="comma-separated folds to run")
    ap.add_argument("--out", default="runs/content-ceiling")
    a = ap.parse_args(argv)
    root = Path(a.data)
    data = load_lamm_data(root)
    exp_q, expected = oracle_columns(data, root)
    fold_of = fold_assignment(data.n_products, a.folds, 0)
    res: dict[str, list[float]] = {v: [] for v in VARIANTS}
    plain = B.lgbm_table
    try:
        for k in (int(x) for x in a.folds_run.split(",")):
            test, train = np.where(fold_of == k)[0], np.where(fold_of != k)[0]
            fit_p, cal_p = split_calib(train, 0.2, k)  # as evaluate: fold k's seed is k
            norm = norm_constants(data, fit_p)
            true = targets_z(data, test, norm)
            for v in VARIANTS:
                B.lgbm_table = table_with(plain, v, exp_q, expected)
                pz = B.fit_predict_lightgbm(data, fit_p, cal_p, test, norm, seed=k, threads=1, tune=False)
                res[v].append(metrics(pz, true, norm)["mae"])
                print(f"fold {k + 1}  {v:<24} MAE {res[v][-1]:.4f}", flush=True)
    finally:
        B.lgbm_table = plain
    print("\nmean MAE on z: " + ", ".join(f"{v} {np.mean(m):.4f}" for v, m in res.items()))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"data": str(root), "mae": res}, indent=2))


if __name__ == "__main__":
    main()
