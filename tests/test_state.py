"""The pure per-product step: window expiry, duplicates, out-of-order days, unknown ids, alerts."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta

import numpy as np
import pytest

from inference.client import AsyncInProcessClient, InProcessClient
from inference.daily import PRODUCT_DIM, PRODUCT_FEATURES, SIDE_DIM, TRAILING_DAYS
from inference.standin import ConstantElasticityAdvisor, SeasonalNaiveForecaster
from schemas import limits as L
from schemas.events import EngagementDaily, SalesDaily, SegmentFeatures, VideoPublished
from schemas.outputs import DeadLetter, ForecastAlert, InfluencerAdvice, SalesLiftForecast
from streams.processor import Processor, replay_clock
from streams.state import (
    AlertConfig,
    ForecastRequest,
    ForecastResult,
    ProductState,
    apply_event,
    apply_forecast,
    day_ordinal,
)

D0 = date(2026, 3, 1)
H = np.ones(8, dtype=np.float32)


def video(
    vid: str, day: date, pid: str = "p1", followers: int = 12_000, eid: str | None = None
) -> VideoPublished:
    rng = np.random.default_rng(abs(hash(vid)) % 2**32)
    feats = SegmentFeatures.from_arrays(
        rng.normal(size=(3, L.FEATURE_DIM)),
        rng.normal(size=(3, L.FEATURE_DIM)),
        rng.normal(size=(3, L.FEATURE_DIM)),
        rng.normal(size=(2, L.FEATURE_DIM)),
    )
    return VideoPublished(
        event_id=eid or f"v:{vid}",
        ts=datetime.combine(day, datetime.min.time()) + timedelta(hours=10),
        day=day,
        video_id=vid,
        product_id=pid,
        influencer={"influencer_id": f"i-{vid}", "followers": followers, "past_avg_hearts": 120.0},
        product={"category": "beauty_skincare", "price": 59.0},
        video_type="fashion",
        length_s=9.6,
        width=1080,
        height=1920,
        size_mb=3.2,
        create_hour=10,
        title="new lipstick",
        features=feats,
    )


def eng(vid: str, day: date, likes: int = 10, pid: str = "p1", eid: str | None = None) -> EngagementDaily:
    return EngagementDaily(
        event_id=eid or f"e:{vid}:{day}",
        day=day,
        video_id=vid,
        product_id=pid,
        likes=likes,
        comments=1,
        shares=2,
        collects=3,
        impressions=1000,
    )


def sales(day: date, units: int, pid: str = "p1", eid: str | None = None) -> SalesDaily:
    return SalesDaily(
        event_id=eid or f"s:{pid}:{day}", day=day, product_id=pid, units=units, price=59.0, rating=92.0
    )


def test_video_then_engagement_then_sales_close_the_day():
    st, res = apply_event(None, video("v1", D0), h=H, h_dim=8)
    assert res.status == "applied" and st.revision == 1
    assert [r.kind for r in res.forecasts] == ["provisional"] and res.forecasts[0].issued_day == day_ordinal(
        D0
    )
    assert res.advice[0].video_id == "v1" and res.advice[0].followers == 12_000
    st, res = apply_event(st, eng("v1", D0, likes=7), h_dim=8)
    assert res.status == "applied" and st.video("v1").likes == 7
    st, res = apply_event(st, sales(D0, 40), h_dim=8)
    (req,) = res.forecasts
    assert req.kind == "day_close" and req.issued_day == day_ordinal(D0) and req.revision == 3
    assert req.active_videos == 1 and len(req.xs) == 1 and req.xs[0].shape == (8 + SIDE_DIM + PRODUCT_DIM,)
    prod = req.xs[0][
        8 + SIDE_DIM :
    ]  # inference.daily.PRODUCT_FEATURES: sums of today's counts, weekday one-hot
    assert prod[PRODUCT_FEATURES.index("sum_likes")] == pytest.approx(np.log1p(7))
    wd0 = PRODUCT_FEATURES.index("weekday_0")
    np.testing.assert_array_equal(prod[wd0 : wd0 + 7], np.eye(7)[D0.weekday()])
    assert st.closed_day == day_ordinal(D0) and st.units == 40


def test_redelivered_event_is_ignored_and_does_not_bump_revision():
    st, _ = apply_event(None, video("v1", D0), h=H, h_dim=8)
    st, res = apply_event(st, video("v1", D0), h=H, h_dim=8)
    assert res.status == "duplicate" and res.rows == [] and st.revision == 1
    # same video under a new event id: stored input row refreshed, no second advice/forecast
    st, res = apply_event(st, video("v1", D0, eid="v:v1:again"), h=H, h_dim=8)
    assert res.status == "duplicate" and len(res.rows) == 1 and res.forecasts == [] and res.advice == []


def test_window_expiry_after_fourteen_days():
    st, _ = apply_event(None, video("v1", D0), h=H, h_dim=8)
    for i in range(L.WINDOW_DAYS):
        st, res = apply_event(st, sales(D0 + timedelta(days=i), 10), h_dim=8)
        # the video is active on days 0..13 and counted in each day's input
        assert res.forecasts[0].active_videos == 1
    assert st.video("v1") is None and "v1" in st.expired
    st, res = apply_event(st, sales(D0 + timedelta(days=L.WINDOW_DAYS), 10), h_dim=8)
    assert res.forecasts[0].active_videos == 0
    # late engagement for the expired video is stored but changes nothing
    st, res = apply_event(st, eng("v1", D0 + timedelta(days=13)), h_dim=8)
    assert res.status == "stale" and len(res.rows) == 1


def test_unknown_video_is_rejected_not_crashing():
    st, res = apply_event(None, eng("ghost", D0), h_dim=8)
    assert res.status == "rejected" and res.rejection.error_type == "UnknownVideo" and st.revision == 0


def test_out_of_order_engagement_keeps_latest_values():
    st, _ = apply_event(None, video("v1", D0), h=H, h_dim=8)
    st, _ = apply_event(st, eng("v1", D0 + timedelta(days=2), likes=30), h_dim=8)
    st, res = apply_event(st, eng("v1", D0 + timedelta(days=1), likes=20), h_dim=8)
    assert res.status == "stale" and st.video("v1").likes == 30


def test_sales_gap_closes_missing_days_and_late_sales_do_not_rewind():
    st, _ = apply_event(None, sales(D0, 10), h_dim=8)
    st, res = apply_event(st, sales(D0 + timedelta(days=3), 12), h_dim=8)
    (req,) = res.forecasts
    assert len(req.xs) == 3  # days 1 and 2 imputed, then day 3
    assert st.closed_day == day_ordinal(D0 + timedelta(days=3))
    st, res = apply_event(st, sales(D0 + timedelta(days=1), 11), h_dim=8)
    assert res.status == "stale" and res.forecasts == [] and len(res.rows) == 1


def _trailing(x: np.ndarray) -> np.ndarray:
    """The trailing-units columns of a day input with h_dim 8 (lag 1, lag 2, mean 3, mean 7)."""
    i = 8 + SIDE_DIM + PRODUCT_FEATURES.index("units_lag1")
    return x[i : i + 4]


def test_trailing_units_follow_closed_days_and_imputed_gap_days():
    st, _ = apply_event(None, sales(D0, 10), h_dim=8)
    st, res = apply_event(st, sales(D0 + timedelta(days=1), 20), h_dim=8)
    y10, y20 = np.log1p(10), np.log1p(20)
    np.testing.assert_allclose(
        _trailing(res.forecasts[0].xs[0]), [y10, 0, (y10 + y20) / 2, (y10 + y20) / 2], rtol=1e-6
    )
    assert st.recent_units == [10.0, 20.0]
    # a forecast of 30 units for day 2, then sales for day 4: day 2 and 3 close with imputed units
    req = ForecastRequest("p1", "day_close", day_ordinal(D0) + 1, st.revision, None, [np.zeros(3)], 0)
    st, _ = apply_forecast(
        st,
        req,
        ForecastResult(np.zeros(2), 30.0, 20.0, 40.0, 0.8),
        model_version="t",
        now=datetime(2026, 3, 2),
    )
    st, res = apply_event(st, sales(D0 + timedelta(days=4), 50), h_dim=8)
    xs = res.forecasts[0].xs  # day 2 (imputed 30), day 3 (imputed: last actual 20), day 4 (50)
    y = np.log1p([10, 20, 30, 20, 50])
    np.testing.assert_allclose(_trailing(xs[0]), [y[1], y[0], y[:3].mean(), y[:3].mean()], rtol=1e-6)
    np.testing.assert_allclose(_trailing(xs[2]), [y[3], y[2], y[2:].mean(), y.mean()], rtol=1e-6)
    assert st.recent_units == [10.0, 20.0, 30.0, 20.0, 50.0]
    for d in range(5, 10):  # only the last TRAILING_DAYS days are kept
        st, _ = apply_event(st, sales(D0 + timedelta(days=d), d), h_dim=8)
    assert st.recent_units == [20.0, 50.0, 5.0, 6.0, 7.0, 8.0, 9.0][-TRAILING_DAYS:]


def test_version1_state_record_still_loads():
    """A record written before recent_units existed (STATE_VERSION 1) loads, with the last closed
    day's units standing in for the days before it."""
    import json

    st, _ = apply_event(None, video("v1", D0), h=H, h_dim=8)
    st, _ = apply_event(st, sales(D0, 40), h_dim=8)
    doc = json.loads(st.to_bytes())
    del doc["recent_units"]
    doc["v"] = 1
    old = ProductState.from_bytes(json.dumps(doc).encode())
    assert old.closed_day == st.closed_day and old.units == 40
    assert old.recent_units == [40.0] * TRAILING_DAYS
    np.testing.assert_array_equal(old.video("v1").h, H)
    doc["v"] = 99
    with pytest.raises(ValueError, match="version 99"):
        ProductState.from_bytes(json.dumps(doc).encode())


