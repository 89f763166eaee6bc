"""LAMM: ladder-attention multimodal sales-lift forecaster (one model, one file).

Three parts, as in the LAMM paper (sections 3.3-3.4):

1. Video encoder (Eq. 2-3). Per-modality input projections of frame / motion / audio segments
   (20 x 3.2 s, padded) and title tokens to d=128, then a ladder of mutual multi-head attention
   layers that fuse text, audio and motion in turn into the frame sequence (the target), then a
   masked average over frame segments: ``h_v`` (N, H).
2. Day input (Eq. 4-5): ``[h_v, side]`` averaged over the product's active videos plus product
   side input, built by ``inference.daily`` (numpy, streaming) and ``inference.lamm_data``
   (torch, training) so both agree.
3. Day model (Eq. 6): an LSTM over days predicting the next day's standardized log1p units, plus
   a skip from the tabular part of x (today's and the trailing days' units dominate tomorrow's):
   linear + a small MLP (``skip_hidden``); input dropout only on the video part (``tab_dropout``).

Eq. (2) as printed takes Q from the auxiliary modality B and K, V from the target A; the
result then has B's length, not the frame's. ``reading="target_query"`` (default) resolves it so
the result stays aligned with the frame segments: Q from the frame sequence, K/V from the
auxiliary, residual + layer norm (each frame segment gathers what it needs from the auxiliary).
``reading="aux_query"`` is the literal reading: Q from the auxiliary, K/V from the current target
sequence, residual on the auxiliary; the fused sequence takes the auxiliary's length and mask and
becomes the target of the next rung (text -> audio -> motion, the last two 20-segment aligned),
and h_v pools over the last rung's mask. Both are measured in docs/lamm.md.

Two implementation choices the paper leaves open, both switchable in ``LammConfig``: learned
position embeddings (one table for the 20 segments shared by frame / motion / audio, which run
on the same 3.2 s clock, one for title tokens), so that frame segment s can attend to motion /
audio segment s; and one position-wise feed-forward block (residual + layer norm) after the
last rung, so a segment can combine what it shows with what it gathered before pooling. Without
them attention is permutation-invariant over the auxiliary's segments and the fusion cannot
align them (measured on the small world's first fold: MAE 0.517 without, 0.477 with).

d=128 with 3 heads does not divide: each head has dim ``head_dim`` (default 43), so Q/K/V
project 128 -> 3*43=129 and the output projection maps 129 -> 128; scores scale by
1/sqrt(head_dim) (the per-head form of Eq. 2's 1/sqrt(d)).

``LammForecaster`` wraps a trained model, its normalisation constants and split-conformal
80% interval quantiles behind the ``inference.client`` forecaster protocol.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from inference.client import StepOutput, VideoBatch
from inference.daily import NO_VIDEO_FEATURES, PRODUCT_DIM, PRODUCT_FEATURES, SIDE_DIM
from inference.gbm_head import GbmHead
from inference.model_dir import ModelDirError, require_files
from schemas import limits as L

LADDER = ("text", "audio", "motion")  # fused in turn into the frame target (Figure 3)


@dataclass
class LammConfig:
    feature_dim: int = L.FEATURE_DIM  # input feature dim of every modality (128)
    d_model: int = 128  # per-modality representation dim (paper: 128); h_v has this dim
    n_heads: int = 3  # mutual multi-head attention heads (section 4.4)
    head_dim: int = 43  # per-head dim: 3 * 43 = 129 inner, projected back to 128
    hidden: int = 128  # LSTM hidden size (section 4.4)
    dropout: float = 0.2  # section 4.4
    ladder: tuple[str, ...] = LADDER  # auxiliary modalities fused into frame, in order; ablations drop some
    positions: bool = True  # learned segment / token position embeddings (lets segment s attend to segment s)
    ffn: int = 256  # hidden width of the position-wise feed-forward after the ladder (0 = none)
    use_frame: bool = (
        True  # False = "w/o frame" ablation: frame features zeroed (target is a learned constant)
    )
    reading: str = (
        "target_query"  # Eq. (2) reading: "target_query" (aligned to frames) | "aux_query" (literal)
    )
    # day model, not in the paper (docs/lamm.md): the level columns (units, trailing units) reach the LSTM
    # without input dropout, and the skip from the side + product part is linear + a small MLP
    tab_dropout: bool = False  # True: input dropout on the side + product part too (the v2 model)
    skip_hidden: int = 64  # 0: linear skip only (the v2 model); > 0: plus a 1-hidden-layer MLP of that width
    # one more column at the end of x: the content-lift channel of inference.content_scores (the
    # active videos' PE-score conversion rates x impressions); docs/lamm.md, "Content scores"
    content_channel: bool = False

    def __post_init__(self) -> None:
        self.ladder = tuple(self.ladder)
        assert set(self.ladder) <= set(LADDER), f"expected ladder modalities from {LADDER}, got {self.ladder}"
        assert self.reading in ("target_query", "aux_query"), f"unknown reading {self.reading!r}"

    @property
    def x_dim(self) -> int:
        return self.d_model + self.tab_dim  # day input: [mean h_v, mean side, product(, content)]

    @property
    def tab_dim(self) -> int:
        """Width of x's side + product (+ content channel) part, what the skip and the GBM head read."""
        return SIDE_DIM + PRODUCT_DIM + int(self.content_channel)

    def x_column(self, product_feature: str) -> int:
        """Index in x of a column of the product part (``inference.daily.PRODUCT_FEATURES``)."""
        return self.d_model + SIDE_DIM + PRODUCT_FEATURES.index(product_feature)


