"""Pilot (not the served model): can LAMM's day model use content when it gets it as a lift channel?

Lift in the simulator is a sum over a product's active videos of exp(quality) x impressions, which
Eq. 5's mean over [h_v, side_v] cannot form. This trains one fold's LAMM as ``liftstream evaluate``
does, with one day-input change patched into ``inference.lamm_train`` for the run (nothing in the
package changes):

    channel(t) = (log sum_v exp(q_v) * (1 + impressions_v(t)) - 9) / 3        (0 with no videos)

- ``--q learned``: q_v is the video encoder's last ``--k`` dims (trained end to end);
- ``--q oracle``: q_v is the simulator's true quality (``truth/videos.parquet``), one channel;
- ``--q linear``: q_v is a linear map of the video's raw features mean-pooled per modality (the
  inputs a ridge probe reads 0.525 of the true quality from, ``encoder_probe``), trained with
  the model; one channel.

``--route video`` puts the channels in place of the last k dims of the mean-pooled h_v (the LSTM
alone reads them, after input dropout); ``--route tab`` puts the first channel in place of the
``history_known`` column of the tabular part, which the LSTM and the skip MLP both read,
standardized by that column's constants. Prints the fold's MAE on z and the MAE increase when frame
and text are shuffled (lamm_data.permute_modality, 3 shuffles). docs/lamm.md, "Results, v6".

    .venv/bin/python -m tests.bench.lift_channel_pilot --data data/paper_content --fold 0 --q oracle --route tab
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
import torch


def b_dim(data) -> int:
    return int(data.features["frame"].shape[-1])


def pooled(b) -> torch.Tensor:
    """(V, 4 D) each video's raw features mean-pooled over its segments / title tokens, per modality."""
    from tests.bench.encoder_probe import _pooled

    pool = [_pooled(getattr(b, k), b.seg_mask) for k in ("frame", "motion", "audio")]
    return torch.from_numpy(np.concatenate([*pool, _pooled(b.title, b.title_mask)], axis=1))


