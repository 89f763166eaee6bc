"""ClickHouse DDL for every input and output table, one text for both engines.

The same statements run on Debian's clickhouse-server 18.16 (tests, via clickhouse-driver) and
on chdb (the embedded default), so they avoid what 18.16 lacks: no DateTime64, Map, Bool, TTL or
LowCardinality. Every table is a ReplacingMergeTree whose ORDER BY is the row's deterministic
key: a redelivered row replaces itself, so reads use ``FINAL`` (or argMax) for exact counts.

``TABLES`` maps table name -> (columns, order by, partition by); ``COLUMNS`` gives the insert
column order that sinks use with rows passed as parameters.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel

from schemas.events import EngagementDaily, SalesDaily, VideoPublished
from schemas.outputs import DeadLetter, ForecastAlert, InfluencerAdvice, SalesLiftForecast

# name -> ([(column, type)], order_by, partition_by)
TABLES: dict[str, tuple[list[tuple[str, str]], str, str | None]] = {
    "videos": (
        [
            ("event_id", "String"),
            ("video_id", "String"),
            ("product_id", "String"),
            ("influencer_id", "String"),
            ("day", "Date"),
            ("ts", "DateTime"),
            ("followers", "UInt64"),
            ("past_avg_hearts", "Float64"),
            ("verified", "UInt8"),
            ("city_tier", "String"),
            ("age", "Nullable(UInt8)"),
            ("category", "String"),
            ("price", "Nullable(Float64)"),
            ("video_type", "String"),
            ("length_s", "Float64"),
            ("width", "UInt16"),
            ("height", "UInt16"),
            ("size_mb", "Float64"),
            ("create_hour", "UInt8"),
            ("title", "String"),
            ("media_uri", "String"),
            ("n_segments", "UInt8"),
        ],
        "(product_id, video_id)",
        "toYYYYMM(day)",
    ),
    "engagement_daily": (
        [
            ("event_id", "String"),
            ("product_id", "String"),
            ("video_id", "String"),
            ("day", "Date"),
            ("likes", "UInt64"),
            ("comments", "UInt64"),
            ("shares", "UInt64"),
            ("collects", "UInt64"),
            ("impressions", "UInt64"),
        ],
        "(product_id, video_id, day)",
        "toYYYYMM(day)",
    ),
    "sales_daily": (
        [
            ("event_id", "String"),
            ("product_id", "String"),
            ("day", "Date"),
            ("units", "UInt64"),
            ("price", "Float64"),
            ("rating", "Float64"),
        ],
        "(product_id, day)",
        "toYYYYMM(day)",
    ),
    "forecasts": (
        [
            ("product_id", "String"),
            ("issued_day", "Date"),
            ("target_day", "Date"),
            ("kind", "String"),
            ("revision", "UInt64"),
            ("point", "Float64"),
            ("lower", "Float64"),
            ("upper", "Float64"),
            ("level", "Float64"),
            ("baseline", "Nullable(Float64)"),
            ("active_videos", "UInt32"),
            ("model_version", "String"),
            ("emitted_at", "DateTime"),
        ],
        "(product_id, target_day, kind, revision, model_version)",
        "toYYYYMM(target_day)",
    ),
    "alerts": (
        [
            ("product_id", "String"),
            ("issued_day", "Date"),
            ("target_day", "Date"),
            ("rule", "String"),
            ("severity", "String"),
            ("reference", "Float64"),
            ("current", "Float64"),
            ("drop_pct", "Float64"),
            ("message", "String"),
            ("model_version", "String"),
            ("emitted_at", "DateTime"),
        ],
        "(product_id, target_day, rule, model_version)",
        "toYYYYMM(target_day)",
    ),
    "advice": (
        [
            ("video_id", "String"),
            ("product_id", "String"),
            ("influencer_id", "String"),
            ("day", "Date"),
            ("followers", "UInt64"),
            ("tier", "String"),
            ("fei", "Float64"),
            ("curve_shape", "String"),
            ("expected_impressions", "Float64"),
            ("optimal_followers", "UInt64"),
            ("optimal_tier", "String"),
            ("optimal_followers_low", "UInt64"),  # COLUMN_DEFAULTS
            ("optimal_followers_high", "UInt64"),
            ("expected_impressions_optimal", "Float64"),
            ("profit_actual", "Float64"),
            ("profit_optimal", "Float64"),
            ("value_per_impression", "Float64"),
            ("cost_per_1k_followers", "Float64"),
            ("model_version", "String"),
            ("emitted_at", "DateTime"),
        ],
        "(product_id, video_id, model_version)",
        "toYYYYMM(day)",
    ),
    "dead_letters": (
        [
            ("dlq_id", "String"),
            ("source", "String"),
            ("received_at", "DateTime"),
            ("error_type", "String"),
            ("error", "String"),
            ("raw", "String"),
            ("raw_size", "UInt64"),
            ("raw_sha256", "String"),
        ],
        "dlq_id",
        None,
    ),
}

# DEFAULT expressions of columns added after the first release (schema evolution,
# ``add_missing_columns``): what rows written before the column existed read
COLUMN_DEFAULTS: dict[str, dict[str, str]] = {
    "advice": {"optimal_followers_low": "optimal_followers", "optimal_followers_high": "optimal_followers"},
}

COLUMNS: dict[str, list[str]] = {name: [c for c, _ in cols] for name, (cols, _, _) in TABLES.items()}

# which pydantic model fills which table
TABLE_OF: dict[type[BaseModel], str] = {
    VideoPublished: "videos",
    EngagementDaily: "engagement_daily",
    SalesDaily: "sales_daily",
    SalesLiftForecast: "forecasts",
    ForecastAlert: "alerts",
    InfluencerAdvice: "advice",
    DeadLetter: "dead_letters",
}


def create_database(database: str) -> str:
    return f"CREATE DATABASE IF NOT EXISTS {database}"


def create_table(database: str, name: str) -> str:
    cols, order_by, partition_by = TABLES[name]
    body = ",\n  ".join(_column_def(name, c, t) for c, t in cols)
    part = f"\nPARTITION BY {partition_by}" if partition_by else ""
    return (
        f"CREATE TABLE IF NOT EXISTS {database}.{name} (\n  {body}\n)\n"
        f"ENGINE = ReplacingMergeTree(){part}\nORDER BY {order_by}"
    )


def _column_def(table: str, column: str, typ: str) -> str:
    default = COLUMN_DEFAULTS.get(table, {}).get(column)
    return f"{column} {typ}" + (f" DEFAULT {default}" if default else "")


def create_all(database: str) -> list[str]:
    """Every statement needed to set up ``database``, in order."""
    return [create_database(database)] + [create_table(database, n) for n in TABLES]


def add_missing_columns(database: str, existing: dict[str, set[str]]) -> list[str]:
    """``ALTER TABLE ... ADD COLUMN`` statements that bring tables written by an earlier version
    up to ``TABLES`` (schema evolution). Only the columns of ``COLUMN_DEFAULTS`` are ever added,
    each with the default that the rows already there read; a table that lacks any other column
    is not one this code wrote and is left alone (its inserts fail loudly). ``existing``: table
    -> its column names now (``system.columns``); tables missing from it are left to
    ``create_all``."""
    out = []
    for table, added in COLUMN_DEFAULTS.items():
        have = existing.get(table)
        if not have:
            continue
        cols = TABLES[table][0]
        if any(c not in have and c not in added for c, _ in cols):
            continue
        for i, (name, typ) in enumerate(cols):
            if name not in have:  # in COLUMN_DEFAULTS, so never the first column
                out.append(
                    f"ALTER TABLE {database}.{table} ADD COLUMN {_column_def(table, name, typ)} AFTER {cols[i - 1][0]}"
                )
    return out


def _naive_utc(ts: datetime) -> datetime:
    # ClickHouse DateTime has second precision and no zone in these columns: store UTC, naive
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts.replace(microsecond=0)


def row_of(model: BaseModel) -> tuple[str, tuple[Any, ...]]:
    """(table, row tuple in ``COLUMNS`` order) for an input event or output row."""
    table = TABLE_OF[type(model)]
    if isinstance(model, VideoPublished):
        inf = model.influencer
        values: dict[str, Any] = {
            "event_id": model.event_id,
            "video_id": model.video_id,
            "product_id": model.product_id,
            "influencer_id": inf.influencer_id,
            "day": model.day,
            "ts": model.ts,
            "followers": inf.followers,
            "past_avg_hearts": inf.past_avg_hearts,
            "verified": int(inf.verified),
            "city_tier": inf.city_tier,
            "age": inf.age,
            "category": model.product.category if model.product else "",
            "price": model.product.price if model.product else None,
            "video_type": model.video_type,
            "length_s": model.length_s,
            "width": model.width,
            "height": model.height,
            "size_mb": model.size_mb,
            "create_hour": model.create_hour,
            "title": model.title,
            "media_uri": model.media_uri or "",
            "n_segments": model.features.n_segments if model.features else 0,
        }
        return table, tuple(values[col] if col != "ts" else _naive_utc(values[col]) for col in COLUMNS[table])
    # attribute access, not model_dump: this runs once per stored row
    row = [getattr(model, col) for col in COLUMNS[table]]
    for i in _DATETIME_COLUMNS[table]:
        row[i] = _naive_utc(row[i])
    return table, tuple(row)


_DATETIME_COLUMNS = {
    name: [i for i, (_, t) in enumerate(cols) if t == "DateTime"] for name, (cols, _, _) in TABLES.items()
}


__all__ = [
    "TABLES",
    "COLUMNS",
    "COLUMN_DEFAULTS",
    "TABLE_OF",
    "add_missing_columns",
    "create_all",
    "create_table",
    "create_database",
    "row_of",
    "date",
]
