"""Pure per-product state: what a product's stream remembers and how one event changes it.

The same code runs inside the Faust agents (production), the embedded runner (``liftstream
run``) and the unit tests. Nothing here does I/O or calls a model: model work is handed out as
requests and the results come back in, so callers can batch them (the embedded runner) or
await them (the agents)::

    state, res = apply_event(state, event, h=encoding_if_video, now=now)
    # res.rows: input rows to persist; res.forecasts: ForecastRequest to run; res.advice: AdviceRequest
    # res.status: "applied" | "duplicate" | "stale" | "rejected" (with res.rejection)
    for req in res.forecasts:
        out = model.step(req.state[None], req.xs[0][None]) ...   # the caller runs the forecaster
        state, rows = apply_forecast(state, req, result, model_version=..., now=now)

Rules (the contract the tests pin down):
- A video is active for its product on days publish_day .. publish_day + WINDOW_DAYS - 1.
- Redelivered events (same event_id) are ignored; a second event for the same natural key (video,
  or video+day, or product+day) replaces the stored input row and, where it is the latest,
  the value used, but never advances the recurrent state twice.
- A product's day closes with its ``SalesDaily``; a gap (sales for d when d-1 never closed) closes
  the missing days first with imputed units (the forecast made for that day). Sales for an
  already closed day are stored (corrections) but do not rewind the model: status "stale".
- Engagement for a video the product never saw is rejected (dead letter); for a video that has
  left the window it is stored and otherwise ignored ("stale").
- A forecast-drop alert compares the new day-close forecast with the trailing ones (see
  ``AlertConfig``) and is debounced per product.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

import numpy as np
from pydantic import BaseModel

from inference.daily import SIDE_DIM, day_input, product_features, side_features
from schemas import limits as L
from schemas.events import EngagementDaily, SalesDaily, VideoPublished
from schemas.outputs import ForecastAlert, SalesLiftForecast

STATE_VERSION = 1


@dataclass(frozen=True)
class AlertConfig:
    """Forecast-drop rule. A day-close forecast alerts when, against the trailing ``window``
    day-close forecasts, it falls below the mean of their lower bounds (``below_band``) or
    drops by more than ``pct_drop`` from the mean of their points (``pct_drop``); it is
    ``critical`` from ``critical_pct`` on. Products selling under ``min_reference_units`` a
    day never alert (noise), and a product alerts again only after ``cooldown_days`` unless the
    new alert is critical and the last was not.
    """

    window: int = 3
    pct_drop: float = 0.30
    critical_pct: float = 0.50
    min_reference_units: float = 5.0
    cooldown_days: int = 3
    use_band: bool = True


@dataclass
class VideoSlot:
    h: np.ndarray  # (H,) the video's encoding
    publish_day: int  # ordinal
    followers: int
    likes: int = 0
    comments: int = 0
    shares: int = 0
    collects: int = 0
    impressions: int = 0
    eng_day: int = -1  # ordinal day of the engagement values held (-1: none yet)


@dataclass
class TrailingForecast:
    issued_day: int
    target_day: int
    point: float
    lower: float
    upper: float


@dataclass
class ProductState:
    product_id: str
    revision: int = 0
    videos: dict[str, VideoSlot] = field(default_factory=dict)
    expired: dict[str, int] = field(default_factory=dict)  # video_id -> day it left the window
    seen: dict[str, int] = field(default_factory=dict)  # event_id -> day, pruned with the window
    closed_day: int | None = None  # last closed day (ordinal)
    recurrent: np.ndarray | None = None  # (R,) forecaster state after closed_day; None = initial
    units: float = 0.0  # units of closed_day
    price: float | None = None
    rating: float = 90.0
    trailing: list[TrailingForecast] = field(default_factory=list)
    last_alert_day: int | None = None
    last_alert_severity: str | None = None

    # -- serialisation for Faust tables (changelog) ---------------------------------------------
    def to_bytes(self) -> bytes:
        def arr(a: np.ndarray | None):
            if a is None:
                return None
            return base64.b64encode(np.ascontiguousarray(a, dtype=np.float32).tobytes()).decode("ascii")

        doc = {
            "v": STATE_VERSION,
            "product_id": self.product_id,
            "revision": self.revision,
            "videos": {
                vid: [arr(s.h), s.publish_day, s.followers, s.likes, s.comments, s.shares, s.collects, s.impressions, s.eng_day]
                for vid, s in self.videos.items()
            },
            "expired": self.expired,
            "seen": self.seen,
            "closed_day": self.closed_day,
            "recurrent": arr(self.recurrent),
            "units": self.units,
            "price": self.price,
            "rating": self.rating,
            "trailing": [[t.issued_day, t.target_day, t.point, t.lower, t.upper] for t in self.trailing],
            "last_alert_day": self.last_alert_day,
            "last_alert_severity": self.last_alert_severity,
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> ProductState:
        doc = json.loads(raw)
        if doc.get("v") != STATE_VERSION:
            raise ValueError(f"product state version {doc.get('v')!r}, this code reads {STATE_VERSION}")

        def arr(s):
            return None if s is None else np.frombuffer(base64.b64decode(s), dtype=np.float32).copy()

        return cls(
            product_id=doc["product_id"],
            revision=doc["revision"],
            videos={vid: VideoSlot(arr(v[0]), *v[1:]) for vid, v in doc["videos"].items()},
            expired={k: int(v) for k, v in doc["expired"].items()},
            seen={k: int(v) for k, v in doc["seen"].items()},
            closed_day=doc["closed_day"],
            recurrent=arr(doc["recurrent"]),
            units=doc["units"],
            price=doc["price"],
            rating=doc["rating"],
            trailing=[TrailingForecast(*t) for t in doc["trailing"]],
            last_alert_day=doc["last_alert_day"],
            last_alert_severity=doc["last_alert_severity"],
        )


@dataclass
class ForecastRequest:
    """Run the forecaster: advance ``state`` through each row of ``xs`` in turn (gap days first).

    ``state`` None means the forecaster's initial state. day_close requests must have their
    result applied before the product's next event (the agents await it; the embedded runner
    applies all of a day's requests before the next day).
    """

    product_id: str
    kind: Literal["provisional", "day_close"]
    issued_day: int
    revision: int
    state: np.ndarray | None
    xs: list[np.ndarray]  # each (F,)
    active_videos: int

    @property
    def target_day(self) -> int:
        return self.issued_day + 1


@dataclass
class ForecastResult:
    state: np.ndarray  # (R,) after the last x
    point: float
    lower: float
    upper: float
    level: float
    baseline: float | None = None


@dataclass
class AdviceRequest:
    """Ask the advisor about one new video (the caller has its features and meta)."""

    video_id: str
    product_id: str
    influencer_id: str
    day: int
    followers: int


@dataclass
class Rejection:
    error_type: str
    message: str


@dataclass
class StepResult:
    status: Literal["applied", "duplicate", "stale", "rejected"]
    rows: list[BaseModel] = field(default_factory=list)  # input rows to persist
    forecasts: list[ForecastRequest] = field(default_factory=list)
    advice: list[AdviceRequest] = field(default_factory=list)
    rejection: Rejection | None = None


def day_ordinal(d: date) -> int:
    return d.toordinal()


def ordinal_day(n: int) -> date:
    return date.fromordinal(n)


# ----------------------------------------------------------------------------------------------
# building the forecaster's input


def _active(state: ProductState, day: int) -> list[VideoSlot]:
    return [s for s in state.videos.values() if s.publish_day <= day < s.publish_day + L.WINDOW_DAYS]


def build_x(state: ProductState, day: int, units: float, price: float, rating: float, h_dim: int) -> tuple[np.ndarray, int]:
    """The forecaster input for ``day`` (inference.daily.day_input) and the active video count."""
    slots = _active(state, day)
    k = len(slots)
    if k:
        h = np.stack([s.h for s in slots])  # (K, H)
        side = side_features(
            [s.likes for s in slots],
            [s.shares for s in slots],
            [s.comments for s in slots],
            [s.collects for s in slots],
            [s.impressions for s in slots],
            [day - s.publish_day for s in slots],
            [s.followers for s in slots],
        )  # (K, SIDE_DIM)
    else:
        h = np.zeros((0, h_dim), dtype=np.float32)
        side = np.zeros((0, SIDE_DIM), dtype=np.float32)
    n_new = sum(1 for s in slots if s.publish_day == day)
    prod = product_features(units, price, rating, k, n_new)
    return day_input(h, side, prod), k


def _forecast_for(state: ProductState, day: int) -> float | None:
    for t in reversed(state.trailing):
        if t.target_day == day:
            return t.point
    return None


# ----------------------------------------------------------------------------------------------
# events


def apply_event(
    state: ProductState | None,
    event: VideoPublished | EngagementDaily | SalesDaily,
    *,
    h: np.ndarray | None = None,
    h_dim: int = L.FEATURE_DIM,
) -> tuple[ProductState, StepResult]:
    """Apply one validated input event to its product's state.

    ``h`` is the video's encoding and is required for ``VideoPublished`` (the caller runs the
    encoder, so a batch of videos can be encoded together). ``h_dim`` is the encoder's output
    size, used for products with no active video.
    """
    if state is None:
        state = ProductState(product_id=event.product_id)
    assert event.product_id == state.product_id, f"event for {event.product_id!r} applied to state of {state.product_id!r}"
    day = day_ordinal(event.day)
    if event.event_id in state.seen:
        return state, StepResult("duplicate")

    if isinstance(event, VideoPublished):
        res = _on_video(state, event, day, h, h_dim)
    elif isinstance(event, EngagementDaily):
        res = _on_engagement(state, event, day)
    elif isinstance(event, SalesDaily):
        res = _on_sales(state, event, day, h_dim)
    else:  # pragma: no cover - the tagged union admits nothing else
        raise TypeError(f"not an input event: {type(event).__name__}")

    if res.status != "rejected":
        state.seen[event.event_id] = day
        state.revision += 1
        # re-stamp requests with the revision that includes this event
        for req in res.forecasts:
            req.revision = state.revision
    return state, res


def _on_video(state: ProductState, ev: VideoPublished, day: int, h: np.ndarray | None, h_dim: int) -> StepResult:
    if h is None:
        raise ValueError("VideoPublished needs its encoding h (the caller runs the encoder)")
    assert h.shape == (h_dim,), f"expected encoding ({h_dim},), got {h.shape}"
    if ev.video_id in state.videos or ev.video_id in state.expired:
        # same video again under a new event id: keep the stored input row current, nothing else
        return StepResult("duplicate", rows=[ev])
    if ev.product is not None and state.price is None:
        state.price = ev.product.price
    state.videos[ev.video_id] = VideoSlot(
        h=np.asarray(h, dtype=np.float32), publish_day=day, followers=ev.influencer.followers
    )
    res = StepResult("applied", rows=[ev])
    res.advice.append(
        AdviceRequest(ev.video_id, ev.product_id, ev.influencer.influencer_id, day, ev.influencer.followers)
    )
    res.forecasts.append(_provisional(state, day, h_dim))
    return res


def _provisional(state: ProductState, day: int, h_dim: int) -> ForecastRequest:
    # the open day's units are unknown: use the forecast made for it, else the last actual
    open_day = max(day, (state.closed_day + 1) if state.closed_day is not None else day)
    units = _forecast_for(state, open_day)
    units = state.units if units is None else units
    x, k = build_x(state, open_day, units, state.price or 1.0, state.rating, h_dim)
    return ForecastRequest(state.product_id, "provisional", open_day, state.revision, state.recurrent, [x], k)


def _on_engagement(state: ProductState, ev: EngagementDaily, day: int) -> StepResult:
    slot = state.videos.get(ev.video_id)
    if slot is None:
        if ev.video_id in state.expired:
            return StepResult("stale", rows=[ev])
        return StepResult(
            "rejected",
            rejection=Rejection("UnknownVideo", f"engagement for video {ev.video_id!r} that product {ev.product_id!r} never published"),
        )
    if day < slot.publish_day:
        return StepResult(
            "rejected",
            rejection=Rejection("EngagementBeforePublish", f"engagement on {ev.day} for video {ev.video_id!r} published on {ordinal_day(slot.publish_day)}"),
        )
    if day >= slot.eng_day:  # latest (or a correction of the latest) wins; older days are stored only
        slot.likes, slot.comments, slot.shares = ev.likes, ev.comments, ev.shares
        slot.collects, slot.impressions, slot.eng_day = ev.collects, ev.impressions, day
        return StepResult("applied", rows=[ev])
    return StepResult("stale", rows=[ev])


def _on_sales(state: ProductState, ev: SalesDaily, day: int, h_dim: int) -> StepResult:
    if state.closed_day is not None and day <= state.closed_day:
        return StepResult("stale", rows=[ev])  # a correction of a closed day: stored, the model does not rewind
    xs: list[np.ndarray] = []
    # close the gap days (no sales came) with imputed units, then the day itself
    first = day if state.closed_day is None else state.closed_day + 1
    for d in range(first, day):
        units = _forecast_for(state, d)
        units = state.units if units is None else units
        x, _ = build_x(state, d, units, state.price or ev.price, state.rating, h_dim)
        xs.append(x)
    x, k = build_x(state, day, ev.units, ev.price, ev.rating, h_dim)
    xs.append(x)
    req = ForecastRequest(state.product_id, "day_close", day, state.revision, state.recurrent, xs, k)
    state.closed_day, state.units, state.price, state.rating = day, float(ev.units), ev.price, ev.rating
    _expire(state, day + 1)
    return StepResult("applied", rows=[ev], forecasts=[req])


def _expire(state: ProductState, next_day: int) -> None:
    """Drop videos that are no longer active on ``next_day``; prune the dedup memory."""
    for vid in [v for v, s in state.videos.items() if s.publish_day + L.WINDOW_DAYS <= next_day]:
        del state.videos[vid]
        state.expired[vid] = next_day
    horizon = next_day - L.WINDOW_DAYS - 2
    state.expired = {v: d for v, d in state.expired.items() if d >= next_day - L.WINDOW_DAYS}
    state.seen = {e: d for e, d in state.seen.items() if d >= horizon}


# ----------------------------------------------------------------------------------------------
# forecasts and alerts


def apply_forecast(
    state: ProductState,
    req: ForecastRequest,
    result: ForecastResult,
    *,
    model_version: str,
    now: datetime,
    alerts: AlertConfig = AlertConfig(),
) -> tuple[ProductState, list[BaseModel]]:
    """Record a forecaster result: the forecast row, and for day-close results the new recurrent
    state, the trailing forecast and possibly a forecast-drop alert."""
    point = max(float(result.point), 0.0)
    lower = min(max(float(result.lower), 0.0), point)
    upper = max(float(result.upper), point)
    row = SalesLiftForecast(
        product_id=req.product_id,
        issued_day=ordinal_day(req.issued_day),
        target_day=ordinal_day(req.target_day),
        kind=req.kind,
        revision=req.revision,
        point=point,
        lower=lower,
        upper=upper,
        level=result.level,
        baseline=None if result.baseline is None else max(float(result.baseline), 0.0),
        active_videos=req.active_videos,
        model_version=model_version,
        emitted_at=now,
    )
    rows: list[BaseModel] = [row]
    if req.kind == "provisional":
        return state, rows
    state.recurrent = np.asarray(result.state, dtype=np.float32)
    alert = _check_drop(state, req, point, lower, model_version, now, alerts)
    if alert is not None:
        rows.append(alert)
    state.trailing.append(TrailingForecast(req.issued_day, req.target_day, point, lower, upper))
    del state.trailing[: -max(alerts.window, 2) - 1]
    return state, rows


def _check_drop(state, req, point, lower, model_version, now, cfg: AlertConfig) -> ForecastAlert | None:
    trail = [t for t in state.trailing if t.target_day < req.target_day][-cfg.window :]
    if len(trail) < cfg.window:
        return None
    ref_point = float(np.mean([t.point for t in trail]))
    if ref_point < cfg.min_reference_units:
        return None
    ref_lower = float(np.mean([t.lower for t in trail]))
    drop = 1.0 - point / ref_point
    rule = None
    if drop >= cfg.pct_drop:
        rule, reference = "pct_drop", ref_point
    elif cfg.use_band and point < ref_lower:
        rule, reference = "below_band", ref_lower
    if rule is None:
        return None
    severity = "critical" if drop >= cfg.critical_pct else "warning"
    day = req.issued_day
    if state.last_alert_day is not None and day - state.last_alert_day < cfg.cooldown_days:
        escalates = severity == "critical" and state.last_alert_severity != "critical"
        if not escalates:
            return None
    state.last_alert_day, state.last_alert_severity = day, severity
    target = ordinal_day(req.target_day)
    return ForecastAlert(
        product_id=req.product_id,
        issued_day=ordinal_day(day),
        target_day=target,
        rule=rule,
        severity=severity,
        reference=reference,
        current=point,
        drop_pct=drop,
        message=(
            f"{req.product_id}: forecast for {target} is {point:.1f} units, "
            f"{drop:.0%} below the trailing {cfg.window}-day mean of {ref_point:.1f}"
            + (f" and under the band's lower bound {ref_lower:.1f}" if point < ref_lower else "")
        ),
        model_version=model_version,
        emitted_at=now,
    )


def emitted_at(issued_day: int) -> datetime:
    """A deterministic emission time for replays: the end of the issued day (UTC, naive)."""
    return datetime.combine(ordinal_day(issued_day), datetime.min.time()) + timedelta(hours=23, minutes=59, seconds=59)
