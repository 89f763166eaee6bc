"""Bad and awkward input through the real worker (Tansu + clickhouse-server), and late sales.

Every kind of bad input becomes a dead letter (topic and table, raw payload and error) or is
handled as streams/state.py documents, the agent keeps running, and count in = count out + DLQ:
``received == applied + duplicate + stale + dead_letter``. What ClickHouse holds equals the
in-process Processor's rows for the same payloads.

    .venv/bin/pytest tests/test_stream_faults.py -q
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import timedelta

import numpy as np
import pytest

from schemas.events import EngagementDaily, SalesDaily, event_json
from schemas.limits import MAX_RAW_PAYLOAD_BYTES
from schemas.topics import EVENTS, event_key, topic_names
from streams.sinks import open_store
from tests.stream_support import (
    PY,
    REPO,
    WorkerProc,
    engagement_event,
    expected_rows,
    payloads,
    produce,
    sim_events,
    store_rows,
    synthetic_events,
    wait_for,
    worker_argv,
)

pytestmark = pytest.mark.timeout(150)


def _faulty_stream() -> tuple[list[bytes | None], list[bytes | None], Counter]:
    """(payloads, keys, expected dead letters by error type)."""
    rng = np.random.default_rng(1)
    good = synthetic_events(n_products=3, n_days=5, videos_per_day=0.7, seed=3)
    day0 = good[0].day
    # a gap: p0001 sends no sales on day 2, so its day-3 sales close day 2 with imputed units
    good = [
        e
        for e in good
        if not (isinstance(e, SalesDaily) and e.product_id == "p0001" and e.day == day0 + timedelta(2))
    ]
    items: list[tuple[bytes | None, bytes | None]] = [
        (event_json(e).encode(), event_key(e.product_id)) for e in good
    ]
    vid = next(e for e in good if type(e).__name__ == "VideoPublished" and e.product_id == "p0000")
    eng = next(e for e in good if isinstance(e, EngagementDaily) and e.product_id == "p0000")
    late_video = next(e for e in good if type(e).__name__ == "VideoPublished" and e.day > day0)

    def keyed(ev):
        return event_json(ev).encode(), event_key(ev.product_id)

    extra = [
        (b'{"event_id": "broken", "type": "sales_daily"', None),  # malformed JSON
        (b"not json at all", None),
        (b"", None),  # empty payload
        (None, b"p0000"),  # a tombstone: no value at all
        (json.dumps({**json.loads(event_json(eng)), "event_id": "neg", "likes": -5}).encode(), b"p0000"),
        (
            json.dumps({"type": "refund", "event_id": "r1", "product_id": "p0000"}).encode(),
            b"p0000",
        ),  # unknown type
        (
            json.dumps({**json.loads(event_json(eng)), "event_id": "x1", "mood": "happy"}).encode(),
            b"p0000",
        ),  # extra field
        (
            b'{"event_id":"huge","pad":"' + b"x" * (MAX_RAW_PAYLOAD_BYTES + 10) + b'"}',
            b"p0002",
        ),  # over the limit
        keyed(engagement_event(rng, "v_unknown", "p0000", day0 + timedelta(1))),  # unknown video
        items[
            [i for i, (raw, _) in enumerate(items) if raw == event_json(eng).encode()][0]
        ],  # exact duplicate
        keyed(vid.model_copy(update={"event_id": "vp-again"})),  # same video, new event id
        keyed(
            engagement_event(
                rng, late_video.video_id, late_video.product_id, late_video.day - timedelta(1), "early"
            )
        ),
        keyed(
            SalesDaily(
                event_id="late-correction", day=day0, product_id="p0000", units=999, price=20.0, rating=90.0
            )
        ),
    ]
    # bad input interleaved with the good, a product's own events staying in order
    mixed = items[: len(items) // 2] + extra + items[len(items) // 2 :]
    dead = Counter(
        {"ValidationError": 7, "PayloadTooLarge": 1, "UnknownVideo": 1, "EngagementBeforePublish": 1}
    )
    return [p for p, _ in mixed], [k for _, k in mixed], dead


# ----------------------------------------------------------------------------------------------
# the state table adapter on its own (no services)


def _standin_processor(states):
    from inference.client import AsyncInProcessClient, InProcessClient
    from inference.standin import ConstantElasticityAdvisor, SeasonalNaiveForecaster
    from streams.processor import Processor

    client = AsyncInProcessClient(InProcessClient(SeasonalNaiveForecaster(), ConstantElasticityAdvisor()))
    return asyncio.run(Processor.create(client, states, source=EVENTS))


def test_table_states_restore_staging_and_small_records():
    from streams.state_table import SEP, TableStates

    events = synthetic_events(n_products=3, n_days=20, videos_per_day=1.0, seed=4)
    table: dict[str, bytes] = {}
    states = TableStates(table)
    proc = _standin_processor(states)
    for i in range(0, len(events), 97):
        asyncio.run(proc.process(events[i : i + 97]))
        states.commit()
    # a fresh adapter over the same records (a restart restoring the changelog) sees equal states
    restored = TableStates(dict(table))
    for pid in ("p0000", "p0001", "p0002"):
        assert restored[pid].to_bytes() == states[pid].to_bytes()
        video_keys = {k.split(SEP)[1] for k in table if k.startswith(pid + SEP)}
        assert video_keys == set(states[pid].ids)  # expired videos' records are deleted
        assert len(table[pid]) < len(states[pid].to_bytes()) / 3  # encodings apart, compressed
    assert sorted(restored) == ["p0000", "p0001", "p0002"] and len(restored) == 3


def test_table_states_failed_batch_leaves_no_trace():
    from streams.state_table import TableStates

    events = synthetic_events(n_products=2, n_days=6, seed=6)
    half = len(events) // 2
    clean, flaky = TableStates({}), TableStates({})
    p_clean, p_flaky = _standin_processor(clean), _standin_processor(flaky)
    for p, st in ((p_clean, clean), (p_flaky, flaky)):
        asyncio.run(p.process(events[:half]))
        st.commit()
    # the flaky run's model fails half way through the second batch, after states were mutated
    real_step, calls = p_flaky.client.step, []

    async def failing_step(state, x):
        calls.append(1)
        if len(calls) == 2:
            raise ConnectionError("model server went away")
        return await real_step(state, x)

    p_flaky.client.step = failing_step
    with pytest.raises(ConnectionError):
        asyncio.run(p_flaky.process(events[half:]))
    flaky.rollback()
    p_flaky.client.step = real_step
    rows_retry = asyncio.run(p_flaky.process(events[half:])).rows
    rows_clean = asyncio.run(p_clean.process(events[half:])).rows
    assert [r.model_dump(exclude={"emitted_at"}) for r in rows_retry] == [
        r.model_dump(exclude={"emitted_at"}) for r in rows_clean
    ]


def test_partitions_resume_where_their_states_stop():
    """``Worker.resume_offset`` (the batch lane's ``resume``): a partition resumes right after the
    last offset its recovered states include, whether the group's committed offset is ahead of
    that (replayed), behind it (not read again) or missing; only a partition whose states say
    nothing resumes at the committed offset. Replays past a commit are counted."""
    from streams.app import OFFSET_KEY, Worker
    from streams.settings import Settings

    class Table(dict):  # the part of ProductTable that resume_offset reads
        def state_offset(self, p):
            raw = self.get(OFFSET_KEY.format(p))
            return None if raw is None else int(raw)

    saved = {0: b"99", 1: b"41", 2: b"9", 4: b"5"}
    table = Table({OFFSET_KEY.format(p): v for p, v in saved.items()})
    worker = Worker(Settings(), app=None, table=table, topics={"events": "ev"}, out_topics={})
    assert worker.resume_offset(0, 60) == 100  # states ahead: 60-99 are not read again
    assert worker.resume_offset(1, 42) == 42  # in step
    assert worker.resume_offset(2, 30) == 10  # states behind: 10-29 replayed
    assert worker.resume_offset(3, 7) == 7  # nothing saved
    assert worker.resume_offset(3, None) is None  # nothing at all: where the consumer starts
    assert worker.resume_offset(4, None) == 6  # nothing committed
    assert worker.totals["resumed_from_state"] == 1


# ----------------------------------------------------------------------------------------------
# the worker


def _worker(tmp_path, name, bootstrap, url, **kw):
    return WorkerProc(
        worker_argv(bootstrap, url, name, **kw), tmp_path / "worker.log", tmp_path / "worker.json"
    )


def test_bad_input_becomes_dead_letters_and_is_counted(
    kafka_broker, clickhouse_server, unique_name, tmp_path
):
    payloads, keys, dead = _faulty_stream()
    # the worker sees a tombstone as an empty payload
    expected, totals = expected_rows([b"" if p is None else p for p in payloads], EVENTS)
    assert totals["dead_letter"] == sum(dead.values())
    db = f"db_{unique_name}"
    w = _worker(tmp_path, unique_name, kafka_broker.bootstrap, clickhouse_server.url + db).start()
    try:
        topics = topic_names(f"{unique_name}.")
        produce(kafka_broker.bootstrap, topics["events"], payloads, keys=keys)
        wait_for(lambda: w.received() >= len(payloads) or not w.alive(), 90, "the worker to take every event")
        assert w.alive(), w.log_tail()
        got = w.stats()["totals"]
        assert got["received"] == len(payloads)
        assert got["received"] == got["applied"] + got["duplicate"] + got["stale"] + got["dead_letter"]
        assert {k: got.get(k, 0) for k in totals} == dict(totals)
        assert got["duplicate"] == 2 and got["stale"] >= 1  # exact repeat and re-published video; correction
        store = open_store(clickhouse_server.url + db)
        rows = store_rows(store, db)
        assert rows == expected
        types = Counter(r[0] for r in store.query(f"SELECT error_type FROM {db}.dead_letters FINAL"))
        # the tombstone and the empty payload are the same raw bytes: one dead-letter row (one key)
        assert types == dead - Counter({"ValidationError": 1})
        huge = store.query(
            f"SELECT raw_size, length(raw) FROM {db}.dead_letters FINAL WHERE error_type = 'PayloadTooLarge'"
        )
        assert huge[0][0] > MAX_RAW_PAYLOAD_BYTES and huge[0][1] < huge[0][0]  # kept truncated, sized in full
        # the correction is stored; the day-2 gap of p0001 was closed with imputed units
        assert store.query(
            f"SELECT units FROM {db}.sales_daily FINAL WHERE event_id = 'late-correction'"
        ) == [(999,)]
        # dead letters also went to their topic, as JSON, one message per dead letter
        msgs = _read_topic(kafka_broker.bootstrap, topics["dead_letters"], got["dead_letter"])
        assert Counter(json.loads(m)["error_type"] for m in msgs) == dead
    finally:
        w.stop()


def test_late_sales_close_the_day_on_a_timer(kafka_broker, clickhouse_server, unique_name, tmp_path):
    events = synthetic_events(n_products=1, n_days=3, seed=5)
    last_day = max(e.day for e in events)
    # the product's day 2 gets engagement but its sales are late
    events = [e for e in events if not (isinstance(e, SalesDaily) and e.day == last_day)]
    db = f"db_{unique_name}"
    w = _worker(
        tmp_path, unique_name, kafka_broker.bootstrap, clickhouse_server.url + db, day_close_timeout=1.0
    )
    w.start()
    try:
        topic = topic_names(f"{unique_name}.")["events"]
        produce(kafka_broker.bootstrap, topic, [event_json(e).encode() for e in events])
        store = open_store(clickhouse_server.url + db, create=True)
        sql = f"SELECT event_id, units FROM {db}.sales_daily FINAL WHERE day = %(d)s"
        imputed = wait_for(lambda: store.query(sql, {"d": last_day}), 30, "the timer to close the late day")
        pid = events[0].product_id
        assert imputed[0][0] == f"imputed:{pid}:{last_day.isoformat()}"
        # imputed units are the forecast made for that day at the previous day's close
        point = store.query(
            f"SELECT point FROM {db}.forecasts FINAL WHERE kind = 'day_close' AND target_day = %(d)s",
            {"d": last_day},
        )
        assert imputed[0][1] == round(point[0][0])
        # and the day's close issued the next forecast (same batch, another table's insert: the
        # sales row can be visible a moment before it)
        wait_for(
            lambda: (
                store.query(
                    f"SELECT count() FROM {db}.forecasts FINAL WHERE kind = 'day_close' AND issued_day = %(d)s",
                    {"d": last_day},
                )
                == [(1,)]
            ),
            10,
            "the imputed close's forecast",
        )
        # the real sales, late: stored as a correction that replaces the imputed row
        real = SalesDaily(
            event_id="real-late", day=last_day, product_id=pid, units=77, price=20.0, rating=95.0
        )
        produce(kafka_broker.bootstrap, topic, [event_json(real).encode()])
        wait_for(
            lambda: store.query(sql, {"d": last_day}) == [("real-late", 77)], 30, "the late sales to land"
        )
        # the stats file is rewritten at most every 0.2 s (and by a timer): wait for it to count the imputation
        wait_for(
            lambda: w.stats().get("totals", {}).get("imputed_sales", 0) >= 1,
            10,
            "the stats to count imputed sales",
        )
    finally:
        w.stop()


def _read_topic(bootstrap: str, topic: str, n: int, timeout_s: float = 30.0) -> list[bytes]:
    from aiokafka import AIOKafkaConsumer

    async def go() -> list[bytes]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
        )
        await consumer.start()
        out: list[bytes] = []
        try:
            async with asyncio.timeout(timeout_s):
                while len(out) < n:
                    batch = await consumer.getmany(timeout_ms=500)
                    out.extend(m.value for msgs in batch.values() for m in msgs)
        finally:
            await consumer.stop()
        return out

    return asyncio.run(go())


def test_a_worker_refuses_partition_counts_that_disagree(kafka_broker, unique_name):
    """The input topic has 2 partitions, the settings say 4: the worker stops at start-up with
    a message naming both (a product's state lives in the changelog partition of its input
    partition, so running on would put states where no worker looks for them)."""
    import subprocess

    from streams.app import PartitionCountError, check_partitions
    from streams.settings import Settings

    events = topic_names(f"{unique_name}.")["events"]
    produce(kafka_broker.bootstrap, events, payloads(sim_events("tiny", seed=0))[:3], partitions=2)
    changelog = f"app_{unique_name}-product_state-changelog"
    settings = Settings(
        kafka_bootstrap=kafka_broker.bootstrap, topic_prefix=f"{unique_name}.", app_id=f"app_{unique_name}"
    )
    assert settings.topic_partitions == 4
    with pytest.raises(PartitionCountError, match=f"{events} has 2"):
        asyncio.run(check_partitions(settings, changelog))
    assert asyncio.run(check_partitions(settings.model_copy(update={"topic_partitions": 2}), changelog)) == {
        events: 2
    }
    argv = worker_argv(kafka_broker.bootstrap, "clickhouse://127.0.0.1:9/none", unique_name, partitions=4)
    out = subprocess.run(
        [PY, "-m", "streams.app", *argv], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and f"{events} has 2" in out.stderr, out.stderr[-2000:]


def _records_by_partition(bootstrap: str, topic: str, n: int) -> dict[int, list[tuple[bytes | None, bytes]]]:
    """The records of ``topic``, partition -> [(key, value)] in order: read until there are
    ``n``, then once more to catch any beyond (Tansu's end offsets stop inside a last batch)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def go():
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            await consumer.topics()
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            out = {tp.partition: [] for tp in tps}
            async with asyncio.timeout(30):
                while sum(map(len, out.values())) < n:
                    for tp, msgs in (await consumer.getmany(timeout_ms=500)).items():
                        out[tp.partition] += [(m.key, m.value) for m in msgs]
            for tp, msgs in (await consumer.getmany(timeout_ms=1000)).items():
                out[tp.partition] += [(m.key, m.value) for m in msgs]
            return out
        finally:
            await consumer.stop()

    return asyncio.run(go())


def test_repartition_copies_the_input_topic_keys_and_order_kept(kafka_broker, unique_name):
    """``liftstream repartition``: the 2-partition input topic copied into an empty 4-partition
    one; every record arrives once, each product's events in their order, each on the partition
    a worker with 4 partitions looks for it (``partition_of``). A second copy into the now
    non-empty target is refused, as is a target of another partition count."""
    from streams.app import partition_of
    from streams.cli import main
    from streams.produce import CopyError, copy_topic

    items = payloads(sim_events("tiny", seed=0))[:1500]
    source = topic_names(f"{unique_name}.")["events"]
    target = topic_names(f"{unique_name}.v2.")["events"]
    produce(kafka_broker.bootstrap, source, items, partitions=2)
    argv = ["--bootstrap", kafka_broker.bootstrap, "--from-prefix", f"{unique_name}.", "--partitions", "4"]
    assert main(["repartition", *argv, "--to-prefix", f"{unique_name}.v2."]) == 0

    def by_key(parts):
        out: dict[bytes | None, list[bytes]] = {}
        for records in parts.values():
            for key, value in records:
                out.setdefault(key, []).append(value)
        return out

    src = _records_by_partition(kafka_broker.bootstrap, source, len(items))
    dst = _records_by_partition(kafka_broker.bootstrap, target, len(items))
    assert len(src) == 2 and len(dst) == 4 and sum(map(len, dst.values())) == len(items)
    assert by_key(dst) == by_key(src) and len(by_key(src)) > 4  # per key: same events, same order
    for p, records in dst.items():
        assert all(partition_of(key.decode(), 4) == p for key, _ in records)
    with pytest.raises(CopyError, match="the copy needs an empty topic of 4"):
        asyncio.run(copy_topic(kafka_broker.bootstrap, source, target, 4))
    other = topic_names(f"{unique_name}.v3.")["events"]
    produce(kafka_broker.bootstrap, other, [], partitions=3)
    assert main(["repartition", *argv, "--to-prefix", f"{unique_name}.v3."]) == 2