def main(argv: list[str] | None = None) -> dict:
    import inference.lamm_data as LD
    import inference.lamm_train as LT
    from inference.daily import PRODUCT_FEATURES, SIDE_DIM
    from inference.lamm import LammConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/paper_content")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument(
        "--q", choices=("learned", "oracle", "linear", "scores", "scores-fixed"), default="learned"
    )
    ap.add_argument(
        "--score-source",
        choices=("detectors", "truth"),
        default="detectors",
        help="--q scores*: the PE-score detectors' seven scores, or the simulator's true pe, tp, af "
        "(what the two-stage fit loses with perfect scores; the shuffles then leave q_v as it is)",
    )
    ap.add_argument(
        "--stage1",
        choices=("residuals", "sales"),
        default="sales",
        help="--q scores-fixed: q_v's weights from the GBM recipe's next-day residuals, or from a "
        "structural model of the same day's sales (tests.bench.quality_from_residuals.fit_q_sales)",
    )
    ap.add_argument("--k", type=int, default=1, help="learned channels (oracle: 1)")
    ap.add_argument("--route", choices=("video", "tab"), default="tab")
    a = ap.parse_args(argv)
    k_ch = a.k if a.q == "learned" else 1
    d_model = LammConfig().d_model

    data = LD.load_lamm_data(a.data)
    truth = pd.read_parquet(f"{a.data}/truth/videos.parquet").set_index("video_id")["quality"]
    true_q = truth.reindex(data.video_ids).to_numpy().astype(np.float32)
    if a.q.startswith("scores"):  # PE-score detectors trained on 2,000 annotated fit-product videos
        from pathlib import Path

        from tests.bench.pe_score import detector_scores, fit_detectors

        fold_of0 = LT.fold_assignment(data.n_products, 5, LT.TrainConfig.seed)
        fit0, _ = LT.split_calib(np.flatnonzero(fold_of0 != a.fold), 0.2, LT.TrainConfig.seed + a.fold)
        annotated = np.random.default_rng(a.fold).permutation(LD._ranges(data.video_start, fit0))[:2000]
        if a.score_source == "truth":
            det = None
            tv = (
                pd.read_parquet(f"{a.data}/truth/videos.parquet")
                .set_index("video_id")
                .reindex(data.video_ids)
            )
            det_scores = tv[["pe", "tp", "af"]].to_numpy().astype(np.float32)
        else:
            det = fit_detectors(data, Path(a.data), annotated)
            det_scores = detector_scores(data, det)
        s_mu, s_sd = det_scores[annotated].mean(0), det_scores[annotated].std(0) + 1e-6
        det_scores = (det_scores - s_mu) / s_sd

        def shuffled_scores(pb):
            from tests.bench.pe_score import scores_from_arrays

            if det is None:  # true scores do not follow the shuffled features
                return det_scores[LD._ranges(data.video_start, np.asarray(pb.products))]
            return (
                scores_from_arrays(pb.frame, pb.motion, pb.audio, pb.seg_mask, pb.title, det) - s_mu
            ) / s_sd

    base_make, base_build = LD.make_batch, LD.build_day_inputs

    def make_batch(data_, products):
        b = base_make(data_, products)
        p = np.asarray(products)
        pairs = LD._ranges(data_.pair_start, p)
        b.log_impr = torch.from_numpy(np.log1p(data_.pair_raw[pairs][:, 4]).astype(np.float32))
        b.true_q = torch.from_numpy(true_q[LD._ranges(data_.video_start, p)])
        b.pooled = pooled(b) if a.q == "linear" else None
        if a.q.startswith("scores"):
            b.scores = torch.from_numpy(det_scores[LD._ranges(data_.video_start, p)])
        return b

    q_lin = torch.nn.Linear(
        det_scores.shape[1] if a.q.startswith("scores") else 4 * b_dim(data), 1
    )  # --q linear: trained with the model (added to it below)
    torch.nn.init.zeros_(q_lin.weight)
    torch.nn.init.zeros_(q_lin.bias)

    def build_day_inputs(h, b):
        x = base_build(h, b)
        n_b, d, _ = b.product_x.shape
        if a.q == "oracle":
            q = b.true_q[b.pair_video][:, None]
        elif a.q == "linear":
            q = q_lin(b.pooled)[b.pair_video]
        elif a.q.startswith("scores"):
            q = q_lin(b.scores)[b.pair_video]
        else:
            q = h[b.pair_video, d_model - k_ch :]
        q = q + b.log_impr[:, None]
        slot, n = b.pair_slot, n_b * d
        mx = torch.full((n, k_ch), -1e4).index_reduce(0, slot, q.detach(), "amax", include_self=True)
        s = torch.zeros(n, k_ch).index_add(0, slot, torch.exp(q - mx[slot]))
        has = (torch.zeros(n).index_add(0, slot, torch.ones(len(slot))) > 0)[:, None]
        lift = torch.where(has, (mx + torch.log(s.clamp(min=1e-30)) - 9.0) / 3.0, torch.zeros_like(mx))
        lift = lift.view(n_b, d, k_ch)
        if a.route == "tab":
            j = d_model + SIDE_DIM + PRODUCT_FEATURES.index("history_known")
            return torch.cat([x[..., :j], lift[..., :1], x[..., j + 1 :]], dim=-1)
        return torch.cat([x[..., : d_model - k_ch], lift, x[..., d_model:]], dim=-1)

    LT.make_batch, LT.build_day_inputs = make_batch, build_day_inputs
    base_lamm = LT.Lamm

    class LammWithQ(base_lamm):  # so that fit's optimizer trains q_lin too
        def __init__(self, cfg):
            super().__init__(cfg)
            self.q_lin = q_lin

    LT.Lamm = LammWithQ
    torch.set_num_threads(1)
    fold_of = LT.fold_assignment(data.n_products, 5, LT.TrainConfig.seed)
    tc = LT.TrainConfig(threads=1, seed=LT.TrainConfig.seed + a.fold)  # evaluate's config for the fold
    test_p = np.flatnonzero(fold_of == a.fold)
    fit_p, cal_p = LT.split_calib(np.flatnonzero(fold_of != a.fold), tc.calib_frac, tc.seed)
    norm = LT.norm_constants(data, fit_p)
    if a.q == "scores-fixed":  # two stages: q_v's weights from the GBM recipe's residuals, then frozen
        from tests.bench.quality_from_residuals import fit_q, fit_q_sales, gbm_residuals

        phi_fit = det_scores[LD._ranges(data.video_start, fit_p)]
        if a.stage1 == "sales":
            w = fit_q_sales(data, fit_p, phi_fit)
        else:
            w = fit_q(data, fit_p, gbm_residuals(data, fit_p, cal_p, norm), phi_fit, steps=1000)
        with torch.no_grad():
            q_lin.weight.copy_(torch.from_numpy(w)[None])
        q_lin.requires_grad_(False)
        print("q weights", np.round(w, 3).tolist(), flush=True)
    true = LT.targets_z(data, test_p, norm)
    f = LT._Fold(data, fit_p, cal_p, test_p, norm, tc, true, log=print)
    t0 = time.time()
    model = LT._fold_lamm(f, LammConfig())
    mae = LT.metrics(LT.predict_z(model, data, test_p), true, norm)["mae"]
    out = {**vars(a), "mae": round(mae, 4), "train_seconds": round(time.time() - t0)}
    for modality in ("frame", "text"):
        inc = []
        for r in range(3):
            rng = np.random.default_rng(r)

            def shuffled(data_, products, rng=rng, modality=modality):
                b = make_batch(data_, products)
                pb = LD.permute_modality(b, modality, rng)
                pb.log_impr, pb.true_q = b.log_impr, b.true_q
                pb.pooled = pooled(pb) if a.q == "linear" else None
                if a.q.startswith("scores"):  # the scores come from the shuffled features
                    pb.scores = torch.from_numpy(shuffled_scores(pb))
                return pb

            LT.make_batch = shuffled
            inc.append(LT.metrics(LT.predict_z(model, data, test_p), true, norm)["mae"] - mae)
        LT.make_batch = make_batch
        out[f"shuffled_{modality}"] = round(float(np.mean(inc)), 5)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
