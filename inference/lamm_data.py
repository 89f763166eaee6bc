"""Dataset folder (schemas.dataset) -> LAMM training tensors.

Per product a sequence of days 0..D-1; per day the active videos (published on or before t and
less than ``WINDOW_DAYS`` old), their side information on that day and the product's own side
input, exactly as ``inference.daily`` defines them for streaming; target = next day's units.

Videos are stored sorted by product (CSR offsets), and the (product, day, video) activity pairs
sorted by product too, so a batch of products gathers its videos and pairs with slices.
``build_day_inputs`` is the torch twin of ``inference.daily.day_input``: a mean over active
videos of ``[h_v, side]`` via ``index_add`` (differentiable through h_v), then the product part.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from inference.daily import (
    PRODUCT_DIM,
    SIDE_DIM,
    campaign_features,
    product_features,
    side_features,
    trailing_units,
)
from schemas import dataset as ds
from schemas import limits as L

ENGAGEMENT_COLS = ("likes", "shares", "comments", "collects", "impressions")  # order of daily.SIDE_FEATURES


@dataclass
class LammData:
    root: str
    product_ids: np.ndarray  # (P,) str
    video_ids: np.ndarray  # (V,) str, in the video order below
    n_days: int  # D
    category: np.ndarray  # (P,) int index into limits.PRODUCT_CATEGORIES
    history_sales: np.ndarray  # (P,)
    history_videos: np.ndarray  # (P,)
    units: np.ndarray  # (P, D) float64 raw units, NaN where no sales row
    product_x: np.ndarray  # (P, D, PRODUCT_DIM) float32, inference.daily.product_features
    video_row: np.ndarray  # (V,) feature row, videos sorted by product then publish day
    video_product: np.ndarray  # (V,) product index
    video_start: np.ndarray  # (P+1,) CSR offsets into the video arrays
    pair_video: np.ndarray  # (Q,) global video index of an active (product, day, video) pair
    pair_product: np.ndarray  # (Q,)
    pair_day: np.ndarray  # (Q,)
    pair_side: np.ndarray  # (Q, SIDE_DIM) float32, inference.daily.side_features
    pair_raw: np.ndarray  # (Q, 6) raw engagement counts of the day + followers (LightGBM aggregates)
    pair_start: np.ndarray  # (P+1,) CSR offsets into the pair arrays
    features: dict[str, np.ndarray]  # feature arrays (memmap or in RAM), indexed by video_row
    # annotations/ (schemas.dataset): (global video indices, (N, S, 3) labels, (N,) title names product)
    annotations: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    # the content-lift channel (inference.content_scores): q_v of every video and the model that
    # made it (to rescore shuffled features); None = no channel in x (LammConfig.content_channel off)
    video_q: np.ndarray | None = None
    content: object | None = None

    @property
    def n_products(self) -> int:
        return len(self.product_ids)

    @property
    def n_videos(self) -> int:
        return len(self.video_row)

    def log_units(self) -> np.ndarray:
        """(P, D) log1p units, NaN where missing."""
        return np.log1p(self.units)


def load_lamm_data(root: str | Path, max_day: int | None = None, in_memory: bool = True) -> LammData:
    """Read a dataset folder; days > ``max_day`` (and videos published after it) are dropped."""
    root = Path(root)
    meta = ds.read_meta(root)
    products = ds.read_table(root, "products").to_pandas()
    videos = ds.read_table(root, "videos").to_pandas()
    eng = ds.read_table(root, "engagement").to_pandas()
    sales = ds.read_table(root, "sales").to_pandas()
    n_days = int(meta.get("n_days", int(sales["day"].max()) + 1))
    if max_day is not None:
        n_days = min(n_days, max_day + 1)
    d = n_days

    pid = products["product_id"].to_numpy()
    p_index = pd.Series(np.arange(len(pid)), index=pid)
    cat_index = {c: i for i, c in enumerate(L.PRODUCT_CATEGORIES)}
    category = products["category"].map(lambda c: cat_index.get(c, len(L.PRODUCT_CATEGORIES) - 1)).to_numpy()

    # ---- sales: (P, D) units, price, rating (price / rating carried forward, list price before)
    sales = sales[(sales["day"] >= 0) & (sales["day"] < d) & sales["product_id"].isin(p_index.index)]
    sp, sd = p_index[sales["product_id"]].to_numpy(), sales["day"].to_numpy()
    units = np.full((len(pid), d), np.nan)
    price = np.full((len(pid), d), np.nan)
    rating = np.full((len(pid), d), np.nan)
    units[sp, sd] = sales["units"].to_numpy(dtype=np.float64)
    price[sp, sd] = sales["price"].to_numpy()
    rating[sp, sd] = sales["rating"].to_numpy()
    price = pd.DataFrame(price.T).ffill().bfill().to_numpy().T
    rating = pd.DataFrame(rating.T).ffill().bfill().to_numpy().T
    price = np.where(np.isnan(price), products["price"].to_numpy()[:, None], price)
    rating = np.where(np.isnan(rating), products["rating"].to_numpy()[:, None], rating)

    # ---- videos sorted by product, then publish day
    videos = videos[(videos["publish_day"] < d) & videos["product_id"].isin(p_index.index)].copy()
    videos["p"] = p_index[videos["product_id"]].to_numpy()
    videos = videos.sort_values(["p", "publish_day", "video_id"], kind="stable").reset_index(drop=True)
    vp = videos["p"].to_numpy()
    video_start = np.searchsorted(vp, np.arange(len(pid) + 1))
    pub = videos["publish_day"].to_numpy()

    # ---- active pairs: video v on days max(pub, 0) .. pub + WINDOW_DAYS - 1 (clipped to the window)
    first = np.maximum(pub, 0)
    last = np.minimum(pub + L.WINDOW_DAYS - 1, d - 1)
    n_act = np.maximum(last - first + 1, 0)
    pv = np.repeat(np.arange(len(videos)), n_act)
    offs = np.arange(len(pv)) - np.repeat(np.cumsum(n_act) - n_act, n_act)
    pt = np.repeat(first, n_act) + offs
    # the video's engagement on day t; a missing day carries the video's latest earlier day
    e = eng[eng["video_id"].isin(set(videos["video_id"]))]
    v_index = pd.Series(np.arange(len(videos)), index=videos["video_id"].to_numpy())
    e_key = pd.MultiIndex.from_arrays([v_index[e["video_id"]].to_numpy(), e["day"].to_numpy()])
    counts = pd.DataFrame(e[list(ENGAGEMENT_COLS)].to_numpy(dtype=np.float64), index=e_key)
    counts = counts[~counts.index.duplicated(keep="last")]
    merged = counts.reindex(pd.MultiIndex.from_arrays([pv, pt]))  # pairs are in (video, day) order here
    merged["v"] = pv
    merged = merged.groupby("v", sort=False).ffill().fillna(0.0)
    raw = merged[list(range(len(ENGAGEMENT_COLS)))].to_numpy()
    followers = videos["followers"].to_numpy(dtype=np.float64)[pv]
    side = side_features(raw[:, 0], raw[:, 1], raw[:, 2], raw[:, 3], raw[:, 4], pt - pub[pv], followers)
    pair_p = vp[pv]
    order = np.lexsort((pv, pt, pair_p))  # by product, then day, then video
    pv, pt, pair_p, side, raw, followers = (
        pv[order],
        pt[order],
        pair_p[order],
        side[order],
        raw[order],
        followers[order],
    )
    pair_start = np.searchsorted(pair_p, np.arange(len(pid) + 1))

    # ---- product side input of each day
    n_active = np.zeros((len(pid), d))
    np.add.at(n_active, (pair_p, pt), 1.0)
    n_new = np.zeros((len(pid), d))
    ok = (pub >= 0) & (pub < d)
    np.add.at(n_new, (vp[ok], pub[ok]), 1.0)
    eng_sums = np.zeros((len(pid), d, len(ENGAGEMENT_COLS)))
    np.add.at(eng_sums, (pair_p, pt), raw)  # today's counts summed over the active videos
    start = date.fromisoformat(
        str(meta.get("start_date", "1970-01-01"))
    )  # day t = start + t (the stream's date)
    weekday = (start.weekday() + np.arange(d)) % 7
    units0 = np.nan_to_num(units, nan=0.0)  # what x's units column holds on a day without a sales row
    # history sales / videos: known from the product's first video day on, as the stream learns
    # them from VideoPublished.product (a product with no video in the window never knows them)
    first_video = np.full(len(pid), np.inf)
    np.minimum.at(first_video, vp, np.maximum(pub, 0).astype(np.float64))
    known = np.arange(d)[None, :] >= first_video[:, None]  # (P, D)
    hist = products[["history_sales", "history_videos"]].to_numpy(dtype=np.float64)  # (P, 2)
    history = np.where(known[..., None], hist[:, None, :], np.nan)  # (P, D, 2)
    # the campaign columns (inference.daily.campaign_features), by the stream's rules: the first
    # sales day starts the product's clock and fixes its list price; yesterday's counts are 0
    # until the product has a closed day; the category is known from its first video on
    has_sales = ~np.isnan(units)
    first_sale = np.where(has_sales.any(axis=1), has_sales.argmax(axis=1), d)  # (P,)
    t = np.arange(d)[None, :]
    list_price = np.take_along_axis(price, np.minimum(first_sale, d - 1)[:, None], axis=1)  # (P, 1)
    units_lag6 = np.zeros_like(units0)
    units_lag6[:, 6:] = units0[:, :-6]
    sum_log_f = np.zeros((len(pid), d))
    np.add.at(sum_log_f, (pair_p, pt), np.log1p(followers))
    new_imp = np.zeros((len(pid), d))
    is_new = pt == pub[pv]
    np.add.at(new_imp, (pair_p[is_new], pt[is_new]), raw[is_new, ENGAGEMENT_COLS.index("impressions")])
    after_first = t - 1 >= first_sale[:, None]  # day t-1 was closed
    n_active_lag1 = np.zeros_like(n_active)
    n_active_lag1[:, 1:] = n_active[:, :-1]
    imp_lag1 = np.zeros_like(n_active)
    imp_lag1[:, 1:] = eng_sums[:, :-1, ENGAGEMENT_COLS.index("impressions")]
    campaign = campaign_features(
        units_lag6,
        np.maximum(t - first_sale[:, None], 0),
        np.log(price / np.where(list_price > 0, list_price, price)),
        sum_log_f,
        new_imp,
        np.where(after_first, n_active_lag1, 0.0),
        np.where(after_first, imp_lag1, 0.0),
        np.where(known, category[:, None], -1),
    )
    product_x = product_features(
        units0,
        price,
        rating,
        n_active,
        n_new,
        sums=eng_sums,
        weekday=weekday[None, :],
        trailing=trailing_units(units0),  # the lags / rolling means of that same column
        history=history,
        campaign=campaign,
    )

    feats = ds.load_features(root, mmap=True)
    rows = videos["feature_row"].to_numpy()
    if in_memory:  # gather our rows once (float16 in RAM), so batches index a compact array
        feats = {k: np.ascontiguousarray(v[rows]) for k, v in feats.items()}
        video_row = np.arange(len(rows))
    else:
        video_row = rows
    return LammData(
        root=str(root),
        product_ids=pid,
        video_ids=videos["video_id"].to_numpy(),
        n_days=d,
        category=category,
        history_sales=products["history_sales"].to_numpy(dtype=np.float64),
        history_videos=products["history_videos"].to_numpy(dtype=np.float64),
        units=units,
        product_x=product_x,
        video_row=video_row,
        video_product=vp,
        video_start=video_start,
        pair_video=pv,
        pair_product=pair_p,
        pair_day=pt,
        pair_side=side,
        pair_raw=np.concatenate([raw, followers[:, None]], axis=1),
        pair_start=pair_start,
        features=feats,
        annotations=ds.annotations_for(root, videos["video_id"].to_numpy()),
    )


def content_channel_torch(
    q: torch.Tensor, log_impr: torch.Tensor, slot: torch.Tensor, n: int
) -> torch.Tensor:
    """(n,) the content-lift channel (inference.content_scores.lift_channel) of n product-day slots
    from each active pair's q_v, log1p impressions and slot; 0 where a slot has no video."""
    from inference.content_scores import CHANNEL_SCALE, CHANNEL_SHIFT

    v = q + log_impr
    mx = torch.full((n,), -1e30, dtype=v.dtype).scatter_reduce(0, slot, v, reduce="amax", include_self=True)
    s = torch.zeros(n, dtype=v.dtype).index_add(0, slot, torch.exp(v - mx[slot]))
    has = s > 0
    lse = mx + torch.log(torch.where(has, s, torch.ones_like(s)))
    return torch.where(has, (lse - CHANNEL_SHIFT) / CHANNEL_SCALE, torch.zeros_like(s))


