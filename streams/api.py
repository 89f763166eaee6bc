"""HTTP API for ad-ops platforms: forecasts, alerts and influencer advice, read from ClickHouse.

    liftstream api --store chdb:///abs/dir --host 127.0.0.1 --port 8080
    liftstream api --store clickhouse://clickhouse:9000/liftstream

Endpoints (OpenAPI at /docs and /openapi.json):
  GET /health                                   the store answers
  GET /products/{product_id}/forecast           latest next-day forecast, its interval and lift
  GET /products/{product_id}/forecasts?from=&to=  forecast history per target day vs actual units
  GET /alerts?since=&product_id=&limit=         forecast-drop alerts, newest first
  GET /videos/{video_id}/advice                 influencer-size advice for one video
  GET /products/{product_id}/advice             advice summary of a product's videos by tier

Unknown ids answer 404, malformed parameters 422, an unreachable store 503. The tables are
ReplacingMergeTree (``schemas.ddl``): every read uses ``FINAL`` and picks one row per key the way
the dashboards do (a day_close forecast beats a provisional one, then the highest revision).
Timestamps are stored as naive UTC and returned with a ``Z``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol
from urllib.parse import quote, unquote, urlencode, urlsplit

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from inference.cli_types import port
from schemas import limits as L
from streams.sinks import StoreError, StoreURLError, open_store

# ----------------------------------------------------------------------------------------------
# The read side: a store of streams.sinks (chdb or a ClickHouse server), %(name)s parameters


class Store(Protocol):
    """What the API needs of ``streams.sinks.open_store(url)``."""

    database: str

    def query_with_columns(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]: ...


def _records(store: Store, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    names, rows = store.query_with_columns(sql, params)
    return [dict(zip(names, row, strict=True)) for row in rows]


def store_url(url: str, database: str) -> str:
    """The sinks' URL for ``url``: a relative chdb path made absolute, ``database`` added to chdb URLs."""
    parts = urlsplit(url)
    if parts.scheme != "chdb":
        return url
    path = parts.netloc + parts.path
    if not path:
        raise StoreURLError(f"no directory in store url {url!r}")
    query = parts.query or urlencode({"database": database})
    return f"chdb://{quote(str(Path(unquote(path)).resolve()))}?{query}"


# ----------------------------------------------------------------------------------------------
# Response models


def _as_utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
IdPath = Annotated[str, PathParam(min_length=1, max_length=L.MAX_ID_CHARS, pattern=r"^[A-Za-z0-9_.:\-]+$")]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Forecast(_Out):
    product_id: str
    issued_day: date
    target_day: date
    kind: Literal["provisional", "day_close"]
    revision: int
    point: float = Field(description="Expected units sold on target_day.")
    lower: float
    upper: float
    level: float = Field(description="Nominal coverage of [lower, upper].")
    baseline: float | None = Field(description="Expected units with no active videos.")
    lift: float | None = Field(description="point - baseline: units the active videos add.")
    active_videos: int
    model_version: str
    emitted_at: UtcDatetime


class ForecastVsActual(_Out):
    target_day: date
    issued_day: date
    kind: Literal["provisional", "day_close"]
    revision: int
    point: float
    lower: float
    upper: float
    level: float
    baseline: float | None
    lift: float | None
    active_videos: int
    actual: float | None = Field(description="Units sold on target_day; null until the day's sales arrive.")
    error: float | None = Field(description="actual - point.")
    covered: bool | None = Field(description="lower <= actual <= upper.")


class ForecastHistory(_Out):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    product_id: str
    from_day: date | None = Field(alias="from")
    to_day: date | None = Field(alias="to")
    forecasts: list[ForecastVsActual]


class Alert(_Out):
    product_id: str
    issued_day: date
    target_day: date
    rule: Literal["below_band", "pct_drop"]
    severity: Literal["warning", "critical"]
    reference: float
    current: float
    drop_pct: float
    message: str
    model_version: str
    emitted_at: UtcDatetime


class AlertList(_Out):
    since: UtcDatetime | None
    product_id: str | None
    count: int
    alerts: list[Alert]


class Advice(_Out):
    video_id: str
    product_id: str
    influencer_id: str
    day: date
    followers: int
    tier: str
    fei: float = Field(description="Follower elasticity of impressions at the actual follower count.")
    curve_shape: Literal["s_shaped", "linear", "concave"]
    expected_impressions: float
    optimal_followers: int
    optimal_tier: str
    optimal_followers_low: int = Field(
        description="Smallest follower count around the optimum with >= 95% of its expected profit."
    )
    optimal_followers_high: int = Field(
        description="Largest follower count around the optimum with >= 95% of its expected profit."
    )
    expected_impressions_optimal: float
    profit_actual: float
    profit_optimal: float
    profit_gap: float = Field(description="profit_optimal - profit_actual.")
    value_per_impression: float
    cost_per_1k_followers: float
    model_version: str
    emitted_at: UtcDatetime


