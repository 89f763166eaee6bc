"""The Faust worker: input events from Kafka in; forecasts, alerts, advice and dead letters out.

One ``faust.App`` is built here, from one ``Settings`` (``create_app``). The input topic (raw
bytes, keyed by product id) is read through a batch lane (``streams.faust_fast``: whole fetches,
no per-event Faust stream), whose micro-batches are handed to the shared
``streams.processor.Processor`` with the product states of a Faust Table (``TableStates``, a
changelog-backed table partitioned like the input topic). Per batch, in this order:

1. ``Processor.process`` parses (bad payloads become dead letters), encodes the new videos,
   applies the events to the pure per-product states and runs the forecasts and the advice.
   A model failure retries the whole batch with backoff (the staged states are forgotten).
2. Every row (inputs, forecasts, alerts, advice, dead letters) goes to ClickHouse through the
   ``ClickHouseSink``; the agent waits until the server has acknowledged them (retrying with
   backoff while the server is unreachable: backpressure, nothing lost).
3. Forecasts, alerts, advice and dead letters go to their output topics as JSON.
4. The touched states are written to the table, whose changelog records the worker sends
   itself and waits for until the broker has acknowledged each (``ProductTable``), followed by
   each partition's state offset (the last input offset the states include); only then does the
   lane commit the batch's offsets.

After a crash or any rebalance, each input partition resumes right after its recovered state
offset (``Worker.resume_offset``), whatever the committed offset says, and the batch lane takes
its events strictly in offset order from there: events after the last saved states are replayed
(their rows and outputs may have been written already: every row's deterministic key,
ReplacingMergeTree, makes that harmless), and none is skipped.

Late sales: with ``day_close_timeout_s > 0`` a timer closes the open day of a product whose next
``SalesDaily`` has not arrived that many seconds after its last day closed, by feeding the
Processor a synthetic ``SalesDaily`` (event id ``imputed:...``, units = the forecast made for
that day), at most ``MAX_IMPUTED_DAYS`` days in a row. A real ``SalesDaily`` for that day arriving
later is stored as a correction (it replaces the imputed row; the model does not rewind).

Run it:

    liftstream worker --bootstrap 127.0.0.1:9092 --store clickhouse://127.0.0.1:9000/liftstream
    python -m streams.app --bootstrap 127.0.0.1:9092 --store clickhouse://127.0.0.1:9000/db --web-port 0
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import hashlib
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import faust
from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP
from pydantic import BaseModel

from schemas.events import SalesDaily
from schemas.outputs import DeadLetter, ForecastAlert, InfluencerAdvice, SalesLiftForecast
from schemas.topics import EVENTS, event_key, topic_names
from streams.faust_fast import LiftStreamApp, QuietWorker
from streams.processor import BatchResult, Processor
from streams.settings import Settings
from streams.state import ProductState, ordinal_day
from streams.state_table import TableStates, product_of

log = logging.getLogger("liftstream.worker")

STATE_TABLE = "product_state"
OFFSET_KEY = "|offset|{}"  # table key of an input partition's state offset (see ProductTable)
MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # above limits.MAX_RAW_PAYLOAD_BYTES, so oversized events reach the DLQ
MAX_IMPUTED_DAYS = 3  # consecutive days the timer closes for a product before it waits for real sales
RETRY_INITIAL_S = 0.1
RETRY_MAX_S = 5.0
GC_THRESHOLDS = (50_000, 20, 1_000)  # see cli_worker


def kafka_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{b.strip().removeprefix('kafka://')}" for b in bootstrap.split(",") if b.strip()]


def output_topic_of(row: BaseModel) -> str | None:
    """Which output topic (``topic_names`` key) a row goes to; None for input rows."""
    if isinstance(row, SalesLiftForecast):
        return "forecasts"
    if isinstance(row, ForecastAlert):
        return "alerts"
    if isinstance(row, InfluencerAdvice):
        return "advice"
    if isinstance(row, DeadLetter):
        return "dead_letters"
    return None


def imputed_sales(state: ProductState) -> SalesDaily:
    """The synthetic SalesDaily that closes ``state``'s open day: units = the forecast made for it."""
    assert state.closed_day is not None, "a product with no closed day has nothing to impute from"
    day = state.closed_day + 1
    units = state.units
    for t in reversed(state.trailing):
        if t.target_day == day:
            units = t.point
            break
    eid = f"imputed:{state.product_id}:{ordinal_day(day).isoformat()}"
    if len(eid) > 64:  # ids are at most 64 chars; keep it deterministic
        eid = "imputed:" + hashlib.sha256(eid.encode()).hexdigest()[:48]
    return SalesDaily(
        event_id=eid,
        day=ordinal_day(day),
        product_id=state.product_id,
        units=max(int(round(units)), 0),
        price=state.price or 1.0,
        rating=state.rating,
    )


