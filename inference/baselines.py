"""Baselines of the LAMM evaluation, on the same data and folds as LAMM.

Neural (LAMM paper section 4.2), one class with two switches, trained by the same ``fit`` as LAMM:
- ``Concat_*``: the ladder removed; each modality projected and mask-mean pooled, the four
  pooled vectors concatenated and projected to h_v.
- ``Gate_*``: the same, plus a self-attention layer over the four pooled modality vectors before
  the concatenation ("a self-attention layer on top of the concatenated representations").
- ``*_LSTM``: LAMM's day LSTM with the same skip path and input dropout (``skip_hidden``,
  ``tab_dropout``; ``evaluate`` copies LAMM's), so the comparison isolates the video encoder;
  ``*_MLP``: an MLP on the day's x alone (+ the same skip).
The day input x is built exactly as for LAMM (``inference.lamm_data.build_day_inputs``).

Classical (``fit_predict_*(data, fit_p, cal_p, test_p, norm) -> (B_test, D-1) predicted z``):
- ``LR``: the paper's "LR" as a (ridge-stabilised) linear regression on the same day input,
  with h_v = the concatenated mask-mean pooled raw features of the four modalities.
- ``SeasonalNaive``: tomorrow = today (``inference.standin.SeasonalNaiveForecaster``'s rule).
- ``LightGBM``: gradient-boosted trees on tabular aggregates (lags, video counts, engagement
  sums, product metadata): what a practitioner would ship; LAMM must beat it to be worth serving.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from inference.daily import PRODUCT_DIM, SIDE_DIM
from inference.lamm import LammConfig, Skip, encode_packed, masked_pool
from inference.lamm_data import LammData, content_channel, tab_part
from schemas import limits as L

MODALITY_ORDER = ("frame", "motion", "audio", "text")


@dataclass
class BaselineConfig:
    fusion: str = "concat"  # "concat" | "gate"
    head: str = "lstm"  # "lstm" | "mlp"
    feature_dim: int = L.FEATURE_DIM
    d_model: int = 128  # same widths as LAMM (section 4.4)
    hidden: int = 128
    dropout: float = 0.2
    gate_heads: int = 4  # self-attention heads of the Gate fusion (128 / 4 = 32 per head)
    tab_dropout: bool = LammConfig.tab_dropout  # as LAMM's day model (inference.lamm.LammConfig)
    skip_hidden: int = LammConfig.skip_hidden
    content_channel: bool = False  # the content-lift channel at the end of x, as LAMM's (v7)

    def __post_init__(self) -> None:
        assert self.fusion in ("concat", "gate") and self.head in ("lstm", "mlp"), f"bad baseline {self}"

    @property
    def name(self) -> str:
        return f"{self.fusion.capitalize()}_{self.head.upper()}"

    @property
    def x_dim(self) -> int:
        return self.d_model + SIDE_DIM + PRODUCT_DIM + int(self.content_channel)


NEURAL = {c.name: c for c in (BaselineConfig(f, h) for f in ("gate", "concat") for h in ("lstm", "mlp"))}


class NeuralBaseline(nn.Module):
    """Concat / Gate fusion + LSTM / MLP sales head, with LAMM's buffers and call signatures."""

    def __init__(self, cfg: BaselineConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.proj = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(cfg.feature_dim, d), nn.LayerNorm(d)) for m in MODALITY_ORDER}
        )
        if cfg.fusion == "gate":
            self.gate = nn.MultiheadAttention(d, cfg.gate_heads, dropout=cfg.dropout, batch_first=True)
            self.gate_norm = nn.LayerNorm(d)
        self.fuse = nn.Sequential(nn.Linear(4 * d, d), nn.LayerNorm(d))
        tab = SIDE_DIM + PRODUCT_DIM + int(cfg.content_channel)
        self.register_buffer("x_mean", torch.zeros(tab))
        self.register_buffer("x_std", torch.ones(tab))
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_std", torch.ones(()))
        self.in_drop = nn.Dropout(cfg.dropout)
        if cfg.head == "lstm":
            self.lstm = nn.LSTM(cfg.x_dim, cfg.hidden, batch_first=True)
        else:
            self.mlp = nn.Sequential(nn.Linear(cfg.x_dim, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout))
        self.out_drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.hidden, 1)
        self.skip = Skip(tab, cfg.skip_hidden)

    def encode(self, frame, motion, audio, seg_mask, title, title_mask) -> torch.Tensor:
        n, s, f = frame.shape
        assert f == self.cfg.feature_dim and motion.shape == frame.shape and audio.shape == frame.shape, (
            f"expected frame / motion / audio (N, S, {self.cfg.feature_dim}), got {tuple(frame.shape)}"
        )
        seg_mask, title_mask = seg_mask.bool(), title_mask.bool()
        pooled = [
            masked_pool(self.proj["frame"](frame), seg_mask),
            masked_pool(self.proj["motion"](motion), seg_mask),
            masked_pool(self.proj["audio"](audio), seg_mask),
            masked_pool(self.proj["text"](title), title_mask),
        ]  # 4 x (N, d)
        tokens = torch.stack(pooled, dim=1)  # (N, 4, d) one token per modality
        if self.cfg.fusion == "gate":
            a, _ = self.gate(tokens, tokens, tokens, need_weights=False)
            tokens = self.gate_norm(tokens + a)  # (N, 4, d)
        return self.fuse(tokens.reshape(n, -1))  # (N, d)

    def encode_packed(self, *videos, chunk: int = 1024) -> torch.Tensor:
        return encode_packed(self.encode, *videos, d_model=self.cfg.d_model, chunk=chunk)

    def forward_days(self, x: torch.Tensor, state=None):
        """x (B, T, F) -> (z (B, T) next-day standardized log1p units, state)."""
        assert x.ndim == 3 and x.shape[-1] == self.cfg.x_dim, (
            f"expected x (B, T, {self.cfg.x_dim}), got {tuple(x.shape)}"
        )
        d = self.cfg.d_model
        tab = (x[..., d:] - self.x_mean) / self.x_std  # (B, T, SIDE+PRODUCT)
        if self.cfg.tab_dropout:
            xn = self.in_drop(torch.cat([x[..., :d], tab], dim=-1))
        else:  # as Lamm.forward_days: only the video part is dropped
            xn = torch.cat([self.in_drop(x[..., :d]), tab], dim=-1)
        if self.cfg.head == "lstm":
            o, state = self.lstm(xn, state)  # (B, T, hidden)
        else:
            o = self.mlp(xn)  # (B, T, hidden) each day on its own
        return self.out(self.out_drop(o)).squeeze(-1) + self.skip(tab).squeeze(-1), state


