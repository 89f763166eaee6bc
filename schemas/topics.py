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

# Topics whose history the broker keeps (retention.ms = -1; deploy/ sets it at creation and on
# existing topics). A product's state (its LSTM state runs over every day since its first video)
# is rebuilt by replaying the input from the start: moving to more partitions (deploy/README.md,
# "Scaling") and recovering from a lost changelog both need the input since the campaigns began,
# which a 7-day default would have deleted. Outputs are in ClickHouse; the broker default suffices.
KEEP_HISTORY = (EVENTS,)


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
