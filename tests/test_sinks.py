"""Sinks and stores against the real engines: embedded chdb and a real clickhouse-server.

The same rows go through the same DDL on both and must read back exactly; then the server-only
behaviour: flush on size and on time, a server outage mid-stream, backpressure, fatal errors.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
import pytest

from schemas import limits as L
from schemas.ddl import COLUMN_DEFAULTS, COLUMNS, TABLE_OF, TABLES, create_table, row_of
from schemas.events import (
    EngagementDaily,
    InfluencerSnapshot,
    ProductSnapshot,
    SalesDaily,
    SegmentFeatures,
    VideoPublished,
)
from schemas.outputs import DeadLetter, ForecastAlert, InfluencerAdvice, SalesLiftForecast
from streams.services import ClickHouseService, free_port, start_clickhouse
from streams.sinks import (
    ChdbPathInUse,
    ChdbSession,
    ChdbSink,
    ClickHouseSink,
    ClickHouseStore,
    Sink,
    SinkBackpressure,
    SinkClosed,
    SinkFailed,
    StoreError,
    StoreURLError,
    chdb_session,
    ensure_schema,
    open_store,
    substitute_params,
)

TRICKY = 'it\'s "quoted" \\ back\\slash\nnew line\ttab, ünïcødé 中文 🚀 %(x)s {y:String}'
UTC8 = timezone(timedelta(hours=8))


def _features() -> SegmentFeatures:
    rng = np.random.default_rng(0)
    seg = lambda n: rng.standard_normal((n, L.FEATURE_DIM)).astype(np.float32)  # noqa: E731
    return SegmentFeatures.from_arrays(seg(3), seg(3), seg(3), seg(2))


def sample_models() -> list:
    """Two rows per table with edge values: NULLs, zones, microseconds, extreme numbers, odd text."""
    t0 = datetime(2024, 3, 5, 23, 59, 58, 987654, tzinfo=UTC8)  # 15:59:58 UTC, microseconds dropped
    inf = InfluencerSnapshot(influencer_id="inf-1", followers=L.MAX_FOLLOWERS, past_avg_hearts=0.1 + 0.2)
    inf2 = InfluencerSnapshot(
        influencer_id="inf:2",
        followers=0,
        past_avg_hearts=5e-324,
        verified=True,
        city_tier="new_first",
        age=120,
    )
    return [
        VideoPublished(
            event_id="e1", ts=t0, day=date(2024, 3, 5), video_id="v1", product_id="p.1", influencer=inf,
            product=ProductSnapshot(category="beauty_skincare", price=1e7), video_type="food",
            length_s=3600.0, width=8192, height=16, size_mb=0.0, create_hour=23, title=TRICKY,
            media_uri="s3://bucket/v1.mp4?a='1'",
        ),
        VideoPublished(
            event_id="e2", ts=datetime(1970, 1, 2, 0, 0, 1), day=date(1970, 1, 2), video_id="v2",
            product_id="p.1", influencer=inf2, video_type="music_dance", length_s=1e-9, width=16, height=8192,
            size_mb=10_000.0, create_hour=0, features=_features(),
        ),
        EngagementDaily(event_id="e3", day=date(2024, 3, 5), video_id="v1", product_id="p.1", likes=0,
                        comments=1, shares=L.MAX_COUNT, collects=7, impressions=123_456_789_012),
        EngagementDaily(event_id="e4", day=date(2100, 12, 31), video_id="v2", product_id="p.1", likes=1,
                        comments=0, shares=0, collects=0, impressions=0),
        SalesDaily(event_id="e5", day=date(2024, 3, 5), product_id="p.1", units=0, price=0.01, rating=100.0),
        SalesDaily(event_id="e6", day=date(2024, 3, 6), product_id="p-2", units=L.MAX_COUNT, price=1e7, rating=0.0),
        SalesLiftForecast(product_id="p.1", issued_day=date(2024, 3, 5), target_day=date(2024, 3, 6),
                          kind="provisional", revision=0, point=0.0, lower=0.0, upper=1e300, level=0.9,
                          baseline=None, active_videos=0, model_version="lamm-v1", emitted_at=t0),
        SalesLiftForecast(product_id="p.1", issued_day=date(2024, 3, 5), target_day=date(2024, 3, 6),
                          kind="day_close", revision=2**40, point=12.345678901234567, lower=1 / 3, upper=99.5,
                          level=0.999, baseline=-0.0 + 2.5, active_videos=2**31, model_version="lamm-v1",
                          emitted_at=datetime(2106, 1, 1, 0, 0, 0)),
        ForecastAlert(product_id="p.1", issued_day=date(2024, 3, 5), target_day=date(2024, 3, 6),
                      rule="below_band", severity="critical", reference=10.0, current=-1.5, drop_pct=-115.0,
                      message=TRICKY, model_version="lamm-v1", emitted_at=t0),
        ForecastAlert(product_id="p-2", issued_day=date(2024, 3, 5), target_day=date(2024, 3, 6),
                      rule="pct_drop", severity="warning", reference=1e-300, current=0.0, drop_pct=100.0,
                      message="", model_version="", emitted_at=datetime(2024, 3, 5, tzinfo=UTC)),
        InfluencerAdvice(video_id="v1", product_id="p.1", influencer_id="inf-1", day=date(2024, 3, 5),
                         followers=L.MAX_FOLLOWERS, tier="mega", fei=-0.25, curve_shape="s_shaped",
                         expected_impressions=1.0e9, optimal_followers=12_345, optimal_tier="micro",
                         optimal_followers_low=0, optimal_followers_high=L.MAX_FOLLOWERS,
                         expected_impressions_optimal=5.5, profit_actual=-1e6, profit_optimal=0.0,
                         value_per_impression=0.001, cost_per_1k_followers=2.5, model_version="fei-v1",
                         emitted_at=t0),
        InfluencerAdvice(video_id="v2", product_id="p.1", influencer_id="inf:2", day=date(1970, 1, 2),
                         followers=0, tier="sub_nano", fei=0.0, curve_shape="concave", expected_impressions=0.0,
                         optimal_followers=0, optimal_tier="sub_nano", expected_impressions_optimal=0.0,
                         optimal_followers_low=0, optimal_followers_high=0,
                         profit_actual=0.0, profit_optimal=0.0, value_per_impression=0.0,
                         cost_per_1k_followers=0.0, model_version="fei-v1", emitted_at=datetime(1970, 1, 2)),
        DeadLetter.from_raw(b'{"type": "video_published", "x": "\xff\xfe"}', source="liftstream.events",
                            error_type="ValidationError", error=TRICKY, received_at=t0),
        DeadLetter.from_raw("", source="src'2", error_type="PayloadTooLarge", error="",
                            received_at=datetime(2024, 3, 5, 1, 2, 3)),
    ]  # fmt: skip


def expected_rows() -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {t: [] for t in TABLES}
    for m in sample_models():
        table, row = row_of(m)
        out[table].append(row)
    return out


def read_table(store, table: str) -> list[tuple]:
    cols = ", ".join(f"`{c}`" for c in COLUMNS[table])
    names, rows = store.query_with_columns(f"SELECT {cols} FROM {store.database}.{table} FINAL")
    assert names == COLUMNS[table]
    return sorted(rows, key=repr)


def wait_until(predicate: Callable[[], bool], timeout_s: float = 15.0, what: str = "condition") -> float:
    """Poll until true; seconds it took. Fails the test at the deadline."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout_s:
            pytest.fail(f"{what} not reached within {timeout_s} s")
        time.sleep(0.02)
    return time.monotonic() - t0