def test_product_history_from_the_first_video_reaches_x_and_survives_bytes():
    """VideoPublished.product's history sales / videos: kept from the product's first video that
    carries them (a later snapshot does not overwrite them), in x's history columns from then on,
    saved with the state; a version 2 record (no history) loads as unknown."""
    import json

    from inference.daily import CAMPAIGN_AT, HISTORY_AT

    v1 = video("v1", D0)
    v1 = v1.model_copy(
        update={"product": v1.product.model_copy(update={"history_sales": 120, "history_videos": 4})}
    )
    v2 = video("v2", D0)
    v2 = v2.model_copy(
        update={"product": v2.product.model_copy(update={"history_sales": 9, "history_videos": 1})}
    )
    st, res = apply_event(None, v1, h=H, h_dim=8)
    st, _ = apply_event(st, v2, h=H, h_dim=8)
    assert st.history == (120.0, 4.0)
    st, res = apply_event(st, sales(D0, 40), h_dim=8)
    prod = res.forecasts[0].xs[0][8 + SIDE_DIM :]
    np.testing.assert_allclose(prod[HISTORY_AT:CAMPAIGN_AT], [np.log1p(120), np.log1p(4), 1.0], rtol=1e-6)
    assert ProductState.from_bytes(st.to_bytes()).history == (120.0, 4.0)
    doc = json.loads(st.to_bytes())
    del doc["history"]
    doc["v"] = 2
    assert ProductState.from_bytes(json.dumps(doc).encode()).history is None
    # a product whose videos carry no history: unknown, all three columns zero
    st0, _ = apply_event(None, video("v3", D0), h=H, h_dim=8)
    st0, res = apply_event(st0, sales(D0, 40), h_dim=8)
    assert st0.history is None
    np.testing.assert_array_equal(
        res.forecasts[0].xs[0][8 + SIDE_DIM + HISTORY_AT : 8 + SIDE_DIM + CAMPAIGN_AT], [0, 0, 0]
    )