def content_channel(data: LammData, products: np.ndarray) -> np.ndarray:
    """(B, D, 1) float32 content-lift channel of the products' days, from ``data.video_q``."""
    assert data.video_q is not None, "content_channel needs data.video_q (inference.content_scores)"
    p = np.asarray(products)
    pos = np.full(data.n_products, -1, dtype=np.int64)
    pos[p] = np.arange(len(p))
    pairs = _ranges(data.pair_start, p)
    slot = torch.from_numpy(pos[data.pair_product[pairs]] * data.n_days + data.pair_day[pairs])
    q = torch.from_numpy(data.video_q[data.pair_video[pairs]].astype(np.float64))
    li = torch.from_numpy(np.log1p(data.pair_raw[pairs][:, 4]))
    ch = content_channel_torch(q, li, slot, len(p) * data.n_days)
    return ch.numpy().astype(np.float32).reshape(len(p), data.n_days, 1)


@dataclass
class Batch:
    """Everything one forward pass over B products needs (torch tensors)."""

    products: np.ndarray  # (B,) product indices
    frame: torch.Tensor  # (Vb, S, D) float32
    motion: torch.Tensor
    audio: torch.Tensor
    seg_mask: torch.Tensor  # (Vb, S) bool
    title: torch.Tensor  # (Vb, T, D)
    title_mask: torch.Tensor  # (Vb, T) bool
    pair_video: torch.Tensor  # (Qb,) local video index
    pair_slot: torch.Tensor  # (Qb,) b * D + t
    pair_side: torch.Tensor  # (Qb, SIDE_DIM)
    product_x: torch.Tensor  # (B, D, PRODUCT_DIM)
    units: torch.Tensor  # (B, D) log1p units, NaN where missing
    content_q: torch.Tensor | None = None  # (Vb,) q_v (data.video_q); None: no content channel
    pair_log_impr: torch.Tensor | None = None  # (Qb,) log1p impressions of the pair's day

    def videos(self) -> tuple[torch.Tensor, ...]:
        return self.frame, self.motion, self.audio, self.seg_mask, self.title, self.title_mask


