"""The batch driver shared by the embedded runner and the Faust agents.

``Processor.process(items)`` takes a batch of raw payloads (or already-validated events), in
stream order, and returns the rows to write plus counts. It parses (bad payloads become dead
letters), encodes the batch's new videos in one model call, applies each event to its
product's pure state (``streams.state``), runs the forecasts and advice the states asked for in
as few batched model calls as ordering allows, and writes touched states back once per batch.

Ordering: a product's day-close forecast must be applied before that product's next event, so
the pending model work is flushed when such an event arrives; in a day-ordered stream that is
once per day. Every input is counted exactly once:
``received == applied + duplicate + stale + dead_letter``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from pydantic import BaseModel, ValidationError

from inference.client import VideoBatch
from schemas.events import (
    EngagementDaily,
    PayloadTooLarge,
    SalesDaily,
    VideoPublished,
    event_json,
    parse_event,
)
from schemas.outputs import DeadLetter
from streams.scoring import FeatureResolver, advice_rows, run_forecasts_async, video_meta
from streams.state import AlertConfig, ForecastRequest, ProductState, apply_event, apply_forecast, emitted_at

InputEvent = VideoPublished | EngagementDaily | SalesDaily
Item = bytes | str | InputEvent
_EVENT_TYPES = (VideoPublished, EngagementDaily, SalesDaily)


def wall_clock(_issued_day: int) -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def replay_clock(issued_day: int) -> datetime:
    """Deterministic emission time (end of the issued day): replays give identical rows."""
    return emitted_at(issued_day)


@dataclass
class BatchResult:
    rows: list[BaseModel] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)


class Processor:
    def __init__(
        self,
        client,
        states: MutableMapping[str, ProductState],
        *,
        h_dim: int,
        source: str = "events",
        value_per_impression: float = 0.02,
        cost_per_1k_followers: float = 5.0,
        alerts: AlertConfig = AlertConfig(),
        clock: Callable[[int], datetime] = wall_clock,
        resolver: FeatureResolver | None = None,
    ):
        self.client, self.states, self.h_dim, self.source = client, states, h_dim, source
        self.value, self.cost, self.alerts, self.clock = (
            value_per_impression,
            cost_per_1k_followers,
            alerts,
            clock,
        )
        self.resolver = resolver or FeatureResolver()
        self.totals: Counter = Counter()
        # the forecaster reads the content-lift channel: its encodings end with q_v (daily.day_input)
        self.content = bool(getattr(client, "content_channel", False))

    @classmethod
    async def create(cls, client, states, **kw) -> Processor:
        """Build one, asking the client for its encoding size."""
        h_dim = int((await client.encode(VideoBatch.empty(1))).shape[1])
        return cls(client, states, h_dim=h_dim, **kw)

    def _dead(self, raw: Item, error_type: str, error: str) -> DeadLetter:
        payload = event_json(raw) if isinstance(raw, BaseModel) else raw
        return DeadLetter.from_raw(
            payload, source=self.source, error_type=error_type, error=error, received_at=wall_clock(0)
        )

    async def process(self, items: Sequence[Item]) -> BatchResult:
        out = BatchResult()
        out.counts["received"] += len(items)

        # 1. parse
        events: list[tuple[Item, InputEvent]] = []
        for item in items:
            if isinstance(item, _EVENT_TYPES):
                events.append((item, item))
                continue
            try:
                events.append((item, parse_event(item)))
            except ValidationError as exc:
                out.rows.append(self._dead(item, "ValidationError", _short(exc)))
                out.counts["dead_letter"] += 1
            except PayloadTooLarge as exc:
                out.rows.append(self._dead(item, "PayloadTooLarge", str(exc)))
                out.counts["dead_letter"] += 1

        # 2. features and encodings of the batch's videos, one model call
        cand = [pos for pos, (_, ev) in enumerate(events) if isinstance(ev, VideoPublished)]
        full, errors = self.resolver.resolve([events[p][1] for p in cand])
        bad_media = {cand[i]: msg for i, msg in errors.items()}
        good = [i for i in range(len(cand)) if i not in errors]
        video_rows = {cand[i]: j for j, i in enumerate(good)}  # event position -> row of `batch`
        vids: list[VideoPublished] = [events[cand[i]][1] for i in good]
        batch = full.take(np.array(good, dtype=np.int64)) if errors else full
        h = await self.client.encode(batch) if vids else None

        # 3. apply in order, flushing model work when ordering requires it
        local: dict[str, ProductState] = {}
        pending: list[ForecastRequest] = []
        pending_close: set[str] = set()
        pending_advice: list = []  # (AdviceRequest, batch row)

        async def flush() -> None:
            results = await run_forecasts_async(self.client, pending)
            for req, res in zip(pending, results, strict=True):
                st, rows = apply_forecast(
                    local[req.product_id],
                    req,
                    res,
                    model_version=self.client.model_version,
                    now=self.clock(req.issued_day),
                    alerts=self.alerts,
                )
                local[req.product_id] = st
                out.rows.extend(rows)
            pending.clear()
            pending_close.clear()
            if pending_advice:
                idx = np.array([r for _, r in pending_advice])
                whole = len(idx) == len(batch) and (idx == np.arange(len(idx))).all()
                sub = batch if whole else batch.take(idx)  # no copy of the features in the usual case
                adv = await self.client.advise(
                    sub, video_meta([vids[i] for i in idx], sub), self.value, self.cost
                )
                reqs = [a for a, _ in pending_advice]
                out.rows.extend(
                    advice_rows(
                        reqs,
                        adv,
                        value_per_impression=self.value,
                        cost_per_1k_followers=self.cost,
                        model_version=self.client.advice_version,
                        now=self.clock(reqs[0].day),
                    )
                )
                pending_advice.clear()

        for pos, (raw, ev) in enumerate(events):
            if pos in bad_media:
                out.rows.append(self._dead(raw, "UnsupportedMedia", bad_media[pos]))
                out.counts["dead_letter"] += 1
                continue
            pid = ev.product_id
            if pid in pending_close:
                await flush()
            st = local.get(pid)
            if st is None:
                st = self.states.get(pid)
            row = video_rows.get(pos)
            st, res = apply_event(
                st, ev, h=None if row is None else h[row], h_dim=self.h_dim, content=self.content
            )
            local[pid] = st
            if res.status == "rejected":
                out.rows.append(self._dead(raw, res.rejection.error_type, res.rejection.message))
                out.counts["dead_letter"] += 1
                continue
            out.counts[res.status] += 1
            out.rows.extend(res.rows)
            pending.extend(res.forecasts)
            if any(r.kind == "day_close" for r in res.forecasts):
                pending_close.add(pid)
            pending_advice.extend((a, row) for a in res.advice)
        await flush()

        for pid, st in local.items():
            self.states[pid] = st
        self.totals.update(out.counts)
        return out


def _short(exc: ValidationError, limit: int = 20) -> str:
    """A readable one-line-per-error summary of a pydantic error."""
    lines = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "<root>"
        lines.append(f"{loc}: {err.get('msg')}")
    more = exc.error_count() - limit
    if more > 0:
        lines.append(f"... and {more} more")
    return "; ".join(lines)