def forecasts(n: int, start: int = 0, point: float = 1.0) -> list[SalesLiftForecast]:
    return [
        SalesLiftForecast(product_id=f"p{i}", issued_day=date(2024, 1, 1), target_day=date(2024, 1, 2),
                          kind="day_close", revision=i, point=point, lower=0.0, upper=2.0 * point, level=0.9,
                          baseline=None, active_videos=1, model_version="v", emitted_at=datetime(2024, 1, 2))
        for i in range(start, start + n)
    ]  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Fixtures: one chdb session for the module (chdb keeps one path per process), sinks per engine


@pytest.fixture(scope="module")
def chdb_shared(tmp_path_factory) -> Iterator[ChdbSession]:
    shared = chdb_session(tmp_path_factory.mktemp("chdb"))
    yield shared
    shared.release()


@pytest.fixture(params=["chdb", pytest.param("clickhouse", marks=pytest.mark.services)])
def engine(request, unique_name) -> Iterator[tuple[Callable[..., object], object]]:
    """(make_sink(**kw), store) on a fresh database of one engine."""
    sinks: list = []
    if request.param == "chdb":
        shared = request.getfixturevalue("chdb_shared")

        def make(**kw):
            sinks.append(ChdbSink(shared, database=unique_name, **kw))
            return sinks[-1]

        store = open_store(f"chdb://{shared.path}?database={unique_name}", create=True)
    else:
        server: ClickHouseService = request.getfixturevalue("clickhouse_server")

        def make(**kw):
            # types_check stays off: clickhouse-driver 0.2.11 with types_check=True masks an
            # out-of-range unsigned int (2**32 into UInt32 stores 0); off, struct.pack refuses it
            sinks.append(ClickHouseSink(server.host, server.tcp_port, unique_name, **kw))
            return sinks[-1]

        store = open_store(f"{server.url}{unique_name}", create=True)
    yield make, store
    for s in sinks:
        s.close()
    store.close()


