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
- The day input's trailing units (inference.daily ``trailing_units``) are the units the last
  ``TRAILING_DAYS`` closed days put in x (imputed ones on gap days), kept in ``recent_units``.
- Engagement for a video the product never saw is rejected (dead letter); for a video that has
  left the window it is stored and otherwise ignored ("stale").
- A forecast-drop alert compares the new day-close forecast with the trailing ones (see
  ``AlertConfig``) and is debounced per product.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

import numpy as np
from pydantic import BaseModel

from inference.daily import (
    SIDE_DIM,
    TRAILING_DAYS,
    campaign_vector,
    day_input,
    product_vector,
    side_matrix,
)
from schemas import limits as L
from schemas.events import EngagementDaily, SalesDaily, VideoPublished
from schemas.outputs import ForecastAlert, SalesLiftForecast

_CATEGORY_INDEX = {c: i for i, c in enumerate(L.PRODUCT_CATEGORIES)}
STATE_VERSION = 4  # 2: recent_units, 3: history, 4: campaign; older records still load (from_bytes)
READABLE_VERSIONS = (1, 2, 3, 4)


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

    def __post_init__(self) -> None:
        if self.window < 1 or self.cooldown_days < 0 or self.min_reference_units < 0:
            raise ValueError(
                f"AlertConfig: window >= 1, cooldown_days >= 0, min_reference_units >= 0: {self}"
            )
        if not 0 < self.pct_drop <= self.critical_pct <= 1:
            raise ValueError(f"AlertConfig: need 0 < pct_drop <= critical_pct <= 1: {self}")


# columns of ProductState.num, one row per video in the window
PUB, FOLLOWERS, LIKES, COMMENTS, SHARES, COLLECTS, IMPRESSIONS, ENG_DAY = range(8)
N_NUM = 8


@dataclass
class TrailingForecast:
    issued_day: int
    target_day: int
    point: float
    lower: float
    upper: float


@dataclass
class VideoView:
    """Read-only view of one video's row (tests and debugging)."""

    h: np.ndarray
    publish_day: int
    followers: int
    likes: int
    comments: int
    shares: int
    collects: int
    impressions: int
    eng_day: int


