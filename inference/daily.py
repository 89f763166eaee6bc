"""Per-product, per-day forecaster input: how active videos become one vector (LAMM Eq. 4-5).

The same arithmetic runs in three places and must agree: the pure stream state (numpy, one
product at a time), the embedded runner (numpy, batched) and training (torch, whole sequences).
``day_input`` is the numpy reference; training code builds the identical vector.

For day t and product p with active videos v = 1..k (published on or before t, less than
``WINDOW_DAYS`` old):

    x_t = concat( mean_v [h_v, side(m_vt)],   # Eq. 4-5: mean over active videos
                  product(p, t) )             # product side input (price, rating, units, counts)

``side`` is log1p of the video's latest daily engagement, its age and its creator's followers.
``product`` is documented in ``PRODUCT_FEATURES``; the LAMM paper uses video information only,
we add the product's own sales and metadata as side input (said in the model card), plus
log1p SUMS over the active videos of today's engagement counts (the mean above hides the
scale: lift is a sum over videos), the product's trailing units (log1p units of the previous
one and two days, mean log1p units over the last 3 and 7 days, today included: its sales level,
see ``trailing_units``), today's weekday one-hot (Monday = 0, ``date.weekday()``) and the
product's history before the campaign (log1p history sales and videos and a known flag, from
``VideoPublished.product``: the stream knows them from the product's first video on, and
training uses the same rule), and the campaign columns (``CAMPAIGN_FEATURES``: the units of six
days before, the product's day and discount since its first sales day, today's followers and
new videos' impressions, yesterday's active videos and impressions, the category one-hot), the
aggregates a tabular forecaster reads; the GBM head (``inference.gbm_head``) reads x without
the video encodings.
Everything here is computable from the input events alone (streams/state.py ``build_x``; the
stream keeps the last ``TRAILING_DAYS`` closed days' units in ``ProductState.recent_units``).
"""

from __future__ import annotations

import math

import numpy as np

from schemas import limits as L

# the product's campaign so far, as a tabular forecaster reads it (``campaign_features``)
CAMPAIGN_FEATURES = (
    "units_lag6",  # log1p units of day t-6 (0 before the product's first day)
    "product_day",  # min(days since the product's first sales day, WINDOW_DAYS) / WINDOW_DAYS
    "log_discount",  # log(price / price on the product's first sales day)
    "sum_log_followers",  # log1p of the sum over active videos of log1p(creator followers)
    "new_impressions",  # log1p impressions today of the videos published today
    "n_active_lag1",  # log1p active videos on day t-1 (0 on the product's first day)
    "impressions_lag1",  # log1p impressions summed over day t-1's active videos
) + tuple(f"category_{c}" for c in L.PRODUCT_CATEGORIES)  # one-hot; all zero = unknown
N_CAMPAIGN = len(CAMPAIGN_FEATURES)
SIDE_FEATURES = ("likes", "shares", "comments", "collects", "impressions", "age_days", "followers")
PRODUCT_FEATURES = (
    ("units", "price", "rating", "n_active", "n_new", "has_videos")
    + ("sum_likes", "sum_shares", "sum_comments", "sum_collects", "sum_impressions")  # log1p sums, today
    + ("units_lag1", "units_lag2", "units_mean3", "units_mean7")  # trailing log1p units (trailing_units)
    + tuple(f"weekday_{i}" for i in range(7))  # one-hot of date.weekday() of the day
    + ("history_sales", "history_videos", "history_known")  # log1p before the campaign; 0 0 0 = unknown
    + CAMPAIGN_FEATURES  # product_campaign: the tabular aggregates the GBM head (and LightGBM) use
)
# bumped when a column's definition changes under the same name (train_or_load's cache key has it)
# 5: campaign columns, product_day capped at WINDOW_DAYS; 6: the content channel's title detector
# reads the brand token (inference.content_scores), so cached content checkpoints retrain
DAY_INPUT_VERSION = 6
SIDE_DIM = len(SIDE_FEATURES)
PRODUCT_DIM = len(PRODUCT_FEATURES)
TRAILING_WINDOWS = (3, 7)  # rolling means of log1p units, today included
TRAILING_DAYS = max(TRAILING_WINDOWS) - 1  # earlier days' units the stream must remember (6)
N_TRAILING = 2 + len(TRAILING_WINDOWS)