# ----------------------------------------------------------------------------------------------
# Both engines


def test_every_table_round_trips_exactly(engine):
    make_sink, store = engine
    sink = make_sink()
    assert set(TABLE_OF.values()) == set(TABLES)
    sink.write(sample_models())
    sink.flush()
    want = expected_rows()
    for table in TABLES:
        assert len(want[table]) == 2, table
        assert read_table(store, table) == sorted(want[table], key=repr), table
    # spot checks of the conversions row_of promised, as read back
    (ts,) = store.query(f"SELECT ts FROM {store.database}.videos WHERE video_id = 'v1'")[0]
    assert ts == datetime(2024, 3, 5, 15, 59, 58)
    got = store.query(
        f"SELECT video_id, age, price, n_segments FROM {store.database}.videos ORDER BY video_id"
    )
    assert got == [("v1", None, 1e7, 0), ("v2", 120, None, 3)]


def test_a_table_of_an_earlier_version_gains_the_new_columns(engine):
    """Schema evolution: an advice table written before optimal_followers_low/high existed gets
    them when a sink opens (its old rows read the optimum itself), and new rows write them."""
    make_sink, store = engine
    db = store.database
    added = COLUMN_DEFAULTS["advice"]
    old_ddl = "\n".join(
        line for line in create_table(db, "advice").splitlines() if line.strip().split(" ")[0] not in added
    )
    store.query(f"DROP TABLE {db}.advice")
    store.query(old_ddl)
    old_cols = [c for c in COLUMNS["advice"] if c not in added]
    first = next(m for m in sample_models() if isinstance(m, InfluencerAdvice))
    assert (first.optimal_followers, first.optimal_followers_low) == (12_345, 0)
    old = dict(zip(COLUMNS["advice"], row_of(first)[1], strict=True))
    values = ", ".join("%(" + c + ")s" for c in old_cols)
    # INSERT ... SELECT of literals: over the native protocol an INSERT ... VALUES waits for data blocks
    store.query(substitute_params(f"INSERT INTO {db}.advice ({', '.join(old_cols)}) SELECT {values}", old))
    sink = make_sink()  # the sink evolves the schema before its first insert
    sink.write([first.model_copy(update={"video_id": "v3"})])
    sink.flush()
    assert [r[0] for r in store.query(f"DESCRIBE TABLE {db}.advice")] == COLUMNS["advice"]
    got = store.query(
        f"SELECT video_id, optimal_followers, optimal_followers_low, optimal_followers_high "
        f"FROM {db}.advice FINAL ORDER BY video_id"
    )
    assert got == [("v1", 12_345, 12_345, 12_345), ("v3", 12_345, 0, L.MAX_FOLLOWERS)]
    sink.close()
    assert ensure_schema(db, store.query, store.query) == []  # once evolved, nothing more to add


