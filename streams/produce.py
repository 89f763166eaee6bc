"""Replay input events into Kafka: an event file or a simulated world, at a given rate.

Every message goes to the input topic (``schemas.topics``, with ``--topic-prefix``) keyed by
its product id (``schemas.topics.event_key``), so a product's events share one partition and
stay in order. Lines that are not JSON objects with a product id are sent unkeyed, as they are:
the worker turns them into dead letters. The topic is created with ``--partitions`` partitions
when it does not exist yet.

    liftstream produce --bootstrap 127.0.0.1:9092 --events events.jsonl --rate 2000
    liftstream produce --bootstrap 127.0.0.1:9092 --preset tiny --seed 0          # as fast as it goes
    python -m streams.produce --help
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from schemas.topics import DEFAULT_PARTITIONS, event_key, topic_names

MAX_REQUEST_BYTES = 8 * 1024 * 1024  # above limits.MAX_RAW_PAYLOAD_BYTES: oversized events reach the DLQ


def key_of(payload: bytes) -> bytes | None:
    """The partition key of a raw event: its product id, or None when it has none."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    pid = doc.get("product_id") if isinstance(doc, dict) else None
    return event_key(pid) if isinstance(pid, str) and pid else None


def bootstrap_servers(bootstrap: str) -> list[str]:
    return [b.strip().removeprefix("kafka://") for b in bootstrap.split(",") if b.strip()]


async def ensure_topics(bootstrap: str, names: Iterable[str], partitions: int) -> None:
    """Create the topics that do not exist yet (an existing topic keeps its partitions)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(bootstrap))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names if n not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):  # another producer or worker won the race
                await admin.create_topics(new)
    finally:
        await admin.close()


@dataclass
class ProduceResult:
    sent: int
    seconds: float
    send_times: list[float] | None = None  # monotonic send time of each message, when asked for

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else float("nan")


async def produce(
    bootstrap: str,
    topic: str,
    payloads: Iterable[bytes] | AsyncIterator[bytes],
    *,
    rate: float = 0.0,
    partitions: int = DEFAULT_PARTITIONS,
    compression: str | None = None,
    keys: Iterable[bytes | None] | None = None,
    record_times: bool = False,
    progress_every: int = 0,
) -> ProduceResult:
    """Send ``payloads`` to ``topic`` keyed by product id; ``rate`` events/s (0: as fast as possible).

    ``keys`` overrides the keys (one per payload). Returns once every message is acknowledged.
    """
    from aiokafka import AIOKafkaProducer

    await ensure_topics(bootstrap, [topic], partitions)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers(bootstrap),
        acks=1,
        linger_ms=5,
        max_batch_size=512 * 1024,
        max_request_size=MAX_REQUEST_BYTES,
        compression_type=compression,
        enable_idempotence=False,  # Tansu has no idempotent producer (see docs/streaming.md)
    )
    await producer.start()
    key_it: Iterator[bytes | None] | None = iter(keys) if keys is not None else None
    times: list[float] | None = [] if record_times else None
    pending: list[asyncio.Future] = []
    n = 0
    t0 = time.monotonic()
    try:
        async for payload in _aiter(payloads):
            if rate > 0:
                delay = t0 + n / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing to the requested rate, not waiting for a result
            key = next(key_it) if key_it is not None else key_of(payload)
            if times is not None:
                times.append(time.monotonic())
            pending.append(await producer.send(topic, payload, key=key))
            n += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
            if progress_every and n % progress_every == 0:
                print(
                    f"produce: {n} events, {n / (time.monotonic() - t0):.0f}/s", file=sys.stderr, flush=True
                )
        await producer.flush()
        if pending:
            await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return ProduceResult(n, time.monotonic() - t0, times)


async def _aiter(items: Iterable[bytes] | AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if hasattr(items, "__aiter__"):
        async for it in items:  # type: ignore[union-attr]
            yield it
    else:
        for i, it in enumerate(items):  # type: ignore[union-attr]
            yield it
            if i % 1000 == 999:
                await asyncio.sleep(0)  # let the producer's sender run between chunks


def file_events(path: Path) -> Iterator[bytes]:
    """Non-blank lines of a JSON-lines file, as raw bytes (no parsing: bad lines are the worker's job)."""
    with path.open("rb") as f:
        for line in f:
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line


def world_events(preset: str, seed: int, home: Path, inline_features: bool = True) -> Iterator[bytes]:
    """The events of a simulated world (``inference.sim``), in stream order, as JSON bytes."""
    from inference.sim.events import iter_events
    from schemas.events import event_json
    from streams.embedded import world_dataset

    dataset = world_dataset(preset, seed, home, progress=False)
    for ev in iter_events(dataset, inline_features=inline_features):
        yield event_json(ev).encode()


def cli(argv: list[str]) -> int:
    from streams.settings import Settings

    defaults = Settings()
    p = argparse.ArgumentParser(prog="liftstream produce", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--bootstrap", default=defaults.kafka_bootstrap, help="Kafka bootstrap servers, host:port[,...]"
    )
    p.add_argument("--topic-prefix", default=defaults.topic_prefix)
    p.add_argument(
        "--partitions", type=int, default=defaults.topic_partitions, help="when creating the topic"
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--events", type=Path, help="a JSON-lines file of input events")
    src.add_argument(
        "--preset", help="simulate a world (inference.sim preset, e.g. tiny) and replay its events"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--by-reference",
        action="store_true",
        help="with --preset: video features as dataset:// references (the worker must see the dataset)",
    )
    p.add_argument("--rate", type=float, default=0.0, help="events per second (0: as fast as possible)")
    p.add_argument("--compression", choices=["none", "gzip"], default="none")
    args = p.parse_args(argv)

    topic = topic_names(args.topic_prefix)["events"]
    if args.events is not None:
        payloads: Iterable[bytes] = file_events(args.events)
    else:
        payloads = world_events(args.preset, args.seed, defaults.home, inline_features=not args.by_reference)
    res = asyncio.run(
        produce(
            args.bootstrap,
            topic,
            payloads,
            rate=args.rate,
            partitions=args.partitions,
            compression=None if args.compression == "none" else args.compression,
            progress_every=100_000,
        )
    )
    print(f"produced {res.sent} events to {topic} in {res.seconds:.1f} s ({res.rate:.0f}/s)")
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