COUNT_COLUMNS = ("likes", "shares", "comments", "collects", "impressions")


def side_matrix(counts: np.ndarray, age_days: np.ndarray, followers: np.ndarray) -> np.ndarray:
    """(K, SIDE_DIM) float32 side information of K videos.

    counts: (K, 5) latest daily likes, shares, comments, collects, impressions (COUNT_COLUMNS);
    age_days: (K,) days since publishing; followers: (K,) creator followers at publish.
    """
    out = np.empty((counts.shape[0], SIDE_DIM), dtype=np.float64)
    np.log1p(counts, out=out[:, :5])
    out[:, 4] /= 4.0
    out[:, 5] = age_days
    out[:, 5] /= L.WINDOW_DAYS
    np.log1p(followers, out=out[:, 6])
    out[:, 6] /= 4.0
    return out.astype(np.float32)


def side_features(likes, shares, comments, collects, impressions, age_days, followers) -> np.ndarray:
    """(..., SIDE_DIM) float32 side information of videos from raw counts (numpy broadcasting)."""
    cols = np.broadcast_arrays(
        *(
            np.asarray(c, dtype=np.float64)
            for c in (likes, shares, comments, collects, impressions, age_days, followers)
        )
    )
    shape = cols[0].shape
    flat = [c.reshape(-1) for c in cols]
    return side_matrix(np.stack(flat[:5], axis=1), flat[5], flat[6]).reshape(*shape, SIDE_DIM)


def trailing_units(units: np.ndarray) -> np.ndarray:
    """(..., D) daily units of days 0..D-1 -> (..., D, N_TRAILING) float64 trailing-units columns.

    Column order: log1p units of day t-1, of day t-2 (0 before day 0), mean log1p units over days
    max(0, t-2)..t and over max(0, t-6)..t (divided by the number of days that exist, so a
    product's first days average what it has). ``units`` are the values x's ``units`` column saw
    (the stream's imputed units on a gap day, 0 where training has no sales row).
    """
    y = np.log1p(np.asarray(units, dtype=np.float64))
    d = y.shape[-1]
    out = np.zeros((*y.shape, N_TRAILING))
    out[..., 1:, 0] = y[..., :-1]
    out[..., 2:, 1] = y[..., :-2]
    c = np.concatenate([np.zeros((*y.shape[:-1], 1)), np.cumsum(y, axis=-1)], axis=-1)  # (..., D+1)
    t = np.arange(1, d + 1)
    for i, w in enumerate(TRAILING_WINDOWS):
        lo = np.maximum(t - w, 0)
        out[..., 2 + i] = (c[..., t] - c[..., lo]) / (t - lo)
    return out


def trailing_vector(units: float, previous: list[float]) -> np.ndarray:
    """``trailing_units`` for one day from today's units and the previous days' (oldest first, at
    most ``TRAILING_DAYS`` used): the stream's scalar path. (N_TRAILING,) float64."""
    return np.array(_trailing(units, previous))


def _trailing(units: float, previous: list[float]) -> list[float]:
    # plain Python: a few microseconds less per product-day than numpy on the stream's hot path
    prev = [math.log1p(u) for u in previous[-TRAILING_DAYS:]]
    y = math.log1p(units)
    out = [prev[-1] if prev else 0.0, prev[-2] if len(prev) > 1 else 0.0]
    for w in TRAILING_WINDOWS:
        win = prev[-(w - 1) :]  # the w - 1 days before today (fewer at the product's start)
        out.append((y + sum(win)) / (1 + len(win)))
    return out


N_HISTORY = 3
CAMPAIGN_AT = PRODUCT_DIM - N_CAMPAIGN  # first campaign column in the product part
HISTORY_AT = CAMPAIGN_AT - N_HISTORY  # first history column in the product part
# columns of the product part that say "there are videos today": the no-video counterfactual
# zeroes them (yesterday's columns stay: the counterfactual is one day without videos)
NO_VIDEO_FEATURES = ("n_active", "n_new", "has_videos", "sum_likes", "sum_shares", "sum_comments")
NO_VIDEO_FEATURES += ("sum_collects", "sum_impressions", "sum_log_followers", "new_impressions")


