"""Helpers of the stream tests and the stream benchmark: workers as subprocesses, event streams,
the expected rows from an in-process Processor run, and ClickHouse contents to compare.

Nothing here sleeps and hopes: every wait polls a condition until a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from schemas.ddl import COLUMNS, TABLES, row_of
from schemas.events import (
    EngagementDaily,
    InfluencerSnapshot,
    ProductSnapshot,
    SalesDaily,
    SegmentFeatures,
    VideoPublished,
    event_json,
)

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable

# columns that carry wall-clock times: they differ between runs, everything else must not
VOLATILE = {"emitted_at", "received_at"}


# ----------------------------------------------------------------------------------------------
# events


def synthetic_events(
    n_products: int = 6,
    n_days: int = 8,
    videos_per_day: float = 0.5,
    seed: int = 0,
    start: date = date(2025, 3, 1),
) -> list[Any]:
    """A small campaign in stream order (per day: new videos, their engagement, then sales).

    Used when the simulator is not wanted (benchmarks control the mix exactly).
    """
    rng = np.random.default_rng(seed)
    events: list[Any] = []
    active: dict[str, list[tuple[str, int]]] = {f"p{i:04d}": [] for i in range(n_products)}
    for d in range(n_days):
        day = start + timedelta(days=d)
        for pid in active:
            n_new = rng.poisson(videos_per_day) if d else 1
            for _ in range(n_new):
                vid = f"v{len(events):07d}"
                events.append(video_event(rng, vid, pid, day))
                active[pid].append((vid, d))
            for vid, d0 in active[pid]:
                if d - d0 < 14:
                    events.append(engagement_event(rng, vid, pid, day))
            events.append(sales_event(rng, pid, day, d))
    return events


def video_event(rng: np.random.Generator, vid: str, pid: str, day: date, n_seg: int = 3) -> VideoPublished:
    arr = lambda n: rng.normal(size=(n, 128)).astype(np.float32)  # noqa: E731
    followers = int(10 ** rng.uniform(3, 6))
    return VideoPublished(
        event_id=f"vp-{vid}",
        ts=datetime.combine(day, datetime.min.time()) + timedelta(hours=10),
        day=day,
        video_id=vid,
        product_id=pid,
        influencer=InfluencerSnapshot(
            influencer_id=f"i{vid}", followers=followers, past_avg_hearts=followers * 0.01
        ),
        product=ProductSnapshot(category="other", price=20.0),
        video_type="food",
        length_s=30.0,
        width=720,
        height=1280,
        size_mb=5.0,
        create_hour=10,
        title="t",
        features=SegmentFeatures.from_arrays(arr(n_seg), arr(n_seg), arr(n_seg), arr(2)),
    )


def engagement_event(
    rng: np.random.Generator, vid: str, pid: str, day: date, eid: str | None = None
) -> EngagementDaily:
    imp = int(rng.integers(100, 10_000))
    return EngagementDaily(
        event_id=eid or f"en-{vid}-{day.isoformat()}",
        day=day,
        video_id=vid,
        product_id=pid,
        likes=imp // 20,
        comments=imp // 200,
        shares=imp // 300,
        collects=imp // 100,
        impressions=imp,
    )


def sales_event(rng: np.random.Generator, pid: str, day: date, d: int) -> SalesDaily:
    return SalesDaily(
        event_id=f"sa-{pid}-{day.isoformat()}",
        day=day,
        product_id=pid,
        units=int(rng.poisson(30 + 10 * np.sin(d))),
        price=20.0,
        rating=95.0,
    )


def sim_events(preset: str = "tiny", seed: int = 0, home: Path | None = None) -> list[Any]:
    """The simulator's events of a world (inline features, so the worker needs no dataset)."""
    from inference.sim.events import iter_events
    from streams.embedded import world_dataset

    dataset = world_dataset(preset, seed, home or REPO / ".liftstream", progress=False)
    return list(iter_events(dataset, inline_features=True))


def payloads(events: Iterable[Any]) -> list[bytes]:
    return [ev if isinstance(ev, bytes) else event_json(ev).encode() for ev in events]


# ----------------------------------------------------------------------------------------------
# the reference: the same Processor in-process


def expected_rows(items: list[bytes], source: str, batch: int = 500) -> tuple[dict[str, set], Counter]:
    """Rows an in-process Processor (dict states, stand-in models) makes of ``items``, by table."""
    from inference.client import AsyncInProcessClient, InProcessClient
    from inference.standin import ConstantElasticityAdvisor, SeasonalNaiveForecaster
    from streams.processor import Processor

    async def go():
        client = AsyncInProcessClient(InProcessClient(SeasonalNaiveForecaster(), ConstantElasticityAdvisor()))
        proc = await Processor.create(client, {}, source=source)
        rows = []
        for i in range(0, len(items), batch):
            rows.extend((await proc.process(items[i : i + batch])).rows)
        return rows, proc.totals

    rows, totals = asyncio.run(go())
    return canonical(row_of(r) for r in rows), totals


def canonical(table_rows: Iterable[tuple[str, tuple]]) -> dict[str, set]:
    """Rows by table without the wall-clock columns, deduplicated on the table's key like FINAL."""
    out: dict[str, dict] = {t: {} for t in TABLES}
    for table, row in table_rows:
        cols = COLUMNS[table]
        key_cols = [c.strip() for c in TABLES[table][1].strip("()").split(",")]
        rec = dict(zip(cols, row, strict=True))
        key = tuple(rec[c] for c in key_cols)
        out[table][key] = tuple(_norm(v) for c, v in rec.items() if c not in VOLATILE)
    return {t: set(v.values()) for t, v in out.items()}