def build_client(settings: Settings):
    """The async model client the settings ask for (in-process stand-ins/checkpoints, or Triton)."""
    from inference.client import AsyncInProcessClient

    if settings.models.startswith("triton://"):
        from inference.triton_client import load_client

        return load_client(settings.models, timeout_s=settings.model_timeout_s)
    from streams.embedded import load_models

    return AsyncInProcessClient(load_models(settings, None, progress=False))


def build_sink(settings: Settings):
    """The row sink for ``settings.store``: ClickHouseSink for clickhouse://, ChdbSink for chdb://."""
    parts = urlsplit(settings.store)
    if parts.scheme == "clickhouse":
        from streams.sinks import ClickHouseSink

        return ClickHouseSink(
            parts.hostname or "127.0.0.1",
            parts.port or 9000,
            parts.path.strip("/") or settings.database,
            user=unquote(parts.username or "default"),
            password=unquote(parts.password or ""),
            batch_rows=settings.sink_batch_rows,
            flush_interval_s=settings.sink_flush_interval_s,
            max_buffer_rows=max(settings.sink_batch_rows, 20 * settings.batch_max, 200_000),
        )
    if parts.scheme == "chdb":
        from streams.sinks import ChdbSink

        return ChdbSink(
            unquote(parts.netloc + parts.path), settings.database, batch_rows=settings.sink_batch_rows
        )
    raise ValueError(f"store must be clickhouse://host:port/db or chdb:///dir, got {settings.store!r}")


_PARTITIONER = DefaultPartitioner()


def partition_of(pid: str, partitions: int) -> int:
    """The input partition of a product: Kafka's default (murmur2) partitioner on its key."""
    ids = list(range(partitions))
    return _PARTITIONER(event_key(pid), ids, ids)


