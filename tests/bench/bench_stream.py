"""Benchmarks of the Faust worker on a real broker (Tansu) and a real ClickHouse server.

Each scenario starts its own Tansu broker and clickhouse-server on free ports (streams.services)
and one ``python -m streams.app`` worker (stand-in models), and prints a JSON summary.

- ``throughput``: N events (mostly EngagementDaily) are produced first, then the worker drains
  them; rate = events acknowledged (rows in ClickHouse) per second, from the worker's first to
  its last batch. The same run reads the same topic with a bare aiokafka consumer (no group,
  no processing): the ceiling; the summary gives the ratio.
- ``latency``: with the worker caught up, engagement events are produced at ``--rate`` events/s;
  each event's produce time is compared with the first poll of ClickHouse that sees its row.
- ``memory``: a long replay (videos expire after 14 days, new ones keep coming); the worker's RSS
  is sampled against events processed and plotted.

    nice -n 10 .venv/bin/python -m tests.bench.bench_stream throughput --events 300000
    nice -n 10 .venv/bin/python -m tests.bench.bench_stream latency --rate 2000 --seconds 30
    nice -n 10 .venv/bin/python -m tests.bench.bench_stream memory --events 1000000 --png docs/img/stream_rss.png
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np

from schemas.events import InfluencerSnapshot, ProductSnapshot, SegmentFeatures, VideoPublished, event_json
from schemas.topics import event_key, topic_names
from streams.services import start_clickhouse, start_tansu
from streams.sinks import StoreError, open_store
from tests.stream_support import WorkerProc, produce, wait_for, worker_argv

START = date(2025, 1, 1)


# ----------------------------------------------------------------------------------------------
# event streams (JSON built directly: generating a million events through pydantic is slow)


class Stream:
    """Products that publish ``videos_per_day`` new videos each day; every video active for 14
    days gets one EngagementDaily per day; each product's SalesDaily closes the day."""

    def __init__(self, n_products: int, videos_per_day: int, seed: int = 0):
        self.n_products, self.videos_per_day = n_products, videos_per_day
        self.rng = np.random.default_rng(seed)
        f = lambda: self.rng.normal(size=(1, 128)).astype(np.float32)  # noqa: E731
        self.features = SegmentFeatures.from_arrays(f(), f(), f(), np.zeros((0, 128), np.float32))
        self.seq = 0

    def video(self, vid: str, pid: str, day: date) -> tuple[bytes, bytes]:
        ev = VideoPublished(
            event_id=f"v:{vid}",
            ts=datetime.combine(day, datetime.min.time()) + timedelta(hours=9),
            day=day,
            video_id=vid,
            product_id=pid,
            influencer=InfluencerSnapshot(influencer_id=f"i{vid}", followers=20_000, past_avg_hearts=300.0),
            product=ProductSnapshot(category="other", price=25.0),
            video_type="food",
            length_s=20.0,
            width=720,
            height=1280,
            size_mb=3.0,
            create_hour=9,
            features=self.features,
        )
        return event_json(ev).encode(), event_key(pid)

    def engagement(self, vid: str, pid: str, day: date) -> tuple[bytes, bytes]:
        self.seq += 1
        imp = 1000 + self.seq % 5000
        return (
            f'{{"type":"engagement_daily","event_id":"e{self.seq:09d}","day":"{day.isoformat()}",'
            f'"video_id":"{vid}","product_id":"{pid}","likes":{imp // 20},"comments":{imp // 200},'
            f'"shares":{imp // 300},"collects":{imp // 100},"impressions":{imp}}}'
        ).encode(), event_key(pid)

    def sales(self, pid: str, day: date, d: int) -> tuple[bytes, bytes]:
        units = 20 + (d * 7 + int(pid[1:])) % 30
        return (
            f'{{"type":"sales_daily","event_id":"s:{pid}:{day.isoformat()}","day":"{day.isoformat()}",'
            f'"product_id":"{pid}","units":{units},"price":25.0,"rating":95.0}}'
        ).encode(), event_key(pid)

    def events(self, n_events: int, first_day: int = 0):
        """Up to ``n_events`` (payload, key) pairs, day by day."""
        active: dict[str, list[tuple[str, int]]] = {f"p{i:05d}": [] for i in range(self.n_products)}
        n, d = 0, first_day
        while True:
            day = START + timedelta(days=d)
            for pid, vids in active.items():
                vids[:] = [(v, d0) for v, d0 in vids if d - d0 < 14]
                for j in range(self.videos_per_day):
                    vid = f"{pid}d{d}v{j}"
                    vids.append((vid, d))
                    yield self.video(vid, pid, day)
                    n += 1
                for vid, _ in vids:
                    yield self.engagement(vid, pid, day)
                    n += 1
                yield self.sales(pid, day, d)
                n += 1
                if n >= n_events:
                    return
            d += 1


