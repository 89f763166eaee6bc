"""Glue between the pure state's requests and the model client, shared by every runner.

- ``FeatureResolver.resolve`` turns ``VideoPublished`` events into padded features: inline
  ``SegmentFeatures``, or a ``dataset://<dir>#row=<i>`` reference into a dataset's feature
  arrays. Other media URIs need the extractor models, which this build does not deploy: such an
  event is rejected with ``UnsupportedMedia`` (a dead letter, not a crash).
- ``run_forecasts`` / ``run_forecasts_async`` batch ``ForecastRequest``s through
  ``client.step`` (rows that need several days, after a gap, advance position by position).
- ``advice_rows`` turns an ``AdviceBatch`` into ``InfluencerAdvice`` rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from inference.client import AdviceBatch, StepOutput, VideoBatch, VideoMeta
from schemas import limits as L
from schemas.dataset import load_features
from schemas.events import VideoPublished
from schemas.outputs import InfluencerAdvice
from streams.state import AdviceRequest, ForecastRequest, ForecastResult, ordinal_day

VIDEO_TYPE_INDEX = {name: i for i, name in enumerate(L.VIDEO_TYPES)}


class UnsupportedMedia(ValueError):
    """The video's media_uri cannot be turned into features by this deployment."""


class FeatureResolver:
    """Padded feature rows for video events (inline features or dataset references)."""

    def __init__(self) -> None:
        self._datasets: dict[str, dict[str, np.ndarray]] = {}

    def _dataset(self, root: str) -> dict[str, np.ndarray]:
        if root not in self._datasets:
            if not Path(root, "features").is_dir():
                raise UnsupportedMedia(f"dataset {root!r} has no features/ folder")
            self._datasets[root] = load_features(root)
        return self._datasets[root]

    def resolve(self, events: Sequence[VideoPublished]) -> tuple[VideoBatch, dict[int, str]]:
        """One padded batch for ``events`` and {position: error} for those that cannot be resolved
        (their rows stay zero); each event is resolved once, dataset rows in one gather per dataset."""
        # rows of dataset references are overwritten whole: skip zero-filling when every row is one
        all_refs = all(ev.features is None for ev in events)
        b = VideoBatch.empty(len(events), fill=not all_refs)
        errors: dict[int, str] = {}
        refs: dict[str, list[tuple[int, int]]] = {}  # dataset dir -> [(batch row, dataset row)]
        for i, ev in enumerate(events):
            try:
                ref = self._fill(b, i, ev)
            except UnsupportedMedia as exc:
                errors[i] = str(exc)
                continue
            if ref is not None:
                refs.setdefault(ref[0], []).append((i, ref[1]))
        for root, pairs in refs.items():
            feats = self._dataset(root)
            dst = np.array([i for i, _ in pairs])
            src = np.array([r for _, r in pairs])
            order = np.argsort(src)  # memory-mapped arrays gather fastest in file order
            dst, src = dst[order], src[order]
            for name in ("frame", "motion", "audio", "seg_mask", "title", "title_mask"):
                getattr(b, name)[dst] = feats[name][src]
        if not all_refs or not errors:
            return b, errors
        for i in errors:  # never-written rows of a no-fill batch: make them the zero padding they stand for
            for name in ("frame", "motion", "audio", "seg_mask", "title", "title_mask"):
                getattr(b, name)[i] = 0
        return b, errors

    def _fill(self, b: VideoBatch, i: int, ev: VideoPublished) -> tuple[str, int] | None:
        """Fill row ``i`` from inline features, or return the (dataset dir, row) to gather."""
        if ev.features is not None:
            a = ev.features.arrays()
            ns, nt = a["frame"].shape[0], a["title"].shape[0]
            b.frame[i, :ns], b.motion[i, :ns], b.audio[i, :ns] = a["frame"], a["motion"], a["audio"]
            b.seg_mask[i, :ns] = True
            b.title[i, :nt], b.title_mask[i, :nt] = a["title"], True
            return None
        uri = urlparse(ev.media_uri or "")
        if uri.scheme != "dataset":
            raise UnsupportedMedia(
                f"media_uri scheme {uri.scheme!r} needs the feature extractors, which are not deployed; "
                "send pre-extracted features or a dataset:// reference"
            )
        try:
            row = int(dict(p.split("=", 1) for p in uri.fragment.split("&") if p)["row"])
        except (KeyError, ValueError) as exc:
            raise UnsupportedMedia(f"media_uri {ev.media_uri!r}: expected dataset://<dir>#row=<n>") from exc
        feats = self._dataset(uri.path)
        if not 0 <= row < feats["frame"].shape[0]:
            raise UnsupportedMedia(f"media_uri {ev.media_uri!r}: row out of range")
        return uri.path, row