class ProductTable(faust.Table):
    """The product-state table, whose changelog records the worker sends and waits for itself.

    Partition: a record goes to its product's input partition. Faust's default puts it on the
    partition of the event being processed, which in a micro-batch that mixes partitions is not
    the product's; ``use_partitioner=True`` asks the producer for metadata of the changelog topic
    that it may not have loaded yet.

    Delivery: Faust sends a table's changelog records through its producer buffer, and its
    ``producer.flush()`` before an offset commit gives up on that buffer after 0.1 s without
    progress (and misses a record its sender task has dequeued but not handed to aiokafka), so
    offsets could be committed past events whose states never reached the changelog; a worker
    killed then came back with older states (tests/test_stream_e2e.py, ``slow_changelog``). Here
    a write only queues its record (``on_key_set``/``on_key_del``) and ``changelog_delivered``
    sends the queue straight to the producer, in order, and returns once the broker has
    acknowledged every record. The worker awaits it before a batch's offsets are committed.

    State offsets: each batch ends, in every changelog partition it wrote and every input
    partition it read, with a record ``OFFSET_KEY.format(p)`` holding the last input offset of
    partition ``p`` whose effects the states before it include. A recovered table therefore
    says itself where its partition's events must resume, whatever the group's committed offset
    says, and the batch lane resumes the partition there (``Worker.resume_offset``).
    """

    def partition_for_key(self, key: str) -> int:
        return partition_of(product_of(key), self.partitions)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.unsent: list[tuple[str, bytes | None]] = []  # changelog records written, not sent yet
        super().__init__(*args, **kwargs)

    def on_key_set(self, key: str, value: bytes) -> None:
        self.unsent.append((key, value))
        self._sensor_on_set(self, key, value)

    def on_key_del(self, key: str) -> None:
        self.unsent.append((key, None))  # a tombstone
        self._sensor_on_del(self, key)

    def state_offset(self, partition: int) -> int | None:
        """The last input offset of ``partition`` whose effects the table's states include."""
        raw = self.data.get(OFFSET_KEY.format(partition))
        return None if raw is None else int(raw)

    async def changelog_delivered(self, offsets: dict[int, int] | None = None) -> int:
        """Send the queued changelog records, then each written or read partition's state offset
        (``offsets``: input partition -> last offset of the batch); return once the broker has
        all of them."""
        records, self.unsent = self.unsent, []
        offsets = offsets or {}
        if not records and not offsets:
            return 0
        producer, topic = self.app.producer, self.changelog_topic
        name = topic.get_topic_name()
        pending = []
        for key, value in records:
            raw_key, _ = topic.prepare_key(key, self.key_serializer)
            raw_value = None if value is None else topic.prepare_value(value, self.value_serializer)[0]
            pending.append(
                await producer.send(
                    name,
                    raw_key,
                    raw_value,
                    partition=self.partition_for_key(key),
                    timestamp=None,
                    headers=None,
                )
            )
        metas = await asyncio.gather(*pending)
        for meta in metas:
            self.data.set_persisted_offset(
                TP(meta.topic, meta.partition), meta.offset
            )  # as Faust's callback does
        # Close each partition written to or read with its state offset, sent alone, after the
        # states it covers were acknowledged: a one-record last batch also matters because Tansu
        # answers end_offsets with the last record batch's base offset + 1
        # (tests/bench/tansu_end_offsets.py) and Faust's recovery reads a changelog only up to
        # that, so the rest of a multi-record last batch would be missing from a recovered table.
        # The key is no product (it holds the separator); a partition with no offset yet (states
        # written by the late-day timer only) gets a tombstone of it, which deletes nothing.
        markers = []
        for p in sorted({m.partition for m in metas} | set(offsets)):
            key = OFFSET_KEY.format(p)
            offset = offsets.get(p, self.state_offset(p))
            value = None if offset is None else str(offset).encode()
            if value is not None:
                self.data[key] = value  # the store directly: not queued as a state write
            raw_key, _ = topic.prepare_key(key, self.key_serializer)
            markers.append(
                await producer.send(name, raw_key, value, partition=p, timestamp=None, headers=None)
            )
        await asyncio.gather(*markers)
        return len(records)


