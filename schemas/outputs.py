"""Output rows: what the stream writes to ClickHouse (and to its output topics).

Every row carries a deterministic key (the ORDER BY of its ReplacingMergeTree table, see
``schemas.ddl``), so a replayed or redelivered input produces the same key and the store keeps
one row: at-least-once delivery plus idempotent writes.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas import limits as L


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SalesLiftForecast(_Row):
    """Next-day units forecast for one product, with a central prediction interval.

    kind='provisional' rows are re-issued when a new video joins the product's active set during
    day ``issued_day``; kind='day_close' is the forecast made once day ``issued_day`` closed.
    ``revision`` counts the events the product state had applied, so replays reproduce it.
    """

    product_id: str
    issued_day: date = Field(description="Data through this day.")
    target_day: date = Field(description="The day forecast (issued_day + 1).")
    kind: Literal["provisional", "day_close"]
    revision: int = Field(ge=0, le=2**63 - 1)
    point: float = Field(ge=0, description="Expected units sold on target_day.")
    lower: float = Field(ge=0)
    upper: float = Field(ge=0)
    level: float = Field(gt=0, lt=1, description="Nominal coverage of [lower, upper].")
    baseline: float | None = Field(
        default=None, description="Expected units with no active videos: point - baseline is the sales lift."
    )
    active_videos: int = Field(ge=0, le=2**32 - 1)
    model_version: str
    emitted_at: datetime


class ForecastAlert(_Row):
    """The forecast of a product dropped (rule and numbers say how)."""

    product_id: str
    issued_day: date
    target_day: date
    rule: Literal["below_band", "pct_drop"]
    severity: Literal["warning", "critical"]
    reference: float = Field(
        description="What the forecast was compared with (band lower bound or trailing mean)."
    )
    current: float
    drop_pct: float
    message: str
    model_version: str
    emitted_at: datetime


class InfluencerAdvice(_Row):
    """Which follower size to sponsor for content like this video, from the FEI curve."""

    video_id: str
    product_id: str
    influencer_id: str
    day: date
    followers: int = Field(ge=0, le=2**63 - 1)
    tier: str
    fei: float = Field(description="Follower elasticity of impressions at the actual follower count.")
    curve_shape: Literal["s_shaped", "linear", "concave"]
    expected_impressions: float
    optimal_followers: int = Field(ge=0, le=2**63 - 1)
    optimal_tier: str
    optimal_followers_low: int = Field(
        ge=0,
        le=2**63 - 1,
        description="Smallest follower count around the optimum whose expected profit is >= 95% of the optimal profit.",
    )
    optimal_followers_high: int = Field(
        ge=0,
        le=2**63 - 1,
        description="Largest follower count around the optimum whose expected profit is >= 95% of the optimal profit.",
    )
    expected_impressions_optimal: float
    profit_actual: float
    profit_optimal: float
    value_per_impression: float
    cost_per_1k_followers: float
    model_version: str
    emitted_at: datetime

    @model_validator(mode="after")
    def _range_holds_the_optimum(self) -> InfluencerAdvice:
        if not self.optimal_followers_low <= self.optimal_followers <= self.optimal_followers_high:
            raise ValueError(
                f"optimal_followers_low <= optimal_followers <= optimal_followers_high must hold, got "
                f"{self.optimal_followers_low}, {self.optimal_followers}, {self.optimal_followers_high}"
            )
        return self


class DeadLetter(_Row):
    """An input that could not be used, kept with why: nothing is dropped silently."""

    dlq_id: str = Field(description="sha256 of source + raw payload (first 32 hex chars): replays dedupe.")
    source: str
    received_at: datetime
    error_type: str
    error: str
    raw: str = Field(
        description=f"Raw payload (first {L.DEAD_LETTER_RAW_KEEP_BYTES} bytes, undecodable bytes replaced)."
    )
    raw_size: int = Field(ge=0)
    raw_sha256: str

    @classmethod
    def from_raw(
        cls, raw: bytes | str, *, source: str, error_type: str, error: str, received_at: datetime
    ) -> DeadLetter:
        data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else bytes(raw)
        digest = hashlib.sha256(data).hexdigest()
        return cls(
            dlq_id=hashlib.sha256(source.encode() + b"\0" + data).hexdigest()[:32],
            source=source,
            received_at=received_at,
            error_type=error_type,
            error=error[:8192],
            raw=data[: L.DEAD_LETTER_RAW_KEEP_BYTES].decode("utf-8", "replace"),
            raw_size=len(data),
            raw_sha256=digest,
        )


OutputRow = SalesLiftForecast | ForecastAlert | InfluencerAdvice | DeadLetter
