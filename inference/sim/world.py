"""Generate a synthetic influencer short-video ad (ISA) world with known ground truth.

The generative story (docs/simulator.md has the long version):

1. Products: category, list price, rating, a demand random effect, a video rate (LAMM Table 1).
2. Influencers: past average hearts z (the instrument) and a hidden cross-posting habit u (the
   confounder) both drive ln(followers); u also raises impressions, z does not (FEI paper).
3. Videos: ~3 per product-day (Poisson-gamma, weekly pattern), each by an influencer, with a
   video type (the influencer's niche or one that fits the product), a content style (special
   effects / self-expression / product demo -> S-shaped / linear / concave impressions curve)
   and per segment latents: product on screen p_s, engagement saliency e_s, voice about the
   product a_s; the title may name the product, the screen may show another product.
4. Content quality (sales per impression) is cross-modal and per segment:
   PE = sum_s p_s e_s / sum_s e_s (product x engagement, the PE-score idea), the title names the
   product that is on screen (an identity match across modalities) x mean p, and the voice talks
   about what is on screen. Mean-pooled features miss the alignment and cannot compare identities.
5. Two-week log impressions = g(ln F; content) + b_u u + noise, g known (inference.sim.truth);
   split over 14 days with a style-dependent decay; likes / comments / shares / collects are
   binomial draws from the day's impressions with content-dependent rates.
6. Daily sales = base demand (category, price, rating, weekday, promotions, product effect) +
   sum over active videos of conversion x that day's impressions, drawn as gamma-Poisson counts.
   Two scale constants are calibrated so the mean is ~59 units/day with ``lift_share`` from ads.
7. Features (frame / motion / audio per 3.2 s segment, title tokens; 128-d) are the latents seen
   through fixed directions (inference.sim.physics) plus clutter and noise, stored as float16.

``simulate(config_or_preset, seed)`` returns a ``World``; ``World.write_dataset(path)`` writes the
schemas.dataset format plus truth/. Everything is vectorised numpy; features are made in chunks.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from scipy.special import expit

from inference.sim import physics as PH
from inference.sim import truth as T
from inference.sim.content import (
    W_AF,
    W_PE,
    W_TP,
    content_effect,
    content_scores,
    curve_params,
    quality,
    segment_latents,
)
from inference.sim.diagnostics import fei_controls, fei_diagnostics, modality_importance
from inference.sim.export import write_dataset
from inference.sim.features import synthesize
from schemas import limits as L
from schemas.dataset import TABLES


@dataclass
class SimConfig:
    """Size, seed and the knobs of the generative story; ``dataclasses.replace`` to scale a preset."""

    name: str = "custom"
    n_products: int = 12
    n_days: int = 14
    start_date: str = "2026-01-01"
    seed: int = 0
    features: bool = True  # False: tables and truth only (fast), feature arrays all zero
    history_days: int | None = None  # days meant as training history (written to meta.json)
    # volume (LAMM Table 1: ~3 new videos per product-day, up to 52; 77,708 videos by 33,877 creators)
    videos_per_product_day: float = 3.0
    max_videos_per_product_day: int = 52
    influencers_per_video: float = 33_877 / 77_708
    # sales (Table 1: 58.9 units/day on average) and the share of it that the active videos cause
    mean_daily_sales: float = 58.9
    lift_share: float = 0.35
    # how much content moves sales: multiplies the quality weights (content.W_PE, W_TP, W_AF).
    # 1 is the calibrated world; with lift_share it makes worlds where content matters more
    # (docs/lamm.md, "What content can be worth")
    quality_scale: float = 1.0
    sales_dispersion: float = 6.0  # gamma-Poisson shape: smaller is more over-dispersed
    # popularity (FEI paper): ln F = F_MEAN + instrument * z + confounder_followers * u + noise
    instrument_strength: float = 1.5
    confounder_followers: float = 0.9
    confounder_impressions: float = 0.7
    impression_noise: float = 0.55
    impressions_at_10k: float = 7100.0  # median two-week impressions of an average video at 10k followers
    # videos whose segments come with labels in annotations/ (schemas.dataset; drawn with their
    # own seed at write time, so the world itself does not depend on it)
    annotated_videos: int = 2000
    chunk_videos: int = 4096  # feature synthesis batch (memory ~ 4 x chunk x 10 KB)

    def __post_init__(self) -> None:
        if self.n_products < 1 or self.n_days < 1:
            raise ValueError(f"need n_products >= 1 and n_days >= 1, got {self.n_products}, {self.n_days}")
        if not 0.0 <= self.lift_share < 1.0:
            raise ValueError(f"lift_share must be in [0, 1), got {self.lift_share}")
        if self.annotated_videos < 0:
            raise ValueError(f"annotated_videos must be >= 0, got {self.annotated_videos}")
        if not 0.0 <= self.quality_scale <= 10.0:
            raise ValueError(f"quality_scale must be in [0, 10], got {self.quality_scale}")
        date.fromisoformat(self.start_date)  # raises ValueError on a bad date


PRESETS: dict[str, SimConfig] = {
    "tiny": SimConfig(name="tiny", n_products=12, n_days=14, history_days=10),
    "small": SimConfig(name="small", n_products=150, n_days=28, history_days=21),
    "paper": SimConfig(
        name="paper", n_products=1809, n_days=14, history_days=11, videos_per_product_day=3.07
    ),
}


# Bump whenever the world that a preset and seed produce changes (generation code or constants):
# written to meta.json as "simulator_version", and folders of another version are stale
# (inference.sim.stale_world says why; the embedded run and the benchmarks regenerate their own).
SIM_VERSION = "3"  # 3: annotations/ (a sample of videos with per-segment labels)

F_MEAN = 9.2  # mean ln(followers) ~ 10k
LN_F_MIN, LN_F_MAX = math.log(65), math.log(2.5e7)  # Table 1's follower range


@dataclass
class World:
    """A generated world: the five contract tables, the feature arrays and the ground truth."""

    config: SimConfig
    tables: dict[str, pa.Table]  # products, influencers, videos, engagement, sales (schemas.dataset)
    features: dict[str, np.ndarray]  # schemas.dataset.FEATURES, row i = video i
    truth: dict[str, Any]  # name -> pa.Table | np.ndarray | dict (json); see docs/simulator.md
    meta: dict = field(default_factory=dict)

    @property
    def n_videos(self) -> int:
        return self.tables["videos"].num_rows

    def write_dataset(self, path: str | Path, progress: bool = False) -> Path:
        """Write the schemas.dataset folder plus truth/ (see inference.sim.export)."""
        return write_dataset(self, path, progress=progress)


# ---------------------------------------------------------------------------------------------
# helpers


def _choice_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of probs (N, K) -> (N,) int."""
    cdf = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    u = rng.random(probs.shape[0])[:, None]
    return np.minimum((u > cdf).sum(axis=1), probs.shape[1] - 1)