@dataclass
class Worker:
    """What the agent and the timer share: the processor, the states, the sink, counters."""

    settings: Settings
    app: faust.App
    table: Any
    topics: dict[str, str]
    out_topics: dict[str, Any]
    client_factory: Any = build_client
    sink_factory: Any = build_sink
    stats_file: Path | None = None
    states: TableStates = field(init=False)
    processor: Processor | None = None
    sink: Any = None
    totals: Counter = field(default_factory=Counter)
    stage_s: Counter = field(default_factory=Counter)  # wall seconds per stage of a batch, summed
    # pid -> (closed_day, monotonic time it closed, consecutive days closed by the timer)
    closes: dict[str, tuple[int, float, int]] = field(default_factory=dict)
    _imputing: set[str] = field(default_factory=set)
    _stats_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.states = TableStates(self.table)

    async def start(self) -> None:
        if self.processor is not None:
            return
        client = self.client_factory(self.settings)
        self.processor = await self._retry(
            "model client",
            lambda: Processor.create(
                client,
                self.states,
                source=EVENTS,  # the logical source, not the prefixed name: dead-letter ids stay stable
                value_per_impression=self.settings.value_per_impression,
                cost_per_1k_followers=self.settings.cost_per_1k_followers,
                alerts=self.settings.alert_config(),
            ),
        )
        for topic in self.out_topics.values():  # created with the input's partition count
            await topic.maybe_declare()
        self.sink = self.sink_factory(self.settings)
        log.info("worker ready: models %s / %s", client.model_version, client.advice_version)

    async def stop(self) -> None:
        if self.sink is not None:
            await asyncio.to_thread(self.sink.close)
            self.sink = None

    async def _retry(self, what: str, attempt):
        """Await ``attempt()`` until it succeeds, backing off; the batch is never dropped."""
        delay = RETRY_INITIAL_S
        while True:
            try:
                return await attempt()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure of a model or sink is retried
                self.totals[f"retry_{what.replace(' ', '_')}"] += 1
                self._write_stats()
                log.warning("%s failed (%r); retrying in %.1f s", what, exc, delay)
                await asyncio.sleep(delay)  # backoff before the next attempt
                delay = min(delay * 2, RETRY_MAX_S)

    # -- one batch --------------------------------------------------------------------------------
    async def handle(self, items: Sequence[Any], offsets: dict[int, int] | None = None) -> BatchResult:
        """Process, persist and publish one batch; states are saved last (see the module doc).
        ``offsets``: input partition -> the batch's last offset there, saved with the states."""
        await self.start()
        async with self.lock:
            return await self._handle_locked(items, offsets)

    async def _handle_locked(
        self, items: Sequence[Any], offsets: dict[int, int] | None = None
    ) -> BatchResult:
        async def process() -> BatchResult:
            try:
                return await self.processor.process(items)
            except BaseException:
                self.states.rollback()  # the retry starts again from the committed states
                raise

        t0 = time.perf_counter()
        result = await self._retry("processor", process)
        t1 = time.perf_counter()
        try:
            await self._persist(result.rows)
            t2 = time.perf_counter()
            await self._publish(result.rows)
        except BaseException:
            # interrupted (cancelled by a rebalance or shutdown) before its rows were safe: its
            # states must not survive into the next batch, which will see these events again
            self.states.rollback()
            raise
        t3 = time.perf_counter()
        committed = self.states.commit()
        # the batch's offsets are committed when this returns: their states must be durable
        await self.table.changelog_delivered(offsets)
        t4 = time.perf_counter()
        for stage, dt in (
            ("process", t1 - t0),
            ("clickhouse", t2 - t1),
            ("publish", t3 - t2),
            ("state", t4 - t3),
        ):
            self.stage_s[stage] += dt
        self.totals["batches"] += 1
        self._track_closes(committed)
        self.totals.update(result.counts)
        self._write_stats(force=False)
        return result

    async def _persist(self, rows: list[BaseModel]) -> None:
        """Return once the server holds ``rows``: written once, flushed until acknowledged.

        The sink retries an unreachable server itself (backoff); here a full buffer or a flush
        timeout waits and tries again, and a sink that stopped for good is replaced and given the
        rows again (idempotent keys: a row written twice is one row).
        """
        if not rows:
            return
        from streams.sinks import SinkError, SinkFailed

        written, delay = False, RETRY_INITIAL_S
        while True:
            try:
                if not written:
                    await self._sink_call("write", rows)
                    written = True
                await self._sink_call("flush")
                return
            except SinkFailed as exc:
                log.error("sink stopped (%r); opening a new one", exc)
                await asyncio.to_thread(_close_quietly, self.sink)
                self.sink, written = self.sink_factory(self.settings), False
                self.totals["sink_reopened"] += 1
            except (SinkError, OSError) as exc:
                log.warning("sink %s (%r); retrying in %.1f s", "flush" if written else "write", exc, delay)
            self.totals["retry_sink"] += 1
            self._write_stats()
            await asyncio.sleep(delay)  # backoff before the next attempt
            delay = min(delay * 2, RETRY_MAX_S)

    async def _sink_call(self, what: str, rows: list[BaseModel] | None = None) -> None:
        if hasattr(self.sink, f"{what}_async"):  # ClickHouseSink: the blocking part runs in a thread
            fn = getattr(self.sink, f"{what}_async")
            await (fn(rows) if rows is not None else fn())
        else:  # the embedded sink (chdb): synchronous, run off the event loop
            fn = getattr(self.sink, what)
            await (asyncio.to_thread(fn, rows) if rows is not None else asyncio.to_thread(fn))

    async def _publish(self, rows: list[BaseModel]) -> None:
        """Output rows to their topics as JSON, keyed by product (dead letters by their id).

        Straight to the producer (Faust's per-message Topic.send machinery costs more than the
        JSON); returns once the broker has acknowledged every record.
        """
        producer = self.app.producer
        pending = []
        for row in rows:
            name = output_topic_of(row)
            if name is None:
                continue
            key = row.dlq_id if isinstance(row, DeadLetter) else row.product_id
            pending.append(
                await producer.send(
                    self.topics[name],
                    key.encode(),
                    row.model_dump_json().encode(),
                    partition=None,
                    timestamp=None,
                    headers=None,
                )
            )
        if pending:
            await asyncio.gather(*pending)

    # -- late sales -------------------------------------------------------------------------------
    def _track_closes(self, committed: dict[str, ProductState]) -> None:
        if self.settings.day_close_timeout_s <= 0:
            return
        now = time.monotonic()
        for pid, st in committed.items():
            if st.closed_day is None:
                continue
            prev = self.closes.get(pid)
            if prev is None or prev[0] != st.closed_day:
                n_imputed = prev[2] + 1 if prev is not None and pid in self._imputing else 0
                self.closes[pid] = (st.closed_day, now, n_imputed)

    def owns(self, pid: str) -> bool:
        """Whether this worker is assigned the input partition of ``pid`` right now."""
        part = partition_of(pid, self.settings.topic_partitions)
        return TP(self.topics["events"], part) in self.app.consumer.assignment()

    def offsets(self) -> dict[int, dict[str, int | None]]:
        """Per held input partition: the last offset read, the last committed by this worker and
        the state offset (what the stats file shows an operator, and a failed test)."""
        try:
            consumer = self.app.consumer
            out = {}
            for p in self.assigned():
                tp = TP(self.topics["events"], p)
                out[p] = {
                    "read": consumer._read_offset.get(tp),
                    "committed": consumer._committed_offset.get(tp),
                    "state": self.table.state_offset(p),
                }
            return out
        except Exception:  # noqa: BLE001 - no consumer yet
            return {}

    def lane_counts(self) -> dict[str, int]:
        """What the batch lane had to mend so far (``FastDrainConsumer.lane_counts``)."""
        try:
            return dict(self.app.consumer.lane_counts)
        except Exception:  # noqa: BLE001 - no consumer yet, or another transport
            return {}

    def assigned(self) -> list[int]:
        """Input partitions this worker holds now."""
        try:
            tps = self.app.consumer.assignment()
        except Exception:  # noqa: BLE001 - no consumer yet
            return []
        return sorted(tp.partition for tp in tps if tp.topic == self.topics["events"])

    def resume_offset(self, partition: int, committed: int | None) -> int | None:
        """Where the events of input ``partition`` resume after a rebalance (the batch lane's
        ``resume``): right after the last offset its recovered states include
        (``ProductTable.state_offset``), wherever the group's committed offset is; the committed
        offset only for a partition whose states say nothing (a new group, an older changelog).

        Behind the committed offset (a commit that overtook its changelog records, or a
        changelog read short) the events after the states are replayed instead of skipped; ahead
        of it (the usual case after a crash: the commit follows the states) the events the
        states include are not read again."""
        done = self.table.state_offset(partition)
        if done is None:
            return committed
        if committed is not None and committed > done + 1:
            self.totals["resumed_from_state"] += 1
            log.warning(
                "partition %d resumes where its states stop, at %d, not at the committed %d",
                partition,
                done + 1,
                committed,
            )
        return done + 1

    def forget_partitions(self) -> None:
        """A rebalance moved products: timers start again from their next event, and decoded
        states are dropped (a partition that comes back is recovered from its changelog)."""
        self.closes.clear()
        self.states.evict()

    async def close_late_days(self) -> int:
        """Feed a synthetic SalesDaily to every owned product whose day stayed open too long."""
        timeout = self.settings.day_close_timeout_s
        if timeout <= 0 or self.processor is None or self.app.rebalancing:
            return 0
        now = time.monotonic()
        due = [
            pid
            for pid, (_, t, n) in self.closes.items()
            if now - t >= timeout and n < MAX_IMPUTED_DAYS and self.owns(pid)
        ]
        if not due:
            return 0
        async with self.lock:  # checked and fed under the agent's lock: no event slips in between
            synthetic = []
            for pid in due:
                st = self.states.get(pid)
                if (
                    st is None
                    or st.closed_day is None
                    or pid not in self.closes
                    or st.closed_day != self.closes[pid][0]
                ):
                    self.closes.pop(pid, None)  # moved on (or away) since it was tracked
                    continue
                synthetic.append(imputed_sales(st))
            if synthetic:
                log.info("closing %d late day(s) with imputed sales", len(synthetic))
                self.totals["imputed_sales"] += len(synthetic)
                self._imputing = {ev.product_id for ev in synthetic}
                try:
                    await self._handle_locked(synthetic)
                finally:
                    self._imputing = set()
        return len(synthetic)

    # -- observability ----------------------------------------------------------------------------
    def _write_stats(self, force: bool = True) -> None:
        if self.stats_file is None:
            return
        now = time.monotonic()
        if not force and now - self._stats_at < 0.2:
            return
        self._stats_at = now
        cpu = os.times()
        sink = getattr(self.sink, "stats", None)
        doc = {
            "pid": os.getpid(),
            "time": time.time(),
            "totals": dict(self.totals),
            "products": len(self.states),
            "assigned": self.assigned(),
            "offsets": self.offsets(),
            "lane": self.lane_counts(),
            "rss_bytes": _rss_bytes(),
            "cpu_s": round(cpu.user + cpu.system, 3),
            "stage_s": {k: round(v, 3) for k, v in self.stage_s.items()},
            "sink": None if sink is None else dataclasses.asdict(sink),
        }
        tmp = self.stats_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.stats_file)