MODALITIES = ("frame", "text", "audio", "motion")


def permute_modality(batch: Batch, modality: str, rng: np.random.Generator) -> Batch:
    """``batch`` with one modality's inputs shuffled across its videos, everything else kept.

    The permutation ablation: each video gets the ``modality`` of another video of the batch,
    an independent draw of that modality's content, which is how the simulator's truth
    (``truth/modality_importance.json``) scores what each modality carries. Frame, motion and
    audio are shuffled among videos with the same number of segments, so the donor's segments
    fill the recipient's ``seg_mask`` exactly (length is editing metadata, not the modality);
    text swaps whole titles with their masks."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    n = batch.frame.shape[0]
    groups = np.zeros(n, dtype=np.int64) if modality == "text" else batch.seg_mask.sum(1).numpy()
    idx = np.arange(n)
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        idx[members] = members[rng.permutation(len(members))]
    take = torch.from_numpy(idx)
    if modality == "text":
        return replace(batch, title=batch.title[take], title_mask=batch.title_mask[take])
    return replace(batch, **{modality: getattr(batch, modality)[take]})


def _ranges(start: np.ndarray, idx: np.ndarray) -> np.ndarray:
    lo, hi = start[idx], start[idx + 1]
    n = hi - lo
    return np.repeat(lo - np.cumsum(n) + n, n) + np.arange(n.sum())


def make_batch(data: LammData, products: np.ndarray) -> Batch:
    products = np.asarray(products)
    vids = _ranges(data.video_start, products)  # global video indices of these products
    local = np.full(data.n_videos, -1, dtype=np.int64)
    local[vids] = np.arange(len(vids))
    pairs = _ranges(data.pair_start, products)
    pos = np.full(data.n_products, -1, dtype=np.int64)
    pos[products] = np.arange(len(products))
    rows = data.video_row[vids]
    f = lambda k: torch.from_numpy(np.asarray(data.features[k][rows], dtype=np.float32))  # noqa: E731
    b = lambda k: torch.from_numpy(np.asarray(data.features[k][rows], dtype=bool))  # noqa: E731
    return Batch(
        products=products,
        frame=f("frame"),
        motion=f("motion"),
        audio=f("audio"),
        seg_mask=b("seg_mask"),
        title=f("title"),
        title_mask=b("title_mask"),
        pair_video=torch.from_numpy(local[data.pair_video[pairs]]),
        pair_slot=torch.from_numpy(pos[data.pair_product[pairs]] * data.n_days + data.pair_day[pairs]),
        pair_side=torch.from_numpy(data.pair_side[pairs]),
        product_x=torch.from_numpy(data.product_x[products]),
        units=torch.from_numpy(np.log1p(data.units[products]).astype(np.float32)),
        content_q=None if data.video_q is None else torch.from_numpy(data.video_q[vids].astype(np.float32)),
        pair_log_impr=None
        if data.video_q is None
        else torch.from_numpy(np.log1p(data.pair_raw[pairs][:, 4]).astype(np.float32)),
    )


def rescore_content(batch: Batch, data: LammData) -> Batch:
    """``batch`` with q_v recomputed from its (e.g. shuffled) features by ``data.content``."""
    if data.content is None:
        return batch
    q = data.content.q(
        batch.frame.numpy(),
        batch.motion.numpy(),
        batch.audio.numpy(),
        batch.seg_mask.numpy(),
        batch.title.numpy(),
    )
    return replace(batch, content_q=torch.from_numpy(q))


def build_day_inputs(h: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Torch twin of ``inference.daily.day_input`` for a whole batch: h (Vb, H) -> x (B, D, H+SIDE+PRODUCT)."""
    n_b, d, _ = batch.product_x.shape
    assert h.ndim == 2 and h.shape[0] == batch.frame.shape[0], (
        f"expected h ({batch.frame.shape[0]}, H), got {tuple(h.shape)}"
    )
    assert batch.product_x.shape[2] == PRODUCT_DIM and batch.pair_side.shape[1] == SIDE_DIM
    hv = torch.cat([h[batch.pair_video], batch.pair_side.to(h.dtype)], dim=1)  # (Qb, H + SIDE)
    sums = torch.zeros(n_b * d, hv.shape[1], dtype=h.dtype).index_add(0, batch.pair_slot, hv)  # (B*D, H+SIDE)
    cnt = torch.zeros(n_b * d, dtype=h.dtype).index_add(0, batch.pair_slot, torch.ones_like(hv[:, 0]))
    video = (sums / cnt.clamp(min=1.0)[:, None]).view(n_b, d, -1)  # (B, D, H+SIDE) zeros with no video
    parts = [video, batch.product_x.to(h.dtype)]
    if batch.content_q is not None:  # + the content-lift channel (LammConfig.content_channel)
        q = batch.content_q.to(h.dtype)[batch.pair_video]
        ch = content_channel_torch(q, batch.pair_log_impr.to(h.dtype), batch.pair_slot, n_b * d)
        parts.append(ch.view(n_b, d, 1))
    return torch.cat(parts, dim=2)  # (B, D, F)


