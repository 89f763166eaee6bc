"""Benchmark: what limits the content-lift channel, the scores or the conversion weights?

The served channel (``inference.content_scores``) turns each video's content scores into q_v, its
log conversion up to the product's constant, with weights fitted on the same day's sales. On a
simulated world the truth says how well q_v reads the true log conversion, and this refits the
LightGBM baseline of ``liftstream evaluate`` (same fold, split and seed) with the channel built
from other q_v, so the MAE on z says what each would buy:

- ``served``: q_v as served (the content model fitted on the fold's fit products);
- ``served, weights fitted longer``: the conversion fit run 5,000 steps instead of 600;
- ``oracle weights``: the same scores with the least-squares weights of the true quality (a
  weight fit could do no better with these scores);
- ``served x c``: q_v scaled (the channel's log-sum-exp is not scale-free);
- ``oracle``: the true log conversion (the ceiling of any content reading);
- ``oracle + noise``: the truth plus Gaussian noise, its correlation with the truth that of the
  served q_v (how much a reading as accurate as the served one would be worth if its errors were
  unstructured).

    .venv/bin/python -m tests.bench.channel_noise --data data/paper_content [--fold 0] [--out runs/bench/channel_noise.json]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

import inference.baselines as B
import inference.content_scores as CS
import inference.lamm_train as LT
from inference.lamm_data import _ranges, load_lamm_data


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/paper_content")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--out", default="runs/bench/channel_noise.json")
    a = ap.parse_args(argv)
    data = load_lamm_data(a.data)
    k, seed = a.fold, LT.TrainConfig.seed + a.fold  # evaluate's fold seed
    fold_of = LT.fold_assignment(data.n_products, 5, LT.TrainConfig.seed)
    test_p = np.flatnonzero(fold_of == k)
    fit_p, cal_p = LT.split_calib(np.flatnonzero(fold_of != k), LT.TrainConfig.calib_frac, seed)
    cm = CS.fit_content(data, fit_p, log=lambda *_: None)
    phi = np.empty((data.n_videos, len(CS.SCORES)), np.float32)
    for lo in range(0, data.n_videos, 4096):
        r = data.video_row[lo : lo + 4096]
        s = CS.scores(
            cm.det, *(data.features[f][r] for f in ("frame", "motion", "audio", "seg_mask", "title"))
        )
        phi[lo : lo + len(r)] = (s - cm.mu) / cm.sd
    truth = pd.read_parquet(Path(a.data) / "truth" / "videos.parquet").set_index("video_id")
    true = truth["log_conversion"].reindex(data.video_ids).to_numpy(np.float64)
    served = phi @ cm.w
    fit_v = _ranges(data.video_start, fit_p)
    xa = np.column_stack([phi[fit_v], np.ones(len(fit_v))])
    w_oracle = np.linalg.lstsq(xa, truth["quality"].reindex(data.video_ids).to_numpy()[fit_v], rcond=None)[0]
    corr = float(np.corrcoef(served, true)[0, 1])
    noise_sd = true.std() * np.sqrt(1.0 / corr**2 - 1.0)
    rng = np.random.default_rng(0)
    shift = served.mean() - true.mean()  # the channel's constant is the served one's
    variants = {
        "served": served,
        "served, weights fitted longer": phi @ CS.fit_conversion_on(data, fit_p, phi[fit_v], steps=5000),
        "oracle weights": phi @ w_oracle[:-1],
        **{f"served x {c}": c * served for c in (0.5, 0.75, 1.25, 1.5)},
        "oracle": true + shift,
        "oracle + noise": true + shift + rng.normal(0.0, noise_sd, len(true)),
    }
    out = {"data": a.data, "fold": k, "corr_served_true_log_conversion": round(corr, 4), "variants": {}}
    for name, q in variants.items():
        view = replace(data, video_q=q.astype(np.float32))
        norm = LT.norm_constants(view, fit_p)
        z = B.fit_predict_lightgbm(view, fit_p, cal_p, test_p, norm, seed=seed, threads=1)
        mae = LT.metrics(z, LT.targets_z(view, test_p, norm), norm)["mae"]
        c = float(np.corrcoef(q, true)[0, 1])
        out["variants"][name] = {"corr_true": round(c, 4), "lightgbm_mae": round(mae, 4)}
        print(f"{name:<32} corr with the truth {c:.3f}   LightGBM MAE {mae:.4f}", flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