def _norm(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 6)
    return v


def store_rows(store, database: str) -> dict[str, set]:
    """Every table's rows after FINAL, in the same canonical form."""
    pairs = []
    for table in TABLES:
        cols = ", ".join(f"`{c}`" for c in COLUMNS[table])
        for row in store.query(f"SELECT {cols} FROM {database}.{table} FINAL"):
            pairs.append((table, tuple(row)))
    return canonical(pairs)


def counts_final(store, database: str) -> dict[str, int]:
    return {t: int(store.query(f"SELECT count() FROM {database}.{t} FINAL")[0][0]) for t in TABLES}


# ----------------------------------------------------------------------------------------------
# waiting and processes


def wait_for(cond: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.1) -> Any:
    """Poll ``cond`` until it returns something truthy; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval_s)  # polling interval of a condition with a deadline
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last: {last!r})")


@dataclass
class WorkerProc:
    """A ``python -m streams.app`` subprocess with its log and stats file."""

    argv: list[str]
    log_path: Path
    stats_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    def start(self) -> WorkerProc:
        self.stats_path.unlink(missing_ok=True)
        env = {**os.environ, "LIFTSTREAM_DATA_DIR": str(self.log_path.with_suffix(".faust")), **self.env}
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [PY, "-m", "streams.app", *self.argv, "--stats-file", str(self.stats_path)],
            cwd=REPO,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        return self

    def stats(self) -> dict:
        try:
            return json.loads(self.stats_path.read_text())
        except (OSError, ValueError):
            return {}

    def received(self) -> int:
        return int(self.stats().get("totals", {}).get("received", 0))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""


def worker_argv(bootstrap: str, store_url: str, name: str, partitions: int = 4, **extra: Any) -> list[str]:
    """Arguments of a test worker: its own app id and topics, fast group joins, no web server."""
    argv = [
        "--bootstrap",
        bootstrap,
        "--store",
        store_url,
        "--app-id",
        f"app_{name}",
        "--topic-prefix",
        f"{name}.",
        "--partitions",
        str(partitions),
        "--web-port",
        "0",
        "--session-timeout",
        "6",
        "--rebalance-timeout",
        "5",
        "--heartbeat-interval",
        "1",
        "--forecaster",
        "standin",
        "--advisor",
        "standin",
        "--batch-within",
        "0.1",
    ]
    for k, v in extra.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return argv


def produce(bootstrap: str, topic: str, items: list[bytes], partitions: int = 4, **kw: Any):
    from streams.produce import produce as produce_async

    return asyncio.run(produce_async(bootstrap, topic, items, partitions=partitions, **kw))


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int = 4) -> dict[int, int]:
    """The offsets ``group`` has committed on ``topic``, by partition (0 for one with none)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def go() -> dict[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            return {p: await consumer.committed(TopicPartition(topic, p)) or 0 for p in range(partitions)}
        finally:
            await consumer.stop()

    return asyncio.run(go())


def committed_total(bootstrap: str, group: str, topic: str, partitions: int = 4) -> int:
    """Sum of the offsets ``group`` has committed on ``topic`` (0 for a partition with none)."""
    return sum(committed_offsets(bootstrap, group, topic, partitions).values())


def commit_offsets(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commit ``offsets`` (partition -> next offset) for ``group`` as an operator's offset reset
    would: by joining the group (Tansu refuses commits from outside a group's generation), which
    must have no other live member, and leaving it."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from aiokafka.structs import OffsetAndMetadata

    class AsFaust(RoundRobinPartitionAssignor):
        name = "faust"  # the group's protocol: the broker refuses a member that names another

    async def go() -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            partition_assignment_strategy=(AsFaust,),
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
        )
        await consumer.start()
        try:
            consumer.subscribe([topic])
            tps = {TopicPartition(topic, p) for p in offsets}
            deadline = time.monotonic() + 60
            while not tps <= consumer.assignment():
                assert time.monotonic() < deadline, f"not assigned {tps} in group {group}"
                await consumer.getmany(timeout_ms=200, max_records=1)
            await consumer.commit(
                {TopicPartition(topic, p): OffsetAndMetadata(o, "") for p, o in offsets.items()}
            )
        finally:
            await consumer.stop()

    asyncio.run(go())


def dump_changelog(bootstrap: str, topic: str, path: Path, partitions: int = 4) -> None:
    """Write every record of a state changelog (partition, offset, key, product revision or
    state offset) to ``path`` as JSON lines: what a failed crash test leaves to look at."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streams.state import ProductState
    from streams.state_table import COMPACT, SEP

    def describe(key: str, value: bytes | None):
        if value is None:
            return None
        if key.startswith(SEP):
            return value.decode()
        if SEP in key:
            return len(value)
        raw = zlib.decompress(value[len(COMPACT) :]) if value.startswith(COMPACT) else value
        return ProductState.from_bytes(raw).revision

    async def go() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            with open(path, "w") as out:
                out.write(json.dumps({"end_offsets": {tp.partition: o for tp, o in ends.items()}}) + "\n")
                idle = 0
                while idle < 5:
                    got = await consumer.getmany(timeout_ms=500)
                    idle = 0 if got else idle + 1
                    for tp, records in got.items():
                        for r in records:
                            key = json.loads(r.key)
                            out.write(
                                json.dumps([tp.partition, r.offset, key, describe(key, r.value)]) + "\n"
                            )
        finally:
            await consumer.stop()

    asyncio.run(go())