# ----------------------------------------------------------------------------------------------
# scenarios


@contextlib.contextmanager
def _scratch():
    """A scratch folder for the services' data, removed in the background afterwards
    (a ClickHouse data folder with thousands of small parts takes minutes to delete)."""
    tmp = tempfile.mkdtemp(prefix="bench_stream_")
    try:
        yield tmp
    finally:
        subprocess.Popen(["rm", "-rf", tmp], start_new_session=True)


class Services:
    def __init__(self, root: Path):
        self.root = root
        self.ch = start_clickhouse(root / "ch")
        self.kafka = start_tansu(root / "kafka")

    def stop(self) -> None:
        self.ch.stop()
        self.kafka.stop()


def _worker(svc: Services, name: str, **kw) -> WorkerProc:
    argv = worker_argv(svc.kafka.bootstrap, svc.ch.url + f"db_{name}", name, **kw)
    return WorkerProc(argv, svc.root / f"{name}.log", svc.root / f"{name}.json")


def raw_consume_rate(bootstrap: str, topic: str, n: int, partitions: int = 4) -> float:
    """Messages/s of a bare aiokafka consumer reading ``n`` messages of ``topic`` from the start."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def go() -> float:
        c = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await c.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            got, t0 = 0, None
            while got < n:
                batch = await c.getmany(timeout_ms=1000, max_records=10_000)
                if t0 is None and batch:
                    t0 = time.perf_counter()
                got += sum(len(v) for v in batch.values())
            return n / (time.perf_counter() - t0)
        finally:
            await c.stop()

    return asyncio.run(go())


def throughput(args) -> dict:
    with _scratch() as tmp:
        svc = Services(Path(tmp))
        name = "tput"
        try:
            gen = Stream(args.products, args.videos_per_day)
            pairs = list(gen.events(args.events))
            items, keys = [p for p, _ in pairs], [k for _, k in pairs]
            n_eng = sum(1 for p in items if p.startswith(b'{"type":"engagement_daily"'))
            topic = topic_names(f"{name}.")["events"]
            t0 = time.perf_counter()
            res = produce(svc.kafka.bootstrap, topic, items, keys=keys)
            produce_s = time.perf_counter() - t0
            raw = raw_consume_rate(svc.kafka.bootstrap, topic, len(items))
            w = _worker(svc, name, batch_max=args.batch_max, batch_within=0.2).start()
            spy = None
            if args.profile is not None:  # sample the worker's stacks while it drains the topic
                spy = subprocess.Popen(
                    [
                        str(Path(sys.executable).with_name("py-spy")),
                        "record",
                        "--gil",
                        "--pid",
                        str(w.proc.pid),
                        "--rate",
                        "50",
                        "--format",
                        {".json": "speedscope", ".txt": "raw"}.get(args.profile.suffix, "flamegraph"),
                        "--output",
                        str(args.profile),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            try:
                samples = []

                def progress():
                    s = w.stats()
                    if s.get("totals", {}).get("received"):
                        samples.append((s["time"], s["totals"]["received"], s["cpu_s"]))
                    return s.get("totals", {}).get("received", 0) >= len(items) or not w.alive()

                wait_for(progress, 1800, "the worker to drain the topic", interval_s=0.25)
                assert w.alive(), w.log_tail()
                (t_first, n_first, c_first), (t_last, n_last, c_last) = samples[0], samples[-1]
                rate = (n_last - n_first) / (t_last - t_first)
                per_cpu_s = (n_last - n_first) / max(c_last - c_first, 1e-9)
                final = w.stats()
                totals, stage_s = final["totals"], final.get("stage_s", {})
            finally:
                if spy is not None:
                    spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
                    spy.wait(60)
                w.stop()
            store = open_store(svc.ch.url + f"db_{name}")
            in_ch = int(store.query(f"SELECT count() FROM db_{name}.engagement_daily FINAL")[0][0])
        finally:
            svc.stop()
    return {
        "scenario": "throughput",
        "events": len(items),
        "engagement_events": n_eng,
        "products": args.products,
        "batch_max": args.batch_max,
        "produce_events_per_s": round(res.sent / produce_s),
        "worker_events_per_s": round(rate),
        "worker_engagement_events_per_s": round(rate * n_eng / len(items)),
        "raw_aiokafka_consume_per_s": round(raw),
        "worker_over_raw": round(rate / raw, 3),
        "worker_events_per_cpu_s": round(per_cpu_s),
        "worker_cpu_share": round((c_last - c_first) / (t_last - t_first), 2),
        "loadavg_1m_end": os.getloadavg()[0],
        "engagement_rows_in_clickhouse": in_ch,
        "totals": totals,
        "batch_stage_wall_s": stage_s,
        "drain_wall_s": round(t_last - t_first, 2),
    }


def latency(args) -> dict:
    with _scratch() as tmp:
        svc = Services(Path(tmp))
        name = "lat"
        db = f"db_{name}"
        try:
            gen = Stream(args.products, 1)
            warm = list(gen.events(args.products * 3))  # day 0: a video, its engagement, sales per product
            topic = topic_names(f"{name}.")["events"]
            w = _worker(svc, name).start()
            try:
                produce(svc.kafka.bootstrap, topic, [p for p, _ in warm], keys=[k for _, k in warm])
                wait_for(lambda: w.received() >= len(warm), 120, "the warm-up events")
                # engagement on day 0 for the day-0 videos: new event ids, all applied
                vids = [(f"p{i:05d}d0v0", f"p{i:05d}") for i in range(args.products)]
                n = int(args.rate * args.seconds)
                gen.seq = 10**8  # ids e1xxxxxxxx: sortable, distinct from the warm-up's
                # a day per round over the videos: every row has its own key (product, video,
                # day), so ReplacingMergeTree merges cannot fold rows away before the poll sees them
                pairs = [
                    gen.engagement(*vids[i % len(vids)], START + timedelta(days=i // len(vids)))
                    for i in range(n)
                ]
                store = open_store(svc.ch.url + db)
                seen: dict[int, float] = {}
                stop = threading.Event()

                def poll():
                    low = 10**8
                    while not stop.is_set():
                        try:
                            rows = store.query(
                                f"SELECT toUInt64(substring(event_id, 2)) AS s FROM {db}.engagement_daily "
                                f"WHERE event_id >= %(lo)s",
                                {"lo": f"e{low + 1:09d}"},
                            )
                        except StoreError:  # a dropped connection: the next query reconnects
                            rows = []
                        now = time.monotonic()
                        for (s,) in rows:
                            seen.setdefault(int(s), now)
                        while low + 1 in seen:
                            low += 1
                        stop.wait(args.poll_s)  # the poll interval of the reader

                poller = threading.Thread(target=poll, daemon=True)
                poller.start()
                res = produce(
                    svc.kafka.bootstrap,
                    topic,
                    [p for p, _ in pairs],
                    keys=[k for _, k in pairs],
                    rate=args.rate,
                    record_times=True,
                )
                wait_for(
                    lambda: len(seen) >= n, 120, "every event to be visible in ClickHouse", interval_s=0.2
                )
                stop.set()
                poller.join(10)
            finally:
                w.stop()
        finally:
            svc.stop()
    lat = np.array([seen[10**8 + 1 + i] - res.send_times[i] for i in range(n)])
    return {
        "scenario": "latency",
        "rate_target": args.rate,
        "rate_achieved": round(res.rate),
        "events": n,
        "poll_interval_s": args.poll_s,
        "latency_s": {
            q: round(float(np.quantile(lat, v)), 3)
            for q, v in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
        },
    }


def memory(args) -> dict:
    with _scratch() as tmp:
        svc = Services(Path(tmp))
        name = "mem"
        try:
            gen = Stream(args.products, args.videos_per_day)
            topic = topic_names(f"{name}.")["events"]
            w = _worker(svc, name, batch_max=args.batch_max).start()
            samples: list[tuple[float, int, int, int]] = []
            try:
                producer = threading.Thread(
                    target=lambda: produce(
                        svc.kafka.bootstrap, topic, (p for p, _ in gen.events(args.events)), rate=args.rate
                    )
                )
                producer.start()

                def progress():
                    s = w.stats()
                    if s.get("totals"):
                        samples.append((s["time"], s["totals"]["received"], s["rss_bytes"], s["products"]))
                    return s.get("totals", {}).get("received", 0) >= args.events or not w.alive()

                wait_for(progress, 3600, "the worker to take every event", interval_s=1.0)
                assert w.alive(), w.log_tail()
                producer.join()
            finally:
                w.stop()
        finally:
            svc.stop()
    t0 = samples[0][0]
    rows = [(round(t - t0, 1), n, rss) for t, n, rss, _ in samples]
    mb = np.array([r[2] for r in rows]) / 2**20
    n = np.array([r[1] for r in rows])
    early = mb[(n > 0.2 * args.events) & (n < 0.3 * args.events)]
    late = mb[n > 0.9 * args.events]
    out = {
        "scenario": "memory",
        "events": args.events,
        "products": args.products,
        "videos_per_day": args.videos_per_day,
        "active_videos_steady": args.products * args.videos_per_day * 14,
        "rss_mb": {
            "first": round(float(mb[0]), 1),
            "at_20_30pct": round(float(early.mean()), 1) if early.size else None,
            "after_90pct": round(float(late.mean()), 1) if late.size else None,
            "max": round(float(mb.max()), 1),
        },
        "samples": len(rows),
    }
    if args.png:
        _plot(rows, args, out)
        out["png"] = str(args.png)
    if args.samples:
        Path(args.samples).write_text(json.dumps(rows))
    return out


def _plot(rows, args, out) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r[1] / 1e6 for r in rows]
    mb = [r[2] / 2**20 for r in rows]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(n, mb, lw=1.5)
    ax.set_xlabel("events processed (millions)")
    ax.set_ylabel("worker RSS (MiB)")
    ax.set_ylim(0, max(mb) * 1.15)
    ax.set_title(
        f"Faust worker RSS over a {args.events / 1e6:g}M-event replay "
        f"({args.products} products, ~{out['active_videos_steady']} active videos)",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="scenario", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--events", type=int, default=300_000)
    t.add_argument("--products", type=int, default=2000)
    t.add_argument("--videos-per-day", type=int, default=1)
    t.add_argument("--batch-max", type=int, default=20_000)
    t.add_argument(
        "--profile",
        type=Path,
        help="py-spy the worker while it drains: .svg flamegraph, .json speedscope, .txt collapsed stacks",
    )
    la = sub.add_parser("latency")
    la.add_argument("--rate", type=float, default=2000)
    la.add_argument("--seconds", type=float, default=30)
    la.add_argument("--products", type=int, default=500)
    la.add_argument("--poll-s", type=float, default=0.02)
    m = sub.add_parser("memory")
    m.add_argument("--events", type=int, default=1_000_000)
    m.add_argument("--products", type=int, default=1000)
    m.add_argument("--videos-per-day", type=int, default=1)
    m.add_argument("--batch-max", type=int, default=5000)
    m.add_argument("--rate", type=float, default=0, help="produce rate (0: as fast as the producer goes)")
    m.add_argument("--png", type=Path)
    m.add_argument("--samples", type=Path)
    for sp in (t, la, m):
        sp.add_argument("--json", type=Path, help="also write the summary here")
    args = p.parse_args(argv)
    out = {"throughput": throughput, "latency": latency, "memory": memory}[args.scenario](args)
    text = json.dumps(out, indent=2, default=str)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
