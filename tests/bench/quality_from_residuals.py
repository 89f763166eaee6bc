"""Pilot: can a video's content quality be learned from product sales with a lower-noise target?

One fold of ``liftstream evaluate``'s split. The GBM head's recipe on x (``gbm_head.tab_inputs``)
predicts the fit products' next-day z, cross-fitted over two halves (early-stopped on the
calibration products). A linear q_v = w . (the video's standardized, mean-pooled raw features)
is then fitted full batch (Adam, 400 steps, ridge 1e-3) so that a + b * c(t) explains those
residuals, where c(t) = log of the impression-weighted mean of exp(q_v) over the product's active
videos. The printout is the correlation of q_v with the simulator's true quality on the fold's
test videos (a perfect reading: 1; docs/lamm.md, "Results, v6").

    .venv/bin/python -m tests.bench.quality_from_residuals --data data/paper_content --fold 0
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import torch

import inference.lamm_data as LD
import inference.lamm_train as LT
from inference.gbm_head import HEAD_PARAMS, fit_lightgbm, tab_inputs
from tests.bench.lift_channel_pilot import pooled


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/paper_content")
    ap.add_argument("--fold", type=int, default=0)
    a = ap.parse_args(argv)
    DS, k = a.data, a.fold
    data = LD.load_lamm_data(DS)
    torch.set_num_threads(1)
    fold_of = LT.fold_assignment(data.n_products, 5, LT.TrainConfig.seed)
    test_p = np.flatnonzero(fold_of == k)
    fit_p, cal_p = LT.split_calib(np.flatnonzero(fold_of != k), 0.2, k)
    norm = LT.norm_constants(data, fit_p)
    D = data.n_days

    def rows(p):
        x = tab_inputs(data, p)[:, :-1]
        y = LT.targets_z(data, p, norm)
        return x.reshape(-1, x.shape[-1]), y.reshape(-1)

    # cross-fitted GBM predictions on fit products (2 halves), cal for early stopping
    half = np.zeros(len(fit_p), bool)
    half[np.random.default_rng(0).permutation(len(fit_p))[: len(fit_p) // 2]] = True
    off = {}
    xc, yc = rows(cal_p)
    for a_, b_ in ((fit_p[half], fit_p[~half]), (fit_p[~half], fit_p[half])):
        xa, ya = rows(a_)
        m = fit_lightgbm(xa, ya, xc, yc, seed=0, threads=1, params=HEAD_PARAMS)
        xb, _ = rows(b_)
        off.update(dict(zip(b_, m.predict(xb).reshape(len(b_), D - 1), strict=True)))

    # per-video pooled raw features, standardized
    def video_pool(p):
        return pooled(LD.make_batch(data, p)).numpy()

    def pairs_of(p):
        p = np.asarray(p)
        pos = np.full(data.n_products, -1)
        pos[p] = np.arange(len(p))
        pr = LD._ranges(data.pair_start, p)
        vids = LD._ranges(data.video_start, p)
        loc = np.full(data.n_videos, -1)
        loc[vids] = np.arange(len(vids))
        return (
            loc[data.pair_video[pr]],
            pos[data.pair_product[pr]] * D + data.pair_day[pr],
            np.log1p(data.pair_raw[pr][:, 4]),
        )

    def chunks(p, n=64):
        return [p[i : i + n] for i in range(0, len(p), n)]

    phi_fit = np.concatenate([video_pool(c) for c in chunks(fit_p)])
    mu, sd = phi_fit.mean(0), phi_fit.std(0) + 1e-6

    def setup(p):
        phi = (np.concatenate([video_pool(c) for c in chunks(p)]) - mu) / sd
        pv, slot, li = pairs_of(p)
        return (
            torch.tensor(phi, dtype=torch.float32),
            torch.tensor(pv),
            torch.tensor(slot),
            torch.tensor(li, dtype=torch.float32),
        )

    def channel(w, phi, pv, slot, li, n):
        q = phi @ w
        v = q[pv] + li
        mx = torch.full((n,), -1e4).index_reduce(0, slot, v.detach(), "amax", include_self=True)
        s = torch.zeros(n).index_add(0, slot, torch.exp(v - mx[slot]))
        mx0 = torch.full((n,), -1e4).index_reduce(0, slot, li, "amax", include_self=True)
        s0 = torch.zeros(n).index_add(0, slot, torch.exp(li - mx0[slot]))
        has = torch.zeros(n).index_add(0, slot, torch.ones(len(slot))) > 0
        return torch.where(
            has, mx + torch.log(s.clamp(min=1e-30)) - mx0 - torch.log(s0.clamp(min=1e-30)), torch.zeros(n)
        )

    S = setup(fit_p)
    n = len(fit_p) * D
    y = torch.tensor(LT.targets_z(data, fit_p, norm), dtype=torch.float32)  # (P, D-1)
    r = y - torch.tensor(np.stack([off[p] for p in fit_p]), dtype=torch.float32)
    w = torch.zeros(S[0].shape[1], requires_grad=True)
    ab = torch.zeros(2, requires_grad=True)
    opt = torch.optim.Adam([w, ab], lr=0.01)
    ok = ~torch.isnan(r)
    for it in range(400):
        c = channel(w, *S, n).view(len(fit_p), D)[:, :-1]
        pred = ab[0] + ab[1] * c
        loss = ((pred - torch.nan_to_num(r))[ok] ** 2).mean() + 1e-3 * (w**2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it % 100 == 0:
            print(it, float(loss.detach()), flush=True)
    # quality recovery on test videos
    truth = pd.read_parquet(f"{DS}/truth/videos.parquet").set_index("video_id")["quality"]
    St = setup(test_p)
    qt = truth.reindex(np.asarray(data.video_ids)[LD._ranges(data.video_start, test_p)]).to_numpy()
    qhat = (St[0] @ w).detach().numpy()
    print("corr(q_hat, true quality) on test videos", round(float(np.corrcoef(qhat, qt)[0, 1]), 3))
    return float(np.corrcoef(qhat, qt)[0, 1])


if __name__ == "__main__":
    main()
