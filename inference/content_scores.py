"""Content scores and a video's conversion rate: the PE-score route from content to sales.

LAMM's sales signal is a product-day's units summed over its 20-30 active videos; learning a
video's content quality from that through Eq. 5's mean fails on the simulated worlds
(docs/lamm.md, "Content scores"). This module takes the route of "Engagement that Sells"
(../shared/seeds): score each video by how much of its engagement falls on the product, from
per-segment detectors, and turn the scores into a conversion rate with a structural model of the
same day's sales, then hand the day model one channel:

1. **Detectors** (``fit_detectors``): ridge probes of one segment's features for product presence
   (frame), engagement saliency (motion) and speech about the product (audio), and of the
   title's tokens for "the title names the product" (the brand token's projection), trained on a small annotated set
   (per-segment labels, as an annotation team or a product detector would give them).
   **Match** (``fit_match``): whether the frames show the product the title names. Both carry the
   product's identity (the presence-weighted frame look, the brand token's embedding); no label
   says which product a video shows, but where the two agree their identity readings correlate,
   so a canonical correlation analysis of (look, brand token) over many unlabelled videos finds
   the shared identity directions, and the cosine of a video's canonical variates scores the
   match (held-out AUC 0.96 for "shows the advertised product" among named videos,
   tests/bench/match_pilot.py).
2. **Scores** (``scores``, ``SCORES``): PE = sum_s p_s e_s / sum_s e_s (the PE-score), AF = the same
   with the voice, the means of p, e, a, the title detector, title x mean presence, the match,
   title x match and title x match x mean presence.
3. **Conversion** (``fit_conversion``): units(p, t) ~ Poisson(base + lift), base = exp(a_p + g_t +
   d log_discount), lift = sum over the active videos of exp(b_p + w . scores_v) x impressions_v(t):
   organic demand plus each video converting its impressions at a rate its content sets. The same
   day's sales, no forecast, so the noise is a day's Poisson draw and nothing else; a_p, b_p per
   product, g_t per day. q_v = w . standardized scores is the video's log conversion up to b_p.
4. **Channel** (``lift_channel``): (log sum_v exp(q_v) (1 + impressions_v(t)) - CHANNEL_SHIFT) /
   CHANNEL_SCALE per product-day (0 with no active video): what the day model reads.

Numpy in, numpy out (the fit uses torch); nothing here reads the simulator's truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

SCORES = (
    "pe",
    "af",
    "p_mean",
    "e_mean",
    "a_mean",
    "names",
    "names_x_p",
    "match",
    "names_x_match",
    "names_x_match_x_p",
)
MATCH_DIM = 8  # canonical directions of the look / brand-token match
MATCH_VIDEOS = 20_000  # unlabelled named videos the match is fitted on
SEGMENT_DETECTORS = ("frame", "motion", "audio")  # -> presence, saliency, speech about the product
CHANNEL_SHIFT, CHANNEL_SCALE = 9.0, 3.0  # log-lift units to about N(0, 1) on the simulated worlds


def ridge(x: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """(F + 1,) ridge weights of y on x, the unpenalized intercept last."""
    x = np.asarray(x, dtype=np.float64)
    xa = np.column_stack([x, np.ones(len(x))])
    reg = alpha * np.eye(xa.shape[1])
    reg[-1, -1] = 0.0
    return np.linalg.solve(xa.T @ xa + reg, xa.T @ np.asarray(y, dtype=np.float64))


def _apply(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32) @ w[:-1].astype(np.float32) + np.float32(w[-1])


@dataclass
class Detectors:
    """Ridge weights (F + 1,) per detector: frame -> presence, motion -> saliency, audio -> speech
    about the product (one segment's features); title: the brand-name direction (a ridge of "names
    the product" on the summed tokens), read as the largest projection over the title's tokens and
    calibrated by ``title_cal`` (slope, intercept). The brand is one token: its projection stands
    out, where in the sum the other words drown it (held-out correlation with the label 0.94
    against 0.71 for the sum, tests/bench/pe_score.py). match_look / match_brand (F, k) and
    match_mean (2, F): the canonical directions and means of ``fit_match``."""

    frame: np.ndarray
    motion: np.ndarray
    audio: np.ndarray
    title: np.ndarray
    title_cal: np.ndarray
    match_look: np.ndarray
    match_brand: np.ndarray
    match_mean: np.ndarray

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in DETECTOR_ARRAYS}


DETECTOR_ARRAYS = (*SEGMENT_DETECTORS, "title", "title_cal", "match_look", "match_brand", "match_mean")


def title_reads(title, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) the largest projection of a title's real tokens on ``direction`` ((F + 1,) ridge
    weights, intercept unused) and (N, F) that token (the brand-name token where the title names
    the product), from one projection; 0 and zeros for a title with no token (padded tokens are
    exact zeros, schemas.dataset, and never count)."""
    t = np.asarray(title, dtype=np.float32)
    n, _, f = t.shape
    if t.shape[1] == 0:
        return np.zeros(n, np.float32), np.zeros((n, f), np.float32)
    proj = np.where(np.any(t != 0, axis=2), t @ direction[:-1].astype(np.float32), -np.inf)  # (N, T)
    best = proj.argmax(axis=1)
    top = proj[np.arange(n), best]
    return np.where(np.isfinite(top), top, 0.0).astype(np.float32), t[np.arange(n), best]


def product_look(frame, p: np.ndarray) -> np.ndarray:
    """(N, F) presence-weighted mean frame of N videos ((N, S) presence p, 0 on padding): what the
    product on screen looks like; zeros where no segment shows a product."""
    f = np.asarray(frame, dtype=np.float32)
    w = p / np.maximum(p.sum(1, keepdims=True), 1e-6)
    return np.einsum("ns,nsf->nf", w, f)


def fit_match(
    look: np.ndarray, brand: np.ndarray, k: int = MATCH_DIM, reg: float = 1e-2
) -> dict[str, np.ndarray]:
    """Canonical correlation analysis of (N, F) product looks and brand tokens of videos whose
    title names the product: the top-k canonical directions of each (``match_look``,
    ``match_brand``) and the means (``match_mean``). Covariances are ridged by ``reg`` x their
    mean eigenvalue. Unsupervised: the shared directions are the product identity, which the two
    carry alike where the frames show the named product."""
    a, b = np.asarray(look, dtype=np.float64), np.asarray(brand, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or len(a) < 2:
        raise ValueError(f"fit_match: expected two (N >= 2, F) arrays, got {a.shape} and {b.shape}")
    ma, mb = a.mean(0), b.mean(0)
    a, b = a - ma, b - mb

    def inv_sqrt(c: np.ndarray) -> np.ndarray:
        c = c + reg * max(np.trace(c) / len(c), 1e-12) * np.eye(len(c))
        w, v = np.linalg.eigh(c)
        return (v / np.sqrt(w)) @ v.T

    wa, wb = inv_sqrt(a.T @ a / len(a)), inv_sqrt(b.T @ b / len(b))
    u, _, vt = np.linalg.svd(wa @ (a.T @ b / len(a)) @ wb)
    k = min(k, a.shape[1])
    return {"match_look": wa @ u[:, :k], "match_brand": wb @ vt[:k].T, "match_mean": np.stack([ma, mb])}


def match_score(det: Detectors, look: np.ndarray, brand: np.ndarray) -> np.ndarray:
    """(N,) in [0, 1]: the cosine of a video's canonical look and brand-token variates, clipped."""
    va = (look - det.match_mean[0]).astype(np.float32) @ det.match_look.astype(np.float32)
    vb = (brand - det.match_mean[1]).astype(np.float32) @ det.match_brand.astype(np.float32)
    cos = (va * vb).sum(1) / np.sqrt((va * va).sum(1) * (vb * vb).sum(1) + 1e-9)
    return np.clip(cos, 0.0, 1.0)


def fit_detectors(
    frame,
    motion,
    audio,
    seg_mask,
    title,
    seg_labels: dict[str, np.ndarray],
    names: np.ndarray,
    alpha: float = 1.0,
) -> Detectors:
    """Detectors from N annotated videos: (N, S, F) segment features, (N, S) mask, (N, T, F) title;
    ``seg_labels`` {"frame": presence, "motion": saliency, "audio": speech} (N, S) in [0, 1];
    ``names`` (N,) 0/1."""
    m = np.asarray(seg_mask, dtype=bool)
    if m.sum() == 0:
        raise ValueError("fit_detectors: the annotated videos have no segments")
    w = {}
    for k, x in zip(SEGMENT_DETECTORS, (frame, motion, audio), strict=True):
        y = np.asarray(seg_labels[k], dtype=np.float64)
        if y.shape != m.shape:
            raise ValueError(f"fit_detectors: {k} labels {y.shape} do not match the mask {m.shape}")
        w[k] = ridge(np.asarray(x, dtype=np.float32)[m], y[m], alpha)
    names = np.asarray(names, dtype=np.float64)
    w["title"] = ridge(np.asarray(title, dtype=np.float32).sum(axis=1), names, alpha)
    top, brand = title_reads(title, w["title"])
    w["title_cal"] = ridge(top[:, None], names, 1e-6)
    # the match on the annotated videos whose title names the product (fit_content refits it on
    # many unlabelled videos: it needs no label)
    look = product_look(frame, np.clip(_apply(frame, w["frame"]), 0, 1) * m)
    named = names > 0.5 if (names > 0.5).sum() >= 2 else np.ones(len(names), bool)
    w.update(fit_match(look[named], brand[named]))
    return Detectors(**w)


def _product_reads(det: Detectors, frame, m: np.ndarray, title):
    """Presence p (N, S), "names the product" (N,), the product look and the brand token (N, F)."""
    frame = np.asarray(frame, dtype=np.float32)  # converted once: the detector and the look read it
    p = np.clip(_apply(frame, det.frame), 0, 1) * m
    top, brand = title_reads(title, det.title)
    names = np.clip(_apply(top[:, None], det.title_cal), 0, 1)
    return p, names, product_look(frame, p), brand


def scores(det: Detectors, frame, motion, audio, seg_mask, title) -> np.ndarray:
    """(N, len(SCORES)) float32 content scores of N videos' feature arrays."""
    m = np.asarray(seg_mask, dtype=np.float32)
    p, names, look, brand = _product_reads(det, frame, m, title)
    e, a = (np.clip(_apply(x, getattr(det, k)), 0, 1) * m for k, x in (("motion", motion), ("audio", audio)))
    n = np.maximum(m.sum(1), 1)
    p_mean = p.sum(1) / n
    match = match_score(det, look, brand)
    return np.column_stack(
        [
            (p * e).sum(1) / np.maximum(e.sum(1), 1e-6),
            (a * p).sum(1) / np.maximum(a.sum(1), 1e-6),
            p_mean,
            e.sum(1) / n,
            a.sum(1) / n,
            names,
            names * p_mean,
            match,
            names * match,
            names * match * p_mean,
        ]
    ).astype(np.float32)


def fit_conversion(
    units: np.ndarray,
    log_discount: np.ndarray,
    pair_product: np.ndarray,
    pair_day: np.ndarray,
    pair_video: np.ndarray,
    impressions: np.ndarray,
    phi: np.ndarray,
    *,
    steps: int = 600,
    lr: float = 0.05,
    log=None,
) -> np.ndarray:
    """(F,) weights w of q_v = w . phi_v from the same day's sales (module docstring, step 3).

    units, log_discount: (B, D) (units NaN where missing); pair_*: (Q,) the active (product row,
    day, video row) triples with that day's impressions; phi: (V, F) standardized inputs."""
    import torch

    b, d = units.shape
    slot = torch.as_tensor(np.asarray(pair_product) * d + np.asarray(pair_day))
    prod = torch.as_tensor(np.asarray(pair_product))
    pv = torch.as_tensor(np.asarray(pair_video))
    imp = torch.as_tensor(np.asarray(impressions, dtype=np.float32))
    y = torch.as_tensor(np.asarray(units, dtype=np.float32))
    ok = ~torch.isnan(y)
    y0 = torch.nan_to_num(y)
    disc = torch.as_tensor(np.asarray(log_discount, dtype=np.float32))
    phi_t = torch.as_tensor(np.asarray(phi, dtype=np.float32))
    mean_units = (y0.sum(1) / ok.sum(1).clamp(min=1)).clamp(min=0.5)
    tot_imp = torch.zeros(b * d).index_add(0, slot, imp).view(b, d).sum(1).clamp(min=1.0)
    b0 = float(torch.log(0.5 * (y0.sum(1) / tot_imp).clamp(min=1e-6)).median())
    a_p = torch.log(0.5 * mean_units).clone().requires_grad_(True)
    b_p = torch.full((b,), b0, requires_grad=True)
    g = torch.zeros(d, requires_grad=True)
    dd = torch.zeros(1, requires_grad=True)
    w = torch.zeros(phi_t.shape[1], requires_grad=True)
    opt = torch.optim.Adam([a_p, b_p, g, dd, w], lr=lr)
    for it in range(steps):
        base = torch.exp(a_p[:, None] + g[None, :] + dd * disc)
        lift = torch.zeros(b * d).index_add(0, slot, torch.exp(b_p[prod] + (phi_t @ w)[pv]) * imp).view(b, d)
        mu = (base + lift).clamp(min=1e-6)
        nll = (mu - y0 * torch.log(mu))[ok].mean()
        loss = nll + 1e-2 * ((b_p - b_p.mean()) ** 2).mean()  # b_p pulled to their mean
        opt.zero_grad()
        loss.backward()
        opt.step()
        if log is not None and it % max(steps // 6, 1) == 0:
            log(f"conversion fit {it}/{steps}: Poisson nll {float(nll.detach()):.4f}")
    return w.detach().numpy().astype(np.float64)


def lift_channel(q: np.ndarray, impressions: np.ndarray) -> float:
    """One product-day's channel from its active videos' q_v and today's impressions (0: none)."""
    q = np.asarray(q, dtype=np.float64)
    if q.size == 0:
        return 0.0
    v = q + np.log1p(np.asarray(impressions, dtype=np.float64))
    mx = float(v.max())
    return (mx + math.log(float(np.exp(v - mx).sum())) - CHANNEL_SHIFT) / CHANNEL_SCALE


@dataclass
class ContentModel:
    """Detectors, the scores' standardization and the conversion weights: q_v of any video."""

    det: Detectors
    mu: np.ndarray  # (len(SCORES),) score means / sds over the annotated videos
    sd: np.ndarray
    w: np.ndarray  # (len(SCORES),) conversion weights on the standardized scores

    def q(self, frame, motion, audio, seg_mask, title) -> np.ndarray:
        """(N,) float32 log conversion (up to the product's b_p) of N videos' feature arrays."""
        s = (scores(self.det, frame, motion, audio, seg_mask, title) - self.mu) / self.sd
        return (s @ self.w).astype(np.float32)

    def save(self, path) -> None:
        np.savez(
            path, mu=self.mu, sd=self.sd, w=self.w, **{f"det_{k}": v for k, v in self.det.to_arrays().items()}
        )

    @classmethod
    def load(cls, path) -> ContentModel:
        z = np.load(path)
        missing = [k for k in DETECTOR_ARRAYS if f"det_{k}" not in z]
        if missing:
            raise ValueError(f"{path}: content model without {missing} (an older version): retrain it")
        det = Detectors(**{k: z[f"det_{k}"] for k in DETECTOR_ARRAYS})
        return cls(det, z["mu"], z["sd"], z["w"])


def video_q(cm: ContentModel, data, videos: np.ndarray | None = None, chunk: int = 4096) -> np.ndarray:
    """(len(videos),) q_v of a LammData's videos (global indices; default all), in chunks."""
    videos = np.arange(data.n_videos) if videos is None else np.asarray(videos)
    out = np.empty(len(videos), np.float32)
    for lo in range(0, len(videos), chunk):
        rows = data.video_row[videos[lo : lo + chunk]]
        out[lo : lo + len(rows)] = cm.q(
            *(data.features[k][rows] for k in ("frame", "motion", "audio", "seg_mask", "title"))
        )
    return out


def fit_conversion_on(data, products: np.ndarray, phi: np.ndarray, **kw) -> np.ndarray:
    """``fit_conversion`` on a LammData's ``products``: their sales, discounts and active pairs;
    ``phi`` (videos of ``products`` in data's order, F) standardized scores."""
    from inference.daily import PRODUCT_FEATURES
    from inference.lamm_data import _ranges

    p = np.asarray(products)
    vids = _ranges(data.video_start, p)
    pos = np.full(data.n_products, -1)
    pos[p] = np.arange(len(p))
    loc = np.full(data.n_videos, -1)
    loc[vids] = np.arange(len(vids))
    pairs = _ranges(data.pair_start, p)
    return fit_conversion(
        data.units[p],
        data.product_x[p][..., PRODUCT_FEATURES.index("log_discount")],
        pos[data.pair_product[pairs]],
        data.pair_day[pairs],
        loc[data.pair_video[pairs]],
        data.pair_raw[pairs][:, 4],
        phi,
        **kw,
    )


def _refit_match(det: Detectors, data, vids: np.ndarray, log, max_videos: int = MATCH_VIDEOS) -> Detectors:
    """``det`` with its match refitted (``fit_match``) on up to ``max_videos`` of a LammData's
    ``vids`` (a seeded sample) whose title the detector reads as naming the product."""
    rng = np.random.default_rng(0)
    sample = np.sort(rng.permutation(vids)[: 2 * max_videos])  # about half name the product
    looks, brands = [], []
    for lo in range(0, len(sample), 4096):
        r = data.video_row[sample[lo : lo + 4096]]
        m = np.asarray(data.features["seg_mask"][r], dtype=np.float32)
        _, names, look, brand = _product_reads(det, data.features["frame"][r], m, data.features["title"][r])
        looks.append(look[names > 0.5])
        brands.append(brand[names > 0.5])
    look, brand = np.concatenate(looks)[:max_videos], np.concatenate(brands)[:max_videos]
    if len(look) < 2 * look.shape[1]:  # too few to beat the annotated videos' fit
        return det
    log(f"content scores: look / brand-token match on {len(look)} unlabelled named videos")
    return replace(det, **fit_match(look, brand))


def fit_content(data, products: np.ndarray, log=print) -> ContentModel:
    """The content model of a LammData: detectors on its annotated videos of ``products`` (the
    training products), conversion weights from those products' same-day sales."""
    from inference.lamm_data import _ranges
    from schemas.dataset import DatasetError

    if data.annotations is None:
        raise DatasetError(
            f"{data.root}: no annotations/ (schemas.dataset): content scores need per-segment labels "
            "of some videos; `liftstream simulate` writes them"
        )
    p = np.asarray(products)
    ann_video, ann_seg, ann_names = data.annotations
    mine = np.isin(data.video_product[ann_video], p)
    if mine.sum() < 50:
        raise DatasetError(
            f"only {int(mine.sum())} annotated videos among the training products (need >= 50)"
        )
    av, seg, names = ann_video[mine], ann_seg[mine], ann_names[mine]
    rows = data.video_row[av]
    feats = {
        k: np.asarray(data.features[k][rows], dtype=np.float32) for k in ("frame", "motion", "audio", "title")
    }
    mask = np.asarray(data.features["seg_mask"][rows], dtype=bool)
    labels = {k: seg[..., i] for i, k in enumerate(SEGMENT_DETECTORS)}
    det = fit_detectors(feats["frame"], feats["motion"], feats["audio"], mask, feats["title"], labels, names)
    log(f"content scores: detectors on {len(av)} annotated videos")
    vids = _ranges(data.video_start, p)
    det = _refit_match(det, data, vids, log)
    s_ann = scores(det, feats["frame"], feats["motion"], feats["audio"], mask, feats["title"])
    mu, sd = s_ann.mean(0).astype(np.float64), s_ann.std(0).astype(np.float64) + 1e-6
    phi = np.empty((len(vids), len(SCORES)), np.float32)
    for lo in range(0, len(vids), 4096):
        r = data.video_row[vids[lo : lo + 4096]]
        s = scores(det, *(data.features[k][r] for k in ("frame", "motion", "audio", "seg_mask", "title")))
        phi[lo : lo + len(r)] = (s - mu) / sd
    w = fit_conversion_on(data, p, phi, log=log)
    log(
        "content scores: conversion weights "
        + ", ".join(f"{k} {v:+.3f}" for k, v in zip(SCORES, w, strict=True))
    )
    return ContentModel(det, mu, sd, w)
