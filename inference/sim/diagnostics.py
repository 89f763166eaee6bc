"""Ground-truth diagnostics the simulator stores in truth/: modality importance and FEI baselines.

``modality_importance`` answers "how much of the sales lift does each modality carry?" the way an
ablation does, but on the generative process: the latents a modality shows (frame: product on
screen p and whether it is the advertised one, motion: saliency e, audio: voice about the
product a, text: title names the product) are
replaced by an independent draw of the same process, everything else held fixed, and

    importance_m = E[(y - y_m)^2] / (2 Var y)

is the share of the variance of y lost (0: the modality carries nothing, ~1: y is all it).
y is the log conversion ("quality", what the video encoder must read) and the log of the video's
expected two-week lift (quality + log impressions, which saliency also moves).

``fei_diagnostics`` fits the linear baselines the FEI paper argues against: naive OLS of log
impressions on log followers (plus observed content controls), and 2SLS with the instrument.
"""

from __future__ import annotations

import numpy as np

from inference.sim import content as C

ABLATION_LATENTS = {
    "frame": ("p", "shows_advertised"),
    "motion": ("e",),
    "audio": ("a",),
    "text": ("title_names_product",),
}


def modality_importance(
    rng, lat, n_seg, align_mean, vtype, verified, length, q, log_conv, log_r, quality_scale: float = 1.0
) -> dict:
    lat2 = C.segment_latents(rng, n_seg, align_mean)
    sc = C.content_scores(lat, n_seg)
    ce = C.content_effect(sc, vtype, verified, length)
    y = log_conv + log_r
    out: dict = {
        "method": "latent of the modality replaced by an independent draw; share of variance lost "
        "E[(y - y_m)^2] / (2 Var y)",
        "latents": ABLATION_LATENTS,
        "quality": {},
        "log_lift": {},
    }
    if q.size < 2:
        out["note"] = "fewer than two videos: nothing to compare"
        out["quality"] = dict.fromkeys(ABLATION_LATENTS, 0.0)
        out["log_lift"] = dict.fromkeys(ABLATION_LATENTS, 0.0)
        out["order"] = list(ABLATION_LATENTS)
        return out
    for m, keys in ABLATION_LATENTS.items():
        sc_m = C.content_scores({**lat, **{k: lat2[k] for k in keys}}, n_seg)
        dq = C.quality(sc_m, quality_scale) - q
        dy = dq + C.content_effect(sc_m, vtype, verified, length) - ce
        out["quality"][m] = float(np.mean(dq**2) / (2 * max(np.var(q), 1e-12)))
        out["log_lift"][m] = float(np.mean(dy**2) / (2 * max(np.var(y), 1e-12)))
    out["order"] = sorted(ABLATION_LATENTS, key=lambda m: -out["quality"][m])
    return out


def _ols(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(x, y, rcond=None)[0]


def fei_controls(sc, vtype, verified, length) -> np.ndarray:
    """Observed content controls: saliency (seen in motion), video-type dummies, verified, log length."""
    n = vtype.shape[0]
    dummies = (vtype[:, None] == np.arange(1, 14)[None, :]).astype(np.float64)
    return np.column_stack([np.ones(n), sc["e_mean"], dummies, verified.astype(np.float64), np.log(length)])


def fei_diagnostics(ln_f, log_r, g_actual, z, fei_actual, controls) -> dict:
    """Naive OLS, 2SLS and the true linear slope of log impressions on ln(followers)."""
    n = ln_f.shape[0]
    if n < controls.shape[1] + 3:
        return {"fei_note": "too few videos for the regressions"}
    x = np.column_stack([ln_f, controls])
    naive = _ols(log_r, x)[0]
    true_lin = _ols(g_actual, x)[0]  # what a linear fit recovers without confounder and noise
    first = np.column_stack([z, controls])
    ln_f_hat = first @ _ols(ln_f, first)
    iv = _ols(log_r, np.column_stack([ln_f_hat, controls]))[0]
    return {
        "mean_true_fei": float(np.mean(fei_actual)),
        "true_linear_slope": float(true_lin),
        "naive_ols_slope": float(naive),
        "iv_2sls_slope": float(iv),
        "instrument_corr_log_followers": float(np.corrcoef(z, ln_f)[0, 1]),
    }
