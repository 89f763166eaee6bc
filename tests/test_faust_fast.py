"""The inline fast path of streams/faust_fast.py: same results, exceptions and cancellation as a task."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging

import faust
import pytest
from faust.transport.consumer import Consumer as FaustConsumer

from streams.faust_fast import FAUST_VERSION, QuietWorker, finish, start

# sha256 of inspect.getsource(faust.transport.consumer.Consumer._drain_messages) in the version
# FastDrainConsumer was copied from; a new faust-streaming must be reviewed and this updated
ORIGINAL_DRAIN_SHA256 = "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417"
# and of Consumer.perform_seek, which FastDrainConsumer.perform_seek repeats before its own part
ORIGINAL_PERFORM_SEEK_SHA256 = "0e8c130ff4b0afd82c0be9c5fd831316e10febc62c94032833911096e156d7c6"


def test_pinned_faust_version():
    src = inspect.getsource(FaustConsumer._drain_messages)
    digest = hashlib.sha256(src.encode()).hexdigest()
    assert faust.__version__ == FAUST_VERSION, (
        f"faust-streaming {faust.__version__}: review streams/faust_fast.py"
    )
    assert digest == ORIGINAL_DRAIN_SHA256, f"Consumer._drain_messages changed upstream ({digest})"
    digest = hashlib.sha256(inspect.getsource(FaustConsumer.perform_seek).encode()).hexdigest()
    assert digest == ORIGINAL_PERFORM_SEEK_SHA256, f"Consumer.perform_seek changed upstream ({digest})"


async def _no_wait(x):
    return x * 2


async def _waits(fut, log):
    log.append("before")
    got = await fut
    log.append("after")
    return got + 1


async def _raises_after_wait(fut):
    await fut
    raise KeyError("boom")


def test_start_completes_inline_without_a_task():
    async def go():
        done, value = start(_no_wait(21))
        assert (done, value) == (True, 42)

    asyncio.run(go())


def test_start_then_finish_equals_awaiting():
    async def go():
        loop = asyncio.get_running_loop()
        fut, log = loop.create_future(), []
        coro = _waits(fut, log)
        done, yielded = start(coro)
        assert not done and log == ["before"]  # ran up to its first wait, inline
        task = asyncio.ensure_future(finish(coro, yielded))
        await asyncio.sleep(0)
        assert not task.done()
        fut.set_result(1)
        assert await task == 2
        assert log == ["before", "after"]

    asyncio.run(go())


def test_finish_propagates_errors_and_cancellation():
    async def go():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        coro = _raises_after_wait(fut)
        done, yielded = start(coro)
        task = asyncio.ensure_future(finish(coro, yielded))
        fut.set_result(None)
        with pytest.raises(KeyError):
            await task

        log: list[str] = []
        fut2 = loop.create_future()
        coro2 = _waits(fut2, log)
        _, yielded2 = start(coro2)
        task2 = asyncio.ensure_future(finish(coro2, yielded2))
        await asyncio.sleep(0)
        task2.cancel()  # what wait_first does when the flow is suspended
        with pytest.raises(asyncio.CancelledError):
            await task2
        assert fut2.cancelled() and log == ["before"]

    asyncio.run(go())


def test_quiet_worker_keeps_the_root_logger_level():
    app = faust.App("quiet-test", broker="memory://", autodiscover=False, web_enabled=False)
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        w = QuietWorker(app, loglevel="WARNING", quiet=True)
        w.on_setup_root_logger(root, logging.WARNING)
        assert w.spinner is None
        assert root.level == level and root.handlers == handlers
    finally:
        root.setLevel(level)


def _lane_consumer(rebalancing_count=3, flow_control_active=True, flow_active=True):
    """What FastDrainConsumer._run_lane reads of its consumer, recording tracks and acks."""
    from types import SimpleNamespace

    seen = {"tracked": [], "acked": []}
    consumer = SimpleNamespace(
        app=SimpleNamespace(
            rebalancing_count=rebalancing_count,
            flow_control=SimpleNamespace(is_active=lambda: flow_control_active),
        ),
        flow_active=flow_active,
        should_stop=False,
        log=logging.getLogger("test.lane"),
        track_message=seen["tracked"].append,
        ack=seen["acked"].append,
    )
    return consumer, seen


def _run_lane(consumer, handler, messages, collected_in=3):
    from streams.faust_fast import BatchLane, FastDrainConsumer

    lane = BatchLane("events", handler)
    asyncio.run(FastDrainConsumer._run_lane(consumer, lane, messages, collected_in))


def test_lane_batch_is_tracked_handled_then_acked():
    consumer, seen = _lane_consumer()
    handled = []

    async def handler(messages):
        assert seen["tracked"] == [1, 2, 3] and seen["acked"] == []  # tracked first, acked after
        handled.append(list(messages))

    _run_lane(consumer, handler, [1, 2, 3])
    assert handled == [[1, 2, 3]] and seen["acked"] == [1, 2, 3]


def test_lane_batch_that_raises_is_never_acked():
    consumer, seen = _lane_consumer()

    async def handler(messages):
        raise RuntimeError("model down")

    with pytest.raises(RuntimeError):
        _run_lane(consumer, handler, [1, 2])
    assert seen["acked"] == []  # its offsets stay uncommitted: the batch is processed again


@pytest.mark.parametrize(
    "state", [{"rebalancing_count": 4}, {"flow_control_active": False}, {"flow_active": False}]
)
def test_lane_batch_from_before_a_rebalance_is_dropped_untracked(state):
    """Collected before the current rebalance, or while streams/flow are suspended: dropped, never
    tracked (a rebalance would wait for it) nor acked (the seek to committed fetches it again)."""
    consumer, seen = _lane_consumer(**state)

    async def handler(messages):
        raise AssertionError("a dropped batch must not be handled")

    _run_lane(consumer, handler, [1, 2])
    assert seen == {"tracked": [], "acked": []}
