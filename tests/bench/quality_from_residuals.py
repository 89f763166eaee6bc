"""Pilot: can a video's content quality be learned from product sales with a lower-noise target?

One fold of ``liftstream evaluate``'s split. The GBM head's recipe on x (``lamm_data.tab_part``)
predicts the fit products' next-day z, cross-fitted over two halves (early-stopped on the
calibration products). A linear q_v = w . phi_v (phi: the video's standardized inputs) is then
fitted full batch (Adam, ``--steps``, ridge ``--ridge``) so that a + b * c(t) explains those
residuals, where c(t) = log of the impression-weighted mean of exp(q_v) over the product's active
videos (``--within``: a per-product intercept instead of a, profiled out). The printout is the
correlation of q_v with the simulator's true quality on the fold's test videos (a perfect
reading: 1; docs/lamm.md, "Results, v6" and "Content scores").

phi (``--features``): ``pooled``, the video's raw features mean-pooled per modality (512 dims);
``oracle``, the simulator's three true content scores (pe, tp, af: an identification check with
the representation problem taken out); ``scores``, the PE-score detectors' seven scores
(``tests.bench.pe_score``, detectors trained on 2,000 annotated fit-product videos).

    .venv/bin/python -m tests.bench.quality_from_residuals --data data/paper_content --fold 0 [--features scores] [--within]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import inference.lamm_data as LD
import inference.lamm_train as LT
from inference.gbm_head import HEAD_PARAMS, fit_lightgbm
from tests.bench.lift_channel_pilot import pooled


def _chunks(p, n=64):
    return [p[i : i + n] for i in range(0, len(p), n)]


def gbm_residuals(data, fit_p, cal_p, norm) -> np.ndarray:
    """(len(fit_p), D-1) z minus the GBM head recipe's cross-fitted forecast (two halves)."""
    D = data.n_days

    def rows(p):
        x = LD.tab_part(data, p)[:, :-1]
        return x.reshape(-1, x.shape[-1]), LT.targets_z(data, p, norm).reshape(-1)

    half = np.zeros(len(fit_p), bool)
    half[np.random.default_rng(0).permutation(len(fit_p))[: len(fit_p) // 2]] = True
    off = np.zeros((len(fit_p), D - 1))
    xc, yc = rows(cal_p)
    for a_, b_ in ((half, ~half), (~half, half)):
        xa, ya = rows(fit_p[a_])
        m = fit_lightgbm(xa, ya, xc, yc, seed=0, threads=1, params=HEAD_PARAMS)
        off[b_] = m.predict(rows(fit_p[b_])[0]).reshape(int(b_.sum()), D - 1)
    return LT.targets_z(data, fit_p, norm) - off


def _pairs(data, p):
    """(video position among p's videos, slot b * D + t, log1p impressions) of p's active pairs."""
    p = np.asarray(p)
    pos = np.full(data.n_products, -1)
    pos[p] = np.arange(len(p))
    pr = LD._ranges(data.pair_start, p)
    vids = LD._ranges(data.video_start, p)
    loc = np.full(data.n_videos, -1)
    loc[vids] = np.arange(len(vids))
    return (
        torch.tensor(loc[data.pair_video[pr]]),
        torch.tensor(pos[data.pair_product[pr]] * data.n_days + data.pair_day[pr]),
        torch.tensor(np.log1p(data.pair_raw[pr][:, 4]), dtype=torch.float32),
    )


def channel(q: torch.Tensor, pv, slot, li, n: int) -> torch.Tensor:
    """(n,) log of the impression-weighted mean of exp(q_v) over each slot's active videos (0: none)."""
    v = q[pv] + li
    mx = torch.full((n,), -1e4).index_reduce(0, slot, v.detach(), "amax", include_self=True)
    s = torch.zeros(n).index_add(0, slot, torch.exp(v - mx[slot]))
    mx0 = torch.full((n,), -1e4).index_reduce(0, slot, li, "amax", include_self=True)
    s0 = torch.zeros(n).index_add(0, slot, torch.exp(li - mx0[slot]))
    has = torch.zeros(n).index_add(0, slot, torch.ones(len(slot))) > 0
    return torch.where(
        has, mx + torch.log(s.clamp(min=1e-30)) - mx0 - torch.log(s0.clamp(min=1e-30)), torch.zeros(n)
    )


def fit_q(
    data,
    fit_p,
    resid: np.ndarray,
    phi: np.ndarray,
    *,
    within=False,
    steps=400,
    ridge=1e-3,
    lr=0.01,
    log=print,
):
    """(F,) weights w of q_v = w . phi_v fitted to ``resid`` ((len(fit_p), D-1)); ``phi``: (videos of
    fit_p in data's order, F) standardized inputs."""
    D = data.n_days
    pv, slot, li = _pairs(data, fit_p)
    phi_t = torch.tensor(phi, dtype=torch.float32)
    n = len(fit_p) * D
    r = torch.tensor(resid, dtype=torch.float32)
    w = torch.zeros(phi.shape[1], requires_grad=True)
    ab = torch.zeros(2, requires_grad=True)
    opt = torch.optim.Adam([w, ab], lr=lr)
    ok = ~torch.isnan(r)
    for it in range(steps):
        c = channel(phi_t @ w, pv, slot, li, n).view(len(fit_p), D)[:, :-1]
        err = torch.where(ok, ab[0] + ab[1] * c - torch.nan_to_num(r), torch.zeros(()))
        if within:  # the best per-product intercept, profiled out: demean each product's errors
            err = torch.where(ok, err - err.sum(1, keepdim=True) / ok.sum(1, keepdim=True).clamp(min=1), err)
        loss = (err[ok] ** 2).mean() + ridge * (w**2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it % max(steps // 8, 1) == 0:
            log(f"{it} {float(loss.detach()):.5f}")
    return w.detach().numpy()


def fit_q_sales(data, products, phi: np.ndarray, *, steps=600, log=print) -> np.ndarray:
    """(F,) weights w of q_v = w . phi_v from a structural model of the same day's sales
    (``inference.content_scores.fit_conversion``: organic base + each active video converting its
    impressions at exp(b_p + q_v)). ``phi``: (videos of ``products`` in data's order, F)
    standardized."""
    from inference.content_scores import fit_conversion_on

    return fit_conversion_on(data, products, phi, steps=steps, log=log)


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/paper_content")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--features", choices=("pooled", "oracle", "scores"), default="pooled")
    ap.add_argument("--within", action="store_true", help="a per-product intercept (product fixed effects)")
    ap.add_argument(
        "--stage1",
        choices=("residuals", "sales"),
        default="residuals",
        help="fit q_v to the GBM recipe's next-day residuals, or to the same day's sales (fit_q_sales)",
    )
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--ridge", type=float, default=1e-3)
    ap.add_argument("--lr", type=float, default=0.01)
    a = ap.parse_args(argv)
    DS, k = a.data, a.fold
    data = LD.load_lamm_data(DS)
    torch.set_num_threads(1)
    fold_of = LT.fold_assignment(data.n_products, 5, LT.TrainConfig.seed)
    test_p = np.flatnonzero(fold_of == k)
    fit_p, cal_p = LT.split_calib(np.flatnonzero(fold_of != k), 0.2, k)
    norm = LT.norm_constants(data, fit_p)
    resid = gbm_residuals(data, fit_p, cal_p, norm) if a.stage1 == "residuals" else None

    truth = pd.read_parquet(f"{DS}/truth/videos.parquet").set_index("video_id").reindex(data.video_ids)
    if a.features == "oracle":
        allv = truth[["pe", "tp", "af"]].to_numpy().astype(np.float32)
    elif a.features == "scores":
        from tests.bench.pe_score import detector_scores, fit_detectors

        annotated = np.random.default_rng(k).permutation(LD._ranges(data.video_start, fit_p))[:2000]
        allv = detector_scores(data, fit_detectors(data, Path(DS), annotated))
    else:
        allv = None

    def phi_of(p):
        if allv is not None:
            return allv[LD._ranges(data.video_start, np.asarray(p))]
        return np.concatenate([pooled(LD.make_batch(data, c)).numpy() for c in _chunks(p)])

    phi_fit = phi_of(fit_p)
    mu, sd = phi_fit.mean(0), phi_fit.std(0) + 1e-6
    if a.stage1 == "sales":
        w = fit_q_sales(data, fit_p, (phi_fit - mu) / sd, steps=a.steps)
    else:
        w = fit_q(
            data, fit_p, resid, (phi_fit - mu) / sd, within=a.within, steps=a.steps, ridge=a.ridge, lr=a.lr
        )
    print("weights", np.round(w, 3).tolist())
    qt = truth["quality"].to_numpy()[LD._ranges(data.video_start, test_p)]
    qhat = ((phi_of(test_p) - mu) / sd) @ w
    corr = float(np.corrcoef(qhat, qt)[0, 1])
    print("corr(q_hat, true quality) on test videos", round(corr, 3))
    return corr


if __name__ == "__main__":
    main()