def _close_quietly(sink) -> None:
    try:
        sink.close(timeout_s=1.0)
    except Exception as exc:  # noqa: BLE001 - the rows it held are written again by the caller
        log.warning("closing the failed sink: %r", exc)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def create_app(
    settings: Settings,
    *,
    client_factory=build_client,
    sink_factory=build_sink,
    stats_file: Path | None = None,
) -> faust.App:
    """The one Faust app of a worker, built from ``settings``; ``app.liftstream`` is its ``Worker``."""
    topics = topic_names(settings.topic_prefix)
    web = settings.worker_web_port > 0
    app = LiftStreamApp(  # faust.App with a faster message drain (streams/faust_fast.py)
        settings.app_id,
        broker=kafka_urls(settings.kafka_bootstrap),
        store="memory://",
        datadir=str(settings.data_dir or settings.home / "faust" / settings.app_id),  # not "<id>-data" in cwd
        autodiscover=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        processing_guarantee="at_least_once",  # Tansu has no transactions; see docs/streaming.md
        table_standby_replicas=0,  # memory grows with this worker's products only
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_rebalance_timeout=settings.broker_rebalance_timeout_s,
        broker_heartbeat_interval=settings.broker_heartbeat_interval_s,
        broker_commit_interval=1.0,
        consumer_max_fetch_size=MAX_MESSAGE_BYTES,
        producer_max_request_size=MAX_MESSAGE_BYTES,
        stream_buffer_maxsize=max(4 * settings.batch_max, 4096),
        broker_max_poll_records=settings.batch_max,  # one fetch is at most one batch
        web_enabled=web,
        web_port=settings.worker_web_port if web else 6066,
        web_bind="127.0.0.1",
    )
    events = app.topic(
        topics["events"],
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
    )
    out_topics = {
        name: app.topic(
            topics[name], key_serializer="raw", value_serializer="raw", partitions=settings.topic_partitions
        )
        for name in ("forecasts", "alerts", "advice", "dead_letters")
    }
    # keys are product ids, and each record goes to the partition of the product's events (same
    # key bytes, same partitioner), so the table's partitions follow the input's assignment
    table = app.tables.add(
        ProductTable(
            app,
            name=STATE_TABLE,
            beacon=app.tables.beacon,
            key_type=str,  # serialized as JSON strings
            value_type=bytes,  # ProductState.to_bytes(), stored and restored as raw bytes
            partitions=settings.topic_partitions,
        )
    )
    worker = Worker(settings, app, table, topics, out_topics, client_factory, sink_factory, stats_file)
    app.liftstream = worker

    # the input: the topic's messages reach Worker.handle in micro-batches through a batch
    # lane (streams/faust_fast.py), in offset order per partition from where the states stop;
    # their offsets are committed once it returns (rows in ClickHouse, outputs and changelog
    # records acknowledged by the broker). A batch that raises is never committed.
    async def score(messages):
        offsets: dict[int, int] = {}
        for m in messages:  # in fetch order: offsets rise within a partition
            offsets[m.partition] = m.offset
        # a tombstone (null value) is bad input like any other: it becomes a dead letter
        await worker.handle([b"" if m.value is None else m.value for m in messages], offsets)

    app.batch_lane(
        events,
        score,
        max_batch=settings.batch_max,
        within_s=settings.batch_within_s,
        resume=worker.resume_offset,
    )

    if settings.day_close_timeout_s > 0:
        tick = min(max(settings.day_close_timeout_s / 4, 0.25), 60.0)

        @app.timer(interval=tick, name=f"{settings.app_id}.close_late_days")
        async def close_late_days():
            await worker.close_late_days()

    @app.on_partitions_revoked.connect
    async def on_revoked(app, revoked, **kwargs):
        # Faust sends this signal after it waited for acked events and flushed its producer; a
        # batch may still be in flight (its events were already taken). Let it finish, then flush
        # its changelog records too: table recovery reads each changelog up to its end offset, and
        # a record still in the producer's buffer would be restored as the older state.
        async with worker.lock:
            await app.producer.flush()
            worker.forget_partitions()

    if stats_file is not None:

        @app.timer(interval=0.5, name=f"{settings.app_id}.stats")
        async def write_stats():  # also while a batch waits on a sink outage
            worker._write_stats()

    @app.on_rebalance_complete.connect
    async def on_rebalanced(app, **kwargs):
        worker._write_stats()

    @app.on_before_shutdown.connect
    async def on_shutdown(app, **kwargs):
        await worker.stop()
        worker._write_stats()  # the final totals: the timer's last write can miss the last batches

    return app