def test_same_rows_twice_keep_one_row_per_key(engine):
    make_sink, store = engine
    sink = make_sink()
    sink.write(sample_models())
    sink.flush()
    sink.write(sample_models())
    sink.flush()
    sink.write(forecasts(3, point=1.0))
    sink.flush()
    sink.write(forecasts(3, point=7.0))  # same keys, new values: the later row replaces the earlier
    sink.close()
    for table, rows in expected_rows().items():
        want = len(rows) + (3 if table == "forecasts" else 0)
        assert store.count_final(table) == want, table
    points = store.query(f"SELECT point FROM {store.database}.forecasts FINAL WHERE model_version = 'v'")
    assert points == [(7.0,)] * 3


def test_query_parameters_are_escaped(engine):
    make_sink, store = engine
    sink = make_sink()
    sink.write(sample_models())
    sink.flush()
    sql = f"SELECT count() FROM {store.database}.alerts FINAL WHERE message = %(m)s AND emitted_at < %(t)s"
    assert store.query(sql, {"m": TRICKY, "t": datetime(2030, 1, 1)}) == [(1,)]
    assert store.query(sql, {"m": TRICKY + "'", "t": datetime(2030, 1, 1)}) == [(0,)]


def test_value_out_of_the_column_range_fails_the_sink(engine):
    make_sink, store = engine
    sink = make_sink()
    bad = forecasts(1)[0].model_copy(update={"active_videos": 2**32})  # the column is UInt32
    sink.write([bad])
    with pytest.raises(SinkFailed):
        sink.flush()
    with pytest.raises(SinkFailed):
        sink.close()  # the row is still unwritten: closing says so too
    assert store.count_final("forecasts") == 0


def test_bad_sql_raises_store_error(engine):
    _, store = engine
    with pytest.raises(StoreError):
        store.query(f"SELECT nope FROM {store.database}.forecasts")


# ----------------------------------------------------------------------------------------------
# chdb


def test_chdb_flushes_on_size(chdb_shared, unique_name):
    with ChdbSink(chdb_shared, database=unique_name, batch_rows=5) as sink:
        store = sink.store()
        sink.write(forecasts(4))
        assert store.count_final("forecasts") == 0
        sink.write(forecasts(1, start=4))
        assert store.count_final("forecasts") == 5
        assert (sink.stats.rows_written, sink.stats.inserts) == (5, 1)
        sink.write(forecasts(2, start=5))
    assert store.count_final("forecasts") == 7  # close flushed the rest
    with pytest.raises(SinkClosed):
        sink.write(forecasts(1))


