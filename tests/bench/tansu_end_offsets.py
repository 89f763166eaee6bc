"""Which end offset a Tansu broker reports after multi-record batches (a diagnostic, not a test).

Faust's table recovery reads each changelog partition up to ``end_offsets() - 1``. Kafka answers
``end_offsets`` with the last offset + 1. This script produces record batches of 3, 2, 1 and 5
records to one partition and prints the offsets the producer was given next to what
``end_offsets`` answers; on the Tansu version in .liftstream/bin (2026-11-23) a batch of 3 records
at offsets 0-2 gave 1, i.e. the base offset of the last batch + 1, so Faust's recovery stops
before the rest of the last batch (docs/streaming.md, "The batch lane").

    .venv/bin/python -m tests.bench.tansu_end_offsets
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.services import start_tansu

BATCHES = (3, 2, 1, 5)


async def measure(bootstrap: str, topic: str = "end-offsets") -> list[tuple[list[int], int]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)  # one batch per burst
    await producer.start()
    tp, out = TopicPartition(topic, 0), []
    try:
        for n in BATCHES:
            futures = [await producer.send(topic, b"v%d" % i, key=b"k", partition=0) for i in range(n)]
            offsets = [m.offset for m in await asyncio.gather(*futures)]
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
            await consumer.start()
            try:
                end = (await consumer.end_offsets([tp]))[tp]
            finally:
                await consumer.stop()
            out.append((offsets, end))
    finally:
        await producer.stop()
    return out


def main() -> None:
    svc = start_tansu(Path(tempfile.mkdtemp(prefix="tansu-eo-")))
    try:
        for offsets, end in asyncio.run(measure(svc.bootstrap)):
            print(f"batch at offsets {offsets}: end_offsets {end} (Kafka: {offsets[-1] + 1})")
    finally:
        svc.stop()


if __name__ == "__main__":
    main()