# ---------------------------------------------------------------------------------------------
# the world


def simulate(config: SimConfig | str = "tiny", seed: int | None = None, progress: bool = False) -> World:
    """Generate a world. ``config`` is a SimConfig or a PRESETS name; ``seed`` overrides config.seed."""
    if isinstance(config, str):
        if config not in PRESETS:
            raise KeyError(f"unknown preset {config!r}; choose from {sorted(PRESETS)}")
        config = PRESETS[config]
    if seed is not None:
        config = dataclasses.replace(config, seed=int(seed))
    cfg = config
    streams = np.random.SeedSequence(cfg.seed).spawn(10)
    rng = {
        name: np.random.default_rng(s)
        for name, s in zip(
            (
                "products",
                "counts",
                "influencers",
                "videos",
                "latents",
                "impressions",
                "engagement",
                "sales",
                "features",
                "ablation",
            ),
            streams,
            strict=True,
        )
    }
    P, D = cfg.n_products, cfg.n_days
    start = date.fromisoformat(cfg.start_date)

    # 1. products ------------------------------------------------------------------------------
    r = rng["products"]
    cat = r.choice(len(L.PRODUCT_CATEGORIES), P, p=PH.CATEGORY_COUNTS / PH.CATEGORY_COUNTS.sum())
    price = np.clip(np.exp(np.log(PH.CATEGORY_PRICE[cat]) + r.normal(0, 0.75, P)), 3.7, 3499.0).round(1)
    rating = (71.4 + 28.6 * r.beta(3.0, 1.7, P)).round(1)
    demand_re = r.normal(0, 0.8, P)
    log_base = PH.CATEGORY_DEMAND[cat] - 0.45 * np.log(price / 60) + 0.9 * (rating - 89) / 29 + demand_re
    rate_raw = np.exp(0.5 * demand_re + r.normal(0, 0.55, P))
    video_rate = cfg.videos_per_product_day * rate_raw / rate_raw.mean()
    history_days = r.uniform(30, 180, P)
    brand = PH.brand_names(r, P)
    noun = np.array([r.choice(ids) for ids in (PH.geometry().category_word_ids[c] for c in cat)])
    product_latent = r.standard_normal((P, PH.PRODUCT_LATENT_DIM))

    # 2. video counts per product-day ----------------------------------------------------------
    r = rng["counts"]
    weekday = PH.WEEKDAY[
        (start.weekday() + np.arange(D)) % 7
    ]  # creators post (and buyers buy) more late in the week
    lam = video_rate[:, None] * weekday[None, :] * r.gamma(5.0, 1 / 5.0, (P, D))
    counts = np.minimum(r.poisson(lam), cfg.max_videos_per_product_day)  # (P, D)
    n_videos = int(counts.sum())
    v_product = np.repeat(np.repeat(np.arange(P), D), counts.ravel())
    v_day = np.repeat(np.tile(np.arange(D), P), counts.ravel())

    # 3. influencers ---------------------------------------------------------------------------
    r = rng["influencers"]
    n_inf = max(1, min(n_videos, round(n_videos * cfg.influencers_per_video))) if n_videos else 0
    z = r.standard_normal(n_inf)  # the instrument, standardised
    u = r.standard_normal(n_inf)  # the hidden confounder (cross-posting)
    ln_f0 = np.clip(
        F_MEAN + cfg.instrument_strength * z + cfg.confounder_followers * u + r.normal(0, 1.0, n_inf),
        LN_F_MIN,
        LN_F_MAX,
    )
    hearts = np.exp(3.3 + 1.3 * z).round(1)
    growth = r.normal(0.002, 0.002, n_inf)  # ln followers per day
    verified = r.random(n_inf) < expit(-3.5 + 0.9 * (ln_f0 - F_MEAN))
    city = r.choice(len(L.CITY_TIERS), n_inf, p=PH.CITY_COUNTS / PH.CITY_COUNTS.sum())
    age = np.clip(r.normal(29.7, 7.5, n_inf), 16, 70).round().astype(np.int32)
    odd = r.random(n_inf) < 0.01
    age[odd] = r.integers(1, 100, odd.sum())
    niche = r.choice(len(L.VIDEO_TYPES), n_inf, p=PH.VIDEO_TYPE_COUNTS / PH.VIDEO_TYPE_COUNTS.sum())
    activity = np.exp(r.normal(0, 1.0, n_inf))
    align_habit = 0.2 + r.normal(0, 1.8, n_inf)  # product-centred vs self-promoting creators (PE-score paper)

    # 4. videos: who, when, what ----------------------------------------------------------------
    r = rng["videos"]
    hour = r.choice(24, n_videos, p=PH.HOUR_P)
    order = np.lexsort((r.random(n_videos), hour, v_day))  # publish order = video index
    v_product, v_day, hour = v_product[order], v_day[order], hour[order]
    infl = np.empty(n_videos, dtype=np.int64)
    first = r.permutation(n_videos)[:n_inf]  # every influencer posts at least once
    rest = np.ones(n_videos, bool)
    rest[first] = False
    infl[first] = np.arange(n_inf)
    infl[rest] = r.choice(n_inf, int(rest.sum()), p=activity / activity.sum()) if n_inf else 0
    ln_f = np.clip(ln_f0[infl] + growth[infl] * v_day, LN_F_MIN, LN_F_MAX)  # at publish
    followers = np.maximum(np.exp(ln_f).round(), 1).astype(np.int64)
    ln_f = np.log(followers)
    v_cat = cat[v_product]
    fit = PH.VIDEO_TYPE_COUNTS[None, :] * PH.CATEGORY_TYPE_AFFINITY[v_cat]
    vtype = np.where(r.random(n_videos) < 0.6, niche[infl], _choice_rows(r, fit))
    style = _choice_rows(r, PH.STYLE_GIVEN_TYPE[vtype])
    intensity = r.beta(2.0, 2.0, n_videos)
    long = r.random(n_videos) < 0.025
    length = np.where(long, 64.0 * (1 + r.pareto(2.5, n_videos)), np.exp(r.normal(2.55, 0.55, n_videos)))
    length = np.clip(length, 2.5, 865.0).round(1)
    n_seg = np.clip(np.ceil(length / L.SEGMENT_SECONDS), 1, L.MAX_SEGMENTS).astype(np.int32)
    res = r.choice(len(PH.RESOLUTIONS), n_videos, p=PH.RESOLUTION_P)
    width, height = PH.RESOLUTIONS[res, 0].astype(np.int32), PH.RESOLUTIONS[res, 1].astype(np.int32)
    size_mb = (length * 0.28 * (width * height / (1080 * 1920)) * np.exp(r.normal(0, 0.3, n_videos))).round(2)

    # 5. content latents and scores --------------------------------------------------------------
    lat = segment_latents(rng["latents"], n_seg, align_habit[infl])
    sc = content_scores(lat, n_seg)
    q = quality(sc, cfg.quality_scale)
    v_verified = verified[infl]
    ce = content_effect(sc, vtype, v_verified, length)
    intercept = math.log(cfg.impressions_at_10k) + ce
    params = curve_params(style, intensity, intercept)

    # 6. impressions (FEI) and daily engagement ----------------------------------------------------
    r = rng["impressions"]
    g_actual = T.true_log_impressions(ln_f, params)
    eps = r.normal(0, cfg.impression_noise, n_videos)
    v_u = u[infl]
    log_r = g_actual + cfg.confounder_impressions * v_u + eps
    imp14 = np.floor(np.exp(log_r)).astype(np.int64)
    decay = PH.STYLE_DECAY_DAYS[style] * np.exp(r.normal(0, 0.25, n_videos))
    ages = np.arange(L.WINDOW_DAYS)
    wts = np.exp(-ages[None, :] / decay[:, None])
    wts[:, 0] *= 0.35 + 0.65 * (24 - hour) / 24  # a video posted late gets less of its first day
    wts /= wts.sum(axis=1, keepdims=True)
    imp_daily = r.multinomial(imp14, wts) if n_videos else np.zeros((0, L.WINDOW_DAYS), np.int64)  # (N, 14)

    r = rng["engagement"]

    def rate(base, logit_shift, sd):  # noqa: E306
        return np.clip(base * np.exp(logit_shift + r.normal(0, sd, n_videos)), 0, 0.5)

    like_rate = rate(0.0207, 1.5 * (sc["e_mean"] - 0.45) + 0.8 * (lat["music"] - 0.5), 0.35)
    comment_rate = rate(0.0026, 1.0 * (sc["e_mean"] - 0.45) + 1.0 * (sc["a_mean"] - 0.4), 0.4)
    share_rate = rate(0.0024, 1.2 * (sc["e_mean"] - 0.45) + 0.3 * (style == 0), 0.4)
    collect_rate = rate(0.0031, 1.5 * (sc["pe"] - 0.5), 0.4)
    day_of = v_day[:, None] + ages[None, :]  # (N, 14)
    in_window = day_of < D
    eng = {
        name: r.binomial(imp_daily, rt[:, None])
        for name, rt in (
            ("likes", like_rate),
            ("comments", comment_rate),
            ("shares", share_rate),
            ("collects", collect_rate),
        )
    }

    # 7. sales ----------------------------------------------------------------------------------
    r = rng["sales"]
    log_conv = q + PH.CATEGORY_CONVERSION[v_cat] - 0.5 * np.log(price[v_product] / 60)
    raw_lift = np.exp(log_conv)[:, None] * imp_daily * in_window  # (N, 14) with conversion scale 1
    discount = r.choice(np.array([1.0, 0.9, 0.8]), (P, D), p=[0.85, 0.1, 0.05])
    raw_base = np.exp(log_base)[:, None] * weekday[None, :] * discount**-1.5  # (P, D)
    target = cfg.mean_daily_sales * P * D
    base_scale = (1 - cfg.lift_share) * target / raw_base.sum()
    conv_scale = cfg.lift_share * target / raw_lift.sum() if raw_lift.sum() > 0 else 0.0
    base = base_scale * raw_base
    lift_vd = conv_scale * raw_lift  # (N, 14) expected units caused by video v at age a
    lift_pd = np.zeros((P, D))
    np.add.at(
        lift_pd,
        (np.repeat(v_product, L.WINDOW_DAYS)[in_window.ravel()], day_of[in_window]),
        lift_vd[in_window],
    )
    expected = base + lift_pd
    units = r.poisson(expected * r.gamma(cfg.sales_dispersion, 1 / cfg.sales_dispersion, (P, D)))
    day_price = (price[:, None] * discount).round(1)
    day_rating = np.clip(rating[:, None] + r.normal(0, 0.15, (P, D)), 0, 100).round(1)
    history_sales = np.maximum(
        np.round(base_scale * np.exp(log_base) * history_days * np.exp(r.normal(0, 0.3, P))), 16
    )
    history_videos = np.maximum(np.round(video_rate * history_days * 0.43 * np.exp(r.normal(0, 0.3, P))), 2)

    # 8. titles (strings; the embeddings are made with the features) --------------------------------
    tok, title = _titles(
        rng["videos"],
        n_seg.shape[0],
        v_cat,
        style,
        intensity,
        lat["title_names_product"],
        noun[v_product],
        [brand[i] for i in v_product],
    )

    # 9. tables ------------------------------------------------------------------------------------
    product_ids = np.array([f"p{i:05d}" for i in range(P)], dtype=object)
    infl_ids = np.array([f"i{i:06d}" for i in range(n_inf)], dtype=object)
    video_ids = np.array([f"v{i:07d}" for i in range(n_videos)], dtype=object)
    vid_arr = pa.array(video_ids, pa.string())
    pid_arr = pa.array(product_ids, pa.string())
    tables = {
        "products": pa.table(
            {
                "product_id": pid_arr,
                "category": pa.array(np.array(L.PRODUCT_CATEGORIES)[cat], pa.string()),
                "price": price,
                "rating": rating,
                "history_sales": history_sales.astype(np.int64),
                "history_videos": history_videos.astype(np.int64),
            }
        ),
        "influencers": pa.table(
            {
                "influencer_id": pa.array(infl_ids, pa.string()),
                "followers": np.maximum(np.exp(ln_f0).round(), 1).astype(np.int64),
                "past_avg_hearts": hearts,
                "verified": verified,
                "city_tier": pa.array(np.array(L.CITY_TIERS)[city], pa.string()),
                "age": age,
            }
        ),
        "videos": pa.table(
            {
                "video_id": vid_arr,
                "product_id": pid_arr.take(pa.array(v_product)),
                "influencer_id": pa.array(infl_ids[infl], pa.string()),
                "publish_day": v_day.astype(np.int32),
                "create_hour": hour.astype(np.int32),
                "video_type": pa.array(np.array(L.VIDEO_TYPES)[vtype], pa.string()),
                "length_s": length,
                "width": width,
                "height": height,
                "size_mb": size_mb,
                "title": pa.array(title, pa.string()),
                "followers": followers,
                "past_avg_hearts": hearts[infl],
                "n_segments": n_seg,
                "feature_row": np.arange(n_videos, dtype=np.int64),
                "impressions_14d": imp14,
            }
        ),
    }
    ev, ea = np.nonzero(in_window)  # engagement rows, in (video, age) order
    tables["engagement"] = pa.table(
        {
            "video_id": vid_arr.take(pa.array(ev)),
            "product_id": pid_arr.take(pa.array(v_product[ev])),
            "day": day_of[ev, ea].astype(np.int32),
            **{k: eng[k][ev, ea].astype(np.int64) for k in ("likes", "comments", "shares", "collects")},
            "impressions": imp_daily[ev, ea].astype(np.int64),
        }
    )
    sp, sd = np.divmod(np.arange(P * D), D)
    tables["sales"] = pa.table(
        {
            "product_id": pid_arr.take(pa.array(sp)),
            "day": sd.astype(np.int32),
            "units": units.ravel().astype(np.int64),
            "price": day_price.ravel(),
            "rating": day_rating.ravel(),
        }
    )
    tables = {k: t.cast(TABLES[k]) for k, t in tables.items()}

    # 10. features ---------------------------------------------------------------------------------
    decoy = rng["latents"].standard_normal(
        (n_videos, PH.PRODUCT_LATENT_DIM)
    )  # what is shown if not the product
    shown = np.where(lat["shows_advertised"][:, None], product_latent[v_product], decoy)
    content = {
        "style": style,
        "intensity": intensity,
        "video_type": vtype,
        "frame_product_latent": shown,
        "title_product_latent": product_latent[v_product],
        "tokens": tok,
        **lat,
    }
    features = synthesize(
        rng["features"], n_seg, content, chunk=cfg.chunk_videos, enabled=cfg.features, progress=progress
    )

    # 11. truth ------------------------------------------------------------------------------------
    fei_actual = T.true_fei(ln_f, params)
    lift_total = lift_vd.sum(axis=1)
    lift_14d = conv_scale * np.exp(log_conv) * imp14  # as if the whole two weeks were observed
    truth_videos = pa.table(
        {
            "video_id": vid_arr,
            "product_id": pid_arr.take(pa.array(v_product)),
            "feature_row": np.arange(n_videos),
            "style": pa.array(np.array(PH.STYLES)[style], pa.string()),
            "curve_shape": pa.array(np.array(PH.CURVES)[style], pa.string()),
            **{k: v for k, v in params.items()},
            "intensity": intensity,
            "confounder_u": v_u,
            "impression_noise": eps,
            "log_followers": ln_f,
            "g_actual": g_actual,
            "fei_actual": fei_actual,
            "decay_days": decay,
            "quality": q,
            "quality_pe": cfg.quality_scale * W_PE * sc["pe"],
            "quality_tp": cfg.quality_scale * W_TP * sc["tp"],
            "quality_af": cfg.quality_scale * W_AF * sc["af"],
            "log_conversion": log_conv + math.log(conv_scale) if conv_scale > 0 else log_conv,
            **{k: v for k, v in sc.items()},
            "title_names_product": lat["title_names_product"],
            "shows_advertised": lat["shows_advertised"],
            "align": lat["align"],
            "audio_align": lat["audio_align"],
            "music": lat["music"],
            "lift_in_window": lift_total,
            "lift_14d": lift_14d,
        }
    )
    vv, aa = np.nonzero(in_window)
    truth_lift = pa.table(
        {
            "video_id": vid_arr.take(pa.array(vv)),
            "product_id": pid_arr.take(pa.array(v_product[vv])),
            "day": day_of[vv, aa].astype(np.int32),
            "age": aa.astype(np.int32),
            "lift": lift_vd[vv, aa],
            "impressions": imp_daily[vv, aa],
        }
    )
    truth_sales = pa.table(
        {
            "product_id": pid_arr.take(pa.array(sp)),
            "day": sd.astype(np.int32),
            "base": base.ravel(),
            "lift": lift_pd.ravel(),
            "expected_units": expected.ravel(),
            "discount": discount.ravel(),
            "units": units.ravel(),
        }
    )
    truth_products = pa.table(
        {
            "product_id": pid_arr,
            "base_demand": base.mean(axis=1),
            "demand_effect": demand_re,
            "video_rate": video_rate,
            "brand": pa.array(brand, pa.string()),
            "noun": pa.array(np.array(PH.geometry().vocab)[noun], pa.string()),
        }
    )
    truth_infl = pa.table(
        {
            "influencer_id": pa.array(infl_ids, pa.string()),
            "instrument_z": z,
            "confounder_u": u,
            "log_followers_start": ln_f0,
            "growth_per_day": growth,
            "align_habit": align_habit,
        }
    )
    grid = T.GRID
    fei_g = (
        T.true_log_impressions(grid, params).astype(np.float32)
        if n_videos
        else np.zeros((0, grid.size), np.float32)
    )
    fei_slope = (
        T.true_fei(grid, params).astype(np.float32) if n_videos else np.zeros((0, grid.size), np.float32)
    )
    importance = modality_importance(
        rng["ablation"],
        lat,
        n_seg,
        align_habit[infl],
        vtype,
        v_verified,
        length,
        q,
        log_conv,
        log_r,
        quality_scale=cfg.quality_scale,
    )
    truth = {
        "videos": truth_videos,
        "video_lift": truth_lift,
        "sales": truth_sales,
        "products": truth_products,
        "influencers": truth_infl,
        "fei_grid": grid,
        "fei_g": fei_g,
        "fei_slope": fei_slope,
        "seg_product": lat["p"].astype(np.float16),
        "seg_saliency": lat["e"].astype(np.float16),
        "seg_speech": lat["a"].astype(np.float16),
        "modality_importance": importance,
        "meta": {
            "config": dataclasses.asdict(cfg),
            "conversion_scale": conv_scale,
            "base_scale": base_scale,
            "realized_lift_share": float(lift_pd.sum() / max(expected.sum(), 1e-9)),
            "quality_weights": {
                k: cfg.quality_scale * w for k, w in (("pe", W_PE), ("tp", W_TP), ("af", W_AF))
            },
            **fei_diagnostics(
                ln_f, log_r, g_actual, z[infl], fei_actual, fei_controls(sc, vtype, v_verified, length)
            ),
        },
    }
    meta = {
        "simulator": "inference.sim",
        "simulator_version": SIM_VERSION,
        "preset": cfg.name,
        "seed": cfg.seed,
    }
    if cfg.history_days is not None:
        meta["history_days"] = min(cfg.history_days, D)
    return World(config=cfg, tables=tables, features=features, truth=truth, meta=meta)