def campaign_features(
    units_lag6,
    product_day,
    log_discount,
    sum_log_followers,
    new_impressions,
    n_active_lag1,
    impressions_lag1,
    category,
) -> np.ndarray:
    """(..., N_CAMPAIGN) float64 ``CAMPAIGN_FEATURES`` from raw values (numpy broadcasting).

    units_lag6: units of day t-6 (0 where none); product_day: days since the product's first
    sales day, capped at ``WINDOW_DAYS`` (a model trained on a campaign's first weeks then sees no
    value beyond its training range on later days; the cap does not bind on a 14-day world);
    log_discount: log(price / first price); sum_log_followers: sum over the active videos of
    log1p(followers); new_impressions: today's impressions of today's videos;
    n_active_lag1 / impressions_lag1: yesterday's active videos and their summed impressions;
    category: index into ``limits.PRODUCT_CATEGORIES``, -1 = unknown.
    """
    cols = [
        np.log1p(np.asarray(units_lag6, dtype=np.float64)),
        np.minimum(np.asarray(product_day, dtype=np.float64), L.WINDOW_DAYS) / L.WINDOW_DAYS,
        np.asarray(log_discount, dtype=np.float64),
        np.log1p(np.asarray(sum_log_followers, dtype=np.float64)),
        np.log1p(np.asarray(new_impressions, dtype=np.float64)),
        np.log1p(np.asarray(n_active_lag1, dtype=np.float64)),
        np.log1p(np.asarray(impressions_lag1, dtype=np.float64)),
    ]
    cat = np.asarray(category)
    cols += [(cat == i).astype(np.float64) for i in range(len(L.PRODUCT_CATEGORIES))]
    return np.stack(np.broadcast_arrays(*cols), axis=-1)


def campaign_vector(
    units_lag6: float,
    product_day: int,
    log_discount: float,
    sum_log_followers: float,
    new_impressions: float,
    n_active_lag1: int,
    impressions_lag1: float,
    category: int,
) -> np.ndarray:
    """``campaign_features`` for one product-day from Python scalars (the stream's hot path:
    plain math: 1.3 us against 66 us for the numpy version, timeit on the dev box). (N_CAMPAIGN,) float64."""
    out = np.zeros(N_CAMPAIGN)
    out[:7] = (
        math.log1p(units_lag6),
        min(product_day, L.WINDOW_DAYS) / L.WINDOW_DAYS,
        log_discount,
        math.log1p(sum_log_followers),
        math.log1p(new_impressions),
        math.log1p(n_active_lag1),
        math.log1p(impressions_lag1),
    )
    if 0 <= category < len(L.PRODUCT_CATEGORIES):
        out[7 + category] = 1.0
    return out


def _block(a, name: str, width: int) -> list[np.ndarray]:
    """The ``width`` columns of an optional (..., width) block of ``product_features`` (None = zeros)."""
    if a is None:
        return [np.zeros(())] * width
    a = np.asarray(a, dtype=np.float64)
    assert a.shape[-1] == width, f"expected {name} (..., {width}), got {a.shape}"
    return [a[..., i] for i in range(width)]


def product_features(
    units,
    price,
    rating,
    n_active,
    n_new,
    *,
    sums=None,
    weekday=None,
    trailing=None,
    history=None,
    campaign=None,
) -> np.ndarray:
    """(..., PRODUCT_DIM) float32 product side input for a closed (or provisional) day.

    sums: (..., 5) today's engagement counts summed over the active videos, COUNT_COLUMNS order
    (None = zeros); trailing: (..., N_TRAILING) ``trailing_units`` of the day (None = zeros);
    weekday: (...) int, ``date.weekday()`` of the day (None = all-zero one-hot); history: (..., 2)
    history sales and videos, NaN where not known that day (None = unknown everywhere); campaign:
    (..., N_CAMPAIGN) ``campaign_features`` (None = zeros).
    """
    n_active = np.asarray(n_active, dtype=np.float64)
    cols = [
        np.log1p(np.asarray(units, dtype=np.float64)),
        np.log1p(np.asarray(price, dtype=np.float64)),
        np.asarray(rating, dtype=np.float64) / 100.0,
        np.log1p(n_active),
        np.log1p(np.asarray(n_new, dtype=np.float64)),
        (n_active > 0).astype(np.float64),
    ]
    cols += _block(
        None if sums is None else np.log1p(np.asarray(sums, dtype=np.float64)), "sums", len(COUNT_COLUMNS)
    )
    cols += _block(trailing, "trailing", N_TRAILING)
    if weekday is None:
        cols += [np.zeros(())] * 7
    else:
        wd = np.asarray(weekday)
        cols += [(wd == i).astype(np.float64) for i in range(7)]
    if history is None:
        cols += [np.zeros(())] * N_HISTORY
    else:
        history = np.asarray(history, dtype=np.float64)
        assert history.shape[-1] == 2, f"expected history (..., 2), got {history.shape}"
        known = ~np.isnan(history[..., 0])
        cols += [np.where(known, np.log1p(np.nan_to_num(history[..., i])), 0.0) for i in range(2)]
        cols.append(known.astype(np.float64))
    cols += _block(campaign, "campaign", N_CAMPAIGN)
    return np.stack(np.broadcast_arrays(*cols), axis=-1).astype(np.float32)


