"""Fault injection for worker subprocesses: imported at interpreter start-up (``sitecustomize``)
when a test puts this directory first on the worker's PYTHONPATH.

``LIFTSTREAM_FAULT_SLOW_CHANGELOG="EVERY:SECONDS"`` delays every EVERY-th changelog record in
Faust's producer buffer by SECONDS before it is handed to aiokafka. Faust's ``producer.flush()``
(run before each offset commit) gives up on that buffer after 0.1 s without progress, so with
this delay offsets get committed while changelog records are still unsent, which is the window a
SIGKILL needs to restore states older than the committed offsets. The worker must wait for the
records itself (``ProductTable.changelog_delivered``); the crash test's ``slow_changelog``
variant checks that it does.
"""

import os

_spec = os.environ.get("LIFTSTREAM_FAULT_SLOW_CHANGELOG")
if _spec:
    import asyncio

    import faust.transport.producer as _producer

    _every, _delay = int(_spec.split(":")[0]), float(_spec.split(":")[1])
    _original = _producer.ProducerBuffer._send_pending
    _seen = [0]

    async def _slow_send_pending(self, fut):
        if fut.message.channel.get_topic_name().endswith("-changelog"):
            _seen[0] += 1
            if _seen[0] % _every == 0:
                await asyncio.sleep(_delay)
        await _original(self, fut)

    _producer.ProducerBuffer._send_pending = _slow_send_pending
