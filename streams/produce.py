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

from aiokafka.errors import KafkaConnectionError

from inference.cli_types import non_negative_float, non_negative_int, positive_int
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


def new_producer(bootstrap: str, acks: int | str = 1, compression: str | None = None):
    """An aiokafka producer as LiftStream's tools configure it (large events, no idempotence)."""
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers(bootstrap),
        acks=acks,
        linger_ms=5,
        max_batch_size=512 * 1024,
        max_request_size=MAX_REQUEST_BYTES,
        compression_type=compression,
        enable_idempotence=False,  # Tansu has no idempotent producer (see docs/streaming.md)
    )


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
    await ensure_topics(bootstrap, [topic], partitions)
    producer = new_producer(bootstrap, acks=1, compression=compression)
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


class CopyError(RuntimeError):
    """A topic copy that cannot start: no source, a source equal to the target, a non-empty
    target or one with another partition count."""


async def copy_topic(
    bootstrap: str,
    source: str,
    target: str,
    partitions: int,
    progress_every: int = 0,
    idle_s: float = 3.0,
) -> ProduceResult:
    """Copy every record of ``source`` into ``target``, created with ``partitions`` partitions
    (an existing target must have that count and be empty). Keys, values, headers and timestamps
    are kept; the producer's partitioner places each key by the target's count, and each key
    keeps its order (a key lives in one source partition, read in order, and the producer keeps
    the order per target partition). This is how the input topic moves to more partitions
    (deploy/README.md, "Scaling"); pause the producers first.

    The copy ends once every partition has reached the end offsets read at the start and no
    record has come for ``idle_s`` seconds: Tansu answers ``end_offsets`` with the base offset
    of a partition's last batch + 1 (tests/bench/tansu_end_offsets.py), so the end offsets alone
    would stop inside the last batch."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    if source == target:
        raise CopyError(f"source and target are the same topic {source!r}")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(bootstrap),
        enable_auto_commit=False,
        max_partition_fetch_bytes=MAX_REQUEST_BYTES,
        fetch_max_bytes=4 * MAX_REQUEST_BYTES,
    )
    try:
        await consumer.start()
    except BaseException:  # no broker: close what start() opened
        await consumer.stop()
        raise
    try:
        existing = await consumer.topics()
        if source not in existing:
            raise CopyError(f"{source}: no such topic")
        if target in existing:
            have = len(consumer.partitions_for_topic(target) or ())
            ends = await consumer.end_offsets([TopicPartition(target, p) for p in range(have)])
            if have != partitions or any(ends.values()):
                raise CopyError(
                    f"{target} exists with {have} partitions and {sum(ends.values())} records or more; "
                    f"the copy needs an empty topic of {partitions}"
                )
        await ensure_topics(bootstrap, [target], partitions)
        tps = [TopicPartition(source, p) for p in sorted(consumer.partitions_for_topic(source) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        producer = new_producer(bootstrap, acks="all")
        await producer.start()
        n, t0, pending, idle_since = 0, time.monotonic(), [], None
        try:
            while True:
                fetched = await consumer.getmany(*tps, timeout_ms=500)
                for records in fetched.values():
                    for r in records:
                        pending.append(
                            await producer.send(
                                target, r.value, key=r.key, headers=list(r.headers), timestamp_ms=r.timestamp
                            )
                        )
                        n += 1
                        if progress_every and n % progress_every == 0:
                            print(f"copy: {n} records, {n / (time.monotonic() - t0):.0f}/s", file=sys.stderr)
                if len(pending) >= 5000:
                    await asyncio.gather(*pending)
                    pending.clear()
                if any(fetched.values()):
                    idle_since = None
                    continue
                positions = [await consumer.position(tp) for tp in tps]
                if any(pos < end[tp] for pos, tp in zip(positions, tps, strict=True)):
                    continue  # not at the end offsets yet
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= idle_s:
                    break
            await producer.flush()
            await asyncio.gather(*pending)
        finally:
            await producer.stop()
    finally:
        await consumer.stop()
    return ProduceResult(n, time.monotonic() - t0)


def _unreachable(e: KafkaConnectionError, bootstrap: str) -> str:
    return (
        f"no Kafka broker answers at {bootstrap} ({e}); start one (`liftstream stack up`) or pass --bootstrap"
    )


def cli_repartition(argv: list[str]) -> int:
    """``liftstream repartition``: copy the input topic into a new one with more partitions."""
    from streams.settings import Settings

    defaults = Settings()
    p = argparse.ArgumentParser(
        prog="liftstream repartition",
        description="Copy a topic (by default the input topic of --from-prefix) into a new, empty one "
        "with --partitions partitions, keys kept: the first step of moving to more partitions "
        "(deploy/README.md, 'Scaling').",
    )
    p.add_argument("--bootstrap", default=defaults.kafka_bootstrap, help="host:port[,...]")
    p.add_argument("--from-prefix", default=defaults.topic_prefix, help="topic prefix of the source")
    p.add_argument("--to-prefix", required=True, help="topic prefix of the target (the new deployment's)")
    p.add_argument("--partitions", type=positive_int, required=True, help="the target's partition count")
    a = p.parse_args(argv)
    source = topic_names(a.from_prefix)["events"]
    target = topic_names(a.to_prefix)["events"]
    try:
        res = asyncio.run(copy_topic(a.bootstrap, source, target, a.partitions, progress_every=100_000))
    except CopyError as e:
        print(f"liftstream repartition: {e}", file=sys.stderr)
        return 2
    except KafkaConnectionError as e:
        print(f"liftstream repartition: {_unreachable(e, a.bootstrap)}", file=sys.stderr)
        return 2
    print(
        f"copied {res.sent} records from {source} to {target} ({a.partitions} partitions) in {res.seconds:.1f} s"
    )
    return 0


def cli(argv: list[str]) -> int:
    from streams.settings import Settings

    defaults = Settings()
    p = argparse.ArgumentParser(prog="liftstream produce", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--bootstrap", default=defaults.kafka_bootstrap, help="Kafka bootstrap servers, host:port[,...]"
    )
    p.add_argument("--topic-prefix", default=defaults.topic_prefix)
    p.add_argument(
        "--partitions", type=positive_int, default=defaults.topic_partitions, help="when creating the topic"
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--events", type=Path, help="a JSON-lines file of input events")
    src.add_argument(
        "--preset", help="simulate a world (inference.sim preset, e.g. tiny) and replay its events"
    )
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument(
        "--by-reference",
        action="store_true",
        help="with --preset: video features as dataset:// references (the worker must see the dataset)",
    )
    p.add_argument(
        "--rate", type=non_negative_float, default=0.0, help="events per second (0: as fast as possible)"
    )
    p.add_argument("--compression", choices=["none", "gzip"], default="none")
    args = p.parse_args(argv)

    if args.events is not None and not args.events.is_file():
        p.error(f"--events {args.events}: no such file")
    topic = topic_names(args.topic_prefix)["events"]
    if args.events is not None:
        payloads: Iterable[bytes] = file_events(args.events)
    else:
        payloads = world_events(args.preset, args.seed, defaults.home, inline_features=not args.by_reference)
    try:
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
    except KafkaConnectionError as e:
        print(f"liftstream produce: {_unreachable(e, args.bootstrap)}", file=sys.stderr)
        return 2
    print(f"produced {res.sent} events to {topic} in {res.seconds:.1f} s ({res.rate:.0f}/s)")
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