def tab_part(data: LammData, products: np.ndarray) -> np.ndarray:
    """(B, D, SIDE_DIM + PRODUCT_DIM [+ 1]) float32: x[..., H:] of every product-day, as the stream
    builds it: the mean side information, the product part, and the content-lift channel when
    ``data.video_q`` is set. The one numpy builder of that part (the GBM head, the model buffers,
    the LR baseline)."""
    p = np.asarray(products)
    parts = [make_side_only(data, p), data.product_x[p]]
    if data.video_q is not None:
        parts.append(content_channel(data, p))
    return np.concatenate(parts, axis=2).astype(np.float32)


def tabular_stats(data: LammData, products: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean / std of the side + product part of x over the given products' days (for the model buffers)."""
    p = np.asarray(products)
    n_b, d = len(p), data.n_days
    tab = tab_part(data, p).reshape(n_b * d, -1).astype(np.float64)
    mean, std = tab.mean(0), tab.std(0)
    return mean.astype(np.float32), np.where(std < 1e-6, 1.0, std).astype(np.float32)


def make_side_only(data: LammData, products: np.ndarray) -> np.ndarray:
    """(B, D, SIDE_DIM) mean side features over active videos (zeros with none), numpy."""
    p = np.asarray(products)
    pos = np.full(data.n_products, -1, dtype=np.int64)
    pos[p] = np.arange(len(p))
    pairs = _ranges(data.pair_start, p)
    slot = pos[data.pair_product[pairs]] * data.n_days + data.pair_day[pairs]
    sums = np.zeros((len(p) * data.n_days, SIDE_DIM))
    np.add.at(sums, slot, data.pair_side[pairs])
    cnt = np.bincount(slot, minlength=len(p) * data.n_days).astype(np.float64)
    return (sums / np.maximum(cnt, 1.0)[:, None]).reshape(len(p), data.n_days, SIDE_DIM).astype(np.float32)