def _titles(rng, n, v_cat, style, intensity, names_product, v_noun, v_brand):
    """Token ids (N, MAX_TITLE_TOKENS) (-1 pad, -2 = the product's brand word) and title strings."""
    g = PH.geometry()
    tmax = L.MAX_TITLE_TOKENS
    n_tok = rng.integers(4, 15, n)
    cat_tab = np.stack(g.category_word_ids)  # (13, 10)
    sty_tab = np.stack(g.style_word_ids)  # (3, 9)
    kind = rng.random((n, tmax))
    p_style = (0.1 + 0.3 * intensity)[:, None]
    tok = np.where(
        kind < 0.35,
        cat_tab[v_cat[:, None], rng.integers(0, cat_tab.shape[1], (n, tmax))],
        np.where(
            kind < 0.35 + p_style,
            sty_tab[style[:, None], rng.integers(0, sty_tab.shape[1], (n, tmax))],
            g.filler_word_ids[rng.integers(0, g.filler_word_ids.size, (n, tmax))],
        ),
    )
    pos = (rng.random(n) * (n_tok - 1)).astype(np.int64)
    rows = np.nonzero(names_product)[0]
    tok[rows, pos[rows]] = -2
    tok[rows, pos[rows] + 1] = v_noun[rows]
    tok[np.arange(tmax)[None, :] >= n_tok[:, None]] = -1
    vocab = np.array(g.vocab + ("",), dtype=object)
    words = vocab[np.where(tok == -2, len(vocab) - 1, tok)]
    words[tok == -2] = np.asarray(v_brand, dtype=object)[np.nonzero(tok == -2)[0]]
    title = [" ".join(w[:k]) for w, k in zip(words, n_tok, strict=True)]
    return tok, title
