"""Fault injection for worker subprocesses: imported at interpreter start-up (``sitecustomize``)
when a test puts this directory first on the worker's PYTHONPATH.

``LIFTSTREAM_FAULT_SLOW_CHANGELOG="EVERY:SECONDS"`` delays every EVERY-th record sent to a
changelog topic by SECONDS before aiokafka's producer takes it. Faust's own changelog path
(its producer buffer, whose ``flush()`` before an offset commit gives up after 0.1 s without
progress) then lets offsets be committed while changelog records are still unsent, which is the
window a SIGKILL needs to restore states older than the committed offsets. The worker must wait
for its records itself (``streams.app.ProductTable.changelog_delivered``); the crash test's
``slow_changelog`` variant checks that it does.

``LIFTSTREAM_FAULT_SLOW_FETCH="EVERY:SECONDS"`` holds every EVERY-th non-empty fetch SECONDS
on Faust's consumer thread after aiokafka returned its records and before Faust's drain loop
gets them. Seeks (Faust's ``perform_seek`` at the end of a rebalance, the batch lane's own
re-seeks) run on that thread meanwhile, so the records arrive after the partition's position
moved: the race the lane's offset order must survive (``streams.faust_fast._lane_in_order``);
the crash test's ``slow_fetch`` variant provokes it through two rebalances.
"""

import os

_spec = os.environ.get("LIFTSTREAM_FAULT_SLOW_CHANGELOG")
if _spec:
    import asyncio

    from aiokafka import AIOKafkaProducer

    _every, _delay = int(_spec.split(":")[0]), float(_spec.split(":")[1])
    _original = AIOKafkaProducer.send
    _seen = [0]

    async def _slow_send(self, topic, *args, **kwargs):
        if topic.endswith("-changelog"):
            _seen[0] += 1
            if _seen[0] % _every == 0:
                await asyncio.sleep(_delay)
        return await _original(self, topic, *args, **kwargs)

    AIOKafkaProducer.send = _slow_send

_spec = os.environ.get("LIFTSTREAM_FAULT_SLOW_FETCH")
if _spec:
    import asyncio

    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    _fetch_every, _fetch_delay = int(_spec.split(":")[0]), float(_spec.split(":")[1])
    _original_fetch = AIOKafkaConsumerThread._fetch_records
    _fetches = [0]

    async def _slow_fetch(self, *args, **kwargs):
        records = await _original_fetch(self, *args, **kwargs)
        if records:
            _fetches[0] += 1
            if _fetches[0] % _fetch_every == 0:
                await asyncio.sleep(_fetch_delay)  # on the consumer thread's loop: seeks run meanwhile
        return records

    AIOKafkaConsumerThread._fetch_records = _slow_fetch