def test_state_round_trips_through_bytes():
    st, _ = apply_event(None, video("v1", D0), h=H, h_dim=8)
    st, _ = apply_event(st, eng("v1", D0), h_dim=8)
    st, _ = apply_event(st, sales(D0, 7), h_dim=8)
    st.recurrent = np.arange(3, dtype=np.float32)
    back = ProductState.from_bytes(st.to_bytes())
    assert back.recent_units == [7.0]
    assert back.to_bytes() == st.to_bytes()
    np.testing.assert_array_equal(back.video("v1").h, H)
    assert back.video("v1").likes == 10 and back.seen == st.seen
    np.testing.assert_array_equal(back.recurrent, st.recurrent)


def _close(st, day_i: int, point: float, lower: float, cfg: AlertConfig):
    d = day_ordinal(D0) + day_i
    req = ForecastRequest("p1", "day_close", d, day_i, None, [np.zeros(3)], 0)
    res = ForecastResult(state=np.zeros(2), point=point, lower=lower, upper=point * 1.2, level=0.8)
    return apply_forecast(st, req, res, model_version="t", now=datetime(2026, 3, 1), alerts=cfg)


def test_drop_alert_fires_once_then_debounces_then_escalates():
    cfg = AlertConfig(window=3, pct_drop=0.3, critical_pct=0.5, cooldown_days=3)
    st = ProductState("p1")
    for i in range(3):
        st, rows = _close(st, i, 100.0, 80.0, cfg)
        assert len(rows) == 1
    st, rows = _close(st, 3, 65.0, 50.0, cfg)  # 35% drop: warning
    alert = rows[1]
    assert isinstance(alert, ForecastAlert) and alert.rule == "pct_drop" and alert.severity == "warning"
    assert alert.drop_pct == pytest.approx(0.35)
    st, rows = _close(st, 4, 60.0, 50.0, cfg)  # still down, within cooldown: no storm
    assert len(rows) == 1
    st, rows = _close(st, 5, 20.0, 10.0, cfg)  # critical escalates through the cooldown
    assert rows[1].severity == "critical"