class MutualAttention(nn.Module):
    """Eq. (2) with heads: ``query`` attends over ``key`` (masked); residual + layer norm on the query."""

    def __init__(self, cfg: LammConfig):
        super().__init__()
        inner = cfg.n_heads * cfg.head_dim
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.q = nn.Linear(cfg.d_model, inner)
        self.k = nn.Linear(cfg.d_model, inner)
        self.v = nn.Linear(cfg.d_model, inner)
        self.o = nn.Linear(inner, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, query: torch.Tensor, key: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        n, lq, d = query.shape  # (N, Lq, d)
        lk = key.shape[1]  # key: (N, Lk, d), key_mask: (N, Lk) bool
        hh, hd = self.n_heads, self.head_dim
        q = self.q(query).view(n, lq, hh, hd).transpose(1, 2)  # (N, h, Lq, hd)
        k = self.k(key).view(n, lk, hh, hd).transpose(1, 2)  # (N, h, Lk, hd)
        v = self.v(key).view(n, lk, hh, hd).transpose(1, 2)  # (N, h, Lk, hd)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)  # (N, h, Lq, Lk)
        scores = scores.masked_fill(~key_mask[:, None, None, :], -1e9)
        w = torch.softmax(scores, dim=-1)
        # a video with no valid key (e.g. an empty title) gets nothing from that modality
        w = w * key_mask.any(dim=1).to(w.dtype)[:, None, None, None]
        out = (w @ v).transpose(1, 2).reshape(n, lq, hh * hd)  # (N, Lq, h*hd)
        return self.norm(query + self.drop(self.o(out)))  # (N, Lq, d)


class Lamm(nn.Module):
    """Video encoder + day LSTM. Buffers hold the input/target normalisation constants."""

    def __init__(self, cfg: LammConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.proj = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(cfg.feature_dim, d), nn.LayerNorm(d)) for m in ("frame", *LADDER)}
        )
        # segment positions are shared by frame / motion / audio (the same 3.2 s clock), tokens have their own
        self.pos_seg = nn.Parameter(torch.zeros(L.MAX_SEGMENTS, d)) if cfg.positions else None
        self.pos_tok = nn.Parameter(torch.zeros(L.MAX_TITLE_TOKENS, d)) if cfg.positions else None
        self.ladder = nn.ModuleDict({m: MutualAttention(cfg) for m in cfg.ladder})
        if cfg.ffn:
            self.ffn = nn.Sequential(
                nn.Linear(d, cfg.ffn), nn.GELU(), nn.Linear(cfg.ffn, d), nn.Dropout(cfg.dropout)
            )
            self.ffn_norm = nn.LayerNorm(d)
        tab = cfg.tab_dim
        self.register_buffer("x_mean", torch.zeros(tab))  # side + product part of x
        self.register_buffer("x_std", torch.ones(tab))
        self.register_buffer("y_mean", torch.zeros(()))  # target: (log1p(units) - y_mean) / y_std
        self.register_buffer("y_std", torch.ones(()))
        self.in_drop = nn.Dropout(cfg.dropout)
        self.lstm = nn.LSTM(cfg.x_dim, cfg.hidden, batch_first=True)
        self.out_drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.hidden, 1)
        self.skip = Skip(tab, cfg.skip_hidden)

    # ---- video encoder (Eq. 2-3)
    def encode(self, frame, motion, audio, seg_mask, title, title_mask) -> torch.Tensor:
        n, s, f = frame.shape
        assert s <= L.MAX_SEGMENTS and f == self.cfg.feature_dim, (
            f"expected frame (N, S<={L.MAX_SEGMENTS}, {self.cfg.feature_dim}), got {tuple(frame.shape)}"
        )
        assert motion.shape == frame.shape and audio.shape == frame.shape, (
            f"expected motion/audio {tuple(frame.shape)}, got {tuple(motion.shape)} {tuple(audio.shape)}"
        )
        t = title.shape[1]
        assert (
            seg_mask.shape == (n, s)
            and title.shape == (n, t, f)
            and title_mask.shape == (n, t)
            and t <= L.MAX_TITLE_TOKENS
        ), (
            f"expected seg_mask {(n, s)}, title (N, T<={L.MAX_TITLE_TOKENS}, {f}), title_mask (N, T); got "
            f"{tuple(seg_mask.shape)}, {tuple(title.shape)}, {tuple(title_mask.shape)}"
        )
        seg_mask, title_mask = seg_mask.bool(), title_mask.bool()
        if not self.cfg.use_frame:
            frame = torch.zeros_like(frame)
        aux = {"motion": (motion, seg_mask), "audio": (audio, seg_mask), "text": (title, title_mask)}
        seq, mask = self._project("frame", frame), seg_mask  # (N, S, d) the frame target
        for m in self.cfg.ladder:
            a = self._project(m, aux[m][0])  # (N, S or T, d)
            if self.cfg.reading == "target_query":
                seq = self.ladder[m](seq, a, aux[m][1])  # (N, S, d) stays aligned with frames
            else:
                seq, mask = self.ladder[m](a, seq, mask), aux[m][1]  # (N, len(aux), d): Eq. 2 literally
        if self.cfg.ffn:  # position-wise: lets a segment combine what it is with what it gathered
            seq = self.ffn_norm(seq + self.ffn(seq))
        w = mask.to(seq.dtype)[..., None]  # (N, L, 1)
        return (seq * w).sum(1) / w.sum(1).clamp(min=1.0)  # (N, d) Eq. 3: masked average pooling

    def _project(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        h = self.proj[modality](x)  # (N, L, d)
        if self.cfg.positions:
            pos = self.pos_tok if modality == "text" else self.pos_seg
            h = h + pos[: x.shape[1]]
        return h

    def encode_packed(
        self, frame, motion, audio, seg_mask, title, title_mask, chunk: int = 1024
    ) -> torch.Tensor:
        return encode_packed(
            self.encode,
            frame,
            motion,
            audio,
            seg_mask,
            title,
            title_mask,
            d_model=self.cfg.d_model,
            chunk=chunk,
        )

    # ---- day model (Eq. 6)
    def _tab(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert x.shape[-1] == self.cfg.x_dim, f"expected x (..., {self.cfg.x_dim}), got {tuple(x.shape)}"
        d = self.cfg.d_model
        tab = (x[..., d:] - self.x_mean) / self.x_std  # (..., SIDE+PRODUCT)
        return torch.cat([x[..., :d], tab], dim=-1), tab

    def forward_days(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        """x (B, T, F) day inputs -> (z (B, T) next-day standardized log1p units, (h, c))."""
        assert x.ndim == 3, f"expected x (B, T, {self.cfg.x_dim}), got {tuple(x.shape)}"
        xn, tab = self._tab(x)  # (B, T, F), (B, T, SIDE+PRODUCT)
        if self.cfg.tab_dropout:
            xn = self.in_drop(xn)
        else:  # the level columns (units, lags) reach the LSTM intact; the video part is still dropped
            d = self.cfg.d_model
            xn = torch.cat([self.in_drop(xn[..., :d]), xn[..., d:]], dim=-1)
        o, hc = self.lstm(xn, state)  # (B, T, hidden)
        z = self.out(self.out_drop(o)).squeeze(-1) + self.skip(tab).squeeze(-1)  # (B, T)
        return z, hc

    def step(self, state: torch.Tensor, x: torch.Tensor, baseline: bool = False, weights=None):
        """One day for N products: state (N, 2*hidden) = [h, c], x (N, F) -> (state, z (N,)[, z0 (N,)]).

        The LSTM cell written out (same weights and gate order i, f, g, o as ``nn.LSTM``; the
        parity test checks it against ``forward_days``) so that the no-video counterfactual z0
        (x's video part zeroed: mean h_v and side zero, n_active = n_new = has_videos = 0 and the
        engagement sums zero) reuses the recurrent half of the gates and costs a (SIDE + PRODUCT)-wide
        matmul instead of a second step. ``weights``: ``step_weights()``, computed once by a caller
        that steps many row chunks (LammForecaster.step); computed here when not given.
        """
        hid, d = self.cfg.hidden, self.cfg.d_model
        n = x.shape[0]
        assert state.shape == (n, 2 * hid), f"expected state ({n}, {2 * hid}), got {tuple(state.shape)}"
        assert x.ndim == 2, f"expected x (N, {self.cfg.x_dim}), got {tuple(x.shape)}"
        w_x, w_h, bias = self.step_weights() if weights is None else weights
        h, c = state[:, :hid], state[:, hid:]  # (N, hidden) each
        xn, tab = self._tab(x)  # (N, F), (N, SIDE+PRODUCT)
        # addmm adds inside the GEMM: a separate add over the (N, 4*hidden) gates cost as much as the matmul
        rec = torch.addmm(bias, h, w_h)  # (N, 4*hidden)
        h1, c1 = _lstm_cell_doubled_g(torch.addmm(rec, xn, w_x), c)
        z = self.out(h1).squeeze(-1) + self.skip(tab).squeeze(-1)  # (N,)
        new_state = torch.cat([h1, c1], dim=1)
        if not baseline:
            return new_state, z
        raw0 = x[:, d:].clone()  # (N, SIDE+PRODUCT) raw side + product part
        raw0[:, :SIDE_DIM] = 0.0
        raw0[:, self.no_video_cols] = 0.0
        tab0 = (raw0 - self.x_mean) / self.x_std
        h0, _ = _lstm_cell_doubled_g(torch.addmm(rec, tab0, w_x[d:]), c)  # the video half of x is zero
        z0 = self.out(h0).squeeze(-1) + self.skip(tab0).squeeze(-1)
        return new_state, z, z0

    def step_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The LSTM's weights as ``step`` uses them: W_ih^T (F, 4*hidden), W_hh^T (hidden, 4*hidden)
        and b_ih + b_hh, with the g gate's columns doubled (``_lstm_cell_doubled_g``)."""
        hid = self.cfg.hidden
        scale = torch.ones(4 * hid, device=self.lstm.weight_ih_l0.device)
        scale[2 * hid : 3 * hid] = 2.0
        lstm = self.lstm
        return (
            lstm.weight_ih_l0.T * scale,
            lstm.weight_hh_l0.T * scale,
            (lstm.bias_ih_l0 + lstm.bias_hh_l0) * scale,
        )

    # columns of x's side + product part that say "there are videos" (zeroed for the counterfactual)
    _no_video_cols = [SIDE_DIM + PRODUCT_FEATURES.index(k) for k in NO_VIDEO_FEATURES]

    @property
    def no_video_cols(self) -> list[int]:
        """``_no_video_cols`` and the content channel when there is one (0 = no active video)."""
        return self._no_video_cols + ([SIDE_DIM + PRODUCT_DIM] if self.cfg.content_channel else [])


class Skip(nn.Module):
    """Skip path from the standardised side + product part of x to the output: linear, plus a
    small MLP when ``hidden`` > 0 (non-linear use of the level columns without the recurrence)."""

    def __init__(self, tab: int, hidden: int):
        super().__init__()
        self.linear = nn.Linear(tab, 1)
        self.mlp = nn.Sequential(nn.Linear(tab, hidden), nn.GELU(), nn.Linear(hidden, 1)) if hidden else None

    def forward(self, tab: torch.Tensor) -> torch.Tensor:  # (..., SIDE+PRODUCT) -> (..., 1)
        out = self.linear(tab)
        return out if self.mlp is None else out + self.mlp(tab)


def _lstm_cell_doubled_g(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """nn.LSTM's cell from precomputed gates (N, 4*hidden) in PyTorch's i, f, g, o order, the g
    gate's pre-activation doubled (``Lamm.step_weights``): tanh(g) = 2 sigmoid(2g) - 1, so one
    sigmoid over all four gates and one for tanh(c') replace three sigmoids and two tanhs (tanh is
    the slower kernel on CPU; docs/lamm.md "Serving cost, second pass"), the same numbers to
    float32 rounding."""
    i, f, g2, o = torch.sigmoid(gates).chunk(4, dim=1)
    c1 = torch.addcmul(torch.addcmul(-i, i, g2, value=2.0), f, c)  # f c + i (2 sigmoid(2g) - 1)
    h1 = torch.addcmul(-o, o, torch.sigmoid(2.0 * c1), value=2.0)  # o tanh(c')
    return h1, c1


def encode_packed(encode, frame, motion, audio, seg_mask, title, title_mask, d_model: int, chunk: int = 1024):
    """``encode`` over length-sorted chunks trimmed to their longest video / title.

    Same numbers as ``encode`` on the padded batch (padding is masked out of attention keys and
    pooling, and layer norms are per position), a fraction of the work: most videos are far
    shorter than 20 segments and most titles far shorter than 32 tokens.
    """
    n = frame.shape[0]
    if n == 0:
        return frame.new_zeros((0, d_model))
    dev = seg_mask.device
    pos_s = torch.arange(1, seg_mask.shape[1] + 1, device=dev)
    pos_t = torch.arange(1, title_mask.shape[1] + 1, device=dev)
    len_s = (seg_mask.bool() * pos_s).amax(1)  # (N,) 1 + last real segment
    len_t = (title_mask.bool() * pos_t).amax(1)  # (N,) 1 + last real token
    # one host copy of the lengths: the chunk loop reads them per chunk (a device sync each on a GPU)
    len_s_host, len_t_host = len_s.cpu(), len_t.cpu()
    order = torch.argsort(len_s * (title_mask.shape[1] + 1) + len_t)
    parts = []
    order_host = order.cpu()
    for i in range(0, n, chunk):
        idx, idx_host = order[i : i + chunk], order_host[i : i + chunk]
        s, t = max(int(len_s_host[idx_host].max()), 1), max(int(len_t_host[idx_host].max()), 1)
        parts.append(
            encode(
                frame[idx, :s],
                motion[idx, :s],
                audio[idx, :s],
                seg_mask[idx, :s],
                title[idx, :t],
                title_mask[idx, :t],
            )
        )
    return torch.cat(parts).index_select(0, torch.argsort(order))  # (N, d) back in input order


def masked_pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, L, D), (N, L) bool -> (N, D) mean over real positions (zeros if none)."""
    w = mask.to(x.dtype)[..., None]
    return (x * w).sum(1) / w.sum(1).clamp(min=1.0)


# ----------------------------------------------------------------------------------------------
# Serving: the forecaster protocol of inference.client


INTERVAL_BY = "n_active"  # the product-part column the served interval is conditioned on


@dataclass
class Conformal:
    """Split-conformal quantiles of held-out residuals z_true - z_pred (standardized log1p scale).

    With ``edges`` the interval is group-conditional (Mondrian conformal): the held-out rows are
    bucketed by one column of the day input x (``column``; the served forecaster uses log1p of the
    product's active videos, ``INTERVAL_BY``; buckets at quantiles of the held-out rows), each bucket gets its own quantiles
    (``q_lo_by`` / ``q_hi_by``), and a forecast takes its row's bucket's. A product with three
    videos is harder to forecast than one with thirty, and one interval for both under-covers the
    first and over-covers the second (docs/lamm.md, "Intervals by active videos"). ``q_lo`` /
    ``q_hi`` stay the all-rows quantiles; without edges they are the interval."""

    level: float = 0.8
    q_lo: float = -1.0
    q_hi: float = 1.0
    n_calib: int = 0
    column: int = -1  # index into x of the bucketing column (with edges)
    edges: tuple[float, ...] = ()  # inner bucket edges, ascending: len(edges) + 1 buckets
    q_lo_by: tuple[float, ...] = ()
    q_hi_by: tuple[float, ...] = ()
    n_by: tuple[int, ...] = ()

    def __post_init__(self) -> None:  # tuples, also when read back from JSON lists
        for name in ("edges", "q_lo_by", "q_hi_by", "n_by"):
            setattr(self, name, tuple(getattr(self, name)))
        k = len(self.edges) + 1 if self.edges else 0
        if not all(len(v) == k for v in (self.q_lo_by, self.q_hi_by, self.n_by)):
            raise ValueError(f"Conformal: {len(self.edges)} edges need {k} quantiles per bucket")
        if self.edges and self.column < 0:
            raise ValueError("Conformal: bucket edges need the column of x they apply to")

    @staticmethod
    def _quantiles(residuals: np.ndarray, level: float) -> tuple[float, float, int]:
        r = np.sort(np.asarray(residuals, dtype=np.float64).ravel())
        n = r.size
        assert n > 0, "conformal calibration needs held-out residuals"
        a = (1.0 - level) / 2.0
        # finite-sample corrected ranks for each tail (split conformal, two one-sided bounds)
        lo = max(int(np.floor(a * (n + 1))) - 1, 0)
        hi = min(int(np.ceil((1.0 - a) * (n + 1))) - 1, n - 1)
        # the interval always contains the point (only ever widens it: coverage stays >= level)
        return min(float(r[lo]), 0.0), max(float(r[hi]), 0.0), n

    @classmethod
    def fit(
        cls,
        residuals: np.ndarray,
        level: float = 0.8,
        by: np.ndarray | None = None,
        column: int = -1,
        buckets: int = 4,
        min_rows: int = 500,
    ) -> Conformal:
        """One interval from all ``residuals``; with ``by`` (each residual's value of x[:, column])
        up to ``buckets`` quantile buckets of it, as many as keep ``min_rows`` held-out rows in
        each (one bucket, i.e. the global interval, where there are fewer than 2 x min_rows)."""
        r = np.asarray(residuals, dtype=np.float64).ravel()
        q_lo, q_hi, n = cls._quantiles(r, level)
        k = 0 if by is None else min(buckets, r.size // min_rows)
        if k < 2:
            return cls(level=level, q_lo=q_lo, q_hi=q_hi, n_calib=n)
        v = np.asarray(by, dtype=np.float64).ravel()
        assert v.shape == r.shape, f"by {v.shape} must match residuals {r.shape}"
        edges = np.unique(np.quantile(v, np.linspace(0.0, 1.0, k + 1)[1:-1]))
        b = np.searchsorted(edges, v, side="right")
        counts = np.bincount(b, minlength=edges.size + 1)
        while edges.size and counts.min() < min_rows:  # ties can leave a bucket short: merge it
            i = int(np.argmin(counts))
            edges = np.delete(edges, min(i, edges.size - 1))
            b = np.searchsorted(edges, v, side="right")
            counts = np.bincount(b, minlength=edges.size + 1)
        if not edges.size:
            return cls(level=level, q_lo=q_lo, q_hi=q_hi, n_calib=n)
        per = [cls._quantiles(r[b == j], level) for j in range(edges.size + 1)]
        return cls(
            level=level,
            q_lo=q_lo,
            q_hi=q_hi,
            n_calib=n,
            column=column,
            edges=tuple(float(e) for e in edges),
            q_lo_by=tuple(p[0] for p in per),
            q_hi_by=tuple(p[1] for p in per),
            n_by=tuple(p[2] for p in per),
        )

    def bucket(self, values: np.ndarray) -> np.ndarray:
        """(N,) bucket of each row from its value of the bucketing column; all 0 without edges."""
        values = np.asarray(values, np.float64)
        if not self.edges:
            return np.zeros(values.shape[0], dtype=np.int64)
        return np.searchsorted(np.asarray(self.edges), values, side="right")

    def offsets(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N,) lower and upper offsets on z for the rows of the day input x (N, x_dim)."""
        return self.offsets_by(x[:, self.column] if self.edges else np.zeros(x.shape[0]))

    def offsets_by(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N,) lower and upper offsets on z for rows whose bucketing column holds ``values``."""
        b = self.bucket(values)
        if not self.edges:
            return np.full(b.size, self.q_lo), np.full(b.size, self.q_hi)
        return np.asarray(self.q_lo_by)[b], np.asarray(self.q_hi_by)[b]


def _load_content(path: Path, cfg: LammConfig):
    if not cfg.content_channel:
        return None
    from inference.content_scores import ContentModel

    if not (path / "content.npz").exists():
        raise ValueError(f"checkpoint {path} reads the content channel but has no content.npz")
    return ContentModel.load(path / "content.npz")


@dataclass
class LammForecaster:
    """A trained LAMM behind ``encode`` / ``init_state`` / ``step`` (batched numpy, raw units out).

    With a ``gbm`` head (``inference.gbm_head``) ``step`` returns the blend of the LSTM's and the
    head's forecasts (and the conformal interval the blend was calibrated with); without one, the
    LSTM's alone."""

    model: Lamm
    conformal: Conformal
    with_baseline: bool = True  # also return the no-video counterfactual forecast
    step_chunk: int = 2048  # rows per step call inside ``step``
    meta: dict = field(default_factory=dict)
    model_version: str = ""
    gbm: GbmHead | None = None
    # inference.content_scores.ContentModel when cfg.content_channel: q_v of a video, which
    # ``encode`` appends to h_v, so the stream stores it with the encoding (inference.daily.day_input)
    content: object | None = None

    def __post_init__(self) -> None:
        self.model.eval()
        assert (self.content is not None) == self.cfg.content_channel, (
            "a content-channel LAMM needs its content model, and only it has one"
        )
        if not self.model_version:
            self.model_version = "lamm-" + self.fingerprint()

    @property
    def cfg(self) -> LammConfig:
        return self.model.cfg

    @property
    def content_channel(self) -> bool:
        """Whether x ends with the content-lift channel (and ``encode`` with q_v)."""
        return self.cfg.content_channel

    @property
    def hidden_dim(self) -> int:
        """Width of ``encode``'s output: h_v, and q_v after it with the content-lift channel."""
        return self.cfg.d_model + int(self.cfg.content_channel)

    @property
    def state_dim(self) -> int:
        return 2 * self.cfg.hidden

    def fingerprint(self) -> str:
        h = hashlib.sha256(json.dumps(asdict(self.cfg), sort_keys=True).encode())
        for k, v in sorted(self.model.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().numpy().tobytes())
        h.update(json.dumps(asdict(self.conformal), sort_keys=True).encode())
        if self.gbm is not None:
            h.update(f"gbm:{self.gbm.weight}:".encode() + self.gbm.model_str.encode())
        if self.content is not None:
            for v in (
                self.content.mu,
                self.content.sd,
                self.content.w,
                *self.content.det.to_arrays().values(),
            ):
                h.update(np.asarray(v, dtype=np.float64).tobytes())
        return h.hexdigest()[:12]

    @property
    def device(self) -> torch.device:
        return self.model.x_mean.device

    def to(self, device: str | torch.device) -> LammForecaster:
        """Runs ``encode`` and the LSTM half of ``step`` on ``device`` (e.g. "cuda": Triton's GPU
        instance calls this); numpy in and out stays the same, and the GBM head and content scores
        stay on the CPU."""
        self.model.to(device)
        return self

    def encode(self, videos: VideoBatch) -> np.ndarray:
        dev = self.device
        t = lambda a, dt=torch.float32: torch.from_numpy(np.ascontiguousarray(a)).to(dev, dt)  # noqa: E731
        with torch.inference_mode():
            h = self.model.encode_packed(
                t(videos.frame),
                t(videos.motion),
                t(videos.audio),
                t(videos.seg_mask, torch.bool),
                t(videos.title),
                t(videos.title_mask, torch.bool),
            )
        h = h.cpu().numpy()  # (N, H)
        if self.content is not None:  # + q_v: the stream turns it into the content-lift channel
            q = self.content.q(videos.frame, videos.motion, videos.audio, videos.seg_mask, videos.title)
            h = np.concatenate([h, q[:, None]], axis=1)
        return h

    def init_state(self, n: int) -> np.ndarray:
        return np.zeros((n, self.state_dim), dtype=np.float32)

    def to_units(self, z: np.ndarray) -> np.ndarray:
        y = z.astype(np.float64) * float(self.model.y_std) + float(self.model.y_mean)
        return np.expm1(np.clip(y, 0.0, 30.0))

    def step(self, state: np.ndarray, x: np.ndarray) -> StepOutput:
        n = x.shape[0]
        assert state.shape == (n, self.state_dim), (
            f"expected state ({n}, {self.state_dim}), got {state.shape}"
        )
        assert x.shape == (n, self.cfg.x_dim), f"expected x ({n}, {self.cfg.x_dim}), got {x.shape}"
        dev = self.device
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(dev)
        s = torch.from_numpy(np.ascontiguousarray(state, dtype=np.float32)).to(dev)
        new, z = torch.empty_like(s), torch.empty(n, device=dev)
        z0 = torch.empty(n, device=dev) if self.with_baseline else None
        # CPU: row chunks keep the (rows, 4*hidden) gate tensors in cache (faster at 100k rows);
        # an accelerator takes the whole batch in one launch
        chunk = self.step_chunk if dev.type == "cpu" else max(n, 1)
        with torch.inference_mode():
            w = self.model.step_weights()  # once per call, shared by the chunks
            for i in range(0, n, chunk):
                j = slice(i, i + chunk)
                if self.with_baseline:
                    new[j], z[j], z0[j] = self.model.step(s[j], xt[j], baseline=True, weights=w)
                else:
                    new[j], z[j] = self.model.step(s[j], xt[j], weights=w)
        z = z.cpu().numpy()
        z0 = None if z0 is None else z0.cpu().numpy()
        if self.gbm is not None:
            tab = np.asarray(x[:, self.cfg.d_model :], dtype=np.float32)
            z = self.gbm.blend(z, self.gbm.predict_z(tab))
            if z0 is not None:
                tab0 = tab.copy()  # the counterfactual's input, as Lamm.step builds it
                tab0[:, :SIDE_DIM] = 0.0
                tab0[:, self.model.no_video_cols] = 0.0
                z0 = self.gbm.blend(z0, self.gbm.predict_z(tab0))
        c = self.conformal
        lo, hi = c.offsets(x)
        return StepOutput(
            state=new.cpu().numpy(),
            point=self.to_units(z),
            lower=self.to_units(z + lo),
            upper=self.to_units(z + hi),
            level=c.level,
            baseline=None if z0 is None else self.to_units(z0),
        )

    # ---- checkpoint dir: config.json, weights.pt, conformal.json, meta.json
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(asdict(self.cfg), indent=2))
        buf = io.BytesIO()
        torch.save({k: v.cpu() for k, v in self.model.state_dict().items()}, buf)
        (path / "weights.pt").write_bytes(buf.getvalue())
        (path / "conformal.json").write_text(json.dumps(asdict(self.conformal), indent=2))
        norm = {k: self.model.state_dict()[k].tolist() for k in ("x_mean", "x_std", "y_mean", "y_std")}
        meta = {**self.meta, "model_version": self.model_version, "normalisation": norm}
        (path / "meta.json").write_text(json.dumps(meta, indent=2))
        for stale in ("gbm.txt", "gbm.json", "content.npz"):  # a LAMM-only save over a blended one
            (path / stale).unlink(missing_ok=True)
        if self.gbm is not None:
            self.gbm.save(path)
        if self.content is not None:
            self.content.save(path / "content.npz")
        return path

    @classmethod
    def load(cls, path: str | Path, with_baseline: bool = True) -> LammForecaster:
        path = require_files(path, ("config.json", "weights.pt", "meta.json", "conformal.json"), "train")
        raw = json.loads((path / "config.json").read_text())
        # a checkpoint from before these options had the v2 day model: input dropout everywhere, linear skip
        raw.setdefault("tab_dropout", True)
        raw.setdefault("skip_hidden", 0)
        cfg = LammConfig(**raw)
        weights = torch.load(path / "weights.pt", map_location="cpu", weights_only=True)
        for k in ("weight", "bias"):  # the v2 skip was a bare Linear
            if f"skip.{k}" in weights:
                weights[f"skip.linear.{k}"] = weights.pop(f"skip.{k}")
        trained_x = weights["lstm.weight_ih_l0"].shape[1]
        if trained_x != cfg.x_dim:
            raise ModelDirError(
                f"checkpoint {path} was trained on a day input of {trained_x} columns, this code builds "
                f"{cfg.x_dim} (inference.daily.PRODUCT_FEATURES changed): retrain it"
            )
        model = Lamm(cfg)
        model.load_state_dict(weights)
        meta = json.loads((path / "meta.json").read_text())
        conf = Conformal(**json.loads((path / "conformal.json").read_text()))
        return cls(
            model,
            conf,
            with_baseline=with_baseline,
            meta=meta,
            model_version=meta["model_version"],
            gbm=GbmHead.load(path),
            content=_load_content(path, cfg),
        )