def test_chdb_sink_from_many_threads(chdb_shared, unique_name):
    with ChdbSink(chdb_shared, database=unique_name, batch_rows=70) as sink:
        store = sink.store()
        threads = [
            threading.Thread(target=sink.write, args=(forecasts(100, start=100 * k),)) for k in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    got = store.query(f"SELECT revision FROM {unique_name}.forecasts FINAL ORDER BY revision")
    assert got == [(i,) for i in range(800)]


def test_chdb_reset_drops_rows(chdb_shared, unique_name):
    with ChdbSink(chdb_shared, database=unique_name) as sink:
        sink.write(forecasts(3))
        sink.flush()
        sink.write(forecasts(2))
        sink.reset()
        sink.flush()
        assert sink.store().count_final("forecasts") == 0


def test_chdb_one_path_per_process(chdb_shared, tmp_path):
    with pytest.raises(ChdbPathInUse):
        chdb_session(tmp_path / "other")
    again = chdb_session(chdb_shared.path)
    assert again is chdb_shared
    again.release()  # back to the module's one reference: the session stays open
    assert chdb_shared.query("SELECT 1", "CSV").bytes() == b"1\n"


def test_sinks_satisfy_the_protocol(chdb_shared, unique_name):
    with ChdbSink(chdb_shared, database=unique_name) as sink:
        assert isinstance(sink, Sink)
    assert isinstance(ClickHouseSink, type) and all(
        callable(getattr(ClickHouseSink, m, None)) for m in ("write", "flush", "close")
    )


def test_store_urls():
    for bad in ("postgres://h/db", "chdb://relative/dir", "clickhouse:///db"):
        with pytest.raises(StoreURLError):
            open_store(bad)
    store = open_store("clickhouse://u:p%40ss@example.invalid:9123/reports")
    assert isinstance(store, ClickHouseStore) and store.database == "reports"
    with pytest.raises(ValueError):
        open_store("clickhouse://example.invalid/bad-name")


# ----------------------------------------------------------------------------------------------
# ClickHouse server


@pytest.mark.services
def test_server_sink_flushes_on_size(clickhouse_server, unique_name):
    store = open_store(f"{clickhouse_server.url}{unique_name}", create=True)
    with ClickHouseSink(clickhouse_server.host, clickhouse_server.tcp_port, unique_name, batch_rows=5,
                        flush_interval_s=3600.0, types_check=True) as sink:  # fmt: skip
        sink.write(forecasts(5))
        wait_until(lambda: sink.stats.rows_written == 5, what="a full batch written")
        assert store.count_final("forecasts") == 5
        sink.write(forecasts(4, start=5))
        # under the size and far from the age limit: the writer thread leaves them buffered
        assert sink.buffered_rows == 4
        assert (sink.stats.rows_written, sink.stats.inserts) == (5, 1)
    assert store.count_final("forecasts") == 9
    store.close()


@pytest.mark.services
def test_server_sink_flushes_on_time(clickhouse_server, unique_name):
    store = open_store(f"{clickhouse_server.url}{unique_name}", create=True)
    with ClickHouseSink(clickhouse_server.host, clickhouse_server.tcp_port, unique_name, batch_rows=10_000,
                        flush_interval_s=0.5) as sink:  # fmt: skip
        t0 = time.monotonic()
        sink.write(forecasts(3))
        wait_until(lambda: sink.stats.rows_written == 3, what="3 rows written after the flush interval")
        assert time.monotonic() - t0 >= 0.5
        assert sink.stats.inserts == 1
        assert store.count_final("forecasts") == 3
    store.close()


@pytest.mark.services
def test_server_outage_loses_nothing(tmp_path, unique_name):
    server = start_clickhouse(tmp_path / "ch")
    try:
        store = open_store(f"{server.url}{unique_name}", create=True)
        sink = ClickHouseSink(server.host, server.tcp_port, unique_name, batch_rows=50, flush_interval_s=0.05,
                              retry_max_s=0.4, connect_timeout_s=0.5, types_check=True)  # fmt: skip
        sink.write(forecasts(100))
        sink.flush()
        server.stop()
        down_at = time.monotonic()
        for k in range(1, 6):  # mid-stream: the server is gone
            sink.write(forecasts(100, start=100 * k))
        # down for a few seconds, with the sink retrying all along
        wait_until(
            lambda: sink.stats.retries >= 3 and time.monotonic() - down_at >= 3.0,
            what="3 s down and failed attempts",
        )
        assert sink.stats.rows_written == 100
        assert sink.buffered_rows == 500
        server.start()  # same data dir and ports
        sink.flush(timeout_s=30)
        sink.close()
        assert store.count_final("forecasts") == 600
        got = store.query(f"SELECT revision FROM {unique_name}.forecasts FINAL ORDER BY revision")
        assert got == [(i,) for i in range(600)]
        store.close()
    finally:
        server.stop()


@pytest.mark.services
def test_server_killed_while_a_writer_streams(tmp_path, unique_name):
    server = start_clickhouse(tmp_path / "ch")
    sink = ClickHouseSink(server.host, server.tcp_port, unique_name, batch_rows=200, flush_interval_s=0.05,
                          retry_max_s=0.4, connect_timeout_s=0.5)  # fmt: skip
    errors: list[BaseException] = []

    def stream() -> None:  # a worker emitting 20 micro-batches while the server crashes
        try:
            for k in range(20):
                sink.write(forecasts(250, start=250 * k))
                time.sleep(0.05)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    writer = threading.Thread(target=stream)
    try:
        writer.start()
        wait_until(lambda: sink.stats.rows_written >= 1000, what="the first rows written")
        server.kill()
        wait_until(lambda: sink.stats.retries >= 2, what="failed attempts after the crash")
        server.start()
        writer.join(timeout=60)
        assert not writer.is_alive() and errors == []
        sink.close(timeout_s=60)
        store = open_store(f"{server.url}{unique_name}")
        got = store.query(f"SELECT revision FROM {unique_name}.forecasts FINAL ORDER BY revision")
        assert got == [(i,) for i in range(5000)]
        store.close()
    finally:
        server.stop()


@pytest.mark.services
def test_backpressure_when_buffer_full_then_nothing_lost(tmp_path, unique_name):
    port = free_port()  # nothing listens yet: every insert attempt fails
    sink = ClickHouseSink("127.0.0.1", port, unique_name, batch_rows=5, max_buffer_rows=10, put_timeout_s=0.3,
                          retry_max_s=0.3, connect_timeout_s=0.3)  # fmt: skip
    server = None
    try:
        sink.write(forecasts(6))
        sink.write(forecasts(4, start=6))
        t0 = time.monotonic()
        with pytest.raises(SinkBackpressure):
            sink.write(forecasts(1, start=10))
        assert time.monotonic() - t0 >= 0.3  # it waited for room before giving up
        assert sink.stats.backpressure == 1
        assert sink.buffered_rows == 10
        server = start_clickhouse(tmp_path / "ch", tcp_port=port, http_port=free_port())
        wait_until(lambda: sink.buffered_rows == 0, what="the buffer drained once the server is up")
        sink.write(forecasts(1, start=10))  # the refused rows, retried by the caller
        sink.close(timeout_s=30)
        store = open_store(f"{server.url}{unique_name}")
        assert store.count_final("forecasts") == 11
        store.close()
    finally:
        if server is not None:
            server.stop()


@pytest.mark.services
def test_async_write_and_flush(clickhouse_server, unique_name):
    store = open_store(f"{clickhouse_server.url}{unique_name}", create=True)
    sink = ClickHouseSink(
        clickhouse_server.host, clickhouse_server.tcp_port, unique_name, flush_interval_s=3600.0
    )

    async def go() -> None:
        await sink.write_async(forecasts(4))
        await sink.flush_async()
        assert store.count_final("forecasts") == 4
        await sink.close_async()

    asyncio.run(go())
    with pytest.raises(SinkClosed):
        sink.write(forecasts(1))
    store.close()


@pytest.mark.services
def test_permanent_error_fails_the_sink(clickhouse_server, unique_name):
    store = open_store(f"{clickhouse_server.url}{unique_name}")
    # a table under the sink's name with other columns: CREATE IF NOT EXISTS keeps it, INSERT fails
    store.query(f"CREATE DATABASE {unique_name}")
    store.query(f"CREATE TABLE {unique_name}.forecasts (x UInt8) ENGINE = MergeTree ORDER BY x")
    sink = ClickHouseSink(clickhouse_server.host, clickhouse_server.tcp_port, unique_name)
    sink.write(forecasts(2))
    with pytest.raises(SinkFailed):
        sink.flush(timeout_s=30)
    with pytest.raises(SinkFailed):
        sink.write(forecasts(1))
    with pytest.raises(SinkFailed):
        sink.close(timeout_s=5)
    store.close()