def test_noise_within_band_does_not_alert():
    cfg = AlertConfig()
    st = ProductState("p1")
    rows_all = []
    for i, p in enumerate([100, 95, 104, 92, 99, 90]):
        st, rows = _close(st, i, float(p), p * 0.8, cfg)
        rows_all += rows
    assert not any(isinstance(r, ForecastAlert) for r in rows_all)


@pytest.mark.parametrize(
    "kw",
    [
        {"window": 0},
        {"pct_drop": 0.0},
        {"pct_drop": 0.6, "critical_pct": 0.5},
        {"critical_pct": 1.5},
        {"cooldown_days": -1},
    ],
)
def test_alert_rules_that_cannot_work_are_refused(kw, monkeypatch):
    """A window of 0 days, a drop of 0% or a critical level below the warning level would alert on
    everything or never escalate: refused where the rule is built, and in Settings (env vars)."""
    from streams.settings import Settings, SettingsError

    with pytest.raises(ValueError, match="AlertConfig"):
        AlertConfig(**kw)
    with pytest.raises(SettingsError, match="LIFTSTREAM_ALERT_"):
        Settings(**{f"alert_{k}": v for k, v in kw.items()})
    monkeypatch.setenv("LIFTSTREAM_VALUE_PER_IMPRESSION", "-0.02")
    with pytest.raises(
        SettingsError, match="LIFTSTREAM_VALUE_PER_IMPRESSION: Input should be greater than 0"
    ):
        Settings()
    monkeypatch.setenv("LIFTSTREAM_VALUE_PER_IMPRESSION", "0.05")
    assert Settings().value_per_impression == 0.05 and Settings().alert_config() == AlertConfig()


def test_small_products_never_alert():
    cfg = AlertConfig(min_reference_units=5)
    st = ProductState("p1")
    for i, p in enumerate([3, 3, 3, 0]):
        st, rows = _close(st, i, float(p), 0.0, cfg)
    assert len(rows) == 1


def _processor():
    client = AsyncInProcessClient(InProcessClient(SeasonalNaiveForecaster(), ConstantElasticityAdvisor()))
    return asyncio.run(Processor.create(client, {}, clock=replay_clock))


def test_processor_counts_every_input_once_and_dead_letters_bad_ones():
    proc = _processor()
    good = [
        video("v1", D0),
        eng("v1", D0),
        sales(D0, 40),
        video("v2", D0 + timedelta(days=1)),
        sales(D0 + timedelta(days=1), 44),
    ]
    items = [
        *good,
        b"{not json",
        b'{"type": "sales_daily", "event_id": "x", "day": "2026-03-01", "product_id": "p1", "units": -5, "price": 1, "rating": 50}',
        eng("ghost", D0),
        good[1].model_dump_json().encode(),  # a redelivery of an applied event, as raw bytes
        b"x" * (L.MAX_RAW_PAYLOAD_BYTES + 1),
    ]
    out = asyncio.run(proc.process(items))
    c = out.counts
    assert c["received"] == 10
    assert c["applied"] == 5 and c["duplicate"] == 1 and c["dead_letter"] == 4
    assert c["received"] == c["applied"] + c["duplicate"] + c["stale"] + c["dead_letter"]
    dead = [r for r in out.rows if isinstance(r, DeadLetter)]
    assert sorted(d.error_type for d in dead) == [
        "PayloadTooLarge",
        "UnknownVideo",
        "ValidationError",
        "ValidationError",
    ]
    units_err = next(d for d in dead if "units" in d.error)
    assert "greater than or equal to 0" in units_err.error
    big = next(d for d in dead if d.error_type == "PayloadTooLarge")
    assert big.raw_size == L.MAX_RAW_PAYLOAD_BYTES + 1 and len(big.raw) == L.DEAD_LETTER_RAW_KEEP_BYTES
    fc = [r for r in out.rows if isinstance(r, SalesLiftForecast)]
    closes = [f for f in fc if f.kind == "day_close"]
    # seasonal naive: tomorrow = today (units travel as float32 log1p inside the day input)
    assert [f.issued_day for f in closes] == [D0, D0 + timedelta(days=1)]
    assert [f.point for f in closes] == pytest.approx([40.0, 44.0], rel=1e-6)
    assert sum(f.kind == "provisional" for f in fc) == 2
    assert len([r for r in out.rows if isinstance(r, InfluencerAdvice)]) == 2


