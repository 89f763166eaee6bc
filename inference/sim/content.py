"""Content latents of a video and what they do: the cross-modal quality and the FEI curve.

``segment_latents`` draws the per-segment latents (product on screen, engagement saliency,
voice about the product) and the video-level ones (title names the product, the shown product
is the advertised one); ``content_scores`` / ``quality`` turn them into the log conversion
(units per impression) that drives the sales lift; ``content_effect`` and ``curve_params`` give
the log impressions' intercept and the true FEI curve. world.py draws, diagnostics.py re-draws
single latents for the modality ablation; both go through these functions.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit, ndtri

from inference.sim import physics as PH
from inference.sim import truth as T
from schemas import limits as L

# weights of the content-quality terms (log conversion); tuned so that the modality ablation
# orders frame > text > motion > audio (truth/modality_importance.json measures it)
W_PE, W_TP, W_AF = 1.6, 2.0, 1.2


def ar1(rng: np.random.Generator, n: int, s: int, rho: float) -> np.ndarray:
    """(n, s) stationary unit-variance AR(1) along segments (smooth in time)."""
    out = np.empty((n, s), dtype=np.float64)
    eps = rng.standard_normal((n, s))
    out[:, 0] = eps[:, 0]
    k = math.sqrt(1 - rho * rho)
    for j in range(1, s):
        out[:, j] = rho * out[:, j - 1] + k * eps[:, j]
    return out


def masked_mean(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return (x * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1)


def segment_latents(
    rng: np.random.Generator, n_segments: np.ndarray, align_mean: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Per-segment content latents of N videos (all (N, S) in [0, 1], zero past n_segments).

    p: product on screen; e: engagement saliency (early segments draw more attention, and the
    video-level ``align`` decides whether the engaging moments are the product ones: positive
    for product-centred videos, negative for self-promotion; ``align_mean`` (N,) is the creator's
    habit, default 0.2 for all); a: the voice talks about the product (``audio_align`` ties it
    to p); title_names_product: the title says the product name; shows_advertised: the product
    on screen is the advertised one (else the creator shows something else, e.g. their own stuff).
    """
    n, s = n_segments.shape[0], L.MAX_SEGMENTS
    mask = np.arange(s)[None, :] < n_segments[:, None]  # (N, S)
    share = rng.beta(6.0, 6.0, n)  # share of the video with the product on screen
    p = expit(3.0 * (ar1(rng, n, s, 0.3) + ndtri(share)[:, None]))
    p_dev = p - masked_mean(p, mask)[:, None]  # (N, S) on-screen now vs the video's average
    # total spread ~3 either way: creator habit (std 1.8) + this video (std 2.4)
    align = rng.normal(0.2, 3.0, n) if align_mean is None else align_mean + rng.normal(0.0, 2.4, n)
    attention = 0.8 * np.exp(-np.arange(s) / 2.0)  # the first ~6 seconds
    e = expit(
        rng.normal(-1.0, 0.6, n)[:, None]
        + attention[None, :]
        + 6.0 * align[:, None] * p_dev
        + 0.6 * ar1(rng, n, s, 0.5)
    )
    audio_align = rng.normal(0.5, 1.5, n)
    a = expit(
        rng.normal(-0.5, 0.7, n)[:, None] + 4.0 * audio_align[:, None] * p_dev + 0.7 * ar1(rng, n, s, 0.6)
    )
    return {
        "p": p * mask,
        "e": e * mask,
        "a": a * mask,
        "title_names_product": rng.random(n) < 0.55,
        "shows_advertised": rng.random(n) < 0.75,
        "align": align,
        "audio_align": audio_align,
        "music": rng.beta(2.0, 2.0, n),
    }


def content_scores(lat: dict[str, np.ndarray], n_segments: np.ndarray) -> dict[str, np.ndarray]:
    """Video-level content scores from segment latents (N,).

    pe: engagement-weighted product presence sum_s p_s e_s / sum_s e_s (the PE-score: how much
    of the engagement falls on the product); af: the same with the voice (sum a_s p_s / sum a_s);
    tp: the title names the advertised product and the frames show that same product, x its
    screen time (a title-to-frame match of identities). Mean-pooled p and e alone miss pe's
    per-segment alignment, and a concatenation of pooled title and frame cannot compare them.
    """
    mask = np.arange(L.MAX_SEGMENTS)[None, :] < n_segments[:, None]
    p, e, a = lat["p"], lat["e"], lat["a"]
    p_mean = masked_mean(p, mask)
    return {
        "pe": (p * e).sum(axis=1) / np.maximum(e.sum(axis=1), 1e-6),
        "af": (a * p).sum(axis=1) / np.maximum(a.sum(axis=1), 1e-6),
        "tp": lat["title_names_product"] * lat["shows_advertised"] * p_mean,
        "p_mean": p_mean,
        "e_mean": masked_mean(e, mask),
        "a_mean": masked_mean(a, mask),
    }


def quality(sc: dict[str, np.ndarray], scale: float = 1.0) -> np.ndarray:
    """Log conversion (sales per impression) from content, up to a constant; ``scale``
    (``SimConfig.quality_scale``) multiplies the three weights."""
    return scale * (W_PE * sc["pe"] + W_TP * sc["tp"] + W_AF * sc["af"])


def content_effect(
    sc: dict[str, np.ndarray], video_type: np.ndarray, verified: np.ndarray, length_s: np.ndarray
) -> np.ndarray:
    """Effect of content and post statistics on log impressions (independent of followers)."""
    return (
        1.2 * (sc["e_mean"] - 0.45)
        + PH.TYPE_IMPRESSION_EFFECT[video_type]
        + 0.15 * verified
        - 0.12 * np.log(length_s / 15.0)
    )


def curve_params(style: np.ndarray, intensity: np.ndarray, intercept: np.ndarray) -> dict[str, np.ndarray]:
    """True FEI curve parameters per video (see inference.sim.truth) from style and intensity."""
    n = style.shape[0]
    k = intensity
    ln10 = math.log(10)
    s_curve, lin = style == 0, style == 1  # else concave
    # tier averages land near the FEI paper's Table 4: S-shaped ~0.1 / 0.5 / 0.6 / 0.2 / 0.1 / 0.04
    # (sub-nano .. mega), linear ~0.26 throughout, concave ~0.45 falling to 0.04
    floor = np.where(s_curve, 0.04, np.where(lin, 0.16 + 0.2 * k, 0.03))
    amp = np.where(s_curve, 0.45 + 0.45 * k, np.where(lin, 0.0, 0.45 + 0.3 * k))
    mu = np.where(s_curve, (3.6 + 0.9 * k) * ln10, np.where(lin, T.L_REF, (2.8 + 1.0 * (1 - k)) * ln10))
    w = np.where(s_curve, 1.7, np.where(lin, 1.0, 2.2))
    curve = np.array([T.CURVE_CODES[c] for c in PH.CURVES])[style]
    out = {
        "curve": curve.astype(np.int8),
        "intercept": intercept,
        "floor": floor,
        "amp": amp,
        "mu": mu,
        "w": w,
    }
    assert all(v.shape == (n,) for v in out.values())
    return out