# ----------------------------------------------------------------------------------------------
# classical baselines: (B_test, D-1) predicted z of day t+1 from day t


def _z(data: LammData, products: np.ndarray, norm: dict) -> np.ndarray:
    return (data.log_units()[products] - norm["y_mean"]) / norm["y_std"]  # (B, D)


def predict_seasonal_naive(data: LammData, test_p: np.ndarray, norm: dict) -> np.ndarray:
    """Tomorrow's units = today's units (a missing day carries the last known day)."""
    y = data.log_units()[test_p]
    import pandas as pd

    y = pd.DataFrame(y.T).ffill().fillna(0.0).to_numpy().T
    return ((y - norm["y_mean"]) / norm["y_std"])[:, :-1]


def pooled_raw_features(data: LammData) -> np.ndarray:
    """(V, 4*128) mask-mean pooled raw features per video, in MODALITY_ORDER (for LR)."""
    f = data.features
    out = np.zeros((data.n_videos, 4 * L.FEATURE_DIM), dtype=np.float32)
    for i in range(0, data.n_videos, 8192):
        r = data.video_row[i : i + 8192]
        sm = np.asarray(f["seg_mask"][r], dtype=np.float32)[..., None]
        tm = np.asarray(f["title_mask"][r], dtype=np.float32)[..., None]
        parts = [
            (np.asarray(f[k][r], dtype=np.float32) * sm).sum(1) / np.maximum(sm.sum(1), 1)
            for k in ("frame", "motion", "audio")
        ]
        parts.append((np.asarray(f["title"][r], dtype=np.float32) * tm).sum(1) / np.maximum(tm.sum(1), 1))
        out[i : i + 8192] = np.concatenate(parts, axis=1)
    return out