# ----------------------------------------------------------------------------------------------
# command line


def worker_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="liftstream worker", description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", dest="kafka_bootstrap", help="Kafka bootstrap servers host:port[,...]")
    p.add_argument("--store", help="clickhouse://host:port/db (or chdb:///dir for a single worker)")
    p.add_argument("--database", help="database when the store URL names none")
    p.add_argument(
        "--app-id", dest="app_id", help="consumer group / app id (workers with one id share the work)"
    )
    p.add_argument("--topic-prefix", dest="topic_prefix")
    p.add_argument("--partitions", dest="topic_partitions", type=int)
    p.add_argument("--web-port", dest="worker_web_port", type=int, help="0 disables the web server")
    p.add_argument("--batch-max", dest="batch_max", type=int)
    p.add_argument("--batch-within", dest="batch_within_s", type=float)
    p.add_argument("--day-close-timeout", dest="day_close_timeout_s", type=float)
    p.add_argument("--session-timeout", dest="broker_session_timeout_s", type=float)
    p.add_argument("--rebalance-timeout", dest="broker_rebalance_timeout_s", type=float)
    p.add_argument("--heartbeat-interval", dest="broker_heartbeat_interval_s", type=float)
    p.add_argument("--models", help="'inprocess' or triton://host:port")
    p.add_argument(
        "--model-timeout", dest="model_timeout_s", type=float, help="deadline of one Triton call (s)"
    )
    p.add_argument("--forecaster", help="'auto', 'standin' or a LAMM checkpoint dir")
    p.add_argument("--advisor", help="'auto', 'standin' or an FEI model dir")
    p.add_argument("--stats-file", type=Path, help="write running counts here (JSON) after every batch")
    p.add_argument("--loglevel", default="warning")
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    skip = {"stats_file", "loglevel"}
    overrides = {k: v for k, v in vars(args).items() if v is not None and k not in skip}
    return Settings(**overrides)