def product_vector(
    units: float,
    price: float,
    rating: float,
    n_active: int,
    n_new: int,
    *,
    sums=None,
    weekday: int | None = None,
    previous: list[float] | None = None,
    history: tuple[float, float] | None = None,
    campaign: np.ndarray | None = None,
) -> np.ndarray:
    """``product_features`` for one product-day from Python scalars (the stream's hot path).

    previous: the units of the days before this one, oldest first (None = no trailing columns,
    zeros like ``product_features(trailing=None)``; [] = the product's first day); history:
    (history sales, history videos), None = unknown; campaign: (N_CAMPAIGN,) ``campaign_features``
    (None = zeros).
    """
    out = np.zeros(PRODUCT_DIM, dtype=np.float64)
    out[:6] = (
        math.log1p(units),
        math.log1p(price),
        rating / 100.0,
        math.log1p(n_active),
        math.log1p(n_new),
        1.0 if n_active > 0 else 0.0,
    )
    if sums is not None:
        out[6:11] = np.log1p(np.asarray(sums, dtype=np.float64))
    if previous is not None:
        out[11 : 11 + N_TRAILING] = _trailing(units, previous)
    if weekday is not None:
        out[11 + N_TRAILING + int(weekday)] = 1.0
    if history is not None:
        out[HISTORY_AT:CAMPAIGN_AT] = math.log1p(history[0]), math.log1p(history[1]), 1.0
    if campaign is not None:
        out[CAMPAIGN_AT:] = campaign
    return out.astype(np.float32)


def day_input(
    h: np.ndarray, side: np.ndarray, product: np.ndarray, impressions: np.ndarray | None = None
) -> np.ndarray:
    """One product-day input vector.

    h: (K, H) encodings of the K active videos (K may be 0); side: (K, SIDE_DIM);
    product: (PRODUCT_DIM,). Returns (H + SIDE_DIM + PRODUCT_DIM,) float32; with no active
    video the video part is zeros (the model sees has_videos = 0).

    ``impressions`` (K,) today's impressions, for a forecaster with the content-lift channel
    (``LammConfig.content_channel``): its encodings carry q_v as their last column, which is then
    not averaged but turned into the channel (``inference.content_scores.lift_channel``), appended
    last; the width is the same, H - 1 + SIDE_DIM + PRODUCT_DIM + 1.
    """
    assert h.ndim == 2 and side.ndim == 2 and h.shape[0] == side.shape[0], (
        f"expected h (K, H) and side (K, {SIDE_DIM}) with the same K, got {h.shape} and {side.shape}"
    )
    assert side.shape[1] == SIDE_DIM and product.shape == (PRODUCT_DIM,), (
        f"expected side (K, {SIDE_DIM}) and product ({PRODUCT_DIM},), got {side.shape} and {product.shape}"
    )
    tail = []
    if impressions is not None:
        from inference.content_scores import lift_channel

        assert np.shape(impressions) == (h.shape[0],), f"expected impressions ({h.shape[0]},)"
        tail = [np.array([lift_channel(h[:, -1], impressions)], dtype=np.float32)]
        h = h[:, :-1]
    if h.shape[0] == 0:
        video = np.zeros(h.shape[1] + SIDE_DIM, dtype=np.float32)
    else:
        video = np.concatenate([h.mean(axis=0), side.mean(axis=0)]).astype(np.float32)
    return np.concatenate([video, product.astype(np.float32), *tail])