def day_inputs_numpy(data: LammData, products: np.ndarray, h: np.ndarray) -> np.ndarray:
    """(B, D, H + SIDE + PRODUCT) day inputs from per-video vectors h (V, H): numpy twin of build_day_inputs."""
    from inference.lamm_data import _ranges

    p = np.asarray(products)
    pos = np.full(data.n_products, -1, dtype=np.int64)
    pos[p] = np.arange(len(p))
    pairs = _ranges(data.pair_start, p)
    slot = pos[data.pair_product[pairs]] * data.n_days + data.pair_day[pairs]
    sums = np.zeros((len(p) * data.n_days, h.shape[1]))
    np.add.at(sums, slot, h[data.pair_video[pairs]])
    cnt = np.bincount(slot, minlength=len(p) * data.n_days).astype(np.float64)
    hv = (sums / np.maximum(cnt, 1.0)[:, None]).reshape(len(p), data.n_days, -1)
    return np.concatenate([hv, tab_part(data, p)], axis=2).astype(np.float32)


def fit_predict_lr(
    data: LammData,
    train_p: np.ndarray,
    test_p: np.ndarray,
    norm: dict,
    pooled: np.ndarray | None = None,
    alpha: float = 1.0,
) -> np.ndarray:
    from sklearn.linear_model import Ridge

    pooled = pooled_raw_features(data) if pooled is None else pooled

    def xy(p):
        x = day_inputs_numpy(data, p, pooled)[:, :-1]  # (B, D-1, F)
        y = _z(data, p, norm)[:, 1:]
        return x.reshape(-1, x.shape[-1]), y.reshape(-1)

    x, y = xy(train_p)
    ok = ~np.isnan(y)
    mu, sd = x[ok].mean(0), x[ok].std(0) + 1e-6
    model = Ridge(alpha=alpha).fit((x[ok] - mu) / sd, y[ok])
    xt, _ = xy(test_p)
    return model.predict((xt - mu) / sd).reshape(len(test_p), data.n_days - 1)


# LightGBM features of product-day (p, t), all known when day t closes
LGBM_FEATURES = (
    "log_units",
    "log_units_lag1",
    "log_units_lag2",
    "log_units_lag6",
    "mean3",
    "mean7",
    "day",
    "weekday",
    "log_price",
    "discount",
    "rating",
    "category",
    "log_history_sales",
    "log_history_videos",
    "n_active",
    "n_new",
    "n_active_lag1",
    "sum_likes",
    "sum_shares",
    "sum_comments",
    "sum_collects",
    "sum_impressions",
    "sum_log_followers",
    "new_impressions",
    "sum_impressions_lag1",
    "collects_per_impression",
)


