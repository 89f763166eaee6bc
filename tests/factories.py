"""Output rows with test values, shared by the API and dashboard tests."""

from __future__ import annotations

from datetime import date, datetime

from schemas.outputs import InfluencerAdvice, SalesLiftForecast


def forecast(
    pid, target, kind, rev, point, lo, hi, base, active, emitted, version="lamm-1"
) -> SalesLiftForecast:
    """A forecast for ``target`` (ISO day) issued the day before, 80% interval [lo, hi]."""
    t = date.fromisoformat(target)
    return SalesLiftForecast(
        product_id=pid,
        issued_day=date.fromordinal(t.toordinal() - 1),
        target_day=t,
        kind=kind,
        revision=rev,
        point=point,
        lower=lo,
        upper=hi,
        level=0.8,
        baseline=base,
        active_videos=active,
        model_version=version,
        emitted_at=datetime.fromisoformat(emitted),
    )


def advice(
    vid,
    pid,
    tier,
    opt_tier,
    actual,
    optimal,
    *,
    followers=20_000,
    fei=0.8,
    day="2026-11-19",
    impressions_optimal=4000.0,
    version="fei-test",
    emitted="2026-11-19 10:00:00",
) -> InfluencerAdvice:
    """Advice for video ``vid`` (influencer ``inf-{vid}``): an S-shaped curve whose optimum is
    200k followers (near-optimal 120k-350k) at $0.02 / impression and $5 / 1k followers."""
    return InfluencerAdvice(
        video_id=vid,
        product_id=pid,
        influencer_id=f"inf-{vid}",
        day=date.fromisoformat(day),
        followers=followers,
        tier=tier,
        fei=fei,
        curve_shape="s_shaped",
        expected_impressions=1000.0,
        optimal_followers=200_000,
        optimal_tier=opt_tier,
        optimal_followers_low=120_000,
        optimal_followers_high=350_000,
        expected_impressions_optimal=impressions_optimal,
        profit_actual=actual,
        profit_optimal=optimal,
        value_per_impression=0.02,
        cost_per_1k_followers=5.0,
        model_version=version,
        emitted_at=datetime.fromisoformat(emitted),
    )