class TierSummary(_Out):
    tier: str = Field(description="The tier the product's videos actually used.")
    videos: int
    mean_fei: float
    profit_actual: float
    profit_optimal: float
    profit_gap: float


class TierCount(_Out):
    tier: str
    videos: int


class ProductAdvice(_Out):
    product_id: str
    videos: int
    recommended_tier: str = Field(description="The optimal tier advised for most of the product's videos.")
    profit_actual: float
    profit_optimal: float
    profit_gap: float
    by_tier: list[TierSummary] = Field(description="Actual tiers, in FEI Table 4 order.")
    optimal_tiers: list[TierCount] = Field(
        description="How many videos each tier is optimal for, most first."
    )


class Health(_Out):
    status: Literal["ok"]
    database: str


# ----------------------------------------------------------------------------------------------
# Queries

_FORECAST_COLS = (
    "product_id, issued_day, target_day, kind, revision, point, lower, upper, level, baseline, "
    "active_videos, model_version, emitted_at"
)
# the row a product ends up with for a target day (same order as the dashboards' argMax)
_BEST_FIRST = "(kind = 'day_close') DESC, revision DESC, emitted_at DESC, model_version DESC"
_TIER_ORDER = {name: i for i, (name, _, _) in enumerate(L.FOLLOWER_TIERS)}


def _with_lift(row: dict[str, Any]) -> dict[str, Any]:
    base = row.get("baseline")
    return row | {"lift": None if base is None else float(row["point"]) - float(base)}