def video_meta(events: Sequence[VideoPublished], batch: VideoBatch) -> VideoMeta:
    return VideoMeta(
        followers=np.array([e.influencer.followers for e in events], dtype=np.float64),
        past_avg_hearts=np.array([e.influencer.past_avg_hearts for e in events], dtype=np.float64),
        verified=np.array([e.influencer.verified for e in events], dtype=bool),
        video_type=np.array([VIDEO_TYPE_INDEX[e.video_type] for e in events], dtype=np.int64),
        length_s=np.array([e.length_s for e in events], dtype=np.float64),
        create_hour=np.array([e.create_hour for e in events], dtype=np.int64),
        n_segments=batch.seg_mask.sum(1).astype(np.int64),
    )


def _gather(reqs: Sequence[ForecastRequest], init: np.ndarray) -> tuple[np.ndarray, int]:
    states = np.stack([init if r.state is None else r.state for r in reqs]).astype(np.float32)
    return states, max(len(r.xs) for r in reqs)


class _Row:
    """One row of a StepOutput (attribute access)."""

    __slots__ = ("point", "lower", "upper", "level", "baseline")

    def __init__(self, out: StepOutput, i: int):
        self.point, self.lower, self.upper, self.level = out.point[i], out.lower[i], out.upper[i], out.level
        self.baseline = None if out.baseline is None else out.baseline[i]


def _plan(reqs: Sequence[ForecastRequest], pos: int) -> np.ndarray:
    return np.array([i for i, r in enumerate(reqs) if pos < len(r.xs)], dtype=np.int64)


def run_forecasts(client, reqs: Sequence[ForecastRequest]) -> list[ForecastResult]:
    """Run every request through ``client.step`` in as few batched calls as the gaps allow."""
    if not reqs:
        return []
    states, depth = _gather(reqs, client.init_state(1)[0])
    final: dict[int, _Row] = {}
    for pos in range(depth):
        idx = _plan(reqs, pos)
        x = np.stack([reqs[i].xs[pos] for i in idx]).astype(np.float32)
        out = client.step(states[idx], x)
        states[idx] = out.state
        for j, i in enumerate(idx):
            if pos == len(reqs[i].xs) - 1:
                final[i] = _Row(out, j)
    return [_to_result(states[i], final[i]) for i in range(len(reqs))]


async def run_forecasts_async(client, reqs: Sequence[ForecastRequest]) -> list[ForecastResult]:
    """``run_forecasts`` for an AsyncModelClient."""
    if not reqs:
        return []
    states, depth = _gather(reqs, (await client.init_state(1))[0])
    final: dict[int, _Row] = {}
    for pos in range(depth):
        idx = _plan(reqs, pos)
        x = np.stack([reqs[i].xs[pos] for i in idx]).astype(np.float32)
        out = await client.step(states[idx], x)
        states[idx] = out.state
        for j, i in enumerate(idx):
            if pos == len(reqs[i].xs) - 1:
                final[i] = _Row(out, j)
    return [_to_result(states[i], final[i]) for i in range(len(reqs))]


def _to_result(state: np.ndarray, row: _Row) -> ForecastResult:
    return ForecastResult(
        state=np.array(state, dtype=np.float32),
        point=float(row.point),
        lower=float(row.lower),
        upper=float(row.upper),
        level=float(row.level),
        baseline=None if row.baseline is None else float(row.baseline),
    )


def advice_rows(
    reqs: Sequence[AdviceRequest],
    batch: AdviceBatch,
    *,
    value_per_impression: float,
    cost_per_1k_followers: float,
    model_version: str,
    now: datetime,
) -> list[InfluencerAdvice]:
    rows = []
    for i, r in enumerate(reqs):
        opt = int(round(float(batch.optimal_followers[i])))
        rows.append(
            InfluencerAdvice(
                video_id=r.video_id,
                product_id=r.product_id,
                influencer_id=r.influencer_id,
                day=ordinal_day(r.day),
                followers=r.followers,
                tier=L.follower_tier(r.followers),
                fei=float(batch.fei[i]),
                curve_shape=batch.curve_shape[i],
                expected_impressions=float(batch.expected_impressions[i]),
                optimal_followers=opt,
                optimal_tier=L.follower_tier(opt),
                optimal_followers_low=min(opt, int(round(float(batch.optimal_followers_low[i])))),
                optimal_followers_high=max(opt, int(round(float(batch.optimal_followers_high[i])))),
                expected_impressions_optimal=float(batch.expected_impressions_optimal[i]),
                profit_actual=float(batch.profit_actual[i]),
                profit_optimal=float(batch.profit_optimal[i]),
                value_per_impression=value_per_impression,
                cost_per_1k_followers=cost_per_1k_followers,
                model_version=model_version,
                emitted_at=now,
            )
        )
    return rows