class PartitionCountError(RuntimeError):
    """The input topic or the state changelog has another partition count than the settings."""


async def topic_partition_counts(
    bootstrap: str, topics: Sequence[str], timeout_s: float = 10.0
) -> dict[str, int]:
    """Partition counts of those of ``topics`` that exist, from the cluster's metadata."""
    from aiokafka import AIOKafkaConsumer

    from streams.produce import bootstrap_servers

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(bootstrap),
        enable_auto_commit=False,
        request_timeout_ms=int(timeout_s * 1000),
    )
    await asyncio.wait_for(consumer.start(), timeout_s)
    try:
        existing = await asyncio.wait_for(consumer.topics(), timeout_s)  # refreshes the metadata
        return {t: len(consumer.partitions_for_topic(t) or ()) for t in topics if t in existing}
    finally:
        await consumer.stop()


async def check_partitions(settings: Settings, changelog: str) -> dict[str, int]:
    """Refuse to run where the input topic or the state changelog (``changelog``) already has
    another partition count than ``settings.topic_partitions``: a product's state lives in the
    changelog partition of its input partition, and the worker finds a product's partition with
    that count, so the three must agree. Growing the partitions of a running deployment is a
    migration (deploy/README.md, "Scaling"), not a restart with a new count. Topics that do not
    exist yet are created with the settings' count."""
    events = topic_names(settings.topic_prefix)["events"]
    counts = await topic_partition_counts(settings.kafka_bootstrap, [events, changelog])
    bad = {t: n for t, n in counts.items() if n != settings.topic_partitions}
    if bad:
        found = ", ".join(f"{t} has {n}" for t, n in sorted(bad.items()))
        raise PartitionCountError(
            f"the settings say {settings.topic_partitions} partitions, but {found}: the input topic, the "
            "state changelog and the settings must agree (a product's state lives in the changelog "
            "partition of its input partition); to move to more partitions see deploy/README.md, 'Scaling'"
        )
    return counts