def create_app(store: Store) -> FastAPI:
    db = store.database
    app = FastAPI(
        title="LiftStream API",
        version="0.1.0",
        description="Next-day sales-lift forecasts, forecast-drop alerts and influencer-size advice for ad-ops platforms.",
    )
    app.state.store = store

    @app.exception_handler(StoreError)
    async def _store_down(request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": f"store unavailable: {str(exc)[:500]}"})

    @app.get("/health", response_model=Health, tags=["ops"])
    def health() -> Health:
        _records(store, "SELECT 1 AS ok")
        return Health(status="ok", database=db)

    @app.get(
        "/products/{product_id}/forecast",
        response_model=Forecast,
        responses={404: {"description": "No forecast for this product"}},
        tags=["forecasts"],
    )
    def latest_forecast(product_id: IdPath) -> Forecast:
        rows = _records(
            store,
            f"SELECT {_FORECAST_COLS} FROM {db}.forecasts FINAL WHERE product_id = %(p)s "
            f"ORDER BY target_day DESC, {_BEST_FIRST} LIMIT 1",
            {"p": product_id},
        )
        if not rows:
            raise HTTPException(404, f"no forecast for product {product_id!r}")
        return Forecast.model_validate(_with_lift(rows[0]))

    @app.get(
        "/products/{product_id}/forecasts",
        response_model=ForecastHistory,
        response_model_by_alias=True,
        responses={404: {"description": "No forecast for this product"}},
        tags=["forecasts"],
    )
    def forecast_history(
        product_id: IdPath,
        from_day: Annotated[
            date | None, Query(alias="from", description="First target day (inclusive).")
        ] = None,
        to_day: Annotated[date | None, Query(alias="to", description="Last target day (inclusive).")] = None,
    ) -> ForecastHistory:
        if from_day is not None and to_day is not None and from_day > to_day:
            raise HTTPException(422, f"from ({from_day}) is after to ({to_day})")
        known = _records(
            store,
            f"SELECT count() AS n FROM {db}.forecasts FINAL WHERE product_id = %(p)s",
            {"p": product_id},
        )
        if not int(known[0]["n"]):
            raise HTTPException(404, f"no forecast for product {product_id!r}")
        params: dict[str, Any] = {"p": product_id}
        target_range, day_range = "", ""
        if from_day is not None:
            params["lo"] = from_day
            target_range += " AND target_day >= %(lo)s"
            day_range += " AND day >= %(lo)s"
        if to_day is not None:
            params["hi"] = to_day
            target_range += " AND target_day <= %(hi)s"
            day_range += " AND day <= %(hi)s"
        rows = _records(
            store,
            f"SELECT {_FORECAST_COLS} FROM {db}.forecasts FINAL WHERE product_id = %(p)s{target_range} "
            f"ORDER BY target_day, {_BEST_FIRST} LIMIT 1 BY target_day",
            params,
        )
        sales = _records(
            store,
            f"SELECT day, units FROM {db}.sales_daily FINAL WHERE product_id = %(p)s{day_range}",
            params,
        )
        actual = {str(r["day"]): float(r["units"]) for r in sales}
        points = []
        for row in rows:
            row = _with_lift(row)
            units = actual.get(str(row["target_day"]))
            point, lower, upper = float(row["point"]), float(row["lower"]), float(row["upper"])
            points.append(
                ForecastVsActual.model_validate(
                    row
                    | {
                        "actual": units,
                        "error": None if units is None else units - point,
                        "covered": None if units is None else lower <= units <= upper,
                    }
                )
            )
        return ForecastHistory(product_id=product_id, from_day=from_day, to_day=to_day, forecasts=points)

    @app.get("/alerts", response_model=AlertList, tags=["alerts"])
    def alerts(
        since: Annotated[
            UtcDatetime | None, Query(description="Only alerts emitted at or after this time.")
        ] = None,
        product_id: Annotated[
            str | None, Query(min_length=1, max_length=L.MAX_ID_CHARS, pattern=r"^[A-Za-z0-9_.:\-]+$")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> AlertList:
        where, params = ["1 = 1"], {"limit": limit}
        if since is not None:
            where.append("emitted_at >= %(since)s")
            params["since"] = _as_utc(since).replace(tzinfo=None)
        if product_id is not None:
            where.append("product_id = %(p)s")
            params["p"] = product_id
        rows = _records(
            store,
            "SELECT product_id, issued_day, target_day, rule, severity, reference, current, drop_pct, message, "
            f"model_version, emitted_at FROM {db}.alerts FINAL WHERE {' AND '.join(where)} "
            "ORDER BY emitted_at DESC, product_id, target_day DESC, rule LIMIT %(limit)s",
            params,
        )
        found = [Alert.model_validate(r) for r in rows]
        return AlertList(since=since, product_id=product_id, count=len(found), alerts=found)

    def _advice_rows(where: str, params: dict[str, Any]) -> list[Advice]:
        # one row per video: the latest advice (a newer model version replaces an older one)
        rows = _records(
            store,
            "SELECT video_id, product_id, influencer_id, day, followers, tier, fei, curve_shape, "
            "expected_impressions, optimal_followers, optimal_tier, optimal_followers_low, optimal_followers_high, "
            "expected_impressions_optimal, profit_actual, "
            "profit_optimal, value_per_impression, cost_per_1k_followers, model_version, emitted_at "
            f"FROM {db}.advice FINAL WHERE {where} "
            "ORDER BY video_id, emitted_at DESC, model_version DESC LIMIT 1 BY video_id",
            params,
        )
        return [
            Advice.model_validate(r | {"profit_gap": float(r["profit_optimal"]) - float(r["profit_actual"])})
            for r in rows
        ]

    @app.get(
        "/videos/{video_id}/advice",
        response_model=Advice,
        responses={404: {"description": "No advice for this video"}},
        tags=["advice"],
    )
    def video_advice(video_id: IdPath) -> Advice:
        found = _advice_rows("video_id = %(v)s", {"v": video_id})
        if not found:
            raise HTTPException(404, f"no advice for video {video_id!r}")
        return found[0]

    @app.get(
        "/products/{product_id}/advice",
        response_model=ProductAdvice,
        responses={404: {"description": "No advice for this product"}},
        tags=["advice"],
    )
    def product_advice(product_id: IdPath) -> ProductAdvice:
        found = _advice_rows("product_id = %(p)s", {"p": product_id})
        if not found:
            raise HTTPException(404, f"no advice for product {product_id!r}")
        by_tier: dict[str, list[Advice]] = {}
        optimal: dict[str, int] = {}
        for a in found:
            by_tier.setdefault(a.tier, []).append(a)
            optimal[a.optimal_tier] = optimal.get(a.optimal_tier, 0) + 1
        tiers = [
            TierSummary(
                tier=tier,
                videos=len(items),
                mean_fei=sum(a.fei for a in items) / len(items),
                profit_actual=sum(a.profit_actual for a in items),
                profit_optimal=sum(a.profit_optimal for a in items),
                profit_gap=sum(a.profit_gap for a in items),
            )
            for tier, items in sorted(
                by_tier.items(), key=lambda kv: (_TIER_ORDER.get(kv[0], len(_TIER_ORDER)), kv[0])
            )
        ]
        counts = [
            TierCount(tier=t, videos=n) for t, n in sorted(optimal.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        actual_total = sum(a.profit_actual for a in found)
        optimal_total = sum(a.profit_optimal for a in found)
        return ProductAdvice(
            product_id=product_id,
            videos=len(found),
            recommended_tier=counts[0].tier,
            profit_actual=actual_total,
            profit_optimal=optimal_total,
            profit_gap=optimal_total - actual_total,
            by_tier=tiers,
            optimal_tiers=counts,
        )

    return app


# ----------------------------------------------------------------------------------------------
# CLI


def cli(argv: list[str] | None = None) -> int:
    from streams.settings import Settings

    settings = Settings()
    parser = argparse.ArgumentParser(
        prog="liftstream api", description="Serve forecasts, alerts and advice over HTTP."
    )
    parser.add_argument(
        "--store",
        default=settings.store,
        help=f"chdb:///dir or clickhouse://host:port/db (default {settings.store})",
    )
    parser.add_argument(
        "--database",
        default=settings.database,
        help="database of a chdb store (default %(default)s); a clickhouse:// URL names its own",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=port, default=8080)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)

    import uvicorn

    store = open_store(store_url(args.store, args.database))
    uvicorn.run(create_app(store), host=args.host, port=args.port, log_level=args.log_level)
    return 0
