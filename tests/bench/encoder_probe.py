"""Benchmark: does LAMM's video encoder carry the videos' true content quality?

Trains one fold's LAMM exactly as ``liftstream evaluate`` does (same folds, split and seed), encodes
that fold's test videos and fits a cross-validated ridge probe of the simulator's true quality
(``truth/videos.parquet``: the video's log conversion, what content is worth to sales) on

- h_v of the trained LAMM,
- h_v of the same architecture at its random initialisation (what training added),
- the raw features mean-pooled over segments / tokens per modality (what a linear read of the
  inputs gets).

The R^2 of the first against the other two says whether the encoder loses the content, or whether
it is lost after it (Eq. 5's mean over videos and the day LSTM); docs/lamm.md, "Results, v6".

    .venv/bin/python -m tests.bench.encoder_probe --data data/paper_content [--fold 0] [--videos 8000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch


def _pooled(x: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    m = mask.float()[..., None]
    return ((x * m).sum(1) / m.sum(1).clamp(min=1.0)).numpy()


def probe_r2(x: np.ndarray, y: np.ndarray, folds: int = 5) -> float:
    """Cross-fitted R^2 of a ridge regression (alpha chosen inside each fold) of y on x."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import cross_val_predict

    pred = cross_val_predict(RidgeCV(alphas=np.logspace(-2, 4, 13)), x, y, cv=folds)
    return float(1.0 - np.mean((pred - y) ** 2) / np.var(y))


def main(argv: list[str] | None = None) -> dict:
    from inference.lamm import Lamm, LammConfig
    from inference.lamm_data import _ranges, load_lamm_data, make_batch
    from inference.lamm_train import (
        TrainConfig,
        _encode,
        _Fold,
        _fold_lamm,
        fold_assignment,
        norm_constants,
        split_calib,
        targets_z,
    )

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/paper_content")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--videos", type=int, default=8000, help="test videos sampled for the probes")
    ap.add_argument("--out", default="runs/bench/encoder_probe")
    a = ap.parse_args(argv)

    torch.set_num_threads(1)
    data = load_lamm_data(a.data)
    fold_of = fold_assignment(data.n_products, a.folds, TrainConfig.seed)
    tc = TrainConfig(threads=1, seed=TrainConfig.seed + a.fold)  # evaluate's config for this fold
    test_p = np.flatnonzero(fold_of == a.fold)
    fit_p, cal_p = split_calib(np.flatnonzero(fold_of != a.fold), tc.calib_frac, tc.seed)
    norm = norm_constants(data, fit_p)
    f = _Fold(data, fit_p, cal_p, test_p, norm, tc, targets_z(data, test_p, norm), log=print)
    t0 = time.time()
    trained = _fold_lamm(f, LammConfig()).eval()
    train_s = time.time() - t0
    torch.manual_seed(tc.seed)
    untrained = Lamm(LammConfig()).eval()

    feats: dict[str, list[np.ndarray]] = {"trained": [], "untrained": [], "pooled": []}
    with torch.inference_mode():
        for p in np.array_split(test_p, max(1, len(test_p) // 48)):
            b = make_batch(data, p)
            feats["trained"].append(_encode(trained, b, False).numpy())
            feats["untrained"].append(_encode(untrained, b, False).numpy())
            pooled = [_pooled(getattr(b, k), b.seg_mask) for k in ("frame", "motion", "audio")]
            feats["pooled"].append(np.concatenate([*pooled, _pooled(b.title, b.title_mask)], axis=1))
    video_ids = np.asarray(data.video_ids)[_ranges(data.video_start, test_p)]
    truth = pd.read_parquet(Path(a.data) / "truth" / "videos.parquet").set_index("video_id")["quality"]
    q = truth.reindex(video_ids).to_numpy()
    assert not np.isnan(q).any(), "truth/videos.parquet does not match the dataset's videos"
    sub = np.random.default_rng(0).choice(len(q), min(a.videos, len(q)), replace=False)
    res = {
        "data": a.data,
        "fold": a.fold,
        "n_videos": int(len(sub)),
        "train_seconds": round(train_s, 1),
        "r2_true_quality": {k: probe_r2(np.concatenate(v)[sub], q[sub]) for k, v in feats.items()},
    }
    for k, r2 in res["r2_true_quality"].items():
        print(f"{k:<10} cross-fitted R^2 of true quality: {r2:.3f}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
