"""Sink throughput: rows/s into embedded chdb and into a real clickhouse-server, by row mix and batch size.

    nice -n 10 .venv/bin/python -m tests.bench.bench_sinks [--rows 200000] [--batches 1000,10000,50000]

Rows are the pydantic models the stream emits (``row_of`` conversion included, as in the
worker); each run writes into a fresh database and checks ``count(FINAL)`` equals the rows sent,
so a fast-but-lossy configuration cannot pass. Mixes: ``forecasts`` (SalesLiftForecast),
``engagement`` (EngagementDaily) and ``mixed`` (60% engagement, 25% forecasts, 10% sales, 5%
advice). The server sink is fed in 1,000-row writes, the size of a worker's micro-batch. Also
compares the two chdb insert paths on one Arrow table (Arrow stream vs the ``Python()`` table
function). Starts its own clickhouse-server (deploy/scripts/install_services.sh installs it).
Reports wall-clock rows/s and rows per CPU-second of this process (chdb runs in it; the
server's CPU is not counted), plus the load average around the run. Writes runs/bench/sinks.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel

from schemas.ddl import create_database, create_table
from schemas.events import EngagementDaily, SalesDaily
from schemas.outputs import InfluencerAdvice, SalesLiftForecast
from streams.services import start_clickhouse
from streams.sinks import ChdbSink, ClickHouseSink, arrow_table, chdb_session, group_rows, open_store

D0 = date(2024, 1, 1)
T0 = datetime(2024, 1, 1, 12, 0, 0)
ROWS_PER_DAY = 5000  # a stream moves through campaign days in order: a batch touches one or two months


def forecast(i: int) -> SalesLiftForecast:
    return SalesLiftForecast(
        product_id=f"p{i % 5000}", issued_day=D0 + timedelta(i // ROWS_PER_DAY), target_day=D0 + timedelta(i // ROWS_PER_DAY + 1),
        kind="provisional" if i % 4 else "day_close", revision=i, point=i * 0.37, lower=i * 0.1, upper=i * 0.5,
        level=0.9, baseline=None if i % 3 else 1.5, active_videos=i % 40, model_version="lamm-v1",
        emitted_at=T0 + timedelta(seconds=i),
    )  # fmt: skip


def engagement(i: int) -> EngagementDaily:
    return EngagementDaily(
        event_id=f"e{i}", day=D0 + timedelta(i // ROWS_PER_DAY), video_id=f"v{i % 20_000}", product_id=f"p{i % 20_000 // 4}",
        likes=i % 1000, comments=i % 97, shares=i % 31, collects=i % 53, impressions=i * 13,
    )  # fmt: skip


def sales(i: int) -> SalesDaily:
    return SalesDaily(
        event_id=f"s{i}", day=D0 + timedelta(i // ROWS_PER_DAY), product_id=f"p{i % 5000}", units=i % 500,
        price=19.99, rating=4.5,
    )  # fmt: skip


def advice(i: int) -> InfluencerAdvice:
    return InfluencerAdvice(
        video_id=f"v{i}", product_id=f"p{i % 5000}", influencer_id=f"inf{i % 9000}", day=D0 + timedelta(i // ROWS_PER_DAY),
        followers=1000 + i, tier="micro", fei=0.8, curve_shape="s_shaped", expected_impressions=1.5e4,
        optimal_followers=40_000, optimal_tier="micro", optimal_followers_low=25_000, optimal_followers_high=60_000,
        expected_impressions_optimal=3e4, profit_actual=10.0,
        profit_optimal=25.0, value_per_impression=0.02, cost_per_1k_followers=5.0, model_version="fei-v1",
        emitted_at=T0,
    )  # fmt: skip


def make_rows(mix: str, n: int) -> list[BaseModel]:
    if mix == "forecasts":
        return [forecast(i) for i in range(n)]
    if mix == "engagement":
        return [engagement(i) for i in range(n)]
    # mixed: every 20 rows = 12 engagement, 5 forecasts, 2 sales, 1 advice
    pattern: list[Callable[[int], BaseModel]] = [engagement] * 12 + [forecast] * 5 + [sales] * 2 + [advice]
    return [pattern[i % 20](i) for i in range(n)]


def chunks(rows: list, size: int):
    for k in range(0, len(rows), size):
        yield rows[k : k + size]


def _figures(n: int, secs: float, cpu: float, inserts: int) -> dict:
    # cpu_s is this process's CPU (chdb runs inside it; the server's own CPU is not counted):
    # on a shared machine rows per CPU-second moves less than rows per wall-second
    return {
        "seconds": round(secs, 3),
        "rows_per_s": round(n / secs),
        "cpu_s": round(cpu, 3),
        "rows_per_cpu_s": round(n / cpu),
        "inserts": inserts,
    }


def bench_chdb(shared, rows: list[BaseModel], batch: int, db: str) -> dict:
    sink = ChdbSink(shared, database=db, batch_rows=batch)
    t0, c0 = time.perf_counter(), time.process_time()
    for part in chunks(rows, 1000):
        sink.write(part)
    sink.flush()
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    store = sink.store()
    stored = sum(store.count_final(t) for t in ("forecasts", "engagement_daily", "sales_daily", "advice"))
    sink.close()
    assert stored == len(rows), f"chdb kept {stored} of {len(rows)} rows"
    return _figures(len(rows), secs, cpu, sink.stats.inserts)


def bench_server(server, rows: list[BaseModel], batch: int, db: str) -> dict:
    sink = ClickHouseSink(
        server.host, server.tcp_port, db, batch_rows=batch, max_buffer_rows=max(4 * batch, 100_000)
    )
    sink.flush()  # schema created before the clock starts
    t0, c0 = time.perf_counter(), time.process_time()
    for part in chunks(rows, 1000):
        sink.write(part)
    sink.flush(timeout_s=600)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    sink.close()
    store = open_store(f"{server.url}{db}")
    stored = sum(store.count_final(t) for t in ("forecasts", "engagement_daily", "sales_daily", "advice"))
    store.close()
    assert stored == len(rows), f"clickhouse-server kept {stored} of {len(rows)} rows"
    return _figures(len(rows), secs, cpu, sink.stats.inserts)


def bench_chdb_insert_paths(shared, n: int) -> dict:
    """One Arrow table of forecasts, inserted by each path (best of 3, insert only)."""
    grouped, _ = group_rows(forecast(i) for i in range(n))
    tbl = arrow_table("forecasts", grouped["forecasts"])
    cols = ", ".join(tbl.column_names)
    out = {}
    for path in ("arrow_stream", "python_table_function"):
        best = float("inf")
        for trial in range(3):
            db = f"paths_{path}_{trial}"
            for stmt in (create_database(db), create_table(db, "forecasts")):
                shared.query(stmt)
            t0 = time.perf_counter()
            if path == "arrow_stream":
                shared.insert_arrow(f"INSERT INTO {db}.forecasts ({cols})", tbl)
            else:
                bench_tbl = tbl  # noqa: F841 - chdb's Python() resolves this name in the caller's frame
                shared.query(f"INSERT INTO {db}.forecasts ({cols}) SELECT {cols} FROM Python(bench_tbl)")
            best = min(best, time.perf_counter() - t0)
            got = int(shared.query(f"SELECT count() FROM {db}.forecasts", "CSV").bytes())
            assert got == n, f"{path} inserted {got} of {n}"
        out[path] = {"seconds": round(best, 4), "rows_per_s": round(n / best)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--batches", default="1000,10000,50000", help="batch_rows values, comma separated")
    p.add_argument("--mixes", default="forecasts,engagement,mixed")
    p.add_argument("--out", type=Path, default=Path("runs/bench/sinks.json"))
    a = p.parse_args()
    batches = [int(b) for b in a.batches.split(",")]
    mixes = a.mixes.split(",")

    results: dict = {
        "rows": a.rows,
        "machine": f"{platform.machine()} {platform.python_version()}",
        "writes_of": 1000,
        "rows_per_day": ROWS_PER_DAY,
        "load_avg_before": [round(x, 2) for x in os.getloadavg()],
        "convert": {},
        "chdb": {},
        "clickhouse_server": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        server = start_clickhouse(Path(tmp) / "ch")
        shared = chdb_session(Path(tmp) / "chdb")
        try:
            # first calls pay one-time costs (pyarrow imports pandas on its first conversion,
            # ~1-5 s here): warm both engines up outside the clock
            warm = make_rows("mixed", 2000)
            group_rows(warm)
            bench_chdb(shared, warm, 1000, "warmup")
            bench_server(server, warm, 1000, "warmup")
            for mix in mixes:
                rows = make_rows(mix, a.rows)
                t0 = time.perf_counter()
                group_rows(rows)
                results["convert"][mix] = {"rows_per_s": round(a.rows / (time.perf_counter() - t0))}
                for batch in batches:
                    key = f"{mix}/batch={batch}"
                    db = f"bench_{mix}_{batch}"
                    results["chdb"][key] = bench_chdb(shared, rows, batch, db)
                    results["clickhouse_server"][key] = bench_server(server, rows, batch, db)
                    c, k = results["chdb"][key], results["clickhouse_server"][key]
                    print(f"{key:<24} chdb {c['rows_per_s']:>8,}/s ({c['rows_per_cpu_s']:>8,}/cpu-s)   "
                          f"server {k['rows_per_s']:>8,}/s ({k['rows_per_cpu_s']:>8,}/cpu-s)", flush=True)  # fmt: skip
            results["chdb_insert_paths"] = bench_chdb_insert_paths(shared, min(a.rows, 100_000))
        finally:
            shared.release()
            server.stop()
    results["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