@dataclass
class ProductState:
    """One product's memory. Videos are stored column-wise (one row each) so a day's input is a
    few vectorised numpy operations however many videos are active."""

    product_id: str
    revision: int = 0
    ids: list[str] = field(default_factory=list)  # video ids, row order of h / num
    h: np.ndarray | None = None  # (K, H) encodings
    num: np.ndarray = field(default_factory=lambda: np.zeros((0, N_NUM)))  # (K, N_NUM) see PUB..ENG_DAY
    expired: dict[str, int] = field(default_factory=dict)  # video_id -> day it left the window
    seen: dict[int, set[str]] = field(default_factory=dict)  # day -> event ids applied for that day
    closed_day: int | None = None  # last closed day (ordinal)
    recurrent: np.ndarray | None = None  # (R,) forecaster state after closed_day; None = initial
    units: float = 0.0  # units of closed_day
    # units x saw on the last closed days, oldest first, at most TRAILING_DAYS (the last is closed_day's)
    recent_units: list[float] = field(default_factory=list)
    price: float | None = None
    rating: float = 90.0
    history: tuple[float, float] | None = None  # history sales / videos from VideoPublished.product
    # the campaign columns of x (inference.daily.campaign_features)
    first_day: int | None = None  # the product's first closed (sales) day: its clock starts there
    list_price: float | None = None  # its price that day
    last_n_active: int = 0  # active videos on closed_day
    last_impressions: float = 0.0  # their impressions summed, as closed_day's x saw them
    category: int = -1  # index into limits.PRODUCT_CATEGORIES from VideoPublished.product; -1 unknown
    trailing: list[TrailingForecast] = field(default_factory=list)
    last_alert_day: int | None = None
    last_alert_severity: str | None = None
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {v: i for i, v in enumerate(self.ids)}

    # -- videos -----------------------------------------------------------------------------------
    def row(self, video_id: str) -> int | None:
        return self._index.get(video_id)

    def video(self, video_id: str) -> VideoView | None:
        i = self._index.get(video_id)
        if i is None:
            return None
        n = self.num[i]
        return VideoView(
            self.h[i],
            *(int(v) for v in n[[PUB, FOLLOWERS, LIKES, COMMENTS, SHARES, COLLECTS, IMPRESSIONS, ENG_DAY]]),
        )

    def add_video(self, video_id: str, h: np.ndarray, publish_day: int, followers: int) -> None:
        row = np.zeros((1, N_NUM))
        row[0, PUB], row[0, FOLLOWERS], row[0, ENG_DAY] = publish_day, followers, -1
        h = np.asarray(h, dtype=np.float32)[None]
        self.h = h if self.h is None or not len(self.ids) else np.concatenate([self.h, h])
        self.num = np.concatenate([self.num, row])
        self._index[video_id] = len(self.ids)
        self.ids.append(video_id)

    def active_mask(self, day: int) -> np.ndarray:
        pub = self.num[:, PUB]
        return (pub <= day) & (day < pub + L.WINDOW_DAYS)

    def expire(self, next_day: int) -> None:
        """Drop videos no longer active on ``next_day``; forget old dedup and expiry memory."""
        keep = self.num[:, PUB] + L.WINDOW_DAYS > next_day
        if not keep.all():
            for i in np.flatnonzero(~keep):
                self.expired[self.ids[i]] = next_day
            self.ids = [v for v, k in zip(self.ids, keep, strict=True) if k]
            self.h, self.num = self.h[keep], self.num[keep]
            self._index = {v: i for i, v in enumerate(self.ids)}
        horizon = next_day - L.WINDOW_DAYS - 2
        if any(d < horizon for d in self.seen):
            self.seen = {d: ids for d, ids in self.seen.items() if d >= horizon}
        if any(d < next_day - L.WINDOW_DAYS for d in self.expired.values()):
            self.expired = {v: d for v, d in self.expired.items() if d >= next_day - L.WINDOW_DAYS}

    def is_seen(self, event_id: str, day: int) -> bool:
        # a redelivery carries the same day, so one bucket answers
        ids = self.seen.get(day)
        return ids is not None and event_id in ids

    # -- serialisation for Faust tables (changelog) ---------------------------------------------
    def to_bytes(self) -> bytes:
        def arr(a: np.ndarray | None, dtype=np.float32):
            if a is None:
                return None
            return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode("ascii")

        doc = {
            "v": STATE_VERSION,
            "product_id": self.product_id,
            "revision": self.revision,
            "ids": self.ids,
            "h": arr(self.h) if self.ids else None,
            "h_dim": int(self.h.shape[1]) if self.h is not None else 0,
            "num": arr(self.num, np.float64),
            "expired": self.expired,
            "seen": {str(d): sorted(ids) for d, ids in self.seen.items()},
            "closed_day": self.closed_day,
            "recurrent": arr(self.recurrent),
            "units": self.units,
            "recent_units": self.recent_units,
            "price": self.price,
            "rating": self.rating,
            "history": None if self.history is None else list(self.history),
            "campaign": [
                self.first_day,
                self.list_price,
                self.last_n_active,
                self.last_impressions,
                self.category,
            ],
            "trailing": [[t.issued_day, t.target_day, t.point, t.lower, t.upper] for t in self.trailing],
            "last_alert_day": self.last_alert_day,
            "last_alert_severity": self.last_alert_severity,
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> ProductState:
        doc = json.loads(raw)
        if doc.get("v") not in READABLE_VERSIONS:
            raise ValueError(f"product state version {doc.get('v')!r}, this code reads {READABLE_VERSIONS}")
        recent = doc.get("recent_units")
        if recent is None:
            # a version 1 record kept only the last closed day's units: take them as the product's
            # level on the days before too (a constant-level guess for the first TRAILING_DAYS days)
            recent = [] if doc["closed_day"] is None else [float(doc["units"])] * TRAILING_DAYS

        def arr(s, dtype=np.float32):
            return None if s is None else np.frombuffer(base64.b64decode(s), dtype=dtype).copy()

        k = len(doc["ids"])
        h = arr(doc["h"])
        campaign = doc.get("campaign")
        if campaign is None:
            # a record from before version 4: its clock starts no later than the oldest remembered
            # day, its list price is today's, yesterday's counts read 0 until the next close
            first = None if doc["closed_day"] is None else doc["closed_day"] - max(len(recent) - 1, 0)
            campaign = [first, doc["price"], 0, 0.0, -1]
        return cls(
            product_id=doc["product_id"],
            revision=doc["revision"],
            ids=list(doc["ids"]),
            h=None if h is None else h.reshape(k, doc["h_dim"]),
            num=arr(doc["num"], np.float64).reshape(k, N_NUM),
            expired={k_: int(v) for k_, v in doc["expired"].items()},
            seen={int(d): set(ids) for d, ids in doc["seen"].items()},
            closed_day=doc["closed_day"],
            recurrent=arr(doc["recurrent"]),
            units=doc["units"],
            recent_units=[float(u) for u in recent],
            price=doc["price"],
            rating=doc["rating"],
            history=None if doc.get("history") is None else tuple(float(x) for x in doc["history"]),
            first_day=campaign[0],
            list_price=campaign[1],
            last_n_active=int(campaign[2]),
            last_impressions=float(campaign[3]),
            category=int(campaign[4]),
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


_COUNT_COLS = [LIKES, SHARES, COMMENTS, COLLECTS, IMPRESSIONS]  # inference.daily.COUNT_COLUMNS order


def build_x(
    state: ProductState,
    day: int,
    units: float,
    price: float,
    rating: float,
    h_dim: int,
    previous: list[float] | None = None,
    yesterday: tuple[int, float] | None = None,
    content: bool = False,
) -> tuple[np.ndarray, int, float]:
    """The forecaster input for ``day`` (inference.daily.day_input) and the active video count.

    ``previous``: the units of the days before ``day``, oldest first (default ``state.recent_units``,
    right when ``day`` follows the last closed day; a provisional forecast for a later open day uses
    them as they are, since the days in between have no units yet). ``yesterday``: (active videos,
    summed impressions) of ``day - 1`` as its x saw them (default the state's last closed day;
    zeros before the product's first closed day). ``content``: the encodings end with q_v and x
    ends with the content-lift channel (``inference.daily.day_input``). Returns x, the active video
    count and their summed impressions (the next day's ``yesterday``).
    """
    m = state.active_mask(day)
    k = int(m.sum())
    if k:
        n = state.num[m]
        h = state.h[m]  # (K, H)
        counts = n[:, _COUNT_COLS]
        side = side_matrix(counts, day - n[:, PUB], n[:, FOLLOWERS])  # (K, SIDE_DIM)
        is_new = n[:, PUB] == day
        n_new = int(is_new.sum())
        sums = counts.sum(axis=0)
        log_f = float(np.log1p(n[:, FOLLOWERS]).sum())
        new_imp = float(counts[is_new, 4].sum())
    else:
        h = np.zeros((0, h_dim), dtype=np.float32)
        counts = np.zeros((0, len(_COUNT_COLS)))
        side = np.zeros((0, SIDE_DIM), dtype=np.float32)
        n_new = 0
        sums = None  # log1p(0) = 0: the same zeros
        log_f = new_imp = 0.0
    wd = ordinal_day(day).weekday()
    prev = state.recent_units if previous is None else previous
    if yesterday is None:
        closed = state.closed_day is not None
        yesterday = (state.last_n_active, state.last_impressions) if closed else (0, 0.0)
    first, list_price = state.first_day, state.list_price
    campaign = campaign_vector(
        prev[-TRAILING_DAYS] if len(prev) >= TRAILING_DAYS else 0.0,
        0 if first is None else max(day - first, 0),
        math.log(price / list_price) if list_price and price > 0 else 0.0,
        log_f,
        new_imp,
        yesterday[0],
        yesterday[1],
        state.category,
    )
    prod = product_vector(
        float(units),
        float(price),
        float(rating),
        k,
        n_new,
        sums=sums,
        weekday=wd,
        previous=prev,
        history=state.history,
        campaign=campaign,
    )
    imp = counts[:, 4] if content else None
    return day_input(h, side, prod, imp), k, (0.0 if sums is None else float(sums[4]))


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
    content: bool = False,
) -> tuple[ProductState, StepResult]:
    """Apply one validated input event to its product's state.

    ``h`` is the video's encoding and is required for ``VideoPublished`` (the caller runs the
    encoder, so a batch of videos can be encoded together). ``h_dim`` is the encoder's output
    size, used for products with no active video. ``content``: the forecaster reads the
    content-lift channel (its encodings end with q_v; ``build_x``).
    """
    if state is None:
        state = ProductState(product_id=event.product_id)
    assert event.product_id == state.product_id, (
        f"event for {event.product_id!r} applied to state of {state.product_id!r}"
    )
    day = day_ordinal(event.day)
    if state.is_seen(event.event_id, day):
        return state, StepResult("duplicate")

    if isinstance(event, VideoPublished):
        res = _on_video(state, event, day, h, h_dim, content)
    elif isinstance(event, EngagementDaily):
        res = _on_engagement(state, event, day)
    elif isinstance(event, SalesDaily):
        res = _on_sales(state, event, day, h_dim, content)
    else:  # pragma: no cover - the tagged union admits nothing else
        raise TypeError(f"not an input event: {type(event).__name__}")

    if res.status != "rejected":
        state.seen.setdefault(day, set()).add(event.event_id)
        state.revision += 1
        # re-stamp requests with the revision that includes this event
        for req in res.forecasts:
            req.revision = state.revision
    return state, res


def _on_video(
    state: ProductState, ev: VideoPublished, day: int, h: np.ndarray | None, h_dim: int, content: bool
) -> StepResult:
    if h is None:
        raise ValueError("VideoPublished needs its encoding h (the caller runs the encoder)")
    assert h.shape == (h_dim,), f"expected encoding ({h_dim},), got {h.shape}"
    if ev.video_id in state._index or ev.video_id in state.expired:
        # same video again under a new event id: keep the stored input row current, nothing else
        return StepResult("duplicate", rows=[ev])
    if ev.product is not None and state.price is None:
        state.price = ev.product.price
    if ev.product is not None and state.category < 0:
        state.category = _CATEGORY_INDEX.get(ev.product.category, len(L.PRODUCT_CATEGORIES) - 1)
    if ev.product is not None and state.history is None and ev.product.history_sales is not None:
        state.history = (float(ev.product.history_sales), float(ev.product.history_videos or 0))
    state.add_video(ev.video_id, h, day, ev.influencer.followers)
    res = StepResult("applied", rows=[ev])
    res.advice.append(
        AdviceRequest(ev.video_id, ev.product_id, ev.influencer.influencer_id, day, ev.influencer.followers)
    )
    res.forecasts.append(_provisional(state, day, h_dim, content))
    return res


def _provisional(state: ProductState, day: int, h_dim: int, content: bool) -> ForecastRequest:
    # the open day's units are unknown: use the forecast made for it, else the last actual
    open_day = max(day, (state.closed_day + 1) if state.closed_day is not None else day)
    units = _forecast_for(state, open_day)
    units = state.units if units is None else units
    x, k, _ = build_x(state, open_day, units, state.price or 1.0, state.rating, h_dim, content=content)
    return ForecastRequest(state.product_id, "provisional", open_day, state.revision, state.recurrent, [x], k)


def _on_engagement(state: ProductState, ev: EngagementDaily, day: int) -> StepResult:
    i = state.row(ev.video_id)
    if i is None:
        if ev.video_id in state.expired:
            return StepResult("stale", rows=[ev])
        return StepResult(
            "rejected",
            rejection=Rejection(
                "UnknownVideo",
                f"engagement for video {ev.video_id!r} that product {ev.product_id!r} never published",
            ),
        )
    n = state.num[i]
    if day < n[PUB]:
        return StepResult(
            "rejected",
            rejection=Rejection(
                "EngagementBeforePublish",
                f"engagement on {ev.day} for video {ev.video_id!r} published on {ordinal_day(int(n[PUB]))}",
            ),
        )
    if day >= n[ENG_DAY]:  # latest (or a correction of the latest) wins; older days are stored only
        n[LIKES], n[COMMENTS], n[SHARES], n[COLLECTS] = ev.likes, ev.comments, ev.shares, ev.collects
        n[IMPRESSIONS], n[ENG_DAY] = ev.impressions, day
        return StepResult("applied", rows=[ev])
    return StepResult("stale", rows=[ev])


def _on_sales(state: ProductState, ev: SalesDaily, day: int, h_dim: int, content: bool) -> StepResult:
    if state.closed_day is not None and day <= state.closed_day:
        return StepResult(
            "stale", rows=[ev]
        )  # a correction of a closed day: stored, the model does not rewind
    xs: list[np.ndarray] = []
    recent = list(state.recent_units)  # grows by each day closed here, so lags see the imputed days
    # close the gap days (no sales came) with imputed units, then the day itself
    first = day if state.closed_day is None else state.closed_day + 1
    if state.first_day is None:  # the product's clock and list price start with its first sales day
        state.first_day, state.list_price = day, float(ev.price)
    yesterday = None  # the state's last closed day
    for d in range(first, day):
        units = _forecast_for(state, d)
        units = state.units if units is None else units
        x, k, imp = build_x(
            state,
            d,
            units,
            state.price or ev.price,
            state.rating,
            h_dim,
            previous=recent,
            yesterday=yesterday,
            content=content,
        )
        xs.append(x)
        recent.append(float(units))
        yesterday = (k, imp)
    x, k, imp = build_x(
        state,
        day,
        ev.units,
        ev.price,
        ev.rating,
        h_dim,
        previous=recent,
        yesterday=yesterday,
        content=content,
    )
    xs.append(x)
    recent.append(float(ev.units))
    state.last_n_active, state.last_impressions = k, imp
    req = ForecastRequest(state.product_id, "day_close", day, state.revision, state.recurrent, xs, k)
    state.closed_day, state.units, state.price, state.rating = day, float(ev.units), ev.price, ev.rating
    state.recent_units = recent[-TRAILING_DAYS:]
    state.expire(day + 1)
    return StepResult("applied", rows=[ev], forecasts=[req])


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
    return datetime.combine(ordinal_day(issued_day), datetime.min.time()) + timedelta(
        hours=23, minutes=59, seconds=59
    )
