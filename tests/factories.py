"""Output rows with test values, shared by the API and dashboard tests."""

from __future__ import annotations

from datetime import date, datetime

from schemas.outputs import SalesLiftForecast


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