def test_processor_is_deterministic_across_batch_splits():
    events = []
    for d in range(4):
        day = D0 + timedelta(days=d)
        events += [video(f"v{d}", day), eng(f"v{d}", day, likes=d)]
        events += [eng(f"v{j}", day, likes=d + j) for j in range(d)]
        events.append(sales(day, 30 + 5 * d))

    def run(split: int):
        proc = _processor()
        rows = []
        for i in range(0, len(events), split):
            rows += asyncio.run(proc.process(events[i : i + split])).rows
        return sorted(r.model_dump_json() for r in rows)

    assert run(len(events)) == run(1) == run(3)


def test_campaign_columns_follow_the_first_sales_day_and_yesterday_and_survive_bytes():
    """x's campaign columns from the stream: the clock and list price start with the first sales
    day, yesterday's videos / impressions come from the previous close (a gap day's own from the
    gap day), the category from VideoPublished.product; saved with the state; a version 3 record
    (no campaign) loads with its clock at the oldest remembered day."""
    import json

    from inference.daily import CAMPAIGN_AT, CAMPAIGN_FEATURES

    col = lambda x, name: float(x[8 + SIDE_DIM + CAMPAIGN_AT + CAMPAIGN_FEATURES.index(name)])  # noqa: E731
    st, _ = apply_event(None, video("v1", D0), h=H, h_dim=8)
    st, _ = apply_event(st, eng("v1", D0), h_dim=8)  # 1000 impressions on its first day
    st, res = apply_event(st, sales(D0, 40), h_dim=8)
    x0 = res.forecasts[0].xs[0]
    assert col(x0, "product_day") == 0 and col(x0, "n_active_lag1") == 0 and col(x0, "impressions_lag1") == 0
    assert col(x0, "new_impressions") == pytest.approx(np.log1p(1000), rel=1e-6)
    assert col(x0, "sum_log_followers") == pytest.approx(np.log1p(np.log1p(12_000)), rel=1e-6)
    assert col(x0, "category_beauty_skincare") == 1 and col(x0, "log_discount") == 0
    assert (st.first_day, st.list_price, st.last_n_active, st.last_impressions) == (
        day_ordinal(D0),
        59.0,
        1,
        1000.0,
    )
    # day 1 never closes; day 2's sales close it first (a gap day), then day 2 at a lower price
    d2 = D0 + timedelta(days=2)
    cheaper = sales(d2, 30).model_copy(update={"price": 47.2})
    st, res = apply_event(st, cheaper, h_dim=8)
    gap, x2 = res.forecasts[0].xs
    assert col(gap, "product_day") == pytest.approx(1 / L.WINDOW_DAYS, rel=1e-6)
    assert col(gap, "n_active_lag1") == pytest.approx(np.log1p(1), rel=1e-6)
    assert col(gap, "impressions_lag1") == pytest.approx(np.log1p(1000), rel=1e-6)
    assert col(gap, "new_impressions") == 0  # the video is a day old
    assert col(x2, "product_day") == pytest.approx(2 / L.WINDOW_DAYS, rel=1e-6)
    assert col(x2, "log_discount") == pytest.approx(np.log(47.2 / 59.0), rel=1e-5)
    assert col(x2, "units_lag6") == 0  # fewer than six days behind it
    back = ProductState.from_bytes(st.to_bytes())
    assert back.to_bytes() == st.to_bytes() and back.category == st.category >= 0
    doc = json.loads(st.to_bytes())
    del doc["campaign"]
    doc["v"] = 3
    old = ProductState.from_bytes(json.dumps(doc).encode())
    assert old.first_day == day_ordinal(d2) - (len(st.recent_units) - 1) == day_ordinal(D0)
    assert (old.list_price, old.last_n_active, old.category) == (st.price, 0, -1)
