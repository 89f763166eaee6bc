"""Fault injection for worker subprocesses: imported at interpreter start-up (``sitecustomize``)
when a test puts this directory first on the worker's PYTHONPATH.

``LIFTSTREAM_FAULT_SLOW_CHANGELOG="EVERY:SECONDS"`` delays every EVERY-th record sent to a
changelog topic by SECONDS before aiokafka's producer takes it. Faust's own changelog path
(its producer buffer, whose ``flush()`` before an offset commit gives up after 0.1 s without
progress) then lets offsets be committed while changelog records are still unsent, which is the
window a SIGKILL needs to restore states older than the committed offsets. The worker must wait
for its records itself (``streams.app.ProductTable.changelog_delivered``); the crash test's
``slow_changelog`` variant checks that it does.
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