def cli_worker(argv: list[str]) -> int:
    args = worker_parser().parse_args(argv)
    settings = settings_from_args(args)
    app = create_app(settings, stats_file=args.stats_file)
    try:
        asyncio.run(check_partitions(settings, app.liftstream.table.changelog_topic.get_topic_name()))
    except PartitionCountError as e:
        print(f"liftstream worker: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - broker not up yet: the worker itself waits and retries
        print(f"liftstream worker: partition check skipped ({e!r})", file=sys.stderr)
    # The worker allocates many short-lived objects per event (messages, events, rows) while
    # holding a large, long-lived heap (states, table, Faust): with the default thresholds the
    # cyclic collector runs thousands of times a minute and rescans that heap (bench_stream
    # throughput at batch_max 20000, on Faust's stream path before the batch lane: 8.3k events/s,
    # 9.1k per CPU-second with the default thresholds; 10.0k and 11.1k with these). Freeze what start-up allocated and
    # collect less often; the per-event garbage is acyclic and freed by reference counting.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    worker = QuietWorker(app, loglevel=args.loglevel.upper(), quiet=True)
    worker.execute_from_commandline()  # returns when the worker stops (SIGTERM / SIGINT)
    return 0


if __name__ == "__main__":
    sys.exit(cli_worker(sys.argv[1:]))
