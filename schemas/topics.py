"""Kafka topic names and keys, in one place.

All input events share ``EVENTS`` keyed by product id, so a product's videos, engagement and
sales arrive in order on one partition and one worker owns the product's state (Kafka's
partition assignment is what scales the workers; see deploy/). Outputs go to ClickHouse and,
for other consumers, to the output topics below.
"""

from __future__ import annotations

EVENTS = "liftstream.events"
FORECASTS = "liftstream.forecasts"
ALERTS = "liftstream.alerts"
ADVICE = "liftstream.advice"
DEAD_LETTERS = "liftstream.deadletters"

DEFAULT_PARTITIONS = 4


def topic_names(prefix: str = "") -> dict[str, str]:
    """Topic names with an optional prefix (tests give each run its own)."""
    names = {
        "events": EVENTS,
        "forecasts": FORECASTS,
        "alerts": ALERTS,
        "advice": ADVICE,
        "dead_letters": DEAD_LETTERS,
    }
    return {k: f"{prefix}{v}" for k, v in names.items()}


def event_key(product_id: str) -> bytes:
    """Message key of every input event: the product id, UTF-8."""
    return product_id.encode("utf-8")