def lgbm_table(data: LammData, products: np.ndarray) -> np.ndarray:
    """(B, D, len(LGBM_FEATURES)) tabular aggregates."""
    import pandas as pd

    from inference.lamm_data import _ranges

    p = np.asarray(products)
    b, d = len(p), data.n_days
    y = pd.DataFrame(data.log_units()[p].T).ffill().fillna(0.0).to_numpy().T  # (B, D)

    def lag(a, k):
        out = np.full_like(a, np.nan)
        out[:, k:] = a[:, :-k] if k else a
        return out

    def roll(a, k):
        c = np.cumsum(np.pad(a, ((0, 0), (1, 0))), axis=1)
        n = np.minimum(np.arange(1, d + 1), k)
        return (c[:, 1:] - c[:, np.maximum(np.arange(1, d + 1) - k, 0)]) / n

    pos = np.full(data.n_products, -1, dtype=np.int64)
    pos[p] = np.arange(b)
    pairs = _ranges(data.pair_start, p)
    slot = pos[data.pair_product[pairs]] * d + data.pair_day[pairs]
    raw = data.pair_raw[pairs]  # likes, shares, comments, collects, impressions, followers
    sums = np.zeros((b * d, 6))
    np.add.at(sums, slot, np.column_stack([raw[:, :5], np.log1p(raw[:, 5])]))
    age = data.pair_side[pairs][:, 5] * L.WINDOW_DAYS
    new_imp = np.zeros(b * d)
    np.add.at(new_imp, slot, raw[:, 4] * (age < 0.5))
    sums = sums.reshape(b, d, 6)
    px = data.product_x[p]  # units, log price, rating/100, log1p n_active, log1p n_new, has_videos
    cat = np.broadcast_to(data.category[p][:, None], (b, d)).astype(np.float64)
    list_price = np.expm1(px[:, :1, 1])
    cols = [
        y,
        lag(y, 1),
        lag(y, 2),
        lag(y, 6),
        roll(y, 3),
        roll(y, 7),
        np.broadcast_to(np.arange(d)[None], (b, d)),
        np.broadcast_to(np.arange(d)[None] % 7, (b, d)),
        px[..., 1],
        np.expm1(px[..., 1]) / np.maximum(list_price, 1e-6),
        px[..., 2],
        cat,
        np.broadcast_to(np.log1p(data.history_sales[p])[:, None], (b, d)),
        np.broadcast_to(np.log1p(data.history_videos[p])[:, None], (b, d)),
        np.expm1(px[..., 3]),
        np.expm1(px[..., 4]),
        lag(np.expm1(px[..., 3]), 1),
        *[np.log1p(sums[..., i]) for i in range(5)],
        sums[..., 5],
        np.log1p(new_imp.reshape(b, d)),
        lag(np.log1p(sums[..., 4]), 1),
        np.log1p(sums[..., 3]) - np.log1p(sums[..., 4]),
    ]
    if data.video_q is not None:  # + the content-lift channel (inference.content_scores), last
        cols.append(content_channel(data, p)[..., 0])
    return np.stack([np.asarray(c, dtype=np.float64) for c in cols], axis=-1)


def lgbm_xy(data: LammData, products: np.ndarray, norm: dict) -> tuple[np.ndarray, np.ndarray]:
    """The LightGBM baseline's rows: day t's aggregates (N, len(LGBM_FEATURES)) and day t+1's z (N,)."""
    x = lgbm_table(data, products)[:, :-1]
    y = _z(data, products, norm)[:, 1:]
    return x.reshape(-1, x.shape[-1]), y.reshape(-1)


def fit_predict_lightgbm(
    data: LammData,
    fit_p: np.ndarray,
    cal_p: np.ndarray,
    test_p: np.ndarray,
    norm: dict,
    seed: int = 0,
    threads: int = 2,
    params: dict | None = None,
    tune: bool = True,
) -> np.ndarray:
    """The LightGBM baseline's (B_test, D-1) z: fitted on ``fit_p``, early-stopped on ``cal_p``;
    with ``tune`` (and no ``params``) its settings are the ``gbm_head.TUNE_GRID`` point with the
    lowest MAE on ``cal_p``, as the served head's are, else ``params`` (default
    ``gbm_head.LGBM_PARAMS``; tests/bench/lightgbm_tuned.py searches a wider grid)."""
    from inference.gbm_head import fit_lightgbm, fit_lightgbm_tuned

    (x, y), (xv, yv) = lgbm_xy(data, fit_p, norm), lgbm_xy(data, cal_p, norm)
    cat = [LGBM_FEATURES.index("category")]
    if tune and params is None:
        model, _, _ = fit_lightgbm_tuned(x, y, xv, yv, seed=seed, threads=threads, categorical=cat)
    else:
        model = fit_lightgbm(x, y, xv, yv, seed=seed, threads=threads, categorical=cat, params=params)
    xt, _ = lgbm_xy(data, test_p, norm)
    return model.predict(xt).reshape(len(test_p), data.n_days - 1)
